"""The data key and its key slots.

A store's pieces are sealed under one random 256-bit data key. The data key is
never stored as it is: each key slot holds it wrapped (AES-256-GCM) under a key
derived from one password with scrypt, whose parameters the slot records, so
that a password is added or removed by writing or deleting one slot, and no
piece is ever rewritten."""

from __future__ import annotations

import base64
import os
import time

KEY_BYTES = 32
SALT_BYTES = 16
#: scrypt's cost for new slots: 2^15 x 8 x 128 bytes = 32 MiB of memory per derivation.
SCRYPT = {"n": 1 << 15, "r": 8, "p": 1}
#: Bounds on the scrypt parameters a slot may ask for (a crafted slot cannot make an open take hours).
MAX_N, MAX_R, MAX_P = 1 << 22, 32, 16
SLOT_FORMAT = 1


class DataKey:
    """The 32 secret bytes every piece of a store is sealed under. Its repr
    and str never show them (a key in a traceback, a log or a message is a leak)."""

    __slots__ = ("secret",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) != KEY_BYTES:
            raise ValueError("a data key is 32 bytes")
        self.secret = bytes(secret)

    @classmethod
    def new(cls) -> DataKey:
        return cls(os.urandom(KEY_BYTES))

    def __repr__(self) -> str:
        return "DataKey(<secret>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        import hmac  # not on every start-up: only where keys are compared

        return isinstance(other, DataKey) and hmac.compare_digest(self.secret, other.secret)

    def __hash__(self) -> int:
        return id(self)


def subkey(key: DataKey, purpose: str, length: int = KEY_BYTES) -> bytes:
    """A key for one purpose derived from the data key (so no two purposes share
    a key): HKDF-SHA256(data key, no salt, info = `pfs-subkey-1:PURPOSE`) -> `length` bytes."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(hashes.SHA256(), length, None, f"pfs-subkey-1:{purpose}".encode()).derive(key.secret)


class WrongPassword(Exception):
    """No slot opens with the password given."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)


def slot_ad(slot_id: str) -> bytes:
    """What a wrapped key is bound to: its slot's id (a wrapped key pasted into another slot fails)."""
    return f"pfs-key-slot-{SLOT_FORMAT}:{slot_id}".encode()


def _wrapping_key(password: bytes, kdf: dict) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt  # see pieces.PieceCipher on why here

    return Scrypt(salt=_unb64(kdf["salt"]), length=KEY_BYTES, n=kdf["n"], r=kdf["r"], p=kdf["p"]).derive(password)


def make_slot(key: DataKey, password: bytes, cost: dict | None = None, slot_id: str | None = None,
              salt: bytes | None = None, nonce: bytes | None = None) -> dict:
    """A new slot holding `key` wrapped under `password`. `slot_id`, `salt` and
    `nonce` are for known-answer tests: a slot made by pfs draws them at random."""
    slot_id = slot_id or os.urandom(4).hex()
    kdf = {"name": "scrypt", **(cost or SCRYPT), "salt": _b64(salt or os.urandom(SALT_BYTES))}
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = nonce or os.urandom(12)
    wrapped = AESGCM(_wrapping_key(password, kdf)).encrypt(nonce, key.secret, slot_ad(slot_id))
    return {"format": SLOT_FORMAT, "id": slot_id, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": os.uname().nodename, "kdf": kdf, "cipher": "aes-256-gcm", "nonce": _b64(nonce),
            "wrapped": _b64(wrapped)}


def slot_ok(slot: object) -> bool:
    """Whether `slot` is a slot this pfs can try a password on (never trusted further)."""
    try:
        kdf = slot["kdf"]
        return (slot["format"] == SLOT_FORMAT and type(slot["id"]) is str and slot["id"].isalnum()
                and kdf["name"] == "scrypt" and slot["cipher"] == "aes-256-gcm"
                and all(type(kdf[k]) is int for k in ("n", "r", "p"))
                and 2 <= kdf["n"] <= MAX_N and kdf["n"] & (kdf["n"] - 1) == 0
                and 1 <= kdf["r"] <= MAX_R and 1 <= kdf["p"] <= MAX_P
                and len(_unb64(kdf["salt"])) >= SALT_BYTES and len(_unb64(slot["nonce"])) == 12
                and len(_unb64(slot["wrapped"])) == KEY_BYTES + 16
                and type(slot["created"]) is str and type(slot["host"]) is str)
    except (TypeError, KeyError, ValueError, AttributeError):
        return False


def unwrap(slot: dict, password: bytes) -> DataKey:
    """The data key a slot holds; WrongPassword if `password` is not the slot's."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        secret = AESGCM(_wrapping_key(password, slot["kdf"])).decrypt(
            _unb64(slot["nonce"]), _unb64(slot["wrapped"]), slot_ad(slot["id"]))
    except InvalidTag:
        raise WrongPassword from None
    return DataKey(secret)


def open_slots(slots: list[dict], password: bytes) -> tuple[DataKey, str]:
    """The data key and the id of the first slot `password` opens; WrongPassword if none does.
    A slot that is not well formed is skipped (see slot_ok)."""
    for slot in slots:
        if slot_ok(slot):
            try:
                return unwrap(slot, password), slot["id"]
            except WrongPassword:
                continue
    raise WrongPassword
