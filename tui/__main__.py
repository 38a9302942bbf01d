"""`python -m tui [GLOBAL OPTIONS] [tui [--org ORG] [--light]]`: `strongroom tui` for a checkout whose
`strongroom.commands` entry point is not installed yet (the tmux smoke test falls back to it)."""

from __future__ import annotations

import sys

from appliance import cli
from tui.cli import register


def main(argv: list[str]) -> int:
    register(cli.app)  # registering twice (entry point + here) is harmless: the last `tui` wins
    return cli.main(argv if "tui" in argv else [*argv, "tui"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
