"""Failures of a Realtime session that end a command with one clear line.

Why a small hierarchy: the caller must tell "fix your key" (auth, never retried),
"this is not a Realtime server" (protocol, never retried) and "the network or the
provider is down" (connect, retried with capped backoff first) apart, and print each
without a traceback. Messages carry the redacted URL only, never a header or a key.
"""

from __future__ import annotations


class RealtimeError(Exception):
    """Base class: a Realtime session could not be opened or kept."""


class RealtimeAuthError(RealtimeError):
    """The provider refused the credentials or the model (HTTP 401/403, close 1008)."""


class RealtimeProtocolError(RealtimeError):
    """The peer does not speak the Realtime protocol we expect (wrong URL, beta shape...)."""


class RealtimeConnectError(RealtimeError):
    """The endpoint could not be reached, even after capped retries."""


class RealtimeConfigError(RealtimeError):
    """The server rejected our `session.update` while the session was being set up."""


class RealtimeModelError(RealtimeError):
    """The provider says the model does not exist (Yandex `NOT_FOUND: Instance with model
    … not found`, OpenAI `model_not_found`, an invalid model URI). Never retried on the
    same model; the next model of `[provider] model` is tried, if any."""
