"""Faults that happen once per backend, and the junk a misbehaving server sends.

Why apart from the session: the session is one connection's protocol, while these
faults are about the backend as a whole (a client that reconnects after a fault must
then be served normally, or it could never prove it recovers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from telephony_agent.realtime.backend.options import BackendOptions
from telephony_agent.realtime.backend.outbox import CloseConnection

JUNK_TEXT = "this is not JSON {"
JUNK_BINARY = b"\x00\xffnot-a-realtime-event\x00"

QuestionStage = Literal["speech_started", "committed"]


@dataclass
class SharedFaults:
    """Faults that happen once per backend rather than once per connection."""

    mid_response_close_pending: bool = True
    """The close-mid-response fault hits the backend's first response only, so a
    client that reconnects afterwards is served normally (and can prove it recovers)."""
    mid_question_close_pending: bool = True
    """Likewise for the close while the caller's first question is unanswered."""

    def question_close(
        self, options: BackendOptions, stage: QuestionStage
    ) -> CloseConnection | None:
        """The close to do now, at this stage of the caller's first turn, if any."""
        code = options.close_mid_question_code
        if code is None or stage != options.close_mid_question_at:
            return None
        if not self.mid_question_close_pending:
            return None
        self.mid_question_close_pending = False
        return CloseConnection(code, "")
