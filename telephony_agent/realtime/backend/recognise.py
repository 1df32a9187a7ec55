"""Spotting the demo caller's known phrases in a committed turn, without speech recognition.

The backend cannot recognise speech, yet the demo's softphone speaks a few shipped
sentences, and a transcript that shows those words makes the demo readable. So a turn is
compared with each shipped caller phrase and its text is returned only when the match is
convincing; anything else keeps the honest `[caller speech N.NN s]` placeholder. A wrong
transcript would be worse than none, so the decision errs towards "no match".

How, and why it survives the telephone path: both sides are resampled to 8 kHz and
described by log energies in a few bands of the telephone passband over 20 ms frames.
Silence before and after the speech is trimmed by frame energy, each band's mean over
the utterance is removed (gain, μ-law companding and resampler colour are mostly a
per-band offset in dB), and everything more than `FLOOR_DB` below the loudest band
energy is clamped, so pauses look alike whatever noise the codec added. The two
sequences are aligned by dynamic time warping within a band around the diagonal (the
caller may be a little faster or slower) and the mean aligned distance is the score.
A match needs a score under `MAX_DISTANCE` and a clear lead over every other phrase.

Vectorised throughout: the DTW walks anti-diagonals (each one a numpy expression), so
a 3 s turn against two phrases costs a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import soxr
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

ANALYSIS_RATE = 8000
"""Everything is compared at the telephone rate, so a wideband template and a G.711
turn carry the same band of frequencies."""
FRAME = 160
"""20 ms at 8 kHz."""
HOP = 160
"""Back-to-back frames: 20 ms is fine enough to align syllables, and half the hop
would cost four times as much alignment work."""
FFT_SIZE = 256
BAND_EDGES_HZ = (250.0, 450.0, 700.0, 1000.0, 1400.0, 1900.0, 2500.0, 3400.0)
"""Seven bands, roughly uniform on a mel-like scale across 250-3400 Hz (the telephone band)."""
TRIM_DB = 35.0
"""Frames more than this below the loudest frame, at either end, are silence."""
NOISE_MARGIN_DB = 12.0
"""On a noisy line, frames less than this above the quietest tenth are not speech."""
SILENT_DB = -75.0
"""A turn whose loudest frame is below this (dB re full scale) holds nothing."""
FLOOR_DB = 45.0
"""Band energies are clamped this far below the utterance's loudest band energy."""
MIN_SPEECH_S = 0.25
DURATION_RATIO = (0.65, 1.55)
"""Trimmed turn / trimmed phrase duration outside this range cannot be that phrase."""
WINDOW_FRACTION = 0.2
"""DTW band: the path stays within this fraction of the phrase length of the diagonal."""
MAX_DISTANCE = 4.0
"""Mean aligned distance (dB per band, RMS) under which a phrase is accepted."""
MIN_LEAD = 1.5
"""The best phrase must beat every other candidate's distance by this much (dB)."""


@dataclass(frozen=True)
class Template:
    """One known phrase, analysed once."""

    id: str
    text: str
    features: NDArray[np.float64]
    """Frames by bands, trimmed and normalised."""


@dataclass(frozen=True)
class Spotted:
    id: str
    text: str
    distance: float
    """Mean aligned distance of the winner (lower is closer)."""
    runner_up: float | None
    """The next best candidate's distance, if any other phrase was a candidate."""


def _band_matrix() -> NDArray[np.float64]:
    freqs = np.fft.rfftfreq(FFT_SIZE, 1.0 / ANALYSIS_RATE)
    edges = np.asarray(BAND_EDGES_HZ)
    bands = np.zeros((len(edges) - 1, len(freqs)))
    for b in range(len(edges) - 1):
        bands[b, (freqs >= edges[b]) & (freqs < edges[b + 1])] = 1.0
    return bands


_BANDS = _band_matrix()
_WINDOW = np.hanning(FRAME)


