"""The Xero apps this appliance has used (the `apps` table).

Settings say which apps exist; this table remembers which ones grants were made through, so a grant
keeps pointing at a known app even after the settings change. It stores no secrets (a client secret
lives in a file or systemd credential, named by settings).
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.errors import NotFound
from appliance.store.db import Row, StateDB


@dataclass(frozen=True)
class App:
    name: str
    client_id: str
    tier: str | None
    first_seen: float
    last_seen: float


def _app(row: Row) -> App:
    return App(row["name"], row["client_id"], row["tier"], row["first_seen"], row["last_seen"])


class Apps:
    def __init__(self, db: StateDB) -> None:
        self.db = db

    def record(self, name: str, client_id: str, tier: str | None = None) -> App:
        """Remember (or refresh) an app by its short name; returns the stored row."""
        now = self.db.now()
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO apps(name, client_id, tier, first_seen, last_seen) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET client_id = excluded.client_id, tier = excluded.tier, "
                "last_seen = excluded.last_seen",
                (name, client_id, tier, now, now),
            )
            return self.get(name)

    def find(self, name: str) -> App | None:
        row = self.db.query_one("SELECT * FROM apps WHERE name = ?", (name,))
        return _app(row) if row else None

    def get(self, name: str) -> App:
        app = self.find(name)
        if app is None:
            raise NotFound(f"no Xero app named {name!r} has been used here", hint="connect through it first")
        return app

    def list(self) -> list[App]:
        return [_app(row) for row in self.db.query("SELECT * FROM apps ORDER BY name")]
