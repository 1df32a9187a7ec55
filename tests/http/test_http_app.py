"""The HTTP side end to end: real sockets, a real SIP server and Realtime backend, fake legs.

Every test talks to a real `HttpServer` on loopback with aiohttp's client, so what is
checked is what a browser or a WHIP client would see on the wire: status codes,
headers, bodies — and, through the fake leg, what reaches the page during a call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from telephony_agent.media.leg import LegFormat
from telephony_agent.media.webrtc import WebRtcLeg, WebRtcOfferError
from telephony_agent.realtime.errors import RealtimeConnectError
from telephony_agent.server.http_app import HANGUP_WAIT_S, MAX_BODY_BYTES
from telephony_agent.switchboard import Admission, CallRequest
from tests.http.support import (
    FAKE_ANSWER,
    OFFER,
    FakeLegFactory,
    Rig,
    running_http,
    spoken_turn,
    wait_until,
)

HEALTH_KEYS = {
    "status",
    "active_calls",
    "max_calls",
    "invites",
    "answered",
    "completed",
    "call_seconds",
    "rejected_busy",
    "sip_malformed_dropped",
    "sip_bad_requests",
    "sip_internal_errors",
    "sip_pending_calls",
    "sip_refused_rate",
    "sip_refused_source_pending",
    "sip_refused_pending",
    "sip_sessions_closed_unacked",
    "sip_udp_buffer_bytes",
    "sip_udp_drops",
    "rtp_udp_drops",
    "media_clock_lateness_p50_ms",
    "media_clock_lateness_p99_ms",
    "media_clock_skipped_ticks",
    "webrtc_calls",
}


async def _offer(rig: Rig, **headers: str) -> tuple[int, dict[str, Any]]:
    async with rig.client.post(
        "/webrtc/offer", json={"sdp": OFFER, "type": "offer"}, headers=headers
    ) as response:
        data: dict[str, Any] = await response.json()
        return response.status, data


async def _post(
    rig: Rig, path: str, body: bytes | AsyncIterator[bytes], content_type: str, **headers: str
) -> tuple[int, str, dict[str, str]]:
    async with rig.client.post(
        path, data=body, headers={"Content-Type": content_type, **headers}
    ) as response:
        return response.status, await response.text(), dict(response.headers)


async def test_health_keeps_its_keys_and_counts_browser_calls() -> None:
    async with running_http(sip={"max_calls": 7}) as rig:
        health = await rig.health()
        assert set(health) >= HEALTH_KEYS, health
        assert health["status"] == "ok" and health["max_calls"] == 7
        assert health["webrtc_calls"] == 0


async def test_page_and_its_files_are_served_from_the_package() -> None:
    async with running_http() as rig:
        async with rig.client.get("/") as response:
            assert response.status == 200
            assert response.content_type == "text/html"
            page = await response.text()
        for element in ('id="call"', 'id="hangup"', 'id="transcript"', 'id="latency"'):
            assert element in page
        assert 'id="status"' in page and "<audio" in page
        async with rig.client.get("/static/app.js") as response:
            assert response.status == 200
            assert response.content_type == "text/javascript"
            script = await response.text()
        assert "webrtc/offer" in script and "createDataChannel('events')" in script
        async with rig.client.get("/static/style.css") as response:
            assert response.status == 200 and response.content_type == "text/css"
        for missing in ("/static/index.py", "/static/..%2Fhttp_app.py", "/nowhere"):
            async with rig.client.get(missing) as response:
                assert response.status == 404, missing


async def test_offer_starts_a_call_that_streams_events_and_delete_ends_it() -> None:
    factory = FakeLegFactory(caller=spoken_turn())
    async with running_http(factory=factory, agent={"greeting": "Hello"}) as rig:
        status, answer = await _offer(rig)
        assert status == 200, answer
        assert answer["type"] == "answer" and answer["sdp"] == FAKE_ANSWER
        call_id = answer["call_id"]
        assert isinstance(call_id, str) and len(call_id) >= 16
        assert (await rig.health())["webrtc_calls"] == 1
        (leg,) = factory.legs
        assert leg.offer_sdp == OFFER
        assert factory.calls[0]["clock"] is rig.sip.clock
        assert factory.calls[0]["allow_loopback"] is True

        await wait_until(lambda: bool(leg.events_of("latency")), 8.0)
        await wait_until(lambda: {"caller", "agent"} <= _speakers(leg.sent), 8.0)
        transcript = leg.events_of("transcript")
        assert all(isinstance(e["text"], str) and isinstance(e["t"], float) for e in transcript)
        latency = leg.events_of("latency")[0]
        assert float(str(latency["to_first_frame_ms"])) >= 0.0
        assert "to_first_delta_ms" in latency
        assert leg.frames_out > 0

        async with rig.client.delete(f"/webrtc/calls/{call_id}") as response:
            assert response.status == 200
        assert leg.closed.is_set() and leg.end_reason == "closed"
        await wait_until(lambda: rig.http.calls.completed == 1)
        health = await rig.health()
        assert health["webrtc_calls"] == 0 and health["webrtc_answered"] == 1
        async with rig.client.delete(f"/webrtc/calls/{call_id}") as response:
            assert response.status == 404


def _message(text: str) -> str:
    """The refusal's message: JSON ``{"error": ...}`` on page routes, plain text on WHIP."""
    try:
        data = json.loads(text)
    except ValueError:
        return text
    return str(data["error"])


