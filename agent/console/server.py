"""The console's HTTPS server: asyncio streams, no web framework.

    GET  /                         the page (or, with no user yet, how to create one)
    GET  /console.js, /console.css its script and style
    GET  /api/session              who is logged in, the role and the CSRF token (401 if nobody)
    POST /api/login                {"user", "password"} -> a session cookie (HttpOnly, Secure, SameSite=Strict)
    POST /api/logout
    POST /api/password             {"password", "current"}: set one's own password (agent.console.account);
                                   after a login with a one-time code, the only thing allowed
    GET  /api/status               the agent's status snapshot (what `cabinet status --json` prints)
    GET  /api/events               the same snapshot as server-sent events, at most once per second
    POST /api/lighting/override    technician only: the agent's own local actions, with their
    POST /api/lighting/cancel        validation (agent.runtime.control_loop.Controls), the
    POST /api/alarms/ack             console user as their source
    GET  /api/log, /api/bundle     the log tail, the diagnostics bundle   (agent.console.diag)
    POST /api/doctor               run `cabinet doctor`
    POST /api/config/check         check an uploaded config file, issues against its lines
    POST /api/scan, GET /api/scan  scan a Modbus TCP bus, its live progress

Every POST but the login carries the session's CSRF token in `X-CSRF-Token`; a POST whose Origin
is not this console is refused; the login takes JSON only (a cross-site form cannot send it).
Refusals are JSON `{"error": ...}`: 400 bad request, 401 not logged in, 403 forbidden (role,
CSRF, origin), 409 the agent refused the action, 413 body too large, 429 locked out, 503 full."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from agent.config.console import ConsoleSettings
from agent.console import tls
from agent.console.account import change_password
from agent.console.audit import Audit, Put
from agent.console.diag import GETS, POSTS, UPLOAD_LIMIT, Diagnostics
from agent.console.http import (
    MAX_BODY,
    MAX_HEAD,
    HttpError,
    Request,
    json_response,
    read_body,
    read_head,
    response,
    stream_head,
)
from agent.console.pages import setup_page
from agent.console.sessions import Lockout, Session, Sessions, csrf_ok
from agent.console.stream import Hub, event
from agent.console.users import DUMMY_HASH, Users, UsersFileError, keep_kdf_memory_returned, verify_password
from agent.remote.host import ActionError

log = logging.getLogger("agent.console")

Action = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
COOKIE = "cabinet_session"
STATIC = {"/console.js": "text/javascript", "/console.css": "text/css", "/": "text/html"}
# console path -> (the agent's local action, the keys a request may give it, the key naming the user)
ACTIONS = {
    "/api/lighting/override": (
        "/lighting/override",
        ("on", "level", "segments", "minutes", "until", "forever", "note"),
        "source",
    ),
    "/api/lighting/cancel": ("/lighting/cancel", ("segments",), "source"),
    "/api/alarms/ack": ("/alarms/ack", ("id",), "by"),
}
MAX_LOGINS_WAITING = 8
KEEPALIVE_S = 15.0


class ConsoleServer:
    def __init__(
        self,
        settings: ConsoleSettings,
        *,
        data_dir: Path,
        snapshot: Callable[[], dict[str, Any]],
        actions: dict[str, Action],
        put: Put | None,
        wall: Callable[[], float],
        name: str = "cabinet",
        monotonic: Callable[[], float] | None = None,
        config_path: str | None = None,
        boards: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.data_dir = Path(data_dir)
        self.actions = actions
        self.name = name
        self.wall = wall
        self._mono = monotonic
        self.users = Users(self.data_dir)
        self.sessions = Sessions(settings.session_idle_minutes * 60, settings.session_hours * 3600)
        self.lockout = Lockout(settings.lockout_failures, settings.lockout_minutes * 60)
        self.hub = Hub(snapshot, settings.max_streams)
        self.audit = Audit(put, wall)
        self.diag = Diagnostics(
            name=name,
            config_path=config_path,
            data_dir=self.data_dir,
            boards=boards,
            snapshot=snapshot,
            stats=self.stats,
            audit=self.audit,
            wall=wall,
        )
        self._kdf = asyncio.Semaphore(1)  # one password check at a time: a login flood costs one core at most
        self._waiting = 0
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.Task[Any]] = set()
        self.url = ""
        self.error: str | None = None

    def now(self) -> float:
        return self._mono() if self._mono is not None else asyncio.get_running_loop().time()

    # ------------------------------------------------------------------ start and stop
    async def start(self) -> bool:
        """Listen; False (and a warning saying why) when the console cannot start: the agent runs on."""
        s = self.settings
        keep_kdf_memory_returned()
        self.diag.logs.attach()
        try:
            if s.cert:
                cert, key = Path(s.cert), Path(s.key)
            else:
                cert, key = tls.self_signed(self.data_dir, s.address, self.name)
            ctx = tls.server_context(cert, key)
            self._server = await asyncio.start_server(
                self._accept, s.address, s.port, ssl=ctx, limit=MAX_HEAD, ssl_handshake_timeout=10.0
            )
        except (OSError, ssl.SSLError, ValueError) as e:
            self.error = f"{type(e).__name__}: {e}"
            log.warning("console not started on %s port %d: %s", s.address, s.port, self.error)
            self.diag.logs.detach()
            return False
        host = f"[{s.address}]" if ":" in s.address else s.address
        self.url = f"https://{host}:{s.port}/"
        log.info("console at %s (certificate SHA-256 %s)", self.url, tls.fingerprint(cert))
        try:
            if not self.users.load():
                log.warning(
                    "console: no user yet; add one: `cabinet console passwd --data-dir %s --role technician USER`",
                    self.data_dir,
                )
        except UsersFileError as e:
            log.error("console: %s; nobody can log in until it is fixed", e)
        return True

    async def close(self) -> None:
        self.diag.logs.detach()
        await self.diag.close()
        if self._server is not None:
            self._server.close()
        await self.hub.close()
        for t in list(self._conns):
            t.cancel()
        if self._conns:
            await asyncio.wait(self._conns, timeout=5)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # ------------------------------------------------------------------ one connection
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            await self._handle(reader, writer)
        except (ConnectionError, TimeoutError, ssl.SSLError, asyncio.CancelledError):
            pass
        finally:
            self._conns.discard(task)
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str((writer.get_extra_info("peername") or ("?",))[0])
        try:
            if len(self._conns) > self.settings.max_streams + 32:
                raise HttpError(503, "too many connections; try again")
            req = await read_head(reader, peer)
            if req.method == "GET" and req.path == "/api/events":
                await self._events(req, reader, writer)
                return
            if req.method == "POST":
                await read_body(reader, req, UPLOAD_LIMIT if req.path == "/api/config/check" else MAX_BODY)
            data = await self._route(req)
        except HttpError as e:
            data = json_response(e.status, {"error": str(e)})
        except Exception as e:  # one request never takes the console down
            log.exception("console: request failed")
            data = json_response(500, {"error": f"{type(e).__name__}: {e}"})
        writer.write(data)
        await asyncio.wait_for(writer.drain(), 10.0)

    async def _route(self, req: Request) -> bytes:
        if req.method == "GET":
            if req.path in STATIC:
                return self._static(req.path)
            if req.path == "/api/session":
                s = self._session(req, first_login_ok=True)
                return json_response(200, self._whoami(s))
            if req.path == "/api/status":
                self._session(req)
                return json_response(200, self.hub.snapshot())
            if req.path in GETS:
                return await self.diag.get(req, self._session(req))
            raise HttpError(404, f"no such page {req.path}")
        if req.method != "POST":
            raise HttpError(405, "GET or POST only")
        self._origin(req)
        if req.path == "/api/login":
            return await self._login(req)
        s = self._session(req, first_login_ok=req.path in ("/api/logout", "/api/password"))
        if not csrf_ok(s, req.headers.get("x-csrf-token")):
            await self.audit.record(
                "action",
                s.user,
                s.role,
                req.peer,
                action=req.path.removeprefix("/api/"),
                ok=False,
                error="bad CSRF token",
            )
            raise HttpError(403, "missing or wrong CSRF token (X-CSRF-Token); reload the page")
        if req.path == "/api/logout":
            self.sessions.drop(s.token)
            await self.audit.record("logout", s.user, s.role, req.peer)
            return json_response(200, {"ok": True}, (("Set-Cookie", f"{COOKIE}=; Path=/; Max-Age=0; {_FLAGS}"),))
        if req.path == "/api/password":
            return await self._password(req, s)
        if req.path in ACTIONS:
            return await self._action(req, s)
        if req.path in POSTS:
            return await self.diag.post(req, s)
        raise HttpError(404, f"no such action {req.path}")

    # ------------------------------------------------------------------ pages
    def _static(self, path: str) -> bytes:
        try:
            has_users = bool(self.users.load())
            problem = None
        except UsersFileError as e:
            has_users, problem = False, str(e)
        if path == "/" and not has_users:
            return response(200, setup_page(self.name, self.data_dir, problem).encode(), "text/html; charset=utf-8")
        name = "index.html" if path == "/" else path.lstrip("/")
        body = resources.files("agent.console").joinpath("static", name).read_bytes()
        return response(200, body, STATIC[path] + "; charset=utf-8")

    # ------------------------------------------------------------------ sessions
    def _session(self, req: Request, touch: bool = True, first_login_ok: bool = False) -> Session:
        s = self.sessions.get(req.cookie(COOKIE), self.now(), touch)
        if s is None:
            raise HttpError(401, "not logged in, or the session expired")
        try:
            user = self.users.get(s.user)
        except UsersFileError:
            user = None
        if user is None or user.role != s.role or user.hash != s.hash:
            self.sessions.drop(s.token)
            raise HttpError(401, "the user was removed or changed; log in again")
        if user.one_time and not first_login_ok:
            raise HttpError(403, "logged in with a one-time code: choose your own password first")
        return s

    def _whoami(self, s: Session) -> dict[str, Any]:
        user = self.users.get(s.user)
        first = bool(user and user.one_time and user.hash == s.hash)
        return {"user": s.user, "role": s.role, "csrf": s.csrf, "cabinet": self.name, "must_set_password": first}

    async def _password(self, req: Request, s: Session) -> bytes:
        user = self.users.get(s.user)
        assert user is not None  # _session checked it
        try:
            changed = await change_password(self.users, self._kdf, user, req.json())
        except HttpError as e:
            await self.audit.record("password", s.user, s.role, req.peer, ok=False, error=str(e))
            raise
        s.hash = changed.hash  # this session goes on; the user's others end at their next request
        await self.audit.record("password", s.user, s.role, req.peer, ok=True, one_time=user.one_time)
        return json_response(200, self._whoami(s))

    def _origin(self, req: Request) -> None:
        origin = req.headers.get("origin")
        if origin is not None and origin != f"https://{req.headers.get('host', '')}":
            raise HttpError(403, f"cross-site request refused (Origin {origin})")

    async def _login(self, req: Request) -> bytes:
        doc = req.json()
        name, password = doc.get("user"), doc.get("password")
        if not isinstance(name, str) or not isinstance(password, str) or not name or len(name) > 64:
            raise HttpError(400, 'give "user" and "password" as strings')
        keys, now = [f"user:{name}", f"addr:{req.peer}"], self.now()
        wait = self.lockout.locked_for(keys, now)
        if wait > 0:
            raise HttpError(429, f"too many failed logins; try again in {wait:.0f} s")
        try:
            user = self.users.get(name)
        except UsersFileError as e:
            raise HttpError(503, f"{e}; nobody can log in until it is fixed") from None
        if self._waiting >= MAX_LOGINS_WAITING:
            raise HttpError(429, "too many logins at once; try again")
        self._waiting += 1
        try:
            async with self._kdf:
                loop = asyncio.get_running_loop()
                ok = await loop.run_in_executor(None, verify_password, password, user.hash if user else DUMMY_HASH)
        finally:
            self._waiting -= 1
        if user is None or not ok:
            locked = self.lockout.failed(keys, self.now())
            await self.audit.record("login", name, None, req.peer, ok=False, locked=locked)
            raise HttpError(401, "wrong user name or password")
        self.lockout.succeeded(f"user:{name}")
        s = self.sessions.create(user.name, user.role, user.hash, self.now())
        await self.audit.record("login", user.name, user.role, req.peer, ok=True)
        cookie = f"{COOKIE}={s.token}; Path=/; Max-Age={int(self.settings.session_hours * 3600)}; {_FLAGS}"
        return json_response(200, self._whoami(s), (("Set-Cookie", cookie),))

    # ------------------------------------------------------------------ actions
    async def _action(self, req: Request, s: Session) -> bytes:
        local, allowed, who_key = ACTIONS[req.path]
        what = req.path.removeprefix("/api/")
        if s.role != "technician":
            await self.audit.record("action", s.user, s.role, req.peer, action=what, ok=False, error="viewer")
            raise HttpError(403, f"a {s.role} may look, not act: log in as a technician")
        doc = req.json()
        unknown = sorted(set(doc) - set(allowed))
        if unknown:
            raise HttpError(400, f"unknown keys {', '.join(unknown)}; allowed: {', '.join(allowed)}")
        args = {**doc, who_key: f"console:{s.user}"}
        action = self.actions.get(local)
        try:
            if action is None:
                raise ActionError("this cabinet has no lighting or climate control")
            result = await action(args)
        except ActionError as e:
            await self.audit.record("action", s.user, s.role, req.peer, action=what, args=doc, ok=False, error=str(e))
            raise HttpError(409, str(e)) from None
        await self.audit.record("action", s.user, s.role, req.peer, action=what, args=doc, ok=True)
        return json_response(200, result)

    # ------------------------------------------------------------------ live events
    async def _events(self, req: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._session(req)
        q = self.hub.subscribe()
        if q is None:
            raise HttpError(503, f"{self.settings.max_streams} live views open already; close one")
        gone = asyncio.ensure_future(reader.read(1))  # the client closing its side ends the stream
        try:
            writer.write(stream_head() + b"retry: 3000\n\n")
            while True:
                frame = asyncio.ensure_future(q.get())
                done, _ = await asyncio.wait({frame, gone}, timeout=KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED)
                if gone in done:
                    frame.cancel()
                    return
                data = frame.result() if frame in done else b": keep-alive\n\n"
                frame.cancel()
                try:
                    self._session(req)  # an open page keeps its session alive, until the absolute expiry
                except HttpError as e:
                    writer.write(event("expired", f'"{e}"'))
                    await asyncio.wait_for(writer.drain(), 10.0)
                    return
                writer.write(data)
                await asyncio.wait_for(writer.drain(), 10.0)  # a client that stops reading is dropped
        finally:
            self.hub.unsubscribe(q)
            gone.cancel()

    def stats(self) -> dict[str, Any]:
        return {
            "url": self.url or None,
            "error": self.error,
            "sessions": len(self.sessions),
            "streams": self.hub.clients,
            "frames": self.hub.frames,
            "audited": self.audit.recorded,
            "doctor_running": self.diag.doctor.running if self.diag.doctor else False,
            "users": self._user_roles(),
        }

    def _user_roles(self) -> dict[str, str] | None:
        try:
            return {u.name: u.role for u in self.users.load().values()}
        except UsersFileError:
            return None


_FLAGS = "HttpOnly; Secure; SameSite=Strict"
