"""The `pfs` entry point: options, then the interactive shell (stdin is a
terminal), script mode (stdin is piped) or one command given on the command line."""

from __future__ import annotations

import _signal  # the built-in module behind signal: imported in microseconds, where signal takes a millisecond

# The first thing pfs does: hold the signals it handles (a Ctrl-C while the
# handling is still being imported would be a KeyboardInterrupt traceback)
# until interrupts.install takes them, a held one included, as one line.
_signal.pthread_sigmask(_signal.SIG_BLOCK, {_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP})

from pfs.cli import interrupts  # noqa: E402

interrupts.install()  # before the slower imports: a Ctrl-C from here on is one line, not a traceback

import argparse  # noqa: E402
import errno  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

from pfs import __version__  # noqa: E402
from pfs.codec import CODECS, HASHES  # noqa: E402
from pfs.errors import PfsError, printable  # noqa: E402
from pfs.units import format_size, parse_size  # noqa: E402

log = logging.getLogger("pfs")

#: Part sizes pfs accepts: below, a file becomes a flood of tiny part files;
#: above, one part alone would need gigabytes of memory in flight.
MIN_CHUNK, MAX_CHUNK = 64 << 10, 1 << 30


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option as one `error:` line."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        # "-4M" is a (bad) value, not an option: let the value's check say what is wrong with it
        self._negative_number_matcher = re.compile(r"^-\d")

    def error(self, message: str):
        sys.stderr.write(f"error: {message} (see pfs --help)\n")
        raise SystemExit(2)

    def format_help(self) -> str:
        """The help, ending with the commands as the command table has them (so
        it cannot go stale); the table is imported only when help is asked for."""
        self.epilog = command_summary()
        return super().format_help()


def command_summary() -> str:
    """One line per command of the session, then repair (see commands.help)."""
    from pfs.cli.commands.help import REPAIR, aliases_of
    from pfs.cli.commands.table import ALIASES, COMMANDS

    usages = [c.usage + aliases_of(c.name, ALIASES) for c in COMMANDS.values()]
    return "\n".join(["commands (typed in the shell, piped as a script, or given as COMMAND; "
                      "`pfs help COMMAND` says more):", *(f"  {u}" for u in usages), f"  {REPAIR[0]}   {REPAIR[1]}",
                      "  pfs --store DIR mount MOUNTPOINT   (from the system shell) the store as a directory "
                      "(FUSE)"])


def _size(text: str) -> int:
    try:
        value = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 bytes")
    return value


def _chunk_size(text: str) -> int:
    value = _size(text)
    if not MIN_CHUNK <= value <= MAX_CHUNK:
        raise argparse.ArgumentTypeError(f"{text!r} is {format_size(value)}; a chunk size must be between "
                                         f"{format_size(MIN_CHUNK)} and {format_size(MAX_CHUNK)}")
    return value


#: More worker processes than this only add memory and start-up time.
MAX_WORKERS = 256


def _workers(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of workers")
    if int(text) > MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"{text} is more than {MAX_WORKERS} worker processes")
    return int(text)


def _copies(text: str) -> int:
    from pfs.registry import MAX_COPIES
    if not text.isdigit() or not 1 <= int(text) <= MAX_COPIES:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of copies from 1 to {MAX_COPIES}")
    return int(text)


def _ec(text: str) -> str:
    from pfs.registry import parse_ec
    try:
        parse_ec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is {exc}, e.g. 4+2") from None
    return text


def default_store() -> str:
    """$PFS_STORE, else the user data directory."""
    from pfs.store.opening import default_root

    return str(default_root())


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pfs", formatter_class=argparse.RawDescriptionHelpFormatter,
                description="A parallel chunked file store with an interactive shell.\nWith no COMMAND, reads "
                "commands from the terminal (a shell) or from piped stdin (a script).")
    p.add_argument("--store", metavar="DIR", help="store directory, or a PostgreSQL database shared by many machines: "
                   "postgresql://USER@HOST:PORT/DB (default: $PFS_STORE, else the user data dir)")
    p.add_argument("--data", metavar="DIR", help="where a PostgreSQL store keeps its part data "
                   "(default: the directory given when it was created)")
    p.add_argument("--chunk-size", metavar="SIZE", type=_chunk_size,
                   help="part size for new files, 64k to 1G, e.g. 512k, 4M (default: the store's, 4M for a new store)")
    p.add_argument("--max-memory", metavar="SIZE", type=_size, default=256 << 20,
                   help="bound on part bytes in flight across all jobs (default: 256M)")
    p.add_argument("--workers", metavar="N", type=_workers, default=os.cpu_count() or 1,
                   help="worker processes (default: CPU count)")
    p.add_argument("--codec", choices=CODECS, help="compression for new files (default: the store's, zstd)")
    p.add_argument("--hash", choices=HASHES, help="part hash for new files (default: the store's, xxh3-128)")
    p.add_argument("--copies", metavar="N", type=_copies,
                   help="copies of each part of new files, each on its own volume (default: the store's, 1)")
    p.add_argument("--ec", metavar="K+M", type=_ec,
                   help="instead of copies: split each part into K data + M parity shards on K+M volumes")
    p.add_argument("--encrypt", action="store_true",
                   help="create the new store encrypted (AES-256-GCM; asks for a password twice; "
                   "see docs/encryption.md)")
    p.add_argument("--encrypt-names", action="store_true",
                   help="with --encrypt: also encrypt the names and symlink targets the new store records "
                   "(see docs/encryption.md)")
    p.add_argument("--password-file", metavar="FILE", help="read an encrypted store's password from the first line "
                   "of FILE (default: $PFS_PASSWORD_FILE, $PFS_PASSWORD, else asked on the terminal)")
    p.add_argument("--recipient-key", metavar="FILE", help="open an encrypted store write-only with the recipient "
                   "key in FILE (from `key add --recipient FILE`; default: $PFS_RECIPIENT_FILE): put, sync and "
                   "list work, nothing stored is read back, and no password is asked")
    p.add_argument("--version", action="version", version=f"pfs {__version__}")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND", help="run this one command and exit")
    return p


