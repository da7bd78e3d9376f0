"""The FUSE binding (mfusepy: ctypes over libfuse 3 or 2, so installing pfs
needs no compiler nor libfuse headers), loaded only when a mount starts."""

from __future__ import annotations

import os
import shutil
from types import ModuleType

from pfs.errors import PfsError


def load() -> ModuleType:
    """mfusepy, with libfuse and /dev/fuse present; else a PfsError saying what to install."""
    try:
        import mfusepy
    except ImportError:
        raise PfsError("pfs mount needs the FUSE binding mfusepy", "pip install 'pfs[mount]'") from None
    except OSError:  # mfusepy found no libfuse
        raise PfsError("pfs mount needs libfuse, which is not installed", "apt-get install fuse3") from None
    if not os.path.exists("/dev/fuse"):
        raise PfsError("pfs mount needs /dev/fuse, which this machine lacks",
                       "modprobe fuse, or in a container run it with --device /dev/fuse")
    if shutil.which("fusermount3") is None and shutil.which("fusermount") is None:
        raise PfsError("pfs mount needs fusermount3, which is not installed", "apt-get install fuse3")
    return mfusepy


def unmount_command() -> list[str]:
    """The command that unmounts a FUSE mount point (lazily, as libfuse itself does)."""
    return [shutil.which("fusermount3") or shutil.which("fusermount") or "fusermount3", "-u", "-z"]
