"""Unlocking a store's encryption as it opens, creating it with `--encrypt`,
and the key slot commands (key add, key list, key remove)."""

from __future__ import annotations

from dataclasses import dataclass

from pfs.crypto import keyring
from pfs.crypto.keys import DataKey, WrongPassword, make_slot, open_slots
from pfs.crypto.passwords import Passwords
from pfs.errors import PfsError, StoreError, UsageError

#: What a store's settings say when its pieces are sealed (see docs/encryption.md).
RECORD = {"format": 1, "cipher": "aes-256-gcm"}
WRONG = "the password opens none of the store's key slots"


def encrypted(config: dict | None) -> bool:
    return bool(config) and "encryption" in config


@dataclass(frozen=True)
class SlotRow:
    """What `key list` shows of a slot."""

    id: str
    created: str
    host: str
    in_use: bool


class StoreKeys:
    """The data key of one store as it is opened: asked for (a password) only if
    the store is encrypted, made at creation with `encrypt`."""

    def __init__(self, passwords: Passwords | None = None, encrypt: bool = False) -> None:
        self.passwords = passwords or Passwords(interactive=False)
        self.encrypt = encrypt
        self._key: DataKey | None = None
        self._made = False  # whether _key was made here, for a store this pfs tried to create
        self.slot_id = ""  # the slot the password opened

    def __repr__(self) -> str:
        return f"StoreKeys(encrypt={self.encrypt}, {'unlocked' if self._key else 'locked'})"

    def unlock(self, config: dict | None, slots, where: str) -> str:
        """The store id to seal pieces for ('' for a plain or a new store), with
        its data key installed in this process's keyring. A wrong or missing
        password is a UsageError before anything of the store is changed."""
        if not config:
            return ""
        if not encrypted(config):
            if self.encrypt:
                raise UsageError(f"the store {where} exists and is not encrypted; --encrypt applies to a new store",
                                 "to encrypt its files, put them into a new store created with --encrypt "
                                 "(see docs/encryption.md)")
            return ""
        if config["encryption"] != RECORD:
            raise StoreError(f"the store {where} is encrypted in a way this pfs does not know", "upgrade pfs")
        if self._key is not None and self._made and self.slot_id not in {s["id"] for s in slots.list()}:
            self._key, self._made = None, False  # another pfs created the store first: its key holds, not ours
        if self._key is None:
            found = slots.list()
            if not found:
                raise StoreError(f"the store {where} is encrypted and has no key slot left")
            password = self.passwords.current(where)
            try:
                self._key, self.slot_id = open_slots(found, password)
            except WrongPassword:
                raise UsageError(WRONG) from None
        keyring.install(config["id"], self._key)
        return config["id"]

    def create(self, where: str) -> tuple[dict, dict | None]:
        """The settings a new store adds ({} unless `encrypt`), and its first slot:
        a new data key wrapped under the password (asked twice)."""
        if not self.encrypt:
            return {}, None
        password = self.passwords.current(where, confirm=True)
        self._key, self._made = DataKey.new(), True
        slot = make_slot(self._key, password)
        self.slot_id = slot["id"]
        return {"encryption": dict(RECORD)}, slot

    def rows(self, slots) -> list[SlotRow]:
        return [SlotRow(s["id"], s["created"], s["host"], s["id"] == self.slot_id) for s in slots.list()]

    def add(self, slots, where: str, new_file: str | None = None) -> str:
        """A new slot for a new password (from `new_file`, else asked); its id."""
        slot = make_slot(self._unlocked(), self.passwords.new(where, new_file))
        slots.add(slot)
        return slot["id"]

    def remove(self, slots, slot_id: str, where: str, new_file: str | None = None) -> None:
        """Remove a slot: never the last one, and the one in use only if the new
        password (--new-password-file or a prompt) opens another, so the store
        still opens afterwards. Decided and done under the slots' lock."""
        self._unlocked()
        with slots.changing() as (found, remove):
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
        if self._key is None:
            raise PfsError("the store is not encrypted", "a store is encrypted when it is created (--encrypt)")
        return self._key
