"""The sans-I/O protocol: handshake, accounting, response rules, errors, recap."""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from telephony_agent.realtime.audio_chunks import AudioChunker, SampleAligner
from telephony_agent.realtime.dialect import Dialect
from telephony_agent.realtime.events import (
    AudioDelta,
    FunctionCall,
    ResponseDone,
    ServerError,
    ServerEvent,
    SessionUpdated,
    Unknown,
)
from telephony_agent.realtime.protocol import RealtimeProtocol
from telephony_agent.realtime.recap import HEADER
from telephony_agent.realtime.session_config import SessionConfig


def make(dialect: Dialect = Dialect.GA, **kwargs: Any) -> RealtimeProtocol:
    return RealtimeProtocol(SessionConfig(instructions="Be brief."), dialect, **kwargs)


def feed(p: RealtimeProtocol, kind: str, **fields: Any) -> list[ServerEvent]:
    return p.feed(json.dumps({"type": kind, **fields}))


def session(rate: int = 24000) -> dict[str, Any]:
    return {
        "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": 24000}},
            "output": {"format": {"type": "audio/pcm", "rate": rate}},
        }
    }


def ready(p: RealtimeProtocol, rate: int = 24000) -> None:
    feed(p, "session.created", session={})
    feed(p, "session.updated", session=session(rate))


def created(p: RealtimeProtocol, rid: str = "r1") -> None:
    feed(p, "response.created", response={"id": rid, "status": "in_progress"})


def done(p: RealtimeProtocol, rid: str = "r1", status: str = "completed") -> list[ServerEvent]:
    return feed(p, "response.done", response={"id": rid, "status": status})


def delta(p: RealtimeProtocol, data: bytes, rid: str = "r1", item: str = "a1") -> None:
    events = feed(
        p,
        "response.output_audio.delta",
        response_id=rid,
        item_id=item,
        delta=base64.b64encode(data).decode(),
    )
    assert events == [AudioDelta(rid, item, data)]


def sent(frame: str | None) -> dict[str, Any]:
    assert frame is not None
    obj: dict[str, Any] = json.loads(frame)
    return obj


# ---------------------------------------------------------------- handshake


def test_ready_once_after_created_and_first_updated() -> None:
    p = make()
    feed(p, "session.created", session={})
    assert not p.ready
    feed(p, "session.updated", session=session())
    feed(p, "session.updated", session=session())  # Yandex may send it twice
    assert p.ready
    assert p.ready_transitions == 1
    assert not p.force_ready()
    assert p.ready_transitions == 1


def test_updated_before_created_still_ready_once() -> None:
    p = make()
    feed(p, "session.updated", session=session())
    assert not p.ready
    feed(p, "session.created", session={})
    assert p.ready
    assert p.ready_transitions == 1


def test_force_ready_needs_session_created_and_happens_once() -> None:
    p = make()
    assert not p.force_ready()
    feed(p, "session.created", session={})
    assert p.force_ready()
    assert not p.force_ready()
    feed(p, "session.updated", session=session())
    assert p.ready_transitions == 1


def test_connection_opened_restarts_the_handshake() -> None:
    p = make()
    ready(p)
    p.connection_opened()
    assert not p.ready
    ready(p)
    assert p.ready_transitions == 1


def test_effective_output_rate_is_read_back() -> None:
    p = make()
    assert p.output_rate == 24000
    feed(p, "session.created", session=session(24000))  # defaults, not our config
    events = feed(p, "session.updated", session=session(48000))
    assert events == [SessionUpdated(48000, 24000, session(48000), "pcm", "pcm")]
    assert p.output_rate == 48000
    delta(p, bytes(96 * 10))  # 10 ms at 48 kHz
    assert p.received_ms("a1") == 10


