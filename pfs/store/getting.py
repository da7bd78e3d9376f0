"""Get: where a stored file may be written, and writing it there so that only a
fully verified file ever appears under the destination's name."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import time
import uuid
from concurrent.futures import Future, wait
from pathlib import Path

from pfs.errors import DestinationError, PfsError, advice_for
from pfs.failures import unreadable
from pfs.store.catalog import Catalog
from pfs.store.checking import Checking, Findings
from pfs.store.context import Context, Progress, no_progress
from pfs.store.paths import check_link_destination, file_kind, proc_path, safe_name, user_path


class Output:
    """The file a get writes, kept without a name in the destination's directory
    (O_TMPFILE) until every part is in, so a crash or a failure leaves nothing
    behind. Workers write it through proc_path. On a filesystem without O_TMPFILE
    it is a hidden temporary name beside the destination instead. Every name is
    made relative to the directory opened once, so the file lands where it was checked."""

    def __init__(self, target: Path, dir_fd: int | None = None) -> None:
        """`dir_fd`: the destination's directory, opened by the caller (who closes it)."""
        self.target, self.name = target, target.name
        self._own_dir = dir_fd is None
        self.dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY) if dir_fd is None else dir_fd
        self.fd = -1
        self.temp: str | None = None
        try:
            try:
                self.fd = os.open(".", os.O_TMPFILE | os.O_WRONLY, 0o644, dir_fd=self.dir_fd)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                    raise
                self.temp = self._temp_name()
                self.fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=self.dir_fd)
        except BaseException:
            self.close()
            raise
        self.path = proc_path(self.fd)

    def _temp_name(self) -> str:
        return f".{self.name}.pfs-{uuid.uuid4().hex[:8]}.tmp"

    def _link(self, name: str) -> None:
        """A name for the file (linkat follows the /proc link to the file itself)."""
        os.link(self.path, name, dst_dir_fd=self.dir_fd)

    def publish(self, force: bool, durable: bool = True) -> None:
        """Give the finished file its name, durably (unless the caller fsyncs the
        directory itself: not `durable`): with force it replaces whatever is
        there; without, it fails rather than replace a file that appeared meanwhile."""
        if force:
            if self.temp is None:  # a link cannot replace a name: link a temporary one, rename that
                self.temp = self._temp_name()
                self._link(self.temp)
            os.replace(self.temp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
            self.temp = None
        else:
            try:
                self._link(self.name)
            except FileExistsError:
                raise DestinationError(f"{self.target} already exists", "use --force to overwrite it") from None
        if durable:
            os.fsync(self.dir_fd)

    def close(self) -> None:
        try:
            if self.temp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.temp, dir_fd=self.dir_fd)
        finally:
            if self.fd >= 0:
                os.close(self.fd)
            if self._own_dir:
                os.close(self.dir_fd)

    def __enter__(self) -> Output:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_replaceable(target: Path, force: bool) -> None:
    """Refuse to write `target` over anything but a regular file (or a link to
    one: the link itself is replaced), and over a file without force."""
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise DestinationError(f"cannot use {target}: {exc.strerror}", advice_for(exc)) from None
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise DestinationError(f"{target} is {file_kind(mode)}", "get writes only regular files")
    if stat.S_ISLNK(mode):
        check_link_destination(target)
    if not force:
        raise DestinationError(f"{target} already exists", "use --force to overwrite it")


class Getting:
    """Writes stored files to their destinations."""

    def __init__(self, ctx: Context, catalog: Catalog, checking: Checking) -> None:
        self.ctx, self.catalog, self.checking = ctx, catalog, checking

    def destination(self, file_id: int, dest: str | None, force: bool = False) -> Path:
        """Where get would write file `file_id`: never inside the store, never over
        anything but a regular file (or a link), never over a file without force."""
        entry = self.catalog.entry(file_id)
        target = user_path(dest) if dest else Path.cwd()
        try:
            if dest and dest.endswith("/") and not target.is_dir():
                raise DestinationError(f"directory {target} does not exist", "create it first")
            if target.is_dir():
                target = target / safe_name(entry)
            if not target.parent.is_dir():
                raise DestinationError(f"directory {target.parent} does not exist", "create it first")
            if self.ctx.inside_store(target) or self.ctx.inside_store(target.parent):
                raise DestinationError(f"{target} is inside the store {self.ctx.root}",
                                       "choose a destination outside the store")
        except OSError as exc:
            raise DestinationError(f"cannot use {target}: {exc.strerror}", advice_for(exc)) from None
        check_replaceable(target, force)
        return target

    def get(self, file_id: int, dest: str | None = None, force: bool = False, salvage: bool = False,
            progress: Progress = no_progress, cancel: threading.Event | None = None) -> tuple[Path, Findings]:
        """Rebuild a stored file at its destination, with its recorded mode and
        mtime; only a fully verified file appears under the destination name, and
        a crash leaves nothing behind. With salvage, damaged parts are zero-filled
        instead and listed. A damaged copy or shard met on the way is rewritten
        from the good data. Returns (path written, findings)."""
        entry = self.checking.stored_entry(file_id)
        target = self.destination(file_id, dest, force)
        try:
            with Output(target) as out:
                if entry.size:
                    os.posix_fallocate(out.fd, 0, entry.size)  # a full disk fails here, before any work
                flushes: list[Future] = []

                def written(nbytes: int) -> None:
                    progress(nbytes)
                    if not flushes or flushes[-1].done():  # keep the disk busy while parts arrive
                        flushes.append(self.ctx.engine.fsync_soon(out.path))

                try:
                    found = self.checking.check_parts(entry, out.path, written, cancel)
                finally:
                    wait(flushes)
                damage = found.damage
                if damage and not salvage:
                    raise unreadable(damage, "nothing was written")
                if entry.mode is not None:
                    os.fchmod(out.fd, entry.mode)
                if entry.mtime is not None:
                    os.utime(out.fd, ns=(time.time_ns(), entry.mtime))
                os.fsync(out.fd)
                out.publish(force)
            return target, found
        except OSError as exc:
            raise PfsError(f"cannot write {target}: {exc.strerror}", advice_for(exc)) from exc
