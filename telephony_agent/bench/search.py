"""`--find-max`: the largest number of calls whose run stays within the clean-call bound.

Doubling from a small load until a run fails the bound, then bisecting between the
last clean and the first failing load for a few steps: each step is a full run, so
the search is kept to a handful of short runs rather than a fine grid.
"""

from __future__ import annotations

from collections.abc import Callable

from telephony_agent.bench.report import Row, within_bound

START_CALLS = 25
MAX_CALLS = 1600
BISECT_STEPS = 3


def find_max(run: Callable[[int], Row], start: int = START_CALLS) -> tuple[int, list[Row]]:
    """The largest clean N found and every row measured.

    If even `start` fails, the bisection runs between 0 and `start` (0: nothing was clean).
    """
    rows: list[Row] = []

    def clean(calls: int) -> bool:
        row = run(calls)
        row["within_bound"] = within_bound(row)
        row["label"] = f"{row.get('label', '')} {'clean' if row['within_bound'] else 'over'}"
        rows.append(row)
        return bool(row["within_bound"])

    good, bad = 0, 0
    calls = start
    while calls <= MAX_CALLS:
        if not clean(calls):
            bad = calls
            break
        good = calls
        calls *= 2
    if bad == 0:
        return good, rows
    low, high = good, bad
    for _ in range(BISECT_STEPS):
        if high - low <= max(2, low // 20):
            break
        middle = (low + high) // 2
        if clean(middle):
            low = middle
        else:
            high = middle
    return low, rows
