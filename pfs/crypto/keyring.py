"""The keys this process holds, by store id: the store installs its data key
(and the private keys of its recipients, unwrapped under it) as it opens, or,
for a write-only pfs, the one recipient's public key alone; and hands the
keyring to each worker in the worker's start-up arguments (through the pipe
multiprocessing opens to that worker alone), so a key never travels in a task,
and the forkserver, started before any store opens, never holds one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pfs.crypto.pieces import PieceCipher

if TYPE_CHECKING:
    from pfs.crypto.keys import DataKey
    from pfs.crypto.recipients import PrivateKey, Recipient


@dataclass
class Held:
    """What this process holds of one store: its data key and its recipients'
    private keys, or (a write-only pfs) only the recipient it seals to."""

    key: DataKey | None = None
    recipients: dict[str, PrivateKey] = field(default_factory=dict)
    write_only: Recipient | None = None

    def __repr__(self) -> str:
        return f"Held({'write-only' if self.write_only else 'data key'}, {len(self.recipients)} recipients)"


_held: dict[str, Held] = {}
_ciphers: dict[str, PieceCipher] = {}


class NoKey(Exception):
    """This process holds no key that opens (or seals) what a task names."""


WRITE_ONLY = "this pfs holds only a recipient key: it is write-only"


def install(store_id: str, key: DataKey | None, recipients: dict[str, PrivateKey] | None = None,
            write_only: Recipient | None = None) -> None:
    _held[store_id] = Held(key, dict(recipients or {}), write_only)
    _ciphers.pop(store_id, None)


def add_recipient(store_id: str, rid: str, private: PrivateKey) -> None:
    _of(store_id).recipients[rid] = private


def forget(store_id: str) -> None:
    _held.pop(store_id, None)
    _ciphers.pop(store_id, None)


def _of(store_id: str) -> Held:
    if store_id not in _held:
        raise NoKey(f"no key for store {store_id} in this process")
    return _held[store_id]


def cipher(store_id: str) -> PieceCipher:
    """The cipher of a store whose data key this process holds."""
    found = _ciphers.get(store_id)
    if found is None:
        held = _of(store_id)
        if held.key is None:
            raise NoKey(WRITE_ONLY)
        found = _ciphers[store_id] = PieceCipher(store_id, held.key)
    return found


def sealing(store_id: str, part_id: str) -> tuple[str, PieceCipher]:
    """How to seal a new part: ("", the data key's cipher), or, in a write-only
    pfs, (the manifest's `sealed` stanza, a cipher under a new part key agreed
    with the recipient)."""
    held = _of(store_id)
    if held.write_only is None:
        return "", cipher(store_id)
    stanza, key = held.write_only.seal_part(part_id)
    return stanza, PieceCipher(store_id, key)


def opening(store_id: str, part_id: str, stanza: str) -> PieceCipher:
    """The cipher that opens (and reseals, for a heal) the pieces of a part:
    the data key's, or for a part a write-only pfs stored, its part key agreed
    again with the recipient's private key. NoKey if this process has none."""
    if not stanza:
        return cipher(store_id)
    from pfs.crypto.recipients import NotARecipient, open_part, stanza_recipient

    held = _of(store_id)
    if held.write_only is not None:
        raise NoKey(WRITE_ONLY)
    try:
        private = held.recipients.get(stanza_recipient(stanza)[0])
        if private is None:
            raise NoKey("its recipient is not one of the store's (removed?)")
        return PieceCipher(store_id, open_part(private, stanza, store_id, part_id))
    except NotARecipient as exc:
        raise NoKey(f"its recipient stanza is damaged ({exc})") from None


def handover() -> dict[str, Held]:
    """The keys to give a worker as it starts (see receive)."""
    return dict(_held)


def receive(held: dict[str, Held]) -> None:
    """Take the keys handed over by the process that started this worker."""
    for store_id, h in held.items():
        install(store_id, h.key, h.recipients, h.write_only)
