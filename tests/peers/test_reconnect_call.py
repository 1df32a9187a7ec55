"""A real SIP call through a lost connection and a planned rollover: the caller hears
one greeting and two whole answers, with no gap in either.

baresip (a real softphone) calls a deployed `serve`, whose provider is a local backend
run by this test with its fault knobs on: the connection dies right after the caller's
first question is committed (before any answer), and each session expires after a
fixed lifetime, which `[provider] max_session_s` must beat by rolling over at a pause.
What baresip decoded from the agent's RTP is then checked against the questions.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from telephony_agent.audio.analysis import best_lag_correlation
from telephony_agent.audio.wav import WavWriter, read_wav
from telephony_agent.media.audiofile import decode_audio_file
from telephony_agent.realtime.backend import BackendOptions, RunningBackend, start_backend
from telephony_agent.realtime.recap import HEADER

from .agent_process import AgentServer, start_agent
from .conftest import SAMPLE
from .test_baresip import baresip_config, dial_with_baresip

pytestmark = pytest.mark.skipif(
    shutil.which("baresip") is None,
    reason="baresip is not installed (Debian/Ubuntu package baresip-core; .ci/run installs it)",
)

RATE = 8000
GREETING = "Thank you for calling the booking line."
#: Where each question starts in the caller's audio, and how long the call lasts.
Q1_S, Q2_S, END_S = 1.0, 12.5, 18.5
QUESTION_S = 2.0
#: Each backend session expires after this long; the agent must roll over before.
LIFETIME_S = 12.0
MAX_SESSION_S = 10.0


class BackendThread:
    """The local backend on its own event loop, so a subprocess can reach it."""

    def __init__(self, options: BackendOptions) -> None:
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self.backend: RunningBackend | None = None
        self._thread = threading.Thread(target=self._run, args=(options,), daemon=True)
        self._thread.start()
        if not self._started.wait(10) or self.backend is None:
            raise RuntimeError("the local backend did not start")

    def _run(self, options: BackendOptions) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            self.backend = await start_backend(options)
            self._started.set()
            await self._stop.wait()
            await self.backend.close()

        self._loop.run_until_complete(main())

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def caller_audio(question: NDArray[np.int16]) -> NDArray[np.int16]:
    audio = np.zeros(int(END_S * RATE), dtype=np.int16)
    for start_s in (Q1_S, Q2_S):
        start = int(start_s * RATE)
        audio[start : start + question.size] = question
    return audio


def dropouts(heard: NDArray[np.int16], question: NDArray[np.int16]) -> int:
    """The longest run of 20 ms frames, in ms, where the question is loud and the answer
    heard in its place is silent (a gap inside the agent's speech)."""
    frame = RATE // 50
    n = min(heard.size, question.size) // frame
    said = question[: n * frame].reshape(n, frame).astype(np.float64)
    got = heard[: n * frame].reshape(n, frame).astype(np.float64)
    loud = np.sqrt((said**2).mean(axis=1)) > 1000
    silent = np.sqrt((got**2).mean(axis=1)) < 30
    longest = run = 0
    for gap in loud & silent:
        run = run + 1 if gap else 0
        longest = max(longest, run)
    return longest * 20


def answer_in(
    heard: NDArray[np.int16], question: NDArray[np.int16], start_s: float, end_s: float
) -> tuple[float, int]:
    """Correlation of the echo heard between two times with the question, and its gap."""
    window = heard[int(start_s * RATE) : int(end_s * RATE)]
    correlation, lag = best_lag_correlation(question, window, max_lag=window.size)
    return correlation, dropouts(window[max(0, lag) :], question)


def test_baresip_hears_one_greeting_and_whole_answers_through_a_reconnect_and_a_rollover(
    tmp_path: Path,
) -> None:
    question = decode_audio_file(SAMPLE, RATE)[: int(QUESTION_S * RATE)]
    backend_thread = BackendThread(
        BackendOptions(
            behaviour="echo",
            realtime_factor=4.0,
            close_mid_question_code=1011,
            session_expire_after_s=LIFETIME_S,
        )
    )
    agent: AgentServer | None = None
    try:
        backend = backend_thread.backend
        assert backend is not None
        agent = start_agent(
            tmp_path / "agent",
            {
                "provider": {"name": "custom", "url": backend.url, "max_session_s": MAX_SESSION_S},
                "agent": {"greeting": GREETING, "idle_reprompt_s": 0},
                "sip": {"codecs": "PCMU"},
            },
            provider="custom",
        )
        source = tmp_path / "caller.wav"
        with WavWriter(source, RATE) as wav:
            wav.write(caller_audio(question))
        phone = tmp_path / "baresip"
        baresip_config(phone, source, "PCMU")
        run_s = int(END_S) + 4  # baresip hangs up when its file ends; then it quits
        output = dial_with_baresip(phone, f"sip:agent@127.0.0.1:{agent.sip_port}", run_s)
        health = agent.wait_health(lambda h: h["active_calls"] == 0 and h["completed"] >= 1)
        assert health["completed"] == 1, health
        events = agent.log_events()
    finally:
        if agent is not None:
            assert agent.stop() == 0, agent.log_tail()
        backend_thread.stop()

    names = [str(e.get("event")) for e in events]
    stats = backend.stats
    # The lost connection was replaced once; the lifetime was beaten at a pause.
    assert names.count("realtime_session_reconnected") == 1, names
    rolled = [e for e in events if e.get("event") == "realtime_session_rolled_over"]
    assert rolled and all(e["at_pause"] is True for e in rolled), rolled
    assert "realtime_rollover_forced" not in names
    assert stats.errors_by_code.get("session_expired", 0) == 0
    # One greeting; one answer per question; the replacement sessions were briefed.
    # One greeting in all; the other creates are the Call's answers to the caller's turns.
    greetings = [i for i in stats.response_instructions if i and i.startswith("Greet")]
    assert greetings == [f"Greet the caller, saying: {GREETING}"], stats.response_instructions
    assert stats.responses_completed == 3, stats.snapshot()
    recaps = [m for m in stats.messages if HEADER in m]
    assert len(recaps) == 1 + len(rolled)
    assert "Agent: Nothing to echo yet." in recaps[-1]
    assert "Caller: [caller speech" in recaps[-1]

    dumps = sorted((phone / "dump").glob("dump-*-dec.wav"))
    assert len(dumps) == 1, output[-3000:]
    heard, heard_rate = read_wav(dumps[0])
    assert heard_rate == RATE
    first = answer_in(heard, question, Q1_S + QUESTION_S, Q2_S)
    second = answer_in(heard, question, Q2_S + QUESTION_S, END_S)
    print(f"\nanswers heard: correlation/longest gap {first}, {second}")
    for correlation, gap_ms in (first, second):
        assert correlation >= 0.9, (first, second)
        assert gap_ms <= 40, (first, second)
