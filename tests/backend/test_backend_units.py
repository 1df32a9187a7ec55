"""The backend's sans-I/O pieces, driven directly with fake time: no sockets, no sleeps."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephony_agent.realtime.backend import BackendOptions, BackendStats, ScriptError
from telephony_agent.realtime.backend.behaviours import load_script, parse_script, tone
from telephony_agent.realtime.backend.input_buffer import InputBuffer
from telephony_agent.realtime.backend.outbox import CloseConnection
from telephony_agent.realtime.backend.response import split_audio, split_text
from telephony_agent.realtime.backend.server import authorised, model_from_path
from telephony_agent.realtime.backend.session import BackendSession
from telephony_agent.realtime.backend.session_config import (
    ConfigError,
    SessionConfig,
    apply_update,
)
from telephony_agent.realtime.backend.vad import EnergyVad, VadEvent
from telephony_agent.realtime.backend.wire_dialect import wire_dialect

from .backend_wire import RATE, silence, speech_like

# -- VAD ------------------------------------------------------------------------------

SIGNAL = np.concatenate(
    [silence(300), speech_like(500, 1), silence(700), speech_like(400, 2), silence(600)]
)


def _vad_events(chunks: list[int]) -> list[VadEvent]:
    vad = EnergyVad(RATE, -45.0, 500)
    events: list[VadEvent] = []
    position = 0
    for size in chunks:
        events += vad.feed(SIGNAL[position : position + size])
        position += size
    events += vad.feed(SIGNAL[position:])
    return events


def test_vad_finds_each_utterance_and_its_end() -> None:
    events = _vad_events([])
    assert [e.kind for e in events] == ["start", "stop", "start", "stop"]
    ms = [e.sample * 1000 // RATE for e in events]
    assert ms[0] == 300
    assert ms[1] == 300 + 500 + 500  # end of speech + silence_duration_ms
    assert ms[2] == 1500
    assert ms[3] == 1500 + 400 + 500


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=4000), max_size=30))
def test_vad_does_not_depend_on_chunking(chunks: list[int]) -> None:
    assert _vad_events(chunks) == _vad_events([])


def test_vad_ignores_clicks_and_silence() -> None:
    vad = EnergyVad(RATE, -45.0, 200)
    click = np.concatenate([silence(200), speech_like(40), silence(500)])
    assert vad.feed(click) == []
    assert vad.feed(np.full(RATE, 50, dtype=np.int16)) == []  # -56 dBFS hum


# -- chunking -------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=200_000), st.booleans())
def test_split_audio_covers_every_byte(nbytes: int, fragment: bool) -> None:
    sizes = split_audio(nbytes, 1920, fragment)
    assert sum(sizes) == nbytes
    assert all(size >= 0 for size in sizes)
    if not fragment:
        assert all(size == 1920 for size in sizes[:-1])


@given(st.integers(min_value=2_000, max_value=500_000))
def test_fragment_mode_has_every_edge_case(nbytes: int) -> None:
    sizes = split_audio(nbytes, 1920, True)
    assert len(sizes) >= 200
    assert sizes[:2] == [0, 1]
    ends = np.cumsum(sizes)
    assert (ends % 2 == 1).sum() >= 2  # more than one delta ends mid-sample


@given(st.text(max_size=200), st.integers(min_value=1, max_value=50), st.booleans())
def test_split_text_is_lossless(text: str, pieces: int, fragment: bool) -> None:
    parts = split_text(text, pieces, fragment)
    assert "".join(parts) == text
    if fragment:
        assert all(len(p) == 1 for p in parts)


# -- input buffer ---------------------------------------------------------------------


def test_input_buffer_keeps_absolute_positions() -> None:
    buf = InputBuffer()
    buf.append(np.arange(100, dtype=np.int16))
    buf.append(np.arange(100, 200, dtype=np.int16))
    buf.drop_before(50)
    assert (buf.start, buf.end, len(buf)) == (50, 200, 150)
    head = buf.take(120)
    assert head.tolist() == list(range(50, 120))
    assert buf.take_all().tolist() == list(range(120, 200))
    buf.clear()
    assert (buf.start, len(buf)) == (200, 0)


# -- session config -------------------------------------------------------------------


def _config() -> SessionConfig:
    return SessionConfig(id="sess_1", model="m", expires_at=0)


def test_ga_update_is_a_patch() -> None:
    config = apply_update(_config(), {"type": "realtime", "instructions": "hi"})
    config = apply_update(
        config,
        {
            "audio": {
                "input": {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}},
                "output": {"format": {"type": "audio/pcm", "rate": 48000}, "role": "good"},
            }
        },
    )
    assert config.instructions == "hi"
    assert config.output_rate == 48000
    assert config.turn_detection is not None
    assert config.turn_detection.silence_duration_ms == 250
    rendered = config.render(wire_dialect("ga"))
    assert rendered["audio"]["output"]["role"] == "good"
    assert rendered["audio"]["input"]["turn_detection"]["eagerness"] == "high"


def test_beta_update_and_beta_echo() -> None:
    config = apply_update(
        _config(),
        {"modalities": ["text"], "input_audio_format": "pcm16", "turn_detection": None},
    )
    assert config.output_modalities == ("text",)
    assert config.turn_detection is None
    rendered = config.render(wire_dialect("beta"))
    assert rendered["modalities"] == ["text"]
    assert rendered["input_audio_format"] == "pcm16"
    assert "audio" not in rendered


@pytest.mark.parametrize(
    ("update", "param"),
    [
        ({"type": "transcription"}, "session.type"),
        (
            {"audio": {"input": {"format": {"type": "audio/ogg"}}}},
            "session.audio.input.format.type",
        ),
        ({"audio": {"output": {"format": {"rate": 22050}}}}, "session.audio.output.format.rate"),
        ({"output_audio_format": "mp3"}, "session.output_audio_format"),
        (
            {"audio": {"input": {"turn_detection": {"type": "magic"}}}},
            "session.audio.input.turn_detection.type",
        ),
        (
            {"turn_detection": {"silence_duration_ms": -5}},
            "session.turn_detection.silence_duration_ms",
        ),
        ({"output_modalities": []}, "session.output_modalities"),
        ({"audio": {"output": {"speed": 3}}}, "session.audio.output.speed"),
    ],
)
def test_bad_updates_name_the_parameter(update: dict[str, Any], param: str) -> None:
    with pytest.raises(ConfigError) as info:
        apply_update(_config(), update)
    assert info.value.param == param


@pytest.mark.parametrize("kind", ["audio/pcmu", "audio/pcma"])
def test_g711_is_taken_both_ways_unless_refused(kind: str) -> None:
    update = {"audio": {"input": {"format": {"type": kind}}, "output": {"format": {"type": kind}}}}
    config = apply_update(_config(), update)
    assert (config.input_rate, config.effective_output_rate) == (8000, 8000)
    assert config.input_format.sample_bytes == config.output_format.sample_bytes == 1
    echo = config.render(wire_dialect("ga"))["audio"]
    assert echo["input"]["format"] == echo["output"]["format"] == {"type": kind}
    # The Yandex dialect documents PCM only.
    with pytest.raises(ConfigError) as info:
        apply_update(_config(), update, g711=False)
    assert info.value.param == "session.audio.input.format.type"
    assert "audio/pcm" in info.value.message


def test_beta_g711_names_are_taken() -> None:
    config = apply_update(_config(), {"input_audio_format": "g711_alaw"})
    assert config.input_format.law == "pcma"
    assert config.render(wire_dialect("beta"))["input_audio_format"] == "g711_alaw"


# -- options and scripts --------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"behaviour": "script"},
        {"session_updated_count": 3},
        {"realtime_factor": 0.0},
        {"close_mid_response_code": 1006},
        {"close_mid_question_code": 1006},
        {"close_mid_question_code": 1011, "close_mid_question_at": "answered"},
        {"close_on_connect": (1005, "x")},
        {"output_rate": 22050},
        {"dialect": "klingon"},
    ],
)
def test_bad_options_fail_at_construction(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        BackendOptions(**kwargs)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"turns": []}, "non-empty"),
        ([{"say": 5}], "'say' must be a string"),
        ([{"say": "x", "tone_ms": -1}], "tone_ms"),
        ([{"function_calls": [{"arguments": {}}]}], "non-empty 'name'"),
        ([{}], "says nothing"),
        (["hello"], "must be an object"),
    ],
)
def test_script_errors_name_the_turn(raw: Any, message: str) -> None:
    with pytest.raises(ScriptError, match=message):
        parse_script(raw)


def test_load_script_reports_missing_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ScriptError, match="cannot read script"):
        load_script(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ScriptError, match="not JSON"):
        load_script(bad)
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"say": "hi", "function_calls": [{"name": "f"}]}]))
    (turn,) = load_script(good)
    assert turn.tone_ms == 800
    assert turn.function_calls[0].arguments == "{}"


# -- handshake checks -----------------------------------------------------------------


def test_authorisation_header_forms() -> None:
    assert authorised("Bearer k1", "k1")
    assert authorised("Api-Key k1", "k1")
    assert authorised("api-key  k1 ", "k1")
    assert not authorised("Basic k1", "k1")
    assert not authorised("Bearer k12", "k1")
    assert not authorised(None, "k1")


def test_model_from_query() -> None:
    assert model_from_path("/v1/realtime?model=gpt-realtime-2") == "gpt-realtime-2"
    assert model_from_path("/anything") == "gpt-realtime"


# -- the session with fake time -------------------------------------------------------


class Harness:
    def __init__(self, **options: Any) -> None:
        self.stats = BackendStats()
        self.session = BackendSession(BackendOptions(**options), self.stats)
        self.now = 0.0
        self.sent: list[tuple[float, dict[str, Any]]] = []
        self.closed: CloseConnection | None = None
        self.session.start(self.now)
        self.pump()

    def send(self, kind: str, **fields: Any) -> None:
        self.session.receive_text(json.dumps({"type": kind, **fields}))
        self.pump()

    def pump(self) -> float | None:
        frames, deadline = self.session.poll(self.now)
        for frame in frames:
            if isinstance(frame, CloseConnection):
                self.closed = frame
            elif isinstance(frame, str):
                self.sent.append((self.now, json.loads(frame)))
        return deadline

    def run_until(self, end: float) -> None:
        """Advance fake time deadline by deadline (never past `end`)."""
        while True:
            deadline = self.pump()
            if deadline is None or deadline > end:
                self.now = end
                self.pump()
                return
            self.now = max(self.now, deadline)

    def of(self, kind: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, e) for t, e in self.sent if e["type"] == kind]


def test_audio_deltas_are_paced_at_the_realtime_factor() -> None:
    h = Harness(behaviour="tone", realtime_factor=2.0, delta_ms=100)
    h.send("response.create")
    h.run_until(10.0)
    times = [t for t, _ in h.of("response.output_audio.delta")]
    assert len(times) == 10
    assert times[0] == 0.0
    assert np.allclose(np.diff(times), 0.05)
    done_at = h.of("response.done")[0][0]
    assert done_at == pytest.approx(times[-1])


def test_first_delta_delay_with_fake_time() -> None:
    h = Harness(behaviour="tone", realtime_factor=2.0, first_delta_delay_s=20.0)
    h.send("response.create")
    h.run_until(19.9)
    assert h.of("response.created")
    assert not h.of("response.output_audio.delta")
    h.run_until(20.0)
    assert len(h.of("response.output_audio.delta")) == 1


def test_cancel_mid_stream_closes_what_was_seen() -> None:
    h = Harness(behaviour="tone", realtime_factor=2.0, delta_ms=100)
    h.send("response.create")
    h.run_until(0.1)  # three deltas out: 0.0, 0.05, 0.10
    item_id = h.of("response.output_audio.delta")[0][1]["item_id"]
    h.send("conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=301)
    assert h.of("error")[-1][1]["error"]["message"].startswith("Audio content of 300ms")
    h.send("response.cancel")
    h.run_until(10.0)
    assert len(h.of("response.output_audio.delta")) == 3
    after_cancel = [e["type"] for _, e in h.sent[-6:]]
    assert after_cancel == [
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    h.send("conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=300)
    assert h.of("conversation.item.truncated")
    assert h.stats.rejected_truncates == 1


def test_speech_overtakes_a_streaming_response() -> None:
    h = Harness(behaviour="tone", realtime_factor=1.0, auto_cancel_on_speech=False)
    h.send(
        "session.update",
        session={"audio": {"input": {"turn_detection": {"type": "server_vad"}}}},
    )
    h.send("response.create")
    h.run_until(0.2)
    speech = speech_like(200, 4)
    h.send("input_audio_buffer.append", audio=base64.b64encode(speech.tobytes()).decode())
    started_at = h.of("input_audio_buffer.speech_started")[0][0]
    h.run_until(0.5)
    later = [t for t, _ in h.of("response.output_audio.delta") if t > started_at]
    assert later  # case B: old deltas keep coming after speech_started
    assert h.stats.barge_ins == 1


def test_session_expiry_with_fake_time() -> None:
    h = Harness(session_expire_after_s=3600.0)
    h.run_until(3599.0)
    assert h.closed is None
    h.run_until(3600.0)
    assert h.of("error")[0][1]["error"]["message"] == (
        "Your session hit the maximum duration of 60 minutes."
    )
    assert h.closed == CloseConnection(1001, "session_expired")


def test_odd_byte_appends_are_reassembled() -> None:
    h = Harness()
    h.send("session.update", session={"audio": {"input": {"turn_detection": None}}})
    pcm = tone(300.0, 200, RATE).tobytes()
    for i in range(0, len(pcm), 333):
        h.send("input_audio_buffer.append", audio=base64.b64encode(pcm[i : i + 333]).decode())
    h.send("input_audio_buffer.commit")
    h.send("response.create")
    h.run_until(5.0)
    echoed = b"".join(base64.b64decode(e["delta"]) for _, e in h.of("response.output_audio.delta"))
    assert echoed == pcm
