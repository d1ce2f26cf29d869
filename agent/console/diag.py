"""The console's diagnostics routes (the server checks the session, CSRF and Origin first):

    GET  /api/log?after=SEQ&level=LEVEL&limit=N   any user: the agent's recent log lines
    POST /api/doctor                              technician: run `cabinet doctor`, its PASS/WARN/FAIL lines
    POST /api/config/check                        technician: the body is a config file (X-File-Name: its name);
                                                   every issue with the line of the file it is about
    GET  /api/bundle                              technician: the diagnostics bundle (tar.gz)
    POST /api/scan                                technician: {"bus", "units"}: scan a bus (agent.console.scan)
    GET  /api/scan                                any user: the scan's progress and result

Each technician action is audited like the others (`event.console.action`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agent.console import bundle
from agent.console.audit import Audit
from agent.console.checks import MAX_CONFIG, Busy, CheckFailed, Doctor, check_upload
from agent.console.http import HttpError, Request, json_response, response
from agent.console.logtail import LogRing
from agent.console.scan import Scanner
from agent.console.sessions import Session

POSTS = ("/api/doctor", "/api/config/check", "/api/scan")
GETS = ("/api/log", "/api/bundle", "/api/scan")
UPLOAD_LIMIT = MAX_CONFIG


class Diagnostics:
    def __init__(
        self,
        *,
        name: str,
        config_path: str | None,
        data_dir: Path,
        boards: Mapping[str, Any] | None,
        snapshot: Callable[[], dict[str, Any]],
        stats: Callable[[], dict[str, Any]],
        audit: Audit,
        wall: Callable[[], float],
    ) -> None:
        self.name, self.config_path, self.boards = name, config_path, boards
        self.snapshot, self.stats, self.audit, self.wall = snapshot, stats, audit, wall
        self.logs = LogRing()
        self.doctor = Doctor(config_path, data_dir) if config_path else None
        self.scanner = Scanner(config_path, data_dir) if config_path else None
        self.checking = False

    async def get(self, req: Request, s: Session) -> bytes:
        if req.path == "/api/log":
            return self._log(req)
        if req.path == "/api/scan":
            return json_response(200, self.scanner.state if self.scanner else {"running": False})
        await self._technician(req, s, "bundle")
        return await self._bundle(req, s)

    async def post(self, req: Request, s: Session) -> bytes:
        if req.path == "/api/doctor":
            await self._technician(req, s, "doctor")
            return await self._doctor(req, s)
        if req.path == "/api/scan":
            await self._technician(req, s, "scan")
            return await self._scan(req, s)
        await self._technician(req, s, "config/check")
        return await self._config_check(req, s)

    async def _technician(self, req: Request, s: Session, what: str) -> None:
        if s.role != "technician":
            await self.audit.record("action", s.user, s.role, req.peer, action=what, ok=False, error="viewer")
            raise HttpError(403, f"a {s.role} may look, not act: log in as a technician")

    # ------------------------------------------------------------------ log tail
    def _log(self, req: Request) -> bytes:
        try:
            after = int(req.query.get("after", "0"))
            limit = min(int(req.query.get("limit", "200")), 1000)
            lines = self.logs.tail(after, limit, req.query.get("level") or None)
        except ValueError as e:
            raise HttpError(400, f"after and limit are numbers, level is debug|info|warning|error: {e}") from None
        return json_response(200, {"seq": self.logs.seq, "lines": lines})

    # ------------------------------------------------------------------ doctor
    async def _doctor(self, req: Request, s: Session) -> bytes:
        if self.doctor is None:
            raise HttpError(409, "this agent runs without a config file: nothing for the doctor to check")
        try:
            result = await self.doctor.run(self.wall())
        except (Busy, CheckFailed) as e:
            await self.audit.record("action", s.user, s.role, req.peer, action="doctor", ok=False, error=str(e))
            raise HttpError(409, str(e)) from None
        counts = {k: sum(1 for r in result["results"] if r["status"] == k) for k in ("PASS", "WARN", "FAIL")}
        await self.audit.record("action", s.user, s.role, req.peer, action="doctor", ok=True, result=counts)
        return json_response(200, result)

    # ------------------------------------------------------------------ scan
    async def _scan(self, req: Request, s: Session) -> bytes:
        doc = req.json()
        bus, units = doc.get("bus"), doc.get("units", "1-32")
        args = {"bus": bus, "units": units}
        try:
            if self.scanner is None:
                raise CheckFailed("this agent runs without a config file: no bus to scan")
            if not isinstance(bus, str) or not isinstance(units, str):
                raise CheckFailed('give "bus" (a bus name) and "units" (such as "1-32") as strings')
            state = self.scanner.start(bus, units, self.snapshot().get("buses") or [])
        except (Busy, CheckFailed) as e:
            await self.audit.record(
                "action", s.user, s.role, req.peer, action="scan", args=args, ok=False, error=str(e)
            )
            raise HttpError(409, str(e)) from None
        await self.audit.record("action", s.user, s.role, req.peer, action="scan", args=args, ok=True)
        return json_response(200, state)

    async def close(self) -> None:
        if self.scanner is not None:
            await self.scanner.close()

    # ------------------------------------------------------------------ config check
    async def _config_check(self, req: Request, s: Session) -> bytes:
        name = req.headers.get("x-file-name", "upload.toml")
        if self.checking:
            raise HttpError(409, "a config check is running already; wait for its result")
        self.checking = True
        try:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(None, check_upload, req.body, name, self.boards)
        except CheckFailed as e:
            raise HttpError(413, str(e)) from None
        finally:
            self.checking = False
        await self.audit.record(
            "action",
            s.user,
            s.role,
            req.peer,
            action="config/check",
            args={"file": result["file"], "bytes": len(req.body)},
            ok=True,
            issues=len(result["issues"]),
        )
        return json_response(200, result)

    # ------------------------------------------------------------------ bundle
    async def _bundle(self, req: Request, s: Session) -> bytes:
        loop = asyncio.get_running_loop()
        config_text = await loop.run_in_executor(None, _read_text, self.config_path)
        try:
            status: dict[str, Any] | None = self.snapshot()
        except Exception as e:  # noqa: BLE001 - the bundle is wanted most when something is broken
            status = {"error": f"status snapshot failed: {type(e).__name__}: {e}"}
        fname, data = bundle.build(
            cabinet=self.name,
            wall=self.wall(),
            config_text=config_text,
            status=status,
            log_text=self.logs.text(),
            doctor=self.doctor.last if self.doctor else None,
            console=self.stats(),
        )
        await self.audit.record(
            "action", s.user, s.role, req.peer, action="bundle", ok=True, args={"file": fname, "bytes": len(data)}
        )
        return response(200, data, "application/gzip", (("Content-Disposition", f'attachment; filename="{fname}"'),))


def _read_text(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
