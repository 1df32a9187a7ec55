"""What a call asks of the model, independent of the wire dialect.

Why separate from the dialect: the same intent (voice, VAD, tools, rates) is rendered
as a GA, beta or Yandex `session.update` by `dialect.session_payload`, so the Call and
the commands never build protocol JSON themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class VadConfig:
    """Server VAD knobs (`server_vad`). Providers may ignore the ones they lack."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True
    idle_timeout_ms: int | None = None


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
