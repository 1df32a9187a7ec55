"""The continuous-talk behaviour that `telephony-agent bench` loads the agent with.

What must hold: it talks without being asked (from the first `session.update`), keeps
talking response after response at the pace it was given while the caller streams, never
sends VAD events, and logs each append's arrival and length under the session's tag.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

from telephony_agent.commands.local_backend import write_stats
from telephony_agent.realtime.backend.sample_speech import sample_speech

from .backend_wire import RATE, WireClient, b64, speech_like
from .conftest import Start

DELTA_MS = 100
FACTOR = 5.0


async def _talk(client: WireClient, seconds: float) -> list[tuple[float, dict[str, Any]]]:
    """Append 20 ms of speech every 20 ms for `seconds`, collecting what comes back."""
    received: list[tuple[float, dict[str, Any]]] = []

    async def reader() -> None:
        async for frame in client.ws:
            received.append((time.monotonic(), json.loads(frame)))

    task = asyncio.create_task(reader())
    chunk = b64(speech_like(20, rate=RATE))
    deadline = time.monotonic()
    end = deadline + seconds
    while deadline < end:
        await client.send("input_audio_buffer.append", audio=chunk)
        deadline += 0.02
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    task.cancel()
    return received


async def test_talks_on_and_on_from_session_update_and_logs_every_append(
    start: Start, tmp_path: Path
) -> None:
    backend = await start(behaviour="continuous", realtime_factor=FACTOR, delta_ms=DELTA_MS)
    async with WireClient.open(backend.url) as client:
        await client.send(
            "session.update", session={"type": "realtime", "instructions": "bench caller-7"}
        )
        received = await _talk(client, 1.0)
    kinds = [event["type"] for _, event in received]
    assert not any(kind.startswith("input_audio_buffer.speech") for kind in kinds)
    deltas = [event for _, event in received if event["type"] == "response.output_audio.delta"]
    # 1 s at 5x real time in 100 ms deltas is about 50; the 3.35 s sample is 34 deltas,
    # so a second response must have started without anyone asking for it.
    assert len(deltas) >= 40
    assert kinds.count("response.done") >= 1
    assert len({event["response_id"] for event in deltas}) >= 2
    sizes = {len(base64.b64decode(event["delta"])) for event in deltas[:-1]}
    assert max(sizes) == RATE * 2 * DELTA_MS // 1000
    first = b"".join(
        base64.b64decode(e["delta"]) for e in deltas if e["response_id"] == deltas[0]["response_id"]
    )
    assert first == sample_speech(RATE).tobytes()
    await asyncio.sleep(0.05)
    [talk] = backend.stats.talks
    assert talk.tag == "bench caller-7"
    assert 45 <= len(talk.arrivals) <= 51
    assert all(abs(s - 0.02) < 1e-9 for s in talk.seconds)
    gaps = [b - a for a, b in zip(talk.arrivals, talk.arrivals[1:], strict=False)]
    assert min(gaps) >= 0 and 0.015 < sum(gaps) / len(gaps) < 0.03
    out = tmp_path / "stats.json"
    write_stats(backend.stats, out)
    written = json.loads(out.read_text())
    assert written["talks"][0]["tag"] == "bench caller-7"
    assert len(written["talks"][0]["arrivals"]) == len(talk.arrivals)
    assert written["counters"]["audio_appends"] == len(talk.arrivals)


async def test_streams_at_its_pace_not_faster(start: Start) -> None:
    backend = await start(behaviour="continuous", realtime_factor=FACTOR, delta_ms=DELTA_MS)
    async with WireClient.open(backend.url) as client:
        await client.send("session.update", session={"type": "realtime", "instructions": "x"})
        received = await _talk(client, 0.6)
    times = [t for t, event in received if event["type"] == "response.output_audio.delta"]
    span = times[-1] - times[0]
    audio_s = (len(times) - 1) * DELTA_MS / 1000
    assert 0.8 < audio_s / FACTOR / span < 1.25


async def test_says_nothing_before_the_session_is_configured(start: Start) -> None:
    backend = await start(behaviour="continuous", realtime_factor=FACTOR, delta_ms=DELTA_MS)
    async with WireClient.open(backend.url) as client:
        received = await _talk(client, 0.3)
    assert [event["type"] for _, event in received] == ["session.created"]
    assert backend.stats.responses == 0
