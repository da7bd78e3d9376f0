"""Opening a store: reading and checking its settings, creating or upgrading it,
locking it among every pfs that shares it, and opening its registries and volumes.

A store is a directory whose metadata are files (store.json, the registries),
or a PostgreSQL database whose part data live in a directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

from pfs import codec
from pfs.crypto.slots import KEYS, DatabaseSlots, SlotFiles
from pfs.errors import DamagedError, StoreError, StoreLockedError, UsageError, VolumeError
from pfs.registry import (FILES_LOCK, JOURNAL, MANIFESTS, MAX_COPIES, MAX_INT, RESERVE, SCRATCH, SESSIONS, SNAPSHOT,
                          FileRegistry, PartRegistry, SessionFiles, damaged, live_sessions, read_json,
                          write_json_atomic)
from pfs.registry.postgres import is_database
from pfs.store.context import Context, Settings
from pfs.store.repair import rebuild, set_aside
from pfs.units import format_size
from pfs.volumes import MARKER
from pfs.volumes.redundancy import check_layout as check_redundancy
from pfs.volumes.volset import FIRST_VOLUME, VolumeConfig, VolumeSet, parse_volumes

FORMAT = 2
CONFIG = "store.json"
LOCK = "lock"
VOLUMES = "volumes"
#: Where heals and drains note the files whose pieces they are moving (see recovery).
INTENTS = "intents"
#: What tells a directory is (the rest of) a pfs store, even without its store.json.
STORE_FILES = frozenset((SNAPSHOT, JOURNAL, MANIFESTS, VOLUMES))
#: The store's own files and directories (name: whether it is a directory).
LAYOUT = {CONFIG: False, SNAPSHOT: False, JOURNAL: False, RESERVE: False, FILES_LOCK: False, MANIFESTS: True,
          SESSIONS: True, SCRATCH: True, INTENTS: True}

Recover = Callable[[Context], list]


def default_root() -> Path:
    """The store used when none is given: $PFS_STORE, else the user data directory."""
    if os.environ.get("PFS_STORE"):
        return Path(os.environ["PFS_STORE"])
    from platformdirs import user_data_dir

    return Path(user_data_dir("pfs")) / "store"


def open_store(ctx: Context, overrides: dict, repair: bool, data: Path | str | None, recover: Recover) -> None:
    """Open (creating if new) the store at ctx.location into `ctx`; `recover`
    finishes what dead sessions left, while the registries are open."""
    if is_database(ctx.location):
        if repair:
            raise UsageError("repair rebuilds the files of a directory store; a database store has none",
                             "every update of a database store is a transaction: there is nothing to rebuild")
        open_database(ctx, overrides, data, recover)
    else:
        open_directory(ctx, Path(ctx.location), overrides, repair, recover)


def close(ctx: Context) -> None:
    """Close the registries and release the lock."""
    close_registries(ctx)
    unlock(ctx)


def _creation_leftover(root: Path, name: str) -> bool:
    """What a store creation killed before it wrote store.json may have left:
    the lock, the temporary file of the store.json write, and the first
    volume's directory holding nothing but its marker (written just before)."""
    if name == VOLUMES:
        first = root / FIRST_VOLUME
        return os.listdir(root / VOLUMES) in ([], ["0"]) and (not first.is_dir() or all(
            n.startswith((MARKER, f".{MARKER}.")) for n in os.listdir(first)))
    return name in (LOCK, KEYS) or (name.startswith(f".{CONFIG}.") and name.endswith(".tmp"))


def _settings_ok(config: dict) -> bool:
    """A chunk size, codec and hash pfs can use."""
    return type(config.get("chunk_size")) is int and 0 < config["chunk_size"] <= MAX_INT \
        and config.get("codec") in codec.CODECS and config.get("hash") in codec.HASHES


def _old_volumes_ok(volumes: object) -> bool:
    """A format 1 store's volumes: a non-empty list of distinct directories inside the store."""
    return type(volumes) is list and bool(volumes) and all(
        type(v) is str and v and not os.path.isabs(v) and ".." not in Path(v).parts and Path(v).parts
        for v in volumes) and len(set(volumes)) == len(volumes)


def volumes_ok(config: dict) -> bool:
    """A format 2 store's identity and volumes."""
    try:
        volumes = parse_volumes(config.get("volumes"))
    except (TypeError, ValueError):
        return False
    next_id = config.get("next_volume")
    return type(config.get("id")) is str and len(config["id"]) == 32 and type(next_id) is int and \
        next_id > max(v.id for v in volumes)


