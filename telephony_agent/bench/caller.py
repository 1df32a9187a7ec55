"""Synthetic SIP callers: one process places and holds many bench calls.

    python -m telephony_agent.bench.caller SPEC.json RESULT.json

Each call sends an INVITE at its `start_at`, ACKs the answer and streams the sample
speech as the call's codec every 20 ms until `hang_up_at`, then says BYE. All calls of
the process send from one absolute-deadline tick (`loop.call_at`), so a late tick is
caught up and measured rather than silently stretching the stream. What the agent sends
is read with the kernel's receive timestamp (`SO_TIMESTAMPNS` through `recvmsg` on a plain
non-blocking socket): an asyncio datagram protocol would timestamp when Python got
round to it, which under load measures this process, not the agent. Packets that arrive
inside the hold window are kept raw and decoded only after the calls end, so the load
generator does as little as possible while it measures.

Progress goes to stdout as JSON lines (`{"held": n, ...}`); the result file has, per
call, its send times, pacing, loss and fidelity, and the process's own tick lateness.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import secrets
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from telephony_agent.bench import measures, speech
from telephony_agent.bench.caller_sip import CallerDialog
from telephony_agent.sip.message import SipParseError, SipRequest
from telephony_agent.sip.parser import parse_message

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
"""Linux's value where Python does not name it."""
_TIMESPEC = struct.Struct("@qq")
_RTP = struct.Struct("!BBHII")
TICK_S = measures.FRAME_S
RETRANSMIT_S = (0.5, 1.0, 2.0, 4.0, 4.0, 4.0)
"""INVITE retransmissions until a provisional response (RFC 3261 timer A, T1 = 500 ms)."""
BYE_WAIT_S = 2.0
PROGRESS_S = 0.5


@dataclass
class CallerCall:
    """One call's sockets, dialog and what it saw."""

    index: int
    dialog: CallerDialog
    rtp: socket.socket
    ssrc: int = field(default_factory=lambda: secrets.randbits(32))
    sequence: int = field(default_factory=lambda: secrets.randbits(16))
    timestamp: int = field(default_factory=lambda: secrets.randbits(32))
    streaming: bool = False
    sent: int = 0
    send_times: list[float] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    sequences: list[int] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)
    tries: int = 0
    send_errors: int = 0


