"""The fuzz targets: their seed corpus and every past finding pass the checks, and a short
coverage-guided run of each target finds nothing new.

`findings/<target>/` holds each input a fuzzer (or a review of a target) once broke
a parser with; its check raised then and must not now. The short atheris runs need
the ``fuzz`` extra, which the README test command installs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from telephony_agent.fuzz.runner import corpus_files
from telephony_agent.fuzz.targets import TARGETS, check_sip_message
from telephony_agent.fuzz.wire import SipMutator, WireTarget
from telephony_agent.sip.message import SipParseError
from telephony_agent.sip.parser import parse_message

FINDINGS = Path(__file__).resolve().parent / "findings"
ROOT = Path(__file__).resolve().parents[2]


def _findings() -> list[tuple[str, Path]]:
    return [
        (target.name, path)
        for target in sorted(FINDINGS.iterdir())
        for path in sorted(target.iterdir())
        if path.is_file()
    ]


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_seed_passes_its_check(name: str) -> None:
    seeds = corpus_files(name)
    assert len(seeds) >= 5, "a target needs a seed corpus taken from the tests"
    for path in seeds:
        TARGETS[name].check(path.read_bytes())


@pytest.mark.parametrize(
    ("name", "path"), _findings(), ids=[f"{n}/{p.name}" for n, p in _findings()]
)
def test_past_finding_passes_its_check(name: str, path: Path) -> None:
    TARGETS[name].check(path.read_bytes())


def test_past_sip_findings_are_refused_with_a_400() -> None:
    for path in sorted((FINDINGS / "sip_message").iterdir()):
        if path.name == "to_display_name_with_a_quote":
            continue  # a valid request; the finding was in our answer to it
        with pytest.raises(SipParseError) as caught:
            parse_message(path.read_bytes())
        assert caught.value.partial is not None, path.name


def test_the_wire_mutator_feeds_the_sip_check() -> None:
    """What the wire fuzz test sends, checked in-process first (reproducible by seed)."""
    mutator = SipMutator(WireTarget("127.0.0.1", 5060, "127.0.0.1", 5062), seed=7)
    for _ in range(3000):
        check_sip_message(mutator.message())


_DONE_RE = re.compile(r"#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+)")


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_short_coverage_guided_run_finds_nothing(name: str, tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="the fuzz extra is not installed")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            f"telephony_agent.fuzz.{name}",
            "-runs=20000",
            "-max_total_time=15",
            "-print_final_stats=1",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=120,
        check=False,
    )
    tail = result.stderr[-3000:]
    assert result.returncode == 0, tail
    assert "Uncaught Python exception" not in result.stderr, tail
    assert not list(tmp_path.glob("crash-*")), tail
    done = _DONE_RE.search(result.stderr)
    assert done is not None, tail
    assert int(done.group(2)) > 50, f"too little coverage: is the target instrumented?\n{tail}"
