"""Conformance of the Realtime client against the built-in local backend.

Every test drives the real `RealtimeSession` against the real local backend over a
websocket on 127.0.0.1, one test (or parametrised group) per conformance case of the
protocol notes (section 7), with the backend's fault knobs switched on one at a time.
The backend's counters (`RunningBackend.stats`) are the referee: a correct client
never gets a truncate rejected, never sends an early `response.create`, and so on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import traceback
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import structlog
from numpy.typing import NDArray

from telephony_agent.realtime.audio_chunks import SampleAligner
from telephony_agent.realtime.backend import BackendOptions, RunningBackend
from telephony_agent.realtime.client import RealtimeSession
from telephony_agent.realtime.dialect import Dialect
from telephony_agent.realtime.errors import RealtimeAuthError, RealtimeProtocolError
from telephony_agent.realtime.events import (
    AssistantTranscriptDelta,
    AssistantTranscriptDone,
    AudioDelta,
    AudioDone,
    FunctionCall,
    InputCommitted,
    InputTranscript,
    ItemAdded,
    ItemTruncated,
    ResponseCreated,
    ResponseDone,
    ServerError,
    ServerEvent,
    SessionClosed,
    SessionCreated,
    SessionReconnected,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    Unknown,
)
from telephony_agent.realtime.providers import Endpoint
from telephony_agent.realtime.session_config import SessionConfig, ToolSpec, VadConfig
from tests.backend.backend_wire import FAST, RATE, silence, speech_like
from tests.call.helpers import local_backend

E = TypeVar("E")

#: Every wait is bounded: a hang fails in seconds, not at the CI job timeout.
WAIT_S = 5.0
#: Reconnect quickly in tests; the shape of the backoff is unit-tested elsewhere.
QUICK: dict[str, Any] = {"ready_timeout_s": 3.0, "backoff_s": (0.01, 0.05), "connect_attempts": 3}
FAKE_KEY = "sk-CONFORMANCE-FAKE-KEY-123456"
#: A VAD that reacts quickly to the synthetic speech.
VAD = VadConfig(silence_duration_ms=300, prefix_padding_ms=100)


def pcm(samples: NDArray[np.int16]) -> bytes:
    return samples.astype("<i2").tobytes()


def speech(ms: int, seed: int = 0) -> bytes:
    return pcm(speech_like(ms, seed))


def quiet(ms: int) -> bytes:
    return pcm(silence(ms))


class Feed:
    """Every event a session yields, pumped into a list by a background task.

    Waiting never cancels the session's own event iterator (that would end it), so a
    timed-out wait leaves the feed usable. `wait_for` consumes in order from a cursor,
    the way a consumer reading `events()` would.
    """

    def __init__(self, session: RealtimeSession) -> None:
        self.seen: list[ServerEvent] = []
        self.cursor = 0
        self.ended = False
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._pump(session))

    async def _pump(self, session: RealtimeSession) -> None:
        async for event in session.events():
            self.seen.append(event)
            self._changed.set()
        self.ended = True
        self._changed.set()

    async def wait_for(
        self,
        kind: type[E],
        where: Callable[[E], bool] | None = None,
        *,
        within: float = WAIT_S,
    ) -> E:
        """The next event of `kind` (matching `where`) after the cursor; moves the cursor."""
        async with asyncio.timeout(within):
            while True:
                while self.cursor < len(self.seen):
                    event = self.seen[self.cursor]
                    self.cursor += 1
                    if isinstance(event, kind) and (where is None or where(event)):
                        return event
                if self.ended:
                    raise AssertionError(f"session ended before a {kind.__name__} arrived")
                self._changed.clear()
                await self._changed.wait()

    async def find(
        self,
        kind: type[E],
        where: Callable[[E], bool] | None = None,
        *,
        after: int = 0,
        within: float = WAIT_S,
    ) -> E:
        """The first event of `kind` (matching `where`) from index `after`, whenever it
        arrived relative to others; the cursor does not move."""
        async with asyncio.timeout(within):
            index = after
            while True:
                while index < len(self.seen):
                    event = self.seen[index]
                    index += 1
                    if isinstance(event, kind) and (where is None or where(event)):
                        return event
                if self.ended:
                    raise AssertionError(f"session ended before a {kind.__name__} arrived")
                self._changed.clear()
                await self._changed.wait()

    async def idle(self, seconds: float) -> None:
        """Let the session run for a while (events keep being recorded)."""
        await asyncio.sleep(seconds)

    def since(self, mark: int) -> list[ServerEvent]:
        return self.seen[mark:]

    def of(self, kind: type[E], start: int = 0) -> list[E]:
        return [e for e in self.seen[start:] if isinstance(e, kind)]

    async def stop(self) -> None:
        if not self._task.done():
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


class Rig:
    """Starts backends and sessions for one test and tears all of them down."""

    def __init__(self, stack: AsyncExitStack) -> None:
        self.stack = stack
        self.sessions: list[RealtimeSession] = []
        self.feeds: list[Feed] = []

    async def backend(self, **options: Any) -> RunningBackend:
        options.setdefault("realtime_factor", FAST)
        return await self.stack.enter_async_context(local_backend(BackendOptions(**options)))

    def session(
        self,
        backend: RunningBackend,
        *,
        dialect: Dialect = Dialect.GA,
        vad: VadConfig | None = None,
        tools: list[ToolSpec] | None = None,
        headers: dict[str, str] | None = None,
        output_rate: int = 24000,
        **kwargs: Any,
    ) -> RealtimeSession:
        endpoint = Endpoint(
            url=backend.url, headers=headers or {}, dialect=dialect, name="conformance"
        )
        config = SessionConfig(
            instructions="Conformance run.",
            vad=vad,
            tools=tools or [],
            output_rate=output_rate,
        )
        session = RealtimeSession(endpoint, config, **{**QUICK, **kwargs})
        self.sessions.append(session)
        return session

    async def open(self, backend: RunningBackend, **kwargs: Any) -> tuple[RealtimeSession, Feed]:
        session = self.session(backend, **kwargs)
        async with asyncio.timeout(WAIT_S):
            await session.connect()
        feed = Feed(session)
        self.feeds.append(feed)
        return session, feed

    async def close(self) -> None:
        for session in self.sessions:
            async with asyncio.timeout(WAIT_S):
                await session.close()
        for feed in self.feeds:
            await feed.stop()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with AsyncExitStack() as stack:
        harness = Rig(stack)
        try:
            yield harness
        finally:
            await harness.close()


async def manual_turn(
    session: RealtimeSession, feed: Feed, audio: bytes, *, within: float = WAIT_S
) -> ResponseDone:
    """append, commit, create_response; the turn's ResponseDone."""
    session.append_audio(audio)
    session.commit()
    session.create_response()
    created = await feed.wait_for(ResponseCreated, within=within)
    return await feed.wait_for(
        ResponseDone, lambda d: d.response_id == created.response_id, within=within
    )


