"""The SIP server end to end on loopback: our softphone or raw datagrams against `serve`'s core.

Real sockets, real RTP, the real local Realtime backend over a websocket. Peer
tests with SIPp and baresip live in tests/peers; these cover what is easier to
assert from inside (call records, exact responses to hand-made bytes).
"""

from __future__ import annotations

import asyncio
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from telephony_agent.audio.analysis import best_lag_correlation
from telephony_agent.caller.outbound_call import CallOptions, place_call
from telephony_agent.media.audiofile import decode_audio_file
from telephony_agent.sip.message import NameAddr, SipResponse
from telephony_agent.sip.sdp import parse_sdp
from tests.server.conftest import ServerFactory
from tests.server.raw_sip import RawSip, request, sdp_offer

RATE = 48000


def _speech(seconds: float) -> NDArray[np.int16]:
    path = Path(str(files("telephony_agent") / "samples" / "book_flight.wav"))
    pcm = decode_audio_file(path, RATE)
    return pcm[: int(seconds * RATE)]


def _to_tag(response: SipResponse) -> str | None:
    return NameAddr.parse(response.headers.get("To") or "").tag


@pytest.mark.parametrize("codec", ["PCMU", "PCMA", "G722", "opus"])
async def test_echo_call_sounds_like_what_was_said(sip_server: ServerFactory, codec: str) -> None:
    speech = _speech(2.0)
    async with sip_server() as server:
        result = await place_call(
            CallOptions(
                uri=f"sip:agent@127.0.0.1:{server.sip_port}",
                audio=speech,
                audio_rate=RATE,
                codecs=(codec,),
                tail_s=3.0,
                t1_s=0.1,
            )
        )
        await asyncio.sleep(0.2)
        summaries = list(server.finished)
    assert result.answered, result.summary()
    assert result.codec == codec
    assert result.ended_by == "caller"
    assert len(result.turn_latencies_ms) == 1
    # The echo comes back after the caller's pause: align and compare at the leg rate.
    rate = result.recording_rate
    said = decode_audio_file(
        Path(str(files("telephony_agent") / "samples" / "book_flight.wav")), rate
    )[: int(2.0 * rate)]
    heard = result.recording.astype(np.float64)
    correlation, lag = best_lag_correlation(heard, said.astype(np.float64), heard.size - 1)
    assert correlation >= 0.9, (codec, correlation, lag)
    assert len(summaries) == 1
    record = summaries[0].record
    assert record is not None
    assert record.end_reason == "caller_hangup"
    assert len(record.uplink_latency) > 50
    assert len(record.downlink_latency) == 1


