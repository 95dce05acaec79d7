"""Who may use the app: ``Host`` and ``Origin`` checks, and the headers that keep the page to itself.

The app has no login: it spends the machine's CPU or GPU on whoever reaches it. Two attacks reach it
from a web page the user merely has open, and these checks stop both:

* **DNS rebinding**: a page at ``evil.example`` re-points its own name to ``127.0.0.1`` and then
  talks to the app as if it were same-origin. Its requests carry ``Host: evil.example:7860``, so
  every request whose ``Host`` is not an address the server answers to is refused (``400``).
* **Cross-site requests (CSRF)**: a page elsewhere posts a form or a ``fetch`` to the app. Browsers
  send ``Origin`` with such requests (and ``Sec-Fetch-Site``), so a state-changing or
  compute-spending request (any method but ``GET``, ``HEAD``) whose ``Origin`` is present and is not
  the page's own origin (``http://`` + its ``Host``) is refused (``403``); so is one without ``Origin``
  that the browser marks ``Sec-Fetch-Site: cross-site`` or ``same-site``.

Hosts answered to (by default): the address the server listens on; with a loopback address also
``localhost``, ``127.0.0.1`` and ``[::1]``; with a wildcard address (``0.0.0.0``, ``::``) any IP
address, ``localhost`` and this machine's host name. ``allow_hosts`` adds names (a reverse proxy's,
say). ``allow_origins`` lets pages of other origins call the API on purpose (``--allow-origin``):
their requests pass, CORS answers let their scripts read the results, and the page may be framed by
them.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket

log = logging.getLogger("dissam.app")

SAFE_METHODS = ("GET", "HEAD")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("0.0.0.0", "::", "")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this machine only."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_name(header: str) -> str:
    """The host of a ``Host`` header without port or brackets, lower case (``[::1]:80`` -> ``::1``)."""
    h = header.strip().lower()
    if h.startswith("["):
        end = h.find("]")
        return h[1:end] if end > 0 else h
    if h.count(":") == 1:
        h = h.split(":", 1)[0]
    return h.rstrip(".")


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, no trailing slash (how browsers send ``Origin``)."""
    return origin.strip().rstrip("/").lower()


class OriginPolicy:
    """Which ``Host`` and ``Origin`` values the app accepts (see the module docstring)."""

    def __init__(self, listen_host: str = "127.0.0.1", allow_hosts=(), allow_origins=()):
        listen = host_name(listen_host) if listen_host not in WILDCARDS else listen_host
        self.wildcard = listen in WILDCARDS
        self.hosts = {host_name(h) for h in allow_hosts}
        if not self.wildcard:
            self.hosts.add(listen)
        if self.wildcard or is_loopback(listen):
            self.hosts.update(LOOPBACK_NAMES)
        if self.wildcard:
            name = socket.gethostname().lower()
            self.hosts.update({name, name.split(".")[0]})
        self.origins = {normalize_origin(o) for o in allow_origins}

    def host_ok(self, host_header: str | None) -> bool:
        if not host_header:
            return False
        h = host_name(host_header)
        return h in self.hosts or (self.wildcard and _is_ip(h))

    def refusal(self, method: str, headers: dict[str, str], scheme: str = "http") -> tuple[int, str] | None:
        """``None`` if the request may go on, else ``(status, message)``."""
        host = headers.get("host")
        if not self.host_ok(host):
            shown = host if host else "(none)"
            return 400, (f"this server does not answer to Host {shown[:100]!r}: use the address it listens on "
                         f"(or start it with --allow-host NAME to answer to another name)")
        if method in SAFE_METHODS:
            return None
        origin = headers.get("origin")
        own = f"{scheme}://{host}".lower()
        if origin is not None:
            o = normalize_origin(origin)
            if o == own or o in self.origins:
                return None
            return 403, (f"cross-origin request refused: the page at {origin[:100]!r} is not this app's page "
                         f"({own}); start the app with --allow-origin {origin[:100]} to allow it on purpose")
        site = headers.get("sec-fetch-site", "").lower()
        if site in ("cross-site", "same-site"):
            return 403, ("cross-origin request refused: the browser marked it as sent from another site "
                         "(Sec-Fetch-Site); only this app's own page may send it")
        return None


async def send_json(send, status: int, body: dict, headers: list | None = None) -> None:
    """A complete JSON response on a raw ASGI ``send``."""
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


class OriginGuard:
    """ASGI middleware applying an :class:`OriginPolicy` to every HTTP request (refusals logged at
    WARNING, in one line)."""

    def __init__(self, app, policy: OriginPolicy):
        self.app, self.policy = app, policy

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        refusal = self.policy.refusal(scope["method"], headers, scope.get("scheme", "http"))
        if refusal is None:
            return await self.app(scope, receive, send)
        status, message = refusal
        client = (scope.get("client") or ("?", 0))[0]
        log.warning("refused %s %s from %s: %s", scope["method"], scope.get("path", ""), client, message)
        await send_json(send, status, {"error": message})


def content_security_policy(allow_origins=()) -> str:
    """The page loads nothing from elsewhere, and only its own origin (and ``allow_origins``) may
    frame it."""
    ancestors = " ".join(["'self'", *sorted(normalize_origin(o) for o in allow_origins)])
    return ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
            f"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors {ancestors}")


class SecurityHeaders:
    """ASGI middleware: the Content-Security-Policy and the other headers every answer carries."""

    def __init__(self, app, csp: str):
        self.app, self.csp = app, csp.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"content-security-policy", self.csp),
                                                  (b"x-content-type-options", b"nosniff"),
                                                  (b"referrer-policy", b"no-referrer")]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
