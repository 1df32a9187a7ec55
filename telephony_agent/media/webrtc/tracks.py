"""The audio between aiortc and the Call: frames out on the clock, frames in as 20 ms PCM.

Outbound, :class:`OutboundAudioTrack` is the track aiortc's RTP sender pulls
from. Why it has no timer of its own: the stock pattern (``AudioStreamTrack``
sleeping until the next 20 ms deadline) is one sleeping task per call that
drifts against the shared :class:`~telephony_agent.audio.clock.MediaClock`.
Here ``recv()`` simply waits for the next frame that ``send_frame`` pushed on
a clock tick, so the clock alone paces every call. At most ``max_queued``
frames wait (the sender is not running before DTLS is up, and may stall); the
oldest go first, so latency cannot build up. Timestamps are assigned at push
time, one frame per tick, so a dropped frame leaves a gap in the RTP
timestamps as a real pause would, instead of shifting later audio.

Why ``recv()`` returns Opus packets and not PCM frames: aiortc's sender
treats the two differently. Given an ``av.AudioFrame`` it computes the RFC
6464 audio level in a pure-Python loop over every sample, hands the frame to
a thread pool to encode (a thread hop per frame), upmixes it to stereo
through a filter graph and encodes stereo at 96 kbit/s: together about 0.3 ms
of CPU per 20 ms frame. Given an ``av.Packet`` - aiortc's documented path
for pre-encoded media - it only stamps and sends it. So the track encodes
itself, synchronously, with :class:`OpusFrameEncoder`. What is lost is the
audio-level header extension, which only conference mixers use. The encoder
calls libopus directly (:mod:`telephony_agent.media.opus_native`) when it can
be loaded, because a PyAV codec context adds about as much again in Python
objects per frame (an ``AudioFrame`` in, ``Packet`` objects out) as CELT
spends coding the frame; it falls back to PyAV otherwise. Either way the
packets are handed to aiortc as ``av.Packet``, which is what its sender takes.
:meth:`OutboundAudioTrack.next_frame` still gives the PCM as an
``av.AudioFrame`` (s16 mono 48 kHz, ``time_base`` 1/48000) for anything that
wants frames rather than packets.

Inbound audio does not pass through a track at all: the leg takes the
page's RTP packets from aiortc's transport (see :mod:`.rtp_tap`).
"""

from __future__ import annotations

import asyncio
import fractions
import functools
from collections import deque
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.audio.codeccontext import AudioCodecContext
from numpy.typing import NDArray

from telephony_agent.media.opus_native import NativeOpusEncoder, OpusBackend, select_backend

__all__ = [
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "TIME_BASE",
    "LoopingPcmTrack",
    "OpusFrameEncoder",
    "OutboundAudioTrack",
]

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960
TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)

#: What browsers spend on a mono voice; aiortc's own encoder uses 96 kbit/s stereo.
DEFAULT_BITRATE = 32000
#: A packet this small can only be CELT's "silence" flag (3 bytes) or similar.
_MAX_SILENCE_PACKET = 8


def _pcm_frame(pcm: NDArray[np.int16], pts: int) -> av.AudioFrame:
    """An s16 mono 48 kHz ``av.AudioFrame`` holding `pcm`, stamped with `pts` in 1/48000."""
    frame = av.AudioFrame(format="s16", layout="mono", samples=pcm.size)
    frame.planes[0].update(pcm.tobytes())
    frame.sample_rate = SAMPLE_RATE
    frame.pts = pts
    frame.time_base = TIME_BASE
    return frame


class LoopingPcmTrack(MediaStreamTrack):
    """Plays `pcm` (48 kHz mono, whole 20 ms frames) in real time, looping.

    The stock way to feed aiortc, a track that sleeps until each frame is due: it
    stands for a browser's microphone on the offering side of tests, and for
    aiortc's own path in the benchmark's baseline.
    """

    kind = "audio"

    def __init__(self, pcm: NDArray[np.int16]) -> None:
        super().__init__()
        self._frames = pcm.reshape(-1, FRAME_SAMPLES)
        self._index = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        delay = self._start + self._index * 0.02 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        pcm = self._frames[self._index % len(self._frames)]
        frame = _pcm_frame(np.ascontiguousarray(pcm), self._index * FRAME_SAMPLES)
        self._index += 1
        return frame


