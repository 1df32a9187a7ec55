"""The HTTP side of the agent: health, the browser demo page, WebRTC and WHIP signalling.

Why aiohttp here when health alone once needed only asyncio streams: a browser call
needs static files, JSON and SDP bodies, DELETE, CORS headers and body limits, and
aiohttp is already a dependency. One application serves every route so one port, one
token and one body limit cover them all.

Routes and what they answer:

* ``GET /health`` — JSON counters for load balancers (open, no token).
* ``GET /`` and ``GET /static/{name}`` — the demo page and its script and style, from
  package data (open: the page holds no secret; it asks for the token if one is needed).
* ``POST /webrtc/offer`` — JSON ``{"sdp", "type": "offer"}`` → 200 JSON
  ``{"sdp", "type": "answer", "call_id"}``; ``DELETE /webrtc/calls/{call_id}`` hangs up.
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
* 401 — token missing or wrong (``WWW-Authenticate: Bearer``); 404 — unknown call;
  405 — PATCH; 413 — body over :data:`MAX_BODY_BYTES`; 415 — wrong content type;
* 503 with ``Retry-After`` — every call slot is busy (browser calls count together with
  the SIP calls against ``sip.max_calls``), the speech model cannot be reached, ICE
  candidates could not be gathered, or the server is stopping.

A Realtime session connects while the leg gathers its ICE candidates, and the answer is
only returned once both are ready, so — as with 200 OK on SIP — the caller's first
word is never lost to a websocket handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import structlog
from aiohttp import web

from telephony_agent.audio.clock import MediaClock
from telephony_agent.audio.playout import Frame
from telephony_agent.call.bridge import Call, CallProfile
from telephony_agent.call.record import CallRecord, TranscriptLine
from telephony_agent.call.tools import default_registry
from telephony_agent.config import Settings
from telephony_agent.errors import ConfigError
from telephony_agent.logs import register_secret
from telephony_agent.media.leg import LegEvent, MediaLeg
from telephony_agent.media.webrtc import IceServer, WebRtcLeg, WebRtcOfferError
from telephony_agent.realtime.client import RealtimeSession

if TYPE_CHECKING:
    from telephony_agent.server.sip_server import AgentSipServer

__all__ = [
    "MAX_BODY_BYTES",
    "BrowserCall",
    "BrowserCalls",
    "BrowserLeg",
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
#: How long a DELETE (or shutdown) waits for the call to wind down before answering.
HANGUP_WAIT_S = 5.0
#: Error messages from lower layers are cut to this length before reaching a client.
_MAX_MESSAGE_CHARS = 300

_STATIC_TYPES = {"app.js": "text/javascript", "style.css": "text/css"}
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

CallKind = Literal["webrtc", "whip"]


# ---------------------------------------------------------------------- the leg we drive


class BrowserLeg(Protocol):
    """What signalling needs of a WebRTC leg; ``WebRtcLeg`` is the real one.

    A protocol rather than the class itself so the HTTP layer can be exercised with a
    leg that has no peer connection behind it.
    """

    @property
    def sample_rate(self) -> int: ...

    @property
    def codec(self) -> str: ...

    @property
    def answer_sdp(self) -> str: ...

    def events(self) -> AsyncIterator[LegEvent]: ...

    def send_frame(self, frame: Frame) -> None: ...

    async def hangup(self, reason: str) -> None: ...

    def send_event(self, payload: Mapping[str, object]) -> None: ...

    async def close(self) -> None: ...


class LegFactory(Protocol):
    """Answers an offer with a ready leg (``WebRtcLeg.answer`` in production)."""

    def __call__(
        self,
        offer_sdp: str,
        *,
        clock: MediaClock,
        ice_servers: Sequence[IceServer],
        allow_loopback: bool,
        ice_timeout_s: float,
    ) -> Awaitable[BrowserLeg]: ...


class _PageMedia(MediaLeg):
    """The browser leg as the Call sees it, plus the page's live feed.

    Why a wrapper: the Call hangs the leg up itself when it ends, and a closed leg can
    no longer tell the page why; intercepting ``hangup`` sends ``ended`` first. The
    per-tick ``send_frame`` is also the cheapest place to notice a new turn latency
    (one length comparison per 20 ms, no timer of its own).
    """

    def __init__(self, leg: BrowserLeg) -> None:
        self.leg = leg
        self.sample_rate = leg.sample_rate
        self.codec = leg.codec
        #: Set once the Call exists; its latencies are forwarded as they appear.
        self.record: CallRecord | None = None
        self._latencies_sent = 0
        self._end_announced = False

    def events(self) -> AsyncIterator[LegEvent]:
        return self.leg.events()

    def send_frame(self, frame: Frame) -> None:
        self.leg.send_frame(frame)
        record = self.record
        if record is not None and len(record.latencies) > self._latencies_sent:
            self.forward_latencies()

    async def hangup(self, reason: str) -> None:
        self.announce_end(reason)
        await self.leg.hangup(reason)

    async def close(self) -> None:
        await self.leg.close()

    def on_transcript(self, line: TranscriptLine) -> None:
        """The Call's transcript callback: each line goes to the page as it happens."""
        self.leg.send_event(
            {"type": "transcript", "speaker": line.speaker, "text": line.text, "t": line.t}
        )
        self.forward_latencies()

    def forward_latencies(self) -> None:
        record = self.record
        if record is None:
            return
        for latency in record.latencies[self._latencies_sent :]:
            self.leg.send_event(
                {
                    "type": "latency",
                    "to_first_delta_ms": round(latency.to_first_delta_ms, 1),
                    "to_first_frame_ms": round(latency.to_first_frame_ms, 1),
                }
            )
        self._latencies_sent = len(record.latencies)

    def announce_end(self, reason: str) -> None:
        """Tell the page once why the call ended (dropped if its channel is gone)."""
        if self._end_announced:
            return
        self._end_announced = True
        self.forward_latencies()
        self.leg.send_event({"type": "ended", "reason": reason})


