"""Two `serve` instances behind a real Kamailio dispatcher, one drained mid-run.

Kamailio (the distribution's package) runs the shipped `deploy/kamailio/kamailio.cfg`
on loopback in front of two agents, each with its own SIP port and RTP range. SIPp
places 40 calls with audio through Kamailio; the ACK and BYE follow the route set, so
Kamailio brings them to the instance that took each call. While calls are up, one
instance gets SIGTERM: its live calls must run to their end, new calls must go to the
other instance (Kamailio fails over on the drained instance's 503, and its OPTIONS
probes keep it out), and no call may fail.
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import pytest

from .agent_process import AgentServer, free_port
from .conftest import StartAgent
from .kamailio import KAMAILIO, start_kamailio
from .lifecycle_support import finish, start_sipp

pytestmark = [
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp is not installed"),
    pytest.mark.skipif(
        KAMAILIO is None, reason="kamailio is not installed (Debian package kamailio)"
    ),
]

CALLS = 40
RATE_PER_S = 4
HOLD_MS = 4000


def _started_calls(agent: AgentServer) -> list[dict[str, object]]:
    return agent.log_events("call_event_started")


def test_forty_calls_through_kamailio_survive_draining_one_of_two_instances(
    start_agent_server: StartAgent, tmp_path: Path, speech_ulaw: Path
) -> None:
    drained = start_agent_server(
        sip={"max_calls": 60},
        rtp={"port_min": 20000, "port_max": 20499},
        server={"drain_timeout_s": 60},
    )
    other = start_agent_server(
        sip={"max_calls": 60},
        rtp={"port_min": 20500, "port_max": 20999},
    )
    proxy = start_kamailio(
        tmp_path / "kamailio",
        free_port(),
        [("drained", drained.sip_port), ("other", other.sip_port)],
        # No probe falls inside the run: the drained instance is found out by its 503
        # to an INVITE, every time (its 503 to OPTIONS is checked in test_lifecycle).
        probe_interval_s=60,
    )
    try:
        began = time.monotonic()
        caller = start_sipp(
            f"127.0.0.1:{proxy.port}",
            "scaleout_call.xml",
            tmp_path / "sipp",
            speech_ulaw,
            calls=CALLS,
            extra=("-r", str(RATE_PER_S), "-d", str(HOLD_MS), "-l", str(CALLS)),
            timeout_s=120,
        )
        # Mid-run: once the instance to drain carries a few live calls.
        drained.wait_health(lambda h: h["active_calls"] >= 4, timeout_s=20)
        live_at_sigterm = int(drained.health()["active_calls"])
        drained.process.send_signal(signal.SIGTERM)
        code, output = finish(caller, timeout_s=150)
        placed_s = time.monotonic() - began
        exit_code = drained.process.wait(60)
    finally:
        proxy.stop()
    assert code == 0, f"SIPp: some calls failed\n{output[-3000:]}"
    assert exit_code == 0, drained.log_tail()
    on_drained = drained.log_events("call_event_ended")
    on_other = other.wait_health(lambda h: h["completed"] >= CALLS - len(on_drained))
    ended_other = other.log_events("call_event_ended")
    # Every call ran to the caller's BYE on the instance that took it.
    assert len(on_drained) + len(ended_other) == CALLS, (len(on_drained), len(ended_other))
    assert {e["reason"] for e in on_drained + ended_other} == {"caller_hangup"}
    assert len(on_drained) >= 1 and len(ended_other) >= 1
    # The drained instance took no call after the drain began, finished those it had,
    # and hung up nobody.
    (drain,) = drained.log_events("drain_finished")
    assert drain["live_at_start"] == drain["finished_in_time"] >= 1
    assert drain["ended_politely"] == 0
    offered_after = [e for e in drained.log_events() if e.get("event") == "call_event_offered"][
        len(on_drained) :
    ]
    assert offered_after == []
    refused = drained.log_events("call_event_refused")
    failovers = proxy.log_text().count("failover ")
    # Each INVITE the drained instance refused was taken by the other one.
    assert failovers == len(refused) >= 1
    print(
        f"\nscale-out: {CALLS} calls at {RATE_PER_S}/s, {HOLD_MS} ms each, in {placed_s:.1f} s; "
        f"drained instance took {len(on_drained)} ({live_at_sigterm} live at SIGTERM, "
        f"{drain['finished_in_time']} finished during a drain of {drain['seconds']:.1f} s), "
        f"the other took {len(ended_other)}; "
        f"{len(refused)} INVITE(s) refused with 503 while draining, {failovers} failover(s) "
        f"in Kamailio; SIPp: 0 failed calls; other instance health: "
        f"answered {on_other['answered']}"
    )
