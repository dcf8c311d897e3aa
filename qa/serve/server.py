"""One process, one engine: the Gradio UI, the REST API and the widget behind one guard.

:func:`create_app` wires the shells together; :func:`serve` builds or updates the index,
then runs uvicorn and prints ``Running on http://HOST:PORT/`` once it accepts connections.
While it serves, changed seeds go live without a restart: a watcher polls the seeds
folder (``watch_interval``), and ``POST /api/reload`` or ``SIGHUP`` rebuild on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

# Before gradio is imported: no analytics call, no Hub lookup (the app is fully offline).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr
import uvicorn
from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.middleware.cors import CORSMiddleware
from starlette.staticfiles import StaticFiles

from qa.config import Settings
from qa.errors import ConfigError, QAError
from qa.pipeline import QA
from qa.serve import api, source_view, ui
from qa.serve.feedback import FeedbackLog
from qa.serve.watch import follow, refresh

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

STATIC_PREFIX = "/qa-static"
COOKIE = "qa_session"
#: Routes that never need the token (load balancers and uptime checks).
PUBLIC_PATHS = frozenset({"/api/health"})


def create_app(
    qa: api.Engine, settings: Settings | None = None, reload: api.Reloader | None = None
) -> FastAPI:
    """The whole app over one engine: UI at ``/``, API at ``/api``, widget at ``/widget.js``,
    a cited document at ``/source``.

    ``reload`` backs ``POST /api/reload``; by default a :class:`Reloader` when ``qa`` is a ``QA``.
    """
    settings = settings or qa.settings
    settings = settings.replace(allowed_origins=check_origins(settings.allowed_origins))
    feedback = FeedbackLog(settings.feedback_log)
    if reload is None and isinstance(qa, QA):
        reload = Reloader(qa)
    app = FastAPI(
        title="qa",
        summary="Extractive, cited answers from local documents.",
        version="1",
        openapi_url="/api/openapi.json",
        docs_url=None,  # FastAPI's docs pages load scripts from a CDN; the schema is enough
        redoc_url=None,
    )
    api.install_error_handlers(app)
    app.include_router(api.create_router(qa, feedback, reload, settings.max_concurrent_queries))
    # A lambda: an engine used only for the API (a test's fake) need not look documents up.
    app.include_router(
        source_view.create_router(lambda doc_id: qa.document(doc_id), settings.allowed_origins)
    )
    app.mount(STATIC_PREFIX, StaticFiles(directory=ui.STATIC_DIR), name="qa-static")

    @app.get("/widget.js", include_in_schema=False)
    def widget_js() -> FileResponse:
        return FileResponse(
            ui.STATIC_DIR / "widget.js",
            media_type="text/javascript; charset=utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    # Middleware added last runs first: CORS answers preflights (and decorates the
    # guard's 401/413/429 so allowed pages can read them), then the guard.
    app.add_middleware(Guard, settings=settings)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.allowed_origins),
        allow_credentials=True,
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )
    blocks = ui.create_ui(qa, feedback)
    return gr.mount_gradio_app(
        app,
        blocks,
        path="/",
        server_name=settings.host,
        server_port=settings.port,
        footer_links=[],
        run_history=False,
        show_error=True,
        ssr_mode=False,
        mcp_server=False,
        theme=ui.THEME,
        css=ui.css(),
        js=ui.JS,
        max_file_size=settings.max_body_bytes,
    )


_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?$")


def check_origins(origins: tuple[str, ...]) -> tuple[str, ...]:
    """Origins as browsers send them (``scheme://host[:port]``, no path); anything else
    is a ConfigError, since it would never match and could break the CSP header."""
    out = []
    for origin in origins:
        origin = origin.strip().rstrip("/").lower()
        if not _ORIGIN.match(origin):
            raise ConfigError(
                f"allowed_origins: {origin!r} is not an origin; use scheme://host[:port], "
                "e.g. https://intranet.example.com (comma-separated in QA_ALLOWED_ORIGINS)"
            )
        out.append(origin)
    return tuple(out)


class Guard:
    """Access token, rate limit, body size and security headers, as one ASGI middleware."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.token = settings.access_token.encode()
        # The cookie holds a digest of the token, so a leaked cookie does not leak it.
        self.session = hmac.new(self.token, b"qa-session", hashlib.sha256).hexdigest().encode()
        self.limiter = RateLimiter(settings.rate_limit_per_minute)
        self.headers = security_headers(settings.allowed_origins)
        self.page_headers = security_headers(settings.allowed_origins, source_view.CSP_DIRECTIVES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        method: str = scope.get("method", "GET")
        headers = _headers(scope)
        send = self._with_headers(send, self.page_headers if path == source_view.PATH else self.headers)
        if scope["type"] == "http" and _is_costly(method, path):
            client = (scope.get("client") or ("?", 0))[0]
            retry = self.limiter.hit(client)
            if retry:
                return await _error(
                    send,
                    429,
                    "RateLimited",
                    f"too many requests from {client}: the limit is "
                    f"{self.settings.rate_limit_per_minute} per minute; retry in {retry} s",
                    {"retry-after": str(retry)},
                )
        if self.token and path not in PUBLIC_PATHS:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            if "token" in query:
                if not hmac.compare_digest(query["token"].encode(), self.token):
                    return await _error(send, 401, "Unauthorized", "the access token is wrong")
                cookie = self._cookie_header(scope, headers)
                if scope["type"] == "http" and method == "GET" and _wants_html(headers):
                    return await _drop_token(scope, send, query, cookie)
                send = _with_cookie(send, cookie)
            elif not self._authorised(headers):
                return await self._unauthorised(scope, send, headers)
        if scope["type"] == "http":
            limit = self.settings.max_body_bytes
            length = headers.get("content-length", "")
            if length.isdigit() and int(length) > limit:
                return await _too_large(send, limit)
            if (length and length != "0") or (not length and method in ("POST", "PUT", "PATCH")):
                # Read the body here (it is small by definition) against a deadline: a
                # client that trickles it (or stops) gets a 408 instead of holding a
                # worker forever, and a chunked body, with no length to check up front,
                # gets a 413 once it outgrows the limit, not a parse error.
                timeout = self.settings.body_timeout
                try:
                    body = await asyncio.wait_for(_read_body(receive, limit), timeout)
                except TimeoutError:
                    return await _error(
                        send,
                        408,
                        "RequestTimeout",
                        f"the request body did not arrive within {timeout:g} s (body_timeout)",
                        {"connection": "close"},
                    )
                if body is None:
                    return await _too_large(send, limit)
                receive = _replay(body, receive)
            if method == "GET":
                send = _without_external_meta(send)
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _authorised(self, headers: dict[str, str]) -> bool:
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer " and hmac.compare_digest(auth[7:].strip().encode(), self.token):
            return True
        cookie = _cookies(headers.get("cookie", "")).get(COOKIE, "")
        return hmac.compare_digest(cookie.encode(), self.session)

    def _cookie_header(self, scope: Scope, headers: dict[str, str]) -> tuple[bytes, bytes]:
        https = scope.get("scheme") in ("https", "wss") or headers.get("x-forwarded-proto") == "https"
        # A cross-site iframe (the widget on another site) only gets the cookie with
        # SameSite=None, which browsers accept only on Secure cookies, i.e. over https.
        site = "SameSite=None; Secure" if https else "SameSite=Lax"
        value = f"{COOKIE}={self.session.decode()}; Path=/; HttpOnly; {site}"
        return b"set-cookie", value.encode()

    async def _unauthorised(self, scope: Scope, send: Send, headers: dict[str, str]) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if _wants_html(headers):
            body = (
                b"<!doctype html><meta charset=utf-8><title>Access token required</title>"
                b"<body style='font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto'>"
                b"<h1>Access token required</h1><p>This app needs an access token. Open it "
                b"with <code>?token=YOUR_TOKEN</code> added to the address once; a cookie "
                b"keeps you signed in.</p></body>"
            )
            await _respond(send, 401, body, "text/html; charset=utf-8", {"www-authenticate": "Bearer"})
            return
        await _error(
            send,
            401,
            "Unauthorized",
            "an access token is required: send 'Authorization: Bearer <token>'",
            {"www-authenticate": "Bearer"},
        )

    def _with_headers(self, send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _OWNED_HEADERS]
                message = {**message, "headers": kept + extra}
            await send(message)

        return wrapped


#: The app's Content-Security-Policy but for frame-ancestors (see security_headers).
APP_CSP = (
    "default-src 'self'",
    # Gradio's page bootstraps with inline scripts and compiles its HTML components'
    # templates at run time (the page stays blank without 'unsafe-eval', tested).
    "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self' data:",
    "media-src 'self' data: blob:",
    "connect-src 'self'",
    "worker-src 'self' blob:",
    "frame-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
)


def security_headers(
    allowed_origins: tuple[str, ...], directives: tuple[str, ...] = APP_CSP
) -> list[tuple[bytes, bytes]]:
    """Headers on every response. The CSP keeps the page on this origin: a browser
    refuses any script, style, font, image or connection to another host, and only
    the app itself and ``allowed_origins`` may frame it. A page that needs less than the
    chat (``/source``) passes its own ``directives``; frame-ancestors is added to them."""
    ancestors = " ".join(["'self'", *allowed_origins])
    csp = "; ".join([*directives, f"frame-ancestors {ancestors}"])
    headers = [
        (b"content-security-policy", csp.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
        (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    ]
    if not allowed_origins:
        headers.append((b"x-frame-options", b"SAMEORIGIN"))  # for browsers without CSP 2
    return headers


_OWNED_HEADERS = {
    b"content-security-policy",
    b"x-content-type-options",
    b"referrer-policy",
    b"permissions-policy",
    b"x-frame-options",
}


async def _drop_token(scope: Scope, send: Send, query: dict[str, str], cookie: tuple[bytes, bytes]) -> None:
    """A page opened with ?token=: set the cookie, then redirect to the URL without the
    token, so it does not linger in the address bar, history or Referer headers."""
    rest = urlencode([(k, v) for k, v in query.items() if k != "token"])
    location = scope.get("root_path", "") + scope["path"] + (f"?{rest}" if rest else "")
    headers = [(b"location", location.encode()), cookie, (b"content-length", b"0")]
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _with_cookie(send: Send, cookie: tuple[bytes, bytes]) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), cookie]}
        await send(message)

    return wrapped


class RateLimiter:
    """A token bucket per client: ``per_minute`` requests a minute, bursts up to that many."""

    def __init__(self, per_minute: int, max_clients: int = 10_000) -> None:
        self.capacity = float(max(per_minute, 1))
        self.rate = self.capacity / 60.0
        self.max_clients = max_clients
        self.enabled = per_minute > 0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def hit(self, client: str, now: float | None = None) -> int:
        """Take one token; return 0 if allowed, else the seconds to wait."""
        if not self.enabled:
            return 0
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[client] = (tokens, now)
                return max(1, int((1.0 - tokens) / self.rate + 0.999))
            self._buckets[client] = (tokens - 1.0, now)
            if len(self._buckets) > self.max_clients:
                self._forget_idle(now)
            return 0

    def _forget_idle(self, now: float) -> None:
        full = self.capacity / self.rate
        for key in [k for k, (_, last) in self._buckets.items() if now - last > full]:
            del self._buckets[key]


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None once it exceeds ``limit`` bytes."""
    chunks: list[bytes] = []
    seen = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        seen += len(chunk)
        if seen > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body already read, then the client's own messages (a later disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


# Gradio's page template carries social-card <meta> tags pointing at github.com and
# gradio.app. Browsers never fetch them, but an offline app should not name other hosts.
_EXTERNAL_META = re.compile(rb"<meta\b[^>]*\bcontent=\"https?://[^\"]*\"[^>]*>\s*", re.IGNORECASE)


def _without_external_meta(send: Send) -> Send:
    held: Message | None = None
    chunks: list[bytes] = []

    async def wrapped(message: Message) -> None:
        nonlocal held
        if message["type"] == "http.response.start":
            ctype = dict(message.get("headers", [])).get(b"content-type", b"")
            if message.get("status") == 200 and ctype.startswith(b"text/html"):
                held = message
                return
        elif message["type"] == "http.response.body" and held is not None:
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = _EXTERNAL_META.sub(b"", b"".join(chunks))
            headers = [(k, v) for k, v in held.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**held, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await send(message)

    return wrapped


def _is_costly(method: str, path: str) -> bool:
    # Questions arrive as POSTs (the API and Gradio's queue); page assets are GETs and
    # a single page load fetches dozens of them, so those are not counted. A source page
    # renders a whole document (up to max_file_bytes), so it is counted like a question.
    return (
        method == "POST"
        or (path.startswith("/api/") and path not in PUBLIC_PATHS)
        or path == source_view.PATH
    )


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _cookies(header: str) -> dict[str, str]:
    out = {}
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name:
            out[name] = value
    return out


def _wants_html(headers: dict[str, str]) -> bool:
    return "text/html" in headers.get("accept", "")


async def _respond(
    send: Send, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _error(
    send: Send, status: int, error: str, detail: str, extra: dict[str, str] | None = None
) -> None:
    body = json.dumps({"error": error, "detail": detail}).encode()
    await _respond(send, status, body, "application/json", extra)


async def _too_large(send: Send, limit: int) -> None:
    await _error(
        send, 413, "PayloadTooLarge", f"the request body is larger than {limit} bytes (max_body_bytes)"
    )


class _Server(uvicorn.Server):
    """Prints the URL once the socket accepts connections, not before."""

    url = ""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            print(f"Running on {self.url}", flush=True)


def bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket first, so a busy port is a clear error, not a traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror}; "
            "choose another with --port/--host (or QA_PORT/QA_HOST)"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class Reloader:
    """Rebuilds the index from the seeds folder and swaps it into a running engine.

    The build writes a new generation beside the live one under the index's build lock
    (a second build at once gets BuildLockedError, a 409); ``QA.reload`` then swaps it in
    with one assignment, so questions asked meanwhile never see a half-built index. A
    read-only replica builds nothing: it swaps in the generation another process published.
    """

    def __init__(self, qa: QA) -> None:
        self.qa = qa

    def __call__(self) -> dict[str, Any]:
        """Rebuild (re-embedding only what changed) and swap; returns what changed."""
        report, swapped = (follow if self.qa.settings.read_only else refresh)(self.qa)
        return {**dataclasses.asdict(report), "swapped": swapped}


def describe(report: dict[str, Any]) -> str:
    """One line on what a build did (a BuildReport's fields)."""
    if report["up_to_date"]:
        state = "up to date"
    else:
        state = (
            f"built: {len(report['added'])} added, {len(report['changed'])} changed, "
            f"{len(report['removed'])} removed, {report['embedded']} chunks embedded"
        )
    return f"Index {state} ({report['documents']} documents, {report['chunks']} chunks)"


def _reload_now(reloader: Reloader) -> None:
    """SIGHUP: rebuild in a thread (never in the signal handler) and say what happened."""
    try:
        print(describe(reloader()), file=sys.stderr, flush=True)
    except QAError as exc:
        print(f"reload failed: {exc}", file=sys.stderr, flush=True)
    except Exception as exc:  # a reload must never take the server down
        print(f"reload failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)


def serve(settings: Settings) -> None:
    """Build or update the index from the seeds, then serve until interrupted.

    While serving, a watcher rebuilds when the seeds change (every ``watch_interval``
    seconds; 0 turns it off), and ``SIGHUP`` rebuilds at once, like ``POST /api/reload``.
    """
    sock = bind(settings.host, settings.port)
    with contextlib.closing(sock):
        _serve(settings, sock)


def _serve(settings: Settings, sock: socket.socket) -> None:
    from qa.serve.watch import GenerationFollower, SeedWatcher

    print(
        f"Checking the index of {settings.seeds_dir} in {settings.index_dir} ...", file=sys.stderr, flush=True
    )
    try:
        if settings.read_only:  # a replica: one other process builds the shared index
            engine = QA.load(settings=settings)
        else:
            engine = QA.build(settings.seeds_dir, settings.index_dir, settings=settings)
    except OSError as exc:  # e.g. the index path is a file, or not writable
        where = exc.filename or settings.index_dir
        raise ConfigError(
            f"cannot build the index in {settings.index_dir} ({where}: {exc.strerror or exc}); "
            "make it a writable folder, or choose another with --index (QA_INDEX_DIR)"
        ) from None
    report = engine.last_build
    if report is not None:  # the skipped files were logged as they were read
        print(describe(dataclasses.asdict(report)), file=sys.stderr)
    engine.warm_up()  # the models load lazily: not on the first user's question
    reloader = Reloader(engine)
    app = create_app(engine, settings, reloader)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,  # open event streams would otherwise hold Ctrl-C
        proxy_headers=False,
    )
    server = _Server(config)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    server.url = f"http://{host}:{settings.port}/"
    watcher = follower = None
    if settings.watch_interval > 0:

        def refreshed(swapped: bool) -> None:
            if swapped:
                live = engine.data.manifest.get("counts", {})
                print(
                    f"Seeds changed: new index live ({live.get('documents')} documents, "
                    f"{live.get('chunks')} chunks)",
                    file=sys.stderr,
                    flush=True,
                )

        if not settings.read_only:
            watcher = SeedWatcher(engine, settings.watch_interval, on_refresh=refreshed).start()
        # Also a generation another process publishes (a replica's builder, or `qa build`).
        follower = GenerationFollower(
            engine, settings.watch_interval, on_swap=lambda: print(
                f"New index generation live: {engine.data.path.name}", file=sys.stderr, flush=True
            ),
        ).start()  # fmt: skip
    if hasattr(signal, "SIGHUP") and threading.current_thread() is threading.main_thread():
        # Rebuild in a thread: a signal handler must return at once.
        signal.signal(
            signal.SIGHUP,
            lambda signum, frame: threading.Thread(
                target=_reload_now, args=(reloader,), name="qa-reload", daemon=True
            ).start(),
        )
    try:
        server.run(sockets=[sock])
    finally:
        if watcher is not None:
            watcher.stop()
        if follower is not None:
            follower.stop()
