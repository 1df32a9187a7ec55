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
from telephony_agent.media import opus_native
from telephony_agent.media.rtp.codecs import CODEC_NAMES, OpusCodec, RtpCodec, make_codec
from tests.media.rtp_support import aligned, frames_of, sine, snr_db, speech

#: Opus on each backend: libopus through ctypes, and PyAV's codec context.
OPUS_BACKENDS = ["opus/native", "opus/pyav"]


def codec_for(name: str) -> RtpCodec:
    """`make_codec(name)`, or an OpusCodec on one backend for "opus/native" and "opus/pyav"."""
    if name.startswith("opus/"):
        return OpusCodec(backend=name.removeprefix("opus/"))
    return make_codec(name)


@pytest.fixture
def no_libopus(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if libopus could not be loaded (no bundled copy, none on the system)."""
    monkeypatch.setattr(opus_native, "load_libopus", lambda: None)


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


def test_opus_uses_libopus_directly_when_it_loads() -> None:
    codec = make_codec("opus")
    assert isinstance(codec, OpusCodec)
    assert codec.backend == "native"
    assert OpusCodec(backend="pyav").backend == "pyav"
    with pytest.raises(ValueError, match="auto, native or pyav"):
        OpusCodec(backend="ffmpeg")


@pytest.mark.usefixtures("no_libopus")
def test_without_libopus_auto_falls_back_to_pyav_and_native_is_refused() -> None:
    with pytest.raises(RuntimeError, match="libopus could not be loaded"):
        OpusCodec(backend="native")
    for codec in (OpusCodec(), OpusCodec(backend="pyav")):
        assert codec.backend == "pyav"
        reference = sine(48000, 0.5, 300.0)
        ref, out = aligned(reference, _round_trip(codec, reference), 1000)
        assert np.corrcoef(ref, out)[0, 1] > 0.95
        assert codec.conceal(960) is None


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


@pytest.mark.parametrize("name", OPUS_BACKENDS)
def test_opus_keeps_speech_recognisably(name: str) -> None:
    # SILK is not waveform-matching, so judge by correlation after the codec delay.
    codec = codec_for(name)
    reference = speech(48000)
    output = _round_trip(codec, reference)
    ref, out = aligned(reference, output, 1000)
    assert np.corrcoef(ref, out)[0, 1] > 0.9


@pytest.mark.parametrize("name", ["G722", *OPUS_BACKENDS])
def test_sine_round_trip_through_stateful_codecs(name: str) -> None:
    codec = codec_for(name)
    reference = sine(codec.sample_rate, 0.5, 300.0)
    output = _round_trip(codec, reference)
    ref, out = aligned(reference, output, 1000)
    assert np.corrcoef(ref, out)[0, 1] > 0.95


@pytest.mark.parametrize("name", ["PCMU", "PCMA", "G722", *OPUS_BACKENDS])
def test_payload_sizes_of_one_frame(name: str) -> None:
    codec = codec_for(name)
    payload = codec.encode(sine(codec.sample_rate, 0.02))
    expected = {"PCMU": 160, "PCMA": 160, "G722": 160}
    if name in expected:
        assert len(payload) == expected[name]
    else:
        assert 0 < len(payload) <= 200  # 24 kbit/s VBR, far below 200 bytes
    assert codec.decode(payload).size == codec.frame_samples


@pytest.mark.parametrize("name", ["PCMU", "PCMA", "G722", *OPUS_BACKENDS])
def test_lost_frame_decodes_to_silence_of_one_frame(name: str) -> None:
    codec = codec_for(name)
    out = codec.decode(b"")
    assert out.dtype == np.int16
    assert out.size == codec.frame_samples
    assert not out.any()
    # An empty payload must not put an FFmpeg decoder into its flushed state.
    good = codec.encode(sine(codec.sample_rate, 0.02))
    assert codec.decode(good).size == codec.frame_samples


@pytest.mark.parametrize("name", OPUS_BACKENDS)
def test_undecodable_opus_payload_becomes_counted_silence(name: str) -> None:
    codec = codec_for(name)
    out = codec.decode(b"\xff\xff\xff")
    assert out.size == 960 and not out.any()
    assert codec.decode_errors == 1
    assert codec.decode(codec.encode(sine(48000, 0.02))).size == 960
    assert codec.decode_errors == 1


@pytest.mark.parametrize("name", ["PCMU", "PCMA", "G722", "opus/pyav"])
def test_codecs_without_their_own_concealment_leave_it_to_the_caller(name: str) -> None:
    codec = codec_for(name)
    codec.decode(codec.encode(sine(codec.sample_rate, 0.02)))
    assert codec.conceal(codec.frame_samples) is None


def test_native_opus_conceals_a_lost_frame_by_continuing_the_signal() -> None:
    codec = codec_for("opus/native")
    heard = _round_trip(codec, sine(48000, 0.2, 300.0))
    concealed = codec.conceal(960)
    assert concealed is not None and concealed.dtype == np.int16 and concealed.size == 960
    level = float(np.sqrt(np.mean(concealed.astype(np.float64) ** 2)))
    assert level > 0.5 * float(np.sqrt(np.mean(heard[-960:].astype(np.float64) ** 2)))
    assert codec.conceal(1920) is not None
    # Spans libopus cannot conceal are left to the caller.
    assert codec.conceal(0) is None and codec.conceal(100) is None


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
    for name in OPUS_BACKENDS:
        codec = codec_for(name)
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
@given(st.binary(min_size=1, max_size=400), st.sampled_from(["G722", *OPUS_BACKENDS]))
def test_arbitrary_payloads_never_raise(payload: bytes, name: str) -> None:
    codec = codec_for(name)
    out = codec.decode(payload)
    assert out.dtype == np.int16 and out.ndim == 1
