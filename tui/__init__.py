"""The Textual terminal UI. It calls use cases in `appliance`, never its adapters."""
