"""The one interface every call leg offers to the Call.

Why an event stream plus a per-tick `send_frame`: the Call must not know whether it
talks to plain RTP, WebRTC or a file. Inbound, a leg yields decoded PCM frames at
its native rate, DTMF digits and its own end; outbound, the Call hands it exactly
one frame per media-clock tick (speech or silence) and the leg packetises it.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from telephony_agent.audio.g711 import G711Law, LazyPcm
from telephony_agent.audio.playout import Frame


class AudioIn(LazyPcm):
    """One inbound frame of caller audio at the leg's sample rate.

    A leg asked to hand on G.711 as received (`MediaLeg.deliver_g711`) gives the payload
    bytes and their law instead of PCM; ``pcm`` decodes them on first use (`LazyPcm`), so
    a reader that needs samples (a recorder) still gets them and nobody else pays for
    decoding.
    """

    __slots__ = ("received_at",)

    _needs = "caller audio needs PCM, or a G.711 payload and its law"

    def __init__(
        self,
        pcm: NDArray[np.int16] | None,
        received_at: float = 0.0,
        *,
        payload: bytes | None = None,
        law: G711Law | None = None,
    ) -> None:
        LazyPcm.__init__(self, pcm, payload, law)
        #: ``time.monotonic()`` when the frame's packet arrived (0.0 when not from a socket).
        self.received_at = received_at

    def __repr__(self) -> str:
        return f"AudioIn({self._kind()}, received_at={self.received_at})"


@dataclass(frozen=True)
class LegFormat:
    """A leg's codec and PCM rate, known once its media is negotiated: the Realtime session
    is set up to match it (G.711 passthrough, an output rate that needs no resampling)."""

    codec: str
    sample_rate: int


@dataclass(frozen=True)
class DtmfIn:
    """A digit the caller pressed (RFC 4733, SIP INFO or a browser data channel)."""

    digit: str
    duration_ms: int


@dataclass(frozen=True)
class LegEnded:
    """The far end is gone (BYE, browser closed, file finished, media timeout)."""

    reason: str


LegEvent = AudioIn | DtmfIn | LegEnded


@dataclass(frozen=True)
class TransferResult:
    """How a transfer ended: `reason` is short and sayable ("busy", "declined").

    `mode` is how it was done ("refer", or "bridge" when we called the target and relay
    the audio); `message`, when set, is what the agent should tell the caller before it
    hangs up because the transfer could not be done on this line.
    """

    ok: bool
    reason: str = ""
    status: int | None = None
    mode: str = "refer"
    message: str | None = None


class MediaLeg(abc.ABC):
    """A call's media: what the caller says in, what the agent says out."""

    #: Native PCM rate of the leg (8000 for G.711, 16000 for G.722, 48000 for Opus).
    sample_rate: int
    #: Short codec/transport label for logs and summaries ("PCMU", "file", ...).
    codec: str = "pcm"

    @property
    def frame_samples(self) -> int:
        """Samples in one 20 ms frame at the leg rate."""
        return self.sample_rate // 50

    @property
    def format(self) -> LegFormat:
        return LegFormat(self.codec, self.sample_rate)

    @abc.abstractmethod
    def events(self) -> AsyncIterator[LegEvent]:
        """Inbound events; the iterator ends after `LegEnded`."""

    @abc.abstractmethod
    def send_frame(self, frame: Frame) -> None:
        """Send one 20 ms frame now. Called once per media-clock tick; must not block."""

    @abc.abstractmethod
    async def hangup(self, reason: str) -> None:
        """End the leg from our side (BYE, close the peer connection)."""

    async def transfer(self, target: str) -> TransferResult:
        """Hand the caller to `target`; legs that cannot transfer say so."""
        del target
        return TransferResult(False, "not_supported")

    def send_dtmf(self, digits: str) -> bool:
        """Play DTMF towards the far end; False when the leg cannot."""
        del digits
        return False

    def deliver_to(self, handler: Callable[[LegEvent], None] | None) -> bool:
        """Hand inbound events straight to `handler`, synchronously as they arrive,
        instead of through `events()` (which then yields nothing); None hands them back
        to `events()`. Starts the leg's media like `events()`. False when the leg cannot
        (then iterate `events()`)."""
        del handler
        return False

    def deliver_g711(self) -> bool:
        """From now on hand inbound audio on as the G.711 payloads received, undecoded
        (`AudioIn.payload`), for a model that takes G.711 as it is. False when the leg
        has no G.711 to hand on (it then keeps giving PCM)."""
        return False