def _redundancy_ok(config: dict) -> bool:
    try:
        check_redundancy(config.get("copies", 1), config.get("ec", ""))
    except (UsageError, TypeError):
        return False
    return type(config.get("copies", 1)) is int and 1 <= config.get("copies", 1) <= MAX_COPIES


def marker(volume) -> dict | None:
    """A volume's marker, None where there is none (or no volume yet)."""
    try:
        return volume.read_marker()
    except VolumeError:
        return None


@contextlib.contextmanager
def flocked(path: Path) -> Iterator[None]:
    """An exclusive flock of `path` (created if need be) for the duration."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:  # unlocked, not just closed: a child forked meanwhile has a copy of fd until it execs
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def open_directory(ctx: Context, root: Path, overrides: dict, repair: bool, recover: Recover) -> None:
    """Open the store whose metadata are files in `root`, sharing it with
    other processes (or, to repair, alone)."""
    ctx.root = root
    ctx.description = str(root.absolute())
    max_memory = ctx.max_memory
    notes: list[str] = []
    try:
        config = read_config(ctx)
    except DamagedError as exc:
        if not repair:
            raise
        config, notes = None, [f"{exc.message}; rebuilt from the defaults and the volumes on disk"]
    ctx.slots = SlotFiles(root)
    ctx.sealed_for = open_keys(ctx, config, repair)  # before anything changes: a wrong password opens nothing
    settle(ctx, config, overrides)
    ctx.root.mkdir(parents=True, exist_ok=True)
    lock(ctx, alone=repair)
    try:
        if config is None and not notes:
            config = read_config(ctx)  # another pfs may have created it before we held the lock
        notes += check_own_files(ctx, LAYOUT, repair)
        ctx.created = config is None
        if config is None or config["format"] == 1:
            config = claim_alone(ctx, config, reread=not repair)
        ctx.config = config
        ctx.sealed_for = open_keys(ctx, config, repair)
        inside = [v.url for v in parse_volumes(config["volumes"]) if "://" not in v.url and not os.path.isabs(v.url)]
        notes += check_own_files(ctx, dict.fromkeys(inside, True), repair)
        open_volumes(ctx, config)
        ctx.sessions = SessionFiles(ctx.root)
        ctx.parts = PartRegistry(ctx.root)
        ctx.files = FileRegistry(ctx.root, strict=not repair, id_elsewhere=ctx.parts.highest_id)
        seal_names(ctx)
        ctx.repair_report = rebuild(ctx.root, ctx.files, ctx.parts, ctx.volset, max_memory // 2,
                                     notes) if repair else None
        ctx.recovered = recover(ctx)
    except BaseException:
        close_registries(ctx)
        unlock(ctx)
        raise


def open_keys(ctx: Context, config: dict | None, repair: bool) -> str:
    """The store id its pieces are sealed for, its key unlocked ('' if plain)."""
    if repair and (config and "encryption" in config or (ctx.root / KEYS).exists()):
        raise UsageError("repair cannot rebuild an encrypted store yet", "its files are read as they are")
    return ctx.keys.unlock(config, ctx.slots, ctx.description)


def seal_names(ctx: Context) -> None:
    """On a store with encrypted names, the registries seen through the wrappers
    that seal every name going in and open every name coming out."""
    if ctx.keys.names_key:
        from pfs.crypto.names import NameSealer, SealedFiles, SealedParts

        sealer = NameSealer(ctx.keys.names_key)
        ctx.files, ctx.parts = SealedFiles(ctx.files, sealer), SealedParts(ctx.parts, sealer)


def open_volumes(ctx: Context, config: dict) -> None:
    """The volume set, and the store's own working directories beside it."""
    ctx.volset = VolumeSet(ctx.root.absolute(), config["id"], parse_volumes(config["volumes"]))
    ctx.next_volume: int = config["next_volume"]
    ctx.tmp = ctx.root / SCRATCH
    ctx.tmp.mkdir(exist_ok=True)
    (ctx.root / INTENTS).mkdir(exist_ok=True)


def settle(ctx: Context, config: dict | None, overrides: dict) -> None:
    """The settings for new files: the store's, unless the options override them."""
    defaults = {k: config[k] for k in ("chunk_size", "codec", "hash", "copies", "ec") if k in config} \
        if config else {}
    ctx.settings = Settings(**{**defaults, **overrides})
    ctx.layout = check_redundancy(ctx.settings.copies, ctx.settings.ec)
    ctx.check_memory(ctx.settings.chunk_size, f"chunk size {format_size(ctx.settings.chunk_size)}")


