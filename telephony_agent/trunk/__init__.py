"""The agent's side of SIP trunks and PBXs: registrations (and, later, outbound calls)."""
