"""`telephony-agent bench`: continuous two-way audio load, measured, as a table.

The work is in `telephony_agent.bench`; this module checks the arguments, decides
which runs to make (repeats, the naive baseline alternating with the agent, the
`--find-max` search) and prints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from telephony_agent.bench.harness import RunPlan, run_once
from telephony_agent.bench.report import Row, median_row, ratios, summarise, table, to_json
from telephony_agent.bench.search import find_max
from telephony_agent.config import value_range
from telephony_agent.errors import UsageError

EXIT_FAILURE = 1
#: Callers whose own 20 ms tick runs later than this (p99) cannot tell the agent's
#: jitter from theirs against a 2 ms bound: a suggestion from such runs would be noise.
CALLERS_LATE_MAX_MS = 1.5


def run_bench(args: argparse.Namespace) -> int:
    _check(args)

    def progress(text: str) -> None:
        print("\r" + text.ljust(79)[:79], end="", file=sys.stderr, flush=True)

    def measure(calls: int, naive: bool) -> Row:
        plan = RunPlan(
            calls=calls,
            seconds=args.seconds,
            codec=args.codec,
            workers=1 if naive else args.workers,
            naive=naive,
            ramp_per_s=args.ramp,
            admission=_admission(args),
        )
        return summarise(run_once(plan, progress))

    extra: dict[str, object] = {}
    try:
        if args.find_max:
            best, rows = find_max(
                lambda n: median_row([measure(n, False) for _ in range(args.repeat)])
            )
            extra["max_clean_calls"] = best
            summary = f"largest load within the bound: agent {best} calls"
            suggested = suggest_admission(rows, best)
            if suggested:
                extra["suggested_admission"] = suggested
            if args.baseline:
                naive_best, naive_rows = find_max(
                    lambda n: median_row([measure(n, True) for _ in range(args.repeat)])
                )
                rows += naive_rows
                extra["naive_max_clean_calls"] = naive_best
                summary += f", naive {naive_best} calls"
            if suggested:
                summary += "\n" + admission_advice(suggested)
            elif (late := callers_too_late(rows)) is not None:
                summary += (
                    f"\nno admission suggested: the callers' own tick ran {late:.1f} ms late "
                    "at p99, so the jitter bound measured this machine more than the agent; "
                    "repeat on a quieter machine (or with --repeat 3)"
                )
        else:
            ours: list[Row] = []
            naive: list[Row] = []
            for _ in range(args.repeat):
                # Alternating, so both face the same machine load over the same minutes.
                ours.append(measure(args.calls, False))
                if args.baseline:
                    naive.append(measure(args.calls, True))
            rows = [median_row(ours)] + ([median_row(naive)] if naive else [])
            summary = ratios(rows[0], rows[1]) if naive else ""
            if summary:
                extra["ratios"] = summary
    except RuntimeError as exc:
        # A process that would not start or a caller that failed: its first line only.
        first = (str(exc).splitlines() or ["bench failed"])[0]
        print(file=sys.stderr)
        print(f"telephony-agent: error: {first[:500]}", file=sys.stderr)
        return EXIT_FAILURE
    print(file=sys.stderr)
    print(table(rows))
    if summary:
        print(summary)
    if args.json is not None:
        args.json.write_text(to_json(rows, **extra) + "\n", encoding="utf-8")
    return 0


def suggest_admission(rows: list[Row], best: int) -> dict[str, float]:
    """`[admission]` values for this machine from the largest clean run: the CPU share
    it used (per worker) and what a call cost there. Admission set to these refuses new
    calls where this machine stops carrying them cleanly, instead of at the defaults
    (which assume a core of the agent's own)."""
    clean = [r for r in rows if r.get("within_bound") and r.get("calls") == best]
    if best < 1 or not clean or callers_too_late(rows):
        return {}
    row = clean[-1]
    share = float(row["cpu_percent"]) / 100.0
    per_call = float(row["cpu_ms_per_call_s"]) / 1000.0
    if share <= 0.0 or per_call <= 0.0:
        return {}
    return {"max_cpu": round(share, 2), "cpu_per_call": round(per_call, 4)}


def callers_too_late(rows: list[Row]) -> float | None:
    """The callers' own tick lateness (p99, worst run) when it is so large that the
    jitter bound measures the machine rather than the agent, else None."""
    late = [r.get("caller_tick_late_p99_ms") for r in rows]
    worst = max((float(x) for x in late if isinstance(x, (int, float))), default=0.0)
    return worst if worst > CALLERS_LATE_MAX_MS else None


def admission_advice(suggested: dict[str, float]) -> str:
    keys = ", ".join(f"{key} = {value}" for key, value in suggested.items())
    return f"admission for this machine: [admission] {keys}"


def _admission(args: argparse.Namespace) -> tuple[tuple[str, float], ...]:
    chosen = {"max_cpu": args.max_cpu, "cpu_per_call": args.cpu_per_call}
    return tuple((key, value) for key, value in chosen.items() if value is not None)


def _check(args: argparse.Namespace) -> None:
    if args.calls < 1:
        raise UsageError(f"--calls {args.calls}: expected at least 1")
    if not args.seconds > 0:
        raise UsageError(f"--seconds {args.seconds}: expected more than 0")
    if args.workers < 1:
        raise UsageError(f"--workers {args.workers}: expected at least 1")
    if args.repeat < 1:
        raise UsageError(f"--repeat {args.repeat}: expected at least 1")
    if not args.ramp > 0:
        raise UsageError(f"--ramp {args.ramp}: expected calls per second above 0")
    for flag, key in (("--max-cpu", "max_cpu"), ("--cpu-per-call", "cpu_per_call")):
        value = getattr(args, key)
        bounds = value_range(f"admission.{key}")
        if value is not None and bounds is not None and not bounds[0] <= value <= bounds[1]:
            raise UsageError(
                f"{flag} {value}: expected a share of a core, {bounds[0]:g} to {bounds[1]:g}"
            )
    if args.json is not None and not Path(args.json).parent.is_dir():
        raise UsageError(f"--json {args.json}: no such directory")
