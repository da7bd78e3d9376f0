"""`pfs mount MOUNTPOINT` (the front end of pfs.mount): the store mounted in the foreground until the mount
point is unmounted (fusermount -u, umount) or pfs gets SIGINT, SIGTERM or
SIGHUP, which libfuse turns into a clean unmount; then exit 0."""

from __future__ import annotations

import argparse
import ctypes
import errno
import logging
import os
import signal
import sys
import time
from pathlib import Path

import platformdirs

from pfs.errors import PfsError, UsageError
from pfs.units import parse_size

log = logging.getLogger("pfs")

#: Bytes of files being written that may wait, staged, for their close (default --write-back).
WRITE_BACK = 4 << 30
#: renameat2's flag asking not to replace a file already under the new name.
RENAME_NOREPLACE = 1
#: The largest write the kernel hands the mount in one call.
MAX_WRITE = 1 << 20
#: utimensat's tv_nsec values for "now" and "leave it as it is".
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
#: What fuse_main returns when its loop was stopped (by SIGINT, SIGTERM or SIGHUP).
LOOP_STOPPED = 8
USAGE = "pfs [--store S] mount MOUNTPOINT [--read-only] [--allow-other] [--write-back SIZE] [--cache-dir DIR]"


def parse(words: list[str]) -> argparse.Namespace:
    """The mount command's own options; a UsageError saying what is wrong."""
    class Parser(argparse.ArgumentParser):
        def error(self, message: str):
            raise UsageError(message, f"usage: {USAGE}")

    p = Parser(prog="pfs mount", add_help=False)
    p.add_argument("mountpoint")
    p.add_argument("--read-only", action="store_true")
    p.add_argument("--allow-other", action="store_true")
    p.add_argument("--write-back", type=parse_size, default=WRITE_BACK)
    p.add_argument("--cache-dir", type=Path, default=Path(platformdirs.user_cache_dir("pfs")))
    options = p.parse_args(words)
    options.cache_dir = options.cache_dir.absolute()  # libfuse changes to / once mounted
    return options


def check_mountpoint(path: str) -> str:
    """The mount point as an absolute path, if it is an empty directory we may mount on."""
    where = os.path.abspath(path)
    try:
        inside = os.listdir(where)
    except FileNotFoundError:
        raise UsageError(f"mount point {path} does not exist", f"mkdir {path} first") from None
    except NotADirectoryError:
        raise UsageError(f"mount point {path} is not a directory", "mount on an empty directory") from None
    except PermissionError:
        raise UsageError(f"no permission to mount on {path}", "mount on a directory of your own") from None
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise UsageError(f"{path} is still the mount point of a pfs that stopped",
                             f"fusermount -u {path}, then mount again") from None
        raise UsageError(f"cannot use {path} as a mount point: {exc.strerror}") from None
    if inside:
        raise UsageError(f"mount point {path} is not empty", "mount on an empty directory")
    if not os.access(where, os.W_OK | os.X_OK):
        raise UsageError(f"no permission to mount on {path}", "mount on a directory of your own")
    return where


def run(store, options: argparse.Namespace, where: str) -> int:
    """Mount and serve until unmounted; the store stays open meanwhile."""
    from pfs.cli import interrupts
    from pfs.engine.pool import start_forkserver
    from pfs.mount import binding
    from pfs.mount.namespace_ops import sweep_hidden
    from pfs.mount.operations import Operations
    from pfs.mount.staging import WriteBack

    fuse = binding.load()
    # the pool's forkserver starts from this thread, not from a FUSE thread (which blocks every signal)
    interrupts.start_resource_tracker()
    with interrupts.main_thread_shielded():
        start_forkserver(store.engine.preload)
    sweep_hidden(store)
    write_back = WriteBack(options.cache_dir / "mount", options.write_back)

    started = []

    def mounted() -> None:
        started.append(True)
        sys.stdout.write(f"pfs: mounted {store.description} at {where} (unmount with: fusermount -u {where})\n")
        sys.stdout.flush()
        log.info("mounted at %s", where)

    class Fuse(fuse.FUSE):
        def init_fuse_3(self, conn, config):  # writes and read-ahead of 1 MiB, not 128 KiB: an eighth of the calls
            if conn:
                conn.contents.max_write = MAX_WRITE
                conn.contents.max_readahead = MAX_WRITE
            return super().init_fuse_3(conn, config)

        def write(self, path, buf, size, offset, fip):  # the kernel's bytes in place, not copied into a bytes
            data = memoryview((ctypes.c_char * size).from_address(ctypes.cast(buf, ctypes.c_void_p).value))
            return self.operations.write(None if path is None else path.decode(self.encoding, self.errors), data,
                                         offset, fip.contents)

        def read(self, path, buf, size, offset, fip):  # one copy, from the part's bytes into the kernel's buffer
            data = self.operations.read(None if path is None else path.decode(self.encoding, self.errors), size,
                                        offset, fip.contents)
            into = (ctypes.c_char * len(data)).from_address(ctypes.cast(buf, ctypes.c_void_p).value)
            memoryview(into).cast("B")[:] = memoryview(data).cast("B")
            return len(data)

        def truncate_fuse_3(self, path, length, fip):  # mfusepy drops the handle of an ftruncate
            return self.ftruncate(path, length, fip)

        def rename_fuse_3(self, old, new, flags):  # mfusepy drops the flags: an exchange must not replace
            # RENAME_NOREPLACE reaches us only once the kernel found no target; RENAME_EXCHANGE is refused
            return -errno.EINVAL if flags & ~RENAME_NOREPLACE else super().rename_fuse_3(old, new, flags)

        def utimens_fuse_3(self, path, buf, fip):  # mfusepy reads UTIME_NOW and UTIME_OMIT as times
            times = None
            if buf:
                now = time.time_ns()
                times = tuple(None if t.tv_nsec == UTIME_OMIT else now if t.tv_nsec == UTIME_NOW
                              else t.tv_sec * 1_000_000_000 + t.tv_nsec
                              for t in (buf.contents.actime, buf.contents.modtime))
            return self.operations.utimens(None if path is None else path.decode(self.encoding, self.errors), times)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)  # libfuse installs its own: they unmount cleanly
    interrupts.abandoning(lambda: f"the mount at {where} stopped")
    try:
        Fuse(Operations(store, write_back, mounted), where, raw_fi=True, foreground=True, fsname="pfs",
             subtype="pfs", default_permissions=True, allow_other=options.allow_other, ro=options.read_only,
             hard_remove=True, attr_timeout=1.0, entry_timeout=1.0, negative_timeout=1.0,
             **binding.version_options(fuse))
    except RuntimeError as exc:
        # libfuse's loop ends with 8 when a signal stopped it: it has unmounted cleanly all the same
        if not (started and exc.args == (LOOP_STOPPED,)):
            raise PfsError(f"cannot mount on {where} (libfuse failed with {exc})",
                           "see libfuse's line above; --allow-other needs user_allow_other in /etc/fuse.conf") \
                from None
    finally:
        write_back.close()
    log.info("unmounted %s", where)
    return 0
