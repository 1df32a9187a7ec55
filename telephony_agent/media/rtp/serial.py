"""Wrap-around arithmetic for RTP's 16-bit sequence numbers and 32-bit timestamps.

Why a module of its own: every comparison of sequence numbers or timestamps in
the receive path, the DTMF receiver and RTCP must agree on how a wrap is read.
Both counters are compared as serial numbers (RFC 1982): the shorter way round
the circle wins, so 65535 → 0 is one step forward, not 65535 steps back.
"""

from __future__ import annotations

__all__ = ["extend_seq", "seq_delta", "ts_delta"]

_SEQ_MOD = 1 << 16
_SEQ_HALF = 1 << 15
_TS_MOD = 1 << 32
_TS_HALF = 1 << 31


def seq_delta(a: int, b: int) -> int:
    """Signed distance from sequence number `a` to `b` (16-bit, in -32768..32767)."""
    return ((b - a + _SEQ_HALF) & 0xFFFF) - _SEQ_HALF


def ts_delta(a: int, b: int) -> int:
    """Signed distance from timestamp `a` to `b` (32-bit)."""
    return ((b - a + _TS_HALF) & 0xFFFFFFFF) - _TS_HALF


def extend_seq(seq: int, reference: int) -> int:
    """The extended (wrap-counting) sequence number of `seq` nearest to `reference`.

    `reference` is an extended number already seen (usually the highest); the
    result may be below it (a reordered packet) or above (a newer one), and
    counts wraps upward without limit, so ordinary integer comparison works.
    """
    return reference + seq_delta(reference & 0xFFFF, seq)
