"""Sealing the pieces a part is written as: AES-256-GCM under the store's data
key, a fresh random 96-bit nonce per sealing, and associated data that binds
the store, the part and the piece index, so that a piece moved to another
part's place, another index or another store fails authentication."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pfs.crypto.keys import DataKey

NONCE = 12
TAG = 16
#: Bytes a sealed piece holds beyond its plaintext: the tag and the nonce after it.
OVERHEAD = NONCE + TAG
#: The version of the piece format, part of every piece's associated data.
PIECE_FORMAT = 1


class AuthenticationFailed(Exception):
    """A piece that is not what this store sealed under that part and index."""


def associated_data(store_id: str, part_id: str, index: int) -> bytes:
    """What a piece is bound to, as ASCII: `pfs-piece-1:STORE:PART:INDEX`."""
    return f"pfs-piece-{PIECE_FORMAT}:{store_id}:{part_id}:{index}".encode()


class PieceCipher:
    """Seals and opens the pieces of one store."""

    def __init__(self, store_id: str, key: DataKey) -> None:
        # imported here: cryptography costs every process 10-20 ms at start-up, and a plain store needs none of it
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.store_id = store_id
        self._aead = AESGCM(key.secret)

    def __repr__(self) -> str:
        return f"PieceCipher(store {self.store_id})"

    def seal(self, data, part_id: str, index: int, into: memoryview | None = None,
             nonce: bytes | None = None) -> bytes | memoryview:
        """ciphertext ‖ tag ‖ nonce of `data` (written into `into`, at least
        len(data) + OVERHEAD bytes, if given). The ciphertext comes first so
        that it starts where the buffer does, on a page: AES-GCM over a buffer
        12 bytes past one cost 70% more CPU here. `nonce` is for known-answer
        tests only: every sealing of the store draws a fresh random one."""
        nonce = os.urandom(NONCE) if nonce is None else nonce
        ad = associated_data(self.store_id, part_id, index)
        if into is None:
            return self._aead.encrypt(nonce, data, ad) + nonce
        end = len(data) + TAG
        self._aead.encrypt_into(nonce, data, ad, into[:end])
        into[end:end + NONCE] = nonce
        return into[:end + NONCE]

    def open(self, piece, part_id: str, index: int, into: memoryview | None = None) -> bytes | memoryview:
        """The plaintext of a sealed piece (in `into`, at least len(piece) -
        OVERHEAD bytes, if given); AuthenticationFailed if the piece was not
        sealed by this store for this part and index, or was changed since."""
        if len(piece) < OVERHEAD:
            raise AuthenticationFailed("fails authentication (too short to be a sealed piece)")
        from cryptography.exceptions import InvalidTag

        piece = memoryview(piece)
        body, nonce = piece[:-NONCE], bytes(piece[-NONCE:])
        ad = associated_data(self.store_id, part_id, index)
        try:
            if into is None:
                return self._aead.decrypt(nonce, body, ad)
            self._aead.decrypt_into(nonce, body, ad, into[:len(body) - TAG])
            return into[:len(body) - TAG]
        except InvalidTag:
            raise AuthenticationFailed("fails authentication: changed, or not this store's piece of this part") \
                from None
