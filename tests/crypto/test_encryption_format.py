"""The on-disk format of docs/encryption.md: known answers (a fixed key, salt
and nonce give fixed bytes, so a change that would break old stores fails
here), and an independent reader written from the document against
pycryptodomex, not the library pfs uses."""

from __future__ import annotations

import base64
import os

import pytest
from Cryptodome.Cipher import AES
from Cryptodome.Hash import SHA256
from Cryptodome.Protocol import DH
from Cryptodome.Protocol.KDF import HKDF, scrypt

from pfs.crypto.keys import DataKey, WrongPassword, make_slot, open_slots, slot_ok, unwrap
from pfs.crypto.pieces import OVERHEAD, AuthenticationFailed, PieceCipher
from pfs.crypto.recipients import NotARecipient, Recipient, make_recipient, open_part, recipient_ok, unwrap_recipient

KEY = DataKey(bytes(range(32)))
STORE = "0123456789abcdef0123456789abcdef"
PART = "fedcba9876543210fedcba9876543210"
NONCE = bytes(range(100, 112))
CHEAP = {"n": 1024, "r": 8, "p": 1}


# -- an independent reader, from docs/encryption.md only ------------------------------------

def doc_unwrap(slot: dict, password: bytes) -> bytes:
    """The data key of a slot: scrypt(password, salt, N, r, p) -> 32 bytes; AES-256-GCM
    open of `wrapped` (ciphertext ‖ tag) with `nonce` and AD `pfs-key-slot-1:ID`."""
    kdf = slot["kdf"]
    wrapping = scrypt(password, base64.b64decode(kdf["salt"]), 32, N=kdf["n"], r=kdf["r"], p=kdf["p"])
    wrapped = base64.b64decode(slot["wrapped"])
    aes = AES.new(wrapping, AES.MODE_GCM, nonce=base64.b64decode(slot["nonce"]))
    aes.update(f"pfs-key-slot-1:{slot['id']}".encode())
    return aes.decrypt_and_verify(wrapped[:-16], wrapped[-16:])


def doc_open(key: bytes, store_id: str, part_id: str, index: int, piece: bytes) -> bytes:
    """A piece is ciphertext ‖ tag (16) ‖ nonce (12), AD `pfs-piece-1:STORE:PART:INDEX`."""
    aes = AES.new(key, AES.MODE_GCM, nonce=piece[-12:])
    aes.update(f"pfs-piece-1:{store_id}:{part_id}:{index}".encode())
    return aes.decrypt_and_verify(piece[:-28], piece[-28:-12])


def doc_subkey(key: bytes, purpose: str, length: int = 32) -> bytes:
    """HKDF-SHA256(data key, no salt, info `pfs-subkey-1:PURPOSE`) -> `length` bytes."""
    return HKDF(key, length, b"", SHA256, context=f"pfs-subkey-1:{purpose}".encode())


def doc_open_name(names_key: bytes, sealed: str) -> str:
    """Each segment: base64url (no padding) of tag ‖ AES-SIV ciphertext of the segment
    padded with 0x80 then zeros to 16 bytes, AD `pfs-name-1:` + the sealed parent path."""
    out = []
    for i, segment in enumerate(sealed.split("/")):
        data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        siv = AES.new(names_key, AES.MODE_SIV)
        siv.update(b"pfs-name-1:" + "/".join(sealed.split("/")[:i]).encode())
        out.append(siv.decrypt_and_verify(data[16:], data[:16]).rstrip(b"\0")[:-1].decode())
    return "/".join(out)


def doc_recipient_private(record: dict, key: bytes) -> bytes:
    """A recipient's private key: AES-256-GCM open of `wrapped` under the data key's
    `recipient-wrap` subkey, with `nonce` and AD `pfs-recipient-1:ID:PUBLIC` (base64 as in the record)."""
    wrapped = base64.b64decode(record["wrapped"])
    aes = AES.new(doc_subkey(key, "recipient-wrap"), AES.MODE_GCM, nonce=base64.b64decode(record["nonce"]))
    aes.update(f"pfs-recipient-1:{record['id']}:{record['public']}".encode())
    return aes.decrypt_and_verify(wrapped[:-16], wrapped[-16:])


