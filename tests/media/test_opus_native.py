"""libopus through ctypes: loading, round trips, errors, concealment, FEC, PyAV interop."""

from __future__ import annotations

import ctypes.util
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from telephony_agent.audio.analysis import best_lag_correlation
from telephony_agent.media import opus_native
from telephony_agent.media.opus_native import (
    NativeOpusDecoder,
    NativeOpusEncoder,
    OpusError,
    libopus_version,
    load_libopus,
    native_opus_available,
    select_backend,
)
from telephony_agent.media.rtp.codecs import OpusCodec
from tests.media.rtp_support import frames_of, sine, speech

FRAME = 960  # 20 ms at 48 kHz


def _encode_all(encoder: NativeOpusEncoder, pcm: NDArray[np.int16]) -> list[bytes]:
    return [encoder.encode(frame) for frame in frames_of(pcm, FRAME)]


def _decode_all(decoder: NativeOpusDecoder, packets: list[bytes]) -> NDArray[np.int16]:
    return np.concatenate([decoder.decode(packet) for packet in packets])


def _speech_encoder(*, inband_fec: bool = False, packet_loss_percent: int = 0) -> NativeOpusEncoder:
    """OpusCodec's settings: application "audio", 24 kbit/s, unconstrained VBR."""
    return NativeOpusEncoder(
        48000,
        1,
        application="audio",
        bitrate=24000,
        inband_fec=inband_fec,
        packet_loss_percent=packet_loss_percent,
    )


def _correlation(a: NDArray[np.int16], b: NDArray[np.int16]) -> float:
    return float(np.corrcoef(a.astype(np.float64), b.astype(np.float64))[0, 1])


@pytest.fixture
def fresh_loader() -> Iterator[None]:
    """Let a test run the library search again; the real result is restored afterwards."""
    load_libopus.cache_clear()
    yield
    load_libopus.cache_clear()


# ---------------------------------------------------------------------- loading


def test_library_is_found_once_and_names_itself() -> None:
    assert native_opus_available()
    version = libopus_version()
    assert version is not None and version.startswith("libopus")
    assert load_libopus() is load_libopus()  # cached


def test_pyav_bundled_copy_is_preferred_when_present() -> None:
    bundled = list(opus_native._bundled_libraries())
    lib = load_libopus()
    assert lib is not None
    if bundled:
        assert lib._name == str(bundled[0])
    else:  # a PyAV without bundled libraries: the system's libopus
        assert lib._name == ctypes.util.find_library("opus")


@pytest.mark.usefixtures("fresh_loader")
def test_system_library_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    system = ctypes.util.find_library("opus")
    monkeypatch.setattr(opus_native, "_bundled_libraries", lambda: iter(()))
    lib = load_libopus()
    if system is None:
        assert lib is None
    else:
        assert lib is not None and lib._name == system


