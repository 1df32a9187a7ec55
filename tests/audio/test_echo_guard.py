"""The echo guard: the agent's own voice coming back is echo; the caller talking is not."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from telephony_agent.audio.echo import EchoGuard
from telephony_agent.audio.g711 import ulaw_decode, ulaw_encode
from telephony_agent.media.audiofile import decode_audio_file

FRAME = 20


def _sample(name: str, rate: int) -> NDArray[np.int16]:
    path = Path(str(files("telephony_agent") / "samples" / name))
    return decode_audio_file(path, rate)


def _hybrid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """A telephone echo path: a few reflections and some smoothing, not a pure delay."""
    taps = np.zeros(40)
    taps[[0, 7, 19, 33]] = [1.0, -0.4, 0.25, -0.1]
    out: NDArray[np.float64] = np.convolve(np.convolve(x, taps)[: x.size], np.ones(3) / 3, "same")
    return out


def _line(
    rate: int,
    *,
    delay_ms: int,
    echo_db: float,
    noise_dbfs: float,
    caller: NDArray[np.int16] | None = None,
    caller_at_ms: int = 0,
) -> tuple[NDArray[np.int16], NDArray[np.int16], NDArray[np.bool_]]:
    """(played, inbound as G.711 decoded it, which inbound frames carry the caller)."""
    agent = _sample("book_flight.wav", rate)
    n = agent.size + rate
    played = np.zeros(n)
    played[: agent.size] = agent
    echo = np.zeros(n)
    d = rate * delay_ms // 1000
    echo[d:] = _hybrid(played)[: n - d] * 10 ** (echo_db / 20)
    noise = np.random.default_rng(delay_ms).standard_normal(n) * 32768 * 10 ** (noise_dbfs / 20)
    inbound = echo + noise
    talking = np.zeros(n // (rate * FRAME // 1000), dtype=bool)
    if caller is not None:
        start = rate * caller_at_ms // 1000
        m = min(caller.size, n - start)
        inbound[start : start + m] += caller[:m]
        f = rate * FRAME // 1000
        for i in range(talking.size):
            chunk = caller[max(0, i * f - start) : max(0, (i + 1) * f - start)]
            talking[i] = i * f >= start and chunk.size > 0 and np.abs(chunk).mean() > 300
    coded = ulaw_decode(ulaw_encode(np.clip(inbound, -32768, 32767).astype(np.int16)))
    return played.astype(np.int16), coded, talking


def _verdicts(
    guard: EchoGuard, played: NDArray[np.int16], inbound: NDArray[np.int16]
) -> list[bool]:
    f = guard.rate * FRAME // 1000
    out = []
    for i in range(0, played.size - f + 1, f):
        guard.played(played[i : i + f])
        out.append(guard.heard(inbound[i : i + f]))
    return out


def _loud(inbound: NDArray[np.int16], rate: int, dbfs: float) -> NDArray[np.bool_]:
    f = rate * FRAME // 1000
    frames = inbound[: inbound.size // f * f].reshape(-1, f).astype(np.float64)
    level = 10 * np.log10(np.mean(frames**2, axis=1) / 32768**2 + 1e-20)
    loud: NDArray[np.bool_] = level > dbfs
    return loud


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
@pytest.mark.parametrize("delay_ms", [100, 300, 480])
def test_the_agents_voice_coming_back_is_echo(rate: int, delay_ms: int) -> None:
    played, inbound, _ = _line(rate, delay_ms=delay_ms, echo_db=-20, noise_dbfs=-60)
    guard = EchoGuard(rate, window_ms=600)
    verdicts = np.array(_verdicts(guard, played, inbound))
    # Every frame loud enough for a server VAD to call it speech (-45 dBFS).
    loud = _loud(inbound, rate, -45.0)[: verdicts.size]
    assert loud.sum() > 40, "the echo must be loud enough to fool a VAD"
    # A stray frame is harmless: the barge-in decider takes echo frames off the count.
    assert verdicts[loud].mean() >= 0.9, verdicts[loud].mean()
    assert abs(guard.last_delay_ms - delay_ms) < 15 or guard.last_ncc == 0.0


def test_the_caller_talking_over_the_echo_is_not_echo() -> None:
    rate = 8000
    caller = np.concatenate([_sample("booking/keypad_digits.wav", rate)])
    played, inbound, talking = _line(
        rate, delay_ms=200, echo_db=-20, noise_dbfs=-60, caller=caller, caller_at_ms=500
    )
    verdicts = np.array(_verdicts(EchoGuard(rate), played, inbound))
    talking = talking[: verdicts.size]
    assert talking.sum() > 50
    # Only the first frame or two of a word, still inside the echo's window, may pass.
    assert verdicts[talking].mean() <= 0.05, verdicts[talking].mean()


def test_nothing_played_means_nothing_is_echo_and_nothing_is_searched() -> None:
    rate = 8000
    guard = EchoGuard(rate)
    speech = _sample("booking/sorry_again.wav", rate)
    silence = np.zeros(160, dtype=np.int16)
    for i in range(0, speech.size - 160, 160):
        guard.played(silence)
        assert not guard.heard(speech[i : i + 160])
    assert guard.searches == 0 and not guard.reference_active


def test_a_louder_than_played_copy_is_the_caller_not_an_echo() -> None:
    """An echo path only attenuates: the same words 16 dB louder than played are not echo."""
    rate = 8000
    played, inbound, _ = _line(rate, delay_ms=150, echo_db=16, noise_dbfs=-60)
    verdicts = np.array(_verdicts(EchoGuard(rate), played, inbound))
    assert verdicts.mean() <= 0.02


def test_a_rate_the_guard_cannot_decimate_is_refused() -> None:
    with pytest.raises(ValueError, match="44100 Hz"):
        EchoGuard(44100)


@pytest.mark.parametrize("delay_ms", [0, 95, 590])
def test_the_search_finds_what_a_direct_correlation_at_every_delay_finds(delay_ms: int) -> None:
    """The FFT is only as long as the reference: no lag that is read may wrap around, so
    the best delay and correlation match a plain dot product at every delay."""
    guard = EchoGuard(8000)
    played, inbound, _ = _line(8000, delay_ms=delay_ms, echo_db=-12.0, noise_dbfs=-60.0)
    f = 8000 * FRAME // 1000
    for i in range(61):
        guard.played(played[i * f : (i + 1) * f])
        guard.listen(inbound[i * f : (i + 1) * f])
    frame = guard._unjudged[-1]
    guard._search(frame)
    x = guard._heard.span(frame.heard_end - 640, frame.heard_end).copy()
    ref = guard._ref.span(frame.ref_end - guard._ref.window, frame.ref_end).copy()
    n = x.size
    windows = np.lib.stride_tricks.sliding_window_view(ref, n)
    ncc = windows @ x / np.sqrt(np.maximum((windows * windows).sum(axis=1), 1e-9) * (x @ x))
    best = int(np.argmax(ncc))
    assert guard.last_ncc == pytest.approx(float(ncc[best]), abs=1e-9)
    assert guard.last_delay_ms == (ref.size - n - best) * 1000 / 4000
    assert guard.last_ncc > 0.5
    assert abs(guard.last_delay_ms - delay_ms) <= 10.0


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_frame_by_frame_decimation_is_block_means_pre_emphasised_across_frames(rate: int) -> None:
    guard = EchoGuard(rate)
    pcm = _sample("book_flight.wav", rate)[: rate // 2]
    f = rate * FRAME // 1000
    got = np.concatenate([guard._decimate(pcm[i : i + f], 0) for i in range(0, pcm.size, f)])
    means = pcm.astype(np.float64).reshape(-1, rate // 4000).mean(axis=1)
    want = means - 0.9 * np.concatenate(([0.0], means[:-1]))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_judging_after_the_fact_gives_the_verdicts_judging_at_once_gives() -> None:
    """`listen` now and `verdicts` later: the same verdicts, frame for frame, as `heard`
    on every frame, on a line with echo and the caller talking over it."""
    rate = 8000
    caller = _sample("booking/keypad_digits.wav", rate)
    played, inbound, _ = _line(
        rate, delay_ms=200, echo_db=-15.0, noise_dbfs=-60.0, caller=caller, caller_at_ms=1500
    )
    at_once, later = EchoGuard(rate), EchoGuard(rate)
    f = rate * FRAME // 1000
    eager: list[bool] = []
    lazy: list[bool] = []
    for number, i in enumerate(range(0, played.size - f + 1, f), start=1):
        for guard in (at_once, later):
            guard.played(played[i : i + f])
        eager.append(at_once.heard(inbound[i : i + f]))
        later.listen(inbound[i : i + f])
        if number % 12 == 0:
            lazy.extend(later.verdicts(12))
    lazy.extend(later.verdicts(len(eager) - len(lazy)))
    assert sum(eager) > 20 and not all(eager)  # both kinds of frame were judged
    assert lazy == eager
    assert later.searches == at_once.searches


def test_frames_only_listened_to_cost_no_search_and_can_still_be_judged() -> None:
    rate = 8000
    played, inbound, _ = _line(rate, delay_ms=300, echo_db=-15.0, noise_dbfs=-60.0)
    listening, judging = EchoGuard(rate), EchoGuard(rate)
    f = rate * FRAME // 1000
    eager: list[bool] = []
    for i in range(0, 100 * f, f):
        for guard in (listening, judging):
            guard.played(played[i : i + f])
        listening.listen(inbound[i : i + f])
        eager.append(judging.heard(inbound[i : i + f]))
    assert listening.searches == 0
    # The last 16 frames can still be judged, from a fresh search, as they were at
    # once; older ones are gone and count as not echo.
    recent = listening.verdicts(30)
    assert len(recent) == 30
    assert not any(recent[:14])
    assert recent[14:] == eager[-16:]
    assert sum(recent[14:]) >= 6
    assert 0 < listening.searches <= 8
