"""The arithmetic behind bench's table, on synthetic data whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soxr

from telephony_agent.bench import measures
from telephony_agent.bench.speech import caller_payloads, ideal_rendering
from telephony_agent.realtime.backend.sample_speech import sample_speech


def _arrivals(count: int, jitter_s: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100.0 + np.arange(count) * 0.02 + rng.uniform(-jitter_s, jitter_s, count)


def test_perfect_pacing_has_no_jitter_gaps_or_loss() -> None:
    paced = measures.pacing(_arrivals(500), np.arange(500) % 65536)
    assert float(paced.jitter_ms.max()) < 1e-6
    assert (paced.gaps, paced.expected, paced.lost) == (0, 500, 0)


def test_jitter_is_the_distance_of_each_inter_arrival_from_20_ms() -> None:
    arrivals = _arrivals(5)
    arrivals[2] += 0.003  # one packet 3 ms late: the gap before grows, the one after shrinks
    paced = measures.pacing(arrivals, np.arange(5))
    assert np.allclose(paced.jitter_ms, [0.0, 3.0, 3.0, 0.0])


def test_a_stall_is_a_gap_and_missing_sequence_numbers_are_loss_across_the_wrap() -> None:
    sequence = (np.arange(100) + 65500) % 65536
    keep = np.ones(100, dtype=bool)
    keep[[35, 36]] = False  # sequence numbers 65535 and 0: the wrap itself is lost
    arrivals = _arrivals(100)
    arrivals[60:] += 0.1  # a 100 ms stall before packet 60
    paced = measures.pacing(arrivals[keep], sequence[keep])
    assert paced.expected == 100
    assert paced.lost == 2
    assert paced.gaps == 2  # the 60 ms hole the loss leaves, and the stall


def test_inbound_latency_recovers_a_known_delay_and_the_packets_skipped_at_the_start() -> None:
    sends = _arrivals(300, jitter_s=0.0005, seed=1)
    # The bridge drops the first 7 packets, then appends every packet 3 ms after it left
    # (24 kHz, 480 samples = 20 ms each).
    arrivals = sends[7:] + 0.003
    seconds = np.full(arrivals.size, 0.02)
    latency = measures.inbound_latency(sends, arrivals, seconds)
    assert latency.size == 293
    assert np.allclose(latency, 0.003)


def test_inbound_latency_of_batched_appends_counts_from_their_newest_packet() -> None:
    sends = _arrivals(100)
    # Appends of 60 ms each, sent 1 ms after the third of their packets left.
    arrivals = sends[2::3][:33] + 0.001
    latency = measures.inbound_latency(sends, arrivals, np.full(33, 0.06))
    assert np.allclose(latency, 0.001)


def test_audio_lost_mid_call_shows_as_latency_not_as_nothing() -> None:
    sends = _arrivals(200)
    arrivals = np.concatenate((sends[:100], sends[110:])) + 0.002  # 10 packets never appended
    latency = measures.inbound_latency(sends, arrivals, np.full(190, 0.02))
    assert np.allclose(latency[:100], 0.002)
    assert np.allclose(latency[100:], 0.202)


def test_percentile_of_nothing_is_not_a_number() -> None:
    assert math.isnan(measures.percentile([], 99))
    assert measures.percentile([1.0, 2.0, 3.0], 50) == 2.0


def test_align_finds_the_offset_of_a_window() -> None:
    ideal = ideal_rendering("pcmu").astype(np.float64)
    assert measures.align(ideal[1234:9234], ideal) == 1234


def test_the_ideal_rendering_scores_the_ceiling_and_noise_lowers_it() -> None:
    ideal = ideal_rendering("pcmu")
    heard = np.tile(ideal, 3)[5000:]  # joined mid-response, two seams later
    perfect = measures.fidelity(heard, ideal, 8000)
    assert perfect.snr_db == pytest.approx(measures.SNR_CEILING_DB)
    assert perfect.clicks == 0
    rng = np.random.default_rng(2)
    noisy = heard + rng.normal(0, 300, heard.size)
    degraded = measures.fidelity(np.clip(noisy, -32768, 32767).astype(np.int16), ideal, 8000)
    assert 5.0 < degraded.snr_db < 35.0


def test_per_chunk_resampling_scores_below_one_pass() -> None:
    speech = sample_speech(24000)
    chunks = [speech[i : i + 2400] for i in range(0, speech.size, 2400)]
    per_chunk = np.concatenate([soxr.resample(c, 24000, 8000) for c in chunks]).astype(np.int16)
    one_pass = soxr.resample(speech, 24000, 8000).astype(np.int16)
    reference = measures.fidelity(np.tile(one_pass, 2), one_pass, 8000)
    naive = measures.fidelity(np.tile(per_chunk, 2), one_pass, 8000)
    assert naive.snr_db < reference.snr_db - 10


def test_a_step_at_a_frame_boundary_is_a_click() -> None:
    ideal = ideal_rendering("pcmu")
    wide = np.tile(ideal, 2).astype(np.int32)
    for boundary in (9600, 12000, 16160):
        wide[boundary : boundary + 3] += 20000
    heard = np.clip(wide, -32768, 32767).astype(np.int16)
    found = measures.fidelity(heard, ideal, 8000)
    assert found.clicks >= 3


def test_caller_speech_is_the_sample_in_20_ms_payloads() -> None:
    payloads = caller_payloads("pcmu")
    assert {len(p) for p in payloads} == {160}
    assert len(payloads) == math.ceil(sample_speech(8000).size / 160)
