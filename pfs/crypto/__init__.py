"""Encryption at rest (see docs/encryption.md for the format and the threat model).

keys: the data key and the key slots that wrap it under password-derived keys;
pieces: sealing and opening the pieces written to volumes (AES-256-GCM);
keyring: the data keys this process (a pfs or one of its workers) holds;
passwords: where a password comes from (a file, the environment, a prompt);
slots: where a store keeps its key slots (files in its directory, or rows in its database);
opening: unlocking or creating a store's encryption as it opens.
"""
