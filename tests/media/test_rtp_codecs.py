"""RTP codecs: parameters per format, round-trip quality, loss and garbage handling."""

from __future__ import annotations

import fractions

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from telephony_agent.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from telephony_agent.media.rtp.codecs import CODEC_NAMES, RtpCodec, make_codec
from tests.media.rtp_support import aligned, frames_of, sine, snr_db, speech


@pytest.mark.parametrize(
    ("name", "clock_rate", "sample_rate", "step", "frame"),
    [
        ("PCMU", 8000, 8000, 160, 160),
        ("PCMA", 8000, 8000, 160, 160),
        ("G722", 8000, 16000, 160, 320),
        ("opus", 48000, 48000, 960, 960),
    ],
)
def test_codec_parameters(
    name: str, clock_rate: int, sample_rate: int, step: int, frame: int
) -> None:
    codec = make_codec(name)
    assert (codec.name, codec.clock_rate, codec.sample_rate) == (name, clock_rate, sample_rate)
    assert codec.timestamp_step == step
    assert codec.frame_samples == frame
    assert codec.pcm_samples(step) == frame


def test_factory_is_case_insensitive_and_rejects_unknown_codecs() -> None:
    assert make_codec("pcmu").name == "PCMU"
    assert make_codec("OPUS").name == "opus"
    assert make_codec("g722").name == "G722"
    assert set(CODEC_NAMES) == {"PCMU", "PCMA", "G722", "opus"}
    with pytest.raises(ValueError, match="unsupported RTP codec"):
        make_codec("G729")


def test_each_call_gets_its_own_stateful_instance() -> None:
    assert make_codec("opus") is not make_codec("opus")


def _round_trip(codec: RtpCodec, pcm: np.ndarray) -> np.ndarray:
    payloads = [codec.encode(frame) for frame in frames_of(pcm, codec.frame_samples)]
    return np.concatenate([codec.decode(p) for p in payloads])


@pytest.mark.parametrize(("name", "min_snr"), [("PCMU", 30.0), ("PCMA", 30.0), ("G722", 20.0)])
def test_waveform_codecs_keep_speech(name: str, min_snr: float) -> None:
    codec = make_codec(name)
    reference = speech(codec.sample_rate)
    output = _round_trip(codec, reference)
    ref, out = aligned(reference, output, 200)
    assert snr_db(ref, out) >= min_snr


def test_opus_keeps_speech_recognisably() -> None:
    # SILK is not waveform-matching, so judge by correlation after the codec delay.
    codec = make_codec("opus")
    reference = speech(48000)
    output = _round_trip(codec, reference)
    ref, out = aligned(reference, output, 1000)
    assert np.corrcoef(ref, out)[0, 1] > 0.9


@pytest.mark.parametrize("name", ["G722", "opus"])
def test_sine_round_trip_through_ffmpeg_codecs(name: str) -> None:
    codec = make_codec(name)
    reference = sine(codec.sample_rate, 0.5, 300.0)
    output = _round_trip(codec, reference)
    ref, out = aligned(reference, output, 1000)
    assert np.corrcoef(ref, out)[0, 1] > 0.95


@pytest.mark.parametrize("name", ["PCMU", "PCMA", "G722", "opus"])
def test_payload_sizes_of_one_frame(name: str) -> None:
    codec = make_codec(name)
    payload = codec.encode(sine(codec.sample_rate, 0.02))
    expected = {"PCMU": 160, "PCMA": 160, "G722": 160}
    if name in expected:
        assert len(payload) == expected[name]
    else:
        assert 0 < len(payload) <= 200  # 24 kbit/s VBR, far below 200 bytes
    assert codec.decode(payload).size == codec.frame_samples


@pytest.mark.parametrize("name", ["PCMU", "PCMA", "G722", "opus"])
def test_lost_frame_decodes_to_silence_of_one_frame(name: str) -> None:
    codec = make_codec(name)
    out = codec.decode(b"")
    assert out.dtype == np.int16
    assert out.size == codec.frame_samples
    assert not out.any()
    # An empty payload must not put an FFmpeg decoder into its flushed state.
    good = codec.encode(sine(codec.sample_rate, 0.02))
    assert codec.decode(good).size == codec.frame_samples


def test_undecodable_opus_payload_becomes_counted_silence() -> None:
    codec = make_codec("opus")
    out = codec.decode(b"\xff\xff\xff")
    assert out.size == 960 and not out.any()
    assert codec.decode_errors == 1
    assert codec.decode(codec.encode(sine(48000, 0.02))).size == 960


def test_opus_decodes_40_ms_packets_from_another_encoder() -> None:
    encoder = av.CodecContext.create("libopus", "w")
    encoder.format = "s16"
    encoder.layout = "mono"
    encoder.sample_rate = 48000
    encoder.time_base = fractions.Fraction(1, 48000)
    encoder.options = {"frame_duration": "40"}
    encoder.open()
    frame = av.AudioFrame.from_ndarray(
        sine(48000, 0.04).reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = 48000
    frame.pts = 0
    packets = encoder.encode(frame)
    codec = make_codec("opus")
    assert codec.decode(bytes(packets[0])).size == 1920


def test_g722_decodes_longer_packets() -> None:
    codec = make_codec("G722")
    payload = codec.encode(sine(16000, 0.02)) + codec.encode(sine(16000, 0.02))
    assert make_codec("G722").decode(payload).size == 640


pcm_frames = arrays(np.int16, 160, elements=st.integers(-32768, 32767))


@settings(max_examples=200, deadline=None)
@given(pcm_frames)
def test_pcmu_matches_the_g711_tables(frame: np.ndarray) -> None:
    codec = make_codec("PCMU")
    payload = codec.encode(frame)
    assert payload == ulaw_encode(frame).tobytes()
    assert np.array_equal(codec.decode(payload), ulaw_decode(ulaw_encode(frame)))


@settings(max_examples=200, deadline=None)
@given(pcm_frames)
def test_pcma_matches_the_g711_tables(frame: np.ndarray) -> None:
    codec = make_codec("PCMA")
    payload = codec.encode(frame)
    assert payload == alaw_encode(frame).tobytes()
    assert np.array_equal(codec.decode(payload), alaw_decode(alaw_encode(frame)))


@settings(max_examples=200, deadline=None)
@given(pcm_frames, st.sampled_from(["PCMU", "PCMA"]))
def test_g711_error_is_bounded_relative_to_the_sample(frame: np.ndarray, name: str) -> None:
    codec = make_codec(name)
    decoded = codec.decode(codec.encode(frame)).astype(np.int64)
    error = np.abs(decoded - frame.astype(np.int64))
    # Logarithmic quantisation: error within ~1/16 of the magnitude plus the smallest step.
    assert np.all(error <= np.abs(frame.astype(np.int64)) // 16 + 40)


@settings(max_examples=30, deadline=None)
@given(st.binary(min_size=1, max_size=400), st.sampled_from(["G722", "opus"]))
def test_arbitrary_payloads_never_raise(payload: bytes, name: str) -> None:
    codec = make_codec(name)
    out = codec.decode(payload)
    assert out.dtype == np.int16 and out.ndim == 1