def test_beta_echo_rates() -> None:
    p = make(Dialect.BETA)
    feed(p, "session.created", session={})
    feed(
        p,
        "session.updated",
        session={"input_audio_format": "pcm16", "output_audio_format": "pcm16"},
    )
    assert (p.output_rate, p.input_rate) == (24000, 24000)


# ---------------------------------------------------------------- audio accounting


def test_fragmentation_is_byte_exact() -> None:
    p = make()
    ready(p)
    created(p)
    rng_bytes = bytes((i * 37 + 11) % 256 for i in range(24000))  # 500 ms at 24 kHz
    cuts = [0, 0, 1, 3, 3, 50, 51, 52, 961]  # "" deltas, a 1-byte delta, split samples
    cuts += list(range(1000, 24000, 113))
    cuts.append(len(rng_bytes))
    pieces = [rng_bytes[a:b] for a, b in itertools.pairwise(cuts)]
    assert len(pieces) > 200
    assert b"" in pieces
    assert any(len(x) == 1 for x in pieces)
    got = bytearray()
    for piece in pieces:
        events = feed(
            p,
            "response.output_audio.delta",
            response_id="r1",
            item_id="a1",
            delta=base64.b64encode(piece).decode(),
        )
        assert len(events) == 1
        assert isinstance(events[0], AudioDelta)
        got += events[0].audio
    assert bytes(got) == rng_bytes
    assert p.received_bytes("a1") == len(rng_bytes)
    assert p.received_ms("a1") == 500


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=40))
def test_fragmentation_property(data: bytes, cuts: list[int]) -> None:
    p = make()
    points = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    total = bytearray()
    aligner = SampleAligner()
    aligned = bytearray()
    for a, b in itertools.pairwise(points):
        delta(p, data[a:b])
        total += data[a:b]
        out = aligner.push("a1", data[a:b])
        assert len(out) % 2 == 0
        aligned += out
    assert bytes(total) == data
    assert bytes(aligned) == data[: len(data) & ~1]
    assert p.received_ms("a1") == len(data) // 48


def test_sample_aligner_drops_carry_on_item_change() -> None:
    aligner = SampleAligner()
    assert aligner.push("a", b"\x01\x02\x03") == b"\x01\x02"
    assert aligner.push("a", b"\x04") == b"\x03\x04"
    assert aligner.push("a", b"\x05") == b""
    assert aligner.push("b", b"\x06\x07") == b"\x06\x07"


def test_empty_delta_is_not_an_assistant_audio_item() -> None:
    p = make()
    delta(p, b"", item="a0")
    assert not p.is_assistant_audio_item("a0")
    assert p.received_ms("a0") == 0


# ---------------------------------------------------------------- uplink audio


def decode_appends(frames: list[str]) -> list[bytes]:
    out = []
    for frame in frames:
        obj = json.loads(frame)
        if obj["type"] == "input_audio_buffer.append":
            out.append(base64.b64decode(obj["audio"]))
    return out


def test_append_rechunks_to_20ms_and_never_sends_empty() -> None:
    p = make()
    assert p.chunk_bytes == 960
    assert p.append_audio(b"") == []
    assert p.append_audio(bytes(959)) == []
    frames = p.append_audio(bytes(962))
    assert [len(c) for c in decode_appends(frames)] == [960, 960]
    frames = p.commit()
    assert decode_appends(frames) == []  # the odd byte stays behind, no empty append
    assert [json.loads(f)["type"] for f in frames] == ["input_audio_buffer.commit"]


def test_commit_flushes_the_partial_chunk() -> None:
    p = make()
    p.append_audio(bytes(480))
    frames = p.commit()
    assert [len(c) for c in decode_appends(frames)] == [480]
    assert json.loads(frames[1])["type"] == "input_audio_buffer.commit"
    assert len(p.commit()) == 1  # nothing pending: only the commit


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=2500), max_size=20), st.sampled_from([10, 20, 40]))
def test_chunking_property(pieces: list[bytes], chunk_ms: int) -> None:
    p = make(chunk_ms=chunk_ms)
    frames: list[str] = []
    for piece in pieces:
        frames += p.append_audio(piece)
    chunks = decode_appends(frames)
    assert all(len(c) == 48 * chunk_ms for c in chunks)
    tail = decode_appends(p.commit())
    assert all(len(c) % 2 == 0 and len(c) > 0 for c in tail)
    data = b"".join(pieces)
    assert b"".join(chunks + tail) == data[: len(data) & ~1]