def item_audio(events: Sequence[ServerEvent], item_id: str) -> bytes:
    return b"".join(e.audio for e in events if isinstance(e, AudioDelta) and e.item_id == item_id)


def no_server_errors(feed: Feed) -> None:
    errors = feed.of(ServerError)
    assert errors == [], errors


# ------------------------------------------------------------------ 1. handshake


@pytest.mark.parametrize(
    ("dialect", "updated_count", "forced_rate"),
    [
        (Dialect.GA, 0, None),
        (Dialect.GA, 1, 48000),
        (Dialect.GA, 2, 48000),
        (Dialect.YANDEX, 2, 44100),
    ],
    ids=["ga-never-updated", "ga-updated-once", "ga-updated-twice", "yandex-mixed-echo-twice"],
)
async def test_case_1_handshake_ready_exactly_once(
    rig: Rig, dialect: Dialect, updated_count: int, forced_rate: int | None
) -> None:
    backend = await rig.backend(
        dialect=str(dialect), session_updated_count=updated_count, output_rate=forced_rate
    )
    ready_timeout = 0.3 if updated_count == 0 else 3.0
    session = rig.session(backend, dialect=dialect, ready_timeout_s=ready_timeout)
    with structlog.testing.capture_logs() as logs:
        began = time.monotonic()
        async with asyncio.timeout(WAIT_S):
            await session.connect()
        elapsed = time.monotonic() - began
    feed = Feed(session)
    rig.feeds.append(feed)
    missing = [e for e in logs if e["event"] == "realtime_session_updated_missing"]
    if updated_count == 0:
        # Ready on the timeout, with the configuration we asked for.
        assert elapsed >= ready_timeout
        assert len(missing) == 1
        assert session.output_rate == 24000
    else:
        assert elapsed < 2.0
        assert missing == []
        # The effective rate is read back from session.updated, not assumed.
        assert session.output_rate == forced_rate
    assert session.state == "open"
    assert session.protocol.ready
    first = await feed.wait_for(SessionCreated)
    assert feed.seen[0] is first
    for _ in range(updated_count):
        updated = await feed.wait_for(SessionUpdated)
        assert updated.output_rate == forced_rate
        if dialect is Dialect.YANDEX:
            # The mixed echo: GA audio{} next to legacy top-level fields.
            assert "voice" in updated.raw
            assert "turn_detection" in updated.raw
            assert updated.raw["audio"]["output"]["format"]["rate"] == forced_rate
    # A short turn proves the session carries a call; every session.updated is in.
    done = await manual_turn(session, feed, speech(300, seed=1))
    assert done.status == "completed"
    assert len(feed.of(SessionUpdated)) == updated_count
    assert session.protocol.ready_transitions == 1
    deltas = feed.of(AudioDelta)
    item_id = deltas[0].item_id
    # Echo of 300 ms, measured at the rate the client read back.
    assert abs(session.protocol.received_ms(item_id) - 300) <= 1
    assert backend.stats.session_updates == 1
    assert backend.stats.connections == 1
    assert session.stats.get("reconnects", 0) == 0
    no_server_errors(feed)


