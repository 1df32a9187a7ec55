"""libopus called directly through ctypes: the Opus encoder and decoder of every call.

Why not PyAV's codec contexts: Opus is coded on every 20 ms tick of every
call, and through PyAV each frame also pays for Python objects around the C
call (an ``AudioFrame`` in, ``Packet`` objects out, ``Fraction`` time bases):
30-40 µs per encode and 5-10 µs per decode on top of libopus' own work, which
is as much again as CELT spends coding a frame. Through ctypes the wrapper
costs about 1 µs (``benchmarks/bench_rtp.py`` compares both in one run). Why
ctypes and not a compiled extension or another package: PyAV's wheels already
ship a real shared libopus (FFmpeg links it), so the library is there wherever
PyAV is, with no build step and no new dependency.

Where the library comes from, first match wins: the copy bundled with PyAV
(``av.libs/`` beside the package in Linux wheels, ``av/.dylibs/`` in macOS
wheels), then the system's (``ctypes.util.find_library("opus")``). A library
counts only if it has every function used here and calls itself "libopus".
If none does, :func:`native_opus_available` is False and callers use PyAV.

The objects here are thin: one libopus state each, buffers allocated once,
no per-sample Python. Like any codec state they are per call and per
direction, never shared.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib.util
from collections.abc import Iterator
from ctypes import c_char_p, c_int, c_int32, c_void_p
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "NativeOpusDecoder",
    "NativeOpusEncoder",
    "OpusBackend",
    "OpusError",
    "libopus_version",
    "load_libopus",
    "native_opus_available",
    "require_libopus",
    "select_backend",
]

OpusBackend = Literal["native", "pyav"]
"""Which implementation codes Opus: libopus through ctypes, or PyAV's codec contexts."""

# Values from libopus' opus_defines.h.
_OPUS_OK = 0
_APPLICATIONS = {"voip": 2048, "audio": 2049, "lowdelay": 2051}
_SET_BITRATE = 4002
_SET_COMPLEXITY = 4010
_SET_INBAND_FEC = 4012
_SET_PACKET_LOSS_PERC = 4014
_SET_VBR_CONSTRAINT = 4020

#: Rates libopus codes at, and the channel counts it takes.
_SAMPLE_RATES = (8000, 12000, 16000, 24000, 48000)
#: Opus frame durations in units of 2.5 ms (2.5, 5, 10, 20, 40, 60 ms).
_FRAME_QUARTERS = (1, 2, 4, 8, 16, 24)
#: The longest packet an encoder may write: RFC 6716 recommends 1275 bytes a frame;
#: 1500 (an Ethernet MTU) leaves room and is what libopus' own examples use.
_MAX_PACKET = 1500
#: The longest audio one Opus packet can hold.
_MAX_PACKET_MS = 120

_LIBRARY_PATTERNS = ("libopus*.so*", "libopus*.dylib")

_UNAVAILABLE = (
    "libopus could not be loaded: no usable copy bundled with PyAV (av.libs or av/.dylibs) "
    "and none on the system library path; install libopus or use the PyAV backend"
)