def test_whole_chunks_and_ragged_pieces_come_out_in_order() -> None:
    """A piece of exactly one chunk with nothing pending skips the buffer; one that
    arrives while a ragged piece waits must not overtake it."""
    chunker = AudioChunker(960)
    sizes = [960, 100, 960, 860, 960, 960]
    pieces = [bytes([i]) * n for i, n in enumerate(sizes)]
    out: list[bytes] = []
    for piece in pieces:
        out += chunker.push(piece)
    assert all(len(c) == 960 for c in out)
    assert b"".join(out) == b"".join(pieces)
    assert chunker.pending_bytes == 0


def test_chunker_rejects_odd_size() -> None:
    try:
        AudioChunker(961)
    except ValueError:
        return
    raise AssertionError("odd chunk size accepted")


def test_event_ids_are_unique_and_matched_back() -> None:
    p = make()
    frames = [p.session_update(), *p.append_audio(bytes(960 * 3)), *p.commit()]
    ids = [json.loads(f)["event_id"] for f in frames]
    assert len(set(ids)) == len(ids)
    assert p.sent_type(ids[0]) == "session.update"
    assert p.sent_type(ids[1]) == "input_audio_buffer.append"
    assert p.sent_type("nope") is None
    other = make()
    assert json.loads(other.session_update())["event_id"] not in ids


# ---------------------------------------------------------------- responses


def test_create_response_queued_while_active_and_sent_once_after_done() -> None:
    p = make()
    ready(p)
    created(p)
    assert p.create_response() is None
    assert p.create_response("Say hi") is None  # coalesced into the same slot
    assert p.take_outgoing() == []
    done(p)
    out = p.take_outgoing()
    assert len(out) == 1
    assert sent(out[0]) == {
        "type": "response.create",
        "event_id": sent(out[0])["event_id"],
        "response": {"instructions": "Say hi"},
    }
    created(p, "r2")
    done(p, "r2")
    assert p.take_outgoing() == []


def test_repeated_create_with_nothing_new_is_dropped() -> None:
    p = make()
    ready(p)
    first = p.create_response()
    assert sent(first)["type"] == "response.create"
    assert "response" not in sent(first)
    assert p.create_response() is None
    created(p, "r1")
    assert p.create_response() is None
    done(p, "r1")
    assert p.take_outgoing() == []


def test_create_after_new_input_while_awaiting_is_queued() -> None:
    p = make()
    ready(p)
    assert p.create_response() is not None
    p.function_output("call_1", "{}")
    assert p.create_response() is None
    created(p, "r1")
    done(p, "r1")
    assert [sent(f)["type"] for f in p.take_outgoing()] == ["response.create"]


def test_a_turn_the_server_vad_committed_is_new_input_for_a_create() -> None:
    """With `create_response: false` the client answers each caller turn: a create asked
    at `speech_stopped`, while our cancelled response is still finishing, must go out
    after it instead of being dropped as a duplicate of the create that started it."""
    p = make()
    ready(p)
    assert p.create_response() is not None
    created(p, "r1")
    assert p.cancel_response() is not None
    feed(p, "input_audio_buffer.speech_stopped", audio_end_ms=900, item_id="u2")
    assert p.create_response() is None  # queued behind r1, not dropped
    done(p, "r1", status="cancelled")
    assert [sent(f)["type"] for f in p.take_outgoing()] == ["response.create"]


