"""Typed failures of the core. The shell decides how to word them; each carries
a short message and, where there is one, advice on what to do."""

import errno
from concurrent.futures import BrokenExecutor

from pfs.redact import scrub


def printable(text: str) -> str:
    """Text safe to show on one terminal line: control characters (newlines,
    carriage returns, escape sequences from a hostile file name) are escaped."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class PfsError(Exception):
    """A failure the user can understand and act on; shown as one line."""

    def __init__(self, message: str, advice: str = "") -> None:
        message, advice = scrub(message), scrub(advice)  # whatever a library's error quoted
        super().__init__(message)
        self.message = message
        self.advice = advice

    def __str__(self) -> str:
        return printable(f"{self.message} ({self.advice})" if self.advice else self.message)


class UsageError(PfsError):
    """A command or option was given wrongly."""


class MissingDependencyError(UsageError, ImportError):
    """An optional package pfs needs for what was asked is not installed (an
    ImportError too, for code that catches those)."""

    def __init__(self, message: str, advice: str = "", name: str | None = None) -> None:
        super().__init__(message, advice)
        self.name = name


class NotFoundError(PfsError):
    """No such file id, or no such source path."""


class DestinationError(PfsError):
    """A get destination that cannot be written (exists, missing directory)."""


class StoreError(PfsError):
    """The store cannot be opened or used: locked, not a store, damaged metadata."""


class DamagedError(StoreError):
    """The store's metadata is damaged; `pfs --store DIR repair` can rebuild it."""


class StoreLockedError(StoreError):
    """Another pfs process holds the store's lock."""


class IntegrityError(PfsError):
    """Stored data failed verification; `damage` lists what was found."""

    def __init__(self, message: str, damage: list, advice: str = "") -> None:
        super().__init__(message, advice)
        self.damage = damage


class Cancelled(PfsError):
    """The user cancelled the operation (`cancel JOB`)."""


class WorkerError(PfsError):
    """A pool worker died or failed while processing a part."""


class ResourceError(PfsError):
    """The system refused a thread or a process (a pids or process limit)."""


def advice_for(exc: OSError) -> str:
    """What a user can do about an operating-system error, where there is something."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "free some space and try again"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "check the permissions"
    return ""


class VolumeError(PfsError):
    """A volume (a directory or a bucket holding parts) could not do what was asked."""


class PartMissingError(VolumeError):
    """No part is stored under that key."""


class PartExistsError(VolumeError):
    """A part is already stored under that key; volumes never overwrite one."""


class PartDamagedError(VolumeError):
    """Something that is not a part (a directory, a FIFO, a symlink) sits in a part's place."""


class VolumeUnavailableError(VolumeError):
    """The volume cannot be used at all: not mounted, unreachable, credentials refused, no bucket."""


class BucketMissingError(VolumeUnavailableError):
    """The S3 bucket a volume names does not exist."""


class MissingBackendError(VolumeUnavailableError, MissingDependencyError):
    """A kind of volume whose package is not installed: unusable as any unreachable volume is."""


class OutOfSpaceError(VolumeError):
    """The volume has no room left for the part."""


class NameConflictError(UsageError):
    """A record would make a name both a file and a directory (as mkdir over a file)."""


def describe(exc: BaseException) -> str:
    """A one-line reason for a failure, in the user's words, for the file record
    and the screen: never an exception class name."""
    if isinstance(exc, PfsError):
        return exc.message
    if isinstance(exc, OSError):
        return scrub(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
    if isinstance(exc, BrokenExecutor):  # the worker pool's BrokenProcessPool
        return "a worker process died"
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return "interrupted"
    return scrub(str(exc)) or "an unexpected failure"  # a library's words may quote a secret