# ---------------------------------------------------------------------- browser calls


class HttpRejection(Exception):
    """A request refused with a 4xx/5xx: status, a log reason, and the client's message."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = dict(headers or {})


@dataclass
class BrowserCall:
    """One call that came in over HTTP signalling (the demo page or a WHIP client)."""

    call_id: str
    kind: CallKind
    media: _PageMedia
    call: Call
    started_at: float = field(default_factory=time.monotonic)
    task: asyncio.Task[None] | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def answer_sdp(self) -> str:
        return self.media.leg.answer_sdp


class BrowserCalls:
    """Starts, tracks and ends the calls signalled over HTTP.

    Calls are kept by an unguessable id (the only handle a DELETE has) until they end.
    They share the SIP server's media clock, Realtime endpoint and task set, so
    ``AgentSipServer.shutdown`` also waits for them.
    """

    def __init__(
        self,
        sip_server: AgentSipServer,
        *,
        leg_factory: LegFactory,
        ice_servers: Sequence[IceServer],
    ) -> None:
        self._sip = sip_server
        self._leg_factory = leg_factory
        self._ice_servers = tuple(ice_servers)
        self._calls: dict[str, BrowserCall] = {}
        #: Offers being answered: they hold a call slot before they are registered.
        self._setting_up = 0
        # One budget: SIP INVITEs see the browser calls too.
        sip_server.other_calls = lambda: len(self._calls) + self._setting_up
        self._accepting = True
        self.answered = 0
        self.completed = 0
        self.rejected = 0

    def __len__(self) -> int:
        return len(self._calls)

    @property
    def ice_servers(self) -> tuple[IceServer, ...]:
        return self._ice_servers

    def get(self, call_id: str) -> BrowserCall | None:
        return self._calls.get(call_id)

    def _retry_after(self) -> dict[str, str]:
        return {"Retry-After": str(self._sip.settings.sip.retry_after_s)}

    async def start(self, offer_sdp: str, kind: CallKind) -> BrowserCall:
        """Answer an offer and start its call; raises :class:`HttpRejection` when refused."""
        if not self._accepting:
            raise HttpRejection(
                503, "shutting_down", "the server is shutting down", self._retry_after()
            )
        max_calls = self._sip.settings.sip.max_calls
        in_use = len(self._calls) + self._setting_up + self._sip.active_calls
        if in_use >= max_calls:
            raise HttpRejection(
                503,
                "over_capacity",
                f"all {max_calls} call slots are in use; try again later",
                self._retry_after(),
            )
        self._setting_up += 1
        try:
            leg, session = await self._answer(offer_sdp)
        finally:
            self._setting_up -= 1
        settings = self._sip.settings
        call_id = secrets.token_urlsafe(12)
        media = _PageMedia(leg)
        call = Call(
            leg=media,
            session=session,
            clock=self._sip.clock,
            tools=default_registry(),
            profile=CallProfile(
                greeting=settings.agent.greeting, max_duration_s=settings.agent.max_duration_s
            ),
            call_id=call_id,
            provider=self._sip.provider_name,
            on_transcript=media.on_transcript,
        )
        media.record = call.record
        browser_call = BrowserCall(call_id, kind, media, call)
        self._calls[call_id] = browser_call
        self.answered += 1
        browser_call.task = self._sip.spawn(self._run(browser_call))
        log.info("browser_call_answered", call_id=call_id, kind=kind, active=len(self._calls))
        return browser_call

    async def _answer(self, offer_sdp: str) -> tuple[BrowserLeg, RealtimeSession]:
        """The leg and a connected session, set up side by side; all or nothing."""
        settings = self._sip.settings
        session = self._sip.new_session()
        connecting = asyncio.ensure_future(session.connect())
        try:
            leg = await self._leg_factory(
                offer_sdp,
                clock=self._sip.clock,
                ice_servers=self._ice_servers,
                allow_loopback=settings.webrtc.allow_loopback,
                ice_timeout_s=settings.webrtc.ice_timeout_s,
            )
        except WebRtcOfferError as exc:
            await _abandon(connecting, session)
            raise HttpRejection(400, "bad_offer", _clip(str(exc) or "unusable offer")) from None
        except TimeoutError:
            await _abandon(connecting, session)
            raise HttpRejection(
                503,
                "ice_gathering_timeout",
                "ICE candidates could not be gathered in time (is the STUN/TURN server reachable?)",
                self._retry_after(),
            ) from None
        except BaseException:
            await _abandon(connecting, session)
            raise
        try:
            await asyncio.wait_for(connecting, settings.sip.answer_timeout_s)
        except Exception as exc:
            log.warning("realtime_unavailable", why=type(exc).__name__)
            with contextlib.suppress(Exception):
                await session.close()
            with contextlib.suppress(Exception):
                await leg.close()
            raise HttpRejection(
                503,
                "realtime_unavailable",
                "the speech model is not reachable; try again later",
                self._retry_after(),
            ) from None
        except BaseException:
            await _abandon(connecting, session)
            with contextlib.suppress(Exception):
                await leg.close()
            raise
        return leg, session

    async def _run(self, browser_call: BrowserCall) -> None:
        """The call's whole life after the answer: run, tell the page, clean up."""
        reason = "internal_error"
        try:
            record = await browser_call.call.run()
            reason = record.end_reason
        except Exception:  # Call.run never raises; this keeps the registry right if it did
            log.exception("browser_call_failed", call_id=browser_call.call_id)
        finally:
            browser_call.media.announce_end(reason)
            with contextlib.suppress(Exception):
                await browser_call.media.close()
            if self._calls.get(browser_call.call_id) is browser_call:
                del self._calls[browser_call.call_id]
            self.completed += 1
            browser_call.finished.set()
            log.info(
                "browser_call_finished",
                call_id=browser_call.call_id,
                kind=browser_call.kind,
                reason=reason,
                duration_s=round(time.monotonic() - browser_call.started_at, 2),
            )

    async def hang_up(self, call_id: str, kind: CallKind) -> bool:
        """End a call at the caller's request (like a BYE); False when there is no such call.

        The id is forgotten at once, so a repeated DELETE is a 404 even while the call
        is still winding down; the answer waits (bounded) until it has.
        """
        browser_call = self._calls.get(call_id)
        if browser_call is None or browser_call.kind != kind:
            return False
        del self._calls[call_id]
        log.info("browser_call_hangup_requested", call_id=call_id, kind=kind)
        with contextlib.suppress(Exception):
            await browser_call.media.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(browser_call.finished.wait(), HANGUP_WAIT_S)
        return True

    async def close(self) -> None:
        """Refuse new offers, hang up every call (telling each page why), and wait."""
        self._accepting = False
        calls = list(self._calls.values())
        if not calls:
            return
        await asyncio.gather(*(c.media.hangup("shutdown") for c in calls), return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(c.finished.wait() for c in calls)), HANGUP_WAIT_S
            )