def test_create_with_new_instructions_while_awaiting_is_queued() -> None:
    p = make()
    ready(p)
    assert p.create_response() is not None
    assert p.create_response("Apologise briefly") is None
    created(p, "r1")
    done(p, "r1")
    assert [sent(f)["type"] for f in p.take_outgoing()] == ["response.create"]


def test_active_response_error_requeues_our_create() -> None:
    p = make()
    ready(p)
    create = sent(p.create_response("after tools"))
    events = feed(
        p,
        "error",
        error={
            "type": "invalid_request_error",
            "code": "conversation_already_has_active_response",
            "message": "Conversation already has an active response",
            "event_id": create["event_id"],
        },
    )
    assert events == []
    created(p, "vad_resp")
    done(p, "vad_resp")
    out = [sent(f) for f in p.take_outgoing()]
    assert [o["type"] for o in out] == ["response.create"]
    assert out[0]["response"] == {"instructions": "after tools"}


def test_cancel_only_when_active_and_once() -> None:
    p = make()
    ready(p)
    assert p.cancel_response() is None
    created(p, "r1")
    assert sent(p.cancel_response())["type"] == "response.cancel"
    assert p.is_stale("r1")
    assert p.cancel_response() is None
    done(p, "r1", "cancelled")
    assert p.cancel_response() is None
    created(p, "r2")
    assert p.cancel_response() is not None


def test_cancel_not_active_error_is_tolerated() -> None:
    p = make()
    ready(p)
    events = feed(
        p,
        "error",
        error={
            "type": "invalid_request_error",
            "code": "response_cancel_not_active",
            "message": "no active response",
        },
    )
    assert events == []
    assert p.fatal is None


def test_done_response_is_stale_for_late_deltas() -> None:
    p = make()
    created(p, "r1")
    assert not p.is_stale("r1")
    done(p, "r1")
    assert p.is_stale("r1")
    assert not p.response_active


# ---------------------------------------------------------------- truncate


def test_truncate_rules() -> None:
    p = make()
    ready(p)
    created(p)
    assert p.truncate("a1", 100) is None  # no audio received for it
    delta(p, bytes(48 * 700))  # 700 ms
    assert p.truncate("a1", 0) is None
    assert p.truncate("a1", -5) is None
    frame = sent(p.truncate("a1", 5000))
    assert frame["type"] == "conversation.item.truncate"
    assert (frame["item_id"], frame["content_index"], frame["audio_end_ms"]) == ("a1", 0, 700)
    assert p.truncate("a1", 700) is None  # already there
    assert sent(p.truncate("a1", 300))["audio_end_ms"] == 300
    assert p.truncate("a1", 500) is None


# ---------------------------------------------------------------- function calls


def test_function_calls_emitted_once_with_name_from_output_item_added() -> None:
    p = make()
    ready(p)
    created(p)
    out: list[ServerEvent] = []
    for n in (1, 2):
        out += feed(
            p,
            "response.output_item.added",
            response_id="r1",
            item={"id": f"f{n}", "type": "function_call", "call_id": f"c{n}", "name": f"t{n}"},
        )
        for ch in '{"a":1}':
            out += feed(
                p,
                "response.function_call_arguments.delta",
                item_id=f"f{n}",
                call_id=f"c{n}",
                delta=ch,
            )
        out += feed(
            p,
            "response.function_call_arguments.done",
            response_id="r1",
            item_id=f"f{n}",
            call_id=f"c{n}",
            arguments='{"a":1}',
        )
        out += feed(
            p,
            "response.output_item.done",
            response_id="r1",
            item={
                "id": f"f{n}",
                "type": "function_call",
                "call_id": f"c{n}",
                "name": f"t{n}",
                "arguments": '{"a":1}',
            },
        )
    out += done(p)
    calls = [e for e in out if isinstance(e, FunctionCall)]
    assert calls == [
        FunctionCall("r1", "f1", "c1", "t1", '{"a":1}'),
        FunctionCall("r1", "f2", "c2", "t2", '{"a":1}'),
    ]
    assert isinstance(out[-1], ResponseDone)


