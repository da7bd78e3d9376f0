"""The FUSE binding (mfusepy: ctypes over libfuse 3 or 2, so installing pfs
needs no compiler nor libfuse headers), loaded only when a mount starts."""

from __future__ import annotations

import ctypes.util
import os
import shutil
from collections.abc import Callable
from types import ModuleType

from pfs.errors import PfsError


def load() -> ModuleType:
    """mfusepy, with libfuse and /dev/fuse present; else a PfsError saying what to install."""
    if not os.environ.get("FUSE_LIBRARY_PATH") and not os.environ.get("FUSE_LIBRARY_NAME") \
            and ctypes.util.find_library("fuse3"):
        os.environ["FUSE_LIBRARY_NAME"] = "fuse3"  # mfusepy takes libfuse 2 first where both are installed
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


def version_options(fuse: ModuleType) -> dict:
    """Options only the loaded libfuse major version knows: libfuse 3's thread
    bounds (unset, 3.14 warns on every mount)."""
    return {"max_idle_threads": 10, "max_threads": 16} if fuse.fuse_version_major == 3 else {}



def path_invalidator() -> Callable[[str], None] | None:
    """A function that makes the kernel forget what it cached of a path's
    attributes (libfuse 3's fuse_invalidate_path), for the FUSE loop this runs
    in (call it from a FUSE operation, such as init); None under libfuse 2."""
    import mfusepy

    lib = mfusepy._libfuse  # the libfuse mfusepy loaded: its fuse_invalidate_path is not wrapped
    if mfusepy.fuse_version_major != 3 or not hasattr(lib, "fuse_invalidate_path"):
        return None
    fuse = ctypes.c_void_p(lib.fuse_get_context().contents.fuse)
    lib.fuse_invalidate_path.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    return lambda path: lib.fuse_invalidate_path(fuse, os.fsencode(path))
