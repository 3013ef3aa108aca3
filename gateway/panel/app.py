"""The panel's aiohttp application: the guard view (/), the installer view (/installer), one SSE stream
(/events) and three actions (acknowledge, silence, installer login), each behind a CSRF check, a PIN or
code, and a per-address attempt limit, and each recorded with who, when and from which address."""

from __future__ import annotations

import json
import time
from importlib import resources
from typing import Any

from aiohttp import web

from gateway import log as logsetup
from gateway.panel.link import ControlLink, LinkDown
from gateway.panel.security import Attempts, check_pin, new_token, same_token, walk_code
from gateway.panel.state import Snapshot

STATIC = resources.files("gateway.panel") / "static"
KEEPALIVE_S = 15.0
SNAPSHOT_KEY: web.AppKey[Snapshot] = web.AppKey("snapshot", Snapshot)
LINK_KEY: web.AppKey[ControlLink] = web.AppKey("link", ControlLink)


class Gates:
    """The secrets and counters the handlers check; no default PIN: an empty hash refuses every action."""

    def __init__(self, pin_hash: str, code_key: str, attempts: Attempts) -> None:
        self.pin_hash, self.code_key, self.attempts = pin_hash, code_key, attempts
        self.installer_sessions: dict[str, float] = {}  # token -> the walk's started_wall it opens
        self.spent_codes: set[float] = set()


def build_app(snapshot: Snapshot, link: ControlLink, gates: Gates) -> web.Application:
    log = logsetup.get(stage="panel")
    app = web.Application(middlewares=[_headers], client_max_size=4096)
    app[SNAPSHOT_KEY], app[LINK_KEY] = snapshot, link

    def page(name: str) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            resp = web.Response(text=(STATIC / name).read_text(encoding="utf-8"), content_type="text/html", charset="utf-8")
            if not request.cookies.get("csrf"):
                resp.set_cookie("csrf", new_token(), samesite="Strict", httponly=False, secure=request.secure)
            return resp
        return handler

    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        types = {"js": "application/javascript", "css": "text/css"}
        kind = types.get(name.rsplit(".", 1)[-1])
        if kind is None or "/" in name or not (STATIC / name).is_file():
            raise web.HTTPNotFound()
        return web.Response(text=(STATIC / name).read_text(encoding="utf-8"), content_type=kind, charset="utf-8")

    def view(request: web.Request) -> dict[str, Any]:
        """The snapshot as this client may see it: the walk checklist only with an installer session."""
        data = dict(snapshot.data)
        walk = data.get("walk")
        started = gates.installer_sessions.get(request.cookies.get("installer", ""))
        data["installer"] = walk is not None and started is not None and walk.get("started_wall") == started
        if not data["installer"]:
            data["walk"] = None
        return data

    async def state(request: web.Request) -> web.Response:
        return web.json_response(view(request), dumps=_dumps)

    async def events(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        seen = -1
        while True:
            if snapshot.version != seen:
                seen = snapshot.version
                await resp.write(f"data: {_dumps(view(request))}\n\n".encode())
            else:
                await resp.write(b": keepalive\n\n")
            await snapshot.wait_newer(seen, KEEPALIVE_S)

    async def alarm_action(request: web.Request) -> web.Response:
        action = request.match_info["action"]
        addr, body = await _guarded(request)
        if (wait := gates.attempts.locked_for(addr)) > 0:
            log.warning("panel_attempt_locked", addr=addr, action=action, retry_after_s=wait)
            return web.json_response({"error": "locked", "retry_after_s": wait}, status=429)
        if not gates.pin_hash:
            return web.json_response({"error": "no_pin_configured"}, status=403)
        if not check_pin(str(body.get("pin", "")), gates.pin_hash):
            gates.attempts.failed(addr)
            log.warning("panel_wrong_pin", addr=addr, action=action)
            return web.json_response({"error": "wrong_pin", "locked_for_s": gates.attempts.locked_for(addr)}, status=403)
        gates.attempts.succeeded(addr)
        alarm_id, by = request.match_info["alarm_id"], f"panel:{addr}"
        try:
            reply = await link.call(f"alarm_{action}", {"alarm_id": alarm_id, "by": by})
        except LinkDown as exc:
            log.warning("panel_action_failed", action=action, alarm_id=alarm_id, by=by, reason=str(exc))
            return web.json_response({"error": "daemon_unreachable"}, status=503)
        log.info("panel_action", action=action, alarm_id=alarm_id, by=by, at_wall=time.time(), ok=reply.ok,
                 result=reply.result if reply.ok else reply.error)
        if not reply.ok:
            return web.json_response({"error": reply.error, "detail": reply.detail}, status=409)
        return web.json_response({"ok": True, "result": reply.result})

    async def installer_login(request: web.Request) -> web.Response:
        addr, body = await _guarded(request)
        if (wait := gates.attempts.locked_for(addr)) > 0:
            return web.json_response({"error": "locked", "retry_after_s": wait}, status=429)
        walk = snapshot.data.get("walk")
        if not gates.code_key or not walk or not walk.get("active"):
            return web.json_response({"error": "no_walk"}, status=409)
        started = walk["started_wall"]
        if started in gates.spent_codes or not same_token(str(body.get("code", "")), walk_code(gates.code_key, started)):
            gates.attempts.failed(addr)
            log.warning("panel_wrong_code", addr=addr)
            return web.json_response({"error": "wrong_code"}, status=403)
        gates.attempts.succeeded(addr)
        gates.spent_codes.add(started)  # one-time: the next phone needs a new walk or `gateway panel code --new`
        token = new_token()
        gates.installer_sessions = {t: s for t, s in gates.installer_sessions.items() if s == started}
        gates.installer_sessions[token] = started
        log.info("panel_action", action="installer_login", by=f"panel:{addr}", at_wall=time.time(), walk_started=started)
        resp = web.json_response({"ok": True})
        resp.set_cookie("installer", token, samesite="Strict", httponly=True, secure=request.secure)
        return resp

    app.router.add_get("/", page("guard.html"))
    app.router.add_get("/installer", page("installer.html"))
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/api/state", state)
    app.router.add_get("/events", events)
    app.router.add_post("/api/alarms/{alarm_id}/{action:ack|silence}", alarm_action)
    app.router.add_post("/api/installer/login", installer_login)
    return app


async def _guarded(request: web.Request) -> tuple[str, dict[str, Any]]:
    """CSRF: a JSON body (a cross-site form cannot send one without a CORS preflight, which we never
    answer), the double-submit token header equal to the SameSite=Strict cookie, and a same-host Origin."""
    origin = request.headers.get("Origin")
    if origin is not None and origin.split("://", 1)[-1] != request.host:
        raise web.HTTPForbidden(text="cross-origin request refused")
    if request.content_type != "application/json" or not same_token(request.headers.get("X-CSRF-Token"), request.cookies.get("csrf")):
        raise web.HTTPForbidden(text="CSRF check failed: reload the page")
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="body must be JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return request.remote or "unknown", body


@web.middleware
async def _headers(request: web.Request, handler: Any) -> web.StreamResponse:
    resp = await handler(request)
    resp.headers.setdefault("X-Frame-Options", "DENY")  # clickjacking: the PIN field is never framed
    resp.headers.setdefault("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    return resp


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
