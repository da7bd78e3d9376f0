"""The functions pool workers run. Each reads and writes its own slice of data
with pread/pwrite and its own volumes, so no part's bytes ever cross a pipe: a
task is a few paths, numbers and volume descriptions (each volume is opened
once per worker), a result is a hash, a size and where the pieces went."""

import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field

from pfs import codec
from pfs.crypto import keyring
from pfs.engine.buffers import (OPENED, STORED, read_at as _read_at, release, view as _view,
                                whole_blocks as _whole_blocks, write_output as _write_output)
from pfs.engine import watch
from pfs.engine.sealing import Sealing
from pfs.volumes import redundancy
from pfs.errors import (OutOfSpaceError, PartDamagedError, PartExistsError, PartMissingError, PfsError,
                        VolumeError, VolumeUnavailableError)
from pfs.volumes.redundancy import Layout
from pfs.volumes import Volume, open_volume
from pfs.volumes.local import LocalVolume


def init_worker(pfs_pid: int, keys: dict | None = None) -> None:
    """Run once in each worker: take the data keys of the encrypted stores pfs
    has open (see pfs.crypto.keyring), leave Ctrl-C to the shell, and exit as
    soon as pfs itself is gone, so no worker outlives a pfs killed with -9."""
    keyring.receive(keys or {})
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        threading.Thread(target=watch.exit_with, args=(pfs_pid,), name="pfs-watch", daemon=True).start()
    except RuntimeError:  # no thread for the watch (a pids limit): this worker cannot run safely,
        os._exit(1)       # and pfs says so once ("the worker pool cannot be started"), with no traceback here


def volume_for(desc: dict) -> Volume:
    """The volume a description names, opened once per worker process."""
    key = json.dumps(desc, sort_keys=True)
    volume = _volumes.get(key)
    if volume is None:
        volume = _volumes[key] = open_volume(desc)
    return volume


_volumes: dict[str, Volume] = {}

#: A volume a piece may go to: its id and its description (Volume.describe).
Target = tuple[int, dict]


class SourceShrank(Exception):
    """The source holds fewer bytes than the put recorded (its own type, so that
    an EOFError from a dying pool is never mistaken for a changed source)."""


def store_part(source: str, offset: int, size: int, codec_name: str, hash_name: str, layout: Layout,
               part_id: str, targets: list[Target], sealed_for: str = "",
               write=None) -> tuple[str, str, int, list[int], list[dict], str]:
    """Read a slice of `source`, hash it, compress it, seal it for the store
    `sealed_for` if that is set (see pfs.engine.sealing) and write its pieces
    (its copies, or its shards) to the first volumes of `targets` that take them
    (the store flushes them next; or `write(volume id, volume, key, piece)` takes
    them, see store_parts). Returns (hash, codec used, stored size, the volume of
    each piece, the shards' records, the part's `sealed` stanza)."""
    release(OPENED)  # a get's: a put has no use for it
    if not sealed_for:
        release(STORED)  # a get's: the codec's output here needs that memory (a sealed part's is counted)
    view = _view(size)
    fd = os.open(source, os.O_RDONLY)
    try:
        got = _read_at(fd, view, offset)
    finally:
        os.close(fd)
    if got != size:
        raise SourceShrank(f"{source} shrank while it was being stored")
    part_hash = codec.digest(hash_name, view)
    used, payload = codec.compress(codec_name, view)
    sealing = Sealing(sealed_for, part_id)
    if layout.ec:
        fragments = redundancy.encode(layout, payload)
        pieces = [sealing.seal(f, j) for j, f in enumerate(fragments)]
        placed = place(pieces, layout.keys(part_id), targets, write)
        shards = [{"volume": v, "hash": codec.digest(hash_name, f), "size": len(f)} for v, f in zip(placed, fragments)]
        return part_hash, used, len(payload), placed, shards, sealing.stanza
    piece = sealing.seal(payload, 0, _view(sealing.size(len(payload)), STORED) if sealing.on else None)
    placed = place([piece] * layout.copies, layout.keys(part_id), targets, write)
    return part_hash, used, len(payload), placed, [], sealing.stanza