# ------------------------------------------------------------------ 2. fragmentation


async def test_case_2_fragmented_audio_reassembles_byte_exactly(rig: Rig) -> None:
    backend = await rig.backend(fragment_edge_cases=True)
    session, feed = await rig.open(backend)
    # 1010 ms: not a whole number of 20 ms chunks, so commit() flushes a partial one.
    appended = speech(1010, seed=2)
    done = await manual_turn(session, feed, appended)
    assert done.status == "completed"
    deltas = [e for e in feed.seen if isinstance(e, AudioDelta)]
    item_id = deltas[0].item_id
    assert {d.item_id for d in deltas} == {item_id}
    sizes = [len(d.audio) for d in deltas]
    assert len(deltas) >= 200
    assert 0 in sizes
    assert 1 in sizes
    assert any(sum(sizes[: i + 1]) % 2 for i in range(len(sizes)))  # a sample split
    # Echo answers with the committed audio: same rate in and out, so byte-identical.
    received = item_audio(feed.seen, item_id)
    assert received == appended
    assert session.protocol.received_bytes(item_id) == len(appended)
    assert session.protocol.received_ms(item_id) == len(appended) * 1000 // (2 * RATE) == 1010
    # Whole samples per push for consumers that convert each delta to int16.
    aligner = SampleAligner()
    pushed = [aligner.push(d.item_id, d.audio) for d in deltas]
    assert all(len(p) % 2 == 0 for p in pushed)
    assert b"".join(pushed) == appended
    # The transcript arrived one character per delta and is reassembled.
    pieces = [e.delta for e in feed.seen if isinstance(e, AssistantTranscriptDelta)]
    (transcript,) = feed.of(AssistantTranscriptDone)
    assert all(len(p) == 1 for p in pieces)
    assert "".join(pieces) == transcript.text == "Echo of 1.01 s of caller speech."
    no_server_errors(feed)


# ------------------------------------------------------------------ 3. dialects

_TURN_KINDS = (
    InputCommitted,
    ItemAdded,
    InputTranscript,
    ResponseCreated,
    AudioDelta,
    AudioDone,
    AssistantTranscriptDelta,
    AssistantTranscriptDone,
    ResponseDone,
)


def _run_length(kinds: list[str]) -> list[str]:
    out: list[str] = []
    for kind in kinds:
        if not out or out[-1] != kind:
            out.append(kind)
    return out


async def test_case_3_same_script_same_events_in_every_dialect(rig: Rig) -> None:
    sequences: dict[Dialect, list[str]] = {}
    audio: dict[Dialect, bytes] = {}
    texts: dict[Dialect, str] = {}
    for dialect in (Dialect.GA, Dialect.BETA, Dialect.YANDEX):
        backend = await rig.backend(dialect=str(dialect))
        session, feed = await rig.open(backend, dialect=dialect)
        await feed.wait_for(SessionUpdated)
        mark = len(feed.seen)
        done = await manual_turn(session, feed, speech(400, seed=3))
        assert done.status == "completed", dialect
        turn = [e for e in feed.since(mark) if isinstance(e, _TURN_KINDS)]
        sequences[dialect] = [type(e).__name__ for e in turn]
        item_id = next(e.item_id for e in turn if isinstance(e, AudioDelta))
        audio[dialect] = item_audio(turn, item_id)
        pieces = "".join(e.delta for e in turn if isinstance(e, AssistantTranscriptDelta))
        final = next(e for e in turn if isinstance(e, AssistantTranscriptDone))
        assert pieces == final.text, dialect
        texts[dialect] = final.text
        added = [e for e in turn if isinstance(e, ItemAdded)]
        assert [a.role for a in added] == ["user", "assistant"], dialect
        # session.update was accepted in the dialect's own shape.
        no_server_errors(feed)
        assert backend.stats.session_updates == 1
        assert backend.stats.client_errors == 0
    ga = sequences[Dialect.GA]
    assert sequences[Dialect.BETA] == ga
    assert sequences[Dialect.YANDEX] == ga
    compact = _run_length(ga)
    assert compact[:4] == ["InputCommitted", "ItemAdded", "InputTranscript", "ResponseCreated"]
    assert compact[-3:] == ["AudioDone", "AssistantTranscriptDone", "ResponseDone"]
    assert "AudioDelta" in compact
    assert "AssistantTranscriptDelta" in compact
    assert audio[Dialect.BETA] == audio[Dialect.YANDEX] == audio[Dialect.GA] != b""
    assert texts[Dialect.BETA] == texts[Dialect.YANDEX] == texts[Dialect.GA] != ""


