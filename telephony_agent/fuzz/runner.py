"""Runs one fuzz target under atheris (libFuzzer), seeded with its checked-in corpus.

Why the package's modules are imported only here, inside atheris's import hook:
coverage guidance needs the parsers instrumented as they load, and anything
imported before the hook is invisible to it. So each ``python -m
telephony_agent.fuzz.<target>`` module imports nothing but this runner.

Arguments are libFuzzer's (``-runs=N``, ``-max_total_time=S``, corpus
directories...). The seeds always come in with ``-seed_inputs``, so without a
corpus directory nothing is written anywhere; with one, libFuzzer adds what it
finds there. A crash is written to the working directory as ``crash-<sha1>``.
"""

from __future__ import annotations

import sys
from importlib.resources import files
from pathlib import Path

__all__ = ["corpus_files", "main"]

#: Seconds one input may take before libFuzzer reports it as a hang.
INPUT_TIMEOUT_S = 10


def corpus_files(name: str) -> list[Path]:
    """The seed inputs of target `name`, taken from the tests."""
    directory = Path(str(files("telephony_agent.fuzz") / "corpus" / name))
    return sorted(path for path in directory.iterdir() if path.is_file())


def main(name: str, argv: list[str] | None = None) -> None:
    """Fuzz target `name` with libFuzzer arguments `argv` (default: the command line)."""
    args = list(sys.argv if argv is None else argv)
    try:
        import atheris
    except ImportError:
        print(
            "telephony-agent fuzz: atheris is not installed "
            "(python3 -m pip install 'telephony-agent[fuzz]')",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    with atheris.instrument_imports(include=["telephony_agent"], exclude=["telephony_agent.fuzz"]):
        from telephony_agent.fuzz.targets import TARGETS
    target = TARGETS[name]
    flags = [arg for arg in args[1:] if arg.startswith("-")]
    if not any(flag.startswith("-seed_inputs=") for flag in flags):
        args.append("-seed_inputs=" + ",".join(str(p) for p in corpus_files(name)))
    if not any(flag.startswith("-max_len=") for flag in flags):
        args.append(f"-max_len={target.max_len}")
    if not any(flag.startswith("-timeout=") for flag in flags):
        args.append(f"-timeout={INPUT_TIMEOUT_S}")
    atheris.Setup(args, target.check)
    atheris.Fuzz()