class OpusError(Exception):
    """libopus refused a call; the message carries its own error text (``opus_strerror``)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        #: The negative libopus error code (e.g. -4, OPUS_INVALID_PACKET).
        self.code = code


def _bundled_libraries() -> Iterator[Path]:
    """libopus files shipped inside the installed PyAV wheel, without importing PyAV."""
    spec = importlib.util.find_spec("av")
    if spec is None or spec.origin is None:
        return
    package = Path(spec.origin).parent
    for folder in (package.parent / "av.libs", package / ".dylibs"):
        if folder.is_dir():
            for pattern in _LIBRARY_PATTERNS:
                yield from sorted(folder.glob(pattern))


def _declare(lib: ctypes.CDLL) -> None:
    """Argument and result types of every function used (AttributeError if one is missing).

    Pointers are declared so that 64-bit addresses are never truncated to C ints.
    Inputs are passed as ``c_char_p`` because ctypes hands a ``bytes`` object's
    buffer to C without copying it.
    """
    error_out = ctypes.POINTER(c_int)

    lib.opus_get_version_string.argtypes = []
    lib.opus_get_version_string.restype = c_char_p
    lib.opus_strerror.argtypes = [c_int]
    lib.opus_strerror.restype = c_char_p

    lib.opus_encoder_create.argtypes = [c_int32, c_int, c_int, error_out]
    lib.opus_encoder_create.restype = c_void_p
    # Variadic: only the fixed part is declared; each call adds one c_int32 value,
    # which ctypes then passes with the variadic calling convention where that differs.
    lib.opus_encoder_ctl.argtypes = [c_void_p, c_int]
    lib.opus_encoder_ctl.restype = c_int
    # (state, const opus_int16 *pcm, frame_size, unsigned char *data, max_data_bytes)
    lib.opus_encode.argtypes = [c_void_p, c_char_p, c_int, c_void_p, c_int32]
    lib.opus_encode.restype = c_int32
    lib.opus_encoder_destroy.argtypes = [c_void_p]
    lib.opus_encoder_destroy.restype = None

    lib.opus_decoder_create.argtypes = [c_int32, c_int, error_out]
    lib.opus_decoder_create.restype = c_void_p
    # (state, const unsigned char *data, len, opus_int16 *pcm, frame_size, decode_fec)
    lib.opus_decode.argtypes = [c_void_p, c_char_p, c_int32, c_void_p, c_int, c_int]
    lib.opus_decode.restype = c_int
    lib.opus_decoder_destroy.argtypes = [c_void_p]
    lib.opus_decoder_destroy.restype = None


def _open(name: str) -> ctypes.CDLL | None:
    """The library at `name`, typed and checked, or None if it is not a usable libopus."""
    try:
        lib = ctypes.CDLL(name)
        _declare(lib)
        version = lib.opus_get_version_string()
    except (OSError, AttributeError):
        return None
    if not isinstance(version, bytes) or not version.startswith(b"libopus"):
        return None
    return lib


@functools.cache
def load_libopus() -> ctypes.CDLL | None:
    """libopus, loaded once per process: PyAV's bundled copy first, then the system's.

    PyAV's copy comes first because it is the one PyAV itself was tested with and
    is present wherever our PyAV fallback would work. None if nothing loads.
    """
    for path in _bundled_libraries():
        lib = _open(str(path))
        if lib is not None:
            return lib
    system = ctypes.util.find_library("opus")
    return _open(system) if system else None


def native_opus_available() -> bool:
    """True if libopus could be loaded, so the native backend can be used."""
    return load_libopus() is not None


def libopus_version() -> str | None:
    """The loaded library's version string (e.g. "libopus 1.5.2"), or None if there is none."""
    lib = load_libopus()
    if lib is None:
        return None
    version: bytes = lib.opus_get_version_string()
    return version.decode("ascii", "replace")


def require_libopus() -> ctypes.CDLL:
    """libopus, or RuntimeError saying where it was looked for."""
    lib = load_libopus()
    if lib is None:
        raise RuntimeError(_UNAVAILABLE)
    return lib


def select_backend(backend: str) -> OpusBackend:
    """The backend to use for a requested one: "auto", "native" or "pyav".

    "auto" is native when libopus loads and PyAV otherwise; "native" raises
    RuntimeError when libopus cannot be loaded instead of falling back silently.
    """
    if backend == "pyav":
        return "pyav"
    if backend == "native":
        require_libopus()
        return "native"
    if backend == "auto":
        return "native" if native_opus_available() else "pyav"
    raise ValueError(f"Opus backend must be auto, native or pyav, got {backend!r}")


def _error(lib: ctypes.CDLL, code: int, what: str) -> OpusError:
    text: bytes | None = lib.opus_strerror(code)
    reason = text.decode("ascii", "replace") if text else f"error {code}"
    return OpusError(code, f"{what}: {reason}")