def _fit(pcm: NDArray[np.int16]) -> NDArray[np.int16]:
    """`pcm` as exactly one 20 ms frame: the Call sends 960 samples, anything else is padded."""
    flat = np.ascontiguousarray(pcm, dtype=np.int16).reshape(-1)
    if flat.size == FRAME_SAMPLES:
        return flat
    fitted = np.zeros(FRAME_SAMPLES, dtype=np.int16)
    count = min(flat.size, FRAME_SAMPLES)
    fitted[:count] = flat[:count]
    return fitted


#: The encoder's settings, for both backends (see :class:`OpusFrameEncoder` for why).
_APPLICATION = "lowdelay"
_COMPLEXITY = 5


def _open_encoder(bitrate: int) -> AudioCodecContext:
    codec = av.CodecContext.create("libopus", "w")
    codec.bit_rate = bitrate
    codec.format = "s16"
    codec.layout = "mono"
    codec.sample_rate = SAMPLE_RATE
    codec.time_base = TIME_BASE
    codec.options = {
        "application": _APPLICATION,
        "vbr": "constrained",
        "frame_duration": "20",
        "compression_level": str(_COMPLEXITY),
    }
    return codec


def _open_native_encoder(bitrate: int) -> NativeOpusEncoder:
    return NativeOpusEncoder(
        SAMPLE_RATE,
        1,
        application=_APPLICATION,
        bitrate=bitrate,
        complexity=_COMPLEXITY,
        vbr_constraint=True,
    )


@functools.lru_cache(maxsize=8)
def _silence_packet(bitrate: int, backend: OpusBackend) -> bytes | None:
    """What the encoder makes of digital silence once its memory is silent, or None.

    None if that is not a tiny packet (then every frame is encoded). Computed
    with the same backend that will encode the call.
    """
    silence = np.zeros(FRAME_SAMPLES, dtype=np.int16)
    payload = b""
    if backend == "native":
        native = _open_native_encoder(bitrate)
        try:
            for _ in range(3):
                payload = native.encode(silence)
        finally:
            native.close()
    else:
        codec = _open_encoder(bitrate)
        for pts in range(0, 3 * FRAME_SAMPLES, FRAME_SAMPLES):
            for packet in codec.encode(_pcm_frame(silence, pts)):
                payload = bytes(packet)
    return payload if 0 < len(payload) <= _MAX_SILENCE_PACKET else None


class OpusFrameEncoder:
    """libopus, directly or through PyAV: mono CELT, one packet per 20 ms frame, silence for free.

    Why not aiortc's ``OpusEncoder``: it runs every frame through an
    ``av.AudioResampler`` graph to stereo and encodes stereo at 96 kbit/s.

    Why CELT only (libopus's "restricted low delay" application): the agent's
    voice is synthetic speech at up to 24 kHz, which CELT codes well at
    32 kbit/s, at 4 ms less algorithmic delay and well under half the CPU of
    the SILK/hybrid modes (measured on speech, back to back: about 50-65 µs
    against 120-160 µs per frame). Complexity 5 instead of 10 saves another
    quarter inside a busy process (~120 -> ~90 µs) for a 1 dB difference in
    decoded SNR. Any Opus decoder plays it; the SDP stays ``opus/48000/2``.

    Why silence is not encoded: an agent sends silence for much of a call
    (while the caller talks), and libopus spends as much on a frame of
    digital zeros as on speech.
    Once the encoder has coded one silent frame (which also flushes the tail
    of the speech before it), its memory is silent and every further silent
    frame codes to the same three-byte CELT "silence" packet, so that packet
    is replayed instead. The encoder's memory stays silent meanwhile, exactly
    as the decoder's is, so the next word starts cleanly.

    `backend` is "native" (libopus via ctypes; RuntimeError if it cannot be
    loaded), "pyav" (an FFmpeg codec context) or "auto" (native when available).
    Both code the same packets; native skips the per-frame PyAV objects.
    """

    def __init__(self, bitrate: int = DEFAULT_BITRATE, *, backend: str = "auto") -> None:
        self._backend = select_backend(backend)
        self._native: NativeOpusEncoder | None = None
        self._codec: AudioCodecContext | None = None
        if self._backend == "native":
            self._native = _open_native_encoder(bitrate)
        else:
            self._codec = _open_encoder(bitrate)
        self._silence = _silence_packet(bitrate, self._backend)
        self._silent = False
        #: Frames coded by libopus, and silent frames answered from the cache.
        self.encoded = 0
        self.skipped = 0

    @property
    def backend(self) -> OpusBackend:
        """Who codes the frames: "native" (libopus via ctypes) or "pyav"."""
        return self._backend

    def encode(self, pcm: NDArray[np.int16], pts: int) -> list[av.Packet[Any]]:
        """Code one 20 ms frame; the packets carry `pts` (libopus would shift it by its delay)."""
        silent = np.count_nonzero(pcm) == 0
        if silent and self._silent and self._silence is not None:
            self.skipped += 1
            return [_stamped(av.Packet(self._silence), pts)]
        self._silent = silent
        self.encoded += 1
        if self._native is not None:
            return [_stamped(av.Packet(self._native.encode(pcm)), pts)]
        assert self._codec is not None
        packets: list[av.Packet[Any]] = list(self._codec.encode(_pcm_frame(pcm, pts)))
        for packet in packets:
            _stamped(packet, pts)
        return packets


