"""Our own sans-I/O SIP stack: messages, SDP, transactions, dialogs, and a thin asyncio shell."""
