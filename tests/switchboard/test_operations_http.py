"""`/metrics`, `/healthz`, `/readyz` and the live calls feed around real calls.

The switchboard and its SIP front door run in-process with the echo backend; the
softphone places real SIP calls over loopback, and browser calls use the fake WebRTC
leg of the HTTP tests. What is checked is what an operator reads over HTTP.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from numpy.typing import NDArray

from telephony_agent.server.http_app import HttpServer
from telephony_agent.server.operations import Operations
from tests.call.helpers import sample_speech
from tests.http.support import OFFER, FakeLegFactory, spoken_turn, wait_until
from tests.observability.support import metric
from tests.switchboard.support import Rig, running_rig

TOKEN = "live-page-token-0123456789"


def _speech(seconds: float = 2.0) -> NDArray[np.int16]:
    speech = sample_speech(16000)[: int(seconds * 16000)]
    return np.concatenate([speech, np.zeros(16000, np.int16)])


@asynccontextmanager
async def http_for(
    rig: Rig, token: str | None = None, operations: Operations | None = None
) -> AsyncIterator[aiohttp.ClientSession]:
    http = HttpServer(
        rig.board,
        sip=rig.sip,
        leg_factory=FakeLegFactory(caller=spoken_turn()),
        environ={},
        token=token,
        operations=operations,
    )
    await http.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{http.port}") as client:
            yield client
    finally:
        await http.close()


async def _text(client: aiohttp.ClientSession, path: str) -> str:
    async with client.get(path) as response:
        assert response.status == 200, response.status
        return await response.text()


async def test_metrics_show_a_live_sip_call_then_its_end_and_turn_latency(tmp_path: Path) -> None:
    async with (
        running_rig(tmp_path, "", local={"behaviour": "echo"}) as rig,
        http_for(rig) as client,
    ):
        call = asyncio.ensure_future(rig.call("agent", _speech(), tail_s=3.0))
        await wait_until(lambda: len(rig.heard.started) == 1, timeout_s=10)
        during = await _text(client, "/metrics")
        live = {"direction": "inbound", "kind": "sip", "profile": "default"}
        assert metric(during, "telephony_agent_calls_active", **live) == 1
        assert metric(during, "telephony_agent_call_slots_used") == 1
        assert metric(during, "telephony_agent_realtime_sessions", state="open") == 1
        assert metric(during, "telephony_agent_sip_requests_total", method="INVITE") == 1
        for status in ("100", "180", "200"):
            assert (
                metric(during, "telephony_agent_sip_responses_total", method="INVITE", code=status)
                == 1
            ), status
        result = await call
        assert result.answered
        await wait_until(lambda: len(rig.heard.ended) == 1)
        after = await _text(client, "/metrics")
    ended = {**live, "end_reason": "caller_hangup"}
    assert metric(after, "telephony_agent_calls_active", **live) == 0
    assert metric(after, "telephony_agent_calls_total", **ended) == 1
    assert metric(after, "telephony_agent_call_duration_seconds_count") == 1
    turns = len(result.turn_latencies_ms)
    assert turns >= 1
    assert metric(after, "telephony_agent_turn_first_frame_seconds_count") == turns
    assert metric(after, "telephony_agent_turn_first_audio_seconds_count") == turns
    # The histogram holds the latency the caller measured, give or take the network.
    total = metric(after, "telephony_agent_turn_first_frame_seconds_sum")
    assert 0 < total < 5.0
    assert metric(after, "telephony_agent_rtp_packets_total", direction="in") > 50
    assert metric(after, "telephony_agent_rtp_packets_total", direction="out") > 50
    assert metric(after, "telephony_agent_media_tick_lateness_seconds_count") > 50
    assert metric(after, "telephony_agent_sip_requests_total", method="BYE") == 1
    assert metric(after, "telephony_agent_sip_responses_total", method="BYE", code="200") == 1
    assert metric(after, "telephony_agent_realtime_sessions_started_total") == 1
    # The client library's own process metrics are there too.
    assert metric(after, "process_resident_memory_bytes") > 0


async def test_readyz_turns_503_while_draining_and_at_capacity(tmp_path: Path) -> None:
    async with (
        running_rig(tmp_path, "", sip={"max_calls": 1}) as rig,
        http_for(rig) as client,
    ):
        async with client.get("/healthz") as r:
            assert (r.status, await r.json()) == (200, {"status": "alive"})
        async with client.get("/readyz") as r:
            body = await r.json()
            assert r.status == 200, body
            assert body["checks"] == {
                "not_draining": True,
                "not_overloaded": True,
                "under_capacity": True,
                "sip_listening": True,
            }
        async with client.post("/webrtc/offer", json={"sdp": OFFER, "type": "offer"}) as r:
            assert r.status == 200
            browser_id = (await r.json())["call_id"]
        async with client.get("/readyz") as r:
            assert r.status == 503
            assert (await r.json())["failing"] == ["under_capacity"]
        async with client.delete(f"/webrtc/calls/{browser_id}") as r:
            assert r.status == 200
        await wait_until(lambda: rig.board.active_calls == 0)
        rig.board.drain()
        async with client.get("/readyz") as r:
            assert r.status == 503
            assert (await r.json())["failing"] == ["not_draining"]
        async with client.get("/healthz") as r:
            assert r.status == 200


async def test_readyz_fails_when_the_records_database_does_not_answer(tmp_path: Path) -> None:
    answers = {"up": True}

    async def ping() -> object:
        if not answers["up"]:
            raise ConnectionError("database down")
        return []

    async with running_rig(tmp_path, "") as rig:
        operations = Operations.attach(rig.board, sip=rig.sip, records_ping=ping)
        assert operations.readiness._records is not None
        operations.readiness._records.interval_s = 0.0
        async with http_for(rig, operations=operations) as client:
            async with client.get("/readyz") as r:
                assert r.status == 200
            answers["up"] = False
            async with client.get("/readyz") as r:
                assert r.status == 503
                assert (await r.json())["failing"] == ["records_reachable"]


async def _events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Server-sent events as (name, data)."""
    name, data = "message", ""
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            data += line[len("data: ") :]
        elif not line and data:
            yield name, json.loads(data)
            name, data = "message", ""


