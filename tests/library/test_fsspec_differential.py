"""pfs's fsspec filesystem against fsspec's own LocalFileSystem: the same random
sequences of calls on both, comparing every result, every exception's type and
the whole tree after each step (hypothesis stateful testing).

Two differences are pfs's by design and modelled on the local side: directories
are implied by the names under them (the local tree is pruned of empty
directories after each step), and a write whose `with` block raises outside a
transaction leaves nothing, not a truncated file. Names are drawn so that a
file's name is never a directory's (stores made before names were paths may
hold both: see test_a_name_that_is_also_a_file_is_listed_whole)."""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile

import pytest

fsspec = pytest.importorskip("fsspec")
from fsspec.implementations.local import LocalFileSystem  # noqa: E402
from hypothesis import HealthCheck, assume, settings, strategies as st  # noqa: E402
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule  # noqa: E402

from helpers import edit_records  # noqa: E402
from pfs.library.fs import PfsFileSystem  # noqa: E402

DIRS = ["d", "d/e", "k"]
FILES = [posixpath.join(d, leaf) for d in ["", *DIRS] for leaf in ("f", "g")]
dirs = st.sampled_from(DIRS)
files = st.sampled_from(FILES)
paths = st.sampled_from(FILES + DIRS)
patterns = st.sampled_from(["*", "*/*", "d/*", "**", "d/**", "k/?", "*/[fg]", "d/e/*"])
data = st.binary(max_size=24)


class ImpliedDirectories(LocalFileSystem):
    """LocalFileSystem making the parents a write needs, as pfs implies them;
    a copy of nothing makes none (auto_mkdir alone makes them first)."""

    def __init__(self) -> None:
        super().__init__(auto_mkdir=True, skip_instance_cache=True)

    def cp_file(self, path1, path2, **kwargs):
        if not self.exists(path1):
            raise FileNotFoundError(path1)
        super().cp_file(path1, path2, **kwargs)


class Boom(Exception):
    """Raised inside a write's own `with` block, and handled there."""


def outcome(call):
    """What a call gave: ("ok", value) or ("raised", the exception's type)."""
    try:
        return "ok", call()
    except Exception as exc:  # noqa: BLE001 - the type is what is compared
        return "raised", type(exc).__name__


@pytest.fixture(scope="module")
def pfs_fs(tmp_path_factory):
    fs = PfsFileSystem(store=str(tmp_path_factory.mktemp("diff") / "store"), workers=1, skip_instance_cache=True)
    yield fs
    fs.store.close()


