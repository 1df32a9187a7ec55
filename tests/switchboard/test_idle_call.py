"""A real SIP call from a caller who says nothing: asked once, then hung up on as idle."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.http.support import wait_until
from tests.switchboard.support import running_rig


async def test_a_silent_sip_caller_is_asked_then_hung_up_on(tmp_path: Path) -> None:
    async with running_rig(
        tmp_path,
        "",
        local={"behaviour": "echo"},
        agent={"idle_reprompt_s": 1.0, "idle_max_reprompts": 1},
    ) as rig:
        result = await rig.call("frontdesk", np.zeros(16000, np.int16), tail_s=15.0)
        await wait_until(lambda: len(rig.heard.ended) == 1)
    assert result.answered and result.ended_by == "agent", result.summary()
    assert result.seconds < 10.0
    (record,) = rig.heard.ended
    assert (record.end_reason, record.ended_by) == ("idle", "timeout")
    # The prompt and the goodbye were both played to the caller.
    agent_lines = [line.text for _, line in rig.heard.transcripts if line.speaker == "agent"]
    assert len(agent_lines) == 2, agent_lines
