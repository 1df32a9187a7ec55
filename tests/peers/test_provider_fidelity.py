"""Provider fidelity through real SIP calls: SIPp signals a PCMU call, `telephony-agent
serve` answers it, and the Realtime backend runs in the test. In the passthrough calls
the SDP names the test's own RTP socket, so both ends of the audio are seen byte for byte.

* The caller's μ-law bytes are exactly the bytes the backend receives.
* The backend's μ-law reaches the caller untouched.
* A barge-in truncates at exactly the bytes the caller heard (8 bytes per ms).
* A provider that refuses G.711 gets PCM for that call, with one log line.
* `[provider] model` is tried in order; a model that does not exist refuses the call at
  once (503), with no retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from aiortc.rtp import RtpPacket
from numpy.typing import NDArray

from telephony_agent.audio.g711 import ulaw_encode
from telephony_agent.realtime.backend import BackendOptions, RunningBackend, start_backend

from .agent_process import AgentServer, free_port
from .conftest import StartAgent

pytestmark = pytest.mark.skipif(
    shutil.which("sipp") is None,
    reason="sipp is not installed (Debian/Ubuntu package sip-tester; .ci/run installs it)",
)

SCENARIO = Path(__file__).resolve().parent / "sipp" / "media_elsewhere.xml"
UNAVAILABLE = Path(__file__).resolve().parent / "sipp" / "unavailable.xml"
FRAME = 160
SILENT = 0xFF


@dataclass
class Caller(asyncio.DatagramProtocol):
    """The caller's RTP: speaks μ-law frames in real time, records every payload heard."""

    heard: dict[int, bytes] = field(default_factory=dict)
    agent: tuple[str, int] | None = None
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    transport: asyncio.DatagramTransport | None = None
    _seq: int = 7000
    _ts: int = 90_000

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) < 12 or 192 <= data[1] <= 223:
            return  # RTCP
        packet = RtpPacket.parse(data)
        if packet.payload_type != 0:
            return
        self.heard[packet.sequence_number] = packet.payload
        if self.agent is None:
            self.agent = (addr[0], addr[1])
            self.answered.set()

    async def speak(self, codes: bytes) -> None:
        """Send `codes` as 20 ms packets on a 20 ms schedule (absolute deadlines)."""
        assert self.transport is not None and self.agent is not None
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index in range(0, len(codes) - len(codes) % FRAME, FRAME):
            packet = RtpPacket(
                payload_type=0,
                sequence_number=self._seq & 0xFFFF,
                timestamp=self._ts & 0xFFFFFFFF,
                ssrc=0x0BADCAFE,
                payload=codes[index : index + FRAME],
            )
            self._seq += 1
            self._ts += FRAME
            self.transport.sendto(packet.serialize(), self.agent)
            await asyncio.sleep(max(0.0, start + (index // FRAME + 1) * 0.02 - loop.time()))

    def stream(self) -> bytes:
        """Everything heard, in sequence order (the agent sends one packet per tick)."""
        first = min(self.heard)
        return b"".join(self.heard[seq] for seq in sorted(self.heard, key=lambda s: s - first))


@contextlib.asynccontextmanager
async def caller_socket() -> AsyncIterator[tuple[Caller, int]]:
    loop = asyncio.get_running_loop()
    transport, caller = await loop.create_datagram_endpoint(Caller, local_addr=("127.0.0.1", 0))
    try:
        yield caller, transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


@contextlib.asynccontextmanager
async def backend(**options: Any) -> AsyncIterator[RunningBackend]:
    running = await start_backend(BackendOptions(capture=True, **options))
    try:
        yield running
    finally:
        await running.close()


def agent_for(start: StartAgent, running: RunningBackend, dialect: str, mode: str) -> AgentServer:
    return start(
        cli_provider="custom",
        provider={"url": running.url, "dialect": dialect, "g711_passthrough": mode},
        realtime={"playout_preroll_ms": 80},
    )


def sipp_command(server: AgentServer, rtp_port: int, hold_ms: int, workdir: Path) -> list[str]:
    """SIPp placing one call (signalling only) from `workdir`, which gets the scenario."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(SCENARIO, workdir / SCENARIO.name)
    return [
        "sipp",
        f"127.0.0.1:{server.sip_port}",
        "-sf",
        SCENARIO.name,
        "-m",
        "1",
        "-i",
        "127.0.0.1",
        "-p",
        str(free_port()),
        "-key",
        "rtp_port",
        str(rtp_port),
        "-d",
        str(hold_ms),
        "-timeout",
        "60s",
        "-timeout_error",
        "-trace_err",
        "-nostdin",
    ]


def error_logs(workdir: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in workdir.glob("*_errors.log"))


async def sipp(server: AgentServer, rtp_port: int, hold_ms: int, workdir: Path) -> None:
    """One call from SIPp; raises with SIPp's own words if it fails."""
    command = sipp_command(server, rtp_port, hold_ms, workdir)
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=workdir,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    if process.returncode != 0:
        errors = await asyncio.to_thread(error_logs, workdir)
        raise AssertionError(f"sipp exited {process.returncode}: {stderr[-2000:]!r} {errors}")


def finished(server: AgentServer) -> list[dict[str, Any]]:
    """The `call_ended` records, once the server says its call has completed."""
    server.wait_health(lambda h: h["completed"] >= 1 and h["active_calls"] == 0)
    return server.log_events("call_ended")


async def answered(caller: Caller, call: asyncio.Task[None]) -> None:
    """Wait for the agent's first RTP (it answered); a SIPp failure surfaces at once."""
    waiter = asyncio.ensure_future(caller.answered.wait())
    done, _ = await asyncio.wait({waiter, call}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if call in done:
        await call
    assert caller.answered.is_set(), "no RTP from the agent within 10 s"


def speech(ms: int, seed: int) -> NDArray[np.int16]:
    """Loud, syllable-like telephone-band noise with no silent stretch (an energy VAD
    hears it as one turn)."""
    rng = np.random.default_rng(seed)
    n = 8 * ms
    smooth = np.convolve(rng.standard_normal(n + 8), np.ones(4) / 4, mode="same")[:n]
    envelope = 0.6 + 0.4 * np.sin(np.linspace(0, 8 * np.pi, n)) ** 2
    return np.clip(smooth * envelope * 9000, -30000, 30000).astype(np.int16)


def quiet(ms: int) -> bytes:
    return bytes([SILENT]) * (8 * ms)


async def test_pcmu_bytes_reach_the_model_and_come_back_untouched(
    start_agent_server: StartAgent, tmp_path: Path
) -> None:
    async with backend(realtime_factor=4.0) as running, caller_socket() as (caller, port):
        server = agent_for(start_agent_server, running, "ga", "on")
        call = asyncio.create_task(sipp(server, port, 7000, tmp_path / "sipp"))
        await answered(caller, call)
        said = ulaw_encode(speech(1500, seed=1)).tobytes() + quiet(1200)
        await caller.speak(said)
        await call
        heard = caller.stream()
    received = bytes(running.stats.audio_in)
    # Nothing was appended before the caller spoke, and then every byte as it was sent.
    assert received[: len(said)] == said
    assert set(received[len(said) :]) <= {SILENT}  # idle fill after the caller stopped
    model = bytes(running.stats.audio_out)
    assert len(model) > 8 * 1000
    start = heard.find(model)
    assert start > 0, "the model's bytes must reach the caller unchanged and in one piece"
    assert set(heard[:start]) == {SILENT}
    [session] = running.stats.session_objects
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    [ended] = finished(server)
    assert ended["underruns"] == 0
    [started] = server.log_events("call_started")
    assert started["audio_path"] == "g711_passthrough"


async def test_barge_in_in_passthrough_truncates_at_the_bytes_heard(
    start_agent_server: StartAgent, tmp_path: Path
) -> None:
    async with backend(realtime_factor=4.0) as running, caller_socket() as (caller, port):
        server = agent_for(start_agent_server, running, "ga", "on")
        call = asyncio.create_task(sipp(server, port, 8000, tmp_path / "sipp"))
        await answered(caller, call)
        first = ulaw_encode(speech(2000, seed=2)).tobytes()
        # The echo starts about 0.6 s after the caller stops; talk over it after ~1.3 s.
        await caller.speak(first + quiet(1900))
        await caller.speak(ulaw_encode(speech(900, seed=3)).tobytes() + quiet(1500))
        await call
        heard = caller.stream()
    [ended] = finished(server)
    assert ended["barge_ins"] >= 1 and ended["truncates"] == 1
    [truncate] = running.stats.truncations
    assert running.stats.rejected_truncates == 0
    model = bytes(running.stats.audio_out)
    start = heard.find(model[:FRAME])
    assert start > 0
    played = truncate.audio_end_ms * 8  # G.711: 8 bytes are one millisecond
    assert 0 < played < len(model)
    # The caller heard exactly the truncated part of the item, and not the next frame.
    assert heard[start : start + played] == model[:played]
    assert heard[start + played : start + played + FRAME] != model[played : played + FRAME]
    assert truncate.audio_end_ms <= truncate.sent_ms


async def test_a_provider_that_refuses_g711_gets_pcm_for_the_call(
    start_agent_server: StartAgent, tmp_path: Path
) -> None:
    async with (
        backend(realtime_factor=4.0, dialect="yandex") as running,
        caller_socket() as (caller, port),
    ):
        server = agent_for(start_agent_server, running, "yandex", "on")
        call = asyncio.create_task(sipp(server, port, 6000, tmp_path / "sipp"))
        await answered(caller, call)
        await caller.speak(ulaw_encode(speech(1500, seed=4)).tobytes() + quiet(1200))
        await call
        heard = caller.stream()
    first, second = running.stats.session_objects
    assert first["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert second["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    finished(server)
    refused = server.log_events("realtime_g711_refused")
    assert len(refused) == 1 and refused[0]["fallback"] == "pcm"
    [started] = server.log_events("call_started")
    assert started["audio_path"] == "pcm"
    # PCM16 at 24 kHz went to the model (three times the samples, two bytes each) ...
    assert len(running.stats.audio_in) > 2 * 24000 * 2
    # ... and the echo came back to the caller as speech.
    assert sum(1 for i in range(0, len(heard), FRAME) if set(heard[i : i + FRAME]) != {SILENT}) > 40


# ---------------------------------------------------------------- the model list

MODEL_URL = "ws://127.0.0.1:{port}/v1/realtime?model=gpt://b1gfolder/{{model}}"


def yandex_agent(start: StartAgent, running: RunningBackend, models: list[str]) -> AgentServer:
    return start(
        cli_provider="custom",
        provider={
            "url": MODEL_URL.format(port=running.port),
            "dialect": "yandex",
            "model": models,
        },
    )


async def test_a_call_tries_the_model_list_in_order(
    start_agent_server: StartAgent, tmp_path: Path
) -> None:
    async with (
        backend(
            realtime_factor=4.0, dialect="yandex", models=("speech-realtime-260528",)
        ) as running,
        caller_socket() as (caller, port),
    ):
        server = yandex_agent(
            start_agent_server, running, ["speech-realtime-250923", "speech-realtime-260528"]
        )
        call = asyncio.create_task(sipp(server, port, 5000, tmp_path / "sipp"))
        await answered(caller, call)
        await caller.speak(ulaw_encode(speech(1200, seed=5)).tobytes() + quiet(1000))
        await call
    [ended] = finished(server)
    assert ended["reason"] == "caller_hangup"
    assert (running.stats.connections, running.stats.unknown_models) == (2, 1)
    [moved_on] = server.log_events("realtime_model_missing_trying_next")
    assert moved_on["next_model"] == "speech-realtime-260528"
    assert running.stats.responses_completed == 1


async def test_a_missing_model_refuses_the_call_at_once_without_retries(
    start_agent_server: StartAgent, tmp_path: Path
) -> None:
    async with backend(dialect="yandex", models=("speech-realtime-260528",)) as running:
        server = yandex_agent(start_agent_server, running, ["speech-realtime-250923"])
        workdir = tmp_path / "sipp"
        command = sipp_command(server, free_port(), 0, workdir)
        command[command.index(SCENARIO.name)] = UNAVAILABLE.name
        shutil.copy(UNAVAILABLE, workdir / UNAVAILABLE.name)
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=workdir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await process.communicate()
        assert process.returncode == 0, (
            stderr[-2000:],
            await asyncio.to_thread(error_logs, workdir),
        )
    # One connection: the not-found error is final, never retried.
    assert (running.stats.connections, running.stats.unknown_models) == (1, 1)
    server.wait_health(lambda h: h["active_calls"] == 0)
    [missing] = server.log_events("realtime_model_missing")
    assert "NOT_FOUND: Instance with model" in missing["message"]
    [unavailable] = server.log_events("realtime_unavailable")
    assert unavailable["why"] == "RealtimeModelError"
