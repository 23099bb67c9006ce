"""The coordinator's durable state (docs/DESIGN.md section 5).

SQLite in WAL mode with synchronous=FULL, under `<data_dir>/coordinator/`,
holding named JSON values: `map`, `reconfig` (jobs, id counters, founding
memberships), `placement` and `replacements`.

Rules:
- `save` writes the map, jobs, placement and replacements in one
  transaction, and only when something changed; the caller saves before it
  acts on what it decided, so a restarted coordinator resumes where it stood.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from coordinator.reconfig import Reconfig
from coordinator.shardmap import ShardMap


class CoordinatorState:
    """The coordinator's durable state: map, reconfiguration jobs, and placement."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(os.fspath(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self.last_saved: tuple[ShardMap | None, dict[str, str]] = (None, {})
        """The map and the other values `save` last wrote."""

    def get(self, name: str) -> str | None:
        row = self.db.execute("SELECT value FROM state WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def put(self, name: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO state (name, value) VALUES (?, ?)", (name, value))

    def put_many(self, values: dict[str, str]) -> None:
        """Write every value or none."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO state (name, value) VALUES (?, ?)", values.items())

    def close(self) -> None:
        self.db.close()

    # -- what the coordinator keeps --------------------------------------------------------

    def stored_map(self) -> ShardMap | None:
        text = self.get("map")
        return None if text is None else ShardMap.from_json(text)

    def stored_reconfig(self, shard_map: ShardMap, grace: float) -> Reconfig | None:
        text = self.get("reconfig")
        return None if text is None else Reconfig.from_json(text, shard_map, grace)

    def stored_dict(self, name: str) -> dict:
        """`placement` or `replacements`; empty when never saved."""
        return json.loads(self.get(name) or "{}")

    def save(self, reconfig: Reconfig, placement: dict[str, str], replacements: dict[str, str]) -> None:
        """Map, jobs, placement and replacements in one write; none when
        nothing changed since the last (maps are immutable: a changed one is
        a new object, so it is serialized only then)."""
        values = {"reconfig": reconfig.to_json(), "placement": json.dumps(placement, sort_keys=True),
                  "replacements": json.dumps(replacements, sort_keys=True)}
        saved_map, saved_values = self.last_saved
        if reconfig.map is saved_map and values == saved_values:
            return
        self.put_many({"map": reconfig.map.to_json(), **values})
        self.last_saved = (reconfig.map, values)
