"""What both randomized simulators' chaos drivers share: a random fault at a
random moment until stopped, crash with a quick or later restart, sleep.

A subclass names its fault kinds (each a `_<kind>` method), picks victims
(`_victim`), and says which replicas exist and may be restarted. The order
of random draws is part of a seed's meaning: keep it when changing this.
"""

from __future__ import annotations

import random

from tests.sim.harness.network import TICK


class ChaosDriver:
    def __init__(self, sim, rng: random.Random, *, kinds: list[str], pace: tuple[float, float], longest_pause: int):
        """`pace`: the range of ticks between two chaos actions; `longest_pause`:
        the longest sleep or restart delay, in ticks."""
        self.sim = sim
        self.rng = rng
        self.kinds = kinds
        self.pace = pace
        self.active = False
        self._longest_pause = longest_pause

    def start(self) -> None:
        self.active = True
        if self.kinds:
            self._schedule_next()

    def stop(self) -> None:
        self.active = False

    def _schedule_next(self) -> None:
        low, high = self.pace
        self.sim.scheduler.after(int(self.rng.uniform(low, high) * TICK), self._act)

    def _act(self) -> None:
        if not self.active:
            return
        kind = self.rng.choice(self.kinds)
        self.sim.stats.faults[kind] = self.sim.stats.faults.get(kind, 0) + 1
        getattr(self, f"_{kind}")()
        self._schedule_next()

    # -- for subclasses -------------------------------------------------------------

    def _victim(self) -> str | None:
        raise NotImplementedError

    def _replica_ids(self) -> list[str]:
        """Every replica a crash may have taken down, in a stable order."""
        raise NotImplementedError

    def _restartable(self, replica_id: str) -> bool:
        raise NotImplementedError

    # -- shared faults ----------------------------------------------------------------

    def _crash(self) -> None:
        """Restart a crashed replica half the time, else crash a victim; a third
        of crashes restart at once (a supervisor's quick restart: the replica
        comes back amid the same election, with only its disk)."""
        sim = self.sim
        down = [rid for rid in self._replica_ids() if self._restartable(rid)]
        if down and self.rng.random() < 0.5:
            sim.restart(self.rng.choice(down))
            return
        victim = self._victim()
        if victim is None:
            return
        sim.crash(victim)
        pause = 0 if self.rng.random() < 0.3 else self.rng.randint(1, self._longest_pause)
        sim.scheduler.after(pause * TICK, lambda: self._restart(victim))

    def _restart(self, replica_id: str) -> None:
        if self.active and self._restartable(replica_id):
            self.sim.restart(replica_id)

    def _sleep(self) -> None:
        victim = self._victim()
        if victim is not None:
            self.sim.sleep(victim, self.rng.randint(1, self._longest_pause))
