"""The audio formats the backend takes and sends: PCM16 at a rate, or G.711 at 8 kHz.

Why a module: the session decodes what a client appends (for its VAD and behaviours)
and encodes what it streams back, and both directions must agree on bytes per sample,
which is what truncation and the audio durations it reports depend on. OpenAI accepts
`audio/pcmu` and `audio/pcma` both ways in the GA shape (`g711_ulaw`/`g711_alaw` in
beta); Yandex documents PCM only, so the Yandex dialect refuses G.711.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from telephony_agent.audio.g711 import G711Law, g711_decode, g711_encode
from telephony_agent.realtime.backend.input_buffer import Pcm16Joiner

FormatType = Literal["audio/pcm", "audio/pcmu", "audio/pcma"]
G711_TYPES: dict[str, G711Law] = {"audio/pcmu": "pcmu", "audio/pcma": "pcma"}
BETA_NAMES: dict[str, FormatType] = {
    "pcm16": "audio/pcm",
    "g711_ulaw": "audio/pcmu",
    "g711_alaw": "audio/pcma",
}
G711_RATE = 8000


@dataclass(frozen=True)
class WireFormat:
    """One direction's audio format; `rate` is 8000 for G.711."""

    type: FormatType = "audio/pcm"
    rate: int = 24000

    @property
    def law(self) -> G711Law | None:
        return G711_TYPES.get(self.type)

    @property
    def sample_bytes(self) -> int:
        return 1 if self.law is not None else 2

    def to_wire(self) -> dict[str, Any]:
        """As sessions echo it: G.711 has no rate field."""
        if self.law is not None:
            return {"type": self.type}
        return {"type": self.type, "rate": self.rate}

    def beta_name(self) -> str:
        return next(name for name, kind in BETA_NAMES.items() if kind == self.type)

    def encode(self, pcm: NDArray[np.int16]) -> bytes:
        """Samples at `rate` → the bytes this format streams."""
        law = self.law
        if law is not None:
            return g711_encode(pcm, law).tobytes()
        return pcm.astype("<i2").tobytes()


class InputDecoder:
    """Appended bytes → PCM16 for turn detection, for one input format.

    PCM16 appends may split a sample (the odd byte waits); G.711 is one byte a sample.
    """

    def __init__(self, fmt: WireFormat) -> None:
        self.format = fmt
        self._joiner = Pcm16Joiner()

    def decode(self, raw: bytes) -> NDArray[np.int16]:
        law = self.format.law
        if law is not None:
            return g711_decode(raw, law)
        return self._joiner.join(raw)