def _speakers(events: list[dict[str, object]]) -> set[object]:
    return {e["speaker"] for e in events if e.get("type") == "transcript"}


async def test_the_page_is_told_why_the_agent_ended_the_call() -> None:
    factory = FakeLegFactory()
    async with running_http(factory=factory, agent={"max_duration_s": 1.0}) as rig:
        status, _ = await _offer(rig)
        assert status == 200
        (leg,) = factory.legs
        await wait_until(lambda: leg.closed.is_set(), 5.0 + HANGUP_WAIT_S)
        assert leg.events_of("ended") == [{"type": "ended", "reason": "max_duration"}]
        assert leg.hangup_reason == "max_duration"
        await wait_until(lambda: len(rig.http.calls) == 0)


async def test_whip_resource_lifecycle() -> None:
    async with running_http() as rig:
        async with rig.client.options("/whip") as response:
            assert response.status == 204
            assert response.headers["Accept-Post"] == "application/sdp"
            assert "POST" in response.headers["Allow"]
        status, body, headers = await _post(rig, "/whip", OFFER.encode(), "application/sdp")
        assert status == 201, body
        assert body == FAKE_ANSWER
        assert headers["Content-Type"].startswith("application/sdp")
        location = headers["Location"]
        assert location.startswith("/whip/") and len(location) > len("/whip/")
        assert (await rig.health())["webrtc_calls"] == 1

        async with rig.client.patch(
            location,
            data=b"a=ice-ufrag:x\r\n",
            headers={"Content-Type": "application/trickle-ice-sdpfrag"},
        ) as response:
            assert response.status == 405
            assert "DELETE" in response.headers["Allow"]
            assert "PATCH" not in response.headers["Allow"]
            assert "trickle ICE" in await response.text()
        # A WHIP resource is not a page call: its id means nothing on the other route.
        async with rig.client.delete(location.replace("/whip/", "/webrtc/calls/")) as response:
            assert response.status == 404

        async with rig.client.delete(location) as response:
            assert response.status == 200
        async with rig.client.delete(location) as response:
            assert response.status == 404
        assert (await rig.health())["webrtc_calls"] == 0


