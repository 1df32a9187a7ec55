"""When to refuse new calls because the ones we have would suffer: the sans-I/O core.

Why measured load and not only `sip.max_calls`: past the knee one more call does not
cost one call's share, it makes every live call late: the media clock slips, inbound
audio queues for seconds, and INVITEs go unanswered. What one call costs depends on
the codec, the provider's pacing and what else runs on the core, so the limit is read
from the process itself, once a second:

* the media clock's lateness (p99 over the last second): the live calls' own symptom;
* this process's CPU as a share of one core: the cause we control.

Either over its limit for `enter_after_s` puts the gate into overload, where every
new call is refused (a single stall, a garbage collection or a burst of call set-ups,
is not overload). Calls are taken again only after both measures have stayed under
`resume_below` of their limits for `resume_after_s` (hysteresis, so the edge does not
flap). Between
samples a burst of INVITEs would all see the same "under the limit" second, so each
new call is also charged against a headroom estimate: the CPU one call costs,
measured live, times the calls admitted since the sample must still fit under
`max_cpu`.

`LoadSampler` (`load_sampler.py`) is the asyncio shell that feeds this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from telephony_agent.config_sections import AdmissionSettings

__all__ = ["GateChange", "LoadSample", "OverloadGate", "Verdict"]

#: What the gate says to one new call.
Verdict = Literal["ok", "overloaded", "no_headroom"]
#: A change of state worth one log line.
GateChange = Literal["entered", "left"]

#: Weight of the newest steady second in the per-call CPU estimate.
_COST_WEIGHT = 0.3


@dataclass(frozen=True, slots=True)
class LoadSample:
    """One second of the process, as the sampler measured it."""

    #: Monotonic time of the sample, in seconds.
    at: float
    #: p99 of the media clock's lateness over the sampled ticks (0 when none ticked).
    lateness_p99_ms: float
    #: CPU time of the process over the wall time of the interval (1.0 = one full core).
    cpu: float
    #: Calls holding a slot when the sample was taken.
    calls: int
    #: True when the number of calls did not change during the interval, so the CPU was
    #: spent on exactly `calls` calls (only such seconds teach the per-call cost).
    steady: bool = True


class OverloadGate:
    """Decides, from samples and the number of calls now, whether one more call fits."""

    def __init__(self, limits: AdmissionSettings) -> None:
        self.limits = limits
        self.overloaded = False
        #: CPU one call costs (share of a core), learned from steady seconds.
        self.cpu_per_call = limits.cpu_per_call
        #: CPU of the process with no call (signalling, timers, the HTTP side).
        self.idle_cpu = 0.0
        self.last: LoadSample | None = None
        #: Start of the current run of calm samples while overloaded.
        self._calm_since: float | None = None
        #: Start of the current run of samples over a limit while not overloaded.
        self._over_since: float | None = None
        #: Refusals by verdict, for /health and /metrics.
        self.refused_overloaded = 0
        self.refused_no_headroom = 0
        #: Times the gate entered overload.
        self.overloads = 0

    # ------------------------------------------------------------------ samples

    def observe(self, sample: LoadSample) -> GateChange | None:
        """Take one sample; says when the gate entered or left overload."""
        # A sample covers the interval since the previous one: a run (over the limit, or
        # calm) that starts with this sample started where that interval did.
        previous_at = self.last.at if self.last is not None else sample.at
        self.last = sample
        self._learn_cost(sample)
        limits = self.limits
        if not self.overloaded:
            if not self._over(sample, 1.0):
                self._over_since = None
                return None
            if self._over_since is None:
                self._over_since = previous_at
            if sample.at - self._over_since < limits.enter_after_s:
                return None
            self.overloaded = True
            self.overloads += 1
            self._over_since = self._calm_since = None
            return "entered"
        if self._over(sample, limits.resume_below):
            self._calm_since = None
            return None
        if self._calm_since is None:
            self._calm_since = previous_at
        if sample.at - self._calm_since >= limits.resume_after_s:
            self.overloaded = False
            self._calm_since = None
            return "left"
        return None

    def _over(self, sample: LoadSample, fraction: float) -> bool:
        limits = self.limits
        if sample.cpu > limits.max_cpu * fraction:
            return True
        late = sample.lateness_p99_ms > limits.max_clock_lateness_ms * fraction
        return late and sample.cpu >= limits.lateness_min_cpu

    def _learn_cost(self, sample: LoadSample) -> None:
        if not sample.steady:
            return
        if sample.calls == 0:
            self.idle_cpu += _COST_WEIGHT * (sample.cpu - self.idle_cpu)
            return
        per_call = max(sample.cpu - self.idle_cpu, 0.0) / sample.calls
        # Never learn a cost below a tenth of the configured one: a second in which the
        # calls were all still ringing would otherwise promise room for hundreds more.
        per_call = max(per_call, self.limits.cpu_per_call / 10.0)
        self.cpu_per_call += _COST_WEIGHT * (per_call - self.cpu_per_call)

    # ------------------------------------------------------------------ decisions

    def headroom(self, calls_now: int) -> int:
        """How many more calls fit under `max_cpu` by the measured cost (0 if none)."""
        projected = self.projected_cpu(calls_now)
        return max(0, int((self.limits.max_cpu - projected) / self.cpu_per_call + 1e-9))

    def projected_cpu(self, calls_now: int) -> float:
        """CPU expected with `calls_now` calls: the last sample, plus (or minus) the
        measured cost of each call that came (or went) since."""
        last = self.last
        if last is None:
            return self.idle_cpu + calls_now * self.cpu_per_call
        return max(0.0, last.cpu + (calls_now - last.calls) * self.cpu_per_call)

    def check(self, calls_now: int) -> Verdict:
        """May one more call start, with `calls_now` calls already holding a slot?

        Counts each refusal. A gate never fed a sample has measured nothing and admits
        everything (the sampler feeds its first sample before the SIP port opens).
        """
        if self.last is None:
            return "ok"
        if self.overloaded:
            self.refused_overloaded += 1
            return "overloaded"
        if self.headroom(calls_now) < 1:
            self.refused_no_headroom += 1
            return "no_headroom"
        return "ok"

    def describe(self) -> str:
        """The last measurement in words, for a refusal's message and the log line."""
        last = self.last
        if last is None:
            return "no load measured yet"
        return (
            f"media clock {last.lateness_p99_ms:.1f} ms late (p99), "
            f"CPU {last.cpu * 100:.0f} % of a core"
        )

    def snapshot(self, calls_now: int) -> dict[str, object]:
        """The gate's state as JSON-ready values (for /health)."""
        last = self.last
        return {
            "enabled": self.limits.enabled,
            "overloaded": self.overloaded,
            "cpu": round(last.cpu, 4) if last is not None else None,
            "clock_lateness_p99_ms": round(last.lateness_p99_ms, 3) if last is not None else None,
            "cpu_per_call": round(self.cpu_per_call, 5),
            "headroom_calls": self.headroom(calls_now),
            "overloads": self.overloads,
            "refused_overloaded": self.refused_overloaded,
            "refused_no_headroom": self.refused_no_headroom,
        }
