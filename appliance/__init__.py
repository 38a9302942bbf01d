"""Strongroom: backup and restore appliance for Xero organisations.

The appliance package holds the engines (adapters and use cases), the daemon and the CLI.
It never imports the TUI or the sandbox (checked by import-linter).
"""

__version__ = "0.1.0"
