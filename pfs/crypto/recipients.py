"""Write-only recipients: an X25519 key pair whose public half lets a pfs seal
pieces that only a holder of the store's data key opens again.

Each part a write-only pfs stores gets its own key, agreed with the recipient
as age and HPKE do: a fresh ephemeral X25519 key, the shared secret of it and
the recipient's public key, and HKDF-SHA256 over that secret to the part key.
The part's pieces are sealed under the part key exactly as pieces are under a
data key (pfs.crypto.pieces), and the manifest records the recipient's id and
the ephemeral public key (`sealed`), which is all a full key holder needs to
agree the same part key with the recipient's private key. That private key is
kept in the store only wrapped under a key derived from the data key, so the
write-only pfs holds nothing that opens a piece, not even its own."""

from __future__ import annotations

import base64
import os
import time

from pfs.crypto.keys import DataKey, subkey

RECIPIENT_FORMAT = 1
KIND = "recipient"
#: The first word of a recipient file's key line (see public_line).
PUBLIC_PREFIX = f"pfs-recipient-{RECIPIENT_FORMAT}"
NAMES_PREFIX = "pfs-names-key-1"
KEY_BYTES = 32


class NotARecipient(ValueError):
    """A recipient record, file or manifest stanza that is not what pfs writes."""


class PrivateKey:
    """A recipient's X25519 private key; its repr never shows it."""

    __slots__ = ("secret",)

    def __init__(self, secret: bytes) -> None:
        self.secret = bytes(secret)

    def __repr__(self) -> str:
        return "PrivateKey(<secret>)"

    __str__ = __repr__


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str, size: int) -> bytes:
    try:
        data = base64.b64decode(text.encode(), validate=True)
    except (ValueError, AttributeError, TypeError):
        raise NotARecipient("not base64") from None
    if len(data) != size:
        raise NotARecipient(f"not {size} bytes")
    return data


def record_ad(rid: str, public: bytes) -> bytes:
    """What a wrapped private key is bound to: its recipient id and public key."""
    return f"pfs-recipient-{RECIPIENT_FORMAT}:{rid}:{_b64(public)}".encode()


def make_recipient(key: DataKey, rid: str | None = None, private: bytes | None = None,
                   nonce: bytes | None = None) -> dict:
    """A new recipient record: a fresh key pair, its private half wrapped under
    the data key's recipient subkey. `rid`, `private` and `nonce` are for
    known-answer tests only."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    rid = rid or os.urandom(4).hex()
    pair = X25519PrivateKey.from_private_bytes(private) if private else X25519PrivateKey.generate()
    secret, public = _raw(pair), _raw(pair.public_key())
    nonce = nonce or os.urandom(12)
    wrapped = AESGCM(subkey(key, "recipient-wrap")).encrypt(nonce, secret, record_ad(rid, public))
    return {"format": RECIPIENT_FORMAT, "kind": KIND, "id": rid,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": os.uname().nodename,
            "cipher": "x25519-hkdf-sha256-aes-256-gcm", "public": _b64(public), "nonce": _b64(nonce),
            "wrapped": _b64(wrapped)}


def _raw(key) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

    if hasattr(key, "private_bytes"):
        return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def recipient_ok(record: object) -> bool:
    """Whether `record` is a recipient record this pfs can use (never trusted further)."""
    try:
        _unb64(record["public"], KEY_BYTES)
        _unb64(record["nonce"], 12)
        _unb64(record["wrapped"], KEY_BYTES + 16)
        return (record["format"] == RECIPIENT_FORMAT and record["kind"] == KIND and type(record["id"]) is str
                and record["id"].isalnum() and record["cipher"] == "x25519-hkdf-sha256-aes-256-gcm"
                and type(record["created"]) is str and type(record["host"]) is str
                and type(record.get("revoked", "")) is str)
    except (TypeError, KeyError, NotARecipient):
        return False


def unwrap_recipient(record: dict, key: DataKey) -> PrivateKey:
    """The private key of a recipient record (NotARecipient if it fails authentication)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    public = _unb64(record["public"], KEY_BYTES)
    try:
        secret = AESGCM(subkey(key, "recipient-wrap")).decrypt(
            _unb64(record["nonce"], 12), _unb64(record["wrapped"], KEY_BYTES + 16), record_ad(record["id"], public))
    except InvalidTag:
        raise NotARecipient(f"recipient {record['id']} fails authentication") from None
    return PrivateKey(secret)


