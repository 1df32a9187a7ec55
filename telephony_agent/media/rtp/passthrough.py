"""G.711 payloads handed on as received: cut into 20 ms frames, gaps filled, never decoded.

Why: a model that takes G.711 (`audio/pcmu`, `audio/pcma`) hears the caller's own bytes
when nothing decodes, resamples or re-encodes them, which also costs the least. The
inbound stream still orders packets and declares losses exactly as for PCM; this class
does the byte-side of the rest. G.711 is one byte per sample, so re-framing a 30 or 40 ms
packet is slicing. A loss is concealed like the PCM path does it: the first 20 ms repeat
the last frame fading out (decoded, ramped and re-encoded: only on a loss), the rest is
the law's encoded silence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from telephony_agent.audio.g711 import SILENCE_CODE, G711Law, g711_decode, g711_encode

__all__ = ["G711Frames", "ReceivedPayload"]


@dataclass(frozen=True, slots=True)
class ReceivedPayload:
    """One 20 ms frame of G.711 codes as received; `concealed` when filled for a loss."""

    payload: bytes
    law: G711Law
    concealed: bool


class G711Frames:
    """Payload bytes of one law in, exact 20 ms frames of the same bytes out."""

    def __init__(self, law: G711Law, frame_bytes: int) -> None:
        self.law: G711Law = law
        self.frame_bytes = frame_bytes
        self._silence = bytes([SILENCE_CODE[law]]) * frame_bytes
        self._fade = np.linspace(1.0, 0.0, frame_bytes, dtype=np.float32)
        self._pending = b""
        self._last: bytes | None = None

    @property
    def silence_frame(self) -> bytes:
        """One frame of the law's encoded silence (for an empty payload)."""
        return self._silence

    def frames(self, payload: bytes, *, concealed: bool = False) -> list[ReceivedPayload]:
        """The whole frames now available; a remainder waits for the next payload."""
        n = self.frame_bytes
        if not self._pending and len(payload) == n:
            if not concealed:
                self._last = payload
            return [ReceivedPayload(payload, self.law, concealed)]
        data = self._pending + payload
        whole = len(data) - len(data) % n
        self._pending = data[whole:]
        out = [ReceivedPayload(data[i : i + n], self.law, concealed) for i in range(0, whole, n)]
        if out and not concealed:
            self._last = out[-1].payload
        return out

    def conceal(self, samples: int) -> list[ReceivedPayload]:
        """Bytes for `samples` of lost audio: the last frame fading out, then silence."""
        if samples <= 0:
            return []
        fill = bytearray(self._silence * (samples // self.frame_bytes + 1))[:samples]
        last = self._last
        if last is not None:
            head = min(samples, len(last))
            pcm = (g711_decode(last[:head], self.law) * self._fade[:head]).astype(np.int16)
            fill[:head] = g711_encode(pcm, self.law).tobytes()
        return self.frames(bytes(fill), concealed=True)

    def flush(self) -> list[ReceivedPayload]:
        """The remainder padded with silence to a whole frame (the stream is ending)."""
        if not self._pending:
            return []
        pad = self._silence[: self.frame_bytes - len(self._pending)]
        return self.frames(pad)

    def reset(self) -> None:
        """Forget the remainder and the last frame (the source restarts)."""
        self._pending = b""
        self._last = None