@pytest.mark.usefixtures("fresh_loader")
def test_nothing_usable_means_no_native_backend(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "libopus-0000.so.0"
    fake.write_bytes(b"not a shared library")
    monkeypatch.setattr(opus_native, "_bundled_libraries", lambda: iter([fake]))
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    assert load_libopus() is None
    assert not native_opus_available()
    assert libopus_version() is None
    assert select_backend("auto") == "pyav"
    with pytest.raises(RuntimeError, match="libopus could not be loaded"):
        select_backend("native")
    with pytest.raises(RuntimeError, match="libopus could not be loaded"):
        NativeOpusDecoder()


def test_backend_names_are_checked() -> None:
    assert select_backend("pyav") == "pyav"
    assert select_backend("native") == select_backend("auto") == "native"
    with pytest.raises(ValueError, match="auto, native or pyav"):
        select_backend("ffmpeg")


# ---------------------------------------------------------------------- round trips


def test_tone_round_trip() -> None:
    reference = sine(48000, 1.0, 440.0)
    output = _decode_all(NativeOpusDecoder(), _encode_all(_speech_encoder(), reference))
    assert output.dtype == np.int16 and output.size == reference.size
    correlation, lag = best_lag_correlation(reference, output, 1000)
    assert correlation >= 0.9
    assert 0 <= lag < 1000  # libopus' lookahead, a few ms


@pytest.mark.parametrize("application", ["audio", "voip", "lowdelay"])
def test_speech_round_trip(application: str) -> None:
    reference = speech(48000)
    encoder = NativeOpusEncoder(application=application, bitrate=32000)
    output = _decode_all(NativeOpusDecoder(), _encode_all(encoder, reference))
    correlation, _ = best_lag_correlation(reference, output, 1000)
    assert correlation >= 0.9


def test_every_opus_frame_duration_is_accepted() -> None:
    encoder = _speech_encoder()
    decoder = NativeOpusDecoder()
    for samples in (120, 240, 480, 960, 1920, 2880):
        packet = encoder.encode(sine(48000, samples / 48000))
        assert decoder.decode(packet).size == samples


def test_stereo_packets_decode_to_mono_and_stereo() -> None:
    tone = sine(48000, 0.02)
    interleaved = np.repeat(tone, 2)
    packet = NativeOpusEncoder(channels=2, bitrate=48000).encode(interleaved)
    assert NativeOpusDecoder().decode(packet).shape == (FRAME,)
    assert NativeOpusDecoder(channels=2).decode(packet).shape == (FRAME, 2)


def test_digital_silence_codes_to_tiny_packets() -> None:
    encoder = _speech_encoder()
    sizes = [len(encoder.encode(np.zeros(FRAME, dtype=np.int16))) for _ in range(10)]
    assert max(sizes[1:]) <= 8
    speechy = _speech_encoder()
    assert min(len(p) for p in _encode_all(speechy, speech(48000)[48000:72000])) > 8


def test_decoded_arrays_belong_to_the_caller() -> None:
    decoder = NativeOpusDecoder()
    first_packet, second_packet = _encode_all(_speech_encoder(), sine(48000, 0.04))
    first = decoder.decode(first_packet)
    kept = first.copy()
    decoder.decode(second_packet)
    np.testing.assert_array_equal(first, kept)
    first[0] = 1  # writable


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize("samples", [0, 100, 959, 961, 3840])
def test_a_wrong_frame_size_is_a_value_error(samples: int) -> None:
    with pytest.raises(ValueError, match="not one Opus frame"):
        _speech_encoder().encode(np.zeros(samples, dtype=np.int16))


def test_non_int16_input_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="int16"):
        _speech_encoder().encode(np.zeros(FRAME, dtype=np.float32))


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="application"):
        NativeOpusEncoder(application="music", bitrate=24000)
    with pytest.raises(ValueError, match="sample rate"):
        NativeOpusDecoder(44100)
    with pytest.raises(ValueError, match="channels"):
        NativeOpusDecoder(48000, 3)
    with pytest.raises(OpusError, match="invalid argument") as caught:
        NativeOpusEncoder(bitrate=24000, complexity=11)
    assert caught.value.code == -1


def test_a_corrupt_payload_is_an_opus_error_and_the_decoder_carries_on() -> None:
    decoder = NativeOpusDecoder()
    with pytest.raises(OpusError, match="corrupted") as caught:
        decoder.decode(b"\xff\xff\xff")  # code 3 claiming 63 frames of 20 ms
    assert caught.value.code == -4
    with pytest.raises(OpusError):
        decoder.decode(b"\x01\x00")  # code 1 with an odd payload length
    with pytest.raises(ValueError, match="conceal"):
        decoder.decode(b"")
    assert decoder.decode(_speech_encoder().encode(sine(48000, 0.02))).size == FRAME


def test_close_twice_is_fine_and_use_after_close_is_an_error() -> None:
    encoder = _speech_encoder()
    decoder = NativeOpusDecoder()
    for coder in (encoder, decoder):
        coder.close()
        coder.close()
    with pytest.raises(ValueError, match="closed"):
        encoder.encode(sine(48000, 0.02))
    with pytest.raises(ValueError, match="closed"):
        decoder.conceal(FRAME)


# ---------------------------------------------------------------------- loss


def test_conceal_continues_the_signal_and_fades_without_a_click() -> None:
    tone = sine(48000, 1.0, 440.0)
    packets = _encode_all(_speech_encoder(), tone)
    decoder = NativeOpusDecoder()
    heard = _decode_all(decoder, packets[:20])
    concealed = [decoder.conceal(FRAME) for _ in range(5)]
    resumed = decoder.decode(packets[25])
    assert [c.size for c in concealed] == [FRAME] * 5
    assert all(c.dtype == np.int16 for c in concealed)

    max_step = int(np.abs(np.diff(heard[FRAME:].astype(np.int32))).max())
    joined = np.concatenate([heard, *concealed, resumed]).astype(np.int32)
    assert int(np.abs(np.diff(joined[heard.size - FRAME :])).max()) <= max_step

    def rms(x: NDArray[np.int16]) -> float:
        return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))

    levels = [rms(c) for c in concealed]
    assert levels[0] > 0.5 * rms(heard[-FRAME:])  # continues the tone ...
    assert levels[-1] < levels[0]  # ... and fades