# ------------------------------------------------------------------ 4. barge-in


async def _first_vad_turn(
    session: RealtimeSession, feed: Feed, deltas: int
) -> tuple[str, str, int]:
    """Caller speaks; the server's VAD answers. Returns (response, item, received_ms)
    once `deltas` audio deltas of the answer have been consumed."""
    session.append_audio(speech(400, seed=4) + quiet(400))
    await feed.wait_for(SpeechStarted)
    await feed.wait_for(SpeechStopped)
    created = await feed.wait_for(ResponseCreated)
    seen = b""
    item_id = ""
    for _ in range(deltas):
        delta = await feed.wait_for(
            AudioDelta, lambda d: d.response_id == created.response_id and d.audio != b""
        )
        item_id = delta.item_id
        seen += delta.audio
    return created.response_id, item_id, len(seen) * 1000 // (2 * session.output_rate)


async def _next_turn_is_fresh(session: RealtimeSession, feed: Feed, stale: str) -> None:
    """The caller's barge-in speech is answered by a new, non-stale response."""
    created = await feed.wait_for(ResponseCreated, lambda c: c.response_id != stale)
    await feed.wait_for(AudioDelta, lambda d: d.response_id == created.response_id)
    assert not session.protocol.is_stale(created.response_id)
    assert session.protocol.is_stale(stale)


async def test_case_4a_barge_in_server_auto_cancels(rig: Rig) -> None:
    backend = await rig.backend(behaviour="tone", realtime_factor=2.0)
    session, feed = await rig.open(backend, vad=VAD)
    rid, item_id, consumed_ms = await _first_vad_turn(session, feed, deltas=3)
    barge = len(feed.seen)
    # Our own detector hears the caller first: cancel at once. The server's VAD also
    # cancels (turn_detected) before our cancel arrives, so it answers
    # response_cancel_not_active, which the client must swallow.
    session.append_audio(speech(300, seed=5))
    assert session.response_active
    session.cancel_response()
    assert session.protocol.is_stale(rid)
    started = await feed.wait_for(SpeechStarted)
    assert started.item_id is not None
    # Flush: what was played is at most what was consumed, itself at most received.
    played_ms = consumed_ms // 2
    assert 0 < played_ms <= session.protocol.received_ms(item_id)
    if session.response_active:
        session.cancel_response()  # a correct consumer may repeat it: sent only once
    session.truncate(item_id, played_ms)
    session.append_audio(quiet(400))  # the caller stops: the server answers the new turn
    done = await feed.find(ResponseDone, lambda d: d.response_id == rid, after=barge)
    assert (done.status, done.reason) == ("cancelled", "turn_detected")
    truncated = await feed.find(ItemTruncated, after=barge)
    assert (truncated.item_id, truncated.audio_end_ms) == (item_id, played_ms)
    await _next_turn_is_fresh(session, feed, rid)
    late = [e for e in feed.seen[barge:] if isinstance(e, AudioDelta) and e.response_id == rid]
    assert all(session.protocol.is_stale(e.response_id) for e in late)
    stats = backend.stats
    assert stats.barge_ins == 1
    assert stats.cancels_turn_detected == 1
    assert stats.cancels_client == 0
    assert stats.cancels_not_active == 1
    assert stats.errors_by_code["response_cancel_not_active"] == 1
    assert stats.rejected_truncates == 0
    assert stats.truncates_accepted == 1
    no_server_errors(feed)  # tolerated, not surfaced
    assert session.state == "open"


async def test_case_4b_barge_in_server_keeps_streaming(rig: Rig) -> None:
    backend = await rig.backend(behaviour="tone", realtime_factor=2.0, auto_cancel_on_speech=False)
    session, feed = await rig.open(backend, vad=VAD)
    rid, item_id, consumed_ms = await _first_vad_turn(session, feed, deltas=3)
    session.append_audio(speech(300, seed=5))
    await feed.wait_for(SpeechStarted)
    played_ms = consumed_ms // 2
    # The server did not cancel: deltas of the old response keep coming.
    late = await feed.wait_for(AudioDelta, lambda d: d.response_id == rid)
    assert late.item_id == item_id
    assert session.response_active
    assert not session.protocol.is_stale(rid)
    session.cancel_response()
    session.cancel_response()  # once only
    assert session.protocol.is_stale(rid)
    assert 0 < played_ms <= session.protocol.received_ms(item_id)
    mark = len(feed.seen)
    session.truncate(item_id, played_ms)
    session.append_audio(quiet(400))
    done = await feed.find(ResponseDone, lambda d: d.response_id == rid, after=mark)
    assert (done.status, done.reason) == ("cancelled", "client_cancelled")
    truncated = await feed.find(ItemTruncated, after=mark)
    assert (truncated.item_id, truncated.audio_end_ms) == (item_id, played_ms)
    await _next_turn_is_fresh(session, feed, rid)
    stats = backend.stats
    assert stats.barge_ins == 1
    assert stats.cancels_client == 1
    assert stats.cancels_turn_detected == 0
    assert stats.cancels_not_active == 0
    assert stats.rejected_truncates == 0
    assert stats.truncates_accepted == 1
    no_server_errors(feed)
    assert session.state == "open"


