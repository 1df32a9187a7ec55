"""What a replacement connection is told: the recap, the caller's unanswered audio, and
whether to ask for an answer. Sans-I/O, through the protocol's own entry points."""

from __future__ import annotations

import base64
import json
from typing import Any

from telephony_agent.realtime.dialect import Dialect
from telephony_agent.realtime.events import ServerEvent
from telephony_agent.realtime.protocol import RealtimeProtocol
from telephony_agent.realtime.recap import HEADER
from telephony_agent.realtime.session_config import SessionConfig, VadConfig

CHUNK = 960  # 20 ms of PCM16 at 24 kHz


def make(*, vad: bool = True, **kwargs: Any) -> RealtimeProtocol:
    config = SessionConfig(instructions="Be brief.", vad=VadConfig() if vad else None)
    return RealtimeProtocol(config, Dialect.GA, **kwargs)


def feed(p: RealtimeProtocol, kind: str, **fields: Any) -> list[ServerEvent]:
    return p.feed(json.dumps({"type": kind, **fields}))


def ready(p: RealtimeProtocol) -> None:
    feed(p, "session.created", session={})
    feed(p, "session.updated", session={})


def speak(p: RealtimeProtocol, chunks: int, fill: int = 1) -> bytes:
    audio = bytes([fill]) * (CHUNK * chunks)
    assert len(p.append_audio(audio)) == chunks
    return audio


def question(p: RealtimeProtocol, item: str = "u1", words: str | None = None) -> bytes:
    """Silence, then the caller's question as server VAD reports it."""
    speak(p, 100, fill=0)  # two seconds of silence before
    feed(p, "input_audio_buffer.speech_started", audio_start_ms=2000, item_id=item)
    audio = speak(p, 50, fill=7)
    feed(p, "input_audio_buffer.speech_stopped", audio_end_ms=3000, item_id=item)
    feed(p, "input_audio_buffer.committed", item_id=item, previous_item_id=None)
    if words is not None:
        feed(
            p,
            "conversation.item.input_audio_transcription.completed",
            item_id=item,
            transcript=words,
        )
    return audio


def answer_starts(p: RealtimeProtocol, rid: str = "r1", item: str = "a1", ms: int = 400) -> None:
    feed(p, "response.created", response={"id": rid, "status": "in_progress"})
    feed(
        p,
        "response.output_audio_transcript.delta",
        response_id=rid,
        item_id=item,
        delta="Your table is booked for eight.",
    )
    feed(
        p,
        "response.output_audio.delta",
        response_id=rid,
        item_id=item,
        delta=base64.b64encode(bytes(48 * ms)).decode(),
    )


def reconnect(p: RealtimeProtocol) -> list[dict[str, Any]]:
    p.connection_lost()
    p.connection_opened()
    ready(p)
    return [json.loads(f) for f in p.resume_messages()]


def replayed(frames: list[dict[str, Any]]) -> bytes:
    return b"".join(
        base64.b64decode(f["audio"]) for f in frames if f["type"] == "input_audio_buffer.append"
    )


def recap_of(frames: list[dict[str, Any]]) -> list[str]:
    messages = [f for f in frames if f["type"] == "conversation.item.create"]
    if not messages:
        return []
    text: str = messages[0]["item"]["content"][0]["text"]
    assert text.startswith(HEADER)
    return text.splitlines()[1:]


def types(frames: list[dict[str, Any]]) -> list[str]:
    return [f["type"] for f in frames]


def test_a_question_lost_before_any_answer_is_sent_again() -> None:
    p = make()
    ready(p)
    feed(p, "response.created", response={"id": "r0", "status": "in_progress"})
    feed(
        p,
        "response.output_audio_transcript.done",
        response_id="r0",
        item_id="a0",
        transcript="Hello!",
    )
    feed(p, "response.done", response={"id": "r0", "status": "completed"})
    spoken = question(p, words="Is there a table for four?")
    frames = reconnect(p)
    # The recap has the greeting but not the question: its audio says it again.
    assert recap_of(frames) == ["Agent: Hello!"]
    audio = replayed(frames)
    assert spoken in audio
    assert len(audio) <= len(spoken) + CHUNK * 150  # what came before, bounded by the kept lead
    # Server VAD answers the replayed question by itself: no commit, no create from us.
    assert types(frames)[-1] == "input_audio_buffer.append"
    assert p.stats["audio_ms_replayed"] == len(audio) // CHUNK * 20


def test_manual_turns_commit_and_ask_after_the_replay() -> None:
    p = make(vad=False)
    ready(p)
    spoken = speak(p, 30, fill=5)
    p.commit()
    frames = reconnect(p)
    assert replayed(frames) == spoken
    assert types(frames)[-2:] == ["input_audio_buffer.commit", "response.create"]