def doc_part_key(private: bytes, public: bytes, stanza: str, store_id: str, part_id: str) -> bytes:
    """The key of a part sealed to a recipient: stanza `RECIPIENT:EPHEMERAL` (base64);
    HKDF-SHA256(X25519(private, ephemeral), salt ephemeral ‖ public, info `pfs-part-key-1:STORE:PART`)."""
    epk = base64.b64decode(stanza.split(":")[1])
    shared = DH.key_agreement(static_priv=DH.import_x25519_private_key(private),
                              static_pub=DH.import_x25519_public_key(epk), kdf=lambda x: x)
    return HKDF(shared, 32, epk + public, SHA256, context=f"pfs-part-key-1:{store_id}:{part_id}".encode())


# -- known answers ----------------------------------------------------------------------------

def test_a_piece_sealed_with_a_fixed_key_and_nonce_is_fixed_bytes() -> None:
    piece = PieceCipher(STORE, KEY).seal(b"pfs known answer", PART, 3, nonce=NONCE)
    assert bytes(piece).hex() == ("387dad46128739e950423e86a9120f8f"  # ciphertext
                                  "fb9b0c2b8ddec0180997487934072294"  # tag
                                  "6465666768696a6b6c6d6e6f")  # nonce
    assert PieceCipher(STORE, KEY).open(piece, PART, 3) == b"pfs known answer"
    assert doc_open(KEY.secret, STORE, PART, 3, bytes(piece)) == b"pfs known answer"


def test_a_slot_made_with_a_fixed_salt_and_nonce_is_fixed_bytes() -> None:
    slot = make_slot(KEY, b"correct horse", CHEAP, "a1b2c3d4", bytes(range(16)), bytes(range(12)))
    assert slot["wrapped"] == "LoqAXDQYWIk+13bvEp/L30BF87Fez3KAJAMQgkrK3yy2ei1FMNLfYigZYSYsvPhW"
    assert slot["kdf"] == {"name": "scrypt", "n": 1024, "r": 8, "p": 1, "salt": "AAECAwQFBgcICQoLDA0ODw=="}
    assert slot_ok(slot)
    assert unwrap(slot, b"correct horse") == KEY
    assert doc_unwrap(slot, b"correct horse") == KEY.secret


def test_a_recipient_and_a_part_sealed_to_it_with_fixed_keys_are_fixed_bytes() -> None:
    record = make_recipient(KEY, "a1b2c3d4", bytes(range(32, 64)), bytes(range(12)))
    assert record["public"] == "NYBy1jZYgNGu6jKa35EhODhR7SGijjt16WXQ0s0WYlQ="
    assert record["wrapped"] == "jYM4m7YnTzqUqxGOO9Gt3lkXT6e4I1uWPdWYVjcmsLvg5Y1rBUVAPEy1yqnpK2IV"
    assert recipient_ok(record)
    private = unwrap_recipient(record, KEY)
    assert doc_recipient_private(record, KEY.secret) == private.secret == bytes(range(32, 64))
    stanza, part_key = Recipient.of(STORE, record).seal_part(PART, bytes(range(64, 96)))
    assert stanza == "a1b2c3d4:eaYx7t4b+cmPEgMs3q3Q56B5OY/HhriMyEbsia+FpRo="
    assert part_key.secret.hex() == "b490563d43ea26e5c8b5f505d46b2688b439c70de8243ef1a4a93c57c65059cc"
    assert open_part(private, stanza, STORE, PART) == part_key
    public = base64.b64decode(record["public"])
    assert doc_part_key(private.secret, public, stanza, STORE, PART) == part_key.secret
    piece = PieceCipher(STORE, part_key).seal(b"pfs known answer", PART, 0, nonce=NONCE)
    assert doc_open(part_key.secret, STORE, PART, 0, bytes(piece)) == b"pfs known answer"