def place(pieces: list, keys: list[str], targets: list[Target], write=None) -> list[int]:
    """Write each piece to the next target in order that takes it (a full or
    vanished volume is skipped, and tried no more), or hand it to
    `write(volume id, volume, key, piece)`; returns their volumes."""
    placed, skipped, left = [], [], list(targets)
    for piece, key in zip(pieces, keys):
        while True:
            if not left:
                why = "; ".join(f"volume {vid}: {exc.message}" for vid, exc in skipped) or "not enough volumes"
                what = "no volume could take it" if len(pieces) == 1 else \
                    f"only {len(placed)} of {len(pieces)} copies or shards of a part could be written"
                unreachable = skipped and all(isinstance(exc, VolumeUnavailableError) for _, exc in skipped)
                raise PfsError(f"{what} ({why})", skipped[0][1].advice if unreachable else
                               "add a volume or free some space")
            vid, desc = left.pop(0)
            try:
                if write is None:
                    _write(volume_for(desc), key, piece)
                else:
                    write(vid, volume_for(desc), key, piece)
                placed.append(vid)
                break
            except (OutOfSpaceError, VolumeUnavailableError) as exc:
                skipped.append((vid, exc))
    return placed


def _write(volume: Volume, key: str, data) -> None:
    """Write a piece. One already there is referenced by no manifest (what a
    crash or a bad copy left): it is replaced."""
    try:
        volume.write(key, data)
    except (PartExistsError, PartDamagedError):
        volume.remove(key)
        volume.write(key, data)


@dataclass(frozen=True)
class PartCheck:
    """What to do with one stored part: read it (into `out_path` at `offset`),
    check its pieces, repair them. `pieces` are the volumes of its copies or
    shards in order, each with its description (None: the volume is missing,
    so it is neither read nor written)."""

    layout: Layout
    part_id: str
    stored: int
    codec: str
    size: int
    hash_name: str
    hash: str
    pieces: list[tuple[int, dict | None]]
    shards: list[dict]
    out_path: str | None = None
    offset: int = 0
    every: bool = False  # check every piece, not only enough to read the part
    heal: bool = False  # rewrite a damaged piece in place
    moves: dict[int, list[Target]] = field(default_factory=dict)  # piece -> where it must go instead
    sealed_for: str = ""  # the store whose key seals its pieces (none: they are plain)
    absent: dict[int, str] = field(default_factory=dict)  # volume of a piece not read -> why it is missing
    cached: bool = False  # write the output through the page cache (synced with its batch: see write_output)
    sealed: str = ""  # the part's stanza: sealed to a write-only recipient ("": under the data key)


@dataclass
class PartVerdict:
    """What check_part found: `problem` if the part cannot be read; each bad
    piece (and what was done about it); the volume of each piece now."""

    problem: str | None
    volumes: list[int]
    bad: list[str] = field(default_factory=list)
    healed: list[str] = field(default_factory=list)


def check_part(job: PartCheck) -> PartVerdict:
    """Read a part from a good copy or enough good shards, check the pieces it
    reads (all with `every`), write it out, then rewrite damaged pieces and
    move pieces off volumes that no longer keep them. Damage is never an
    error of the whole operation and never written out."""
    layout, keys = job.layout, job.layout.keys(job.part_id)
    payload, data, problem, problems = _read(job, reuse=True)
    volumes = [v for v, _ in job.pieces]
    if problem:
        return PartVerdict(problem, volumes)
    if job.out_path is not None:
        _write_output(job.out_path, data, job.offset, job.cached)
    names = [f"{'shard' if layout.ec else 'copy'} {j} on volume {v}" for j, v in enumerate(volumes)]
    verdict = PartVerdict(None, volumes)
    pieces = _Pieces(layout, payload, Sealing(job.sealed_for, job.part_id, job.sealed))
    for j, problem in problems.items():
        desc = job.pieces[j][1]
        if j in job.moves:
            continue
        if job.heal and desc is not None:
            try:
                _write(volume_for(desc), keys[j], pieces[j])
                volume_for(desc).flush([keys[j]])
                verdict.healed.append(f"{names[j]} rewritten ({problem})")
                continue
            except VolumeError as exc:
                problem += f"; cannot be rewritten ({exc.message})"
        verdict.bad.append(type(problem)(f"{names[j]}: {problem}"))  # an Unreachable one stays so
    taken = set(volumes)
    for j, targets in job.moves.items():
        try:
            volumes[j] = place([pieces[j]], [keys[j]], [t for t in targets if t[0] not in taken])[0]
        except PfsError as exc:
            why = problems.get(j) or (_absent(job, volumes[j]) if job.pieces[j][1] is None else
                                      Unreachable("its volume does not keep it"))
            verdict.bad.append(type(why)(f"{names[j]}: {why}; cannot be moved ({exc.message})"))
            continue
        taken.add(volumes[j])
        volume_for(dict(targets)[volumes[j]]).flush([keys[j]])
        verdict.healed.append(f"{names[j]} restored on volume {volumes[j]}")
    return verdict