async def test_case_4c_barge_in_after_response_done_playback_unfinished(rig: Rig) -> None:
    backend = await rig.backend(behaviour="tone")
    session, feed = await rig.open(backend, vad=VAD)
    rid, item_id, _ = await _first_vad_turn(session, feed, deltas=1)
    done = await feed.wait_for(ResponseDone, lambda d: d.response_id == rid)
    assert done.status == "completed"
    received_ms = session.protocol.received_ms(item_id)
    assert received_ms == 1000
    # Generation finished, playback has not: the caller heard 400 ms when speaking.
    session.append_audio(speech(300, seed=6))
    await feed.wait_for(SpeechStarted)
    assert not session.response_active
    if session.response_active:
        session.cancel_response()
    session.truncate(item_id, 400)
    session.append_audio(quiet(400))
    truncated = await feed.wait_for(ItemTruncated)
    assert (truncated.item_id, truncated.audio_end_ms) == (item_id, 400)
    await _next_turn_is_fresh(session, feed, rid)
    stats = backend.stats
    assert stats.barge_ins == 0  # nothing was streaming any more
    assert stats.cancels == stats.cancels_not_active == 0
    assert stats.rejected_truncates == 0
    assert stats.truncates_accepted == 1
    assert stats.truncations[-1].sent_ms == 1000
    no_server_errors(feed)


# ------------------------------------------------------------------ 5. strict truncate


async def test_case_5_client_never_triggers_truncate_rejections(rig: Rig) -> None:
    backend = await rig.backend(behaviour="tone")
    session, feed = await rig.open(backend)
    done = await manual_turn(session, feed, speech(300, seed=7))
    assert done.status == "completed"
    user_item = feed.of(InputCommitted)[0].item_id
    assert user_item is not None
    item_id = feed.of(AudioDelta)[0].item_id
    assert session.protocol.received_ms(item_id) == 1000
    # Over-length is clamped to what was received (1000 ms) and accepted.
    session.truncate(item_id, 10**6)
    first = await feed.wait_for(ItemTruncated)
    assert (first.item_id, first.audio_end_ms) == (item_id, 1000)
    # Each of these would be an error on a real server: the client must not send them.
    session.truncate(item_id, 1000)  # already that short
    session.truncate(item_id, -5)
    session.truncate(item_id, 0)
    session.truncate("item_does_not_exist", 100)
    session.truncate(user_item, 100)
    session.truncate(item_id, 400)  # valid
    second = await feed.wait_for(ItemTruncated)
    assert (second.item_id, second.audio_end_ms) == (item_id, 400)
    session.truncate(item_id, 500)  # past the new end: clamped to 400, so skipped
    session.truncate(item_id, 400)
    # A later turn proves the connection is fine and every truncate has been answered.
    assert (await manual_turn(session, feed, speech(300, seed=8))).status == "completed"
    assert len(feed.of(ItemTruncated)) == 2
    assert backend.stats.rejected_truncates == 0
    assert backend.stats.truncates_accepted == 2
    assert [t.audio_end_ms for t in backend.stats.truncations] == [1000, 400]
    assert all(t.audio_end_ms <= t.sent_ms for t in backend.stats.truncations)
    no_server_errors(feed)


# ------------------------------------------------------------------ 6. function calls

TOOL_ARGS: dict[str, dict[str, Any]] = {
    "get_weather": {"city": "Paris", "unit": "celsius", "days": 3},
    "book_table": {"restaurant": "Chez Nous", "people": 4, "time": "19:30"},
}
FOLLOW_UP = "Done: the table is booked."


def _tool_script(tmp_path: Path) -> Path:
    path = tmp_path / "tools.json"
    turns = [
        {
            "say": "One moment.",
            "tone_ms": 200,
            "function_calls": [{"name": n, "arguments": a} for n, a in TOOL_ARGS.items()],
        },
        {"say": FOLLOW_UP, "tone_ms": 300},
    ]
    path.write_text(json.dumps({"turns": turns}), encoding="utf-8")
    return path