def features(pcm: NDArray[np.int16], rate: int) -> NDArray[np.float64] | None:
    """Trimmed, normalised band energies (frames by bands); None when there is no speech."""
    signal = np.asarray(pcm, dtype=np.float64) / 32768.0
    if rate != ANALYSIS_RATE and len(signal):
        signal = np.asarray(soxr.resample(signal, rate, ANALYSIS_RATE, quality="HQ"))
    if len(signal) < FRAME:
        return None
    frames = sliding_window_view(signal, FRAME)[::HOP] * _WINDOW
    power = np.abs(np.fft.rfft(frames, FFT_SIZE, axis=1)) ** 2
    band_db = 10.0 * np.log10(power @ _BANDS.T + 1e-12)
    frame_db = 10.0 * np.log10(power.sum(axis=1) + 1e-12)
    peak = float(frame_db.max())
    if peak < SILENT_DB:
        return None
    noise_floor = float(np.percentile(frame_db, 10))
    threshold = max(peak - TRIM_DB, min(noise_floor + NOISE_MARGIN_DB, peak - 20.0))
    loud = np.flatnonzero(frame_db > threshold)
    speech = band_db[loud[0] : loud[-1] + 1]
    if len(speech) * HOP / ANALYSIS_RATE < MIN_SPEECH_S:
        return None
    speech = np.maximum(speech, speech.max() - FLOOR_DB)
    normalised: NDArray[np.float64] = speech - speech.mean(axis=0)
    return normalised


def make_template(phrase_id: str, text: str, pcm: NDArray[np.int16], rate: int) -> Template:
    analysed = features(pcm, rate)
    if analysed is None:
        raise ValueError(f"phrase {phrase_id!r} has no audible speech")
    return Template(phrase_id, text, analysed)


def dtw_distance(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    """Mean aligned frame distance of `a` and `b` (symmetric DTW, weights 1-1-2,
    normalised by the two lengths), within a band around the diagonal; inf if the band
    admits no path.

    The accumulated costs are stored skewed, row `s` holding the anti-diagonal
    i + j = s, so each step of the recurrence reads two earlier rows as plain slices.
    """
    n, m = len(a), len(b)
    squared = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * (a @ b.T)
    cost = np.sqrt(np.maximum(squared, 0.0) / a.shape[1])
    rows = np.arange(n)[:, None] * (m / n)
    cost[np.abs(rows - np.arange(m)[None, :]) > max(3.0, WINDOW_FRACTION * m)] = np.inf
    i_grid, j_grid = np.meshgrid(np.arange(1, n + 1), np.arange(1, m + 1), indexing="ij")
    skewed_cost = np.full((n + m + 1, n + 1), np.inf)
    skewed_cost[i_grid + j_grid, i_grid] = cost
    acc = np.full((n + m + 1, n + 1), np.inf)
    acc[0, 0] = 0.0
    for s in range(2, n + m + 1):
        lo, hi = max(1, s - m), min(n, s - 1) + 1
        c = skewed_cost[s, lo:hi]
        straight = np.minimum(acc[s - 1, lo - 1 : hi - 1], acc[s - 1, lo:hi]) + c
        acc[s, lo:hi] = np.minimum(straight, acc[s - 2, lo - 1 : hi - 1] + 2.0 * c)
    return float(acc[n + m, n] / (n + m))


class PhraseSpotter:
    """Decides whether a turn is one of a few known phrases; see the module docstring."""

    def __init__(self, templates: Iterable[Template]) -> None:
        self.templates = tuple(templates)

    def spot(self, pcm: NDArray[np.int16] | None, rate: int) -> Spotted | None:
        if pcm is None or not self.templates:
            return None
        turn = features(pcm, rate)
        if turn is None:
            return None
        scored: list[tuple[float, Template]] = []
        for template in self.templates:
            ratio = len(turn) / len(template.features)
            if DURATION_RATIO[0] <= ratio <= DURATION_RATIO[1]:
                scored.append((dtw_distance(turn, template.features), template))
        if not scored:
            return None
        scored.sort(key=lambda pair: pair[0])
        best, winner = scored[0]
        runner_up = scored[1][0] if len(scored) > 1 else None
        if best > MAX_DISTANCE:
            return None
        if runner_up is not None and runner_up - best < MIN_LEAD:
            return None
        return Spotted(winner.id, winner.text, best, runner_up)
