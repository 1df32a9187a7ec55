"""Inbound FIR and outbound soxr resamplers: response, rejection, latency, streaming."""

from __future__ import annotations

import math
from importlib import resources

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from telephony_agent.audio.analysis import best_lag_correlation
from telephony_agent.audio.resample import InboundResampler, OutboundResampler
from telephony_agent.audio.wav import read_wav

OUT = 24000
AMPLITUDE = 10000.0


def tone(freq: float, rate: int, seconds: float, amplitude: float = AMPLITUDE) -> NDArray[np.int16]:
    t = np.arange(round(rate * seconds)) / rate
    return np.round(amplitude * np.sin(2 * math.pi * freq * t)).astype(np.int16)


def frames(pcm: NDArray[np.int16], size: int) -> list[NDArray[np.int16]]:
    return [pcm[i : i + size] for i in range(0, pcm.size, size)]


def stream(resampler: InboundResampler, pcm: NDArray[np.int16]) -> NDArray[np.int16]:
    """Feed `pcm` as 20 ms frames, the way a call leg does."""
    size = resampler.in_rate // 50
    return np.concatenate([resampler.process(f) for f in frames(pcm, size)])


def _blackman_harris(n: int) -> NDArray[np.float64]:
    k = 2 * math.pi * np.arange(n) / (n - 1)
    return 0.35875 - 0.48829 * np.cos(k) + 0.14128 * np.cos(2 * k) - 0.01168 * np.cos(3 * k)