async def test_dtmf_reaches_the_call_record(sip_server: ServerFactory) -> None:
    async with sip_server() as server:
        result = await place_call(
            CallOptions(
                uri=f"sip:agent@127.0.0.1:{server.sip_port}",
                audio=np.zeros(RATE // 2, np.int16),
                audio_rate=RATE,
                codecs=("PCMU",),
                duration_s=2.0,
                dtmf="5",
                dtmf_at_s=0.3,
                t1_s=0.1,
            )
        )
        await asyncio.sleep(0.2)
        records = [s.record for s in server.finished if s.record is not None]
    assert result.answered
    assert [r.dtmf for r in records] == ["5"]


async def test_agent_hangs_up_at_max_duration(sip_server: ServerFactory) -> None:
    async with sip_server(agent={"max_duration_s": 1.5}) as server:
        result = await place_call(
            CallOptions(
                uri=f"sip:agent@127.0.0.1:{server.sip_port}",
                audio=np.zeros(RATE, np.int16),
                audio_rate=RATE,
                codecs=("PCMA",),
                duration_s=8.0,
                t1_s=0.1,
            )
        )
    assert result.answered
    assert result.ended_by == "agent"
    assert result.seconds < 5.0


async def test_cancel_while_ringing_gets_487(sip_server: ServerFactory) -> None:
    async with sip_server(local={"session_start_delay_s": 3.0}) as server:
        result = await place_call(
            CallOptions(
                uri=f"sip:agent@127.0.0.1:{server.sip_port}",
                audio=np.zeros(RATE, np.int16),
                audio_rate=RATE,
                answer_timeout_s=0.5,
                t1_s=0.1,
            )
        )
        await asyncio.sleep(0.3)
        assert server.stats.answered == 0
        assert server.active_calls == 0
    assert not result.answered
    assert result.status == 487


async def test_over_capacity_is_busy(sip_server: ServerFactory) -> None:
    async with sip_server(sip={"max_calls": 1}, local={"session_start_delay_s": 2.0}) as server:
        raw = await RawSip.open(server.sip_port)
        try:
            first = request("INVITE", server.sip_port, raw.port, body=sdp_offer(40000))
            raw.send(first)
            await raw.response(180)
            second = request("INVITE", server.sip_port, raw.port, body=sdp_offer(40002))
            raw.send(second)
            busy = await raw.response(486)
            assert busy.status == 486
            assert server.stats.rejected_busy == 1
        finally:
            raw.close()


async def test_retransmitted_invite_is_answered_once(sip_server: ServerFactory) -> None:
    async with sip_server() as server:
        raw = await RawSip.open(server.sip_port)
        try:
            invite = request(
                "INVITE", server.sip_port, raw.port, branch="z9hG4bKsame1", body=sdp_offer(40010)
            )
            raw.send(invite)
            raw.send(invite)
            first_ok = await raw.response(200)
            raw.send(invite)  # after the 200 too: absorbed, the same 200 again
            again = await raw.response(200)
            assert _to_tag(first_ok) == _to_tag(again)
            assert server.stats.invites == 1
            answer = parse_sdp(first_ok.body)
            assert answer.media[0].port > 0
            bye = request(
                "BYE",
                server.sip_port,
                raw.port,
                call_id=first_ok.call_id,
                cseq=2,
                to_tag=_to_tag(first_ok),
            )
            ack = request(
                "ACK", server.sip_port, raw.port, call_id=first_ok.call_id, to_tag=_to_tag(first_ok)
            )
            raw.send(ack)
            raw.send(bye)
            ok = await raw.response(200)
            assert ok.cseq == (2, "BYE")
        finally:
            raw.close()


async def test_rtp_silence_ends_the_call_with_bye(sip_server: ServerFactory) -> None:
    async with sip_server(rtp={"inactivity_timeout_s": 1.0}) as server:
        raw = await RawSip.open(server.sip_port)
        try:
            raw.send(request("INVITE", server.sip_port, raw.port, body=sdp_offer(40020)))
            ok = await raw.response(200)
            raw.send(
                request("ACK", server.sip_port, raw.port, call_id=ok.call_id, to_tag=_to_tag(ok))
            )
            bye = await raw.request("BYE", within_s=5.0)
            assert bye.call_id == ok.call_id
        finally:
            raw.close()


async def test_options_and_unsupported_methods(sip_server: ServerFactory) -> None:
    async with sip_server() as server:
        raw = await RawSip.open(server.sip_port)
        try:
            raw.send(request("OPTIONS", server.sip_port, raw.port))
            ok = await raw.response()
            assert ok.status == 200
            assert "INVITE" in (ok.headers.get("Allow") or "")
            raw.send(request("REGISTER", server.sip_port, raw.port))
            assert (await raw.response()).status == 405
            raw.send(request("FOOBAR", server.sip_port, raw.port))
            assert (await raw.response()).status == 501
            raw.send(request("BYE", server.sip_port, raw.port, to_tag="nosuchdialog"))
            assert (await raw.response()).status == 481
        finally:
            raw.close()


async def test_malformed_input_never_takes_the_server_down(sip_server: ServerFactory) -> None:
    async with sip_server() as server:
        raw = await RawSip.open(server.sip_port)
        try:
            raw.send(b"\x00\xff garbage that is not SIP at all\r\n\r\n")
            raw.send(b"INVITE sip:x SIP/2.0\r\n\r\n")  # nothing to answer to: dropped
            assert await raw.silence(0.3) == []
            bad_cseq = request("OPTIONS", server.sip_port, raw.port).replace(
                "CSeq: 1 OPTIONS", "CSeq: one OPTIONS"
            )
            raw.send(bad_cseq)
            line = await raw.status_line()
            assert line.startswith("SIP/2.0 400 Bad Request")
            assert "CSeq" in line
            bad_length = request("OPTIONS", server.sip_port, raw.port).replace(
                "Content-Length: 0", "Content-Length: 500"
            )
            raw.send(bad_length)
            assert (await raw.response()).status == 400
            no_sdp = request("INVITE", server.sip_port, raw.port, body="v=0\r\nnonsense\r\n")
            raw.send(no_sdp)
            assert (await raw.response(488)).status == 488
            raw.send(request("OPTIONS", server.sip_port, raw.port))
            assert (await raw.response()).status == 200
            stats = server.endpoint.stats
            assert stats.malformed_dropped == 2
            assert stats.bad_requests_answered == 2
        finally:
            raw.close()


async def test_hold_and_resume_with_reinvite(sip_server: ServerFactory) -> None:
    async with sip_server() as server:
        raw = await RawSip.open(server.sip_port)
        try:
            raw.send(request("INVITE", server.sip_port, raw.port, body=sdp_offer(40030)))
            ok = await raw.response(200)
            tag = _to_tag(ok)
            raw.send(request("ACK", server.sip_port, raw.port, call_id=ok.call_id, to_tag=tag))
            for cseq, offered, expected in (
                (2, "sendonly", "recvonly"),
                (3, "sendrecv", "sendrecv"),
            ):
                raw.send(
                    request(
                        "INVITE",
                        server.sip_port,
                        raw.port,
                        call_id=ok.call_id,
                        cseq=cseq,
                        to_tag=tag,
                        body=sdp_offer(40030, direction=offered),
                    )
                )
                answer = await raw.response(200)
                assert answer.cseq == (cseq, "INVITE")
                sdp = parse_sdp(answer.body)
                assert sdp.direction_for(sdp.media[0]) == expected
                assert sdp.origin.session_version > 1
                raw.send(
                    request(
                        "ACK", server.sip_port, raw.port, call_id=ok.call_id, cseq=cseq, to_tag=tag
                    )
                )
            raw.send(
                request("BYE", server.sip_port, raw.port, call_id=ok.call_id, cseq=4, to_tag=tag)
            )
            assert (await raw.response(200)).cseq == (4, "BYE")
        finally:
            raw.close()


async def test_a_call_over_tcp(sip_server: ServerFactory) -> None:
    async with sip_server(agent={"max_duration_s": 1.5}) as server:
        result = await place_call(
            CallOptions(
                uri=f"sip:agent@127.0.0.1:{server.sip_port};transport=tcp",
                audio=_speech(1.0),
                audio_rate=RATE,
                codecs=("PCMU",),
                duration_s=6.0,
                transport="TCP",
                t1_s=0.1,
            )
        )
    # Answered over TCP, and the agent's BYE found its way back over TCP as well.
    assert result.answered, result.summary()
    assert result.ended_by == "agent"


async def test_public_address_is_advertised(sip_server: ServerFactory) -> None:
    async with sip_server(sip={"public_address": "198.51.100.7"}) as server:
        raw = await RawSip.open(server.sip_port)
        try:
            raw.send(request("INVITE", server.sip_port, raw.port, body=sdp_offer(40040)))
            ok = await raw.response(200)
            contact = NameAddr.parse(ok.headers.get("Contact") or "")
            assert "198.51.100.7" in contact.uri
            answer = parse_sdp(ok.body)
            connection = answer.connection_for(answer.media[0])
            assert connection is not None
            assert connection.host == "198.51.100.7"
            raw.send(
                request(
                    "BYE", server.sip_port, raw.port, call_id=ok.call_id, cseq=2, to_tag=_to_tag(ok)
                )
            )
            await raw.response(200)
        finally:
            raw.close()


async def test_delayed_offer_is_answered_in_the_ack(sip_server: ServerFactory) -> None:
    async with sip_server(sip={"codecs": "PCMA,PCMU"}) as server:
        raw = await RawSip.open(server.sip_port)
        try:
            raw.send(request("INVITE", server.sip_port, raw.port))
            ok = await raw.response(200)
            offer = parse_sdp(ok.body)
            assert [r.encoding for r in offer.media[0].rtpmaps][:2] == ["PCMA", "PCMU"]
            answer = sdp_offer(40050, codecs="0 101")
            ack = request(
                "ACK",
                server.sip_port,
                raw.port,
                call_id=ok.call_id,
                to_tag=_to_tag(ok),
                body=answer,
            )
            raw.send(ack)
            await asyncio.sleep(0.3)
            assert server.stats.answered == 1
            call = next(iter(server._calls.values()))
            assert call.negotiated is not None
            assert call.negotiated.codec == "PCMU"
            raw.send(
                request(
                    "BYE", server.sip_port, raw.port, call_id=ok.call_id, cseq=2, to_tag=_to_tag(ok)
                )
            )
            assert (await raw.response(200)).cseq == (2, "BYE")
        finally:
            raw.close()


async def test_delayed_offer_without_an_answer_is_hung_up(sip_server: ServerFactory) -> None:
    async with sip_server() as server:
        raw = await RawSip.open(server.sip_port)
        try:
            raw.send(request("INVITE", server.sip_port, raw.port))
            ok = await raw.response(200)
            raw.send(
                request("ACK", server.sip_port, raw.port, call_id=ok.call_id, to_tag=_to_tag(ok))
            )
            bye = await raw.request("BYE")
            assert bye.call_id == ok.call_id
            assert server.stats.answered == 0
        finally:
            raw.close()


async def test_transfer_tool_sends_refer_and_ends_the_call(
    sip_server: ServerFactory, tmp_path: Path
) -> None:
    script = tmp_path / "transfer.json"
    script.write_text(
        '[{"say": "Transferring you now.", "tone_ms": 300, "function_calls": '
        '[{"name": "transfer_call", "arguments": {"target": "sip:operator@127.0.0.1"}}]}]'
    )
    async with sip_server(local={"behaviour": "script", "script": str(script)}) as server:
        result = await place_call(
            CallOptions(
                uri=f"sip:agent@127.0.0.1:{server.sip_port}",
                audio=_speech(1.5),
                audio_rate=RATE,
                codecs=("PCMU",),
                duration_s=10.0,
                t1_s=0.1,
            )
        )
        await asyncio.sleep(0.2)
        records = [s.record for s in server.finished if s.record is not None]
    assert result.answered
    assert result.transferred_to == "<sip:operator@127.0.0.1>"
    assert result.ended_by == "agent"
    assert result.seconds < 8.0
    assert any(
        "transferred to sip:operator@127.0.0.1" in line.text for line in records[0].transcript
    )


async def test_a_busy_transfer_is_told_to_the_model_and_the_call_goes_on(
    sip_server: ServerFactory, tmp_path: Path
) -> None:
    script = tmp_path / "transfer.json"
    script.write_text(
        '[{"say": "Transferring you now.", "tone_ms": 300, "function_calls": '
        '[{"name": "transfer_call", "arguments": {"target": "sip:sales@127.0.0.1"}}]},'
        ' {"say": "Sales is busy, can I help instead?", "tone_ms": 300}]'
    )
    async with sip_server(local={"behaviour": "script", "script": str(script)}) as server:
        result = await place_call(
            CallOptions(
                uri=f"sip:agent@127.0.0.1:{server.sip_port}",
                audio=_speech(1.5),
                audio_rate=RATE,
                codecs=("PCMU",),
                duration_s=5.0,
                t1_s=0.1,
                transfer_status=486,
            )
        )
        await asyncio.sleep(0.2)
        records = [s.record for s in server.finished if s.record is not None]
    assert result.answered and result.transferred_to == "<sip:sales@127.0.0.1>"
    # Nobody hung up after the failed transfer: the caller ended the call at 5 s.
    assert result.ended_by == "caller"
    (record,) = records
    (tool,) = [r for r in record.tool_results if r.name == "transfer_call"]
    assert "failed: the line is busy" in tool.output
    lines = [line.text for line in record.transcript]
    assert any("transfer to sip:sales@127.0.0.1 failed: busy" in line for line in lines), lines
    assert record.end_reason == "caller_hangup"
