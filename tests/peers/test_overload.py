"""Twice the load the agent can carry: the calls it takes stay clean, the rest are told
at once to come back later, and no INVITE is left without a final answer.

The knee is brought down to a handful of calls with a small `admission.max_cpu`, so
the test needs no CPU burner and fits in seconds on any machine: what is tested is
the behaviour past the knee, not where the knee of this machine lies.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from .conftest import StartAgent
from .test_sipp import run_sipp, sipp_failure

pytestmark = pytest.mark.skipif(
    shutil.which("sipp") is None,
    reason="sipp is not installed (Debian/Ubuntu package sip-tester; .ci/run installs it)",
)

#: Calls offered at once, about twice what fits under the limits below.
OFFERED = 12
#: CPU share allowed, and the cost per call assumed before it is measured: room for
#: about five calls above an idle process.
MAX_CPU = 0.06
CPU_PER_CALL = 0.01


def test_twice_the_sustainable_load_is_refused_cleanly(
    start_agent_server: StartAgent, tmp_path: Path, speech_ulaw: Path
) -> None:
    server = start_agent_server(
        admission={
            "max_cpu": MAX_CPU,
            "cpu_per_call": CPU_PER_CALL,
            "resume_after_s": 1.0,
            "retry_after_s": 9,
        },
        log={"level": "info"},
    )
    # Start-up work (imports, the records database) may count as load: wait it out.
    calm = server.wait_health(
        lambda h: h["admission"]["cpu"] is not None and not h["admission"]["overloaded"],
        timeout_s=10.0,
    )
    assert not calm["admission"]["overloaded"], calm
    started = time.monotonic()
    result = run_sipp(
        server,
        "overload_call.xml",
        tmp_path,
        speech_ulaw,
        calls=OFFERED,
        extra=("-l", str(OFFERED), "-r", "50"),
    )
    wall = time.monotonic() - started
    assert result.returncode == 0, sipp_failure(result, tmp_path)

    health = server.wait_health(lambda h: h["active_calls"] == 0, timeout_s=10.0)
    answered, refused = int(health["answered"]), int(health["rejected_busy"])
    report = (
        f"{OFFERED} calls offered at once: {answered} answered, {refused} refused in "
        f"{wall:.1f} s; gate: {health['admission']}"
    )
    print("\n" + report)
    assert health["invites"] == OFFERED, report
    assert answered + refused == OFFERED, report
    assert refused == health["calls_refused_overloaded"] >= OFFERED // 3, report
    assert answered >= 2, report
    assert health["completed"] == answered, report

    legs = server.log_events("rtp_leg_ended")
    assert len(legs) == answered, report
    for leg in legs:  # 3.35 s of speech each way, nothing lost on the way in
        assert leg["packets_in"] >= 160 and leg["packets_out"] >= 160, leg
        assert leg["lost"] == 0, leg
    # Refusals are counted, not logged one by one; overload is logged at its edges.
    assert server.log_events("call_rejected_busy") == []
    assert server.log_events("call_event_refused") == []
    entered = server.log_events("overload_entered")
    assert len(entered) == health["admission"]["overloads"], entered

    # With the calls gone the gate opens again by itself.
    after = server.wait_health(lambda h: not h["admission"]["overloaded"], timeout_s=10.0)
    assert not after["admission"]["overloaded"], after
    assert len(server.log_events("overload_left")) == len(server.log_events("overload_entered"))