def check_parts(jobs: list[PartCheck]) -> list[PartVerdict | PfsError]:
    """check_part of the parts of many small files in one task (get -r): one trip
    to a worker for all of them, not one each. A part whose output cannot be
    written is handed back as its error, so the others are still restored."""
    done: list[PartVerdict | PfsError] = []
    for job in jobs:
        try:
            done.append(check_part(job))
        except PfsError as exc:
            done.append(exc)
        except OSError as exc:
            done.append(PfsError(f"cannot write it: {exc.strerror or exc}"))
    return done


def part_bytes(job: PartCheck) -> tuple[bytes | None, str | None]:
    """A part's bytes read from a good copy or enough good shards and checked,
    writing nothing (for a reader): (data, None), or (None, why it cannot be read)."""
    _, data, problem, _ = _read(job)
    return data, problem


def _read(job: PartCheck, reuse: bool = False) -> tuple[bytes | None, bytes | None, str | None, dict[int, str]]:
    """(stored bytes, part bytes, why the part cannot be read, each bad piece's problem).
    With `reuse` (in a pool worker, one part at a time) a copy and its decoding
    land in the worker's buffers (valid until its next part) instead of new ones."""
    problems: dict[int, str] = {}
    keys = job.layout.keys(job.part_id)
    if job.layout.ec:
        payload = _read_shards(job, keys, problems)
        decoded = None if payload is None else _decoded(job, payload)  # every shard checked out, yet the whole may not
    else:
        payload, decoded = _read_copies(job, keys, problems, reuse)
    if payload is None:  # the problem names every piece's
        return None, None, _summary(job, problems), problems
    return payload, *decoded, problems


class _Pieces:
    """The pieces of a good part, made when first asked for (shards are encoded
    once, and each sealed afresh). A copy is the good copy as it was read."""

    def __init__(self, layout: Layout, payload: bytes, sealing: Sealing) -> None:
        self.layout, self.payload, self.sealing, self._shards = layout, payload, sealing, None

    def __getitem__(self, j: int):
        if not self.layout.ec:
            return self.payload
        if self._shards is None:
            self._shards = redundancy.encode(self.layout, self.payload)
        return self.sealing.seal(self._shards[j], j)


def _read_copies(job: PartCheck, keys: list[str], problems: dict[int, str], reuse: bool
                 ) -> tuple[bytes | None, tuple[bytes | None, str | None]]:
    """The first copy that decodes to the part's hash, with its decoding (done
    once: it is the part's bytes); with `every`, each other copy must hold the
    same bytes. With `reuse`, the good copy and its decoding are read into the
    worker's buffers."""
    good, decoded, sealing = None, (None, None), Sealing(job.sealed_for, job.part_id, job.sealed)
    at_rest = sealing.size(job.stored)
    for j, (vid, desc) in _reading_order(job.pieces):
        if good is not None and not job.every:
            break
        if desc is None:
            problems[j] = _absent(job, vid)
            continue
        into = _view(_whole_blocks(at_rest + 1), STORED) if reuse and good is None else None
        data, problem = _read_piece(desc, keys[j], at_rest, into)
        if problem is None and good is None:
            decoded = _decoded(job, data, _view(job.size) if reuse else None, sealing)
            problem = decoded[1]
            good = data if problem is None else None
        elif problem is None and data != good:
            problem = "differs from the good copy"
        if problem:
            problems[j] = problem
    return good, decoded


def _read_shards(job: PartCheck, keys: list[str], problems: dict[int, str]) -> bytes | None:
    """The part's bytes from the first K shards whose hashes check out (every
    shard is checked with `every`), each opened first if it is sealed."""
    good, sealing = [], Sealing(job.sealed_for, job.part_id, job.sealed)
    for j, (vid, desc) in _reading_order(job.pieces):
        if len(good) >= job.layout.needed and not job.every:
            break
        if desc is None:
            problems[j] = _absent(job, vid)
            continue
        recorded = job.shards[j]
        data, problem = _read_piece(desc, keys[j], sealing.size(recorded["size"]))
        if problem is None:
            data, problem = sealing.open(data, j)
        if problem is None and codec.digest(job.hash_name, data) != recorded["hash"]:
            problem = "hash mismatch"
        if problem:
            problems[j] = problem
        else:
            good.append(data)
    if len(good) < job.layout.needed:
        return None
    return redundancy.decode(job.layout, good[:job.layout.needed])


