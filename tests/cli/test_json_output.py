"""--json: every line a command prints on stdout is one JSON document, with
numbers in bytes and seconds, for list, info, volume list, jobs, verify and the
summaries of put, get and heal."""

from __future__ import annotations

import json

from helpers import CHUNK, make_file, part_files, read_manifest


def _documents(stdout: str) -> list:
    return [json.loads(line) for line in stdout.splitlines()]


def test_every_json_command_prints_only_json(pfs):
    data = make_file(pfs.cwd / "a.bin", 5 * CHUNK + 1).read_bytes()
    make_file(pfs.cwd / "b.bin", 100)
    r = pfs.run("put a.bin logs/a --json\nput b.bin --json\nwait\nlist --json\nlist logs --json\nlist -r --json\n"
                "info logs/a --json --parts\nvolume list --json\njobs --json\nverify --all --json\n"
                "verify b.bin --json\nget logs/a out.bin --json\nheal --json\n")
    assert r.returncode == 0, r.stderr
    docs = _documents(r.stdout)  # every line parses
    events = [d for d in docs if isinstance(d, dict) and "event" in d]
    by_event = {}
    for d in events:
        by_event.setdefault(d["event"], []).append(d)
    assert {d["name"]: d["size"] for d in by_event["storing"]} == {"logs/a": 5 * CHUNK + 1, "b.bin": 100}
    stored = {d["name"]: d for d in by_event["stored"]}
    assert stored["logs/a"]["parts"] == 6 and stored["logs/a"]["stored"] > 0 and stored["logs/a"]["seconds"] >= 0
    listings = [d for d in docs if isinstance(d, list)]
    top, logs, recursive, volumes, jobs = listings
    assert [(d["type"], d["name"]) for d in top] == [("file", "b.bin"), ("directory", "logs/")]
    assert [(d["name"], d["id"], d["status"], d["current"]) for d in logs] == [("logs/a", 1, "stored", True)]
    assert sorted(d["name"] for d in recursive) == ["b.bin", "logs/a"]
    assert recursive[1]["redundancy"] == {"layout": "1 copy", "wanted": 1, "present": 1, "short": None}
    info = next(d for d in docs if isinstance(d, dict) and "part_list" in d)
    assert info["name"] == "logs/a" and info["size"] == len(data) and info["chunk_size"] == CHUNK
    assert [p["index"] for p in info["part_list"]] == list(range(6))
    assert {p["id"] for p in info["part_list"]} == {p["id"] for p in read_manifest(pfs.store, 1)["parts"]}
    assert info["volumes"] == {"0": 6}
    assert volumes[0]["id"] == 0 and volumes[0]["parts"] == 7 and volumes[0]["status"] == "online"
    assert isinstance(volumes[0]["used"], int) and isinstance(volumes[0]["free"], int)
    assert jobs == []
    summaries = {d["command"]: d for d in by_event["summary"]}
    assert summaries["verify --all"] | {"after": None} == {"event": "summary", "command": "verify --all", "verified": 2,
                                                            "healed": 0, "damaged": 0, "skipped": 0,
                                                            "not_checked": 0, "after": None}
    assert summaries["heal"]["verified"] == 0  # every volume keeps its pieces: nothing to heal, no job per file
    assert len(by_event["verified"]) == 3 and all(d["damaged"] == [] for d in by_event["verified"])
    restored = by_event["restored"][0]
    assert restored["path"] == "out.bin" and restored["size"] == len(data)
    assert (pfs.cwd / "out.bin").read_bytes() == data


def test_json_damage_is_reported_and_fails_the_command(pfs):
    make_file(pfs.cwd / "a.bin", 4 * CHUNK)
    assert pfs.run("put a.bin\n").returncode == 0
    path = part_files(pfs.store)[read_manifest(pfs.store, 1)["parts"][2]["id"]]
    raw = bytearray(path.read_bytes())
    raw[10] ^= 0xFF
    path.write_bytes(raw)
    r = pfs.run("verify --all --json\n")
    assert r.returncode == 1
    verified, summary = _documents(r.stdout)
    assert verified["event"] == "verified" and len(verified["damaged"]) == 1
    assert verified["damaged"][0].startswith("part 2 bytes ")
    assert summary["damaged"] == 1 and summary["verified"] == 0
    assert r.stderr == "", "what a job found is in its record; stderr is for jobs that failed"


def test_json_of_an_empty_store_and_of_jobs_running(pfs):
    r = pfs.run("list --json\nverify --all --json\njobs --json\nvolume drain 0 --json\n")
    assert _documents(r.stdout) == [[], {"event": "summary", "command": "verify --all", "verified": 0, "healed": 0,
                                         "damaged": 0, "skipped": 0, "not_checked": 0, "after": None}, []]
    assert "error: volume drain: wrong arguments" in r.stderr
    make_file(pfs.cwd / "big.bin", 30 << 20)
    r = pfs.run("put big.bin --json\njobs --json\ncancel all\n")
    docs = _documents(r.stdout)
    running = next(d for d in docs if isinstance(d, list))
    assert docs[-1] == {"event": "cancelled", "kind": "put", "id": 1, "name": "big.bin"}
    assert running[0]["kind"] == "put" and running[0]["file"] == 1 and running[0]["total"] == 30 << 20
