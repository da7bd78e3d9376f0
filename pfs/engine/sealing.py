"""How a worker seals and opens the pieces of one part: under the data key of
an encrypted store, or a part key agreed with a write-only recipient (see
pfs.crypto), or, for a plain store, not at all."""

from __future__ import annotations

from pfs.crypto import keyring
from pfs.crypto.pieces import OVERHEAD, AuthenticationFailed


class Sealing:
    """The pieces of part `part_id` sealed for the store `sealed_for` (none: plain).
    `stanza` is the part's recorded `sealed` stanza ("": the data key's), or None
    for a new part, which a write-only pfs seals to its recipient; `stanza` then
    says what to record."""

    def __init__(self, sealed_for: str = "", part_id: str = "", stanza: str | None = None) -> None:
        self.on = bool(sealed_for)
        self.part_id = part_id
        self.stanza = stanza or ""
        self._store, self._new, self._cipher = sealed_for, stanza is None, None

    def size(self, plain: int) -> int:
        """Bytes a piece of `plain` bytes takes on a volume."""
        return plain + OVERHEAD if self.on else plain

    def _keyed(self):
        if self._cipher is None:
            if self._new:
                self.stanza, self._cipher = keyring.sealing(self._store, self.part_id)
            else:
                self._cipher = keyring.opening(self._store, self.part_id, self.stanza)
        return self._cipher

    def seal(self, data, index: int, into: memoryview | None = None):
        """The piece to write for plain piece `index` (in `into`, if given and sealing)."""
        return self._keyed().seal(data, self.part_id, index, into) if self.on else data

    def open(self, piece, index: int, into: memoryview | None = None) -> tuple[bytes | None, str | None]:
        """(plain piece, None), or (None, why the piece is not this store's piece `index` of the part)."""
        if not self.on:
            return piece, None
        try:
            return self._keyed().open(piece, self.part_id, index, into), None
        except AuthenticationFailed as exc:
            return None, str(exc)
        except keyring.NoKey as exc:
            return None, f"cannot be opened: {exc}"
