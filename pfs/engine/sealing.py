"""How a worker seals and opens the pieces of one part: under the data key of
an encrypted store (see pfs.crypto), or, for a plain store, not at all."""

from __future__ import annotations

from pfs.crypto import keyring
from pfs.crypto.pieces import OVERHEAD, AuthenticationFailed


class Sealing:
    """The pieces of part `part_id` sealed for the store `sealed_for` (none: plain)."""

    def __init__(self, sealed_for: str = "", part_id: str = "") -> None:
        self.on = bool(sealed_for)
        self.part_id = part_id
        self._cipher = keyring.cipher(sealed_for) if sealed_for else None

    def size(self, plain: int) -> int:
        """Bytes a piece of `plain` bytes takes on a volume."""
        return plain + OVERHEAD if self.on else plain

    def seal(self, data, index: int, into: memoryview | None = None):
        """The piece to write for plain piece `index` (in `into`, if given and sealing)."""
        return self._cipher.seal(data, self.part_id, index, into) if self.on else data

    def open(self, piece, index: int, into: memoryview | None = None) -> tuple[bytes | None, str | None]:
        """(plain piece, None), or (None, why the piece is not this store's piece `index` of the part)."""
        if not self.on:
            return piece, None
        try:
            return self._cipher.open(piece, self.part_id, index, into), None
        except AuthenticationFailed as exc:
            return None, str(exc)
