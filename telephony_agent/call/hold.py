"""Hold audio and filler recordings: what a caller hears while a tool runs, frame by frame.

Why apart from the playout queue: hold audio is not model audio. It must reach the leg
and the recording like speech, but never the per-item accounting that barge-in
truncation reads (a model item is never truncated by hold milliseconds), and it must
give way within one frame when the caller speaks or the answer is ready. So
`HoldPlayer` hands out frames itself, sans-I/O, and the Call takes them in place of
the queue's silence.

Why no click: a looped sound is made seamless once (its end cross-faded into its
start), a recording played once fades out at its end, every start fades in, and a
stop fades the next whole frame to zero, so the sound ends exactly on a frame
boundary with no step in the waveform.

`ToolFeedback` is a call's whole tool-wait behaviour (what it hears, after how long,
the longest wait), made from a profile's checked `ToolWait` and its decoded audio.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from telephony_agent.agent import (
    DEFAULT_FILLER_AFTER_S,
    DEFAULT_FILLER_INSTRUCTIONS,
    DEFAULT_TOOL_TIMEOUT_S,
    ToolFeedbackKind,
    ToolWait,
)
from telephony_agent.audio.resample import OutboundResampler

__all__ = ["RECORDING_RATE", "HoldAudio", "HoldPlayer", "ToolFeedback", "hold_tone"]

FRAME_MS = 20
#: Recordings are decoded once at this rate; each leg rate is made from it on first use.
RECORDING_RATE = 48000
#: A start fades in over this long; a recording played once fades out over it at its end.
EDGE_FADE_MS = 10
#: How much of a looped recording's end is cross-faded into its start.
LOOP_CROSSFADE_MS = 50

#: The built-in tone: two soft notes (E5 then C5), each struck and decaying like a
#: small bell, repeating every `TONE_PERIOD_S`; peak about -20 dBFS, inside the
#: telephone band at every leg rate.
TONE_NOTES: tuple[tuple[float, float], ...] = ((659.25, 0.0), (523.25, 0.35))
TONE_PERIOD_S = 2.5
TONE_PEAK = 0.1
_TONE_ATTACK_S = 0.015
_TONE_DECAY_S = 0.25


def hold_tone(rate: int) -> NDArray[np.int16]:
    """One period of the built-in hold tone at `rate`; it loops seamlessly (it starts
    and ends in silence)."""
    n = int(rate * TONE_PERIOD_S)
    t = np.arange(n, dtype=np.float64) / rate
    wave = np.zeros(n, dtype=np.float64)
    for hz, at in TONE_NOTES:
        local = t - at
        sounding = local >= 0.0
        attack = np.clip(local / _TONE_ATTACK_S, 0.0, 1.0)
        envelope = np.where(
            sounding,
            0.5 - 0.5 * np.cos(np.pi * attack),
            0.0,
        ) * np.exp(-np.maximum(local, 0.0) / _TONE_DECAY_S)
        wave += np.sin(2.0 * np.pi * hz * np.maximum(local, 0.0)) * envelope
    wave *= TONE_PEAK / max(float(np.max(np.abs(wave))), 1e-9)
    tail = _ramp(rate * EDGE_FADE_MS // 1000)[::-1]
    wave[n - tail.size :] *= tail
    return np.round(wave * 32767.0).astype(np.int16)


def _ramp(n: int) -> NDArray[np.float64]:
    """A raised-cosine rise from 0 towards 1 over `n` samples (smoother than linear)."""
    if n <= 0:
        return np.zeros(0, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(np.pi * np.arange(n, dtype=np.float64) / n)


def _seamless_loop(pcm: NDArray[np.int16], rate: int) -> NDArray[np.int16]:
    """The recording with its last `LOOP_CROSSFADE_MS` blended into its first, so the
    jump from end to start is inside a cross-fade (equal power) instead of a step."""
    x = pcm.astype(np.float64)
    n = min(rate * LOOP_CROSSFADE_MS // 1000, x.size // 3)
    if n == 0:
        return pcm.copy()
    rise = np.sin(0.5 * np.pi * np.arange(n, dtype=np.float64) / n)
    fall = np.cos(0.5 * np.pi * np.arange(n, dtype=np.float64) / n)
    joined = x[x.size - n :] * fall + x[:n] * rise
    looped = np.concatenate([x[n : x.size - n], joined])
    return np.clip(np.round(looped), -32768, 32767).astype(np.int16)


def _faded_once(pcm: NDArray[np.int16], rate: int) -> NDArray[np.int16]:
    """A recording played once, ending in silence whatever its last sample was."""
    x = pcm.astype(np.float64)
    tail = _ramp(min(rate * EDGE_FADE_MS // 1000, x.size))[::-1]
    x[x.size - tail.size :] *= tail
    return np.round(x).astype(np.int16)


class HoldAudio:
    """One hold sound or filler recording, ready at any leg rate (each rate made once).

    Shared by every call of a profile: a deployment decodes the file once and each
    leg rate is resampled and prepared on first use, then reused.
    """

    def __init__(self, pcm: NDArray[np.int16] | None, rate: int, *, loop: bool) -> None:
        """`pcm` None is the built-in tone (always looped)."""
        if pcm is not None and pcm.size == 0:
            raise ValueError("a hold or filler recording needs at least one sample")
        self._pcm = None if pcm is None else np.asarray(pcm, dtype=np.int16).reshape(-1)
        self._rate = rate
        self.loop = loop or pcm is None
        self._by_rate: dict[int, NDArray[np.int16]] = {}

    @classmethod
    def tone(cls) -> HoldAudio:
        """The built-in tone, one instance for the process (each rate is made once)."""
        return _shared_tone()

    @property
    def is_tone(self) -> bool:
        return self._pcm is None

    def at(self, rate: int) -> NDArray[np.int16]:
        """The sound at `rate`, prepared to loop or to play once."""
        ready = self._by_rate.get(rate)
        if ready is None:
            ready = self._prepare(rate)
            self._by_rate[rate] = ready
        return ready

    @property
    def prepared_rates(self) -> frozenset[int]:
        """The leg rates it is already made at."""
        return frozenset(self._by_rate)

    def prepare(self, rates: Iterable[int]) -> HoldAudio:
        """Make the sound at each of `rates` now: at load, not on a call's first tick
        (a minute of music takes tens of milliseconds per rate)."""
        for rate in rates:
            self.at(rate)
        return self

    def _prepare(self, rate: int) -> NDArray[np.int16]:
        if self._pcm is None:
            return hold_tone(rate)
        pcm = self._pcm
        if rate != self._rate:
            resampler = OutboundResampler(self._rate, rate)
            pcm = np.concatenate([resampler.process(pcm), resampler.flush()])
        return _seamless_loop(pcm, rate) if self.loop else _faded_once(pcm, rate)


@functools.cache
def _shared_tone() -> HoldAudio:
    return HoldAudio(None, RECORDING_RATE, loop=True)


class HoldPlayer:
    """Frames of one hold sound: `start`, one `frame()` per tick, `stop` to fade out.

    `frame()` returns None when nothing sounds. After `stop()` the next frame is the
    last: the sound continues from where it was, faded over the whole frame to zero.
    """

    def __init__(self, pcm: NDArray[np.int16], rate: int, *, loop: bool) -> None:
        if pcm.size == 0:
            raise ValueError("a hold sound needs at least one sample")
        self.loop = loop
        self._pcm = pcm
        self._n = rate * FRAME_MS // 1000
        self._steps = np.arange(self._n)
        self._fade_in = _ramp(rate * EDGE_FADE_MS // 1000)
        self._fade_out = _ramp(self._n)[::-1]
        self._position = 0
        self._starting = False
        self._stopping = False
        #: True from `start` until the frame that ends the sound has been handed out.
        self.sounding = False

    def start(self) -> None:
        """Sound from the beginning (fading in); a sound already playing goes on."""
        if self.sounding and not self._stopping:
            return
        self._position = 0
        self._starting = True
        self._stopping = False
        self.sounding = True

    def stop(self) -> None:
        """End with the next frame (a fade to zero); nothing when it is not sounding."""
        if self.sounding:
            self._stopping = True

    @property
    def stopping(self) -> bool:
        return self._stopping

    def frame(self) -> NDArray[np.int16] | None:
        if not self.sounding:
            return None
        n, pcm, position = self._n, self._pcm, self._position
        if self.loop:
            out = np.take(pcm, self._steps + position, mode="wrap").astype(np.float64)
            self._position = (position + n) % pcm.size
            finished = False
        else:
            out = np.zeros(n, dtype=np.float64)
            chunk = pcm[position : position + n]
            out[: chunk.size] = chunk
            self._position = position + n
            finished = self._position >= pcm.size
        if self._starting:
            self._starting = False
            ramp = self._fade_in[: min(self._fade_in.size, n)]
            out[: ramp.size] *= ramp
        if self._stopping:
            out *= self._fade_out
            finished = True
        if finished:
            self.sounding = False
            self._stopping = False
        return np.round(out).astype(np.int16)


@dataclass(frozen=True)
class ToolFeedback:
    """A call's tool-wait behaviour: what the caller hears, when, and the longest wait.

    `audio` is the recording (`recording`) or the hold sound (`hold`); the milliseconds
    are media time, the call's own clock.
    """

    kind: ToolFeedbackKind = "none"
    audio: HoldAudio | None = field(default=None, compare=False)
    after_ms: int = round(DEFAULT_FILLER_AFTER_S * 1000)
    timeout_ms: int = round(DEFAULT_TOOL_TIMEOUT_S * 1000)
    instructions: str = DEFAULT_FILLER_INSTRUCTIONS

    def __post_init__(self) -> None:
        if self.kind in ("recording", "hold") and self.audio is None:
            raise ValueError(f"tool feedback {self.kind!r} needs its audio")

    @classmethod
    def from_wait(cls, wait: ToolWait, audio: HoldAudio | None) -> ToolFeedback:
        """From a profile's checked settings and its decoded recording (None: the tone,
        or no recording needed)."""
        if wait.feedback == "hold" and audio is None:
            audio = HoldAudio.tone()
        return cls(
            kind=wait.feedback,
            audio=audio if wait.feedback in ("recording", "hold") else None,
            after_ms=round(wait.filler_after_s * 1000),
            timeout_ms=round(wait.tool_timeout_s * 1000),
            instructions=wait.filler_instructions,
        )
