"""The observability parts on their own: histograms, labels, SIP counts, the records probe."""

from __future__ import annotations

import asyncio

import numpy as np

from telephony_agent.observability.buckets import Buckets
from telephony_agent.observability.call_metrics import realtime_errors, reason_label
from telephony_agent.observability.readiness import RecordsProbe
from telephony_agent.observability.sip_traffic import SipTraffic


def test_buckets_count_each_value_at_its_upper_bound_and_cumulate() -> None:
    buckets = Buckets((0.1, 0.5, 1.0))
    for value in (0.05, 0.1, 0.3, 2.0):
        buckets.observe(value)
    buckets.observe_many(np.array([0.5, 0.7, 0.01]))
    assert buckets.cumulative() == [("0.1", 3.0), ("0.5", 5.0), ("1.0", 6.0), ("+Inf", 7.0)]
    assert buckets.count == 7
    assert abs(buckets.total - (0.05 + 0.1 + 0.3 + 2.0 + 0.5 + 0.7 + 0.01)) < 1e-9


def test_end_reasons_and_error_codes_become_bounded_labels() -> None:
    assert reason_label("realtime_closed: 1011 keepalive ping timeout") == "realtime_closed"
    assert reason_label("Caller Hangup") == "caller_hangup"
    assert reason_label("") == "unknown"
    assert len(reason_label("x" * 500)) == 48
    stats = {"reconnects": 2, "error.rate_limit_exceeded": 3, "error.Bad Param": 1}
    assert realtime_errors(stats) == {"rate_limit_exceeded": 3, "bad_param": 1}


def test_sip_traffic_counts_unknown_methods_as_other() -> None:
    traffic = SipTraffic()
    for method in ("INVITE", "INVITE", "FROBNICATE", "OPTIONS"):
        traffic.request(method)
    traffic.response("INVITE", 200)
    traffic.response("XYZZY", 501)
    assert traffic.requests == {"INVITE": 2, "other": 1, "OPTIONS": 1}
    assert traffic.responses == {("INVITE", 200): 1, ("other", 501): 1}


async def test_records_probe_caches_its_answer_and_never_stacks_stuck_queries() -> None:
    started = 0
    release = asyncio.Event()

    async def stuck() -> object:
        nonlocal started
        started += 1
        await release.wait()
        return []

    probe = RecordsProbe(stuck, interval_s=0.0, timeout_s=0.05)
    assert await probe.reachable() is False
    assert await probe.reachable() is False
    assert started == 1  # the stuck query is waited for again, not started twice
    release.set()
    assert await probe.reachable() is True
    calls = 0

    async def quick() -> object:
        nonlocal calls
        calls += 1
        return []

    cached = RecordsProbe(quick, interval_s=60.0)
    assert await cached.reachable() and await cached.reachable()
    assert calls == 1
