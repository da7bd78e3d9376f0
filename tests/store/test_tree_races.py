"""A directory renamed (mv OLD/ NEW/) or deleted (delete -r) while other pfs
processes put files into it, as real processes on a JSON and a PostgreSQL
store: each put ends under the new name, or refused, or visibly under the old
one; no record is left that names bytes no longer there (a phantom that a
later get or list shows half)."""

from __future__ import annotations

import random
import subprocess

from helpers import CHUNK, env


def tagged(path, tag: str, rng: random.Random):
    path.write_bytes(f"{tag}\n".encode() + rng.randbytes(rng.randrange(1, 2 * CHUNK)))
    return path


def run_all(shared, scripts: list[str], timeout: float = 240) -> list[tuple[int, str, str]]:
    procs = [subprocess.Popen(shared.argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=shared.cwd, env=env(), start_new_session=True) for _ in scripts]
    return [(p.returncode, *p.communicate(s, timeout=timeout)) for p, s in zip(procs, scripts)]


def stored_files(shared) -> list[str]:
    listed = shared.run("list -r\n").stdout.splitlines()[1:]
    return [line.split()[1] for line in listed if line.split()[0] != "-" and " stored " in f" {line} "]


def every_file_reads_back_as_tagged(shared, names: list[str]) -> None:
    """Each stored file restored whole, holding what its name says (its tag is its source's name)."""
    out = shared.cwd / "back"
    out.mkdir()
    for top in sorted({n.split("/")[0] for n in names}):
        r = shared.run(f"get -r {top} {out / top}\nwait\n")
        assert r.returncode == 0 and "error" not in r.stderr, r.stderr
    for name in names:
        data = (out / name).read_bytes()
        tag = data.split(b"\n", 1)[0].decode()
        assert tag.startswith(name.rsplit("/", 1)[-1] + "@"), (name, tag)


def puts_into(directory: str, rng: random.Random, cwd, p: int, count: int) -> str:
    """Puts into `directory`/: new names and replacements of names already there."""
    lines = []
    for k in range(count):
        name = f"f{rng.randrange(12)}"
        tagged(cwd / f"src-{p}-{k}", f"{name}@{p}-{k}", rng)
        lines.append(f"put src-{p}-{k} {directory}/{name}")
        if rng.random() < 0.3:
            lines.append("wait")
    return "\n".join(lines) + "\nwait\n"


def a_tree(shared, rng: random.Random, top: str) -> None:
    script = "".join(f"put {tagged(shared.cwd / f'seed-{i}', f'f{i}@seed', rng).name} {top}/f{i}\n"
                     for i in range(12))
    assert shared.run(script + "wait\n").returncode == 0


def test_mv_of_a_directory_racing_puts_into_it_leaves_no_phantom(shared):
    rng = random.Random()
    a_tree(shared, rng, "old")
    renames = "".join("mv old/ new/\nmv new/ old/\n" for _ in range(40))
    results = run_all(shared, [puts_into("old", rng, shared.cwd, 1, 100), puts_into("old", rng, shared.cwd, 2, 100),
                               renames])
    for code, _, err in results:
        assert "Traceback" not in err, err
    refused = [line for line in results[2][2].splitlines() if line.startswith("error:")]
    assert all("changed while it was being renamed" in line or "already exists" in line or
               "no directory named" in line or "is storing" in line for line in refused), refused
    names = stored_files(shared)
    assert names and all(n.split("/")[0] in ("old", "new") for n in names), names
    every_file_reads_back_as_tagged(shared, names)


def test_delete_r_racing_puts_into_the_directory_leaves_no_phantom(shared):
    rng = random.Random()
    lines = []
    for k in range(15):
        lines += [f"put {tagged(shared.cwd / f'd-{k}-{i}', f'f{i}@d{k}', rng).name} gone/f{i}" for i in range(4)]
        lines += ["wait", "delete -r gone"]
    results = run_all(shared, [puts_into("gone", rng, shared.cwd, 1, 60), "\n".join(lines) + "\n"])
    for _, _, err in results:
        assert "Traceback" not in err, err
    names = stored_files(shared)
    assert all(n.startswith("gone/") for n in names), names
    every_file_reads_back_as_tagged(shared, names)
