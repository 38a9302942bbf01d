"""Rate governor: pure decisions about when a call to Xero may go (no I/O)."""
