"""A worker's watch on pfs: exit as soon as pfs itself is gone, so that no worker outlives a pfs killed with -9."""

import os
import select
import time

from pfs.registry import pid_alive


def exit_with(pid: int) -> None:
    """Exit this process once process `pid` (pfs) has: woken by a pidfd, or polling where there is none."""
    try:
        fd = os.pidfd_open(pid)
        select.select([fd], [], [])  # readable once the process has exited
    except (AttributeError, OSError):  # no pidfd (not Linux): poll
        while pid_alive(str(pid)):
            time.sleep(1)
    os._exit(1)