class CallerProcess:
    """The asyncio shell around many `CallerDialog`s; see the module docstring."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.codec: str = spec["codec"]
        self.frames = speech.caller_payloads(self.codec)
        self.step = speech.codec_rate(self.codec) // 50
        if self.codec == "g722":
            self.step = 160  # G.722's RTP clock is 8000 whatever its 16 kHz audio
        self.hold = (float(spec["hold_start"]), float(spec["hold_end"]))
        self.calls: dict[str, CallerCall] = {}
        self.lateness: list[float] = []
        self.sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sip.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sip.bind((spec.get("bind", "127.0.0.1"), 0))
        self.sip.setblocking(False)
        self.local_sip: tuple[str, int] = self.sip.getsockname()
        self.clock_offset = _realtime_minus_monotonic()
        self.done = asyncio.Event()
        self.hanging_up = False
        self.all_ended = asyncio.Event()

    async def run(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.sip.fileno(), self._on_sip)
        for entry in self.spec["calls"]:
            loop.call_at(float(entry["start_at"]), self._place, entry)
        first = min(float(entry["start_at"]) for entry in self.spec["calls"])
        loop.call_at(first, self._tick, first, 0)
        loop.call_at(first, self._progress)
        hang_up = float(self.spec["hang_up_at"])
        await asyncio.sleep(max(0.0, hang_up - loop.time()))
        self._hang_up()
        self._check_all_ended()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(BYE_WAIT_S):
                await self.all_ended.wait()
        self.done.set()
        loop.remove_reader(self.sip.fileno())
        for call in self.calls.values():
            loop.remove_reader(call.rtp.fileno())
            call.rtp.close()
        self.sip.close()
        return self._results()

    # -- signalling ---------------------------------------------------------------

    def _place(self, entry: dict[str, Any]) -> None:
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtp.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        rtp.bind((self.local_sip[0], 0))
        rtp.setblocking(False)
        target = (str(entry["target"][0]), int(entry["target"][1]))
        dialog = CallerDialog(
            user=str(entry["user"]),
            target=target,
            local_sip=self.local_sip,
            rtp_port=rtp.getsockname()[1],
            codec_name=speech.sdp_name(self.codec),
        )
        call = CallerCall(int(entry["index"]), dialog, rtp)
        self.calls[dialog.call_id] = call
        loop = asyncio.get_running_loop()
        loop.add_reader(rtp.fileno(), self._on_rtp, call)
        self._send_invite(call)

    def _send_invite(self, call: CallerCall) -> None:
        if call.dialog.state != "calling" or call.dialog.provisional or self.done.is_set():
            return
        if call.tries >= len(RETRANSMIT_S):
            call.dialog.state = "refused"  # never answered at all
            return
        self._send_sip(call.dialog.invite(), call.dialog.target)
        asyncio.get_running_loop().call_later(RETRANSMIT_S[call.tries], self._send_invite, call)
        call.tries += 1

    def _send_sip(self, data: bytes, target: tuple[str, int]) -> None:
        # A full buffer is a lost datagram; retransmission covers the INVITE.
        with contextlib.suppress(BlockingIOError, InterruptedError):
            self.sip.sendto(data, target)

    def _on_sip(self) -> None:
        while True:
            try:
                data, source = self.sip.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            try:
                message = parse_message(data)
            except SipParseError:
                continue
            call = self.calls.get(message.call_id)
            if call is None:
                continue
            if isinstance(message, SipRequest):
                if message.method != "ACK":
                    self._send_sip(call.dialog.answer(message), source)
                if call.dialog.state == "ended":
                    call.streaming = False
                continue
            for reply in call.dialog.on_response(message):
                self._send_sip(reply, call.dialog.target)
            if self.hanging_up:
                self._check_all_ended()
            if call.dialog.state == "answered" and not call.streaming and call.sent == 0:
                call.streaming = not self.done.is_set()

    def _check_all_ended(self) -> None:
        if not any(c.dialog.state == "answered" for c in self.calls.values()):
            self.all_ended.set()

    def _hang_up(self) -> None:
        self.hanging_up = True
        for call in self.calls.values():
            call.streaming = False
            if call.dialog.state == "answered":
                bye = call.dialog.bye()
                self._send_sip(bye, call.dialog.target)
                asyncio.get_running_loop().call_later(0.5, self._resend_bye, call, bye)

    def _resend_bye(self, call: CallerCall, bye: bytes) -> None:
        if call.dialog.state == "answered" and not self.done.is_set():
            self._send_sip(bye, call.dialog.target)

    # -- media --------------------------------------------------------------------

    def _tick(self, base: float, number: int) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = base + number * TICK_S
        self.lateness.append(now - due)
        # Catch up every tick that is due: the stream keeps its rate even when a tick
        # comes late, and the lateness says how late this process itself was.
        behind = max(0, int((now - due) / TICK_S))
        for _ in range(behind + 1):
            for call in self.calls.values():
                if call.streaming:
                    self._send_rtp(call)
        number += behind + 1
        if not self.done.is_set():
            loop.call_at(base + number * TICK_S, self._tick, base, number)

    def _send_rtp(self, call: CallerCall) -> None:
        media = call.dialog.media
        if media is None:
            return
        payload = self.frames[call.sent % len(self.frames)]
        marker = 0x80 if call.sent == 0 else 0
        header = _RTP.pack(
            0x80, marker | media.payload_type, call.sequence, call.timestamp, call.ssrc
        )
        call.send_times.append(time.monotonic())
        try:
            call.rtp.sendto(header + payload, media.remote)
        except (BlockingIOError, InterruptedError, ConnectionRefusedError):
            # Counted as sent all the same (the stream's clock went on), and reported:
            # a send buffer that fills up means the agent is not reading.
            call.send_errors += 1
        call.sent += 1
        call.sequence = (call.sequence + 1) & 0xFFFF
        call.timestamp = (call.timestamp + self.step) & 0xFFFFFFFF

    def _on_rtp(self, call: CallerCall) -> None:
        space = socket.CMSG_SPACE(_TIMESPEC.size)
        start, end = self.hold
        while True:
            try:
                data, ancillary, _flags, _source = call.rtp.recvmsg(2048, space)
            except (BlockingIOError, InterruptedError, ConnectionRefusedError):
                return
            arrival = None
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanoseconds = _TIMESPEC.unpack(value[: _TIMESPEC.size])
                    arrival = seconds + nanoseconds * 1e-9 - self.clock_offset
            if arrival is None or len(data) < 12 or not start <= arrival <= end:
                continue
            if data[1] & 0x7F != (call.dialog.media.payload_type if call.dialog.media else -1):
                continue  # RFC 4733 events and comfort noise are not the agent's voice
            contributors = data[0] & 0x0F
            call.arrivals.append(arrival)
            call.sequences.append(int.from_bytes(data[2:4], "big"))
            call.payloads.append(data[12 + 4 * contributors :])

    def _progress(self) -> None:
        if self.done.is_set():
            return
        states = [c.dialog.state for c in self.calls.values()]
        line = {
            "held": sum(c.streaming for c in self.calls.values()),
            "placed": len(states),
            "refused": states.count("refused"),
        }
        print(json.dumps(line), flush=True)
        asyncio.get_running_loop().call_later(PROGRESS_S, self._progress)

    # -- results ------------------------------------------------------------------

    def _results(self) -> dict[str, Any]:
        ideal = speech.ideal_rendering(self.codec)
        rate = speech.codec_rate(self.codec)
        calls = [self._call_result(call, ideal, rate) for call in self.calls.values()]
        late = np.asarray(self.lateness) * 1000.0
        return {
            "calls": calls,
            "tick_late_p99_ms": measures.percentile(late, 99),
            "tick_late_max_ms": float(late.max()) if late.size else math.nan,
        }

    def _call_result(self, call: CallerCall, ideal: Any, rate: int) -> dict[str, Any]:
        paced = measures.pacing(
            np.asarray(call.arrivals, dtype=np.float64), np.asarray(call.sequences)
        )
        heard = speech.decode_all(self.codec, call.payloads)
        # The first second of the hold is skipped: its start may cut into a response.
        quality = measures.fidelity(heard[rate:], ideal, rate)
        return {
            "index": call.index,
            "user": call.dialog.user,
            "state": call.dialog.state,
            "status": call.dialog.status,
            "sent_s": call.sent * TICK_S,
            "send_errors": call.send_errors,
            "send_times": [round(t, 6) for t in call.send_times],
            "jitter_us": [round(j * 1000) for j in paced.jitter_ms],
            "gaps": paced.gaps,
            "expected": paced.expected,
            "lost": paced.lost,
            "snr_db": quality.snr_db,
            "clicks": quality.clicks,
        }


def _realtime_minus_monotonic() -> float:
    """CLOCK_REALTIME - CLOCK_MONOTONIC, read tightly (kernel timestamps are realtime)."""
    best = math.inf
    offset = 0.0
    for _ in range(5):
        before = time.monotonic()
        wall = time.time()
        after = time.monotonic()
        if after - before < best:
            best = after - before
            offset = wall - (before + after) / 2
    return offset


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    result = asyncio.run(CallerProcess(spec).run())
    partial = Path(argv[1] + ".partial")
    partial.write_text(json.dumps(result), encoding="utf-8")
    partial.replace(argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
