"""Answering-machine detection: confusion matrix, decision times and CPU on the full
synthesised corpus (every voice and speed of `tests/amd_corpus.py`).

Run: `python benchmarks/bench_amd.py` (needs espeak-ng). Prints one line per class
and the CPU the detector spent per second of audio it analysed.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from telephony_agent.audio.amd import AnsweringMachineDetector
from tests.amd_corpus import RATE, corpus

FRAME = RATE // 50


def main() -> int:
    confusion: dict[tuple[str, str], int] = {}
    decided: dict[str, list[int]] = {"human": [], "machine": []}
    cpu_s = 0.0
    audio_s = 0.0
    mistakes: list[str] = []
    for answer in corpus():
        detector = AnsweringMachineDetector(RATE)
        verdict = None
        started = time.process_time()
        frames = 0
        for start in range(0, len(answer.audio) - FRAME + 1, FRAME):
            verdict = detector.feed(answer.audio[start : start + FRAME]) or verdict
            frames += 1
            if detector.verdict is not None and (
                detector.verdict.kind != "machine" or detector.ready_for_message
            ):
                break
        cpu_s += time.process_time() - started
        audio_s += frames * 0.02
        kind = verdict.kind if verdict else "none"
        confusion[(answer.label, kind)] = confusion.get((answer.label, kind), 0) + 1
        if verdict is not None and kind == answer.label:
            decided[kind].append(verdict.decided_ms)
        else:
            mistakes.append(f"{answer.name}: {verdict}")
    print("answering-machine detection on the synthesised corpus")
    print(f"{'actual':>8} | {'human':>6} {'machine':>8} {'unknown':>8}")
    for label in ("human", "machine"):
        row = [confusion.get((label, k), 0) for k in ("human", "machine", "unknown")]
        total = sum(confusion.get((label, k), 0) for k in ("human", "machine", "unknown", "none"))
        share = confusion.get((label, label), 0) / total if total else 0.0
        times = decided[label]
        median = statistics.median(times) if times else 0
        print(
            f"{label:>8} | {row[0]:>6} {row[1]:>8} {row[2]:>8}   "
            f"correct {share:.1%}, decided after {median:.0f} ms (median), "
            f"{max(times) if times else 0} ms (max)"
        )
    print(f"CPU: {1000 * cpu_s / audio_s:.3f} ms per second of analysed audio")
    for line in mistakes:
        print("  wrong:", line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
