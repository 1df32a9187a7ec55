"""Every knob of the local Realtime backend in one frozen value.

The backend exists so that demos, tests and benchmarks can exercise a Realtime client
without an API key or a network, including every awkward thing a real provider does
(see the conformance cases of the protocol notes). Each awkward behaviour is one option
here, and the defaults describe a well-behaved OpenAI GA server, so a plain
``BackendOptions()`` is what a demo wants and each test switches on exactly one fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Behaviour = Literal["echo", "tone", "script", "booking", "continuous"]
BEHAVIOURS: tuple[Behaviour, ...] = ("echo", "tone", "script", "booking", "continuous")
DialectName = Literal["ga", "beta", "yandex"]
TranscriptTiming = Literal["before", "after", "never"]

SUPPORTED_RATES = (8000, 16000, 24000, 44100, 48000)


@dataclass(frozen=True)
class BackendOptions:
    """Configuration of one running backend; shared read-only by all its connections."""

    behaviour: Behaviour = "echo"
    """echo: answer with the caller's committed speech; tone: ~1 s of `tone_hz`;
    script: the turns of `script_path` (JSON), including function calls; booking: the
    restaurant booking line in recorded speech, with `check_availability`,
    `make_booking` and `end_call` tool calls (`booking_behaviour.py`); continuous: talks
    without pause from the first `session.update` on, response after response of the
    packaged sample speech, never waiting for the caller, and logs every append's arrival
    for `telephony-agent bench` (`continuous.py`)."""
    script_path: Path | None = None
    dialect: DialectName = "ga"
    """Event names on the wire: OpenAI GA, beta (`response.audio.delta`, …) or Yandex
    (`output_text.*` as the transcript, `conversation.item.created`, no rate limits),
    which also behaves as Yandex documents it: `session.updated` twice, PCM only (G.711
    refused), no idle timeout, buffer clears refused."""
    models: tuple[str, ...] | None = None
    """Models this backend serves (None: any). A connection asking for another one gets
    the dialect's model-not-found error (Yandex: `NOT_FOUND: Instance with model …
    not found` as a `server_error`) and a close 1011, as from a provider whose model is
    gone."""
    capture: bool = False
    """Keep every byte appended, every byte of audio streamed and every `session` object
    received (`BackendStats`), so a test can check G.711 passthrough byte for byte and a
    dialect's session shape as the server saw it."""
    require_api_key: str | None = None
    """If set, the upgrade gets HTTP 401 unless `Authorization` is `Bearer <key>` or
    `Api-Key <key>` (scheme case-insensitive)."""
    realtime_factor: float = 4.0
    """Response audio is streamed this many times faster than real time."""
    delta_ms: int = 40
    """Audio per `response.output_audio.delta`."""
    fragment_edge_cases: bool = False
    """Case 2: 200+ deltas incl. an empty and a 1-byte one, PCM16 samples split across
    deltas, transcript and arguments one character per delta."""
    session_updated_count: int | None = None
    """Case 1: `session.updated` replies per `session.update` (0 = never); None: the
    dialect's own (two for Yandex, one otherwise)."""
    first_delta_delay_s: float = 0.0
    """Case 10: wait this long before the first delta of every response."""
    session_start_delay_s: float = 0.0
    """A slow provider: wait this long after the upgrade before `session.created`
    (lets a SIP caller hear ringing, or CANCEL, while the session connects)."""
    auto_cancel_on_speech: bool = True
    """Case 4: with `interrupt_response`, speech cancels the response (`turn_detected`);
    False keeps streaming the old response after `speech_started` (case B)."""
    close_mid_response_code: int | None = None
    """Case 8: close the socket with this code after `close_after_deltas` audio deltas
    of the backend's first response, without an error event. Once per backend, so a
    client that reconnects is then served normally."""
    close_after_deltas: int = 3
    close_mid_question_code: int | None = None
    """Close the socket with this code, without an error event, while the backend's
    first caller turn is unanswered: at its `speech_started` (the caller is mid-sentence)
    or right after it is committed, before any response starts (`close_mid_question_at`).
    Once per backend, like `close_mid_response_code`."""
    close_mid_question_at: Literal["speech_started", "committed"] = "committed"
    session_expire_after_s: float | None = None
    """Case 8: `session_expired` error, then close 1001, this long after connecting."""
    close_on_connect: tuple[int, str] | None = None
    """Case 8: close with (code, reason) right after the upgrade, before anything else."""
    reject_beta_shape: bool = False
    """Case 8: a beta-shaped `session.update` gets `beta_api_shape_disabled` + close 4000."""
    inject_errors: bool = False
    """Case 7: after the first response an unsolicited `input_audio_buffer_commit_empty`,
    then the next append is rejected (`invalid_value`, param `audio`, its event_id), and
    the second response ends `failed`."""
    junk_frames: bool = False
    """Case 8: a non-JSON text frame and a binary frame right after `session.created`."""
    unknown_events: bool = False
    """Case 9: `foo.bar`, `response.mcp_call.in_progress`, `output_audio_buffer.started`,
    events the dialect would omit, and an extra field on every event."""
    transcript_timing: TranscriptTiming = "before"
    """Case 9: input transcript before the response, after its `response.done`, or never."""
    ignore_pings: bool = False
    """Case 10: websocket PINGs are never answered."""
    keep_input_audio: bool = False
    """Keep every connection's received caller audio in `stats.input_audio` (tests
    measure what reached the server across reconnects and rollovers)."""
    output_rate: int | None = None
    """Force this output rate whatever the client asks (default: honour
    `audio.output.format.rate`, 24000 if absent)."""
    vad_threshold_dbfs: float = -45.0
    """Energy VAD level. The session's `silence_duration_ms`, `prefix_padding_ms` and
    `idle_timeout_ms` are honoured; its 0..1 `threshold` is echoed but not used."""
    tone_hz: float = 440.0

    def serves(self, model: str) -> bool:
        """`models` names `model` (alone, or as the last part of a Yandex `gpt://folder/model`
        URI), or no list is set."""
        known = self.models
        return known is None or any(model == m or model.endswith("/" + m) for m in known)

    def __post_init__(self) -> None:
        # Fail at construction with the name of the bad knob: a typo in a CLI flag or a
        # test must not turn into a server that silently behaves differently.
        if self.behaviour not in BEHAVIOURS:
            raise ValueError(
                "behaviour must be echo, tone, script, booking or continuous,"
                f" not {self.behaviour!r}"
            )
        if self.behaviour == "script" and self.script_path is None:
            raise ValueError("behaviour 'script' needs script_path")
        if self.dialect not in ("ga", "beta", "yandex"):
            raise ValueError(f"dialect must be ga, beta or yandex, not {self.dialect!r}")
        if not self.realtime_factor > 0:
            raise ValueError("realtime_factor must be > 0")
        if not 1 <= self.delta_ms <= 10_000:
            raise ValueError("delta_ms must be between 1 and 10000")
        if self.session_updated_count is not None and not 0 <= self.session_updated_count <= 2:
            raise ValueError("session_updated_count must be 0, 1 or 2")
        if self.session_start_delay_s < 0:
            raise ValueError("session_start_delay_s must be >= 0")
        if self.first_delta_delay_s < 0:
            raise ValueError("first_delta_delay_s must be >= 0")
        if self.close_after_deltas < 0:
            raise ValueError("close_after_deltas must be >= 0")
        if self.session_expire_after_s is not None and not self.session_expire_after_s > 0:
            raise ValueError("session_expire_after_s must be > 0")
        if self.transcript_timing not in ("before", "after", "never"):
            raise ValueError("transcript_timing must be before, after or never")
        if self.output_rate is not None and self.output_rate not in SUPPORTED_RATES:
            raise ValueError(f"output_rate must be one of {SUPPORTED_RATES}")
        if not 0 < self.tone_hz < 4000:
            raise ValueError("tone_hz must be between 0 and 4000")
        if self.close_mid_question_at not in ("speech_started", "committed"):
            raise ValueError("close_mid_question_at must be speech_started or committed")
        codes = [self.close_mid_response_code, self.close_mid_question_code]
        if self.close_on_connect is not None:
            codes.append(self.close_on_connect[0])
        for code in codes:
            if code is not None and not _sendable_close_code(code):
                raise ValueError(f"{code} is not a close code a server may send")


def _sendable_close_code(code: int) -> bool:
    """1005/1006/1015 are reserved for reporting and may never appear on the wire."""
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014) or (
        3000 <= code <= 4999
    )
