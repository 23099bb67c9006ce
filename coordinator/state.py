"""The coordinator's durable state as named values (docs/DESIGN.md section 5).

The coordinator group (coordinator/group.py) replicates a set of named JSON
texts; these are the names and how the acting replica's objects become
values and back:
- `map`: the shard map;
- `reconfig`: the reconfiguration jobs, id counters and founding memberships;
- `placement`: replica -> host (multi-host);
- `replacements`: lost replica -> its replacement job.

Rules:
- `StateWriter.changes` returns only what differs from what was last written,
  so the acting replica proposes an entry only when something changed; the
  map is immutable, so it is serialized only when it is a new object.
- `legacy_values` reads the single coordinator's SQLite file of earlier
  versions (`coordinator/coordinator.db`), so a data directory they wrote
  keeps its map and jobs.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from coordinator.reconfig import Reconfig
from coordinator.shardmap import ShardMap

VALUE_NAMES = ("map", "reconfig", "placement", "replacements")
PIDS_FILE = "pids.json"
"""Under a data directory: the PIDs of the system's processes on that host and
their session, for `stop` (written by the launcher, then the acting coordinator)."""
LEGACY_STATE = Path("coordinator") / "coordinator.db"
"""Where a coordinator of an earlier version kept its state, under the data directory."""


def stored_map(values: dict[str, str]) -> ShardMap | None:
    text = values.get("map")
    return None if text is None else ShardMap.from_json(text)


def stored_reconfig(values: dict[str, str], shard_map: ShardMap, grace: float) -> Reconfig | None:
    text = values.get("reconfig")
    return None if text is None else Reconfig.from_json(text, shard_map, grace)


def stored_dict(values: dict[str, str], name: str) -> dict:
    """`placement` or `replacements`; empty when never written."""
    return json.loads(values.get(name) or "{}")


class StateWriter:
    """What the acting replica last wrote (or found), to propose only changes."""

    def __init__(self, values: dict[str, str]):
        self.written = dict(values)
        self._written_map: ShardMap | None = None

    def changes(self, reconfig: Reconfig, placement: dict[str, str], replacements: dict[str, str]) -> dict[str, str]:
        """The values that differ from the last written, now counted as written."""
        values = {"reconfig": reconfig.to_json(), "placement": json.dumps(placement, sort_keys=True),
                  "replacements": json.dumps(replacements, sort_keys=True)}
        if reconfig.map is not self._written_map:
            values["map"] = reconfig.map.to_json()
            self._written_map = reconfig.map
        changed = {name: text for name, text in values.items() if self.written.get(name) != text}
        self.written.update(changed)
        return changed


def legacy_values(data_dir: Path) -> dict[str, str]:
    """The named values an earlier version's coordinator stored, or {}."""
    path = data_dir / LEGACY_STATE
    if not path.exists():
        return {}
    db = sqlite3.connect(os.fspath(path))
    try:
        rows = db.execute("SELECT name, value FROM state").fetchall()
    finally:
        db.close()
    return {name: value for name, value in rows if name in VALUE_NAMES}