def _reading_order(pieces: list[tuple[int, dict | None]]) -> list[tuple[int, tuple[int, dict | None]]]:
    """The pieces, by index, in the order to read them: those on local volumes
    first, then remote ones (each group in manifest order). A remote read costs a
    round trip and the server's bandwidth, and a server that died since its
    status was looked at costs a retry budget before the next copy is tried."""
    return sorted(enumerate(pieces), key=lambda jp: jp[1][1] is not None and not _is_local(jp[1][1]))


def _is_local(desc: dict) -> bool:
    return isinstance(volume_for(desc), LocalVolume)


def _read_piece(desc: dict, key: str, size: int, into: memoryview | None = None) -> tuple[bytes, str | None]:
    """A piece's bytes (in `into`, more than `size` bytes, if given), or what is wrong
    with it (missing, the wrong size, unreadable)."""
    try:
        data = volume_for(desc).read(key, 0, size + 1) if into is None else into[:volume_for(desc).read_into(key, into)]
    except PartMissingError:
        return b"", "part file missing"
    except PartDamagedError:
        return b"", "part path is not a regular file"
    except VolumeError as exc:
        return b"", Unreachable(str(exc))
    if len(data) != size:
        return b"", f"part file is {len(data) if len(data) <= size else 'more than ' + str(size)} bytes, expected {size}"
    return data, None


def _decoded(job: PartCheck, payload, into: memoryview | None = None,
             sealing: Sealing = Sealing()) -> tuple[bytes | None, str | None]:
    """The part's bytes from its stored bytes (opened if sealed, then decoded
    into `into` where the codec can), or why they are not the part. Given
    `into` (in a pool worker), a compressed part is opened into the worker's
    buffer for that, not a new one."""
    if sealing.on:
        payload, problem = sealing.open(payload, 0, into if job.codec == "none" or into is None else
                                        _view(job.stored, OPENED))
        if problem:
            return None, problem
        if job.codec == "none":  # the tag just authenticated these very bytes: hashing them again proves nothing
            return (payload, None) if len(payload) == job.size else (None, "decodes to the wrong size")
    try:
        data = codec.decompress(job.codec, payload, job.size, into)
    except codec.DecodeError as exc:
        return None, f"cannot decode: {exc}"
    if codec.digest(job.hash_name, data) != job.hash:
        return None, "hash mismatch"
    return data, None


class Unreachable(str):
    """A problem that is no damage: the piece could not be reached (its volume
    missing, its server down or refusing), and may be read once it is back."""


def _absent(job: PartCheck, vid: int) -> Unreachable:
    return Unreachable(job.absent.get(vid) or f"volume {vid} is missing")


def _summary(job: PartCheck, problems: dict[int, str]) -> str:
    """Why a part cannot be read: its one piece's problem, or each piece's;
    Unreachable if the pieces that are not damaged would do, once reached."""
    if len(job.pieces) == 1:
        return problems[0]
    kind = "shard" if job.layout.ec else "copy"
    text = f"too few good {'shards' if job.layout.ec else 'copies'}: " + \
        "; ".join(f"{kind} {j}: {p}" for j, p in sorted(problems.items()))
    damaged = sum(not isinstance(p, Unreachable) for p in problems.values())
    if len(job.pieces) - damaged < job.layout.needed:
        return text
    reasons = {p for p in problems.values() if isinstance(p, Unreachable)}
    return Unreachable(reasons.pop() if len(reasons) == 1 and not damaged else text)


def volume_status(desc: dict) -> tuple[str, str]:
    """A volume's status and why it is missing (Volume.diagnose), looked at from a worker, where its
    client is at hand (see VolumeSet.prober)."""
    return volume_for(desc).diagnose()


def remove_pieces(desc: dict, keys: list[str], keep: frozenset[str] = frozenset()) -> None:
    """Remove the keys not in `keep` from a volume (see Volume.remove_all);
    VolumeUnavailableError if the volume cannot be reached: the caller tries again later."""
    volume_for(desc).remove_all(k for k in keys if k not in keep)


def meet(folder: str, count: int, timeout: float) -> None:
    """Return once `count` workers have called this (a barrier through a
    folder). The engine submits it once per worker to a new pool: as none
    returns before all have started, the pool must start every worker."""
    with open(os.path.join(folder, str(os.getpid())), "x"):
        pass
    deadline = time.monotonic() + timeout
    while len(os.listdir(folder)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(os.listdir(folder))} of {count} workers started")
        time.sleep(0.002)