async def test_live_feed_streams_a_call_its_lines_and_its_end_and_hangs_it_up(
    tmp_path: Path,
) -> None:
    async with (
        running_rig(tmp_path, "", local={"behaviour": "echo"}) as rig,
        http_for(rig, token=TOKEN) as client,
    ):
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with client.get("/live/calls") as r:
            assert r.status == 401
        async with client.get("/live") as r:
            assert r.status == 200  # the page holds no data; it asks for the token
            assert "Live calls" in await r.text()
        seen: list[tuple[str, dict[str, Any]]] = []
        async with client.get("/live/events", headers=auth) as stream:
            assert stream.status == 200
            assert stream.headers["Content-Type"] == "text/event-stream"
            events = _events(stream)
            name, snapshot = await anext(events)
            assert (name, snapshot["calls"]) == ("snapshot", [])
            async with client.post(
                "/webrtc/offer", json={"sdp": OFFER, "type": "offer"}, headers=auth
            ) as r:
                assert r.status == 200
            async with asyncio.timeout(15):
                async for name, data in events:
                    seen.append((name, data))
                    if name == "transcript" and data["speaker"] == "agent":
                        break
            started = next(data["call"] for name, data in seen if name == "call_started")
            assert started["kind"] == "webrtc"
            assert started["profile"] == "default"
            async with client.get("/live/calls", headers=auth) as r:
                (listed,) = (await r.json())["calls"]
                assert listed["id"] == started["id"]
                assert listed["transcript"], listed
            async with client.post(f"/live/calls/{started['id']}/hangup", headers=auth) as r:
                assert r.status == 200
            async with asyncio.timeout(15):
                async for name, data in events:
                    if name == "call_ended":
                        ended = data["call"]
                        break
        assert ended["id"] == started["id"]
        assert ended["end_reason"] == "operator_hangup"
        assert ended["record"] is None  # this rig keeps no records
        async with client.post(f"/live/calls/{started['id']}/hangup", headers=auth) as r:
            assert r.status == 404