def spectrum(pcm: NDArray[np.int16], rate: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Frequencies and sine amplitudes (in sample units), -92 dB window sidelobes."""
    window = _blackman_harris(pcm.size)
    mags = np.abs(np.fft.rfft(pcm.astype(np.float64) * window)) * 2.0 / window.sum()
    freqs = np.fft.rfftfreq(pcm.size, 1.0 / rate).astype(np.float64)
    return freqs, mags.astype(np.float64)


def level_db(mags: NDArray[np.float64], freqs: NDArray[np.float64], f: float) -> float:
    near = np.abs(freqs - f) <= 8.0
    return db(float(mags[near].max()))


def db(amplitude: float) -> float:
    """Level relative to the test tones' amplitude; exact silence is -240 dB."""
    return 20 * math.log10(amplitude / AMPLITUDE + 1e-12)


def steady(pcm: NDArray[np.int16], rate: int) -> NDArray[np.int16]:
    """Drop the first 100 ms (the tone's onset) before measuring."""
    return pcm[rate // 10 :]


# --- inbound: sizes, delay, streaming --------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000])
def test_constant_output_size_over_many_frames(rate: int) -> None:
    resampler = InboundResampler(rate)
    rng = np.random.default_rng(rate)
    for _ in range(300):
        frame = rng.integers(-20000, 20000, rate // 50).astype(np.int16)
        out = resampler.process(frame)
        assert out.dtype == np.int16
        assert out.shape == (OUT // 50,)


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_delay_is_small_and_declared(rate: int) -> None:
    resampler = InboundResampler(rate)
    assert 0.0 < resampler.delay_ms <= 3.0
    assert resampler.delay_ms == pytest.approx(1000.0 * resampler.delay_samples / OUT)


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_impulse_peaks_at_declared_delay(rate: int) -> None:
    resampler = InboundResampler(rate)
    pcm = np.zeros(rate // 5, dtype=np.int16)
    at = rate // 20  # 50 ms in
    pcm[at] = 20000
    out = stream(resampler, pcm)
    peak = int(np.argmax(np.abs(out)))
    expected_ms = 50.0 + resampler.delay_ms
    assert abs(peak * 1000.0 / OUT - expected_ms) <= 0.5
    assert peak == OUT // 20 + resampler.delay_samples


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_cross_correlation_latency_matches_delay(rate: int) -> None:
    """A chirp sampled at both rates: the output lags the ideal 24 kHz chirp by delay_ms."""
    resampler = InboundResampler(rate)
    top = 0.4 * min(rate, OUT)

    def chirp(sample_rate: int) -> NDArray[np.float64]:
        t = np.arange(sample_rate) / sample_rate  # 1 s from 100 Hz up to `top`
        return 8000.0 * np.sin(2 * math.pi * (100.0 * t + (top - 100.0) / 2.0 * t**2))

    out = stream(resampler, np.round(chirp(rate)).astype(np.int16))
    corr, lag = best_lag_correlation(chirp(OUT), out, max_lag=OUT // 50)
    assert corr > 0.99
    assert abs(lag * 1000.0 / OUT - resampler.delay_ms) <= 0.5
    assert lag * 1000.0 / OUT <= 3.0


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_streaming_equals_one_shot(rate: int) -> None:
    pcm = np.random.default_rng(1).integers(-30000, 30000, rate * 2).astype(np.int16)
    chunked = stream(InboundResampler(rate), pcm)
    whole = InboundResampler(rate).process(pcm)
    assert chunked.size == whole.size == pcm.size * OUT // rate
    np.testing.assert_array_equal(chunked, whole)


@settings(max_examples=40, deadline=None)
@given(
    rate=st.sampled_from([8000, 16000, 48000]),
    sizes=st.lists(st.integers(min_value=0, max_value=700), min_size=1, max_size=25),
)
def test_arbitrary_chunking_is_seamless(rate: int, sizes: list[int]) -> None:
    total = sum(sizes)
    pcm = np.random.default_rng(total).integers(-30000, 30000, total).astype(np.int16)
    resampler = InboundResampler(rate)
    pieces, start = [], 0
    for size in sizes:
        pieces.append(resampler.process(pcm[start : start + size]))
        start += size
    chunked = np.concatenate(pieces)
    whole = InboundResampler(rate).process(pcm)
    down = rate // math.gcd(rate, OUT)
    up = OUT // math.gcd(rate, OUT)
    assert chunked.size == whole.size == (total // down) * up
    np.testing.assert_array_equal(chunked, whole)


def test_reset_forgets_history() -> None:
    resampler = InboundResampler(8000)
    resampler.process(np.full(160, 30000, dtype=np.int16))
    resampler.reset()
    assert not np.any(resampler.process(np.zeros(160, dtype=np.int16)))


def test_passthrough_and_unsupported_rates() -> None:
    same = InboundResampler(24000)
    pcm = np.arange(480, dtype=np.int16)
    np.testing.assert_array_equal(same.process(pcm), pcm)
    assert same.delay_ms == 0.0
    with pytest.raises(ValueError, match="44100"):
        InboundResampler(44100)


# --- inbound: frequency response -------------------------------------------------------

PASSBAND = {
    8000: [300.0, 1000.0, 2000.0, 3000.0, 3400.0],
    16000: [300.0, 1000.0, 3400.0, 5000.0, 6800.0],
    48000: [300.0, 1000.0, 5000.0, 8000.0, 10000.0],
}


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_passband_is_flat_within_half_a_db(rate: int) -> None:
    for freq in PASSBAND[rate]:
        out = steady(stream(InboundResampler(rate), tone(freq, rate, 0.6)), OUT)
        freqs, mags = spectrum(out, OUT)
        assert abs(level_db(mags, freqs, freq)) <= 0.5, freq


@pytest.mark.parametrize(
    ("rate", "freqs"),
    [
        (8000, [300.0, 1000.0, 2000.0, 3000.0, 3400.0, 3700.0, 3900.0]),
        (16000, [300.0, 2000.0, 4000.0, 6000.0, 6800.0, 7400.0, 7800.0]),
    ],
)
def test_upsampling_images_are_60_db_down(rate: int, freqs: list[float]) -> None:
    """Everything in the output but the tone itself, e.g. 3.9 kHz → its image at 4.1 kHz."""
    for freq in freqs:
        out = steady(stream(InboundResampler(rate), tone(freq, rate, 0.4)), OUT)
        bins, mags = spectrum(out, OUT)
        if rate - freq < OUT / 2:
            assert level_db(mags, bins, rate - freq) <= -60.0, freq
        rest = np.abs(bins - freq) > 30.0
        assert db(float(mags[rest].max())) <= -60.0, freq


def test_upsampling_filter_response_from_impulse() -> None:
    """At 8 → 24 kHz an input impulse yields the whole prototype filter: check every frequency."""
    resampler = InboundResampler(8000)
    pcm = np.zeros(800, dtype=np.int16)
    pcm[160] = 32767
    h = stream(resampler, pcm).astype(np.float64)
    response = np.abs(np.fft.rfft(h, 1 << 16))
    response_db = 20 * np.log10(response / response[0] + 1e-12)
    bins = np.fft.rfftfreq(1 << 16, 1.0 / OUT)
    assert np.all(np.abs(response_db[bins <= 3400.0]) <= 0.5)
    assert np.all(response_db[bins >= 4100.0] <= -60.0)


def test_downsampling_rejects_content_above_12_khz() -> None:
    for freq in [12000.0, *np.arange(12500.0, 24000.0, 500.0)]:
        out = steady(stream(InboundResampler(48000), tone(freq, 48000, 0.3)), OUT)
        _, mags = spectrum(out, OUT)
        assert db(float(mags.max())) <= -60.0, freq


def test_speech_round_trip_through_8k_keeps_shape_and_delay() -> None:
    ref = resources.files("telephony_agent") / "samples" / "book_flight.wav"
    with resources.as_file(ref) as path:
        speech, rate = read_wav(path)
    assert rate == OUT
    down = OutboundResampler(OUT, 8000)
    narrow = np.concatenate([down.process(speech), down.flush()])
    up = InboundResampler(8000)
    back = stream(up, narrow[: narrow.size - narrow.size % 160])
    # soxr's stream output is time-aligned, so the only lag left is the FIR's declared delay;
    # the correlation is below 1 only by the speech energy above 3.4 kHz that 8 kHz cannot carry.
    corr, lag = best_lag_correlation(speech[: back.size], back, max_lag=240)
    assert lag == pytest.approx(up.delay_samples, abs=2)
    assert corr > 0.8


# --- outbound (soxr) --------------------------------------------------------------------

PAIRS = [(24000, 8000), (24000, 16000), (24000, 48000), (16000, 8000), (44100, 8000), (8000, 48000)]


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_outbound_flush_returns_the_tail(src: int, dst: int) -> None:
    resampler = OutboundResampler(src, dst)
    pcm = tone(440.0, src, 1.0)
    rng = np.random.default_rng(src + dst)
    for _response in range(2):  # the stream is reusable after flush
        pieces, start = [], 0
        while start < pcm.size:
            size = int(rng.integers(1, src // 10))
            pieces.append(resampler.process(pcm[start : start + size]))
            start += size
        body = sum(p.size for p in pieces)
        tail = resampler.flush()
        assert tail.dtype == np.int16
        expected = pcm.size * dst / src
        assert body < expected  # soxr holds some back...
        assert abs(body + tail.size - expected) <= 2  # ...and flush gives all of it


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_outbound_quality(src: int, dst: int) -> None:
    resampler = OutboundResampler(src, dst)
    out = np.concatenate([resampler.process(tone(1000.0, src, 0.6)), resampler.flush()])
    freqs, mags = spectrum(out[dst // 10 : -dst // 10], dst)
    assert abs(level_db(mags, freqs, 1000.0)) <= 0.1
    rest = np.abs(freqs - 1000.0) > 30.0
    assert db(float(mags[rest].max())) <= -80.0


def test_outbound_rejects_above_target_nyquist() -> None:
    resampler = OutboundResampler(24000, 8000)
    out = np.concatenate([resampler.process(tone(5000.0, 24000, 0.5)), resampler.flush()])
    _, mags = spectrum(out, 8000)
    assert db(float(mags.max())) <= -60.0


def test_outbound_flush_discards_old_state() -> None:
    resampler = OutboundResampler(24000, 8000)
    resampler.process(tone(1000.0, 24000, 0.2))
    resampler.flush()  # barge-in: the caller throws this away
    silence = np.zeros(4800, dtype=np.int16)
    out = np.concatenate([resampler.process(silence), resampler.flush()])
    assert out.size == 1600
    assert not np.any(out)


def test_outbound_passthrough_and_unsupported() -> None:
    resampler = OutboundResampler(8000, 8000)
    pcm = np.arange(100, dtype=np.int16)
    np.testing.assert_array_equal(resampler.process(pcm), pcm)
    assert resampler.flush().size == 0
    assert OutboundResampler(24000, 8000).process(np.zeros(0, dtype=np.int16)).size == 0
    with pytest.raises(ValueError, match="outbound"):
        OutboundResampler(24000, 11025)
