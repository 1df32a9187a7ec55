"""The switchboard: the one owner of every live call, whatever leg it came in on.

Why one owner: capacity, draining, profile choice, the Realtime session for that
profile, the tools bound to the call, and what listeners (transcripts, records,
metrics) hear about it are the same for a SIP call and a browser call. The front
doors (`server/sip_server.py`, `server/browser_calls.py`) only translate their
signalling into a `CallRequest`, set up their leg, and hand both back here.

The life of a call here:

1. `admit(request)` decides at once, without I/O: a `Refusal` (over capacity,
   overloaded by the measured load (`overload.py`), draining, unknown profile) or an
   `Admission` that holds one call slot and knows the profile and the deployment the
   call was admitted under.
2. The front door sets up its leg and connects `admission.new_session()` while
   the caller hears ringing (or ICE gathers).
3. `admission.run(leg, session)` runs the `Call` to its end and returns its
   record; or `admission.release(reason)` gives the slot back when setup failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import structlog

from telephony_agent.agent import CallFacts, Profile, render_greeting, render_instructions
from telephony_agent.agent.outbound import outbound_note
from telephony_agent.audio.clock import MediaClock
from telephony_agent.call.bridge import Call
from telephony_agent.call.profile import CallProfile, FrameRecorder
from telephony_agent.call.record import BargeIn, CallRecord, TranscriptLine, TurnLatency
from telephony_agent.call.tools import ToolRegistry, ToolResult, builtin_tools
from telephony_agent.media.leg import LegFormat, MediaLeg
from telephony_agent.realtime.client import RealtimeSession
from telephony_agent.switchboard.deployment import Deployment
from telephony_agent.switchboard.overload import OverloadGate
from telephony_agent.switchboard.request import CallRequest, Refusal
from telephony_agent.switchboard.session import max_session_s, session_config, turn_policy
from telephony_agent.tools import BUILTIN_TOOL_NAMES, CallInfo

__all__ = ["Admission", "CallListener", "LiveCall", "Switchboard", "SwitchboardStats"]

log = structlog.get_logger(__name__)


class CallListener:
    """Hears about every call as it happens (records, metrics, a live page).

    Every hook must return at once: nothing may block a call. The defaults do nothing,
    so a listener overrides only what it needs. A hook that raises is logged and
    ignored.
    """

    def call_offered(self, admission: Admission) -> None:
        """Admitted: the front door is setting up the leg and the session."""

    def call_refused(self, request: CallRequest, refusal: Refusal) -> None:
        """Not admitted (over capacity, overloaded, draining, unknown profile)."""

    def call_abandoned(self, admission: Admission, reason: str) -> None:
        """Admitted but never ran (cancelled, the model unreachable, a bad offer)."""

    def call_started(self, call: LiveCall) -> None:
        """Answered: the Call runs."""

    def transcript(self, call: LiveCall, line: TranscriptLine) -> None: ...

    def tool_called(self, call: LiveCall, result: ToolResult) -> None: ...

    def turn(self, call: LiveCall, latency: TurnLatency) -> None: ...

    def barge_in(self, call: LiveCall, barge_in: BargeIn) -> None: ...

    def dtmf(self, call: LiveCall, digits: str) -> None: ...

    def call_ended(self, call: LiveCall, record: CallRecord) -> None: ...


#: Makes the recorder of a call, or None when the call is not recorded.
RecorderFactory = Callable[["Admission", int], "FrameRecorder | None"]


class _Observer:
    """The Call's observer for one admission: fans events out to the listeners."""

    def __init__(self, board: Switchboard, admission: Admission) -> None:
        self._board = board
        self._admission = admission

    def _each(self, hook: str, *args: object) -> None:
        live = self._admission.live
        if live is not None:
            self._board.tell(hook, live, *args)

    def tool_result(self, result: ToolResult) -> None:
        self._each("tool_called", result)

    def turn(self, latency: TurnLatency) -> None:
        self._each("turn", latency)

    def barge_in(self, barge_in: BargeIn) -> None:
        self._each("barge_in", barge_in)

    def dtmf(self, digits: str) -> None:
        self._each("dtmf", digits)


