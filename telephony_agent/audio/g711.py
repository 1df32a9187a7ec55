"""G.711 μ-law (PCMU) and A-law (PCMA) by lookup table.

Why tables: a 20 ms frame is 160 samples, and doing the segment search per
sample in Python would cost more than the whole rest of the media path. The
encoder is a 65 536-entry table indexed by the int16 value reinterpreted as
uint16, the decoder a 256-entry table; both are one numpy gather.

The tables are computed once at import, vectorised, from the ITU-T G.191
reference software (`g711.c` of the Software Tool Library: `alaw_compress`,
`ulaw_compress` and their `_expand` twins), and are bit-exact with it for all
65 536 encoder inputs and all 256 codes. Why that reference rather than Sun's
older g711.c: both decode identically, but Sun's A-law encoder computes the
magnitude of a negative sample as ``-x - 8``, which wraps for -7..-1 and turns
near-silence into code 0x5A (-248 after decoding), an audible click. G.191
uses the one's complement (``~x``), which cannot wrap.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "SILENCE_CODE",
    "G711Law",
    "LazyPcm",
    "alaw_decode",
    "alaw_encode",
    "g711_decode",
    "g711_encode",
    "ulaw_decode",
    "ulaw_encode",
]

#: The two laws by the names the Realtime formats use (`audio/pcmu`, `audio/pcma`).
G711Law = Literal["pcmu", "pcma"]

_BIAS = 0x84
#: Bit length of 0..127, for the μ-law segment number (no per-sample loop).
_BIT_LENGTH = np.array([int(v).bit_length() for v in range(128)], dtype=np.int32)


def _build_ulaw_encode() -> NDArray[np.uint8]:
    x = np.arange(-32768, 32768, dtype=np.int32)
    positive = x >= 0
    # 14-bit magnitude (one's complement for negatives) plus the μ-law bias of 33.
    absno = np.minimum(np.where(positive, x >> 2, (~x) >> 2) + 33, 0x1FFF)
    segno = 1 + _BIT_LENGTH[absno >> 6]
    high = 8 - segno
    low = 0xF - ((absno >> segno) & 0xF)
    code = (high << 4) | low | np.where(positive, 0x80, 0)
    return _by_uint16_index(x, code.astype(np.uint8))


def _build_alaw_encode() -> NDArray[np.uint8]:
    x = np.arange(-32768, 32768, dtype=np.int32)
    positive = x >= 0
    # 12-bit magnitude (one's complement for negatives), 0..2047.
    ix = np.where(positive, x >> 4, (~x) >> 4)
    # Segment 0 is linear (0..15); above it, exponent e has ix in [16·2^(e-1), 32·2^(e-1)).
    exponent = np.where(ix > 15, _BIT_LENGTH[np.minimum(ix >> 4, 127)], 0)
    mantissa = np.where(ix > 15, (ix >> np.maximum(exponent - 1, 0)) - 16, ix)
    code = ((exponent << 4) + mantissa) | np.where(positive, 0x80, 0)
    return _by_uint16_index(x, (code ^ 0x55).astype(np.uint8))


def _by_uint16_index(x: NDArray[np.int32], codes: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Reorder so the table is indexed by the int16 sample viewed as uint16 (a free view)."""
    table = np.empty(65536, dtype=np.uint8)
    table[x.astype(np.int16).view(np.uint16)] = codes
    return table


def _build_ulaw_decode() -> NDArray[np.int16]:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0xF) << 3) + _BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _BIAS - t, t - _BIAS).astype(np.int16)


def _build_alaw_decode() -> NDArray[np.int16]:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0xF) << 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t).astype(np.int16)


_ULAW_ENCODE = _build_ulaw_encode()
_ALAW_ENCODE = _build_alaw_encode()
_ULAW_DECODE = _build_ulaw_decode()
_ALAW_DECODE = _build_alaw_decode()
for _table in (_ULAW_ENCODE, _ALAW_ENCODE, _ULAW_DECODE, _ALAW_DECODE):
    _table.flags.writeable = False


def _as_uint16_index(pcm: NDArray[np.int16]) -> NDArray[np.uint16]:
    return np.ascontiguousarray(pcm, dtype=np.int16).view(np.uint16)


def _as_codes(codes: NDArray[np.uint8] | bytes) -> NDArray[np.uint8]:
    if isinstance(codes, bytes | bytearray | memoryview):
        return np.frombuffer(codes, dtype=np.uint8)
    return np.asarray(codes, dtype=np.uint8)


def ulaw_encode(pcm: NDArray[np.int16]) -> NDArray[np.uint8]:
    """PCM16 samples → μ-law codes (one byte per sample, ready for an RTP payload)."""
    return _ULAW_ENCODE[_as_uint16_index(pcm)]


def ulaw_decode(codes: NDArray[np.uint8] | bytes) -> NDArray[np.int16]:
    """μ-law codes (an RTP payload or an array) → PCM16 samples."""
    return _ULAW_DECODE[_as_codes(codes)]


def alaw_encode(pcm: NDArray[np.int16]) -> NDArray[np.uint8]:
    """PCM16 samples → A-law codes."""
    return _ALAW_ENCODE[_as_uint16_index(pcm)]


def alaw_decode(codes: NDArray[np.uint8] | bytes) -> NDArray[np.int16]:
    """A-law codes → PCM16 samples."""
    return _ALAW_DECODE[_as_codes(codes)]


#: The code of a zero sample (μ-law 0xFF; A-law has no zero, 0xD5 is +8): encoded silence.
SILENCE_CODE: dict[G711Law, int] = {"pcmu": 0xFF, "pcma": 0xD5}


def g711_encode(pcm: NDArray[np.int16], law: G711Law) -> NDArray[np.uint8]:
    """PCM16 samples → codes of `law`."""
    return ulaw_encode(pcm) if law == "pcmu" else alaw_encode(pcm)


def g711_decode(codes: NDArray[np.uint8] | bytes, law: G711Law) -> NDArray[np.int16]:
    """Codes of `law` → PCM16 samples."""
    return ulaw_decode(codes) if law == "pcmu" else alaw_decode(codes)


class LazyPcm:
    """Audio that is PCM16, or G.711 bytes of a law decoded only when ``pcm`` is read.

    Why one base: with G.711 passthrough, caller frames (`AudioIn`) and agent frames
    (`Frame`) carry the bytes as they came, and only a reader that needs samples (a
    recorder, the echo guard, another codec) pays for decoding, once.
    """

    __slots__ = ("_pcm", "law", "payload")

    #: What the error says when neither PCM nor a payload and its law are given.
    _needs = "audio needs PCM, or a G.711 payload and its law"

    def __init__(
        self,
        pcm: NDArray[np.int16] | None,
        payload: bytes | None = None,
        law: G711Law | None = None,
    ) -> None:
        if pcm is None and (payload is None or law is None):
            raise ValueError(self._needs)
        self._pcm = pcm
        self.payload = payload
        self.law = law

    @property
    def pcm(self) -> NDArray[np.int16]:
        pcm = self._pcm
        if pcm is None:
            assert self.payload is not None and self.law is not None
            pcm = self._pcm = g711_decode(self.payload, self.law)
        return pcm

    def _kind(self) -> str:
        return f"{self.law} payload" if self.payload is not None else "pcm"
