"""The switchboard: admission, profiles, sessions and listeners for every live call."""

from telephony_agent.switchboard.board import (
    Admission,
    CallListener,
    LiveCall,
    Switchboard,
    SwitchboardStats,
)
from telephony_agent.switchboard.deployment import Deployment
from telephony_agent.switchboard.request import CallKind, CallRequest, Refusal
from telephony_agent.switchboard.session import session_config

__all__ = [
    "Admission",
    "CallKind",
    "CallListener",
    "CallRequest",
    "Deployment",
    "LiveCall",
    "Refusal",
    "Switchboard",
    "SwitchboardStats",
    "session_config",
]
