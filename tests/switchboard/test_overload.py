"""The overload gate: measured lateness and CPU in, admit or refuse out, with hysteresis
and a headroom charge so a burst arriving within one second cannot pass the knee."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from telephony_agent.audio.clock import MediaClock
from telephony_agent.config import AdmissionSettings, load_settings
from telephony_agent.config_provider import local_endpoint
from telephony_agent.errors import ConfigError
from telephony_agent.switchboard import Admission, CallRequest, Deployment, Refusal, Switchboard
from telephony_agent.switchboard.load_sampler import LoadSampler
from telephony_agent.switchboard.overload import LoadSample, OverloadGate

LIMITS = AdmissionSettings(
    max_clock_lateness_ms=4.0,
    max_cpu=0.8,
    lateness_min_cpu=0.5,
    enter_after_s=0.0,
    resume_below=0.75,
    resume_after_s=3.0,
    cpu_per_call=0.01,
)


def _sample(at: float, cpu: float, late: float = 1.0, calls: int = 10) -> LoadSample:
    return LoadSample(at=at, lateness_p99_ms=late, cpu=cpu, calls=calls)


def test_a_gate_never_fed_admits_everything() -> None:
    gate = OverloadGate(LIMITS)
    assert [gate.check(n) for n in (0, 500, 10_000)] == ["ok", "ok", "ok"]


def test_cpu_over_the_limit_refuses_until_calm_for_long_enough() -> None:
    gate = OverloadGate(LIMITS)
    assert gate.observe(_sample(0.0, 0.5)) is None
    assert gate.check(10) == "ok"
    assert gate.observe(_sample(1.0, 0.85)) == "entered"
    assert gate.check(0) == "overloaded"
    # Under the limit but above resume_below (0.6): still overloaded, the calm run restarts.
    assert gate.observe(_sample(2.0, 0.7)) is None
    assert gate.observe(_sample(3.0, 0.5)) is None
    assert gate.observe(_sample(4.0, 0.5)) is None
    assert gate.observe(_sample(5.0, 0.65)) is None  # not calm: counting starts again
    decisions = [gate.observe(_sample(t, 0.5)) for t in (6.0, 7.0, 8.0)]
    assert decisions == [None, None, "left"]  # calm since 5.0: three seconds
    assert not gate.overloaded and gate.check(10) == "ok"
    assert (gate.overloads, gate.refused_overloaded) == (1, 1)


def test_only_load_that_lasts_enter_after_s_is_overload() -> None:
    gate = OverloadGate(replace(LIMITS, enter_after_s=2.0))
    assert gate.observe(_sample(0.0, 0.5)) is None
    assert gate.observe(_sample(1.0, 0.95)) is None  # one stalled second
    assert gate.observe(_sample(2.0, 0.5)) is None
    assert gate.check(10) == "ok"
    assert gate.observe(_sample(3.0, 0.95)) is None
    assert gate.observe(_sample(4.0, 0.95)) == "entered"  # over since 2.0: two seconds
    assert gate.check(0) == "overloaded"


def test_lateness_counts_only_while_this_process_is_busy() -> None:
    gate = OverloadGate(LIMITS)
    # Late ticks while we use a fifth of a core: another process is to blame.
    assert gate.observe(_sample(0.0, 0.2, late=30.0)) is None
    assert gate.check(10) == "ok"
    assert gate.observe(_sample(1.0, 0.55, late=6.0)) == "entered"
    # Lateness back under 4 ms but over resume_below * 4 = 3 ms: not calm yet.
    assert gate.observe(_sample(2.0, 0.55, late=3.5)) is None
    assert gate.observe(_sample(5.5, 0.55, late=3.5)) is None
    assert gate.overloaded
    assert gate.observe(_sample(6.0, 0.55, late=2.0)) is None
    assert gate.observe(_sample(9.0, 0.55, late=2.0)) == "left"


def test_a_burst_is_charged_against_the_measured_cost_per_call() -> None:
    gate = OverloadGate(LIMITS)
    for t in range(20):  # idle: 2 % of a core
        gate.observe(_sample(float(t), 0.02, calls=0))
    for t in range(20, 40):  # 20 steady calls costing 1.5 % each
        gate.observe(_sample(float(t), 0.02 + 20 * 0.015, calls=20))
    assert gate.cpu_per_call == pytest.approx(0.015, rel=0.01)
    # 0.32 measured with 20 calls; 0.8 - 0.32 leaves room for 32 more.
    assert gate.headroom(20) == 32
    verdicts = [gate.check(calls) for calls in range(20, 60)]
    assert verdicts.count("ok") == 32
    assert verdicts[32:] == ["no_headroom"] * 8
    assert gate.refused_no_headroom == 8
    # Calls that ended since the sample give their share back.
    assert gate.check(40) == "ok"


def test_only_steady_seconds_teach_the_cost_and_never_below_a_tenth() -> None:
    gate = OverloadGate(LIMITS)
    gate.observe(LoadSample(at=0.0, lateness_p99_ms=0.0, cpu=0.9, calls=1, steady=False))
    assert gate.cpu_per_call == LIMITS.cpu_per_call
    for t in range(1, 30):  # ringing calls that cost nothing yet
        gate.observe(_sample(float(t), 0.0, calls=50))
    assert gate.cpu_per_call == pytest.approx(LIMITS.cpu_per_call / 10.0, rel=0.01)


def test_the_snapshot_says_what_the_gate_saw() -> None:
    gate = OverloadGate(LIMITS)
    assert gate.snapshot(0)["cpu"] is None
    gate.observe(_sample(0.0, 0.9, late=7.25))
    snapshot = gate.snapshot(10)
    assert snapshot["overloaded"] is True
    assert (snapshot["cpu"], snapshot["clock_lateness_p99_ms"]) == (0.9, 7.25)
    assert snapshot["headroom_calls"] == 0
    assert "7.2 ms late" in gate.describe() and "CPU 90 %" in gate.describe()


# --- the switchboard refuses before anything is allocated ------------------------------------


def _board(tmp_path: Path, admission: str = "") -> Switchboard:
    path = tmp_path / "agent.toml"
    path.write_text(f"[admission]\n{admission}\n", encoding="utf-8")
    settings = load_settings(path, environ={})
    deployment = Deployment.build(
        settings, local_endpoint(settings, 9), "local", environ={}, local_port=9
    )
    return Switchboard(deployment)


def _request(n: int) -> CallRequest:
    return CallRequest(kind="sip", external_id=f"call-{n}", dialled="agent")


def test_the_switchboard_refuses_overloaded_calls_without_taking_a_slot(tmp_path: Path) -> None:
    board = _board(tmp_path, "enter_after_s = 0")
    board.overload.observe(_sample(0.0, 0.95, calls=0))
    refused = board.admit(_request(1))
    assert isinstance(refused, Refusal) and refused.reason == "overloaded"
    assert board.active_calls == 0 and board.overloaded
    assert (board.stats.refused_overloaded, board.stats.admitted) == (1, 0)


def test_admission_off_admits_whatever_the_gate_saw(tmp_path: Path) -> None:
    board = _board(tmp_path, "enabled = false\nenter_after_s = 0")
    board.overload.observe(_sample(0.0, 0.95, calls=0))
    assert isinstance(board.admit(_request(1)), Admission)
    assert not board.overloaded


def test_a_reload_gives_the_gate_its_new_limits(tmp_path: Path) -> None:
    board = _board(tmp_path)
    settings = replace(board.deployment.settings, admission=replace(LIMITS, max_cpu=0.08))
    board.reload(replace(board.deployment, settings=settings))
    assert board.overload.limits.max_cpu == 0.08
    # 0.05 measured, 0.012 per call (the default, nothing learned): room for two.
    board.overload.observe(_sample(0.0, 0.05, calls=0))
    verdicts = [board.admit(_request(n)) for n in range(4)]
    assert [type(v).__name__ for v in verdicts] == ["Admission"] * 2 + ["Refusal"] * 2


def test_refuse_with_must_be_486_or_503(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("[admission]\nrefuse_with = 404\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    message = str(caught.value)
    assert "admission.refuse_with = 404" in message and "\n" not in message


# --- the sampler --------------------------------------------------------------------------------


@pytest.fixture
def every_level() -> Iterator[None]:
    """Info lines too, whatever level an earlier test configured."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        yield
    finally:
        structlog.configure(**saved)


