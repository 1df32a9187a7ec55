"""The HTTP side of the agent: health, the browser demo page, WebRTC and WHIP signalling.

Why aiohttp here when health alone once needed only asyncio streams: a browser call
needs static files, JSON and SDP bodies, DELETE, CORS headers and body limits, and
aiohttp is already a dependency. One application serves every route so one port, one
token and one body limit cover them all.

Routes and what they answer:

* ``GET /health`` — JSON counters for load balancers (open, no token).
* ``GET /metrics``, ``/healthz``, ``/readyz`` — Prometheus metrics, liveness and
  readiness (see `operations.py`; open, no token).
* ``GET /live`` and ``/live/...`` — the live calls page and its data (see
  `live_calls.py`; the data behind the token, loopback only without one).
* ``GET /calls``, ``/calls/{id}``, ``/calls/{id}/recording`` — call records (see
  `calls_api.py`; behind the token, loopback only without one).
* ``GET /`` and ``GET /static/{name}`` — the demo page and its script and style, from
  package data (open: the page holds no secret; it asks for the token if one is needed).
* ``POST /webrtc/offer`` — JSON ``{"sdp", "type": "offer", "profile"?}`` → 200 JSON
  ``{"sdp", "type": "answer", "call_id"}``; ``DELETE /webrtc/calls/{call_id}`` hangs up.
  The profile may also be named as ``?profile=NAME`` (on WHIP too); none: the default.
* WHIP (RFC 9725): ``POST /whip`` (``application/sdp``) → 201 with the SDP answer and
  ``Location: /whip/{id}``; ``DELETE /whip/{id}`` → 200, then 404; ``OPTIONS /whip`` →
  204 with ``Accept-Post``; ``PATCH`` → 405, because trickle ICE and ICE restarts are
  not supported (both sides gather every candidate before sending their description).

Refusals are short JSON (``{"error": ...}``, or plain text on WHIP routes, whose clients
are often command-line tools), logged with a reason, and never a traceback:

* 400 — body not JSON, no ``sdp``, wrong ``type``, or an offer the WebRTC leg refuses
  (``WebRtcOfferError``: not SDP, no audio m-line, no Opus). One status for all of
  them on purpose: the exception carries no machine-readable kind, and the message
  already says what is wrong; a 422 would only make clients branch on a guess.
* 401 — token missing or wrong (``WWW-Authenticate: Bearer``); 404 — unknown call or
  profile;
  405 — PATCH; 413 — body over :data:`MAX_BODY_BYTES`; 415 — wrong content type;
* 503 with ``Retry-After`` — every call slot is busy (browser calls count together with
  the SIP calls against ``sip.max_calls``), the speech model cannot be reached, ICE
  candidates could not be gathered, or the server is stopping.

Starting and ending browser calls is `browser_calls.py`'s job (the browser front door
of the switchboard); this module is routing, the token, body limits and rendering.
"""

from __future__ import annotations

import hmac
import json
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib.resources import files

import structlog
from aiohttp import web

from telephony_agent.config import Settings
from telephony_agent.media.webrtc import IceServer
from telephony_agent.server.browser_calls import (
    HANGUP_WAIT_S,
    BrowserCalls,
    LegFactory,
    answer_with_webrtc,
)
from telephony_agent.server.calls_api import (
    CALLS_READER_KEY,
    CallsReader,
    Dialer,
    calls_routes,
    is_loopback,
)
from telephony_agent.server.dialing import DialRequest
from telephony_agent.server.http_errors import HttpRejection
from telephony_agent.server.http_settings import ice_servers_from_settings, resolve_http_token
from telephony_agent.server.live_calls import init_live_streams, live_routes
from telephony_agent.server.operations import OPERATIONS_KEY, Operations, operations_routes
from telephony_agent.server.sip_server import AgentSipServer
from telephony_agent.switchboard import Switchboard

__all__ = [
    "HANGUP_WAIT_S",
    "MAX_BODY_BYTES",
    "HttpRejection",
    "HttpServer",
    "LegFactory",
    "build_http_app",
    "health_snapshot",
    "ice_servers_from_settings",
    "resolve_http_token",
]

