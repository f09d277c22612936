"""Who may reach `wsitui serve`: the Host and Origin a request names, and the start-up token.

A web page in the user's own browser can reach a loopback port: it can open a WebSocket to it
(browsers send its Origin) or, by DNS rebinding, make its own host name point at 127.0.0.1
(browsers send that name as Host). So every request must name, as Host, an address serve was
started on (the loopback names by default) at its port, and, when it has an Origin, that same
origin; the page and the socket also need the random token printed at start (as Jupyter does).
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARDS = frozenset({"0.0.0.0", "::", ""})


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(24)


def split_host(value: str) -> tuple[str, int | None] | None:
    """`name[:port]` (IPv6 in brackets) -> (lowercase name, port or None); None if malformed."""
    try:
        parts = urlsplit(f"//{value}")
        port = parts.port
    except ValueError:
        return None
    name = (parts.hostname or "").lower()
    if not name or parts.username is not None or parts.path or parts.query:
        return None
    return name, port


def _is_local_address(name: str) -> bool:
    """An IP literal of this machine (it can be bound): a name no DNS rebinding can use."""
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((str(ip), 0))
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Access:
    """The rule: names allowed as Host (any port but `port` refused) and the token (None: off)."""

    port: int
    names: frozenset[str]
    token: str | None
    any_local_ip: bool = False  # bound to a wildcard: every address of this machine is ours

    @classmethod
    def for_bind(
        cls, host: str, port: int, token: str | None, extra: tuple[str, ...] = ()
    ) -> Access:
        names = set(LOOPBACK_NAMES) | {h.lower().strip("[]") for h in extra}
        wildcard = host.strip("[]") in WILDCARDS
        if wildcard:
            names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        else:
            names.add(host.lower().strip("[]"))
        return cls(port, frozenset(names), token, any_local_ip=wildcard)

    def host_ok(self, value: str | None) -> bool:
        if not value:
            return False
        found = split_host(value)
        if found is None:
            return False
        name, port = found
        if (port or 80) != self.port:
            return False
        return name in self.names or (self.any_local_ip and _is_local_address(name))

    def refusal(self, host: str | None, origin: str | None) -> str | None:
        """Why a request with these headers is refused (for the 403), or None."""
        if not self.host_ok(host):
            return f"Host {host!r} is not an address this wsitui serve listens on"
        if origin is not None:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or parts.netloc.lower() != str(host).lower():
                return f"Origin {origin!r} is not this server's"
        return None

    def token_ok(self, given: str | None) -> bool:
        if self.token is None:
            return True
        return given is not None and secrets.compare_digest(given.encode(), self.token.encode())


class RedactToken(logging.Filter):
    """Take the token out of every log line (as Jupyter does): the access log printed each
    request's path, `/?token=…` and `/ws/<token>`, so anyone who read serve's output or a
    file it was redirected to could drive the TUI."""

    MARK = "<token>"

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.token in message:
            record.msg, record.args = message.replace(self.token, self.MARK), ()
        for name, value in list(vars(record).items()):  # aiohttp's `extra` (first_request_line)
            if isinstance(value, str) and self.token in value and name not in ("msg", "message"):
                setattr(record, name, value.replace(self.token, self.MARK))
        return True

    def install(self, *loggers: str) -> None:
        for name in loggers:
            logging.getLogger(name).addFilter(self)
