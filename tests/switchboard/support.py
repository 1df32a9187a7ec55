"""A real switchboard with its SIP front door on loopback, from a settings file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from telephony_agent.call.record import CallRecord, TranscriptLine
from telephony_agent.call.tools import ToolResult
from telephony_agent.caller.outbound_call import CallOptions, CallResult, place_call
from telephony_agent.commands.runtime import ProviderRuntime, open_provider
from telephony_agent.config import load_settings
from telephony_agent.server.sip_server import AgentSipServer
from telephony_agent.switchboard import CallListener, LiveCall, Switchboard
from telephony_agent.switchboard.keeping import Keeping

BASE: dict[str, dict[str, Any]] = {
    "provider": {"name": "local"},
    "sip": {"listen": "127.0.0.1:0", "transports": "udp", "t1_ms": 100},
    "rtp": {"port_min": 22000, "port_max": 22999},
    "log": {"level": "warning"},
}


@dataclass
class Heard(CallListener):
    """What a listener heard of each call, by our call id."""

    started: list[LiveCall] = field(default_factory=list)
    transcripts: list[tuple[str, TranscriptLine]] = field(default_factory=list)
    tools: list[ToolResult] = field(default_factory=list)
    ended: list[CallRecord] = field(default_factory=list)

    def call_started(self, call: LiveCall) -> None:
        self.started.append(call)

    def transcript(self, call: LiveCall, line: TranscriptLine) -> None:
        self.transcripts.append((call.id, line))

    def tool_called(self, call: LiveCall, result: ToolResult) -> None:
        self.tools.append(result)

    def call_ended(self, call: LiveCall, record: CallRecord) -> None:
        self.ended.append(record)


@dataclass
class Rig:
    board: Switchboard
    sip: AgentSipServer
    runtime: ProviderRuntime
    heard: Heard
    keeping: Keeping | None = None

    async def flushed(self) -> None:
        """Wait until every record event so far is in the database."""
        assert self.keeping is not None and self.keeping.writer is not None
        await self.keeping.writer.flush()

    async def call(
        self, user: str, audio: np.ndarray[Any, Any], *, tail_s: float = 3.0
    ) -> CallResult:
        """Dial `sip:USER@...` with the softphone, speaking `audio` (16 kHz)."""
        return await place_call(
            CallOptions(
                uri=f"sip:{user}@127.0.0.1:{self.sip.sip_port}",
                audio=audio,
                audio_rate=16000,
                codecs=("PCMU",),
                tail_s=tail_s,
                t1_s=0.1,
            )
        )


@asynccontextmanager
async def running_rig(
    tmp_path: Path,
    toml: str,
    *,
    environ: Mapping[str, str] | None = None,
    keep: bool = False,
    **sections: dict[str, Any],
) -> AsyncIterator[Rig]:
    """A switchboard and its SIP front door; with `keep`, records (and recordings, as
    the settings say) are kept in `tmp_path/data`."""
    config = tmp_path / "agent.toml"
    config.write_text(toml, encoding="utf-8")
    overrides: dict[str, dict[str, Any]] = {name: dict(values) for name, values in BASE.items()}
    overrides["records"] = {"enabled": keep, "data_dir": str(tmp_path / "data")}
    for name, values in sections.items():
        overrides.setdefault(name, {}).update(values)
    env = dict(environ or {})
    settings = load_settings(config, environ=env, overrides=overrides)
    runtime = await open_provider(settings, environ=env)
    board = Switchboard(runtime.deployment(settings, environ=env))
    heard = Heard()
    board.add_listener(heard)
    keeping = await Keeping.open(settings) if keep else None
    if keeping is not None:
        keeping.attach(board)
    sip = AgentSipServer(board)
    try:
        await sip.start()
        yield Rig(board, sip, runtime, heard, keeping)
    finally:
        await sip.shutdown(timeout_s=5.0)
        await board.close()
        if keeping is not None:
            await keeping.close()
        await runtime.close()