def _tools() -> list[ToolSpec]:
    return [ToolSpec(name, f"{name} tool") for name in TOOL_ARGS]


@dataclass
class ToolRound:
    backend: RunningBackend
    session: RealtimeSession
    feed: Feed
    calls: list[FunctionCall]
    response_id: str


async def _tool_round(rig: Rig, tmp_path: Path, fragment: bool) -> ToolRound:
    """The scripted first turn: one response carrying two function calls."""
    backend = await rig.backend(
        behaviour="script", script_path=_tool_script(tmp_path), fragment_edge_cases=fragment
    )
    session, feed = await rig.open(backend, tools=_tools())
    session.create_response()
    created = await feed.wait_for(ResponseCreated)
    done = await feed.wait_for(ResponseDone)
    assert (done.response_id, done.status) == (created.response_id, "completed")
    calls = feed.of(FunctionCall)
    assert len(calls) == 2
    assert len({c.call_id for c in calls}) == 2
    assert all(c.call_id and c.response_id == created.response_id for c in calls)
    assert [c.name for c in calls] == list(TOOL_ARGS)
    for call in calls:
        expected = TOOL_ARGS[call.name]
        assert call.arguments == json.dumps(expected, ensure_ascii=False)
        assert json.loads(call.arguments) == expected
        session.truncate(call.item_id, 100)  # not audio: skipped by the client
    return ToolRound(backend, session, feed, calls, created.response_id)


@pytest.mark.parametrize("fragment", [False, True], ids=["chunked-args", "one-char-args"])
async def test_case_6_function_round_trip(rig: Rig, tmp_path: Path, fragment: bool) -> None:
    tools = await _tool_round(rig, tmp_path, fragment)
    backend, session, feed, calls = tools.backend, tools.session, tools.feed, tools.calls
    first_rid = tools.response_id
    for call in calls:
        session.send_function_output(call.call_id, json.dumps({"ok": True, "tool": call.name}))
    session.create_response()
    session.create_response()  # while the first is in flight: must not go out early
    follow = await feed.wait_for(ResponseCreated, lambda c: c.response_id != first_rid)
    done = await feed.wait_for(ResponseDone, lambda d: d.response_id == follow.response_id)
    assert done.status == "completed"
    text = await feed.find(AssistantTranscriptDone, lambda t: t.response_id == done.response_id)
    assert text.text == FOLLOW_UP
    stats = backend.stats
    assert stats.function_calls == 2
    assert stats.function_outputs == 2  # both call_ids were the server's own
    assert stats.early_response_creates == 0
    assert stats.rejected_truncates == 0
    assert stats.client_errors == 0
    no_server_errors(feed)


async def test_case_6_two_quick_creates_make_exactly_one_follow_up(
    rig: Rig, tmp_path: Path
) -> None:
    tools = await _tool_round(rig, tmp_path, False)
    backend, session, feed, calls = tools.backend, tools.session, tools.feed, tools.calls
    first_rid = tools.response_id
    for call in calls:
        session.send_function_output(call.call_id, "{}")
    session.create_response()
    session.create_response()
    follow = await feed.wait_for(ResponseCreated, lambda c: c.response_id != first_rid)
    await feed.wait_for(ResponseDone, lambda d: d.response_id == follow.response_id)
    await feed.idle(0.5)  # room for a second follow-up to show up
    assert backend.stats.early_response_creates == 0
    assert backend.stats.response_creates == 2  # the first turn and one follow-up
    assert len(feed.of(ResponseCreated)) == 2
    assert backend.stats.function_calls == 2


# ------------------------------------------------------------------ 7. non-fatal errors


async def test_case_7_non_fatal_errors_keep_the_call_going(rig: Rig) -> None:
    backend = await rig.backend(inject_errors=True)
    session, feed = await rig.open(backend)
    assert (await manual_turn(session, feed, speech(300, seed=9))).status == "completed"
    # Unsolicited, mid-call: not caused by anything we sent.
    empty = await feed.wait_for(ServerError)
    assert empty.code == "input_audio_buffer_commit_empty"
    assert (empty.event_id, empty.sent_type) == (None, None)
    # The next append is rejected; the error names our event_id and we know its type.
    session.append_audio(speech(300, seed=10))
    bad = await feed.wait_for(ServerError)
    assert (bad.code, bad.param) == ("invalid_value", "audio")
    assert bad.event_id is not None
    assert bad.sent_type == "input_audio_buffer.append"
    assert session.protocol.sent_type(bad.event_id) == "input_audio_buffer.append"
    # The next response fails; the session stays up.
    session.commit()
    session.create_response()
    failed = await feed.wait_for(ResponseDone)
    assert failed.status == "failed"
    assert failed.error is not None and failed.error.get("type") == "server_error"
    assert not session.response_active
    # A commit the client made too short: non-fatal, matched to the commit.
    session.append_audio(speech(40, seed=11))
    session.commit()
    short = await feed.wait_for(ServerError)
    assert short.code == "input_audio_buffer_commit_empty"
    assert short.sent_type == "input_audio_buffer.commit"
    # A later turn completes on the same connection.
    later = await manual_turn(session, feed, speech(300, seed=12))
    assert later.status == "completed"
    assert session.state == "open"
    assert feed.of(SessionReconnected) == []
    assert feed.of(SessionClosed) == []
    assert backend.stats.connections == 1
    assert backend.stats.injected_errors == 2
    assert backend.stats.responses_failed == 1


