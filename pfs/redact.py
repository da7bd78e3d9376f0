"""Secrets kept out of every message, log line and traceback.

A library's error may quote what it was given: libpq quotes a password it
cannot parse, a URI's text holds `user:password@`. Whatever comes to know a
secret (a database URI, S3 credentials) tells this module, and every message
(PfsError) and every log record passes through scrub() on its way out.
Patterns catch what nobody told: the password of any `scheme://user:PASSWORD@`
and of a libpq `password=VALUE` (the placeholder PASSWORD itself, in advice, stays)."""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import quote, unquote

MASK = "***"
#: Shorter secrets are not masked wherever they occur: that would garble every message.
_SHORTEST = 3

_known: set[str] = set()
_lock = threading.Lock()
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^@\s]*)(?=@)")
_KEYWORD = re.compile(r"(?P<head>\b(?:password|passwd|pwd|secret_access_key|aws_secret_access_key|"
                      r"session_token|aws_session_token)\s*[=:]\s*['\"]?)(?P<secret>[^\s'\"&]+)", re.IGNORECASE)


def remember(secret: str | None) -> None:
    """Mask `secret` (as given, and in its %-encoded and decoded forms) from now on."""
    if not secret:
        return
    forms = {secret, unquote(secret), quote(secret, safe=""), quote(unquote(secret), safe="")}
    with _lock:
        _known.update(f for f in forms if len(f) >= _SHORTEST)


def remember_uri_password(uri: str) -> None:
    """Mask the password a URI holds (`scheme://user:PASSWORD@host`, or a
    `password=` parameter), however malformed the rest of it is."""
    rest = uri.partition("://")[2]
    userinfo = rest.rpartition("@")[0].split("?", 1)[0] if "@" in rest else ""
    remember(userinfo.partition(":")[2])
    for found in _KEYWORD.finditer(uri):
        remember(found["secret"])


def scrub(text: str) -> str:
    """`text` with every known secret, and every password the patterns find, masked."""
    with _lock:
        known = sorted(_known, key=len, reverse=True)  # a secret holding another is masked whole
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _USERINFO.sub(lambda m: m["head"] + (MASK if m["secret"] not in ("", "PASSWORD") else m["secret"]), text)
    return _KEYWORD.sub(lambda m: m["head"] + MASK, text)


class _Scrubbing(logging.Filter):
    """Scrubs each record of pfs's logger before any handler sees it: its
    message, and the traceback of the exception it carries, made text here."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = scrub(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


logging.getLogger("pfs").addFilter(_Scrubbing())
