"""The command line as a user meets it: real processes, real local backend, one-line errors."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from importlib.resources import files
from pathlib import Path

import numpy as np

from telephony_agent.audio.analysis import best_lag_correlation
from telephony_agent.audio.wav import read_wav
from telephony_agent.realtime.backend import BackendOptions, start_backend

SAMPLE = Path(str(files("telephony_agent") / "samples" / "book_flight.wav"))
FAKE_KEY = "sk-FAKE-CLI-KEY-0123456789abcdef"
CLI_TIMEOUT_S = 60.0


async def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[int, str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.endswith("API_KEY")}
    environment.update(env or {})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "telephony_agent",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
        cwd=cwd,
    )
    async with asyncio.timeout(CLI_TIMEOUT_S):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def assert_one_clear_line(stderr: str, expected: str) -> None:
    assert "Traceback" not in stderr
    error_lines = [
        line for line in stderr.splitlines() if line.startswith("telephony-agent: error:")
    ]
    assert len(error_lines) == 1, stderr
    assert expected in error_lines[0], error_lines[0]


async def test_ask_offline_answers_with_an_echo_of_the_question(tmp_path: Path) -> None:
    out = tmp_path / "answer.wav"
    code, stdout, stderr = await run_cli("ask", str(SAMPLE), "-o", str(out), "--provider", "local")
    assert code == 0, stderr
    assert stdout.startswith("answer: ")
    answer, rate = read_wav(out)
    question, question_rate = read_wav(SAMPLE)
    assert rate == question_rate == 24000
    assert float(np.sqrt(np.mean(answer.astype(np.float64) ** 2))) > 500.0
    correlation, _lag = best_lag_correlation(answer, question, max_lag=4800)
    assert correlation >= 0.9


async def test_no_key_announces_the_local_backend(tmp_path: Path) -> None:
    code, _stdout, stderr = await run_cli("ask", str(SAMPLE), "-o", str(tmp_path / "a.wav"))
    assert code == 0, stderr
    assert "no API key configured: using the built-in local backend" in stderr


async def test_fake_key_never_appears_in_any_output(tmp_path: Path) -> None:
    backend = await start_backend(BackendOptions(require_api_key=FAKE_KEY), port=0)
    try:
        config = tmp_path / "agent.toml"
        config.write_text(
            f'[provider]\nname = "custom"\nurl = "{backend.url}?model=x"\n'
            'api_key_env = "MY_REALTIME_KEY"\n[log]\nlevel = "debug"\nformat = "json"\n'
        )
        out = tmp_path / "a.wav"
        code, stdout, stderr = await run_cli(
            "ask",
            str(SAMPLE),
            "-o",
            str(out),
            "--config",
            str(config),
            "--log-level",
            "debug",
            env={"MY_REALTIME_KEY": FAKE_KEY},
        )
        assert code == 0, stderr
        assert backend.stats.connections == 1
        assert FAKE_KEY not in stdout + stderr
        # A wrong key: 401, one line, exit 1, neither key printed.
        code, stdout, stderr = await run_cli(
            "ask",
            str(SAMPLE),
            "-o",
            str(out),
            "--config",
            str(config),
            env={"MY_REALTIME_KEY": FAKE_KEY + "-wrong"},
        )
        assert code == 1
        assert_one_clear_line(stderr, "401")
        assert FAKE_KEY not in stdout + stderr
        assert backend.stats.rejected_handshakes == 1
    finally:
        await backend.close()


async def test_unreadable_audio_is_a_usage_error(tmp_path: Path) -> None:
    not_audio = tmp_path / "notes.txt"
    not_audio.write_text("hello")
    code, _out, stderr = await run_cli("ask", str(not_audio), "--provider", "local")
    assert code == 2
    assert_one_clear_line(stderr, "notes.txt")
    code, _out, stderr = await run_cli("ask", str(tmp_path / "missing.wav"))
    assert code == 2
    assert_one_clear_line(stderr, "no such file")


async def test_config_mistakes_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[vad]\nsilence_duration_ms = "long"\n')
    code, _out, stderr = await run_cli("ask", str(SAMPLE), "--config", str(bad))
    assert code == 2
    assert_one_clear_line(stderr, "vad.silence_duration_ms = 'long': expected an integer")
    code, _out, stderr = await run_cli("ask", str(SAMPLE), "--provider", "yandx")
    assert code == 2
    assert_one_clear_line(stderr, "--provider 'yandx': expected one of")
    code, _out, stderr = await run_cli("ask", str(SAMPLE), "--provider", "yandex")
    assert code == 2
    assert_one_clear_line(stderr, "needs an API key")
    code, _out, stderr = await run_cli("config", "check", str(tmp_path / "nope.toml"))
    assert code == 2
    assert_one_clear_line(stderr, "cannot read config file")
    code, _out, stderr = await run_cli("frobnicate")
    assert code == 2
    assert_one_clear_line(stderr, "invalid choice")


async def test_config_check_prints_effective_settings_masked(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[provider]\nname = "yandex"\nfolder = "b1gtest"\n[agent]\nvoice = "alena"\n')
    code, stdout, stderr = await run_cli(
        "config", "check", str(good), env={"YANDEX_API_KEY": FAKE_KEY}
    )
    assert code == 0, stderr
    assert 'voice = "alena"' in stdout
    assert (
        "wss://ai.api.cloud.yandex.net/v1/realtime?model=gpt://b1gtest/speech-realtime-250923"
        in stdout
    )
    assert "*** (set)" in stdout
    assert FAKE_KEY not in stdout + stderr


async def _plain_http_server() -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, port


async def test_a_server_that_is_not_realtime_gets_one_line(tmp_path: Path) -> None:
    server, port = await _plain_http_server()
    try:
        config = tmp_path / "agent.toml"
        config.write_text(f'[provider]\nname = "custom"\nurl = "ws://127.0.0.1:{port}/"\n')
        code, _out, stderr = await run_cli(
            "ask", str(SAMPLE), "-o", str(tmp_path / "a.wav"), "--config", str(config)
        )
        assert code == 1
        assert_one_clear_line(stderr, "127.0.0.1")
    finally:
        server.close()
        await server.wait_closed()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_local_backend_command_serves_the_protocol(tmp_path: Path) -> None:
    port = _free_port()
    environment = dict(os.environ)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "telephony_agent",
        "local-backend",
        "--port",
        str(port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
    )
    try:
        assert process.stderr is not None
        async with asyncio.timeout(15):
            banner = await process.stderr.readline()
        assert f"ws://127.0.0.1:{port}/v1/realtime" in banner.decode()
        config = tmp_path / "agent.toml"
        config.write_text(
            f'[provider]\nname = "custom"\nurl = "ws://127.0.0.1:{port}/v1/realtime"\n'
        )
        out = tmp_path / "a.wav"
        code, stdout, stderr = await run_cli(
            "ask", str(SAMPLE), "-o", str(out), "--config", str(config)
        )
        assert code == 0, stderr
        assert stdout.startswith("answer: ")
        assert out.stat().st_size > 10000
    finally:
        process.terminate()
        async with asyncio.timeout(10):
            await process.wait()


async def test_local_backend_rejects_a_bad_fault_knob_in_one_line() -> None:
    code, _out, stderr = await run_cli("local-backend", "--close-mid-response", "1006")
    assert code == 2
    assert_one_clear_line(stderr, "1006 is not a close code a server may send")


async def test_demo_runs_the_booking_line_with_words_tools_and_a_keypad_entry(
    tmp_path: Path,
) -> None:
    out = tmp_path / "heard.wav"
    code, stdout, stderr = await run_cli("demo", "--record", str(out), cwd=tmp_path)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    lines = stdout.splitlines()

    def said(speaker: str, text: str) -> bool:
        return any(f"{speaker}: " in line and text in line for line in lines)

    assert said("agent", "booking line. How can I help you?"), stdout
    assert said("caller", "I would like to book a table for two tomorrow at seven."), stdout
    assert said("tool", 'check_availability({"party_size":2'), stdout
    assert said("agent", "We have a table for two people tomorrow at seven"), stdout
    assert said("caller", "Yes, please."), stdout
    assert [d for d in "4512#" if said("caller", f"[DTMF {d}]")] == list("4512#"), stdout
    assert said("tool", '"phone_last4":"4512"'), stdout
    assert said("agent", "Your booking is confirmed. Your reference is"), stdout
    assert any(
        line.startswith("answered: codec PCMU") and "ended by agent" in line for line in lines
    )
    assert any(line.startswith("turn latency = end of the caller's speech") for line in lines)
    assert sum(line.startswith("  turn ") for line in lines) == 2, stdout
    assert any(line.startswith("keypad entry: 4512#") for line in lines), stdout
    assert any(line.startswith("bridge uplink") and "p99" in line for line in lines), stdout
    heard, rate = read_wav(out)
    assert rate == 8000
    assert heard.size > 25 * rate

    # The demo call was kept: `calls list` shows it and `calls show` tells the dialogue.
    code, listing, stderr = await run_cli("calls", "list", cwd=tmp_path)
    assert code == 0, stderr
    (line,) = listing.splitlines()
    assert "caller -> booking" in line and "profile booking" in line, line
    call_id = line.split()[2]
    code, shown, stderr = await run_cli("calls", "show", call_id, cwd=tmp_path)
    assert code == 0, stderr
    assert "I would like to book a table for two tomorrow at seven." in shown, shown
    assert "tool: check_availability(" in shown and "tool: make_booking(" in shown, shown
    assert "ended: booking_complete by agent" in shown, shown
    code, as_json, _ = await run_cli("calls", "show", call_id, "--json", cwd=tmp_path)
    record = json.loads(as_json)
    assert record["dtmf"] == "4512#" and len(record["turns"]) == 2
    assert {t["name"] for t in record["tools"]} == {
        "check_availability",
        "make_booking",
        "end_call",
    }


async def test_every_shipped_example_passes_config_check_without_keys() -> None:
    examples = sorted((Path(__file__).parents[1] / "deploy").glob("*.example.toml"))
    assert len(examples) >= 2
    for example in examples:
        code, stdout, stderr = await run_cli("config", "check", str(example), env={})
        assert code == 0, f"{example.name}: {stderr}"
        assert "Traceback" not in stderr
        assert stdout.rstrip().endswith(": OK"), stdout


async def test_config_check_route_says_which_profile_answers(tmp_path: Path) -> None:
    settings = tmp_path / "lines.toml"
    settings.write_text(
        '[[profiles]]\nname = "booking"\nnumbers = ["booking", "+7 (495) 123-45-67"]\n'
        '[[profiles]]\nname = "support"\nmatch = "^9\\\\d{3}$"\n'
    )
    code, stdout, stderr = await run_cli(
        "config",
        "check",
        str(settings),
        "--route",
        "+74951234567",
        "--route",
        "9001",
        "--route",
        "other",
    )
    assert code == 0, stderr
    assert "# route: +74951234567 -> profile 'booking'" in stdout
    assert "# route: 9001 -> profile 'support' (match" in stdout
    assert "# route: other -> profile 'default'" in stdout


async def test_a_bad_profile_or_tool_is_one_line_naming_the_key(tmp_path: Path) -> None:
    cases = {
        '[[profiles]]\nname = "x"\ntools = ["book"]\n': "profiles[x].tools",
        '[[profiles]]\nname = "x"\ninstructions = "Hi {nobody}"\n': "{nobody}",
        '[[tools]]\nname = "t"\ndescription = "d"\npython = "no.such.module:f"\n': (
            "tools[t].python"
        ),
        '[[tools]]\nname = "t"\ndescription = "d"\nwebhook = "ftp://x"\n': "tools[t].webhook",
    }
    for text, key in cases.items():
        settings = tmp_path / "bad.toml"
        settings.write_text(text)
        code, stdout, stderr = await run_cli("config", "check", str(settings))
        assert code == 2, (text, stdout, stderr)
        assert key in stderr, (text, stderr)
        assert len(stderr.strip().splitlines()) == 1, stderr
        assert "Traceback" not in stderr


async def test_call_rejects_a_uri_that_is_not_sip(tmp_path: Path) -> None:
    code, _, stderr = await run_cli("call", "http://example.com", "--play", str(SAMPLE))
    assert code == 2
    assert_one_clear_line(stderr, "expected a SIP URI")


async def test_serve_names_a_bad_listen_address() -> None:
    code, _, stderr = await run_cli("serve", "--sip-listen", "nowhere", "--provider", "local")
    assert code == 2
    assert_one_clear_line(stderr, "sip.listen = 'nowhere'")
