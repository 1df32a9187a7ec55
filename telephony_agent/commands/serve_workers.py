"""`telephony-agent serve --workers K`: K `serve` processes, started and supervised together.

Each worker is an ordinary `serve` run with `--worker I` (its ports and RTP slice come
from `workers.worker_settings`), so it drains, reloads and reports exactly as a single
process does. The parent only runs processes:

* a worker that dies is restarted after a backoff (1 s doubling to 30 s, reset once it
  ran a minute), and the death is logged with its exit code; a worker that exits 2 (a
  configuration error, a port already taken) stops them all: a restart cannot fix it;
* SIGTERM or SIGINT is passed to every worker, which drains with the usual logic; a
  second one is passed on too (every worker then ends its calls at once); the parent
  exits when all have, 0 if they all exited 0;
* SIGHUP is passed to every worker, which re-reads the settings file.

The parent imports neither the SIP nor the media stack (the CLI sends it here before
`commands/serve.py` is imported): it holds no call, so it should not hold their memory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time

import structlog

from telephony_agent.commands.runtime import settings_from_args
from telephony_agent.config import module_levels
from telephony_agent.logs import configure_logging
from telephony_agent.workers import RestartBackoff, worker_settings

__all__ = ["run_workers", "supervises", "worker_command"]

log = structlog.get_logger(__name__)

#: The exit code of a configuration error (see cli.py): restarting will not help.
_EXIT_USAGE = 2


def supervises(args: argparse.Namespace) -> bool:
    """True when this `serve` is the parent of `--workers K` (not a worker, not alone)."""
    return getattr(args, "worker", None) is None and (getattr(args, "workers", 1) or 1) != 1


async def run_workers(args: argparse.Namespace, count: int) -> int:
    """Run `count` workers until a stop signal has drained them all."""
    settings = settings_from_args(args)
    for index in range(count):  # every worker's ports and slice, checked before any starts
        worker_settings(settings, index, count)
    configure_logging(
        settings.log.level, settings.log.format, levels=module_levels(settings.log.levels)
    )
    supervisor = _Supervisor(args, count)
    return await supervisor.run()


def worker_command(args: argparse.Namespace, index: int, count: int) -> list[str]:
    """The command line of worker `index`: this `serve`'s own options, plus its index."""
    command = [sys.executable, "-m", "telephony_agent", "serve"]
    for option, value in (
        ("--config", args.config),
        ("--provider", args.provider),
        ("--log-level", args.log_level),
        ("--sip-listen", args.sip_listen),
        ("--http-listen", args.http_listen),
        ("--max-calls", args.max_calls),
    ):
        if value is not None:
            command += [option, str(value)]
    return [*command, "--workers", str(count), "--worker", str(index)]


class _Supervisor:
    def __init__(self, args: argparse.Namespace, count: int) -> None:
        self._args = args
        self._count = count
        self._processes: dict[int, asyncio.subprocess.Process] = {}
        self._stopping = False
        self._stop = asyncio.Event()
        self._signals = 0
        self._failed_setup = False

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_stop)
        with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
            loop.add_signal_handler(signal.SIGHUP, self._forward, signal.SIGHUP)
        codes = await asyncio.gather(*(self._keep(index) for index in range(self._count)))
        if self._failed_setup:
            return _EXIT_USAGE
        return 0 if all(code == 0 for code in codes) else 1

    async def _keep(self, index: int) -> int:
        """Run worker `index`, restarting it after a backoff until the stop signal."""
        backoff = RestartBackoff()
        while True:
            started = time.monotonic()
            process = await asyncio.create_subprocess_exec(
                *worker_command(self._args, index, self._count),
                stdin=asyncio.subprocess.DEVNULL,
                # Its own session: a Ctrl-C in a terminal reaches the parent only, which
                # passes one SIGTERM on (two would skip the drain).
                start_new_session=True,
            )
            self._processes[index] = process
            log.info("worker_started", worker=index, pid=process.pid)
            if self._stopping:  # the stop signal came while it was starting
                process.send_signal(signal.SIGTERM)
            code = await process.wait()
            ran_s = time.monotonic() - started
            if self._stopping:
                log.info("worker_stopped", worker=index, exit_code=code)
                return code
            if code == _EXIT_USAGE:
                log.error("worker_cannot_start", worker=index, exit_code=code)
                self._failed_setup = True
                self._on_stop()
                return code
            delay = backoff.delay(ran_s)
            log.error(
                "worker_died",
                worker=index,
                exit_code=code,
                ran_s=round(ran_s, 1),
                restart_in_s=delay,
            )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            if self._stopping:
                return code

    def _on_stop(self) -> None:
        """First signal: every worker drains; another: every worker stops at once."""
        self._stopping = True
        self._stop.set()
        self._signals += 1
        if self._signals == 1:
            log.info("workers_draining", workers=len(self._processes))
        self._forward(signal.SIGTERM)

    def _forward(self, sig: signal.Signals) -> None:
        for process in self._processes.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)