def test_a_recipient_file_line_round_trips_and_a_bad_one_is_refused() -> None:
    recipient = Recipient.of(STORE, make_recipient(KEY))
    again = Recipient.parse(f"# a comment\n{recipient.line()}\n")
    assert (again.store_id, again.id, again.public) == (STORE, recipient.id, recipient.public)
    for bad in ("", "age1xyz", recipient.line().replace("pfs-recipient-1", "pfs-recipient-9"), recipient.line()[:-8]):
        with pytest.raises(NotARecipient):
            Recipient.parse(bad)


def test_a_part_key_is_bound_to_its_part_and_a_wrapped_private_key_to_its_record() -> None:
    record = make_recipient(KEY)
    private = unwrap_recipient(record, KEY)
    stanza, part_key = Recipient.of(STORE, record).seal_part(PART)
    assert open_part(private, stanza, STORE, "0" * 32) != part_key
    assert open_part(private, stanza, "f" * 32, PART) != part_key
    with pytest.raises(NotARecipient):
        unwrap_recipient(record, DataKey.new())
    with pytest.raises(NotARecipient):
        unwrap_recipient({**record, "public": make_recipient(KEY)["public"]}, KEY)


def test_a_name_sealed_with_a_fixed_key_is_fixed_text() -> None:
    from pfs.crypto.keys import subkey
    from pfs.crypto.names import NameSealer

    names_key = subkey(KEY, "names", 64)
    assert names_key == doc_subkey(KEY.secret, "names", 64)
    sealer = NameSealer(names_key)
    sealed = sealer.seal("logs/2026/app.log")
    assert sealed == ("WMQ4_2X4d-R5I8HMCVt0g9IiBxovNQrxo0nJoT8TEGA/eXFrynBXd2M3O1d0JKdMBDVj8glrHZZE6ovEdwChv8c/"
                      "gqyGP_jVTEYE7CiZsPRG-ISanR2CDIWwQkm7POhIG14")
    assert sealer.seal("logs/2026/") == sealed.rsplit("/", 1)[0] + "/"  # a prefix seals to a prefix
    assert sealer.open(sealed) == doc_open_name(names_key, sealed) == "logs/2026/app.log"
    assert NameSealer(names_key).open(sealed) == "logs/2026/app.log"  # nothing cached
    assert sealer.seal("other/app.log").split("/")[1] != sealed.split("/")[2]  # bound to its parent


def test_a_name_of_another_key_or_place_fails() -> None:
    from pfs.crypto.names import NameSealer
    from pfs.errors import PfsError

    ours, theirs = NameSealer(bytes(64)), NameSealer(bytes(range(64)))
    a, b = ours.seal("a/x").split("/")
    for sealed, sealer in ((theirs.seal("a"), NameSealer(bytes(64))), (f"{b}/{a}", NameSealer(bytes(64)))):
        with pytest.raises(PfsError):
            sealer.open(sealed)


# -- what fails ----------------------------------------------------------------------------

@pytest.mark.parametrize("store, part, index", [(STORE, PART, 4), (STORE, "0" * 32, 3), ("f" * 32, PART, 3)])
def test_a_piece_opened_in_another_place_fails(store: str, part: str, index: int) -> None:
    piece = PieceCipher(STORE, KEY).seal(os.urandom(1000), PART, 3)
    with pytest.raises(AuthenticationFailed):
        PieceCipher(store, KEY).open(piece, part, index)