async def test_bad_requests_get_clear_client_errors_and_the_server_keeps_serving() -> None:
    factory = FakeLegFactory()
    async with running_http(factory=factory) as rig:
        cases: list[tuple[str, bytes, str, int, str]] = [
            ("/webrtc/offer", b"{not json", "application/json", 400, "not valid JSON"),
            ("/webrtc/offer", b"[1, 2]", "application/json", 400, "JSON object"),
            ("/webrtc/offer", b"{}", "application/json", 400, '"sdp" is missing'),
            ("/webrtc/offer", b'{"sdp": "  "}', "application/json", 400, '"sdp" is missing'),
            (
                "/webrtc/offer",
                b'{"sdp": "v=0", "type": "answer"}',
                "application/json",
                400,
                "offer",
            ),
            ("/webrtc/offer", b"\xff\xfe", "application/json", 400, "not valid JSON"),
            ("/webrtc/offer", OFFER.encode(), "application/sdp", 415, "application/json"),
            ("/webrtc/offer", b"sdp", "text/plain", 415, "application/json"),
            ("/whip", b'{"sdp": "v=0"}', "application/json", 415, "application/sdp"),
            ("/whip", b"", "application/sdp", 400, "SDP offer"),
            ("/whip", b"\xff\xfe", "application/sdp", 400, "UTF-8"),
        ]
        for path, body, content_type, expected, phrase in cases:
            status, text, headers = await _post(rig, path, body, content_type)
            assert status == expected, (path, body, status, text)
            assert phrase in _message(text), (path, body, text)
            assert "Traceback" not in text
            if status == 415:
                assert "Accept-Post" in headers if path == "/whip" else "Accept" in headers
        big = b"v=0\r\n" + b"a" * MAX_BODY_BYTES
        for path, body, content_type in (
            ("/whip", big, "application/sdp"),
            ("/webrtc/offer", json.dumps({"sdp": big.decode()}).encode(), "application/json"),
        ):
            status, text, _ = await _post(rig, path, body, content_type)
            assert status == 413, (path, text)
            assert str(MAX_BODY_BYTES) in text

        async def chunked() -> AsyncIterator[bytes]:
            # No Content-Length: the limit must hold while the body streams in.
            for _ in range(MAX_BODY_BYTES // 4096 + 2):
                yield b"a" * 4096

        status, text, _ = await _post(rig, "/whip", chunked(), "application/sdp")
        assert status == 413, text
        assert factory.legs == []
        health = await rig.health()
        assert health["webrtc_calls"] == 0
        assert health["http_rejected"] == len(cases) + 3


async def test_an_offer_the_leg_refuses_is_a_400_with_its_message() -> None:
    factory = FakeLegFactory(error=WebRtcOfferError("the offer has no audio m-line"))
    async with running_http(factory=factory) as rig:
        status, data = await _offer(rig)
        assert status == 400
        assert data == {"error": "the offer has no audio m-line"}
        status, text, _ = await _post(rig, "/whip", OFFER.encode(), "application/sdp")
        assert status == 400 and text.strip() == "the offer has no audio m-line"
        assert (await rig.health())["webrtc_calls"] == 0


async def test_the_real_leg_refuses_an_offer_that_is_not_sdp() -> None:
    async with running_http(factory=WebRtcLeg.answer) as rig:
        async with rig.client.post(
            "/webrtc/offer", json={"sdp": "hello, agent", "type": "offer"}
        ) as response:
            assert response.status == 400
            message = (await response.json())["error"]
        assert "not SDP" in message
        assert (await rig.health())["webrtc_calls"] == 0


async def test_an_unexpected_failure_is_a_500_without_a_traceback() -> None:
    factory = FakeLegFactory(error=RuntimeError("boom at /some/internal/path"))
    async with running_http(factory=factory) as rig:
        with structlog.testing.capture_logs():
            status, data = await _offer(rig)
        assert status == 500
        assert data == {"error": "internal server error"}
        assert (await rig.health())["status"] == "ok"


async def test_unreachable_speech_model_is_a_503_and_the_leg_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class DeadSession:
        closed = False

        async def connect(self) -> None:
            raise RealtimeConnectError("cannot reach the model")

        async def close(self) -> None:
            self.closed = True

    sessions: list[DeadSession] = []

    def dead_session(self: Admission, leg: LegFormat | None = None) -> DeadSession:
        assert leg == LegFormat("opus", 48000)  # the browser leg's, before it exists
        sessions.append(DeadSession())
        return sessions[-1]

    factory = FakeLegFactory()
    async with running_http(factory=factory, sip={"retry_after_s": 9}) as rig:
        monkeypatch.setattr(Admission, "new_session", dead_session)
        async with rig.client.post("/webrtc/offer", json={"sdp": OFFER}) as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "9"
            assert "speech model" in (await response.json())["error"]
        assert factory.legs[0].closed.is_set()
        assert sessions[0].closed
        assert (await rig.health())["webrtc_calls"] == 0


async def test_over_capacity_is_a_503_counting_sip_and_browser_calls() -> None:
    async with running_http(sip={"max_calls": 2, "retry_after_s": 5}) as rig:
        assert (await _offer(rig))[0] == 200
        assert (await _offer(rig))[0] == 200
        status, data = await _offer(rig)
        assert status == 503 and "call slots" in data["error"]
        async with rig.client.post(
            "/whip", data=OFFER, headers={"Content-Type": "application/sdp"}
        ) as r:
            assert r.status == 503 and r.headers["Retry-After"] == "5"
        for leg in rig.fake.legs:
            await leg.close()
        await wait_until(lambda: len(rig.http.calls) == 0)
        # One SIP call being set up holds one slot of the same budget.
        held = rig.sip.switchboard.admit(CallRequest(kind="sip", external_id="held"))
        assert isinstance(held, Admission)
        assert (await _offer(rig))[0] == 200
        assert (await _offer(rig))[0] == 503
        held.release("test")


async def test_bearer_token_guards_signalling_and_never_leaks(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    token = "s3cret-Token-value-42"
    wrong = "not-the-token-but-long"
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    async with running_http(token=token, log={"level": "info"}) as rig:
        # Entered after start-up, which configures logging (and would undo the capture).
        with structlog.testing.capture_logs() as logs:
            for path in ("/", "/static/app.js", "/health"):
                async with rig.client.get(path) as response:
                    assert response.status == 200, path
            attempts: list[dict[str, str]] = [
                {},
                {"Authorization": f"Bearer {wrong}"},
                {"Authorization": f"Basic {token}"},
                {"Authorization": "Bearer"},
            ]
            for headers in attempts:
                for method, path in (
                    ("POST", "/webrtc/offer"),
                    ("POST", "/whip"),
                    ("DELETE", "/whip/abc"),
                    ("DELETE", "/webrtc/calls/abc"),
                ):
                    async with rig.client.request(
                        method,
                        path,
                        data=OFFER,
                        headers={"Content-Type": "application/sdp", **headers},
                    ) as response:
                        text = await response.text()
                        assert response.status == 401, (method, path, headers)
                        assert response.headers["WWW-Authenticate"].startswith("Bearer")
                        seen += [text, str(response.headers)]
            # CORS preflight carries no credentials and must not be refused.
            async with rig.client.options("/whip") as response:
                assert response.status == 204
                assert response.headers["Access-Control-Allow-Origin"] == "*"
                assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
            status, answer = await _offer(rig, Authorization=f"Bearer {token}")
            assert status == 200
            seen.append(str(answer))
            async with rig.client.delete(
                f"/webrtc/calls/{answer['call_id']}", headers={"Authorization": f"bearer {token}"}
            ) as response:
                assert response.status == 200
    rejections = [e for e in logs if e.get("event") == "http_request_rejected"]
    assert {e["reason"] for e in rejections} == {"missing_token", "bad_token"}
    everything = "\n".join([*seen, repr(logs), caplog.text, *capsys.readouterr()])
    assert token not in everything
    assert wrong not in everything


async def test_without_a_token_whip_sends_no_cors_headers() -> None:
    async with running_http() as rig, rig.client.options("/whip") as response:
        assert response.status == 204
        assert "Access-Control-Allow-Origin" not in response.headers


async def test_close_hangs_up_browser_calls_and_tells_the_page() -> None:
    factory = FakeLegFactory()
    async with running_http(factory=factory) as rig:
        assert (await _offer(rig))[0] == 200
        (leg,) = factory.legs
        await rig.http.close()
        assert leg.events_of("ended") == [{"type": "ended", "reason": "shutdown"}]
        assert leg.hangup_reason == "shutdown"
        assert len(rig.http.calls) == 0


async def test_ice_servers_from_settings_reach_the_leg() -> None:
    factory = FakeLegFactory()
    async with running_http(
        factory=factory,
        environ={"TURN_SECRET": "turn-pass"},
        webrtc={
            "ice_servers": "stun:stun.example.org:3478, turn:turn.example.org",
            "turn_username": "agent",
            "turn_credential_env": "TURN_SECRET",
            "allow_loopback": False,
            "ice_timeout_s": 2.5,
        },
    ) as rig:
        assert (await _offer(rig))[0] == 200
    seen = factory.calls[0]
    stun, turn = seen["ice_servers"]
    assert stun.urls == ("stun:stun.example.org:3478",) and stun.credential is None
    assert turn.urls == ("turn:turn.example.org",)
    assert (turn.username, turn.credential) == ("agent", "turn-pass")
    assert seen["allow_loopback"] is False and seen["ice_timeout_s"] == 2.5


async def test_a_real_webrtc_peer_calls_over_whip_and_hears_events() -> None:
    """The production leg factory end to end: aiortc plays the WHIP client."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    received: list[dict[str, Any]] = []
    try:
        pc.addTrack(AudioStreamTrack())
        events = pc.createDataChannel("events")
        events.on("message", lambda message: received.append(json.loads(message)))
        await pc.setLocalDescription(await pc.createOffer())
        async with running_http(factory=WebRtcLeg.answer, agent={"greeting": "Hi"}) as rig:
            offer = pc.localDescription.sdp.encode()
            status, answer, headers = await _post(rig, "/whip", offer, "application/sdp")
            assert status == 201, answer
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            await wait_until(lambda: pc.connectionState == "connected", 10.0)
            await wait_until(lambda: "agent" in _speakers(received), 10.0)
            async with rig.client.delete(headers["Location"]) as response:
                assert response.status == 200
            assert (await rig.health())["webrtc_calls"] == 0
    finally:
        await pc.close()


async def test_the_page_gets_the_configured_ice_servers_behind_the_token() -> None:
    webrtc: dict[str, Any] = {
        "ice_servers": "stun:stun.example.org:3478,turn:turn.example.org:3478",
        "turn_username": "agent",
        "turn_credential_env": "TURN_SECRET",
    }
    async with running_http(
        token="page-token-123", environ={"TURN_SECRET": "turn-pass"}, webrtc=webrtc
    ) as rig:
        async with rig.client.get("/webrtc/config") as response:
            assert response.status == 401
        async with rig.client.get(
            "/webrtc/config", headers={"Authorization": "Bearer page-token-123"}
        ) as response:
            assert response.status == 200
            body = await response.json()
    urls = [url for server in body["iceServers"] for url in server["urls"]]
    assert urls == ["stun:stun.example.org:3478", "turn:turn.example.org:3478"]
    assert any(s.get("credential") == "turn-pass" for s in body["iceServers"])
