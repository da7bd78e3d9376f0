"""Where a password comes from: a file named by --password-file or
$PFS_PASSWORD_FILE, $PFS_PASSWORD, or a prompt on the terminal; never a
command-line argument. A password read is bytes held by the caller only: no
message here ever contains one."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping

from pfs.errors import PfsError, UsageError

HOW = "give it with --password-file FILE, PFS_PASSWORD_FILE=FILE or PFS_PASSWORD, or run pfs on a terminal"


def read_password_file(path: str, what: str = "password file") -> bytes:
    """The first line of a file, without its line end; an empty one is refused."""
    try:
        with open(os.path.expanduser(path), "rb") as f:
            line = f.readline(1 << 16)
    except OSError as exc:
        raise UsageError(f"cannot read the {what} {path}: {exc.strerror}") from None
    password = line.rstrip(b"\r\n")
    if not password:
        raise UsageError(f"the {what} {path} holds no password on its first line")
    return password


def ask_terminal(prompt: str) -> str:
    import getpass

    return getpass.getpass(prompt)


class Passwords:
    """The password sources of one pfs process (see the module's docstring).
    `new_file` is where `key add` takes the password of a new slot from."""

    def __init__(self, file: str | None = None, new_file: str | None = None,
                 environ: Mapping[str, str] = os.environ, interactive: bool | None = None,
                 ask: Callable[[str], str] = ask_terminal) -> None:
        self.file = file or environ.get("PFS_PASSWORD_FILE") or None
        self.value = environ.get("PFS_PASSWORD") or None
        self.new_file = new_file
        self.interactive = sys.stdin is not None and sys.stdin.isatty() if interactive is None else interactive
        self._ask = ask

    def current(self, where: str, confirm: bool = False) -> bytes:
        """The password of the store at `where` (asked twice with `confirm`, at creation)."""
        if self.file:
            return read_password_file(self.file)
        if self.value:
            return self.value.encode()
        if not self.interactive:
            raise UsageError(f"the store {where} is encrypted and no password was given", HOW) if not confirm \
                else UsageError(f"--encrypt needs a password for the new store {where}", HOW)
        return self._prompt(f"password for {where}: ", confirm)

    def new(self, where: str, file: str | None = None) -> bytes:
        """The password of a new key slot: from `file` (--new-password-file), else asked twice."""
        if file or self.new_file:
            return read_password_file(file or self.new_file, "new password file")
        if not self.interactive:
            raise UsageError("no new password was given",
                             "give it with --new-password-file FILE, or run pfs on a terminal")
        return self._prompt(f"new password for {where}: ", confirm=True)

    def _prompt(self, prompt: str, confirm: bool) -> bytes:
        try:
            first = self._ask(prompt)
            if not first:
                raise UsageError("an empty password is not a password")
            if confirm and self._ask("again: ") != first:
                raise UsageError("the two passwords differ")
        except (EOFError, KeyboardInterrupt):
            raise PfsError("no password was given") from None
        return first.encode()
