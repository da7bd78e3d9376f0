"""The data keys this process holds, by store id: the store installs its key
as it opens, and hands the keyring to each worker in the worker's start-up
arguments (through the pipe multiprocessing opens to that worker alone), so a
key never travels in a task, and the forkserver, started before any store
opens, never holds one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfs.crypto.pieces import PieceCipher

if TYPE_CHECKING:
    from pfs.crypto.keys import DataKey

_keys: dict[str, DataKey] = {}
_ciphers: dict[str, PieceCipher] = {}


class NoKey(Exception):
    """This process holds no key for the store a task names."""


def install(store_id: str, key: DataKey) -> None:
    _keys[store_id] = key
    _ciphers.pop(store_id, None)


def forget(store_id: str) -> None:
    _keys.pop(store_id, None)
    _ciphers.pop(store_id, None)


def cipher(store_id: str) -> PieceCipher:
    """The cipher of a store whose key this process holds."""
    found = _ciphers.get(store_id)
    if found is None:
        if store_id not in _keys:
            raise NoKey(f"no key for store {store_id} in this process")
        found = _ciphers[store_id] = PieceCipher(store_id, _keys[store_id])
    return found


def handover() -> dict[str, DataKey]:
    """The keys to give a worker as it starts (see receive)."""
    return dict(_keys)


def receive(keys: dict[str, DataKey]) -> None:
    """Take the keys handed over by the process that started this worker."""
    for store_id, key in keys.items():
        install(store_id, key)
