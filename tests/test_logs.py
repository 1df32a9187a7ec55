"""Redaction: secrets never reach log output, whatever shape they are logged in."""

from __future__ import annotations

import io
import json
import logging

import structlog

from telephony_agent.logs import configure_logging, redact_text, register_secret
from telephony_agent.realtime.providers import Endpoint

SECRET = "AQVNsecretvalue-0123456789"


def test_registered_secret_is_masked_everywhere() -> None:
    out = io.StringIO()
    configure_logging("debug", "json", stream=out, secrets=[SECRET])
    log = structlog.get_logger("test")
    log.info("connecting", url=f"wss://x/?key={SECRET}", headers={"Authorization": SECRET})
    log.info(f"message with {SECRET} inline", nested=[{"deep": SECRET}])
    try:
        raise RuntimeError(f"boom {SECRET}")
    except RuntimeError:
        log.exception("failed")
    logging.getLogger("websockets.client").warning("header Authorization: Api-Key %s", SECRET)
    text = out.getvalue()
    assert SECRET not in text
    assert text.count("***") >= 5


def test_credential_shapes_are_masked_without_registration() -> None:
    assert "sk-abcdefghijkl" not in redact_text("key sk-abcdefghijklmnop")
    assert redact_text("Authorization: Bearer abcdef123456") == "Authorization: Bearer ***"


def test_endpoint_repr_hides_headers_and_query_keys() -> None:
    register_secret(SECRET)
    endpoint = Endpoint(
        url=f"wss://h/v1?model=m&api_key={SECRET}", headers={"Authorization": SECRET}
    )
    assert SECRET not in repr(endpoint)
    assert SECRET not in endpoint.redacted_url()
    assert "model=m" in endpoint.redacted_url()


def test_each_module_logs_at_its_own_level_and_names_itself() -> None:
    out = io.StringIO()
    configure_logging(
        "info",
        "json",
        stream=out,
        levels={"telephony_agent.sip": "debug", "telephony_agent.records": "error"},
    )
    structlog.get_logger("telephony_agent.sip.endpoint").debug("sip_detail")
    structlog.get_logger("telephony_agent.sipx").debug("not_a_submodule")
    structlog.get_logger("telephony_agent.records.writer").warning("records_quiet")
    structlog.get_logger("telephony_agent.records.writer").error("records_loud")
    structlog.get_logger("telephony_agent.call.bridge").debug("bridge_detail")
    structlog.get_logger("telephony_agent.call.bridge").info("bridge_info")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["event"], r["logger"]) for r in lines] == [
        ("sip_detail", "telephony_agent.sip.endpoint"),
        ("records_loud", "telephony_agent.records.writer"),
        ("bridge_info", "telephony_agent.call.bridge"),
    ]


class _Writes(io.StringIO):
    """A stream that remembers each write call (as an unbuffered pipe would see it)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def write(self, text: str) -> int:
        self.calls.append(text)
        return super().write(text)


def test_each_json_line_is_written_in_one_call_so_processes_sharing_a_pipe_never_interleave() -> (
    None
):
    out = _Writes()
    configure_logging("info", "json", stream=out)
    log = structlog.get_logger("telephony_agent.switchboard.board")
    log.info("deployment_reloaded", profiles=[], max_calls=60)
    log.warning("overload_entered", cpu=0.9)
    assert len(out.calls) == 2
    assert all(call.endswith("\n") and call.count("\n") == 1 for call in out.calls)
    assert [json.loads(call)["event"] for call in out.calls] == [
        "deployment_reloaded",
        "overload_entered",
    ]