class SameAsLocal(RuleBasedStateMachine):
    """Each run starts under a fresh top directory on both sides."""

    pfs: PfsFileSystem
    runs = 0

    def __init__(self) -> None:
        super().__init__()
        SameAsLocal.runs += 1
        self.local = ImpliedDirectories()
        self.tmp = tempfile.mkdtemp(prefix="pfs-diff-")
        self.local_top = self.tmp + "/top"
        os.mkdir(self.local_top)
        self.pfs_top = f"run{SameAsLocal.runs}"
        self.in_transaction = False
        for fs, top in ((self.local, self.local_top), (self.pfs, self.pfs_top)):
            fs.pipe(top + "/z", b"keeps the top")  # a top with nothing in it is no directory in pfs

    def teardown(self) -> None:
        if self.in_transaction:
            self.local.transaction.complete(commit=False)
            self.pfs.transaction.complete(commit=False)
        shutil.rmtree(self.tmp)

    # -- the two sides --

    def both(self, call, *args, **kwargs):
        """`call(fs, *paths-on-that-side, **kwargs)` on each side, outcomes normalized."""
        results = []
        for fs, top in ((self.local, self.local_top), (self.pfs, self.pfs_top)):
            results.append(self.normalize(outcome(lambda: call(fs, *[self.on(top, a) for a in args], **kwargs)), top))
        self.prune()
        assert results[0] == results[1], (call, args, kwargs, results)
        return results[1]

    @staticmethod
    def on(top: str, path):
        if isinstance(path, list):
            return [posixpath.join(top, p) for p in path]
        return posixpath.join(top, path) if path else top

    def normalize(self, result, top: str):
        """Paths relative to the run's top; lists sorted; walks as sets."""
        kind, value = result
        if kind == "raised":
            return result

        def rel(p):
            p = self.local._strip_protocol(p) if top is self.local_top else p
            return posixpath.relpath(p, top) if p != top else ""

        if isinstance(value, (list, tuple)) and value and isinstance(value[0], str):
            return kind, sorted(rel(p) for p in value)
        if isinstance(value, list) and value and isinstance(value[0], tuple):  # walk
            return kind, sorted((rel(root), sorted(ds), sorted(fs)) for root, ds, fs in value)
        if isinstance(value, dict):  # info
            return kind, (rel(value["name"]), value["type"], value["size"] if value["type"] == "file" else 0)
        if isinstance(value, list):
            return kind, []
        return kind, value

    def prune(self) -> None:
        """Directories are implied by files: drop the local side's empty ones."""
        for root, _, _ in sorted(os.walk(self.local_top), key=lambda w: -len(w[0])):
            if root != self.local_top and not os.listdir(root):
                os.rmdir(root)

    # -- writes --

    @rule(path=files, value=data)
    def pipe(self, path, value):
        self.both(lambda fs, p: fs.pipe(p, value), path)

    @rule(path=files, value=data, raises=st.booleans())
    def write(self, path, value, raises):
        def write(fs, p):
            if raises and not self.in_transaction and fs is self.local:
                return None  # pfs leaves nothing of a write that failed (see the module)
            try:
                with fs.open(p, "wb") as f:
                    f.write(value)
                    if raises:
                        raise Boom()
            except Boom:
                pass

        self.both(write, path)

    def destination(self, source: str, dest: str, into_new: bool) -> str:
        """A file goes to a file's name or into a directory, a directory to a
        directory's: no file is made where a directory's name is expected. A
        copy goes into a new directory given with a trailing slash; a move
        (shutil.move renames to the name itself) only into one that exists."""
        assume(not (source in DIRS and dest in FILES))
        if source in FILES and dest in DIRS and not self.local.isdir(self.on(self.local_top, dest)):
            assume(into_new)
            return dest + "/"
        return dest

    @rule(path1=paths, path2=paths, recursive=st.booleans())
    def mv(self, path1, path2, recursive):
        path2 = self.destination(path1, path2, into_new=False)
        # shutil.move looks at an existing directory's entry before at the source: not a contract
        local = self.local
        assume(local.exists(self.on(self.local_top, path1)) or not local.isdir(self.on(self.local_top, path2)))
        self.both(lambda fs, a, b: fs.mv(a, b, recursive=recursive), path1, path2)

    @rule(path1=paths, path2=paths, recursive=st.booleans())
    def cp(self, path1, path2, recursive):
        path2 = self.destination(path1, path2, into_new=True)
        self.both(lambda fs, a, b: fs.cp(a, b, recursive=recursive), path1, path2)

    @rule(path=paths, recursive=st.booleans())
    def rm(self, path, recursive):
        self.both(lambda fs, p: fs.rm(p, recursive=recursive), path)

    @rule(path=files)
    def rm_file(self, path):
        self.both(lambda fs, p: fs.rm_file(p), path)

    @rule(path=dirs)
    def mkdir(self, path):
        self.both(lambda fs, p: fs.makedirs(p, exist_ok=True), path)

    # -- transactions --

    @precondition(lambda self: not self.in_transaction)
    @rule()
    def begin(self):
        self.local.start_transaction()
        self.pfs.start_transaction()
        self.in_transaction = True

    @precondition(lambda self: self.in_transaction)
    @rule(commit=st.booleans())
    def end(self, commit):
        """Commit, or leave by an exception (the files written are discarded)."""
        if commit:  # LocalFileSystem's commit moves into a directory that pruning may have removed
            for f in self.local.transaction.files:
                os.makedirs(os.path.dirname(f.path), exist_ok=True)

        def end(fs):
            try:
                with fs.transaction:
                    if not commit:
                        raise Boom()
            except Boom:
                pass

        self.in_transaction = False
        self.both(end)

    # -- reads --

    @rule(path=paths)
    def cat(self, path):
        self.both(lambda fs, p: fs.cat(p), path)

    @rule(path=paths)
    def ls(self, path):
        self.both(lambda fs, p: fs.ls(p, detail=False), path)

    @rule(path=paths, withdirs=st.booleans())
    def find(self, path, withdirs):
        self.both(lambda fs, p: fs.find(p, withdirs=withdirs), path)

    @rule(pattern=patterns)
    def glob(self, pattern):
        self.both(lambda fs, p: fs.glob(p), pattern)

    @rule(path=paths)
    def walk(self, path):
        self.both(lambda fs, p: list(fs.walk(p)), path)

    @rule(path=paths)
    def exists(self, path):
        self.both(lambda fs, p: (fs.exists(p), fs.isdir(p), fs.isfile(p)), path)

    @rule(path=paths)
    def info(self, path):
        self.both(lambda fs, p: fs.info(p), path)

    @invariant()
    def same_tree(self):
        """The whole tree, name and bytes, is the same on both sides."""
        local = {posixpath.relpath(p, self.local_top): self.local.cat_file(p) for p in self.local.find(self.local_top)}
        stored = {posixpath.relpath(p, self.pfs_top): self.pfs.cat_file(p) for p in self.pfs.find(self.pfs_top)}
        assert local == stored


