"""Profiles through a deployed `serve`: SIPp dials numbers, SIGHUP swaps the profiles.

Why against the real process: routing must hold for a third-party caller's
Request-URI, and reload is a signal to a running server with a call on the line.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

from tests.peers.agent_process import AgentServer
from tests.peers.conftest import StartAgent
from tests.peers.test_sipp import assert_sipp_ok, run_sipp, settled, sipp_failure

PROFILES = """
[[profiles]]
name = "booking"
numbers = ["booking"]
instructions = "You take table bookings for {restaurant}. The caller is {caller}."
variables = { restaurant = "Riverside" }

[[profiles]]
name = "moscow"
match = '^\\+7495\\d{7}$'
instructions = "Moscow office."
"""


def _admitted_profiles(server: AgentServer) -> list[str]:
    return [str(r["profile"]) for r in server.log_events("call_admitted")]


def test_sipp_calls_reach_the_profile_of_the_number_they_dial(
    start_agent_server: StartAgent, tmp_path: Path, speech_ulaw: Path
) -> None:
    agent = start_agent_server(extra_toml=PROFILES)
    for number in ("booking", "+74951234567", "someone-else"):
        assert_sipp_ok(
            agent, "dial_number.xml", tmp_path / number, speech_ulaw, extra=("-s", number)
        )
    settled(agent, 3)
    assert _admitted_profiles(agent) == ["booking", "moscow", "default"]
    # Every call was answered and heard the agent (the echo backend answers in words).
    texts = [(r.get("speaker"), str(r.get("text"))) for r in agent.log_events("transcript")]
    assert sum(1 for s, t in texts if s == "agent" and t.startswith("Echo")) >= 3, texts


def test_sighup_reloads_profiles_for_new_calls_and_refuses_a_bad_file(
    start_agent_server: StartAgent, tmp_path: Path, speech_ulaw: Path
) -> None:
    agent = start_agent_server(extra_toml=PROFILES)
    config = agent.config_path
    original = config.read_text(encoding="utf-8")

    # A call is on the line while the file changes twice and the server is told to reload.
    live_result: list[subprocess.CompletedProcess[str]] = []
    live = threading.Thread(
        target=lambda: live_result.append(
            run_sipp(
                agent, "dial_number.xml", tmp_path / "live", speech_ulaw, extra=("-s", "booking")
            )
        )
    )
    live.start()
    agent.wait_health(lambda h: h["active_calls"] == 1)

    # A file that does not validate is refused with one line; the running profiles stay.
    config.write_text(original + "\n[[profiles]]\nname = 'broken'\nnumbrs = ['x']\n")
    agent.process.send_signal(signal.SIGHUP)
    refused = _wait_for_event(agent, "reload_refused")
    assert "profiles[broken].numbrs" in str(refused["error"]), refused
    assert "numbers" in str(refused["error"])  # the did-you-mean hint

    # A good file is taken for new calls.
    config.write_text(original.replace('name = "booking"', 'name = "bookings-v2"'))
    agent.process.send_signal(signal.SIGHUP)
    _wait_for_event(agent, "deployment_reloaded")
    assert agent.health()["active_calls"] == 1, "the live call did not survive the reloads"

    live.join(60)
    (result,) = live_result
    assert result.returncode == 0, sipp_failure(result, tmp_path / "live")
    assert_sipp_ok(agent, "dial_number.xml", tmp_path / "new", speech_ulaw, extra=("-s", "booking"))
    settled(agent, 2)
    # The live call kept its profile and ended normally; the new call got the reloaded one.
    assert _admitted_profiles(agent) == ["booking", "bookings-v2"]
    finished = agent.log_events("call_finished")
    assert [r["reason"] for r in finished] == ["caller_hangup", "caller_hangup"], finished
    assert agent.process.poll() is None


def _wait_for_event(agent: AgentServer, event: str, timeout_s: float = 10.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = agent.log_events(event)
        if found:
            return found[-1]
        time.sleep(0.05)
    raise AssertionError(f"no {event!r} in the server log:\n{agent.log_tail()}")