# ------------------------------------------------------------------ 8. closes


async def test_case_8a_session_expiry_reconnects_with_config_and_recap(rig: Rig) -> None:
    backend = await rig.backend(session_expire_after_s=0.6)
    session, feed = await rig.open(backend)
    assert (await manual_turn(session, feed, speech(300, seed=13))).status == "completed"
    assert len(feed.of(AssistantTranscriptDone)) == 1
    expired = await feed.wait_for(ServerError, within=2.0)
    assert expired.code == "session_expired"
    await feed.wait_for(SessionReconnected, within=2.0)
    recap = await feed.wait_for(ItemAdded)
    assert recap.role == "system"
    stats = backend.stats.snapshot()
    assert stats["connections"] == 2
    assert stats["session_updates"] == 2
    assert stats["items_created"] == 1
    assert session.stats["reconnects"] == 1
    text = session.protocol.recap_text()
    assert text is not None
    assert "Caller: [caller speech 0.30 s]" in text
    assert "Agent: Echo of 0.30 s of caller speech." in text
    assert (await manual_turn(session, feed, speech(300, seed=14))).status == "completed"
    assert session.state == "open"


async def test_case_8b_close_1011_mid_response_reconnects(rig: Rig) -> None:
    backend = await rig.backend(behaviour="tone", close_mid_response_code=1011)
    session, feed = await rig.open(backend)
    session.append_audio(speech(300, seed=15))
    session.commit()
    session.create_response()
    created = await feed.wait_for(ResponseCreated)
    done = await feed.wait_for(ResponseDone)
    assert done.response_id == created.response_id
    assert (done.status, done.reason) == ("cancelled", "session_reconnected")
    assert session.protocol.is_stale(created.response_id)
    await feed.wait_for(SessionReconnected)
    recap = await feed.wait_for(ItemAdded)
    assert recap.role == "system"
    assert backend.stats.connections == 2
    assert backend.stats.session_updates == 2
    assert backend.stats.items_created == 1
    later = await manual_turn(session, feed, speech(300, seed=16))
    assert later.status == "completed"
    assert feed.of(ServerError) == []
    assert session.state == "open"


async def test_case_8c_close_1008_on_connect_is_auth_error_without_retry(rig: Rig) -> None:
    backend = await rig.backend(close_on_connect=(1008, "Invalid model URI"))
    session = rig.session(backend, connect_attempts=4)
    began = time.monotonic()
    with pytest.raises(RealtimeAuthError, match="Invalid model URI"):
        async with asyncio.timeout(WAIT_S):
            await session.connect()
    assert time.monotonic() - began < 1.0  # no backoff: it was never going to work
    assert backend.stats.connections == 1
    assert session.state == "closed"


