"""What bench callers say, and what they should hear.

Callers speak the packaged sample speech looped, encoded once per codec (every caller
sends the same payloads; only headers differ), and compare what they hear with the
ideal rendering of what the continuous backend says: each response is the whole
sample at 24 kHz, resampled to the call's rate in one pass (soxr HQ) and, for G.711,
encoded and decoded, which is the best any bridge could deliver.
"""

from __future__ import annotations

import functools

import numpy as np
import soxr
from numpy.typing import NDArray

from telephony_agent.audio.g711 import G711Law, g711_decode, g711_encode
from telephony_agent.media.rtp.codecs import make_codec
from telephony_agent.realtime.backend.sample_speech import SAMPLE_RATE, sample_speech

CODECS = ("pcmu", "pcma", "g722", "opus")
"""The `--codec` choices, lower case; SDP names are `sdp_name(codec)`."""
_SDP_NAMES = {"pcmu": "PCMU", "pcma": "PCMA", "g722": "G722", "opus": "opus"}
_LAWS: dict[str, G711Law] = {"pcmu": "pcmu", "pcma": "pcma"}


def sdp_name(codec: str) -> str:
    return _SDP_NAMES[codec]


def codec_rate(codec: str) -> int:
    """PCM sample rate of a call with this codec."""
    return make_codec(sdp_name(codec)).sample_rate


@functools.cache
def caller_payloads(codec: str) -> tuple[bytes, ...]:
    """The sample speech as 20 ms RTP payloads of `codec`, one loop's worth."""
    encoder = make_codec(sdp_name(codec))
    pcm = _resampled(encoder.sample_rate)
    frame = encoder.frame_samples
    pcm = np.concatenate((pcm, np.zeros(-len(pcm) % frame, dtype=np.int16)))
    return tuple(encoder.encode(pcm[i : i + frame]) for i in range(0, len(pcm), frame))


@functools.cache
def ideal_rendering(codec: str) -> NDArray[np.int16]:
    """One response as a perfect bridge would deliver it (G.711: through the codec too)."""
    pcm = _resampled(codec_rate(codec))
    law = _LAWS.get(codec)
    if law is not None:
        pcm = g711_decode(g711_encode(pcm, law), law)
    return pcm


def decode_all(codec: str, payloads: list[bytes]) -> NDArray[np.int16]:
    """Decode one call's received payloads in order, with one decoder (codec state kept)."""
    law = _LAWS.get(codec)
    if law is not None:
        return g711_decode(b"".join(payloads), law)
    codec_object = make_codec(sdp_name(codec))
    parts = [codec_object.decode(payload) for payload in payloads]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


def _resampled(rate: int) -> NDArray[np.int16]:
    pcm = sample_speech(SAMPLE_RATE)
    if rate == SAMPLE_RATE:
        return pcm
    return np.asarray(soxr.resample(pcm, SAMPLE_RATE, rate, quality="HQ"), dtype=np.int16)
