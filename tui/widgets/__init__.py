"""Reusable widgets of the TUI; they display what they are given and never fetch data themselves."""