def _stamped(packet: av.Packet[Any], pts: int) -> av.Packet[Any]:
    """`packet` with `pts` in 1/48000 units, as aiortc's sender reads it."""
    packet.pts = pts
    packet.time_base = TIME_BASE
    return packet


class OutboundAudioTrack(MediaStreamTrack):
    """The agent's voice as aiortc pulls it: fed once per clock tick by :meth:`push`."""

    kind = "audio"

    def __init__(
        self, *, max_queued: int = 3, bitrate: int = DEFAULT_BITRATE, opus_backend: str = "auto"
    ) -> None:
        super().__init__()
        if max_queued < 1:
            raise ValueError(f"max_queued must be >= 1, got {max_queued}")
        self.max_queued = max_queued
        self._frames: deque[tuple[int, NDArray[np.int16]]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._next_pts = 0
        self._bitrate = bitrate
        # Resolved now, so a bad choice fails here and not inside aiortc's sender.
        self._opus_backend: OpusBackend = select_backend(opus_backend)
        self._encoder: OpusFrameEncoder | None = None
        self._pending: deque[av.Packet[Any]] = deque()
        #: Frames pushed, and frames dropped because the sender did not keep up.
        self.pushed = 0
        self.dropped = 0

    @property
    def encoder(self) -> OpusFrameEncoder | None:
        """The encoder, once aiortc's sender started pulling packets."""
        return self._encoder

    def push(self, pcm: NDArray[np.int16]) -> None:
        """Queue one 20 ms frame (never blocks; drops the oldest beyond ``max_queued``)."""
        if self.readyState != "live":
            return
        frames = self._frames
        if len(frames) >= self.max_queued:
            frames.popleft()
            self.dropped += 1
        frames.append((self._next_pts, _fit(pcm)))
        self._next_pts += FRAME_SAMPLES
        self.pushed += 1
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _next_pcm(self) -> tuple[int, NDArray[np.int16]]:
        frames = self._frames
        while not frames:
            if self.readyState != "live":
                raise MediaStreamError
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        if self.readyState != "live":
            raise MediaStreamError
        return frames.popleft()

    async def next_frame(self) -> av.AudioFrame:
        """The next pushed frame as s16 mono 48 kHz, waiting for a tick if none is queued.

        Raises ``MediaStreamError`` once the track is stopped, as aiortc expects.
        """
        pts, pcm = await self._next_pcm()
        return _pcm_frame(pcm, pts)

    async def recv(self) -> av.Packet[Any]:
        """The next Opus packet, ``pts`` in 1/48000 units (see the module docstring)."""
        while not self._pending:
            pts, pcm = await self._next_pcm()
            if self._encoder is None:
                self._encoder = OpusFrameEncoder(self._bitrate, backend=self._opus_backend)
            self._pending.extend(self._encoder.encode(pcm, pts))
        return self._pending.popleft()

    def stop(self) -> None:
        """End the track; a waiting ``recv()`` raises ``MediaStreamError``."""
        super().stop()
        self._frames.clear()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
