"""Backup planning: pure decisions about which endpoints to read and how (no I/O)."""