def open_database(ctx: Context, overrides: dict, data: Path | str | None, recover: Recover) -> None:
    """Open the store whose metadata live in the PostgreSQL database at
    ctx.location (creating its tables and settings on first use)."""
    from pfs.registry.postgres import SESSION_TTL, Database, DatabaseFiles, DatabaseParts, DatabaseSessions

    ctx.db = db = Database(ctx.location)
    try:
        config = db.settings()
        ctx.created = not config
        if not config:
            if data is None:
                raise UsageError(f"there is no pfs store in {db.name} yet",
                                 "create one with --data DIR: the directory where its part data go")
            encryption, slot = ctx.keys.create(db.name)
            config = db.create({**asdict(Settings(**overrides)), "data": str(Path(data).expanduser().absolute()),
                                "session_ttl": SESSION_TTL, "volumes": [VolumeConfig(0, FIRST_VOLUME).to_dict()],
                                "next_volume": 1, "id": uuid.uuid4().hex, **encryption,
                                **(DatabaseSlots.row(slot) if slot else {})})
        if not (_settings_ok(config) and _redundancy_ok(config) and type(config.get("data")) is str):
            raise damaged_settings(ctx)
        ctx.slots = DatabaseSlots(db)
        ctx.sealed_for = ctx.keys.unlock(config, ctx.slots, db.name)
        settle(ctx, config, overrides)
        ctx.root = Path(data).expanduser() if data is not None else Path(config["data"])
        ctx.root.mkdir(parents=True, exist_ok=True)
        ctx.description = f"{db.name} (part data in {ctx.root.absolute()})"
        st = os.stat(ctx.root)
        ctx.root_id = (st.st_dev, st.st_ino)
        store_id = config.get("id") or db.adopt("id", uuid.uuid4().hex)  # a store made before volume markers
        next_volume = config.get("next_volume") or db.adopt("next_volume", len(config["volumes"]))  # one volume
        ctx.config = {**config, "id": store_id, "next_volume": next_volume}
        if not volumes_ok(ctx.config):
            raise damaged_settings(ctx)
        open_volumes(ctx, ctx.config)
        first = ctx.volset.configs.get(0)
        if first and first.url == FIRST_VOLUME and marker(ctx.volset.volume(0)) is None:
            ctx.volset.volume(0).write_marker(store_id, "0")  # the data directory's volume is this store's
        ctx.parts = DatabaseParts(db)
        ctx.files = DatabaseFiles(db)
        seal_names(ctx)
        ctx.sessions = DatabaseSessions(db, float(config.get("session_ttl", SESSION_TTL)))
        ctx.repair_report = None
        ctx.recovered = recover(ctx)
    except BaseException:
        close_registries(ctx)
        raise


def damaged_settings(ctx: Context) -> DamagedError:
    return DamagedError(f"the settings of the store in {ctx.db.name} are damaged (pfs_settings, pfs_volumes)")


def read_config(ctx: Context) -> dict | None:
    """store.json, or None when `root` is new, empty, or holds only what an
    interrupted creation left (so a crash while creating never leaves a
    directory pfs refuses). Refuses anything else; damage is a DamagedError."""
    path = ctx.root / CONFIG
    if ctx.root.exists() and not ctx.root.is_dir():
        raise StoreError(f"{ctx.root} is not a directory")
    # Listed before store.json is looked for: a pfs creating the store at this
    # moment writes store.json before any other file, so what is listed
    # without a store.json after it was there before any store.
    found = [n for n in os.listdir(ctx.root) if not _creation_leftover(ctx.root, n)] if ctx.root.exists() else []
    if not path.exists():
        if not found:
            return None
        if STORE_FILES.intersection(found):
            raise damaged(ctx.root, f"{path} is missing")
        raise StoreError(f"{ctx.root} is not a pfs store", "choose an empty or new directory with --store")
    config = read_json(path, ctx.root)
    if not isinstance(config, dict) or type(config.get("format")) is not int or config["format"] < 1:
        raise damaged(ctx.root, f"{path} is damaged (no format number)")
    if config["format"] > FORMAT:
        raise StoreError(f"{ctx.root} was made by a newer pfs (format {config['format']})", "upgrade pfs to open it")
    layout_ok = _old_volumes_ok(config.get("volumes")) if config["format"] == 1 else \
        volumes_ok(config) and _redundancy_ok(config)
    if not (_settings_ok(config) and layout_ok):
        raise damaged(ctx.root, f"{path} is damaged (bad chunk_size, codec, hash, copies, ec or volumes)")
    return config


