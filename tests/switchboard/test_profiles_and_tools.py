"""The switchboard end to end: profiles by number, placeholders, greetings, webhook tools.

Real parts throughout: the SIP front door on loopback, the softphone, the local
Realtime backend over a websocket, and a real HTTP server as the business webhook.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web

from telephony_agent.server.http_app import HttpServer
from tests.call.helpers import sample_speech
from tests.http.support import OFFER, FakeLegFactory, wait_until
from tests.switchboard.support import running_rig

SECRET = "hook-secret-never-printed-42"

PROFILES = """
[agent]
instructions = "You are the general line."

[[profiles]]
name = "booking"
numbers = ["booking"]
instructions = "Bookings for {restaurant}; caller {caller}; dialled {dialled}; profile {profile}."
variables = { restaurant = "Riverside" }
tools = ["check_availability", "end_call"]

[[profiles]]
name = "moscow"
match = '^\\+7495\\d{7}$'
instructions = "Moscow office, call {call_id}."
"""

TOOL = """
[[tools]]
name = "check_availability"
description = "Whether a table is free."
webhook = "http://127.0.0.1:{port}/hook"
secret_env = "HOOK_SECRET"
timeout_s = 3

[tools.parameters]
type = "object"
required = ["party_size"]

[tools.parameters.properties.party_size]
type = "integer"
"""


def _settings(port: int = 9) -> str:
    """The profiles and the webhook tool the booking profile names (port 9: nobody)."""
    return PROFILES + TOOL.format(port=port)


ENV = {"HOOK_SECRET": SECRET}


def _speech_then_pause() -> np.ndarray[Any, Any]:
    return np.concatenate([sample_speech(16000), np.zeros(16000, np.int16)])


@asynccontextmanager
async def hook_server(reply: dict[str, Any]) -> AsyncIterator[tuple[int, list[dict[str, Any]]]]:
    """A business webhook that checks the signature itself, as a real one must."""
    seen: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        stamp = request.headers["X-Telephony-Agent-Timestamp"]
        expected = hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256)
        signature = request.headers.get("X-Telephony-Agent-Signature", "")
        seen.append(
            {
                "valid": hmac.compare_digest(signature, "sha256=" + expected.hexdigest()),
                "body": json.loads(body),
            }
        )
        return web.json_response(reply)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield int(runner.addresses[0][1]), seen
    finally:
        await runner.cleanup()


async def test_numbers_and_regex_choose_the_profile_and_placeholders_are_filled(
    tmp_path: Path,
) -> None:
    async with running_rig(tmp_path, _settings(), environ=ENV, local={"behaviour": "echo"}) as rig:
        for user in ("booking", "+74951234567", "front-desk"):
            result = await rig.call(user, sample_speech(16000)[:8000], tail_s=0.5)
            assert result.answered, result.summary()
        await wait_until(lambda: len(rig.heard.ended) == 3)
    booking, moscow, default = rig.heard.started
    assert booking.profile.name == "booking"
    assert booking.call.session.config.instructions == (
        "Bookings for Riverside; caller caller; dialled booking; profile booking."
    )
    assert sorted(s.name for s in booking.call.session.config.tools) == [
        "check_availability",
        "end_call",
    ]
    assert moscow.profile.name == "moscow"
    assert moscow.call.session.config.instructions == (
        f"Moscow office, call {moscow.request.external_id}."
    )
    assert default.profile.name == "default"
    assert default.call.session.config.instructions == "You are the general line."
    # The default profile offers the built-in call control only.
    assert sorted(s.name for s in default.call.session.config.tools) == [
        "end_call",
        "send_dtmf",
        "transfer_call",
    ]


async def test_a_webhook_tool_is_called_signed_and_its_reply_reaches_the_model(
    tmp_path: Path,
) -> None:
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            [
                {
                    "say": "Let me check.",
                    "tone_ms": 300,
                    "function_calls": [
                        {"name": "check_availability", "arguments": {"party_size": 2}}
                    ],
                },
                {"say": "A table is free.", "tone_ms": 300},
            ]
        )
    )
    reply = {"available": True, "time": "19:00"}
    async with (
        hook_server(reply) as (port, seen),
        running_rig(
            tmp_path,
            _settings(port),
            environ=ENV,
            local={"behaviour": "script", "script": str(script)},
        ) as rig,
    ):
        result = await rig.call("booking", _speech_then_pause(), tail_s=3.0)
        assert result.answered, result.summary()
        await wait_until(lambda: len(rig.heard.ended) == 1)
        assert rig.runtime.backend is not None
        backend_stats = rig.runtime.backend.stats
    (request,) = seen
    assert request["valid"], "the signature did not verify"
    body = request["body"]
    live = rig.heard.started[0]
    assert body == {
        "call_id": live.request.external_id,
        "profile": "booking",
        "caller": "caller",
        "dialled": "booking",
        "tool": "check_availability",
        "arguments": {"party_size": 2},
    }
    (tool,) = rig.heard.tools
    assert tool.ok and json.loads(tool.output) == reply
    assert backend_stats.function_outputs == 1
    agent_lines = [line.text for _, line in rig.heard.transcripts if line.speaker == "agent"]
    assert "A table is free." in agent_lines


async def test_the_greeting_is_heard_before_the_caller_says_anything(tmp_path: Path) -> None:
    toml = _settings().replace(
        'tools = ["check_availability", "end_call"]',
        'greeting = "Welcome to {restaurant}."',
    )
    silence_then_speech = np.concatenate(
        [np.zeros(3 * 16000, np.int16), sample_speech(16000)[:8000]]
    )
    async with running_rig(tmp_path, toml, environ=ENV, local={"behaviour": "echo"}) as rig:
        result = await rig.call("booking", silence_then_speech, tail_s=1.0)
        assert result.answered
        await wait_until(lambda: len(rig.heard.ended) == 1)
    heard = result.recording.astype(np.float64)
    first_two_s = heard[: 2 * result.recording_rate]
    assert np.sqrt(np.mean(first_two_s**2)) > 300, "nothing was heard before the caller spoke"
    lines = [line for _, line in rig.heard.transcripts]
    assert lines[0].speaker == "agent", lines


async def test_a_greeting_recording_plays_first(tmp_path: Path) -> None:
    greeting = tmp_path / "greeting.wav"
    tone = (np.sin(2 * np.pi * 440 * np.arange(9600) / 16000) * 12000).astype("<i2")
    with wave.open(str(greeting), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(tone.tobytes())
    toml = _settings().replace(
        'tools = ["check_availability", "end_call"]', 'greeting_audio = "greeting.wav"'
    )
    async with running_rig(tmp_path, toml, environ=ENV, local={"behaviour": "echo"}) as rig:
        result = await rig.call("booking", np.zeros(2 * 16000, np.int16), tail_s=0.5)
        assert result.answered
        await wait_until(lambda: len(rig.heard.ended) == 1)
    heard = result.recording.astype(np.float64)[: result.recording_rate]
    assert np.sqrt(np.mean(heard**2)) > 1000, "the recording was not played"
    assert ("agent", "[greeting recording]") in [
        (line.speaker, line.text) for _, line in rig.heard.transcripts
    ]


async def test_browser_calls_choose_a_profile_by_name(tmp_path: Path) -> None:
    async with running_rig(tmp_path, _settings(), environ=ENV, local={"behaviour": "echo"}) as rig:
        factory = FakeLegFactory()
        http = HttpServer(rig.board, sip=rig.sip, leg_factory=factory, environ={})
        await http.start("127.0.0.1", 0)
        base = f"http://127.0.0.1:{http.port}"
        try:
            async with aiohttp.ClientSession(base_url=base) as client:
                offer = {"sdp": OFFER, "type": "offer"}
                async with client.post("/webrtc/offer", json={**offer, "profile": "moscow"}) as r:
                    assert r.status == 200
                async with client.post("/webrtc/offer?profile=booking", json=offer) as r:
                    assert r.status == 200
                async with client.post("/webrtc/offer", json=offer) as r:
                    assert r.status == 200
                async with client.post("/webrtc/offer", json={**offer, "profile": "nope"}) as r:
                    assert r.status == 404
                    assert "nope" in (await r.json())["error"]
                async with client.post(
                    "/whip?profile=booking",
                    data=OFFER,
                    headers={"Content-Type": "application/sdp"},
                ) as r:
                    assert r.status == 201
                await wait_until(lambda: len(rig.heard.started) == 4)
                assert [c.profile.name for c in rig.heard.started] == [
                    "moscow",
                    "booking",
                    "default",
                    "booking",
                ]
                assert rig.board.active_calls == 4
        finally:
            await http.close()
    assert rig.board.active_calls == 0
