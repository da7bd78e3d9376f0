"""kill -9 at random instants: pfs (with its whole process group: forkserver and
pool workers) is killed while it runs a script of puts, gets and deletes of
multi-part files; every reopen must find a consistent store.

Each iteration checks, after the kill:
  * the store opens (a `list` session), recovering what the kill interrupted;
  * no file is listed `storing` or `deleting`;
  * every file that was `stored` before the iteration (and not deleted by it) is
    still stored and comes back byte for byte (`get` + compare with the original);
  * a `get` the killed run finished is complete (only verified files appear);
  * there is a manifest for exactly the stored files, and no part file exists
    beyond those the manifests reference.

In the concurrent mode two or three pfs processes run parts of the script at
once on the store and one of them, at random, is killed: the others finish, and
every put they report stored must still be stored after the reopen (recovery
rolls back only the dead process's work).

Default: PFS_CRASH_KILLS (20) kills (half of that with copies and with erasure
coding), PFS_CONCURRENT_KILLS (8) in the concurrent mode. `pytest -m soak` runs
PFS_SOAK_KILLS (300) of each.
PFS_CRASH_SEED fixes the random choices (the seed is printed).
"""

from __future__ import annotations

import collections
import os
import random
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from helpers import (LiveSession, env, kill_group, make_file, manifest_part_ids, parse_list, pfs_argv, pieces,
                     referenced_pieces, run_pfs)
from pfs.registry import MIN_COMPACT_BYTES

MIB = 1 << 20
#: Stored files kept between iterations (more are deleted by the next script).
KEEP = 3


#: Crash loop modes: the options of every run, and how many volumes the store has.
MODES = {"plain": ([], 1), "copies": (["--copies", "2"], 4), "ec": (["--ec", "2+1"], 4)}