def test_an_answer_the_caller_heard_is_not_asked_again() -> None:
    p = make()
    ready(p)
    question(p, words="Is there a table for four?")
    answer_starts(p, ms=400)
    p.connection_lost()
    assert p.truncate("a1", 200) is None  # heard half of what arrived; no link to send on
    p.connection_opened()
    ready(p)
    frames = [json.loads(f) for f in p.resume_messages()]
    assert recap_of(frames) == ["Caller: Is there a table for four?", "Agent: Your table is…"]
    assert "response.create" not in types(frames)
    assert len(replayed(frames)) <= CHUNK * 50  # only the lead: the question was answered


def test_an_answer_nobody_heard_leaves_the_question_owed() -> None:
    p = make()
    ready(p)
    spoken = question(p, words="Is there a table for four?")
    answer_starts(p, ms=60)
    p.connection_lost()
    p.truncate("a1", 0)  # the pre-roll never started playing
    p.connection_opened()
    ready(p)
    frames = [json.loads(f) for f in p.resume_messages()]
    assert recap_of(frames) == []  # neither the replayed question nor the unheard answer
    assert spoken in replayed(frames)


def test_without_a_report_received_audio_counts_as_heard() -> None:
    p = make()
    ready(p)
    question(p)
    answer_starts(p)
    frames = reconnect(p)
    assert len(replayed(frames)) <= CHUNK * 50


def test_a_lost_greeting_is_never_asked_again() -> None:
    p = make()
    ready(p)
    assert p.create_response("Greet the caller, saying: Hello") is not None
    feed(p, "response.created", response={"id": "r1", "status": "in_progress"})
    frames = reconnect(p)
    assert "response.create" not in types(frames)


def test_a_tool_result_while_reconnecting_reaches_the_recap_and_one_answer() -> None:
    p = make()
    ready(p)
    question(p, words="Book it.")
    feed(p, "response.created", response={"id": "r1", "status": "in_progress"})
    call = {"type": "function_call", "id": "f1", "call_id": "c1", "name": "make_booking"}
    feed(p, "response.output_item.added", response_id="r1", output_index=0, item=call)
    feed(
        p,
        "response.function_call_arguments.done",
        response_id="r1",
        item_id="f1",
        call_id="c1",
        name="make_booking",
        arguments="{}",
    )
    feed(p, "response.done", response={"id": "r1", "status": "completed"})
    assert p.busy  # the tool runs: no rollover now
    p.connection_lost()
    p.function_output("c1", '{"reference": "AB12"}')  # the tool finished meanwhile
    p.defer_response()  # the Call asks for the follow-up while reconnecting
    p.connection_opened()
    ready(p)
    frames = [json.loads(f) for f in p.resume_messages()]
    assert recap_of(frames)[-1] == 'Tool make_booking returned: {"reference": "AB12"}'
    assert types(frames).count("response.create") == 1


def test_a_result_for_a_call_of_a_dead_connection_goes_as_a_message() -> None:
    p = make()
    ready(p)
    feed(p, "response.created", response={"id": "r1", "status": "in_progress"})
    feed(
        p,
        "response.function_call_arguments.done",
        response_id="r1",
        item_id="f1",
        call_id="c1",
        name="lookup",
        arguments="{}",
    )
    reconnect(p)
    sent = json.loads(p.function_output("c1", "42"))
    assert sent["item"]["type"] == "message"
    assert sent["item"]["content"][0]["text"] == "Tool lookup returned: 42"
    # A call id the session never saw is passed through unchanged.
    assert json.loads(p.function_output("c9", "1"))["item"]["type"] == "function_call_output"


def test_the_replay_is_bounded() -> None:
    p = make(replay_max_ms=2000)
    ready(p)
    feed(p, "input_audio_buffer.speech_started", audio_start_ms=0, item_id="u1")
    speak(p, 500)  # ten seconds of talking
    frames = reconnect(p)
    assert len(replayed(frames)) == CHUNK * 100


def test_a_caller_mid_sentence_is_replayed_from_just_before_they_started() -> None:
    p = make(replay_lead_ms=200)
    ready(p)
    speak(p, 100, fill=0)
    feed(p, "input_audio_buffer.speech_started", audio_start_ms=2000, item_id="u1")
    spoken = speak(p, 20, fill=9)
    assert not p.quiet
    frames = reconnect(p)
    assert replayed(frames) == bytes(CHUNK * 10) + spoken


def test_audio_while_no_connection_is_live_is_replayed() -> None:
    p = make(replay_lead_ms=0)
    ready(p)
    p.connection_lost()
    p.hold_audio(bytes([3]) * CHUNK * 5)
    p.connection_opened()
    ready(p)
    frames = [json.loads(f) for f in p.resume_messages()]
    assert replayed(frames) == bytes([3]) * CHUNK * 5
    assert p.stats["audio_bytes_held"] == CHUNK * 5


def test_quiet_only_when_nothing_is_owed_or_in_flight() -> None:
    p = make()
    ready(p)
    assert p.quiet and not p.busy
    question(p)
    assert not p.quiet  # committed, the answer not started yet
    answer_starts(p)
    assert p.busy and not p.quiet
    feed(p, "response.done", response={"id": "r1", "status": "completed"})
    assert p.quiet and not p.busy
    p.add_message("user", "The caller typed: 1 2 #")
    assert not p.quiet
