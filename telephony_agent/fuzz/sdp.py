"""Fuzz target: SDP parse, re-serialisation and offer/answer negotiation.

python -m telephony_agent.fuzz.sdp [libFuzzer flags] [CORPUS_DIR]
"""

from telephony_agent.fuzz.runner import main

if __name__ == "__main__":
    main("sdp")
