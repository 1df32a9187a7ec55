"""The answering service: SIP signalling, RTP media and the Call, wired together."""