def run_machine(fs: PfsFileSystem, examples: int) -> None:
    SameAsLocal.pfs = fs
    run = SameAsLocal.TestCase
    run.settings = settings(max_examples=examples, stateful_step_count=20, deadline=None,
                            suppress_health_check=[HealthCheck.too_slow])
    run().runTest()


def test_pfs_behaves_as_local_filesystem(pfs_fs):
    run_machine(pfs_fs, 40)


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_pfs_behaves_as_local_filesystem_at_length(pfs_fs):
    run_machine(pfs_fs, 1000)


@pytest.mark.parametrize("recursive", [True, False])
def test_a_directory_moved_into_itself_is_refused_and_nothing_is_lost(pfs_fs, recursive):
    pfs_fs.pipe({"self/x/y": b"1", "self/x/w/q": b"2"})
    for dest in ("self/x/z", "self/x/w"):
        with pytest.raises(shutil.Error):
            pfs_fs.mv("self/x", dest, recursive=recursive)
    assert pfs_fs.cat(["self/x/y", "self/x/w/q"]) == {"self/x/y": b"1", "self/x/w/q": b"2"}


def test_a_file_whose_block_raised_is_committed_with_the_transaction(pfs_fs):
    """As with LocalFileSystem's files: the transaction, not the file's own block, decides."""
    with pfs_fs.transaction:
        pfs_fs.pipe("tx/a", b"a")
        try:
            with pfs_fs.open("tx/b", "wb") as f:
                f.write(b"half")
                raise Boom()
        except Boom:
            pass
        pfs_fs.pipe("tx/c", b"c")
    assert pfs_fs.cat(pfs_fs.find("tx")) == {"tx/a": b"a", "tx/b": b"half", "tx/c": b"c"}


def test_a_name_that_is_also_a_file_is_listed_whole(tmp_path):
    """A store made before names were paths may hold `a` and `a/b` (its
    records are edited so, as pfs no longer records them): every listing
    reaches both, and rm -r removes both."""
    store = tmp_path / "store"
    made = PfsFileSystem(store=str(store), workers=1, skip_instance_cache=True)
    made.pipe({"old/a": b"file", "old/tmp/b": b"under", "old/tmp/c/d": b"deeper"})
    ids = {name: made.info(name)["id"] for name in ("old/tmp/b", "old/tmp/c/d")}
    made.store.close()
    for name, file_id in ids.items():
        assert edit_records(store, file_id, lambda rec, n=name: rec.update(name=n.replace("old/tmp/", "old/a/")))
    pfs_fs = PfsFileSystem(store=str(store), workers=1, skip_instance_cache=True)
    everything = ["old/a", "old/a/b", "old/a/c/d"]
    assert pfs_fs.find("old") == everything
    assert sorted(pfs_fs.ls("old/a", detail=False)) == ["old/a", "old/a/b", "old/a/c"]
    assert pfs_fs.glob("old/**") == ["old", "old/a", "old/a/b", "old/a/c", "old/a/c/d"]
    walked = {posixpath.join(root, name).rstrip("/") for root, _, names in pfs_fs.walk("old") for name in names}
    assert sorted(walked) == everything
    assert pfs_fs.find("old/a") == everything
    pfs_fs.rm("old/a", recursive=True)
    assert pfs_fs.find("old") == [] and not pfs_fs.store.list("old", recursive=True)
    pfs_fs.store.close()
