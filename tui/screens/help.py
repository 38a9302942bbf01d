"""The help screen (`?`): what each screen's keys do, in a bookkeeper's words.

It must not do I/O.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# Strongroom

Strongroom keeps a backup of every connected Xero organisation, one **backup point** a day (more often if
set), and can put a point back into a new organisation.

## Everywhere
| key | what it does |
| --- | --- |
| `?` | this help |
| `ctrl+p` | the command palette: type an organisation's name to open it, or a command |
| `ctrl+t` | switch between the light and the dark theme |
| `escape` | go back |
| `ctrl+q` | quit (backups the daemon runs carry on) |

## Fleet dashboard
Type to filter (name, region, health: `failing`, `stale`, `consent`). The arrows move the selection.

| key | what it does |
| --- | --- |
| `enter` | open the organisation |
| `ctrl+b` | back up the selected organisation now |
| `ctrl+n` | connect organisations (Xero consent) |
| `ctrl+s` / `ctrl+r` | sort by the next column / reverse the order (or click a column heading) |
| `f5` | refresh now (the dashboard also refreshes itself) |

Health: **healthy** has a point younger than a day and a half; **stale** has none that recent; **failing**
had its last backup fail; **needs consent** must be connected again (`ctrl+n`).

## Organisation
| key | what it does |
| --- | --- |
| `enter` | browse the selected backup point |
| `space` | mark a point to compare, then `c` on another one: the two side by side |
| `b` | back up now |
| `a` / `e` / `x` | add / edit / delete an entry in the integrations register |
| `r` | start a restore from the selected point |
| `R` | restore the last clean point of the selected (or newest open) finding |
| `p` / `s` / `v` / `space` | in the restore wizard: plan, run (enqueue the restore job), verify, tick a manual step |

## Point browser
`tab` moves between the views (summary, accounts, trial balance, profit and loss, balance sheet, aged,
contacts, documents). In documents, type to search, `enter` shows one record in full, `s` saves an
attachment, `ctrl+e` exports the current view as CSV and `ctrl+x` the whole point.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Markdown(HELP)

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