@dataclass
class SwitchboardStats:
    admitted: int = 0
    refused_over_capacity: int = 0
    #: Refused by the overload gate (measured lateness and CPU, or no headroom left).
    refused_overloaded: int = 0
    refused_draining: int = 0
    refused_unknown_profile: int = 0
    #: Admissions given back before the call ran (setup failed, cancelled).
    abandoned: int = 0
    started: int = 0
    completed: int = 0
    #: Sum of finished calls' durations, for CPU-per-call-second figures.
    call_seconds: float = 0.0
    #: Agent speech that ran dry mid-spurt, summed over finished calls.
    playout_underruns: int = 0


@dataclass
class LiveCall:
    """A running call as listeners and operators see it."""

    id: str
    request: CallRequest
    profile: Profile
    provider: str
    call: Call
    started_at: float = field(default_factory=time.time)


class Admission:
    """One admitted call: holds its slot until `run` ends or `release` is called."""

    def __init__(
        self,
        board: Switchboard,
        request: CallRequest,
        profile: Profile,
        deployment: Deployment,
    ) -> None:
        self._board = board
        self.request = request
        self.profile = profile
        self.deployment = deployment
        #: Our own id for the call (the front door's id is `request.external_id`).
        self.id = uuid.uuid4().hex
        self.facts = CallFacts(
            caller=request.caller,
            dialled=request.dialled,
            call_id=request.external_id,
            now=datetime.now().astimezone(),
            variables=dict(request.variables),
        )
        self.provider, self.endpoint = deployment.endpoint_for(profile)
        #: The model asked for, as the endpoint names it (for records).
        self.model = parse_qs(urlsplit(self.endpoint.url).query).get("model", [None])[0]
        self.tools = self._tool_registry()
        self._released = False
        self.live: LiveCall | None = None

    def _tool_registry(self) -> ToolRegistry:
        wanted = self.profile.effective_tools
        base = ToolRegistry()
        for tool in builtin_tools(self.profile.transfer_targets):
            if tool.spec.name in wanted:
                base.register(tool)
        business = [name for name in wanted if name not in BUILTIN_TOOL_NAMES]
        if not business:
            return base
        info = CallInfo(
            call_id=self.request.external_id,
            profile=self.profile.name,
            caller=self.request.caller,
            dialled=self.request.dialled,
            variables=dict(self.profile.variables),
        )
        return self.deployment.tools.registry_for(business, info, base)

    def new_session(self, leg: LegFormat | None = None) -> RealtimeSession:
        """A Realtime session for this call's profile (not yet connected); `leg` is the
        leg's format when already negotiated, so the session can match it."""
        settings = self.deployment.settings
        profile = self.profile
        instructions = render_instructions(profile, self.facts)
        if self.request.direction == "outbound":
            instructions += outbound_note(render_greeting(profile, self.facts))
        config = session_config(
            settings,
            self.provider,
            dialect=self.endpoint.dialect,
            leg=leg,
            instructions=instructions,
            voice=profile.voice,
            language=profile.language,
            tools=self.tools.specs(),
        )
        return RealtimeSession(
            self.endpoint,
            config,
            chunk_ms=settings.realtime.chunk_ms,
            ready_timeout_s=settings.realtime.ready_timeout_s,
            max_reconnects=settings.realtime.max_reconnects,
            max_session_s=max_session_s(settings, self.provider),
        )

    async def run(
        self,
        leg: MediaLeg,
        session: RealtimeSession,
        *,
        on_transcript: Callable[[TranscriptLine], None] | None = None,
        on_call: Callable[[Call], None] | None = None,
    ) -> CallRecord:
        """Run the call to its end (never raises); the slot is released after."""
        profile = self.profile
        settings = self.deployment.settings
        call = Call(
            leg=leg,
            session=session,
            clock=self._board.clock,
            tools=self.tools,
            profile=CallProfile(
                greeting=render_greeting(profile, self.facts),
                greeting_audio=self.deployment.greeting_audio.get(profile.name),
                max_duration_s=profile.max_duration_s,
                dtmf_inter_digit_s=profile.dtmf_inter_digit_s,
                dtmf_max_digits=profile.dtmf_max_digits,
                dtmf_terminator=profile.dtmf_terminator,
                dtmf_message=profile.dtmf_message,
                playout_preroll_ms=settings.realtime.playout_preroll_ms,
                idle_reprompt_s=settings.agent.idle_reprompt_s or None,
                idle_max_reprompts=settings.agent.idle_max_reprompts,
                idle_reprompt_instructions=settings.agent.idle_reprompt_instructions,
                idle_goodbye_instructions=settings.agent.idle_goodbye_instructions,
                tool_feedback=self.deployment.tool_feedback(profile),
                opening=profile.outbound if self.request.direction == "outbound" else None,
                turns=turn_policy(settings),
            ),
            # Ours, so the Call's log lines join the records' and the call events' id.
            call_id=self.id,
            provider=self.provider,
            on_transcript=lambda line: self._board.on_transcript(self, line, on_transcript),
            observer=_Observer(self._board, self),
            recorder=self._board.recorder_for(self, leg.sample_rate),
        )
        if on_call is not None:
            on_call(call)
        live = LiveCall(self.id, self.request, profile, self.provider, call)
        self.live = live
        self._board.call_started(self, live)
        record = await call.run()
        self._board.call_ended(self, live, record)
        return record

    def note(self, text: str) -> None:
        """A system line for the record of a call the agent has left but that goes on (a
        bridged transfer): written while the call is still kept, i.e. before it ends."""
        live = self.live
        if live is None:
            return
        record = live.call.record
        at_ms = max((line.end_ms for line in record.transcript), default=0)
        line = TranscriptLine(time.time() - record.started_at, "system", text, at_ms, at_ms)
        record.transcript.append(line)
        self._board.on_transcript(self, line, None)

    def release(self, reason: str) -> None:
        """Give the slot back (idempotent); a call that never ran counts as abandoned."""
        if self._released:
            return
        self._released = True
        self._board.release(self, reason)