def test_function_call_only_in_response_done_output() -> None:
    p = make()
    created(p)
    events = feed(
        p,
        "response.done",
        response={
            "id": "r1",
            "status": "completed",
            "output": [
                {
                    "id": "f9",
                    "type": "function_call",
                    "call_id": "c9",
                    "name": "t",
                    "arguments": "{}",
                    "status": "completed",
                },
                {"id": "m1", "type": "message"},
            ],
        },
    )
    assert events[0] == FunctionCall("r1", "f9", "c9", "t", "{}")
    assert isinstance(events[1], ResponseDone)


def test_function_output_and_messages() -> None:
    p = make()
    out = sent(p.function_output("c1", '{"ok":true}'))
    assert out["item"] == {"type": "function_call_output", "call_id": "c1", "output": '{"ok":true}'}
    user = sent(p.add_message("user", "pressed 1"))
    assert user["item"]["content"] == [{"type": "input_text", "text": "pressed 1"}]
    assert sent(p.add_message("assistant", "ok"))["item"]["content"][0]["type"] == "output_text"
    beta = make(Dialect.BETA)
    assert sent(beta.add_message("assistant", "ok"))["item"]["content"][0]["type"] == "text"


# ---------------------------------------------------------------- errors


def error(
    p: RealtimeProtocol,
    code: str | None,
    etype: str = "invalid_request_error",
    event_id: str | None = None,
) -> list[ServerEvent]:
    return feed(
        p,
        "error",
        error={
            "type": etype,
            "code": code,
            "message": f"m {code}",
            "param": "audio",
            "event_id": event_id,
        },
    )


def test_non_fatal_errors_are_yielded_with_sent_type() -> None:
    p = make()
    ready(p)
    append_id = json.loads(p.append_audio(bytes(960))[0])["event_id"]
    events = error(p, "invalid_value", event_id=append_id)
    assert events == [
        ServerError(
            "invalid_request_error",
            "invalid_value",
            "m invalid_value",
            "audio",
            append_id,
            "input_audio_buffer.append",
        )
    ]
    assert error(p, "input_audio_buffer_commit_empty")
    assert error(p, None, "server_error")
    assert p.fatal is None
    assert not p.expired


def test_fatal_and_expiry_errors() -> None:
    p = make()
    ready(p)
    assert error(p, "session_expired")
    assert p.expired and p.fatal is None
    p = make()
    error(p, "beta_api_shape_disabled")
    assert p.fatal is not None and p.fatal.kind == "protocol"
    p = make()
    error(p, "invalid_api_key")
    assert p.fatal is not None and p.fatal.kind == "auth"
    p = make()
    error(p, None, "authentication_error")
    assert p.fatal is not None and p.fatal.kind == "auth"


def test_session_update_rejected_during_setup_is_fatal_config() -> None:
    p = make()
    feed(p, "session.created", session={})
    update_id = json.loads(p.session_update())["event_id"]
    error(p, "invalid_value", event_id=update_id)
    assert p.fatal is not None and p.fatal.kind == "config"
    assert "param audio" in p.fatal.message
    # Once ready, the same error is only logged.
    q = make()
    ready(q)
    error(q, "invalid_value", event_id=json.loads(q.session_update())["event_id"])
    assert q.fatal is None


# ---------------------------------------------------------------- frames


def test_unreadable_and_binary_frames_are_counted_and_skipped() -> None:
    p = make()
    assert p.feed("not json") == []
    assert p.feed("[1,2,3]") == []
    assert p.feed(b"\x00\x01") == []
    assert p.feed(json.dumps({"type": "response.output_audio.delta", "delta": "a"})) == []
    assert p.feed(json.dumps({"type": "foo.bar", "x": 1})) == [Unknown("foo.bar")]
    assert p.stats["unreadable_frames"] == 2
    assert p.stats["binary_frames"] == 1
    assert p.stats["malformed_events"] == 1


