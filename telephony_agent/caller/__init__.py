"""A small SIP softphone (UAC) for testing a deployment: dial, speak a file, record, hang up."""