class _Times:
    def __init__(self) -> None:
        self.cpu = 0.0
        self.wall = 100.0


def test_the_sampler_measures_cpu_share_and_the_clock_p99_and_logs_edges_once(
    tmp_path: Path, every_level: None
) -> None:
    board = _board(tmp_path, "max_cpu = 0.5\nenter_after_s = 0\nresume_after_s = 1.0")
    clock: MediaClock = board.clock
    times = _Times()
    for _ in range(100):
        clock._record_lateness(0.02)  # ticks before the sampler started are not its business
    sampler = LoadSampler(board, cpu_time=lambda: times.cpu, wall_time=lambda: times.wall)
    with capture_logs() as logs:
        times.cpu, times.wall = 0.9, 101.0
        for late_ms in [1.0] * 49 + [12.0]:
            clock._record_lateness(late_ms / 1000.0)
        sample = sampler.sample(late_s=0.0)
        assert sample.cpu == pytest.approx(0.9)
        assert 1.0 < sample.lateness_p99_ms < 12.0
        assert board.overloaded
        for second in range(2, 6):  # calm seconds, no ticks: the sampler's own lateness
            times.cpu += 0.1
            times.wall += 1.0
            assert sampler.sample(late_s=0.0002).lateness_p99_ms == pytest.approx(0.2)
            for n in range(3):
                board.admit(_request(second * 10 + n))
    events = [entry["event"] for entry in logs if entry["event"].startswith("overload_")]
    assert events == ["overload_entered", "overload_left"]
    assert not board.overloaded
