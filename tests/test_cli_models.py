"""`local-backend --dialect yandex --models …` and `ask` with a model list: the next model is
tried, and a model that does not exist ends the command with one line, exit 1."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from tests.test_cli import SAMPLE, _free_port, assert_one_clear_line, run_cli


@asynccontextmanager
async def yandex_backend(*models: str) -> AsyncIterator[int]:
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "telephony_agent",
        "local-backend",
        "--port",
        str(port),
        "--dialect",
        "yandex",
        "--models",
        ",".join(models),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ),
    )
    try:
        assert process.stderr is not None
        async with asyncio.timeout(15):
            banner = await process.stderr.readline()
        assert "yandex dialect" in banner.decode()
        yield port
    finally:
        process.terminate()
        async with asyncio.timeout(10):
            await process.wait()


def settings(tmp_path: Path, port: int, models: str) -> Path:
    config = tmp_path / "agent.toml"
    config.write_text(
        "[provider]\n"
        'name = "custom"\n'
        f'url = "ws://127.0.0.1:{port}/v1/realtime?model=gpt://b1gfolder/{{model}}"\n'
        'dialect = "yandex"\n'
        f"model = {models}\n"
    )
    return config


async def test_ask_tries_the_next_model(tmp_path: Path) -> None:
    async with yandex_backend("speech-realtime-260528") as port:
        config = settings(tmp_path, port, '["speech-realtime-250923", "speech-realtime-260528"]')
        out = tmp_path / "a.wav"
        code, stdout, stderr = await run_cli(
            "ask", str(SAMPLE), "-o", str(out), "--config", str(config)
        )
    assert code == 0, stderr
    assert stdout.startswith("answer: Echo of")


async def test_a_missing_model_is_one_line_and_exit_1(tmp_path: Path) -> None:
    async with yandex_backend("speech-realtime-260528") as port:
        config = settings(tmp_path, port, '"speech-realtime-250923"')
        code, _out, stderr = await run_cli("ask", str(SAMPLE), "--config", str(config))
    assert code == 1
    assert_one_clear_line(
        stderr, "NOT_FOUND: Instance with model gpt://b1gfolder/speech-realtime-250923"
    )
    assert "realtime_connect_failed" not in stderr  # never retried


async def test_models_flag_needs_names() -> None:
    code, _out, stderr = await run_cli("local-backend", "--models", " , ")
    assert code == 2
    assert_one_clear_line(stderr, "--models ' , ': expected model names")