def claim_alone(ctx: Context, config: dict | None, reread: bool) -> dict:
    """Create the store, or upgrade a format 1 one, while no other pfs does (two
    at once would give its volumes two identities): under an exclusive flock
    of STORE/lock. With `reread`, what another pfs finished meanwhile is taken as it is."""
    with flocked(ctx.root / LOCK):
        if reread:
            config = read_config(ctx)
        if config is None:
            return create(ctx, ctx.settings)
        return upgrade(ctx, config) if config["format"] == 1 else config


def create(ctx: Context, settings: Settings) -> dict:
    """Write store.json, atomically and before any other file of the store:
    with no store.json, the directory holds nothing but creation leftovers."""
    found = sorted(int(d.name) for d in (ctx.root / VOLUMES).glob("*")
                   if d.is_dir() and re.fullmatch(r"0|[1-9][0-9]*", d.name))
    names = [f"{VOLUMES}/{i}" for i in found] or [FIRST_VOLUME]  # a rebuilt store keeps its volumes
    ctx.slots.clear()  # what an earlier creation, killed before store.json, left
    encryption, slot = ctx.keys.create(ctx.description)
    if slot:
        ctx.slots.add(slot)  # before store.json: a store that says it is encrypted has a slot
    return claim(ctx, names, {"format": FORMAT, **asdict(settings), **encryption})


def upgrade(ctx: Context, old: dict) -> dict:
    """Turn a format 1 store (volume directories listed by name, no markers)
    into this format in place: markers first, then store.json, atomically;
    a crash in between is finished by the next open."""
    return claim(ctx, old["volumes"], {**old, "format": FORMAT, "copies": 1, "ec": ""})


def claim(ctx: Context, names: list[str], config: dict) -> dict:
    """Mark the volume directories `names` (inside the store) as this store's
    volumes 0, 1, ... and write store.json listing them. The store's id is the
    one a marker already holds (what an interrupted claim left), else new."""
    volumes = [VolumeConfig(i, name) for i, name in enumerate(names)]
    probe = VolumeSet(ctx.root, "", volumes)
    found = [m.get("store") for v in volumes if (m := marker(probe.volume(v.id)))]
    store_id = next((s for s in found if type(s) is str and re.fullmatch(r"[0-9a-f]{32}", s)), uuid.uuid4().hex)
    for v in volumes:
        probe.volume(v.id).write_marker(store_id, str(v.id))
    config = {**config, "id": store_id, "volumes": [v.to_dict() for v in volumes], "next_volume": len(volumes)}
    write_json_atomic(ctx.root / CONFIG, config)
    return config


def check_own_files(ctx: Context, expected: dict[str, bool], repair: bool) -> list[str]:
    """Refuse (or, repairing, move to lost+found/) a file where pfs keeps a
    directory or the other way round (`expected`: name -> is a directory),
    so nothing below trips over it."""
    notes = []
    for name, is_dir in expected.items():
        path = ctx.root / name
        if os.path.lexists(path) and path.is_dir() != is_dir:
            problem = f"{path} is not a {'directory' if is_dir else 'regular file'}"
            if not repair:
                raise damaged(ctx.root, problem)
            notes.append(f"{problem}; moved to {set_aside(ctx.root, path)}")
    return notes


def lock(ctx: Context, alone: bool) -> None:
    """flock the store's directory itself (unlike a lock file, nothing can
    replace it while it is held): shared by every pfs using the store, or
    exclusive for what needs the store alone (repair), which STORE/lock then
    names by pid."""
    fd = os.open(ctx.root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if alone else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        if alone:
            holders = ", ".join(live_sessions(ctx.root)) or "another pfs"
            raise StoreLockedError(f"store {ctx.root} is in use by {holders}; repair needs it alone",
                                   "exit every other pfs using it first") from None
        try:
            holder = (ctx.root / LOCK).read_text(errors="replace").strip() or "unknown"
        except OSError:
            holder = "unknown"
        raise StoreLockedError(f"store {ctx.root} is being repaired by pid {holder}",
                               "wait for the repair to finish") from None
    ctx.lock_fd = fd
    root = os.fstat(fd)
    ctx.root_id = (root.st_dev, root.st_ino)
    if not alone:
        return
    note = os.open(ctx.root / LOCK, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:  # in place and fixed width: needs no new disk block, never reads as empty
        os.pwrite(note, f"{os.getpid():<20}\n".encode(), 0)
    finally:
        os.close(note)


def unlock(ctx: Context) -> None:
    if ctx.lock_fd >= 0:
        os.close(ctx.lock_fd)
        ctx.lock_fd = -1


def close_registries(ctx: Context) -> None:
    """Close what the opening got to open (a failed open ends its session too)."""
    for name in ("files", "sessions", "db"):
        if getattr(ctx, name, None) is not None:
            getattr(ctx, name).close()

