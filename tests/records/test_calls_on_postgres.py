"""A real call kept in a real PostgreSQL: the path a deployment with many instances takes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from telephony_agent.records import open_reader
from tests.call.helpers import sample_speech
from tests.http.support import wait_until
from tests.records.postgres import PostgresServer
from tests.switchboard.support import running_rig

pytestmark = pytest.mark.postgres


@pytest.fixture
def records_url(postgres_server: PostgresServer, postgres_database: str) -> Iterator[str]:
    """A URL without a password, as the settings file must hold it (trust auth here)."""
    schema = postgres_server.create_schema(postgres_database)
    yield postgres_server.url(postgres_database, password=None, schema=schema)
    postgres_server.drop_schema(postgres_database, schema)


async def test_a_sip_call_is_kept_in_postgresql(tmp_path: Path, records_url: str) -> None:
    speech = np.concatenate([sample_speech(16000)[:32000], np.zeros(16000, np.int16)])
    async with running_rig(
        tmp_path,
        '[agent]\ninstructions = "Front desk."\n',
        keep=True,
        local={"behaviour": "echo"},
        records={"database": records_url},
    ) as rig:
        result = await rig.call("frontdesk", speech, tail_s=3.0)
        assert result.answered
        await wait_until(lambda: len(rig.heard.ended) == 1)
        await rig.flushed()
        live = rig.heard.started[0]
    reader = open_reader(records_url)
    try:
        (listed,) = reader.list_calls(limit=5)
        call = reader.get_call(live.request.external_id)
    finally:
        reader.close()
    assert call is not None and listed["id"] == call["id"] == live.id
    assert (call["to"], call["profile"], call["ended_by"]) == ("frontdesk", "default", "caller")
    assert [line["speaker"] for line in call["transcript"]][:2] == ["caller", "agent"]
    assert len(call["turns"]) == 1