log = structlog.get_logger(__name__)

#: A browser's offer is 3-8 KiB; anything far larger is a mistake or an attack.
MAX_BODY_BYTES = 64 * 1024

_STATIC_TYPES = {"app.js": "text/javascript", "live.js": "text/javascript", "style.css": "text/css"}
_PAGES = ("index.html", "live.html")
_PAGE_HEADERS = {
    # The page is a demo that changes with the package: never serve a stale script.
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_WHIP_ALLOW = "POST, OPTIONS"
_WHIP_RESOURCE_ALLOW = "DELETE, OPTIONS"
_NO_TRICKLE = (
    "trickle ICE and ICE restarts are not supported: gather all candidates before "
    "sending the offer, and send a new offer to restart"
)


def health_snapshot(
    board: Switchboard,
    sip: AgentSipServer | None = None,
    calls: BrowserCalls | None = None,
    extra: Callable[[], Mapping[str, object]] | None = None,
) -> dict[str, object]:
    """Liveness and load as JSON-ready values; keys only ever get added, never renamed."""
    lateness = board.clock.lateness_stats()
    snapshot: dict[str, object] = {
        "status": "draining" if board.draining else "ok",
        "active_calls": board.active_calls,
        "max_calls": board.max_calls,
        "profiles": [p.name for p in board.deployment.profiles.profiles],
        "calls_admitted": board.stats.admitted,
        "calls_refused_over_capacity": board.stats.refused_over_capacity,
        "calls_refused_overloaded": board.stats.refused_overloaded,
        "admission": board.overload.snapshot(board.active_calls),
        "playout_underruns": board.stats.playout_underruns,
        "media_clock_lateness_p50_ms": round(lateness.p50_ms, 3),
        "media_clock_lateness_p99_ms": round(lateness.p99_ms, 3),
        "media_clock_skipped_ticks": board.clock.skipped_ticks,
    }
    if sip is not None:
        stats = sip.stats
        buffers = sip.endpoint.udp_buffers
        snapshot.update(
            {
                "invites": stats.invites,
                "answered": stats.answered,
                "completed": stats.completed,
                "call_seconds": round(stats.call_seconds, 3),
                "rejected_busy": stats.rejected_busy,
                "sip_malformed_dropped": sip.endpoint.stats.malformed_dropped,
                "sip_bad_requests": sip.endpoint.stats.bad_requests_answered,
                "sip_internal_errors": sip.endpoint.last_resort.caught,
                "sip_pending_calls": sip.pending_calls,
                "sip_refused_rate": sip.limits.stats.refused_rate,
                "sip_refused_source_pending": sip.limits.stats.refused_source_pending,
                "sip_refused_pending": sip.limits.stats.refused_pending,
                "sip_sessions_closed_unacked": stats.sessions_closed_unacked,
                "sip_udp_buffer_bytes": buffers.receive if buffers is not None else None,
                "sip_udp_drops": sip.endpoint.udp_drops(),
                "rtp_udp_drops": sip.rtp_drops(),
            }
        )
    if calls is not None:
        snapshot["webrtc_calls"] = len(calls)
        snapshot["webrtc_answered"] = calls.answered
        snapshot["webrtc_completed"] = calls.completed
        snapshot["http_rejected"] = calls.rejected
    if extra is not None:
        snapshot.update(extra())
    return snapshot


# ---------------------------------------------------------------------- the application

CALLS_KEY = web.AppKey("browser_calls", BrowserCalls)
BOARD_KEY = web.AppKey("switchboard", Switchboard)
HEALTH_EXTRA_KEY: web.AppKey[Callable[[], Mapping[str, object]] | None] = web.AppKey("health_extra")
SIP_KEY: web.AppKey[AgentSipServer | None] = web.AppKey("sip_server")
_TOKEN_KEY = web.AppKey("token", str)
_STATIC_KEY: web.AppKey[dict[str, bytes]] = web.AppKey("static")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _is_whip(request: web.Request) -> bool:
    path = request.path
    return path == "/whip" or path.startswith("/whip/")


def _is_signalling(request: web.Request) -> bool:
    """Routes behind the bearer token: call signalling, the call records, live calls."""
    path = request.path
    return (
        _is_whip(request)
        or path.startswith(("/webrtc/", "/live/"))
        or path.split("/")[1:2] == ["calls"]
    )


def _problem(request: web.Request, rejection: HttpRejection) -> web.Response:
    """The refusal as the client expects it: plain text on WHIP routes, JSON elsewhere."""
    headers = dict(rejection.headers)
    if _is_whip(request):
        return web.Response(
            status=rejection.status,
            text=rejection.message + "\n",
            content_type="text/plain",
            headers=headers,
        )
    return web.json_response({"error": rejection.message}, status=rejection.status, headers=headers)


def _check_token(request: web.Request, token: str) -> None:
    """Bearer authentication (RFC 6750); the presented value is never logged or echoed."""
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if not header:
        raise HttpRejection(
            401,
            "missing_token",
            "this server requires a bearer token (Authorization: Bearer <token>)",
            {"WWW-Authenticate": 'Bearer realm="telephony-agent"'},
        )
    presented = presented.strip()
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        presented.encode("utf-8", "replace"), token.encode("utf-8")
    ):
        raise HttpRejection(
            401,
            "bad_token",
            "the bearer token is not valid",
            {"WWW-Authenticate": 'Bearer realm="telephony-agent", error="invalid_token"'},
        )


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Token check for signalling, and every refusal or failure as a short answer."""
    calls = request.app[CALLS_KEY]
    try:
        token = request.app.get(_TOKEN_KEY)
        # A CORS preflight never carries credentials, so OPTIONS stays open.
        if token and _is_signalling(request) and request.method != "OPTIONS":
            _check_token(request, token)
        return await handler(request)
    except HttpRejection as rejection:
        calls.rejected += 1
        level = log.warning if rejection.status >= 500 else log.info
        level(
            "http_request_rejected",
            status=rejection.status,
            reason=rejection.reason,
            method=request.method,
            path=request.path,
            remote=request.remote,
        )
        return _problem(request, rejection)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("http_request_failed", method=request.method, path=request.path)
        return _problem(request, HttpRejection(500, "internal_error", "internal server error"))


def _require_content_type(request: web.Request, expected: str) -> None:
    if request.content_type.lower() != expected:
        header = "Accept-Post" if _is_whip(request) else "Accept"
        raise HttpRejection(
            415,
            "unsupported_media_type",
            f"expected Content-Type: {expected}",
            {header: expected},
        )


async def _read_body(request: web.Request) -> bytes:
    length = request.content_length
    too_large = HttpRejection(
        413, "body_too_large", f"the request body is larger than {MAX_BODY_BYTES} bytes"
    )
    if length is not None and length > MAX_BODY_BYTES:
        raise too_large
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large from None


async def _health(request: web.Request) -> web.Response:
    app = request.app
    snapshot = health_snapshot(app[BOARD_KEY], app[SIP_KEY], app[CALLS_KEY], app[HEALTH_EXTRA_KEY])
    return web.json_response(snapshot)


async def _webrtc_config(request: web.Request) -> web.Response:
    """The ICE servers the page should use, so a browser behind NAT can reach us.

    Behind the token like the rest of signalling: a TURN credential is handed to
    the callers this deployment accepts, not to anyone who can load the page.
    """
    servers = []
    for server in request.app[CALLS_KEY].ice_servers:
        entry: dict[str, object] = {"urls": list(server.urls)}
        if server.username is not None:
            entry["username"] = server.username
        if server.credential is not None:
            entry["credential"] = server.credential
        servers.append(entry)
    return web.json_response({"iceServers": servers}, headers={"Cache-Control": "no-store"})


async def _index(request: web.Request) -> web.Response:
    return _static_response(request, "index.html", "text/html")


async def _live_page(request: web.Request) -> web.Response:
    return _static_response(request, "live.html", "text/html")


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    content_type = _STATIC_TYPES.get(name)
    if content_type is None:
        raise web.HTTPNotFound()
    return _static_response(request, name, content_type)


def _static_response(request: web.Request, name: str, content_type: str) -> web.Response:
    body: bytes = request.app[_STATIC_KEY][name]
    return web.Response(
        body=body, content_type=content_type, charset="utf-8", headers=_PAGE_HEADERS
    )


async def _webrtc_offer(request: web.Request) -> web.Response:
    _require_content_type(request, "application/json")
    body = await _read_body(request)
    try:
        data = json.loads(body)
    except ValueError:
        raise HttpRejection(400, "bad_json", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise HttpRejection(
            400, "bad_json", 'expected a JSON object: {"sdp": "...", "type": "offer"}'
        )
    sdp = data.get("sdp")
    if not isinstance(sdp, str) or not sdp.strip():
        raise HttpRejection(400, "missing_sdp", '"sdp" is missing or empty')
    if data.get("type", "offer") != "offer":
        raise HttpRejection(400, "not_an_offer", '"type" must be "offer"')
    profile = data.get("profile") or request.query.get("profile")
    if profile is not None and not isinstance(profile, str):
        raise HttpRejection(400, "bad_profile", '"profile" must be a string')
    call = await request.app[CALLS_KEY].start(sdp, "webrtc", profile=profile)
    return web.json_response({"sdp": call.answer_sdp, "type": "answer", "call_id": call.call_id})


async def _webrtc_hangup(request: web.Request) -> web.Response:
    call_id = request.match_info["call_id"]
    if not await request.app[CALLS_KEY].hang_up(call_id, "webrtc"):
        raise HttpRejection(404, "unknown_call", "no such call (it may have ended already)")
    return web.json_response({"call_id": call_id, "ended": True})


async def _whip_offer(request: web.Request) -> web.Response:
    _require_content_type(request, "application/sdp")
    body = await _read_body(request)
    try:
        sdp = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HttpRejection(400, "bad_sdp", "the offer is not UTF-8 text") from None
    if not sdp.strip():
        raise HttpRejection(400, "missing_sdp", "the body must be an SDP offer")
    call = await request.app[CALLS_KEY].start(sdp, "whip", profile=request.query.get("profile"))
    return web.Response(
        status=201,
        text=call.answer_sdp,
        content_type="application/sdp",
        headers={"Location": f"/whip/{call.call_id}"},
    )


async def _whip_delete(request: web.Request) -> web.Response:
    if not await request.app[CALLS_KEY].hang_up(request.match_info["call_id"], "whip"):
        raise HttpRejection(
            404, "unknown_call", "no such WHIP resource (it may have ended already)"
        )
    return web.Response(status=200)


async def _whip_options(request: web.Request) -> web.Response:
    allow = _WHIP_ALLOW if request.path == "/whip" else _WHIP_RESOURCE_ALLOW
    return web.Response(status=204, headers={"Allow": allow, "Accept-Post": "application/sdp"})


async def _whip_patch(request: web.Request) -> web.Response:
    raise HttpRejection(
        405,
        "trickle_unsupported",
        _NO_TRICKLE,
        {"Allow": _WHIP_ALLOW if request.path == "/whip" else _WHIP_RESOURCE_ALLOW},
    )


async def _add_cors(request: web.Request, response: web.StreamResponse) -> None:
    """CORS for WHIP, only when a token guards it.

    Why only then: without a token, letting any web site's script start calls on a
    server reachable from the visitor's browser would spend the provider account.
    The demo page is same-origin and needs none of this.
    """
    if not _is_whip(request) or not request.app.get(_TOKEN_KEY):
        return
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Methods"] = "POST, DELETE, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
    response.headers["Access-Control-Expose-Headers"] = "Location, Accept-Post"


def _load_static() -> dict[str, bytes]:
    """The page's files, read once: they are small, and this works from any install."""
    web_dir = files("telephony_agent").joinpath("web")
    return {name: web_dir.joinpath(name).read_bytes() for name in (*_PAGES, *_STATIC_TYPES)}