#: One-shot commands whose work runs in the worker pool (see _start_forkserver_early).
POOL_COMMANDS = frozenset({"put", "get", "verify", "heal"})


def _start_forkserver_early(args: argparse.Namespace) -> None:
    """For a one-shot command whose work runs in the worker pool, start the
    pool's forkserver now, before pfs imports and opens the store: its own start
    (an interpreter importing the workers' modules) was the longest wait of a
    small put, and now overlaps ours. Only where what it must preload is known
    without opening the store: a directory store named by --store or $PFS_STORE
    (the default one costs platformdirs to find) whose store.json lists local
    volumes only (a remote volume's backend is preloaded too: VolumeSet.preload).
    Otherwise the forkserver starts with the pool, as in a session. A wrong guess
    (store.json changed meanwhile) costs speed, never correctness."""
    location = args.store or os.environ.get("PFS_STORE")
    preload = _local_volumes_only(Path(location)) if args.command[:1] and args.command[0] in POOL_COMMANDS \
        and location else None
    if preload is not None:
        from pfs.engine.pool import start_forkserver

        interrupts.start_resource_tracker()
        with interrupts.main_thread_shielded():
            start_forkserver(preload)


def _local_volumes_only(root: Path) -> tuple[str, ...] | None:
    """What the forkserver must preload if the store.json at `root` lists only
    local volumes (the cryptography library for an encrypted store), None if it
    lists others or cannot tell."""
    try:
        with open(root.expanduser() / "store.json", "rb") as f:
            config = json.load(f)
        if all("://" not in volume["url"] for volume in config["volumes"]):
            from pfs.crypto.opening import CRYPTO_PRELOAD

            return (CRYPTO_PRELOAD,) if "encryption" in config else ()
    except (OSError, ValueError, LookupError, TypeError):
        pass
    return None


def _store_root(args: argparse.Namespace) -> Path | str:
    """The store directory (or database URI); refuses a new store named like a
    command (`pfs --store list` means `pfs list` far more often than a store called "list")."""
    from pfs.cli.commands import ALIASES, COMMANDS
    from pfs.registry.postgres import is_database

    given = args.store or default_store()
    if is_database(given):
        return given
    root = Path(given).expanduser()
    if args.store in {*COMMANDS, *ALIASES, "repair"} and not root.exists():
        raise PfsError(f"there is no store named {given!r}: did you mean `pfs {given}`?",
                       f"--store ./{given} creates a store of that name")
    return root


def _open_store(root: Path | str, args: argparse.Namespace, repair: bool = False):
    from pfs.crypto.opening import StoreKeys
    from pfs.crypto.passwords import Passwords
    from pfs.store.facade import Store

    overrides = {k: v for k, v in (("chunk_size", args.chunk_size), ("codec", args.codec), ("hash", args.hash))
                 if v is not None}
    if args.copies is not None or args.ec is not None:  # one replaces the other's store default
        overrides.update(copies=args.copies or 1, ec=args.ec or "")
    interrupts.abandoning(lambda: f"stopped while opening the store {root}; "
                                  "nothing is lost: the next open finishes any recovery")
    keys = StoreKeys(Passwords(args.password_file), args.encrypt, args.recipient_key, args.encrypt_names)
    return Store(root, overrides, args.workers, args.max_memory, repair, args.data, keys)