def _check_format(sample_rate: int, channels: int) -> None:
    if sample_rate not in _SAMPLE_RATES:
        raise ValueError(f"Opus sample rate must be one of {_SAMPLE_RATES}, got {sample_rate}")
    if channels not in (1, 2):
        raise ValueError(f"Opus codes 1 or 2 channels, got {channels}")


class NativeOpusEncoder:
    """One libopus encoder: int16 PCM frames in, one Opus packet per frame out.

    `application` is libopus' tuning: "voip" (SILK-leaning, shaped for the ear),
    "audio" (closest to the waveform) or "lowdelay" (CELT only, least delay and
    CPU). `complexity` None keeps libopus' default (10). Unlike FFmpeg's wrapper,
    libopus defaults to *constrained* VBR, so `vbr_constraint` is always set.
    `inband_fec` with a `packet_loss_percent` above 0 makes SILK frames carry a
    low-rate copy of the previous frame (what :meth:`NativeOpusDecoder.decode_fec`
    recovers); neither is on by default.
    """

    def __init__(
        self,
        sample_rate: int = 48000,
        channels: int = 1,
        *,
        application: str = "audio",
        bitrate: int,
        complexity: int | None = None,
        vbr_constraint: bool = False,
        inband_fec: bool = False,
        packet_loss_percent: int = 0,
    ) -> None:
        self._state: int | None = None
        lib = require_libopus()
        _check_format(sample_rate, channels)
        mode = _APPLICATIONS.get(application)
        if mode is None:
            raise ValueError(f"Opus application must be voip, audio or lowdelay: {application!r}")
        self._lib = lib
        self.sample_rate = sample_rate
        self.channels = channels
        #: Accepted input lengths (all channels), one per valid Opus frame duration.
        self._input_sizes = frozenset(sample_rate * q // 400 * channels for q in _FRAME_QUARTERS)
        error = c_int(_OPUS_OK)
        create = lib.opus_encoder_create
        state: int | None = create(sample_rate, channels, mode, ctypes.byref(error))
        if error.value != _OPUS_OK or not state:
            raise _error(lib, error.value, "opus_encoder_create")
        self._state = state
        self._ctl(_SET_BITRATE, bitrate)
        if complexity is not None:
            self._ctl(_SET_COMPLEXITY, complexity)
        self._ctl(_SET_VBR_CONSTRAINT, int(vbr_constraint))
        if inband_fec:
            self._ctl(_SET_INBAND_FEC, 1)
        if packet_loss_percent:
            self._ctl(_SET_PACKET_LOSS_PERC, packet_loss_percent)
        self._out = ctypes.create_string_buffer(_MAX_PACKET)
        self._out_address = ctypes.addressof(self._out)

    def _ctl(self, request: int, value: int) -> None:
        code: int = self._lib.opus_encoder_ctl(self._state, request, c_int32(value))
        if code != _OPUS_OK:
            self.close()
            raise _error(self._lib, code, f"opus_encoder_ctl({request}, {value})")

    def encode(self, pcm: NDArray[np.int16]) -> bytes:
        """Code exactly one frame (2.5-60 ms; interleaved if stereo) into one Opus packet.

        ValueError for a wrong dtype or frame size, OpusError if libopus fails.
        """
        state = self._state
        if state is None:
            raise ValueError("the Opus encoder is closed")
        if pcm.dtype != np.int16:
            raise ValueError(f"Opus input must be int16 PCM, got {pcm.dtype}")
        if pcm.size not in self._input_sizes:
            raise ValueError(
                f"{pcm.size} samples is not one Opus frame of 2.5, 5, 10, 20, 40 or 60 ms "
                f"at {self.sample_rate} Hz, {self.channels} channel(s)"
            )
        # tobytes() is one C-order memcpy (~0.1 µs) and also straightens strided views.
        size: int = self._lib.opus_encode(
            state, pcm.tobytes(), pcm.size // self.channels, self._out_address, _MAX_PACKET
        )
        if size < 0:
            raise _error(self._lib, size, "opus_encode")
        return self._out.raw[:size]

    def close(self) -> None:
        """Free the libopus state; safe to call more than once."""
        state, self._state = self._state, None
        if state is not None:
            self._lib.opus_encoder_destroy(state)

    def __del__(self) -> None:
        self.close()


class NativeOpusDecoder:
    """One libopus decoder: Opus packets in, int16 PCM at `sample_rate` out.

    Output is 1-D for mono, ``(samples, 2)`` for stereo. A mono decoder
    downmixes stereo packets itself. Every result is a fresh array the caller
    may keep; the decode buffer (120 ms, the longest packet) is reused.
    """

    def __init__(self, sample_rate: int = 48000, channels: int = 1) -> None:
        self._state: int | None = None
        lib = require_libopus()
        _check_format(sample_rate, channels)
        self._lib = lib
        self.sample_rate = sample_rate
        self.channels = channels
        #: Samples (per channel) in 2.5 ms: PLC and FEC work in multiples of it.
        self._step = sample_rate // 400
        self._max_samples = sample_rate * _MAX_PACKET_MS // 1000
        self._pcm = np.zeros(self._max_samples * channels, dtype=np.int16)
        self._pcm_address: int = self._pcm.ctypes.data
        error = c_int(_OPUS_OK)
        state: int | None = lib.opus_decoder_create(sample_rate, channels, ctypes.byref(error))
        if error.value != _OPUS_OK or not state:
            raise _error(lib, error.value, "opus_decoder_create")
        self._state = state

    def _run(self, payload: bytes | None, samples: int, fec: int) -> NDArray[np.int16]:
        state = self._state
        if state is None:
            raise ValueError("the Opus decoder is closed")
        size = len(payload) if payload is not None else 0
        count: int = self._lib.opus_decode(state, payload, size, self._pcm_address, samples, fec)
        if count < 0:
            raise _error(self._lib, count, "opus_decode")
        out = self._pcm[: count * self.channels].copy()
        return out if self.channels == 1 else out.reshape(-1, self.channels)

    def _check_span(self, samples: int) -> None:
        if samples <= 0 or samples % self._step:
            raise ValueError(
                f"{samples} samples is not a positive multiple of 2.5 ms at {self.sample_rate} Hz"
            )

    def decode(self, payload: bytes) -> NDArray[np.int16]:
        """All the audio in one packet (2.5-120 ms). OpusError if it is invalid or corrupt.

        An empty payload is a lost packet, not a packet: use :meth:`conceal`.
        """
        if not payload:
            raise ValueError("an empty payload is a lost packet; use conceal()")
        return self._run(bytes(payload), self._max_samples, 0)

    def conceal(self, samples: int) -> NDArray[np.int16]:
        """libopus packet-loss concealment for `samples` (a multiple of 2.5 ms) of lost audio.

        It continues the last decoded signal and fades it over successive calls,
        and it keeps the decoder state in step, so the next real packet joins
        without a click. Spans over 120 ms are concealed in 120 ms pieces.
        """
        self._check_span(samples)
        if samples <= self._max_samples:
            return self._run(None, samples, 0)
        pieces = []
        left = samples
        while left:
            piece = min(left, self._max_samples)
            pieces.append(self._run(None, piece, 0))
            left -= piece
        return np.concatenate(pieces)

    def decode_fec(self, payload: bytes, samples: int) -> NDArray[np.int16]:
        """The *previous*, lost frame (`samples` long) rebuilt from in-band FEC in `payload`.

        Call it when a packet arrives after a gap of `samples`, then :meth:`decode`
        the same payload for its own audio. libopus runs concealment instead when
        the packet carries no FEC (CELT packets never do) or is shorter than the gap.
        """
        self._check_span(samples)
        if samples > self._max_samples:
            raise ValueError(f"FEC recovers at most {_MAX_PACKET_MS} ms, got {samples} samples")
        if not payload:
            return self.conceal(samples)
        return self._run(bytes(payload), samples, 1)

    def close(self) -> None:
        """Free the libopus state; safe to call more than once."""
        state, self._state = self._state, None
        if state is not None:
            self._lib.opus_decoder_destroy(state)

    def __del__(self) -> None:
        self.close()