class Recipient:
    """A recipient's public half: what a write-only pfs holds."""

    def __init__(self, store_id: str, rid: str, public: bytes, names_key: bytes | None = None) -> None:
        self.store_id, self.id, self.public = store_id, rid, bytes(public)
        self.names_key = names_key  # a store with encrypted names: the key a write-only pfs seals them under

    def __repr__(self) -> str:
        return f"Recipient({self.id} of store {self.store_id})"

    def text(self) -> str:
        """The recipient file's lines: the key line, and on a store with encrypted
        names `pfs-names-key-1:STORE_ID:NAMES_KEY` (base64, 64 bytes)."""
        names = f"{NAMES_PREFIX}:{self.store_id}:{_b64(self.names_key)}\n" if self.names_key else ""
        return f"{self.line()}\n{names}"

    @classmethod
    def of(cls, store_id: str, record: dict) -> Recipient:
        return cls(store_id, record["id"], _unb64(record["public"], KEY_BYTES))

    def line(self) -> str:
        """The recipient file's key line: `pfs-recipient-1:STORE_ID:RECIPIENT_ID:PUBLIC_KEY` (base64)."""
        return f"{PUBLIC_PREFIX}:{self.store_id}:{self.id}:{_b64(self.public)}"

    @classmethod
    def parse(cls, text: str) -> Recipient:
        """The recipient of a recipient file (its first line that is not a # comment)."""
        lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
        words = lines[0].split(":") if lines else []
        if len(words) != 4 or words[0] != PUBLIC_PREFIX or len(words[1]) != 32 or not words[2].isalnum():
            raise NotARecipient(f"no {PUBLIC_PREFIX}:STORE:ID:KEY line")
        names = [line.split(":") for line in lines[1:] if line.startswith(NAMES_PREFIX + ":")]
        if names and (len(names[0]) != 3 or names[0][1] != words[1]):
            raise NotARecipient(f"a {NAMES_PREFIX} line that is not STORE:KEY of the same store")
        return cls(words[1], words[2], _unb64(words[3], KEY_BYTES), _unb64(names[0][2], 64) if names else None)

    def seal_part(self, part_id: str, ephemeral: bytes | None = None) -> tuple[str, DataKey]:
        """A new part key for part `part_id` and the manifest's `sealed` stanza
        (`RECIPIENT_ID:EPHEMERAL_PUBLIC_KEY`) that lets the recipient agree it
        again. `ephemeral` (a private key) is for known-answer tests only."""
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

        mine = X25519PrivateKey.from_private_bytes(ephemeral) if ephemeral else X25519PrivateKey.generate()
        epk = _raw(mine.public_key())
        shared = mine.exchange(X25519PublicKey.from_public_bytes(self.public))
        return f"{self.id}:{_b64(epk)}", part_key(shared, epk, self.public, self.store_id, part_id)


def stanza_recipient(stanza: str) -> tuple[str, bytes]:
    """(recipient id, ephemeral public key) of a manifest's `sealed` stanza."""
    rid, _, epk = stanza.partition(":")
    if not rid.isalnum():
        raise NotARecipient("not RECIPIENT_ID:KEY")
    return rid, _unb64(epk, KEY_BYTES)


def open_part(private: PrivateKey, stanza: str, store_id: str, part_id: str) -> DataKey:
    """The part key a write-only pfs agreed for part `part_id` (see Recipient.seal_part)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

    _, epk = stanza_recipient(stanza)
    mine = X25519PrivateKey.from_private_bytes(private.secret)
    try:
        shared = mine.exchange(X25519PublicKey.from_public_bytes(epk))
    except ValueError:  # a low-order point: no key is agreed with it
        raise NotARecipient("its ephemeral key agrees no key") from None
    return part_key(shared, epk, _raw(mine.public_key()), store_id, part_id)


def part_key(shared: bytes, epk: bytes, public: bytes, store_id: str, part_id: str) -> DataKey:
    """HKDF-SHA256(shared secret, salt = ephemeral ‖ recipient public key,
    info = `pfs-part-key-1:STORE_ID:PART_ID`) -> 32 bytes."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    info = f"pfs-part-key-{RECIPIENT_FORMAT}:{store_id}:{part_id}".encode()
    return DataKey(HKDF(hashes.SHA256(), KEY_BYTES, epk + public, info).derive(shared))