class Switchboard:
    """Admits, runs and ends every call of the process against one capacity."""

    def __init__(self, deployment: Deployment, *, clock: MediaClock | None = None) -> None:
        self.deployment = deployment
        self.clock = clock or MediaClock()
        self.stats = SwitchboardStats()
        #: Refuses new calls past the knee; fed by a `LoadSampler` (no samples: no opinion).
        self.overload = OverloadGate(deployment.settings.admission)
        self._admitted: dict[str, Admission] = {}
        self._listeners: list[CallListener] = []
        self._draining = False
        #: Deployments replaced by a reload whose tools still serve live calls.
        self._retired: list[Deployment] = []
        #: Set by whoever keeps recordings (see `records/`); None: no call is recorded.
        self.recorder_factory: RecorderFactory | None = None
        self._closing: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ configuration

    @property
    def max_calls(self) -> int:
        return self.deployment.settings.sip.max_calls

    def reload(self, deployment: Deployment) -> None:
        """New calls use `deployment`; live calls keep the one they were admitted under."""
        self._retired.append(self.deployment)
        self.deployment = deployment
        self.overload.limits = deployment.settings.admission
        self._close_unused_deployments()
        log.info(
            "deployment_reloaded",
            profiles=[p.name for p in deployment.profiles.profiles],
            tools=sorted(deployment.tools.names()),
            max_calls=self.max_calls,
        )

    def add_listener(self, listener: CallListener) -> None:
        self._listeners.append(listener)

    def tell(self, hook: str, *args: object) -> None:
        """Call `hook` on every listener; one that raises is logged, never allowed to end
        or stall the call, and the others still hear it."""
        for listener in self._listeners:
            try:
                getattr(listener, hook)(*args)
            except Exception as exc:
                log.warning("call_listener_failed", hook=hook, error=type(exc).__name__)

    def recorder_for(self, admission: Admission, rate: int) -> FrameRecorder | None:
        factory = self.recorder_factory
        if factory is None:
            return None
        try:
            return factory(admission, rate)
        except Exception as exc:  # a recording must never stop a call
            log.warning("recording_not_started", error=type(exc).__name__)
            return None

    # ------------------------------------------------------------------ admission

    @property
    def active_calls(self) -> int:
        """Calls holding a slot: being set up or running."""
        return len(self._admitted)

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def overloaded(self) -> bool:
        """True while the overload gate refuses every new call (measured load too high)."""
        return self.deployment.settings.admission.enabled and self.overload.overloaded

    def live_calls(self) -> list[LiveCall]:
        """The calls running now (answered, not yet ended), oldest first."""
        return [a.live for a in self._admitted.values() if a.live is not None]

    def find_live(self, call_id: str) -> LiveCall | None:
        """A running call by our id (operators' hang-up button)."""
        admission = self._admitted.get(call_id)
        return admission.live if admission is not None else None

    def admit(self, request: CallRequest) -> Admission | Refusal:
        """Take the call or say why not; decided at once, without I/O."""
        deployment = self.deployment
        if self._draining:
            self.stats.refused_draining += 1
            return self._refuse(request, Refusal("draining", "the server is shutting down"))
        if len(self._admitted) >= self.max_calls:
            self.stats.refused_over_capacity += 1
            log.info("call_refused", reason="over_capacity", active=len(self._admitted))
            return self._refuse(
                request,
                Refusal(
                    "over_capacity",
                    f"all {self.max_calls} call slots are in use; try again later",
                ),
            )
        if deployment.settings.admission.enabled:
            verdict = self.overload.check(len(self._admitted))
            if verdict != "ok":
                # No log line per refusal: the gate's sampler logs entering and leaving.
                self.stats.refused_overloaded += 1
                return self._refuse(
                    request, Refusal("overloaded", "the server is overloaded; try again later")
                )
        if request.profile is not None:
            profile = deployment.profiles.by_name(request.profile)
            if profile is None:
                self.stats.refused_unknown_profile += 1
                return self._refuse(
                    request, Refusal("unknown_profile", f"no profile named {request.profile!r}")
                )
        else:
            profile = deployment.profiles.route(request.dialled)
        admission = Admission(self, request, profile, deployment)
        self._admitted[admission.id] = admission
        self.stats.admitted += 1
        log.info(
            "call_admitted",
            kind=request.kind,
            external_id=request.external_id[:128],
            profile=profile.name,
            provider=admission.provider,
            active=len(self._admitted),
        )
        self.tell("call_offered", admission)
        return admission

    def _refuse(self, request: CallRequest, refusal: Refusal) -> Refusal:
        self.tell("call_refused", request, refusal)
        return refusal

    def release(self, admission: Admission, reason: str) -> None:
        if self._admitted.pop(admission.id, None) is None:
            return
        if admission.live is None:
            self.stats.abandoned += 1
            log.info("call_abandoned", reason=reason, external_id=admission.request.external_id)
            self.tell("call_abandoned", admission, reason)
        if self._retired:
            self._close_unused_deployments()

    def _close_unused_deployments(self) -> None:
        """Close the tools (webhook connections) of replaced deployments no call uses."""
        in_use = {id(a.deployment) for a in self._admitted.values()}
        for old in [d for d in self._retired if id(d) not in in_use]:
            self._retired.remove(old)
            if old.tools is self.deployment.tools:
                continue
            task = asyncio.ensure_future(old.tools.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    # ------------------------------------------------------------------ call events

    def call_started(self, admission: Admission, live: LiveCall) -> None:
        self.stats.started += 1
        self.tell("call_started", live)

    def on_transcript(
        self,
        admission: Admission,
        line: TranscriptLine,
        front_door: Callable[[TranscriptLine], None] | None,
    ) -> None:
        if front_door is not None:
            try:
                front_door(line)
            except Exception as exc:  # the front door's live view must not stop the call
                log.warning("call_listener_failed", hook="transcript", error=type(exc).__name__)
        live = admission.live
        if live is not None:
            self.tell("transcript", live, line)

    def call_ended(self, admission: Admission, live: LiveCall, record: CallRecord) -> None:
        self.stats.completed += 1
        self.stats.call_seconds += record.duration_s
        self.stats.playout_underruns += record.underruns
        self.tell("call_ended", live, record)
        admission.release(record.end_reason)

    # ------------------------------------------------------------------ ending

    def drain(self) -> None:
        """Refuse new calls from now on; calls in progress go on."""
        if not self._draining:
            self._draining = True
            log.info("switchboard_draining", active=len(self._admitted))

    async def close(self) -> None:
        """Stop the business tools' connections (after every call has ended)."""
        for deployment in (*self._retired, self.deployment):
            with contextlib.suppress(Exception):
                await deployment.tools.aclose()
        self._retired.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        self.clock.stop()