@pytest.mark.parametrize("samples", [120, 480, 2880, 9600])
def test_conceal_returns_the_requested_span(samples: int) -> None:
    decoder = NativeOpusDecoder()
    decoder.decode(_speech_encoder().encode(sine(48000, 0.02)))
    assert decoder.conceal(samples).size == samples


@pytest.mark.parametrize("samples", [0, -960, 100, 961])
def test_conceal_needs_a_multiple_of_2_5_ms(samples: int) -> None:
    with pytest.raises(ValueError, match=r"multiple of 2\.5 ms"):
        NativeOpusDecoder().conceal(samples)


def _fec_recovery(
    encoder: NativeOpusEncoder,
) -> tuple[NDArray[np.int16], NDArray[np.int16], NDArray[np.int16]]:
    """Over single losses spread through speech: what the lost frames decode to when
    they arrive, what FEC from the next packet recovers, and what PLC makes up."""
    packets = _encode_all(encoder, speech(48000))
    whole = NativeOpusDecoder()
    truth = [whole.decode(packet) for packet in packets]
    lost_frames, recovered, concealed = [], [], []
    for lost in range(20, len(packets) - 1, 7):
        with_fec, with_plc = NativeOpusDecoder(), NativeOpusDecoder()
        for packet in packets[:lost]:
            with_fec.decode(packet)
            with_plc.decode(packet)
        fec = with_fec.decode_fec(packets[lost + 1], FRAME)
        assert fec.size == FRAME
        assert with_fec.decode(packets[lost + 1]).size == FRAME  # then the packet's own audio
        lost_frames.append(truth[lost])
        recovered.append(fec)
        concealed.append(with_plc.conceal(FRAME))
    return np.concatenate(lost_frames), np.concatenate(recovered), np.concatenate(concealed)


def test_decode_fec_recovers_the_lost_frame_from_the_next_packet() -> None:
    encoder = _speech_encoder(inband_fec=True, packet_loss_percent=20)
    truth, recovered, concealed = _fec_recovery(encoder)
    assert _correlation(truth, recovered) > 0.8
    assert _correlation(truth, recovered) > _correlation(truth, concealed) + 0.2


def test_decode_fec_without_fec_in_the_packet_is_concealment() -> None:
    _, recovered, concealed = _fec_recovery(_speech_encoder())
    np.testing.assert_array_equal(recovered, concealed)


def test_decode_fec_of_an_empty_payload_conceals() -> None:
    decoder = NativeOpusDecoder()
    assert decoder.decode_fec(b"", 480).size == 480
    with pytest.raises(ValueError):
        decoder.decode_fec(b"\x01\x00", 6000)


# ---------------------------------------------------------------------- PyAV interop


def test_native_and_pyav_decode_each_others_packets() -> None:
    reference = speech(48000)
    native_encoder, pyav_encoder = OpusCodec(backend="native"), OpusCodec(backend="pyav")
    native_packets = [native_encoder.encode(f) for f in frames_of(reference, FRAME)]
    pyav_packets = [pyav_encoder.encode(f) for f in frames_of(reference, FRAME)]
    pyav_decoder = OpusCodec(backend="pyav")
    by_pyav = np.concatenate([pyav_decoder.decode(p) for p in native_packets])
    by_native = _decode_all(NativeOpusDecoder(), pyav_packets)
    for output in (by_pyav, by_native):
        correlation, _ = best_lag_correlation(reference, output, 1000)
        assert correlation >= 0.9
    assert pyav_decoder.decode_errors == 0


@pytest.mark.parametrize(
    ("application", "complexity", "bitrate"),
    [("audio", None, 24000), ("voip", None, 24000), ("lowdelay", 5, 32000)],
)
def test_the_same_library_codes_bit_identical_packets_either_way(
    application: str, complexity: int | None, bitrate: int
) -> None:
    # Also pins the settings FFmpeg applies that libopus' defaults differ from
    # (unconstrained VBR: CELT packets change size without it).
    lib = load_libopus()
    assert lib is not None
    if not any(lib._name == str(path) for path in opus_native._bundled_libraries()):
        pytest.skip("the loaded libopus is not PyAV's bundled copy, the one FFmpeg uses")
    reference = speech(48000)[: 50 * FRAME]
    native, pyav = (
        OpusCodec(application=application, complexity=complexity, bitrate=bitrate, backend=b)
        for b in ("native", "pyav")
    )
    for frame in frames_of(reference, FRAME):
        packet = native.encode(frame)
        assert packet == pyav.encode(frame)
        np.testing.assert_array_equal(native.decode(packet), pyav.decode(packet))