class CrashLoop:
    def __init__(self, root: Path, seed: int, mode: str = "plain", processes: int = 1) -> None:
        self.rng = random.Random(seed)
        self.options, volumes = MODES[mode]
        self.processes = processes
        self.store = root / "store"
        self.work = root / "work"
        self.originals = root / "orig"
        self.out = root / "out"
        self.check = root / "check"
        for d in (self.work, self.originals, self.out, self.check):
            d.mkdir()
        self.stored: dict[int, str] = {}  # id -> name, as of the last reopen
        self.failed: set[int] = set()
        self.survivors_stored: dict[int, str] = {}  # what the processes not killed reported stored
        self.counts = collections.Counter()
        self.iteration = 0
        self.draining: int | None = None
        self.damaged = False
        extra = [root / f"vol{i}" for i in range(1, volumes)]
        for d in extra:
            d.mkdir()
        if extra:
            r = run_pfs(self.store, "".join(f"volume add {d}\n" for d in extra), cwd=self.work)
            assert r.returncode == 0, r.stderr

    # -- one iteration ------------------------------------------------------

    def script(self) -> tuple[list[str], set[int], dict[str, int]]:
        """Commands for the run to be killed: puts of new files, gets, deletes."""
        rng = self.rng
        lines, deletes, gets = [], set(), {}
        for fid in sorted(self.failed):
            lines.append(f"delete {fid}")
            deletes.add(fid)
        ids = sorted(self.stored)
        for fid in rng.sample(ids, min(len(ids), rng.randint(0, 2))):
            dest = self.out / f"got-{fid}"
            lines.append(f"get {fid} {dest}")
            gets[str(dest)] = fid
        keep = list(ids)
        rng.shuffle(keep)
        while len(keep) > KEEP or (keep and rng.random() < 0.3):
            fid = keep.pop()
            lines.append(f"delete {fid}")
            deletes.add(fid)
            if rng.random() < 0.5:
                break
        for k in range(rng.randint(1, 2) + self.processes - 1):
            name = f"f{self.iteration}-{k}.bin"
            make_file(self.originals / name, rng.randint(1 * MIB, 8 * MIB), rng.choice(["random", "text"]))
            lines.append(f"put {self.originals / name}")
            self.counts["puts issued"] += 1
        if self.options:  # kills also land in heals, scrubs and drains
            lines += self.maintenance()
        rng.shuffle(lines)
        return lines, deletes, gets

    def maintenance(self) -> list[str]:
        """A scrub after damage of one piece; a heal; the drain of one volume."""
        rng, lines = self.rng, []
        if self.stored and rng.random() < 0.4:
            vid, key, path = rng.choice(pieces(self.store))
            path.unlink()  # within redundancy: the check's scrub heals it before the next
            self.damaged = True
            lines.append("verify --all --heal")
            self.counts["pieces deleted"] += 1
        if rng.random() < 0.3:
            lines.append("heal")
        if self.draining is None and self.iteration > 2 and rng.random() < 0.3:
            self.draining = rng.randint(1, 3)
        if self.draining is not None and rng.random() < 0.5:
            lines.append(f"volume drain {self.draining}")
            self.counts["drains issued"] += 1
        return lines

    def make_compaction_due(self) -> None:
        """Grow the journal past the compaction threshold with no-op records (deletes
        of id 0, which never exists), so the killed run's first update folds the
        journal into files.json: kills then also land inside a compaction."""
        journal = self.store / "files.jsonl"
        if not journal.exists():
            return
        need = MIN_COMPACT_BYTES + 1 - journal.stat().st_size
        if need > 0:
            line = b'{"op":"del","id":0}\n'
            with journal.open("ab") as f:
                f.write(line * (need // len(line) + 1))
            self.counts["runs with a compaction due"] += 1

    def run_and_kill(self, lines: list[str]) -> bool:
        """Start pfs on the script (split among the processes), kill one process's
        group after a random delay and let the others finish. True if it was killed."""
        shutil.rmtree(self.out)
        self.out.mkdir()
        if self.rng.random() < 0.25:
            self.make_compaction_due()
        snapshot = self.store / "files.json"
        before = snapshot.stat().st_mtime_ns if snapshot.exists() else None
        procs = [self.start(lines[n::self.processes], n) for n in range(self.processes)]
        victim = self.rng.randrange(self.processes)
        try:
            procs[victim].wait(timeout=self.rng.uniform(0.02, 0.5))
        except subprocess.TimeoutExpired:
            pass
        killed = kill_group(procs[victim])
        self.survivors_stored = {}
        for n, proc in enumerate(procs):
            if n != victim:
                assert proc.wait(timeout=120) in (0, 1), \
                    f"a pfs beside the killed one failed (iteration {self.iteration})"
                stdout = (self.work / f"stdout-{n}.txt").read_text()
                self.survivors_stored |= {int(i): name for i, name in
                                          re.findall(r"^\[(\d+)\] stored (\S+):", stdout, re.M)}
        intents = self.store / "intents"
        self.counts["heals or drains cut short"] += len(list(intents.iterdir())) if intents.exists() else 0
        if snapshot.exists() and snapshot.stat().st_mtime_ns != before:
            self.counts["runs that compacted the journal"] += 1
        return killed

    def start(self, lines: list[str], n: int) -> subprocess.Popen:
        """pfs running `lines` as a script, its stdout kept in work/stdout-N.txt."""
        script = self.work / f"script-{n}.txt"
        script.write_text("".join(line + "\n" for line in lines))
        with script.open() as stdin, (self.work / f"stdout-{n}.txt").open("w") as stdout:
            return subprocess.Popen(pfs_argv(self.store, *self.options), stdin=stdin, stdout=stdout, stderr=subprocess.DEVNULL,
                                    cwd=self.work, env=env(), start_new_session=True)

    def reopen_and_check(self, deletes: set[int], gets: dict[str, int]) -> None:
        session = LiveSession(self.store, self.work)
        try:
            session.send("list", "jobs")
            session.wait_for(r"^no jobs running$")
            err = session.stderr()
            assert not [l for l in err.splitlines() if l.startswith("error:")], \
                f"the store refused to open after a kill (iteration {self.iteration}):\n{err}"
            listing = parse_list(session.stdout())
            for fid, (name, status) in listing.items():
                assert status.split()[0] in ("stored", "failed"), \
                    f"file {fid} ({name}) is {status} after reopen (iteration {self.iteration})"
            for fid, name in self.stored.items():
                if fid in deletes:
                    continue
                assert fid in listing, f"stored file {fid} ({name}) vanished (iteration {self.iteration})"
                assert listing[fid] == (name, "stored"), \
                    f"stored file {fid} ({name}) is now {listing[fid]} (iteration {self.iteration})"
            stored = {fid: name for fid, (name, status) in listing.items() if status == "stored"}
            for fid, name in self.survivors_stored.items():
                assert stored.get(fid) == name, \
                    f"file {fid} ({name}), stored by a pfs that was not killed, is now {listing.get(fid)}"
                self.counts["puts of the others kept"] += 1
            for fid, name in stored.items():
                assert (self.originals / name).exists(), f"file {fid} has unknown name {name!r}"
            # Only a complete, verified file may appear under a get's destination name.
            for dest, fid in gets.items():
                if os.path.exists(dest):
                    name = self.stored[fid]
                    assert Path(dest).read_bytes() == (self.originals / name).read_bytes(), \
                        f"killed get left a wrong {dest} (iteration {self.iteration})"
                    self.counts["gets completed before the kill"] += 1
            # Temporaries of the killed run are swept at open.
            leftovers = [p for p in self.store.rglob("*.tmp")] + list((self.store / "tmp").iterdir())
            assert not leftovers, f"temporaries left after reopen: {leftovers} (iteration {self.iteration})"
            # Manifests exactly for the stored files; no part file beyond what they reference.
            manifests = manifest_part_ids(self.store)
            assert set(manifests) == set(stored), \
                (f"manifests {sorted(manifests)} but stored files {sorted(stored)} (iteration {self.iteration})\n"
                 f"{session.stdout()}\n{session.stderr()}")
            if self.damaged:  # heal the piece deleted before the run, so damage never adds up
                session.send("verify --all --heal", "wait", "jobs")
                session.wait_for(r"^verify --all --heal: ", timeout=120)
                self.damaged = False
            referenced = referenced_pieces(self.store)
            on_disk = {(vid, key) for vid, key, _ in pieces(self.store)}
            assert on_disk <= referenced, (f"{len(on_disk - referenced)} orphan part file(s) after reopen "
                                           f"(iteration {self.iteration})")
            assert referenced <= on_disk, (f"{len(referenced - on_disk)} referenced part file(s) missing "
                                           f"(iteration {self.iteration})")
            # Every stored file comes back byte for byte.
            shutil.rmtree(self.check)
            self.check.mkdir()
            session.send(*(f"get {fid} {self.check / str(fid)}" for fid in stored), "exit")
            rc = session.close()
            assert rc == 0, f"gets after reopen failed (iteration {self.iteration}):\n{session.stderr()}"
            err = session.stderr()  # complete now that pfs has exited
            self.counts["puts rolled back at open"] += err.count("was storing when pfs stopped")
            self.counts["deletes finished at open"] += err.count("was deleting when pfs stopped")
        finally:
            if session.proc.poll() is None:
                session.kill()
        for fid, name in stored.items():
            got = (self.check / str(fid)).read_bytes()
            assert got == (self.originals / name).read_bytes(), \
                f"file {fid} ({name}) came back different (iteration {self.iteration})"
            self.counts["files compared"] += 1
        self.stored = stored
        self.failed = {fid for fid, (_, status) in listing.items() if status.startswith("failed")}
        names = set(stored.values())
        for p in self.originals.iterdir():  # originals of files that are gone are not needed
            if p.name not in names:
                p.unlink()

    def run(self, kills: int) -> collections.Counter:
        limit = kills * 4
        while self.counts["kills"] < kills:
            self.iteration += 1
            assert self.iteration <= limit, f"only {self.counts['kills']} kills in {limit} iterations"
            lines, deletes, gets = self.script()
            if self.run_and_kill(lines):
                self.counts["kills"] += 1
            else:
                self.counts["runs finished before the kill"] += 1
            self.reopen_and_check(deletes, gets)
        self.counts["iterations"] = self.iteration
        return self.counts


def _crash_loop(tmp_path: Path, kills: int, capsys, mode: str = "plain", processes: int = 1) -> None:
    seed = int(os.environ.get("PFS_CRASH_SEED") or random.randrange(1 << 32))
    loop = CrashLoop(tmp_path, seed, mode, processes)
    start = time.monotonic()
    try:
        counts = loop.run(kills)
    finally:
        with capsys.disabled():
            print(f"\ncrash loop {mode}, {processes} pfs at once (PFS_CRASH_SEED={seed}): "
                  + ", ".join(f"{k}={v}" for k, v in sorted(loop.counts.items()))
                  + f" in {time.monotonic() - start:.0f} s")
    assert counts["kills"] >= kills


def test_kill9_at_random_instants(tmp_path, capsys):
    _crash_loop(tmp_path, int(os.environ.get("PFS_CRASH_KILLS", "20")), capsys)


@pytest.mark.parametrize("mode", ["copies", "ec"])
def test_kill9_with_copies_and_erasure_coding(tmp_path, capsys, mode):
    """The same loop on four volumes, with heals, scrubs (after a piece was deleted)
    and the drain of a volume in the killed scripts."""
    _crash_loop(tmp_path, int(os.environ.get("PFS_CRASH_KILLS", "20")) // 2, capsys, mode)


@pytest.mark.soak
@pytest.mark.timeout(0)
@pytest.mark.parametrize("mode", ["plain", "copies", "ec"])
def test_kill9_soak(tmp_path, capsys, mode):
    _crash_loop(tmp_path, int(os.environ.get("PFS_SOAK_KILLS", "300")), capsys, mode)


@pytest.mark.parametrize("processes", [2, 3])
def test_kill9_one_of_several_processes(tmp_path, capsys, processes):
    _crash_loop(tmp_path, int(os.environ.get("PFS_CONCURRENT_KILLS", "8")) // 2, capsys, processes=processes)


@pytest.mark.soak
@pytest.mark.timeout(0)
def test_kill9_one_of_three_soak(tmp_path, capsys):
    _crash_loop(tmp_path, int(os.environ.get("PFS_SOAK_KILLS", "300")), capsys, processes=3)
