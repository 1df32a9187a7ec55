"""telephony-agent: answers phone calls with a Realtime speech model."""

__version__ = "0.1.0"
