"""`python -m telephony_agent` is the same as the `telephony-agent` command."""

import sys

from telephony_agent.cli import main

sys.exit(main())