async def test_case_8d_wrong_api_key_is_auth_error_and_never_leaks(
    rig: Rig, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    backend = await rig.backend(require_api_key="the-right-key-0000")
    headers = {"Authorization": f"Bearer {FAKE_KEY}"}
    session = rig.session(backend, headers=headers, connect_attempts=4)
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(RealtimeAuthError) as info:
            async with asyncio.timeout(WAIT_S):
                await session.connect()
        closed = [e async for e in session.events()]
    assert backend.stats.rejected_handshakes == 1  # exactly one attempt: no retry storm
    assert backend.stats.connections == 0
    assert "401" in str(info.value)
    assert isinstance(closed[-1], SessionClosed)
    # The same plumbing with the right key works, so the key really was sent.
    good, _ = await rig.open(backend, headers={"Authorization": "Bearer the-right-key-0000"})
    assert good.state == "open"
    captured = capsys.readouterr()
    exc = info.value
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and len(chain) < 10:
        chain.append(link)
        link = link.__cause__ or link.__context__
    # Neither side's websockets logger may print the headers: every record is checked.
    client_records = "\n".join(record.getMessage() for record in caplog.records)
    assert logs  # the capture was live
    texts = [
        repr(logs),
        client_records,
        captured.out,
        captured.err,
        repr(closed),
        "".join(traceback.format_exception(exc)),
        *(str(e) for e in chain),
        *(repr(e) for e in chain),
        repr(session.endpoint),
    ]
    for text in texts:
        assert FAKE_KEY not in text
        assert "CONFORMANCE-FAKE-KEY" not in text


@pytest.mark.parametrize(
    "fault",
    [
        {"close_on_connect": (4000, "beta_api_shape_disabled")},
        {"reject_beta_shape": True},
    ],
    ids=["close-4000-on-connect", "beta-session-update-rejected"],
)
async def test_case_8e_beta_shape_disabled_is_protocol_error(
    rig: Rig, fault: dict[str, Any]
) -> None:
    backend = await rig.backend(**fault)
    session = rig.session(backend, dialect=Dialect.BETA, connect_attempts=4)
    with pytest.raises(RealtimeProtocolError, match="beta_api_shape_disabled"):
        async with asyncio.timeout(WAIT_S):
            await session.connect()
    assert backend.stats.connections == 1
    assert session.state == "closed"


async def test_case_8f_junk_frames_are_skipped_and_counted(rig: Rig) -> None:
    backend = await rig.backend(junk_frames=True)
    session, feed = await rig.open(backend)
    assert (await manual_turn(session, feed, speech(300, seed=17))).status == "completed"
    assert session.stats["unreadable_frames"] == 1
    assert session.stats["binary_frames"] == 1
    assert session.stats.get("frames_failed", 0) == 0
    assert session.state == "open"
    assert backend.stats.connections == 1
    no_server_errors(feed)


# ------------------------------------------------------------------ 9. unknown events


@pytest.mark.parametrize("timing", ["after", "never"])
async def test_case_9_unknown_events_are_ignored(rig: Rig, timing: str) -> None:
    backend = await rig.backend(unknown_events=True, transcript_timing=timing)
    session, feed = await rig.open(backend)
    done = await manual_turn(session, feed, speech(300, seed=18))
    assert done.status == "completed"
    if timing == "after":
        transcript = await feed.find(InputTranscript)
        assert feed.seen.index(transcript) > feed.seen.index(done)
        assert transcript.final
        assert transcript.transcript == "[caller speech 0.30 s]"
    else:
        await feed.idle(0.2)
        assert feed.of(InputTranscript) == []
    unknown = {e.type for e in feed.of(Unknown)}
    assert {"foo.bar", "response.mcp_call.in_progress", "output_audio_buffer.started"} <= unknown
    assert "conversation.item.done" in unknown
    assert (await manual_turn(session, feed, speech(300, seed=19))).status == "completed"
    assert session.stats.get("malformed_events", 0) == 0
    assert session.stats.get("frames_failed", 0) == 0
    assert session.state == "open"
    no_server_errors(feed)


# ------------------------------------------------------------------ 10. timing


async def test_case_10a_unanswered_pings_never_end_the_session(rig: Rig) -> None:
    backend = await rig.backend(ignore_pings=True)
    session, feed = await rig.open(backend, ping_interval_s=0.1)
    await feed.idle(0.75)  # more than five unanswered ping intervals
    assert backend.stats.pings_ignored >= 5
    assert (await manual_turn(session, feed, speech(300, seed=20))).status == "completed"
    assert session.state == "open"
    assert feed.of(SessionReconnected) == []
    assert backend.stats.connections == 1


async def test_case_10b_uplink_keeps_flowing_while_the_first_delta_is_late(rig: Rig) -> None:
    backend = await rig.backend(first_delta_delay_s=1.0)
    session, feed = await rig.open(backend)
    session.append_audio(speech(300, seed=21))
    session.commit()
    asked = time.monotonic()
    session.create_response()
    await feed.wait_for(ResponseCreated)
    before_ms = backend.stats.audio_ms_received
    first_delta: asyncio.Task[AudioDelta] = asyncio.create_task(feed.wait_for(AudioDelta))
    frame = quiet(20)
    slowest = 0.0
    sent = 0
    async with asyncio.timeout(WAIT_S):
        while not first_delta.done():
            began = time.monotonic()
            session.append_audio(frame)
            slowest = max(slowest, time.monotonic() - began)
            sent += 1
            await asyncio.sleep(0.02)
    await first_delta
    waited = time.monotonic() - asked
    assert waited >= 1.0
    assert slowest < 0.05  # append_audio returns at once: it never waits on the socket
    await asyncio.sleep(0.05)  # the last frames are on the wire
    assert sent >= 30
    # The backend received the uplink during the delay (allowing for frames in flight).
    assert backend.stats.audio_ms_received - before_ms >= (sent - 5) * 20
    assert session.stats.get("audio_bytes_dropped", 0) == 0
    done = await feed.wait_for(ResponseDone)
    assert done.status == "completed"
