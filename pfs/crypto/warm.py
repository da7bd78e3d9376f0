"""Imported by the worker pool's forkserver where the store is encrypted (see
pfs.store.facade): the AEAD of the cryptography library is loaded there once,
so that each worker forked from it has it (about 11 ms of CPU each otherwise).
A module only: the forkserver still holds no key (see pfs.crypto.keyring)."""

from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: F401
