"""The TUI's screens; each loads its data through `tui.backend.Backend` on worker threads."""
