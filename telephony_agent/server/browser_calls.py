"""The browser front door of the switchboard: calls signalled over HTTP (page or WHIP).

Why separate from `http_app.py`: routing, token checks and body limits are HTTP;
starting, tracking and ending a browser call is call ownership. This module turns
an SDP offer into a WebRTC leg plus one request to the switchboard, and keeps the
unguessable id a DELETE needs until the call ends.

A Realtime session connects while the leg gathers its ICE candidates, and the answer
is only returned once both are ready, so — as with 200 OK on SIP — the caller's first
word is never lost to a websocket handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import structlog

from telephony_agent.audio.clock import MediaClock
from telephony_agent.audio.playout import Frame
from telephony_agent.call.record import CallRecord, TranscriptLine
from telephony_agent.media.leg import LegEvent, LegFormat, MediaLeg
from telephony_agent.media.webrtc import IceServer, WebRtcOfferError
from telephony_agent.realtime.client import RealtimeSession
from telephony_agent.server.http_errors import HttpRejection
from telephony_agent.switchboard import Admission, CallRequest, Refusal, Switchboard

__all__ = [
    "HANGUP_WAIT_S",
    "BrowserCall",
    "BrowserCalls",
    "BrowserLeg",
    "CallKind",
    "LegFactory",
    "PageMedia",
]

log = structlog.get_logger(__name__)

#: How long a DELETE (or shutdown) waits for the call to wind down before answering.
HANGUP_WAIT_S = 5.0
#: Error messages from lower layers are cut to this length before reaching a client.
_MAX_MESSAGE_CHARS = 300

CallKind = Literal["webrtc", "whip"]


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


#: Every browser call is Opus at 48 kHz (what `WebRtcLeg` negotiates), known before the
#: peer connection exists.
BROWSER_LEG_FORMAT = LegFormat("opus", 48000)


async def answer_with_webrtc(
    offer_sdp: str,
    *,
    clock: MediaClock,
    ice_servers: Sequence[IceServer],
    allow_loopback: bool,
    ice_timeout_s: float,
) -> BrowserLeg:
    """`WebRtcLeg.answer`, imported with aiortc on the first browser call, so a `serve`
    that answers only SIP never loads the WebRTC stack."""
    from telephony_agent.media.webrtc.leg import WebRtcLeg

    return await WebRtcLeg.answer(
        offer_sdp,
        clock=clock,
        ice_servers=ice_servers,
        allow_loopback=allow_loopback,
        ice_timeout_s=ice_timeout_s,
    )


class PageMedia(MediaLeg):
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

    def attach(self, record: CallRecord) -> None:
        """The Call exists: its latencies are forwarded to the page from now on."""
        self.record = record

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


@dataclass
class BrowserCall:
    """One call that came in over HTTP signalling (the demo page or a WHIP client)."""

    call_id: str
    kind: CallKind
    media: PageMedia
    admission: Admission
    session: RealtimeSession
    started_at: float = field(default_factory=time.monotonic)
    task: asyncio.Task[None] | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def answer_sdp(self) -> str:
        return self.media.leg.answer_sdp


class BrowserCalls:
    """Starts, tracks and ends the calls signalled over HTTP.

    Calls are kept by an unguessable id (the only handle a DELETE has) until they end.
    Capacity, the profile and the Realtime session come from the switchboard, so SIP
    and browser calls share one budget and one media clock.
    """

    def __init__(
        self,
        switchboard: Switchboard,
        *,
        leg_factory: LegFactory,
        ice_servers: Sequence[IceServer],
    ) -> None:
        self._board = switchboard
        self._leg_factory = leg_factory
        self._ice_servers = tuple(ice_servers)
        self._calls: dict[str, BrowserCall] = {}
        self._tasks: set[asyncio.Task[None]] = set()
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
        return {"Retry-After": str(self._board.deployment.settings.sip.retry_after_s)}

    async def start(
        self, offer_sdp: str, kind: CallKind, *, profile: str | None = None
    ) -> BrowserCall:
        """Answer an offer and start its call; raises :class:`HttpRejection` when refused."""
        if not self._accepting:
            raise HttpRejection(
                503, "shutting_down", "the server is shutting down", self._retry_after()
            )
        call_id = secrets.token_urlsafe(12)
        admission = self._board.admit(
            CallRequest(kind=kind, external_id=call_id, profile=profile or None)
        )
        if isinstance(admission, Refusal):
            if admission.reason == "unknown_profile":
                raise HttpRejection(404, "unknown_profile", admission.message)
            reason = "shutting_down" if admission.reason == "draining" else admission.reason
            raise HttpRejection(503, reason, admission.message, self._retry_after())
        try:
            leg, session = await self._answer(offer_sdp, admission)
        except BaseException:
            admission.release("setup_failed")
            raise
        media = PageMedia(leg)
        browser_call = BrowserCall(call_id, kind, media, admission, session)
        self._calls[call_id] = browser_call
        self.answered += 1
        task = asyncio.ensure_future(self._run(browser_call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        browser_call.task = task
        log.info(
            "browser_call_answered",
            call_id=call_id,
            kind=kind,
            profile=admission.profile.name,
            active=len(self._calls),
        )
        return browser_call

    async def _answer(
        self, offer_sdp: str, admission: Admission
    ) -> tuple[BrowserLeg, RealtimeSession]:
        """The leg and a connected session, set up side by side; all or nothing."""
        settings = admission.deployment.settings
        session = admission.new_session(BROWSER_LEG_FORMAT)
        connecting = asyncio.ensure_future(session.connect())
        try:
            leg = await self._leg_factory(
                offer_sdp,
                clock=self._board.clock,
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
        media = browser_call.media
        try:
            record = await browser_call.admission.run(
                media,
                browser_call.session,
                on_transcript=media.on_transcript,
                on_call=lambda call: media.attach(call.record),
            )
            reason = record.end_reason
        except Exception:  # Admission.run never raises; this keeps the registry right if it did
            log.exception("browser_call_failed", call_id=browser_call.call_id)
        finally:
            browser_call.admission.release(reason)
            media.announce_end(reason)
            with contextlib.suppress(Exception):
                await media.close()
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
