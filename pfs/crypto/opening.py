"""Unlocking a store's encryption as it opens, creating it with `--encrypt`,
and the key slot commands (key add, key list, key remove)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from pfs.crypto import keyring
from pfs.crypto.keys import DataKey, WrongPassword, make_slot, open_slots, subkey
from pfs.crypto.passwords import Passwords
from pfs.crypto.recipients import NotARecipient, Recipient, make_recipient, unwrap_recipient
from pfs.errors import PfsError, StoreError, UsageError

#: What a store's settings say when its pieces are sealed (see docs/encryption.md);
#: NAMES is added to it when its names are sealed too (--encrypt-names).
RECORD = {"format": 1, "cipher": "aes-256-gcm"}
NAMES = {"names": "aes-256-siv"}
WRONG = "the password opens none of the store's key slots"
#: What the forkserver of an encrypted store's pool imports (see pfs.crypto.warm).
CRYPTO_PRELOAD = "pfs.crypto.warm"


def encrypted(config: dict | None) -> bool:
    return bool(config) and "encryption" in config


@dataclass(frozen=True)
class SlotRow:
    """What `key list` shows of a slot."""

    id: str
    kind: str  # "password", "recipient" or "recipient (revoked)"
    created: str
    host: str
    in_use: bool


class StoreKeys:
    """The data key of one store as it is opened: asked for (a password) only if
    the store is encrypted, made at creation with `encrypt`."""

    def __init__(self, passwords: Passwords | None = None, encrypt: bool = False,
                 recipient_file: str | None = None, encrypt_names: bool = False) -> None:
        self.passwords = passwords or Passwords(interactive=False)
        self.encrypt = encrypt
        self.encrypt_names = encrypt_names
        self.names_key: bytes | None = None  # the key names are sealed under, once unlocked (see pfs.crypto.names)
        #: A write-only pfs's recipient file (--recipient-key, $PFS_RECIPIENT_FILE): no password is then asked.
        self.recipient_file = recipient_file or os.environ.get("PFS_RECIPIENT_FILE") or None
        self._key: DataKey | None = None
        self._made = False  # whether _key was made here, for a store this pfs tried to create
        self.slot_id = ""  # the slot the password opened

    def __repr__(self) -> str:
        return f"StoreKeys(encrypt={self.encrypt}, {'unlocked' if self._key else 'locked'})"

    @property
    def write_only(self) -> bool:
        """Whether this pfs holds a recipient's public key only: it stores, and reads nothing back."""
        return self.recipient_file is not None

    def unlock(self, config: dict | None, slots, where: str) -> str:
        """The store id to seal pieces for ('' for a plain or a new store), with
        its data key installed in this process's keyring. A wrong or missing
        password is a UsageError before anything of the store is changed."""
        if not config:
            return ""
        if self.encrypt_names and not (encrypted(config) and config["encryption"].get("names")):
            raise UsageError(f"the store {where} exists and its names are not encrypted; --encrypt-names applies "
                             "to a new store", "put its files into a new store created with --encrypt-names")
        if not encrypted(config):
            if self.write_only:
                raise UsageError(f"the store {where} is not encrypted: a recipient key is for an encrypted store")
            if self.encrypt:
                raise UsageError(f"the store {where} exists and is not encrypted; --encrypt applies to a new store",
                                 "to encrypt its files, put them into a new store created with --encrypt "
                                 "(see docs/encryption.md)")
            return ""
        if config["encryption"] not in (RECORD, {**RECORD, **NAMES}):
            raise StoreError(f"the store {where} is encrypted in a way this pfs does not know", "upgrade pfs")
        if self._key is not None and self._made and self.slot_id not in {s["id"] for s in slots.list()}:
            self._key, self._made = None, False  # another pfs created the store first: its key holds, not ours
        slots.sweep()
        names = bool(config["encryption"].get("names"))
        if self.write_only:
            recipient = self._recipient(config["id"], slots.recipients(), where)
            if names and recipient.names_key is None:
                raise UsageError(f"the recipient file {self.recipient_file} holds no names key, and the store's "
                                 "names are encrypted", "`key add --recipient FILE` writes a new one with it")
            self.names_key = recipient.names_key if names else None
            public = Recipient(recipient.store_id, recipient.id, recipient.public)  # workers get no names key
            keyring.install(config["id"], None, write_only=public)
            return config["id"]
        if self._key is None:
            found = slots.list()
            if not found:
                raise StoreError(f"the store {where} is encrypted and has no key slot left")
            password = self.passwords.current(where)
            try:
                self._key, self.slot_id = open_slots(found, password)
            except WrongPassword:
                raise UsageError(WRONG) from None
        keyring.install(config["id"], self._key, self._privates(slots.recipients()))
        self.names_key = subkey(self._key, "names", 64) if names else None
        return config["id"]

    def _recipient(self, store_id: str, records: list[dict], where: str) -> Recipient:
        """The recipient of this write-only pfs's file, if it is one of the store's and not revoked."""
        path = self.recipient_file
        try:
            with open(os.path.expanduser(path), encoding="ascii", errors="replace") as f:
                recipient = Recipient.parse(f.read(1 << 16))
        except OSError as exc:
            raise UsageError(f"cannot read the recipient file {path}: {exc.strerror}") from None
        except NotARecipient as exc:
            raise UsageError(f"the recipient file {path} is not one pfs writes ({exc})",
                             "`key add --recipient FILE` writes one") from None
        if recipient.store_id != store_id:
            raise UsageError(f"the recipient file {path} is for another store (id {recipient.store_id})")
        record = next((r for r in records if r["id"] == recipient.id), None)
        if record is None or Recipient.of(store_id, record).public != recipient.public:
            raise UsageError(f"recipient {recipient.id} of {path} is not a recipient of the store {where}")
        if record.get("revoked"):
            raise UsageError(f"recipient {recipient.id} of the store {where} was removed on {record['revoked']}",
                             "a key holder can make a new one with `key add --recipient FILE`")
        return recipient

    def _privates(self, records: list[dict]) -> dict:
        """The private keys of the store's recipients, unwrapped under the data key
        (a record that fails authentication is not the store's, and is skipped)."""
        found = {}
        for record in records:
            try:
                found[record["id"]] = unwrap_recipient(record, self._key)
            except NotARecipient:
                continue
        return found

    def create(self, where: str) -> tuple[dict, dict | None]:
        """The settings a new store adds ({} unless `encrypt`), and its first slot:
        a new data key wrapped under the password (asked twice)."""
        if self.encrypt_names and not self.encrypt:
            raise UsageError("--encrypt-names needs --encrypt: names are sealed under the data key")
        if not self.encrypt:
            return {}, None
        if self.write_only:
            raise UsageError("a new encrypted store needs a password, not a recipient key",
                             "create it with a password, then `key add --recipient FILE`")
        password = self.passwords.current(where, confirm=True)
        self._key, self._made = DataKey.new(), True
        slot = make_slot(self._key, password)
        self.slot_id = slot["id"]
        return {"encryption": {**RECORD, **(NAMES if self.encrypt_names else {})}}, slot

    def rows(self, slots) -> list[SlotRow]:
        rows = [SlotRow(s["id"], "password", s["created"], s["host"], s["id"] == self.slot_id) for s in slots.list()]
        return rows + [SlotRow(r["id"], "recipient (removed)" if r.get("revoked") else "recipient", r["created"],
                               r["host"], False) for r in slots.recipients()]

    def add(self, slots, where: str, new_file: str | None = None) -> str:
        """A new slot for a new password (from `new_file`, else asked); its id."""
        slot = make_slot(self._unlocked(), self.passwords.new(where, new_file))
        slots.add(slot)
        return slot["id"]

    def add_recipient(self, slots, store_id: str, path: str) -> str:
        """A new write-only recipient: its record in the store, its public key in
        the new file `path` (refused if it exists); its id."""
        key = self._unlocked()
        record = make_recipient(key)
        recipient = Recipient.of(store_id, record)
        recipient.names_key = self.names_key
        text = (f"# pfs recipient {recipient.id} of store {store_id}: a pfs given this file\n"
                f"# (--recipient-key FILE) stores files there and reads none back\n"
                + ("# It also holds the key of the store's names: keep it as secret as they are.\n"
                   if self.names_key else "") + recipient.text())
        try:
            fd = os.open(os.path.expanduser(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                         0o600 if self.names_key else 0o644)
        except OSError as exc:
            raise UsageError(f"cannot create the recipient file {path}: {exc.strerror}",
                             "name a file that does not exist yet") from None
        try:
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            slots.add(record)
        except BaseException:
            os.unlink(os.path.expanduser(path))
            raise
        keyring.add_recipient(store_id, record["id"], unwrap_recipient(record, key))  # workers started since
        return record["id"]

    def remove(self, slots, slot_id: str, where: str, new_file: str | None = None) -> str:
        """Remove a slot: never the last one, and the one in use only if the new
        password (--new-password-file or a prompt) opens another, so the store
        still opens afterwards; or revoke a recipient (its record is kept, marked
        removed: the parts it sealed open only with its private key). Decided and
        done under the slots' lock. Returns which kind it was."""
        self._unlocked()
        with slots.changing() as (everything, remove, rewrite):
            recipient = next((r for r in everything if r["id"] == slot_id and r.get("kind") == "recipient"), None)
            if recipient is not None:  # kept, revoked: the parts it sealed open only with its private key
                if not recipient.get("revoked"):
                    rewrite({**recipient, "revoked": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
                return "recipient"
            found = [s for s in everything if s.get("kind") != "recipient"]
            ids = [s["id"] for s in found]
            if slot_id not in ids:
                raise UsageError(f"there is no key slot {slot_id}", "`key list` shows them")
            if len(ids) == 1:
                raise UsageError(f"key slot {slot_id} is the store's last one: without it nothing opens the store",
                                 "`key add` another password first")
            if slot_id == self.slot_id:
                self._check_another(found, slot_id, where, new_file)
            remove(slot_id)
        if slot_id == self.slot_id:
            self.slot_id = ""
        return "password"

    def _check_another(self, found: list[dict], slot_id: str, where: str, new_file: str | None) -> None:
        """Refuse to remove the slot in use unless the new password opens another one."""
        advice = "give a password that opens another slot with --new-password-file FILE (or on a terminal)"
        try:
            password = self.passwords.new(where, new_file)
        except UsageError:
            raise UsageError(f"key slot {slot_id} is the one this pfs opened the store with", advice) from None
        try:
            open_slots([s for s in found if s["id"] != slot_id], password)
        except WrongPassword:
            raise UsageError(f"the new password opens no other key slot: key slot {slot_id} is kept", advice) from None

    def _unlocked(self) -> DataKey:
        if self.write_only:
            raise UsageError(f"{keyring.WRITE_ONLY}, and changes no key", "open the store with a password")
        if self._key is None:
            raise PfsError("the store is not encrypted", "a store is encrypted when it is created (--encrypt)")
        return self._key
