"""What a call asks of the model, independent of the wire dialect.

Why separate from the dialect: the same intent (voice, VAD, tools, rates, audio format)
is rendered as a GA, beta or Yandex `session.update` by `dialect.session_payload`, so the
Call and the commands never build protocol JSON themselves.

Audio formats: `pcm` is PCM16 at `input_rate` / `output_rate`; `pcmu` and `pcma` are
G.711 at 8 kHz, one byte per sample, both ways. With G.711 the two rates are kept as
the PCM rates to fall back to when a provider refuses G.711 (see `pcm_fallback`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

AudioFormat = Literal["pcm", "pcmu", "pcma"]
VadType = Literal["server_vad", "semantic_vad"]
Eagerness = Literal["low", "medium", "high", "auto"]
NoiseReduction = Literal["near_field", "far_field"]

#: Sample rate of G.711 on every provider that accepts it.
G711_RATE = 8000
#: Bytes per sample on the wire.
SAMPLE_BYTES: dict[AudioFormat, int] = {"pcm": 2, "pcmu": 1, "pcma": 1}


@dataclass(frozen=True)
class VadConfig:
    """Turn detection knobs. `server_vad` uses threshold, padding and silence; the
    `semantic_vad` of OpenAI uses `eagerness` instead. Providers may ignore knobs they
    lack; the dialect builders leave out what a provider documents as unsupported."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True
    idle_timeout_ms: int | None = None
    type: VadType = "server_vad"
    eagerness: Eagerness | None = None


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call; `parameters` is a JSON schema object."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass
class SessionConfig:
    """The session configuration; `vad=None` means manual turns (commit + create).

    `extra` is merged deeply into the rendered `session` object last, for provider
    options this project does not model (e.g. Yandex `audio.output.role`).
    """

    instructions: str
    voice: str | None = None
    input_rate: int = 24000
    output_rate: int = 24000
    vad: VadConfig | None = field(default_factory=VadConfig)
    transcription_model: str | None = None
    #: Language hint for input transcription (e.g. "ru"); sent only with a model.
    transcription_language: str | None = None
    tools: list[ToolSpec] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    #: Audio on the wire both ways: PCM16, or G.711 passed through from the call.
    audio_format: AudioFormat = "pcm"
    noise_reduction: NoiseReduction | None = None

    @property
    def g711(self) -> bool:
        return self.audio_format != "pcm"

    @property
    def wire_input_rate(self) -> int:
        """Sample rate of the audio we append."""
        return G711_RATE if self.g711 else self.input_rate

    @property
    def wire_output_rate(self) -> int:
        """Sample rate of the audio we ask the model to send."""
        return G711_RATE if self.g711 else self.output_rate

    @property
    def sample_bytes(self) -> int:
        return SAMPLE_BYTES[self.audio_format]

    def pcm_fallback(self) -> SessionConfig:
        """The same session with PCM16 audio, for a provider that refused G.711."""
        return replace(self, audio_format="pcm")
