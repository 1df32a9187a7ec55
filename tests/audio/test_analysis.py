"""Cross-correlation and level measurements."""

from __future__ import annotations

import math

import numpy as np
import pytest

from telephony_agent.audio.analysis import best_lag_correlation, rms_dbfs


def noise(seed: int, n: int = 16000) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 3000.0, n)


def test_identical_signals_correlate_to_one_at_lag_zero() -> None:
    x = noise(1)
    corr, lag = best_lag_correlation(x, x, 200)
    assert corr == pytest.approx(1.0, abs=1e-9)
    assert lag == 0


@pytest.mark.parametrize("delay", [1, 37, 250, -90])
def test_delayed_copy_gives_lag_and_full_correlation(delay: int) -> None:
    x = noise(2)
    b = np.zeros_like(x)
    if delay >= 0:
        b[delay:] = x[: x.size - delay]
    else:
        b[:delay] = x[-delay:]
    corr, lag = best_lag_correlation(x, 0.25 * b, 300)
    assert lag == delay
    # Scale does not matter; the |delay| samples shifted out of `b` are missing energy.
    assert corr == pytest.approx(math.sqrt(1 - abs(delay) / x.size), abs=0.01)


def test_inverted_copy_is_minus_one() -> None:
    x = noise(3)
    corr, lag = best_lag_correlation(x, -x, 50)
    assert corr == pytest.approx(-1.0)
    assert lag == 0


def test_independent_noise_is_near_zero() -> None:
    corr, _ = best_lag_correlation(noise(4), noise(5), 200)
    assert abs(corr) < 0.05


def test_different_lengths_and_int16_input() -> None:
    x = np.round(noise(6, 4000)).clip(-32768, 32767).astype(np.int16)
    longer = np.concatenate([np.zeros(123, dtype=np.int16), x, np.zeros(500, dtype=np.int16)])
    corr, lag = best_lag_correlation(x, longer, 200)
    assert lag == 123 and corr == pytest.approx(1.0, abs=1e-9)
    corr, lag = best_lag_correlation(longer, x, 200)
    assert lag == -123 and corr == pytest.approx(1.0, abs=1e-9)


def test_lag_beyond_the_shorter_signal() -> None:
    """A recording that starts long before the reference: the lag exceeds len(reference)."""
    reference = noise(10, 1000)
    recording = np.concatenate([np.zeros(3000), reference, np.zeros(200)])
    corr, lag = best_lag_correlation(recording, reference, recording.size)
    assert lag == -3000 and corr == pytest.approx(1.0)
    corr, lag = best_lag_correlation(reference, recording, recording.size)
    assert lag == 3000 and corr == pytest.approx(1.0)


def test_tiny_overlaps_at_extreme_lags_do_not_score() -> None:
    x, y = noise(8, 2000), noise(9, 2000)
    corr, _ = best_lag_correlation(x, y, 1999)
    assert abs(corr) < 0.1


def test_lag_is_limited_and_degenerate_inputs_are_zero() -> None:
    x = noise(7)
    b = np.concatenate([np.zeros(500), x])
    corr, lag = best_lag_correlation(x, b, 100)  # true lag 500 is out of range
    assert abs(lag) <= 100 and abs(corr) < 0.1
    assert best_lag_correlation(np.zeros(100), x, 10) == (0.0, 0)
    assert best_lag_correlation([], x, 10) == (0.0, 0)


def test_rms_dbfs() -> None:
    t = np.arange(48000) / 48000
    assert rms_dbfs(32767 * np.sin(2 * math.pi * 1000 * t)) == pytest.approx(-3.01, abs=0.01)
    assert rms_dbfs(np.full(100, -32768, dtype=np.int16)) == pytest.approx(0.0)
    assert rms_dbfs(np.full(100, 3277, dtype=np.int16)) == pytest.approx(-20.0, abs=0.01)
    assert rms_dbfs(np.zeros(10, dtype=np.int16)) == -math.inf
    assert rms_dbfs([]) == -math.inf
