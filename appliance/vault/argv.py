"""Pure argv builders for restic subcommands (no I/O)."""
