"""Fixtures for the real-peer tests: a `telephony-agent serve` process per test, test speech."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from telephony_agent.audio.g711 import ulaw_encode
from telephony_agent.media.audiofile import decode_audio_file

from .agent_process import AgentServer, start_agent

SAMPLE = Path(__file__).resolve().parents[2] / "telephony_agent" / "samples" / "book_flight.wav"

StartAgent = Callable[..., AgentServer]

_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None]:
    """Remember whether the test body failed, so teardown can show the server's log."""
    del call
    outcome: Any = yield
    report: pytest.TestReport = outcome.get_result()
    if report.failed:
        item.stash[_FAILED] = True


@pytest.fixture
def start_agent_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StartAgent]:
    """`start_agent_server(sip={...}, agent={...})` runs serve with those settings sections
    (and `cli_provider="custom"` to talk to a backend the test runs itself).

    Every server gets SIGTERM at teardown and must exit 0; if the test failed (or the
    exit code is wrong) the tail of the server's stderr is printed.
    """
    servers: list[AgentServer] = []

    def start(
        extra_toml: str = "", cli_provider: str = "local", **sections: dict[str, Any]
    ) -> AgentServer:
        server = start_agent(
            tmp_path / f"agent{len(servers)}", sections, extra_toml, provider=cli_provider
        )
        servers.append(server)
        return server

    yield start
    problems: list[str] = []
    for server in servers:
        code = server.stop()
        if code != 0 or request.node.stash.get(_FAILED, False):
            print(f"\n--- telephony-agent serve (exit {code}) stderr tail ---")
            print(server.log_tail())
        if code != 0:
            problems.append(f"serve exited {code} after SIGTERM (expected 0)")
    if problems:
        pytest.fail("; ".join(problems))


@pytest.fixture
def agent(start_agent_server: StartAgent) -> AgentServer:
    """A server with the default test settings."""
    return start_agent_server()


@pytest.fixture(scope="session")
def speech_8k() -> NDArray[np.int16]:
    """The shipped sample as 8 kHz mono PCM16 (about 3.3 s of speech)."""
    return decode_audio_file(SAMPLE, 8000)


@pytest.fixture(scope="session")
def speech_ulaw(tmp_path_factory: pytest.TempPathFactory, speech_8k: NDArray[np.int16]) -> Path:
    """The sample as headerless μ-law (what SIPp's rtp_stream plays bit-exactly)."""
    path = tmp_path_factory.mktemp("data") / "speech_8k.ulaw"
    path.write_bytes(ulaw_encode(speech_8k).tobytes())
    return path
