"""WAV writer/reader: round trip, header valid while writing, format conversions."""

from __future__ import annotations

import wave
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from telephony_agent.audio.wav import WavWriter, read_wav


def test_round_trip_in_chunks(tmp_path: Path) -> None:
    pcm = np.random.default_rng(0).integers(-32768, 32768, 8000 * 3).astype(np.int16)
    path = tmp_path / "call.wav"
    with WavWriter(path, 8000) as writer:
        for start in range(0, pcm.size, 160):
            writer.write(pcm[start : start + 160])
        writer.write(np.zeros(0, dtype=np.int16))
        assert writer.frames_written == pcm.size
        assert writer.duration_s == pytest.approx(3.0)
    back, rate = read_wav(path)
    assert rate == 8000
    assert back.dtype == np.int16
    np.testing.assert_array_equal(back, pcm)
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getnframes()) == (1, 2, pcm.size)


def test_header_is_valid_while_still_writing(tmp_path: Path) -> None:
    path = tmp_path / "live.wav"
    writer = WavWriter(path, 16000, sync_every_s=0.1)
    assert read_wav(path)[0].size == 0  # playable from the first moment
    writer.write(np.ones(16000, dtype=np.int16))
    writer.write(np.ones(100, dtype=np.int16))  # not yet synced
    partial, rate = read_wav(path)
    assert rate == 16000 and partial.size == 16000
    writer.sync()
    assert read_wav(path)[0].size == 16100
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        writer.write(np.ones(10, dtype=np.int16))


def _write_raw(path: Path, channels: int, width: int, rate: int, data: bytes) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(data)


def test_stereo_is_downmixed(tmp_path: Path) -> None:
    left = np.array([1000, -2000, 32767, -32768], dtype="<i2")
    right = np.array([3000, -2000, 32767, -32768], dtype="<i2")
    path = tmp_path / "stereo.wav"
    _write_raw(path, 2, 2, 48000, np.stack([left, right], axis=1).tobytes())
    mono, rate = read_wav(path)
    assert rate == 48000
    assert mono.tolist() == [2000, -2000, 32767, -32768]


def test_8_24_and_32_bit_are_converted(tmp_path: Path) -> None:
    expected = [0, 256, -256, 32512, -32768]
    eight = bytes([128, 129, 127, 255, 0])
    _write_raw(tmp_path / "u8.wav", 1, 1, 8000, eight)
    assert read_wav(tmp_path / "u8.wav")[0].tolist() == expected
    values = [0, 256, -256, 32512, -32768]
    s24 = b"".join((v * 256).to_bytes(3, "little", signed=True) for v in values)
    _write_raw(tmp_path / "s24.wav", 1, 3, 8000, s24)
    assert read_wav(tmp_path / "s24.wav")[0].tolist() == expected
    s32 = np.array([v * 65536 + 123 for v in values], dtype="<i4").tobytes()
    _write_raw(tmp_path / "s32.wav", 1, 4, 8000, s32)
    assert read_wav(tmp_path / "s32.wav")[0].tolist() == expected


def test_not_a_wav_raises_value_error(tmp_path: Path) -> None:
    path = tmp_path / "noise.wav"
    path.write_bytes(b"this is not a RIFF file at all")
    with pytest.raises(ValueError, match="not a PCM WAV"):
        read_wav(path)
    with pytest.raises(ValueError):
        WavWriter(tmp_path / "x.wav", 0)


def test_reads_the_packaged_sample() -> None:
    ref = resources.files("telephony_agent") / "samples" / "book_flight.wav"
    with resources.as_file(ref) as path:
        pcm, rate = read_wav(path)
    assert rate == 24000
    assert pcm.size / rate == pytest.approx(3.35, abs=0.05)
    assert np.abs(pcm).max() > 1000