def build_http_app(
    switchboard: Switchboard,
    *,
    sip: AgentSipServer | None = None,
    token: str | None,
    leg_factory: LegFactory = answer_with_webrtc,
    ice_servers: Sequence[IceServer] = (),
    calls_reader: CallsReader | None = None,
    health_extra: Callable[[], Mapping[str, object]] | None = None,
    operations: Operations | None = None,
) -> web.Application:
    """The whole HTTP application for one switchboard; `token` guards signalling routes.

    `sip` is the SIP front door beside it, whose counters `/health` and `/metrics` also
    show. Without `operations`, metrics and the live page are attached to the board here.
    """
    if operations is None:
        operations = Operations.attach(switchboard, sip=sip, records_health=health_extra)
    app = web.Application(middlewares=[_guard], client_max_size=MAX_BODY_BYTES)
    app[BOARD_KEY] = switchboard
    app[SIP_KEY] = sip
    app[CALLS_KEY] = BrowserCalls(switchboard, leg_factory=leg_factory, ice_servers=ice_servers)
    app[CALLS_READER_KEY] = calls_reader
    app[HEALTH_EXTRA_KEY] = health_extra
    app[OPERATIONS_KEY] = operations
    app[_STATIC_KEY] = _load_static()
    init_live_streams(app)
    if token:
        app[_TOKEN_KEY] = token
    app.on_response_prepare.append(_add_cors)
    app.add_routes(
        [
            web.get("/health", _health),
            *operations_routes(),
            web.get("/", _index),
            web.get("/live", _live_page),
            *live_routes(switchboard, has_token=bool(token)),
            web.get("/static/{name}", _static),
            web.get("/webrtc/config", _webrtc_config),
            web.post("/webrtc/offer", _webrtc_offer),
            web.delete("/webrtc/calls/{call_id}", _webrtc_hangup),
            web.post("/whip", _whip_offer),
            web.options("/whip", _whip_options),
            web.patch("/whip", _whip_patch),
            web.delete("/whip/{call_id}", _whip_delete),
            web.options("/whip/{call_id}", _whip_options),
            web.patch("/whip/{call_id}", _whip_patch),
            *calls_routes(
                has_token=bool(token),
                dialer=_dialer(sip),
                listens_on_loopback=_listens_on_loopback(switchboard),
            ),
        ]
    )
    return app


