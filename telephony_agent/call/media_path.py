"""How audio crosses between a call's leg and its model, both ways, and into a recording.

Why its own piece: which conversions a call needs is decided once, at its start, from
the leg and the format the session agreed with the provider, and the bridge should not
care. Three paths:

* `pcm`: caller PCM at the leg rate → 24 kHz PCM16 for the model; the model's PCM16 →
  the leg rate (`Playback`).
* `g711_passthrough`: an 8 kHz G.711 leg and a session in the same law: the caller's
  payload bytes go to the model as they came, and the model's bytes come back to the
  leg as they came (`G711Playback`). Nothing decodes, resamples or encodes, except a
  frame of the other law after a re-INVITE (PCMU <-> PCMA) and a recording, which
  decodes through the G.711 table.
* `g711_transcoded`: a G.711 session on a leg that cannot hand over G.711 (not 8 kHz):
  the caller's PCM is resampled to 8 kHz and encoded, the model's G.711 decoded and
  resampled. Only a misconfiguration leads here; the call still works.

A recording reads the frames' PCM (decoded on first use) through the Call's
`RecordingFeed`, so passthrough pays for decoding only when the call is recorded.
"""

from __future__ import annotations

from typing import Literal

from telephony_agent.audio.g711 import G711Law, g711_encode
from telephony_agent.audio.resample import InboundResampler
from telephony_agent.call.playback import G711_RATE, G711Playback, Playback
from telephony_agent.media.leg import AudioIn, MediaLeg

__all__ = ["MODEL_INPUT_RATE", "MediaPath"]

#: The PCM rate every provider takes from us.
MODEL_INPUT_RATE = 24000

PathKind = Literal["pcm", "g711_passthrough", "g711_transcoded"]
_LAWS: dict[str, G711Law] = {"pcmu": "pcmu", "pcma": "pcma"}


class MediaPath:
    """The conversions of one call (see the module docstring)."""

    def __init__(
        self,
        leg: MediaLeg,
        audio_format: str,
        model_rate: int,
        *,
        preroll_ms: int = 0,
    ) -> None:
        law = _LAWS.get(audio_format)
        self.law: G711Law | None = law
        self.playback: Playback | G711Playback
        self._inbound: InboundResampler | None
        if law is None:
            self.kind: PathKind = "pcm"
            self._inbound = InboundResampler(leg.sample_rate, MODEL_INPUT_RATE)
            self.playback = Playback(model_rate, leg.sample_rate, preroll_ms=preroll_ms)
        elif leg.sample_rate == G711_RATE:
            self.kind = "g711_passthrough"
            self._inbound = None
            leg.deliver_g711()
            self.playback = G711Playback(law, preroll_ms=preroll_ms)
        else:
            self.kind = "g711_transcoded"
            self._inbound = InboundResampler(leg.sample_rate, G711_RATE)
            self.playback = Playback(
                G711_RATE, leg.sample_rate, preroll_ms=preroll_ms, model_law=law
            )

    def uplink(self, event: AudioIn) -> bytes:
        """What to append to the session for one caller frame (possibly nothing yet)."""
        law = self.law
        if law is not None and self._inbound is None:
            if event.payload is not None and event.law == law:
                return event.payload
            return g711_encode(event.pcm, law).tobytes()
        assert self._inbound is not None
        pcm = self._inbound.process(event.pcm)
        if not pcm.size:
            return b""
        if law is not None:
            return g711_encode(pcm, law).tobytes()
        return pcm.astype("<i2", copy=False).tobytes()