async def _abandon(connecting: asyncio.Future[None], session: RealtimeSession) -> None:
    """Give up a session that was connecting for an offer that failed."""
    if not connecting.done():
        connecting.cancel()
    with contextlib.suppress(BaseException):
        await connecting
    with contextlib.suppress(Exception):
        await session.close()


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[: _MAX_MESSAGE_CHARS - 1] + "…"


# ---------------------------------------------------------------------- settings


def resolve_http_token(settings: Settings, environ: Mapping[str, str] | None = None) -> str | None:
    """The bearer token signalling requires, or None when none is configured.

    ``http.token_env`` (a variable name) wins over ``http.token_file``. A token that is
    configured but missing or empty is an error, not "no token": starting open when the
    operator asked for protection would be the worst failure. The value is registered
    with the log redactor so it can never be printed.
    """
    env = os.environ if environ is None else environ
    http = settings.http
    if http.token_env:
        value = env.get(http.token_env, "").strip()
        if not value:
            raise ConfigError(
                f"http.token_env = {http.token_env!r}: that environment variable is not set "
                "or empty (it must hold the bearer token)"
            )
    elif http.token_file:
        try:
            value = Path(http.token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(
                f"http.token_file = {http.token_file!r}: cannot read it ({why})"
            ) from None
        if not value:
            raise ConfigError(f"http.token_file = {http.token_file!r}: the file is empty")
    else:
        return None
    register_secret(value)
    return value


def ice_servers_from_settings(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> tuple[IceServer, ...]:
    """STUN and TURN servers for the leg from ``[webrtc]``; the TURN credential from env.

    STUN URLs need no credential and form one server; TURN URLs share the configured
    username and credential. A TURN URL without both is refused at startup, because
    aiortc would otherwise fail on every call instead.
    """
    env = os.environ if environ is None else environ
    webrtc = settings.webrtc
    urls = [part.strip() for part in webrtc.ice_servers.split(",") if part.strip()]
    stun = tuple(u for u in urls if u.lower().startswith(("stun:", "stuns:")))
    turn = tuple(u for u in urls if u.lower().startswith(("turn:", "turns:")))
    unknown = [u for u in urls if u not in stun and u not in turn]
    if unknown:
        raise ConfigError(
            f"webrtc.ice_servers = {webrtc.ice_servers!r}: {unknown[0]!r} is not a "
            "stun:, stuns:, turn: or turns: URL"
        )
    servers: list[IceServer] = []
    if stun:
        servers.append(IceServer(urls=stun))
    if turn:
        credential_env = webrtc.turn_credential_env
        credential = env.get(credential_env, "").strip() if credential_env else ""
        if not webrtc.turn_username or not credential:
            raise ConfigError(
                "webrtc.ice_servers lists a TURN server: set webrtc.turn_username and "
                "webrtc.turn_credential_env (an environment variable holding the credential)"
            )
        register_secret(credential)
        servers.append(IceServer(urls=turn, username=webrtc.turn_username, credential=credential))
    return tuple(servers)


def health_snapshot(sip: AgentSipServer, calls: BrowserCalls | None = None) -> dict[str, object]:
    """Liveness and load as JSON-ready values; keys only ever get added, never renamed."""
    stats = sip.stats
    lateness = sip.clock.lateness_stats()
    snapshot: dict[str, object] = {
        "status": "ok",
        "active_calls": sip.active_calls,
        "max_calls": sip.settings.sip.max_calls,
        "invites": stats.invites,
        "answered": stats.answered,
        "completed": stats.completed,
        "call_seconds": round(stats.call_seconds, 3),
        "rejected_busy": stats.rejected_busy,
        "sip_malformed_dropped": sip.endpoint.stats.malformed_dropped,
        "sip_bad_requests": sip.endpoint.stats.bad_requests_answered,
        "media_clock_lateness_p50_ms": round(lateness.p50_ms, 3),
        "media_clock_lateness_p99_ms": round(lateness.p99_ms, 3),
        "media_clock_skipped_ticks": sip.clock.skipped_ticks,
    }
    if calls is not None:
        snapshot["webrtc_calls"] = len(calls)
        snapshot["webrtc_answered"] = calls.answered
        snapshot["webrtc_completed"] = calls.completed
        snapshot["http_rejected"] = calls.rejected
    return snapshot


# ---------------------------------------------------------------------- the application

CALLS_KEY = web.AppKey("browser_calls", BrowserCalls)
SIP_KEY: web.AppKey[AgentSipServer] = web.AppKey("sip_server")
_TOKEN_KEY = web.AppKey("token", str)
_STATIC_KEY: web.AppKey[dict[str, bytes]] = web.AppKey("static")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _is_whip(request: web.Request) -> bool:
    path = request.path
    return path == "/whip" or path.startswith("/whip/")


def _is_signalling(request: web.Request) -> bool:
    return _is_whip(request) or request.path.startswith("/webrtc/")


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
    return web.json_response(health_snapshot(request.app[SIP_KEY], request.app[CALLS_KEY]))


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
    call = await request.app[CALLS_KEY].start(sdp, "webrtc")
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
    call = await request.app[CALLS_KEY].start(sdp, "whip")
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
    return {name: web_dir.joinpath(name).read_bytes() for name in ("index.html", *_STATIC_TYPES)}


def build_http_app(
    sip_server: AgentSipServer,
    *,
    token: str | None,
    leg_factory: LegFactory = WebRtcLeg.answer,
    ice_servers: Sequence[IceServer] = (),
) -> web.Application:
    """The whole HTTP application for one SIP server; `token` guards signalling routes."""
    app = web.Application(middlewares=[_guard], client_max_size=MAX_BODY_BYTES)
    app[SIP_KEY] = sip_server
    app[CALLS_KEY] = BrowserCalls(sip_server, leg_factory=leg_factory, ice_servers=ice_servers)
    app[_STATIC_KEY] = _load_static()
    if token:
        app[_TOKEN_KEY] = token
    app.on_response_prepare.append(_add_cors)
    app.add_routes(
        [
            web.get("/health", _health),
            web.get("/", _index),
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
        ]
    )
    return app


class HttpServer:
    """Runs :func:`build_http_app` on a TCP port next to the SIP server."""

    def __init__(
        self,
        sip_server: AgentSipServer,
        settings: Settings,
        *,
        token: str | None = None,
        leg_factory: LegFactory = WebRtcLeg.answer,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.app = build_http_app(
            sip_server,
            token=token,
            leg_factory=leg_factory,
            ice_servers=ice_servers_from_settings(settings, environ),
        )
        self.calls = self.app[CALLS_KEY]
        self._sip = sip_server
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        # No access log: request lines would be the only unredacted output of this server.
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    def snapshot(self) -> dict[str, object]:
        return health_snapshot(self._sip, self.calls)

    async def close(self) -> None:
        """Hang up browser calls, then stop listening (idempotent)."""
        await self.calls.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
