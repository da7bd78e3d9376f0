"""fsspec's recursive put, get and rm of a directory are one put_tree, get_tree
or delete_tree: directories (empty ones too) stay directories, symlinks links."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("fsspec")

from pfs.library import api  # noqa: E402
from pfs.library.fs import PfsFileSystem  # noqa: E402


@pytest.fixture
def fs(tmp_path):
    fs = PfsFileSystem(store=str(tmp_path / "store"), workers=2, skip_instance_cache=True)
    yield fs
    fs.store.close()


def tree(top):
    (top / "empty").mkdir(parents=True)
    (top / "sub").mkdir()
    for i in range(20):
        (top / "sub" / f"f{i}").write_bytes(os.urandom(100 + i))
    (top / "link").symlink_to("sub/f3")
    return top


def calls_of(monkeypatch, *methods: str) -> dict[str, int]:
    """Count the calls of the API's per-file methods."""
    calls = dict.fromkeys(methods, 0)
    for method in methods:
        original = getattr(api.Store, method)

        def counted(self, *args, _original=original, _method=method, **kwargs):
            calls[_method] += 1
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(api.Store, method, counted)
    return calls


def test_a_recursive_put_stores_the_tree_as_put_r_does(fs, tmp_path, monkeypatch):
    src = tree(tmp_path / "src")
    calls = calls_of(monkeypatch, "put", "open")
    fs.makedirs("backup")
    fs.put(str(src), "backup/", recursive=True)
    assert calls == {"put": 0, "open": 0}
    assert fs.isdir("backup/src/empty") and fs.ls("backup/src/empty") == []
    assert fs.info("backup/src/link")["type"] == "link" and fs.islink("backup/src/link")
    assert fs.info("backup/src/link")["destination"] == "sub/f3" and not fs.islink("backup/src/sub/f3")
    assert fs.cat("backup/src/sub/f7") == (src / "sub" / "f7").read_bytes()
    fs.put(str(src) + "/", "flat", recursive=True)  # a trailing slash: the contents, as fsspec copies them
    assert fs.isfile("flat/sub/f0") and fs.isdir("flat/empty")


def test_a_recursive_get_restores_the_tree_as_get_r_does(fs, tmp_path, monkeypatch):
    src = tree(tmp_path / "src")
    fs.put(str(src), "t", recursive=True)
    calls = calls_of(monkeypatch, "get", "open")
    out = tmp_path / "out"
    fs.get("t", str(out), recursive=True)
    assert calls == {"get": 0, "open": 0}
    assert (out / "empty").is_dir() and os.readlink(out / "link") == "sub/f3"
    assert sorted(os.listdir(out / "sub")) == sorted(os.listdir(src / "sub"))
    assert (out / "sub" / "f9").read_bytes() == (src / "sub" / "f9").read_bytes()
    (out / "sub" / "f9").write_bytes(b"changed")
    fs.get("t", str(out), recursive=True)  # into an existing directory: t goes in it, as fsspec puts it
    assert (out / "t" / "sub" / "f9").read_bytes() == (src / "sub" / "f9").read_bytes()


def test_a_recursive_rm_deletes_the_tree_at_once(fs, tmp_path, monkeypatch):
    fs.put(str(tree(tmp_path / "src")), "t", recursive=True)
    fs.pipe("other", b"stays")
    calls = calls_of(monkeypatch, "delete")
    fs.rm("t", recursive=True)
    assert calls == {"delete": 0}
    assert not fs.exists("t") and not fs.exists("t/empty") and fs.ls("") == [fs.info("other")]
    with pytest.raises(FileNotFoundError):
        fs.rm("t", recursive=True)
