"""Fuzz target: SIP messages (datagrams and TCP streams) and what the server does with what parses.

python -m telephony_agent.fuzz.sip_message [libFuzzer flags] [CORPUS_DIR]
"""

from telephony_agent.fuzz.runner import main

if __name__ == "__main__":
    main("sip_message")