def test_a_flipped_bit_or_a_truncation_fails() -> None:
    cipher = PieceCipher(STORE, KEY)
    piece = bytearray(cipher.seal(b"x" * 5000, PART, 0))
    for damaged in (piece[:-1], piece[:OVERHEAD - 1], piece[:20] + bytes([piece[20] ^ 1]) + piece[21:]):
        with pytest.raises(AuthenticationFailed):
            cipher.open(bytes(damaged), PART, 0)


def test_another_stores_key_fails() -> None:
    piece = PieceCipher(STORE, KEY).seal(b"data", PART, 0)
    with pytest.raises(AuthenticationFailed):
        PieceCipher(STORE, DataKey.new()).open(piece, PART, 0)


def test_sealing_into_a_buffer_gives_what_sealing_gives() -> None:
    cipher, data = PieceCipher(STORE, KEY), os.urandom(70000)
    buffer = memoryview(bytearray(len(data) + OVERHEAD + 5))
    sealed = cipher.seal(data, PART, 1, buffer, NONCE)
    assert bytes(sealed) == cipher.seal(data, PART, 1, nonce=NONCE)
    out = memoryview(bytearray(len(data) + 9))
    assert bytes(cipher.open(sealed, PART, 1, out)) == data


def test_fresh_nonces() -> None:
    cipher = PieceCipher(STORE, KEY)
    assert len({bytes(cipher.seal(b"same", PART, 0)[-12:]) for _ in range(1000)}) == 1000


def test_a_wrong_password_or_a_slot_moved_to_another_id_opens_nothing() -> None:
    slot = make_slot(KEY, b"right", CHEAP)
    with pytest.raises(WrongPassword):
        open_slots([slot], b"wrong")
    with pytest.raises(WrongPassword):
        open_slots([{**slot, "id": "0badc0de"}], b"right")
    other = make_slot(KEY, b"other", CHEAP)
    assert open_slots([slot, other], b"other") == (KEY, other["id"])


@pytest.mark.parametrize("change", [{"kdf": {"name": "scrypt", "n": 1 << 30, "r": 8, "p": 1, "salt": "AAAA"}},
                                    {"format": 2}, {"id": "../x"}, {"wrapped": "!!"}, {"cipher": "rot13"}])
def test_a_crafted_slot_is_skipped(change: dict) -> None:
    slot = {**make_slot(KEY, b"pw", CHEAP), **change}
    assert not slot_ok(slot)
    with pytest.raises(WrongPassword):
        open_slots([slot], b"pw")


def test_the_key_never_shows() -> None:
    import pickle

    assert KEY.secret.hex() not in repr(KEY) + str(KEY) + repr(PieceCipher(STORE, KEY))
    assert pickle.loads(pickle.dumps(KEY)) == KEY


# -- a stored file read back by the independent reader ---------------------------------------

def _read_stored_file(store, file_id: int, password: bytes) -> bytes:
    """A file's bytes from its manifest, the store's key slot and the pieces on
    its volumes, by docs/encryption.md alone (pycryptodomex for the crypto,
    zstandard for the codec, pyeclib for shards)."""
    import json
    import zstandard

    from helpers import read_manifest, volume_dirs

    config = json.loads((store / "store.json").read_bytes())
    records = [json.loads(p.read_bytes()) for p in (store / "keys").glob("*.json")]
    slot = next(r for r in records if "kdf" in r)
    recipients = {r["id"]: r for r in records if r.get("kind") == "recipient"}
    key, dirs = doc_unwrap(slot, password), volume_dirs(store)
    manifest, out = read_manifest(store, file_id), b""
    for part in manifest["parts"]:
        pid, part_key = part["id"], key
        if part.get("sealed"):  # sealed by a write-only pfs to one of the store's recipients
            record = recipients[part["sealed"].split(":")[0]]
            part_key = doc_part_key(doc_recipient_private(record, key), base64.b64decode(record["public"]),
                                    part["sealed"], config["id"], pid)

        def piece(volume: int, name: str, index: int) -> bytes:
            return doc_open(part_key, config["id"], pid, index,
                            (dirs[volume] / name[:2] / name[2:4] / name).read_bytes())
        if part.get("shards"):
            from pyeclib.ec_iface import ECDriver

            k, m = map(int, manifest["file"]["ec"].split("+"))
            fragments = [piece(s["volume"], f"{pid}.{j}", j) for j, s in enumerate(part["shards"])]
            assert [len(f) for f in fragments] == [s["size"] for s in part["shards"]]
            payload = ECDriver(k=k, m=m, ec_type="isa_l_rs_vand").decode(fragments[:k])
        else:
            copies = {piece(v, pid, 0) for v in part["copies"]}
            assert len(copies) == 1  # every copy is the same sealed piece
            payload = copies.pop()
        assert len(payload) == part["stored"]
        out += payload if part["codec"] == "none" else zstandard.ZstdDecompressor().decompress(
            payload, max_output_size=part["size"])
    return out


