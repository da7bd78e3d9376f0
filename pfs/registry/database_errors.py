"""What went wrong reaching a PostgreSQL database, in words a user can act on.

libpq says everything in one message (a URI it cannot parse, a password
refused, a database missing, nothing listening, no answer, TLS); each cause
gets its own words and advice here. The messages pass through pfs.redact like
every PfsError, so a password libpq quotes never shows."""

from __future__ import annotations

import re

from pfs.errors import StoreError

NOTHING_CHANGED = "nothing was changed by the command that failed"

#: (pattern in libpq's message, what happened, what to do); the first that matches wins.
_CAUSES: list[tuple[re.Pattern, str, str]] = [(re.compile(p, re.IGNORECASE), what, advice) for p, what, advice in [
    (r"invalid percent-encoded|unexpected spaces|invalid URI|invalid connection option|invalid integer value|"
     r"missing \"=\"|unterminated quoted string|IPv6|unexpected character|invalid sslmode",
     "the database URI is not valid ({reason})",
     "write postgresql://USER:PASSWORD@HOST:PORT/DATABASE, with the password's special characters "
     "%-encoded (a space is %20, % is %25)"),
    (r"password authentication failed|authentication failed|no password supplied|password is required|"
     r"SCRAM|pg_hba\.conf rejects|no pg_hba\.conf entry",
     "the PostgreSQL server at {host} refused the login ({reason})",
     "check the user and password in the URI (or PGPASSWORD, ~/.pgpass) and the server's pg_hba.conf"),
    (r"database \"[^\"]*\" does not exist", "the database {database} does not exist on {host}",
     "create it (`createdb {database}`) or check the database name in the URI"),
    (r"role \"[^\"]*\" does not exist", "the user {user} does not exist on {host}",
     "check the user in the URI, or create it (`createuser {user}`)"),
    (r"SSL|TLS|certificate", "a TLS problem connecting to {host} ({reason})",
     "check sslmode in the URI and the server's TLS settings"),
    (r"could not translate host name|Name or service not known|nodename nor servname",
     "the host name {host} is not known", "check the host in the URI"),
    (r"Connection refused|No such file or directory.*socket|could not connect to server",
     "nothing accepts connections at {host}", "check that PostgreSQL runs there, and the host and port in the URI"),
    (r"timeout expired|timed out|server closed the connection unexpectedly|Connection reset|No route to host|"
     r"Network is unreachable|terminating connection",
     "the PostgreSQL server at {host} did not answer ({reason})",
     "check that it is up and reachable, then try again"),
]]


def database_failure(exc: BaseException, where: dict[str, str]) -> StoreError:
    """The StoreError for a failure to reach a database; `where` holds its `host`,
    `database` and `user` as a message may show them."""
    reason = _reason(exc)
    for pattern, what, advice in _CAUSES:
        if pattern.search(reason):
            return StoreError(what.format(reason=reason, **where), f"{advice.format(**where)}; {NOTHING_CHANGED}")
    return StoreError(f"cannot reach the database {where['name']}: {reason or 'the connection failed'}",
                      f"try again; {NOTHING_CHANGED}")


def _reason(exc: BaseException) -> str:
    """libpq's own words, without its preamble: the line that says why."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0] if lines else ""
    text = re.sub(r"^connection (failed|is bad): ", "", text)
    text = re.sub(r"^connection to server at \"[^\"]*\"(?: \([^)]*\))?, port \d+ failed: ", "", text)
    return re.sub(r"^FATAL:\s+", "", text)
