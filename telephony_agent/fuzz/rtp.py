"""Fuzz target: RTCP compounds, RTP packets through the receiver, RFC 4733 events.

python -m telephony_agent.fuzz.rtp [libFuzzer flags] [CORPUS_DIR]
"""

from telephony_agent.fuzz.runner import main

if __name__ == "__main__":
    main("rtp")
