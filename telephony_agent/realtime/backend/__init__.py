"""The built-in local Realtime backend: a protocol-faithful websocket server.

It speaks the OpenAI Realtime GA protocol (beta or Yandex-flavoured event names on
request) so demos, tests and benchmarks run with no API key and no network, and so the
Realtime client can be exercised against every conformance case of the protocol notes
via `BackendOptions` fault knobs.
"""

from telephony_agent.realtime.backend.behaviours import ScriptError
from telephony_agent.realtime.backend.options import BackendOptions
from telephony_agent.realtime.backend.phrases import PhraseError
from telephony_agent.realtime.backend.server import RunningBackend, serve_forever, start_backend
from telephony_agent.realtime.backend.stats import BackendStats, TruncateRecord

__all__ = [
    "BackendOptions",
    "BackendStats",
    "PhraseError",
    "RunningBackend",
    "ScriptError",
    "TruncateRecord",
    "serve_forever",
    "start_backend",
]