def test_the_documented_format_reads_a_stored_file_back_byte_for_byte(tmp_path, monkeypatch) -> None:
    from helpers import make_file, run_pfs

    (tmp_path / "pw").write_text("a password to read back by the document\n")
    monkeypatch.setenv("PFS_PASSWORD_FILE", str(tmp_path / "pw"))
    store, work = tmp_path / "store", tmp_path / "work"
    work.mkdir()
    for v in ("v1", "v2"):
        (tmp_path / v).mkdir()
    make_file(work / "log", 300_000, "text")
    make_file(work / "random", 200_001)
    script = f"volume add {tmp_path / 'v1'}\nvolume add {tmp_path / 'v2'}\nput log\nput random\nwait\n"
    r = run_pfs(store, script, "--encrypt", cwd=work)
    assert r.returncode == 0, r.stderr
    r = run_pfs(store, "put log log2\nput random random2\nwait\n", "--copies", "2", cwd=work)
    assert r.returncode == 0, r.stderr
    r = run_pfs(store, "put log log3\nwait\n", "--ec", "2+1", cwd=work)
    assert r.returncode == 0, r.stderr
    password = b"a password to read back by the document"
    for file_id, source in ((1, "log"), (2, "random"), (3, "log"), (4, "random"), (5, "log")):
        assert _read_stored_file(store, file_id, password) == (work / source).read_bytes(), file_id


def test_the_documented_format_reads_back_what_a_write_only_pfs_stored(tmp_path, monkeypatch) -> None:
    from helpers import make_file, read_manifest, run_pfs

    (tmp_path / "pw").write_text("a password to read back by the document\n")
    monkeypatch.setenv("PFS_PASSWORD_FILE", str(tmp_path / "pw"))
    store, work = tmp_path / "store", tmp_path / "work"
    work.mkdir()
    for v in ("v1", "v2"):
        (tmp_path / v).mkdir()
    make_file(work / "log", 300_000, "text")
    make_file(work / "random", 200_001)
    script = f"volume add {tmp_path / 'v1'}\nvolume add {tmp_path / 'v2'}\nkey add --recipient {tmp_path / 'rcpt'}\n"
    assert run_pfs(store, script, "--encrypt", cwd=work).returncode == 0
    monkeypatch.delenv("PFS_PASSWORD_FILE")
    write_only = ("--recipient-key", str(tmp_path / "rcpt"))
    assert run_pfs(store, "put log\nput random\nwait\n", *write_only, "--copies", "2", cwd=work).returncode == 0
    r = run_pfs(store, "put log log2\nwait\n", *write_only, "--ec", "2+1", "--chunk-size", "64k", cwd=work)
    assert r.returncode == 0, r.stderr
    password = b"a password to read back by the document"
    for file_id, source in ((1, "log"), (2, "random"), (3, "log")):
        assert all(p["sealed"] for p in read_manifest(store, file_id)["parts"])
        assert _read_stored_file(store, file_id, password) == (work / source).read_bytes(), file_id
