"""ICE server settings of a browser call, apart from the leg that uses them.

Why a module of its own: the HTTP settings are read by every `serve`, also one that
never takes a browser call; this dataclass must not pull in aiortc with the leg.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["IceServer"]


@dataclass(frozen=True)
class IceServer:
    """One STUN or TURN server, as in the browser's ``RTCIceServer``."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None
