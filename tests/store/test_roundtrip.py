"""Round trips through the real pfs process, pool and registries."""

import pytest

from helpers import CHUNK, make_file


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 7 * CHUNK + 123])
@pytest.mark.parametrize("kind", ["random", "text"])
def test_put_get_round_trip(pfs, size, kind):
    src = make_file(pfs.cwd / "in.bin", size, kind)
    r = pfs.run("put in.bin\nget 1 out.bin\nexit\n")
    assert r.returncode == 0, r.stderr
    assert (pfs.cwd / "out.bin").read_bytes() == src.read_bytes()
    assert "[1] storing in.bin" in r.stdout


def test_name_with_spaces_and_default_destination(pfs, tmp_path):
    src = make_file(pfs.cwd / "my data.log", 3 * CHUNK, "text")
    dest = tmp_path / "restored"
    dest.mkdir()
    r = pfs.run(f'put "my data.log"\nget 1 "{dest}"\n')
    assert r.returncode == 0, r.stderr
    assert (dest / "my data.log").read_bytes() == src.read_bytes()
