"""Retention policy: pure decisions about which points to keep (no I/O)."""