def _guard_standard_streams() -> None:
    """Give a closed stdin, stdout or stderr /dev/null, so that no store file
    opened later takes descriptor 0, 1 or 2 and receives output meant for the
    screen. A closed stdout stays None, so the output knows it was lost."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stderr is None:  # nowhere to report to: errors are dropped, the exit status still tells
        sys.stderr = open(2, "w", closefd=False)


def _enough_descriptors(workers: int) -> None:
    """Make sure pfs may open the descriptors it needs (the pool's pipes, the
    workers' files, the fsync threads, the registries): raise the soft limit
    towards the hard one if it is lower, and refuse to start, rather than fail
    midway, if even the hard limit is too low."""
    import resource

    need = 32 + 4 * workers
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            raise PfsError(f"pfs may open only {hard} files at once (ulimit -n) and needs {need} "
                           f"with --workers {workers}", f"raise the limit with `ulimit -n {need}`, or use fewer workers")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def _log_path(store) -> Path:
    """STORE/pfs.log; for a store whose names are encrypted, a log of this
    machine's user instead (the log names files, and the store must not)."""
    if not store.names_sealed:
        return store.root / "pfs.log"
    import platformdirs

    folder = Path(platformdirs.user_log_dir("pfs"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{store.config['id']}.log"


def _log_to(path: Path) -> None:
    logging.raiseExceptions = False  # a log that cannot be written (full disk) must not reach the screen
    handler = logging.FileHandler(path, delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    threading.excepthook = _log_thread_failure


def _log_thread_failure(args: threading.ExceptHookArgs) -> None:
    """A thread that dies of an exception (one of the pool's own, refused a
    thread it needed) leaves its traceback in the log, not on the screen; what
    it was for fails as one `error:` line of its own."""
    if args.exc_type is not SystemExit:
        log.error("thread %s died", args.thread.name if args.thread else "?",
                  exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def _report_repair(report) -> int:
    from pfs.cli.output import PlainOutput

    out = PlainOutput()
    for line in report.repaired:
        out.line(f"repaired: {line}")
    for line in report.lost:
        out.line(f"lost: {line}")
    out.line(f"repair done: {len(report.repaired)} repaired, {len(report.lost)} lost")
    return 1 if report.lost or out.lost else 0


def _mount_options(words: list[str]):
    """`mount`'s options and mount point, checked before the store opens; a
    PfsError naming the fix (what to install, which directory to use)."""
    from pfs.cli import mount as command
    from pfs.mount import binding

    options = command.parse(words)
    where = command.check_mountpoint(options.mountpoint)
    binding.load()
    return options, where


def _run_mount(store, options, where: str) -> int:
    """The one-shot mode `mount`: serve the store at `where` in the foreground until unmounted."""
    from pfs.cli import mount as command

    try:
        return command.run(store, options, where)
    except PfsError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2


#: One-shot commands that read what is stored, refused by a write-only pfs (exit status 2).
READING = frozenset({"get", "cat", "verify", "heal", "mount"})


def _write_only_refusal(store, command: list[str]) -> str | None:
    """Why a write-only pfs refuses this one-shot command (or mount) before it starts, or None."""
    if not (store.keys.write_only and command) or not (command[0] in READING or command[:2] == ["volume", "drain"]):
        return None
    try:
        store.check_readable()
    except PfsError as exc:
        return str(exc)
    return None


def main(argv: list[str] | None = None) -> int:
    """Run pfs; return its exit status. The garbage collector is frozen at the
    end: the interpreter's teardown that follows then does not scan every object
    pfs made (a tenth of the CPU of a `list`), and pfs has closed all it opened."""
    try:
        return _run(argv)
    finally:
        gc.freeze()


def _run(argv: list[str] | None) -> int:
    _guard_standard_streams()
    args = build_parser().parse_args(argv)
    repair = args.command[:1] == ["repair"]
    if repair and len(args.command) > 1:
        sys.stderr.write("error: repair takes no arguments (usage: pfs --store DIR repair)\n")
        return 2
    mount = None
    try:
        if args.command[:1] == ["mount"]:
            mount = _mount_options(args.command[1:])
        _enough_descriptors(args.workers)
        _start_forkserver_early(args)
        root = _store_root(args)
        if mount is not None:  # libfuse changes to / once mounted: every path the store keeps must be absolute
            root = root.absolute() if isinstance(root, Path) else root
            args.data = args.data and os.path.abspath(args.data)
        store = _open_store(root, args, repair)
    except PfsError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except OSError as exc:
        sys.stderr.write(f"error: cannot open the store: {exc.strerror}: {exc.filename}\n")
        return 2
    if store.created:
        sys.stderr.write(f"pfs: created a new store at {store.description}\n")
    _log_to(_log_path(store))
    if store.workers_note:
        sys.stderr.write(f"pfs: {store.workers_note}\n")
    with store:
        refused = _write_only_refusal(store, args.command)
        if refused:
            sys.stderr.write(f"error: {refused}\n")
            return 2
        for entry in store.recovered:
            done = "rolled back" if entry.status == "storing" else "finished deleting"
            log.info("file %d (%s) was %s when pfs stopped: %s", entry.id, entry.name, entry.status, done)
            sys.stderr.write(f"pfs: file {entry.id} ({printable(entry.name)}) was {entry.status} when pfs stopped: {done}\n")
        if repair:
            return _report_repair(store.repair_report)
        if mount is not None:
            return _run_mount(store, *mount)
        if args.command:
            from pfs.cli.script import run_one
            return run_one(store, args.command)
        if sys.stdin is not None and sys.stdin.isatty():
            from pfs.cli.shell import run_shell
            return run_shell(store)
        from pfs.cli.script import run_script
        return run_script(store, sys.stdin or [])  # a closed stdin is an empty script
