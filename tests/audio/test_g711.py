"""G.711 tables against literal scalar transcriptions of the reference software, every input."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from numpy.typing import NDArray

from telephony_agent.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

ALL_PCM = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = np.arange(256, dtype=np.uint8)

# --- reference: ITU-T G.191 STL g711.c, one sample at a time -------------------------


def ref_alaw_compress(sample: int) -> int:
    ix = (~sample) >> 4 if sample < 0 else sample >> 4
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix >>= 1
            iexp += 1
        ix -= 16
        ix += iexp << 4
    if sample >= 0:
        ix |= 0x80
    return ix ^ 0x55


def ref_alaw_expand(code: int) -> int:
    ix = (code ^ 0x55) & 0x7F
    iexp = ix >> 4
    mant = ix & 0xF
    if iexp > 0:
        mant += 16
    mant = (mant << 4) + 8
    if iexp > 1:
        mant <<= iexp - 1
    return mant if code > 127 else -mant


def ref_ulaw_compress(sample: int) -> int:
    absno = ((~sample) >> 2) + 33 if sample < 0 else (sample >> 2) + 33
    absno = min(absno, 0x1FFF)
    i = absno >> 6
    segno = 1
    while i != 0:
        segno += 1
        i >>= 1
    code = ((8 - segno) << 4) | (0xF - ((absno >> segno) & 0xF))
    return code | 0x80 if sample >= 0 else code


def ref_ulaw_expand(code: int) -> int:
    sign = -1 if code < 0x80 else 1
    mantissa = ~code & 0xFF
    exponent = (mantissa >> 4) & 0x7
    step = 4 << (exponent + 1)
    mantissa &= 0xF
    return sign * ((0x80 << exponent) + step * mantissa + step // 2 - 4 * 33)


# --- the older Sun Microsystems g711.c decoders (they agree with G.191) ----------------

BIAS = 0x84


def sun_ulaw2linear(code: int) -> int:
    code = ~code & 0xFF
    t = ((code & 0xF) << 3) + BIAS
    t <<= (code & 0x70) >> 4
    return BIAS - t if code & 0x80 else t - BIAS


def sun_alaw2linear(code: int) -> int:
    code ^= 0x55
    t = (code & 0xF) << 4
    seg = (code & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if code & 0x80 else -t


# --- encode / decode against the reference --------------------------------------------


def test_ulaw_encode_matches_reference_for_all_inputs() -> None:
    expected = np.array([ref_ulaw_compress(int(x)) for x in ALL_PCM], dtype=np.uint8)
    np.testing.assert_array_equal(ulaw_encode(ALL_PCM), expected)


def test_alaw_encode_matches_reference_for_all_inputs() -> None:
    expected = np.array([ref_alaw_compress(int(x)) for x in ALL_PCM], dtype=np.uint8)
    np.testing.assert_array_equal(alaw_encode(ALL_PCM), expected)


def test_near_silence_never_clicks() -> None:
    """Sun's A-law encoder maps -7..-1 to -248; the reference (and we) keep them at -8."""
    tiny = np.arange(-16, 17, dtype=np.int16)
    assert np.abs(alaw_decode(alaw_encode(tiny))).max() <= 24
    assert np.abs(ulaw_decode(ulaw_encode(tiny))).max() <= 24


@pytest.mark.parametrize(
    ("decode", "references"),
    [
        (ulaw_decode, (ref_ulaw_expand, sun_ulaw2linear)),
        (alaw_decode, (ref_alaw_expand, sun_alaw2linear)),
    ],
)
def test_decode_matches_both_references_for_all_codes(
    decode: Callable[[bytes | NDArray[np.uint8]], NDArray[np.int16]],
    references: tuple[Callable[[int], int], ...],
) -> None:
    for reference in references:
        expected = np.array([reference(int(c)) for c in ALL_CODES], dtype=np.int16)
        np.testing.assert_array_equal(decode(ALL_CODES), expected)
        np.testing.assert_array_equal(decode(ALL_CODES.tobytes()), expected)


def test_known_values() -> None:
    assert ulaw_encode(np.array([0, -1, 32767, -32768], dtype=np.int16)).tolist() == [
        0xFF,
        0x7F,
        0x80,
        0x00,
    ]
    assert ulaw_decode(bytes([0xFF, 0x7F, 0x80, 0x00])).tolist() == [0, 0, 32124, -32124]
    assert alaw_encode(np.array([0, -8, 32767, -32768], dtype=np.int16)).tolist() == [
        0xD5,
        0x55,
        0xAA,
        0x2A,
    ]
    assert alaw_decode(bytes([0xD5, 0x55, 0xAA, 0x2A])).tolist() == [8, -8, 32256, -32256]


# --- quantisation behaviour -------------------------------------------------------------


def _step(codes: np.ndarray, *, alaw: bool) -> np.ndarray:
    """Quantisation step of each code's segment, in 16-bit units."""
    seg = ((codes.astype(np.int32) ^ (0x55 if alaw else 0xFF)) >> 4) & 0x7
    step = 1 << (seg + 3)
    if alaw:
        step = np.where(seg < 2, 16, step)
    return step


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_round_trip_error_within_one_quantisation_step(law: str) -> None:
    encode, decode = (ulaw_encode, ulaw_decode) if law == "ulaw" else (alaw_encode, alaw_decode)
    codes = encode(ALL_PCM)
    error = np.abs(decode(codes).astype(np.int32) - ALL_PCM.astype(np.int32))
    step = _step(codes, alaw=law == "alaw")
    assert np.all(error <= step), ALL_PCM[error > step][:10]
    # Away from the clipping edges the error is about half a step on average.
    inner = np.abs(ALL_PCM.astype(np.int32)) < 30000
    assert float(np.mean(error[inner] / step[inner])) < 0.5


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_decoded_values_are_fixed_points(law: str) -> None:
    encode, decode = (ulaw_encode, ulaw_decode) if law == "ulaw" else (alaw_encode, alaw_decode)
    values = decode(ALL_CODES)
    np.testing.assert_array_equal(decode(encode(values)), values)


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_sine_snr_is_telephone_grade(law: str) -> None:
    encode, decode = (ulaw_encode, ulaw_decode) if law == "ulaw" else (alaw_encode, alaw_decode)
    t = np.arange(8000) / 8000.0
    clean = 0.3 * 32767 * np.sin(2 * math.pi * 1004.0 * t)
    pcm = np.round(clean).astype(np.int16)
    out = decode(encode(pcm)).astype(np.float64)
    snr = 10 * math.log10(np.sum(clean**2) / np.sum((out - clean) ** 2))
    assert snr > 35.0


def test_encode_accepts_any_int16_layout() -> None:
    strided = ALL_PCM[::7]
    np.testing.assert_array_equal(ulaw_encode(strided), ulaw_encode(strided.copy()))
    assert ulaw_encode(np.zeros(0, dtype=np.int16)).size == 0
    assert alaw_decode(b"").dtype == np.int16