def _dialer(sip: AgentSipServer | None) -> Dialer | None:
    if sip is None:
        return None

    def dial(request: DialRequest) -> tuple[str, str]:
        call = sip.place_call(request)
        return call.admission.id, call.call_id

    return dial


def _listens_on_loopback(switchboard: Switchboard) -> bool:
    host = switchboard.deployment.settings.http.listen.rpartition(":")[0].strip("[]")
    return is_loopback(host) or host == "localhost"


class HttpServer:
    """Runs :func:`build_http_app` on a TCP port next to the SIP server."""

    def __init__(
        self,
        switchboard: Switchboard,
        *,
        sip: AgentSipServer | None = None,
        token: str | None = None,
        leg_factory: LegFactory = answer_with_webrtc,
        environ: Mapping[str, str] | None = None,
        calls_reader: CallsReader | None = None,
        health_extra: Callable[[], Mapping[str, object]] | None = None,
        operations: Operations | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        settings: Settings = switchboard.deployment.settings
        self.tls = tls
        self._health_extra = health_extra
        self._calls_reader = calls_reader
        self.app = build_http_app(
            switchboard,
            sip=sip,
            token=token,
            leg_factory=leg_factory,
            ice_servers=ice_servers_from_settings(settings, environ),
            calls_reader=calls_reader,
            health_extra=health_extra,
            operations=operations,
        )
        self.calls = self.app[CALLS_KEY]
        self.operations = self.app[OPERATIONS_KEY]
        self._board = switchboard
        self._sip = sip
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        # No access log: request lines would be the only unredacted output of this server.
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=self.tls)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    def snapshot(self) -> dict[str, object]:
        return health_snapshot(self._board, self._sip, self.calls, self._health_extra)

    async def close(self) -> None:
        """Hang up browser calls, then stop listening (idempotent)."""
        await self.calls.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        reader, self._calls_reader = self._calls_reader, None
        if reader is not None:
            reader.close()
