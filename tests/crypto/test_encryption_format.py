"""The on-disk format of docs/encryption.md: known answers (a fixed key, salt
and nonce give fixed bytes, so a change that would break old stores fails
here), and an independent reader written from the document against
pycryptodomex, not the library pfs uses."""

from __future__ import annotations

import base64
import os

import pytest
from Cryptodome.Cipher import AES
from Cryptodome.Protocol.KDF import scrypt

from pfs.crypto.keys import DataKey, WrongPassword, make_slot, open_slots, slot_ok, unwrap
from pfs.crypto.pieces import OVERHEAD, AuthenticationFailed, PieceCipher

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
    slot = json.loads(next((store / "keys").glob("*.json")).read_bytes())
    key, dirs = doc_unwrap(slot, password), volume_dirs(store)
    manifest, out = read_manifest(store, file_id), b""
    for part in manifest["parts"]:
        pid = part["id"]

        def piece(volume: int, name: str, index: int) -> bytes:
            return doc_open(key, config["id"], pid, index, (dirs[volume] / name[:2] / name[2:4] / name).read_bytes())
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