# ---------------------------------------------------------------- reconnect and recap


def test_connection_lost_ends_the_active_response() -> None:
    p = make()
    ready(p)
    created(p, "r7")
    delta(p, bytes(960), rid="r7")
    p.append_audio(bytes(100))
    events = p.connection_lost()
    assert events == [ResponseDone("r7", "cancelled", "session_reconnected")]
    assert not p.response_active
    assert p.is_stale("r7")
    assert p.truncate("a1", 10) is None  # the old connection's items are gone
    # Caller audio waiting to fill a chunk is kept for the next connection.
    assert p.stats["audio_bytes_dropped"] == 0
    p.append_audio(bytes(p.chunk_bytes - 100))
    assert p.connection_lost() == []
    p.connection_opened()
    ready(p)
    replayed = [sent(f) for f in p.resume_messages()]
    assert [base64.b64decode(e["audio"]) for e in replayed] == [bytes(p.chunk_bytes)]


def test_pending_create_survives_reconnect_and_follows_recap() -> None:
    p = make()
    ready(p)
    feed(
        p,
        "conversation.item.input_audio_transcription.completed",
        item_id="u1",
        transcript="I need a flight to Paris.",
    )
    created(p)
    feed(p, "response.output_text.done", response_id="r1", item_id="a1", text="Which day?")
    p.create_response()
    p.connection_lost()
    assert p.take_outgoing() == []
    p.connection_opened()
    ready(p)
    out = [sent(f) for f in p.resume_messages()]
    assert [o["type"] for o in out] == ["conversation.item.create", "response.create"]
    item = out[0]["item"]
    assert item["type"] == "message"
    assert item["role"] == "system"
    assert item["content"] == [
        {
            "type": "input_text",
            "text": f"{HEADER}\nCaller: I need a flight to Paris.\nAgent: Which day?",
        }
    ]
    # The queued create went out once; the recap would be replayed again.
    assert [sent(f)["type"] for f in p.resume_messages()] == ["conversation.item.create"]


def test_recap_keeps_last_lines_within_budget() -> None:
    p = make(recap_lines=6, recap_max_chars=len(HEADER) + 64, recap_role="user")
    for i in range(6):
        feed(
            p,
            "conversation.item.input_audio_transcription.completed",
            item_id=f"u{i}",
            transcript=f"line {i}",
        )
        feed(
            p,
            "response.output_audio_transcript.done",
            response_id=f"r{i}",
            item_id=f"a{i}",
            transcript=f"answer {i}" + ("!" * (30 if i == 5 else 0)),
        )
    text = p.recap_text()
    assert text is not None
    assert text.splitlines()[0] == HEADER
    assert text.endswith("Agent: answer 5" + "!" * 30)
    assert "line 5" in text
    assert "answer 4" not in text  # pushed out by the budget
    p.connection_lost()
    p.connection_opened()
    ready(p)
    assert sent(p.resume_messages()[0])["item"]["role"] == "user"


def test_no_recap_without_transcript() -> None:
    p = make()
    assert p.recap_text() is None
    assert p.resume_messages() == []


@given(st.binary(min_size=2, max_size=4000).filter(lambda b: len(b) % 2 == 0))
@settings(max_examples=50)
def test_hand_formatted_appends_are_exactly_the_json_event(pcm: bytes) -> None:
    protocol = make(chunk_ms=20)
    frames = [*protocol.append_audio(pcm), *protocol.flush_audio()]
    audio = b""
    for frame in frames:
        event = json.loads(frame)
        assert set(event) == {"type", "event_id", "audio"}
        assert event["type"] == "input_audio_buffer.append"
        assert event["event_id"].startswith("evt_")
        audio += base64.b64decode(event["audio"])
    assert audio == pcm
