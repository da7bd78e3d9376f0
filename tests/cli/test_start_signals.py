"""A Ctrl-C (SIGINT) at any instant of pfs's start is one line, never a
KeyboardInterrupt traceback: the entry point holds the signals from its first
line until their handling is installed."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import env

import pfs

#: Run pfs as `python -m pfs` does, with an import hook that sends SIGINT to the
#: process the moment MODULE is about to be imported: the instant is exact.
_AT_IMPORT = """
import os, runpy, signal, sys
module = sys.argv[1]
class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == module:
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, Interrupt())
sys.argv = ["pfs", *sys.argv[2:]]
runpy.run_module("pfs", run_name="__main__", alter_sys=True)
"""

def _before_the_entry_point(traceback: str) -> bool:
    """Whether a traceback was raised before pfs's entry point held the signals:
    in Python's start, the package's __init__, or the first statement of
    pfs/__main__.py (the import of what holds them)."""
    main = Path(pfs.__file__).with_name("__main__.py")
    first = next(i for i, line in enumerate(main.read_text().splitlines(), 1) if line.startswith("import"))
    frames = [(path, int(line)) for path, line in re.findall(r'File "([^"]+)", line (\d+)', traceback)]
    return all(path == str(main.with_name("__init__.py")) or (path == str(main) and line == first)
               for path, line in frames if path.startswith(str(main.parent)))


#: Modules the entry point imports before the signal handling is in place
#: (threading and queue: the handling's own imports).
EARLY = ["pfs.cli.interrupts", "threading", "queue", "termios"]


@pytest.mark.parametrize("module", EARLY)
def test_sigint_while_the_entry_point_imports_is_one_line(tmp_path, module):
    r = subprocess.run([sys.executable, "-c", _AT_IMPORT, module, "--store", str(tmp_path / "s"), "list"],
                       capture_output=True, text=True, env=env(), timeout=60, cwd=tmp_path)
    assert "Traceback" not in r.stderr and "KeyboardInterrupt" not in r.stderr, r.stderr
    assert r.returncode == 130, (r.returncode, r.stderr)
    assert r.stderr == "pfs: interrupted (SIGINT): stopped before the store was opened; nothing was changed\n"
    assert not (tmp_path / "s").exists(), "nothing was changed"


def test_sigint_at_many_instants_of_a_real_start(tmp_path):
    """SIGINT sent to a real `python -m pfs list` at 40 instants, 0 to ~160 ms after it was
    started. Before the entry point's first line runs, Python itself is starting
    (site, .pth files, the package's __init__) and prints its own traceback,
    which no code of pfs can prevent; from the entry point's first line on,
    every outcome is the one line or a finished list."""
    store = tmp_path / "s"
    assert subprocess.run([sys.executable, "-m", "pfs", "--store", str(store), "list"], env=env(),
                          capture_output=True, timeout=60).returncode == 0
    outcomes = {"one line": 0, "finished": 0, "python's start": 0}
    for i in range(40):
        proc = subprocess.Popen([sys.executable, "-m", "pfs", "--store", str(store), "list"], env=env(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(i * 0.004)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        if "Traceback" in err or "KeyboardInterrupt" in err:
            assert _before_the_entry_point(err), f"a traceback from pfs's entry point past its first line:\n{err}"
            outcomes["python's start"] += 1
        elif proc.returncode == 130:
            assert err.startswith("pfs: interrupted (SIGINT): ") and err.count("\n") == 1, err
            outcomes["one line"] += 1
        else:
            assert proc.returncode in (0, -signal.SIGINT), (proc.returncode, err)  # done, or killed before Python ran
            outcomes["finished"] += 1
    assert outcomes["one line"] > 0, outcomes
    print(outcomes)
