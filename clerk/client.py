"""The Python API for applications (docs/DESIGN.md section 7).

    from clerk import connect
    store = connect()                     # the topology's admin port, or connect(admin="127.0.0.1:19000")
    store.put("alice", 100); store.get("alice"); store.delete("alice")
    store.get_many(["alice", "bob"])      # one consistent read of several keys
    with store.transaction() as txn:      # commits on exit; TransactionAborted on conflict
        txn.put("alice", txn.get("alice") - 10)

Every Store of one application process on one system shares one Clerk actor
(the first one opened creates it, the last one closed ends it), so an
application's threads cost the system one clerk, not one each. Each Store
talks to it through its own ActorSystem handle: a Store is for one thread, and
threads each open their own. A Transaction buffers its writes in the
application's process and caches what it read (with versions); at commit the
clerk validates the reads and installs the writes atomically across clusters.

Values are JSON values, checked and size-limited here, before anything is
sent: a refused value loses nothing and changes nothing.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from actors.messages import (
    ClerkCommit,
    ClerkGet,
    ClerkOpen,
    ClerkOpenReply,
    ClerkRead,
    ClerkReply,
    ReadResult,
    Stamp,
)
from clerk.errors import ClusterNotRunning, TransactionAborted, TransactionTooLarge, Unavailable
from coordinator.admin import DEFAULT_BASE, LOOPBACK, attach, coordinator_addresses, parse_admin, remember_secret

MAX_VALUE_BYTES = 32 * 1024
"""Largest JSON encoding of one value; keeps every message far under Thespian's 60 KB."""
MAX_KEY_BYTES = 1024
REQUEST_TIMEOUT = 30.0
"""Seconds the application waits for its clerk; the clerk's own budgets are shorter."""
CLERK_CHECK_TIMEOUT = 5.0
"""Seconds a new Store waits for the process's shared clerk to say it still runs."""
PLAIN_RETRIES = 10
"""Attempts of a plain get/put/delete that lost a race with another transaction."""
RETRY_BASE_SECONDS = 0.02
RETRY_CAP_SECONDS = 1.0


def retry_delay(attempt: int) -> float:
    """How long to wait before retrying after the `attempt`-th abort (from 1):
    a random wait below an exponentially growing cap, as fdb's on_error does.
    Retrying at once under contention makes the same transactions collide
    again; spreading them out lets some commit."""
    return random.uniform(0, min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2**attempt))


def check_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise TypeError(f"keys are non-empty strings, got {key!r}")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise ValueError(f"key too long: {len(key.encode())} bytes (limit {MAX_KEY_BYTES})")
    return key


def check_value(value: Any) -> Any:
    """A JSON value within the size limit, returned as it will be stored (tuples become lists)."""
    try:
        _require_string_keys(value)
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise ValueError(f"value is not JSON (str, int, float, bool, None, list, dict with str keys): {error}") from None
    if len(text.encode()) > MAX_VALUE_BYTES:
        raise ValueError(f"value too large: {len(text.encode())} bytes as JSON (limit {MAX_VALUE_BYTES})")
    return json.loads(text)


def _require_string_keys(value: Any) -> None:
    """json.dumps would silently turn {1: x} into {"1": x}: refuse it instead."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"dict key {key!r} is not a string")
            _require_string_keys(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _require_string_keys(item)


def resolve_admin(topology: str | os.PathLike | None, admin: str | None,
                  secret_file: str | os.PathLike | None = None) -> tuple[str, str]:
    """The admin address and actor-system base to use (an explicit admin wins).
    The system's secret is `secret_file` if given, else the one in the
    topology's data directory (coordinator.admin.secret_file_for)."""
    if admin is not None:
        port = parse_admin(admin)[1]
        if secret_file is not None:
            remember_secret(port, secret_file)
        return admin, DEFAULT_BASE
    from actors.transport import SECRET_FILE
    from coordinator.topology import load_topology, topology_file

    path = topology_file(topology)
    topo = load_topology(path)
    port = topo.system_admin_port
    if port == 0:
        raise ClusterNotRunning(f"{path} has admin_port 0 (a free port at start): pass admin=HOST:PORT")
    remember_secret(port, secret_file if secret_file is not None else topo.data_dir / SECRET_FILE)
    return f"{LOOPBACK}:{port}", topo.base


def connect(topology: str | os.PathLike | None = None, *, admin: str | None = None, base: str | None = None,
            secret_file: str | os.PathLike | None = None) -> Store:
    """Connect to a running system: by `admin` ("HOST:PORT"), else by the admin
    port of `topology` (default ./topology.yaml, else the embedded default).
    `secret_file` is the deployment's secret (default: `secret` in the
    topology's data directory, or the one this process started the system
    with). Raises ClusterNotRunning, NotAuthorized."""
    address, topo_base = resolve_admin(topology, admin, secret_file)
    return Store(address, base or topo_base)


@dataclass
class _SharedClerk:
    """The clerk the Stores of this process share on one system.

    Fields:
        address: its actor address.
        pid: its process id.
        stores: the open Stores using it; the last to close ends it.
    """

    address: object
    pid: int
    stores: int = 0


_clerks: dict[tuple[str, int], _SharedClerk] = {}  # (admin, this process's pid) -> its clerk there
_clerks_lock = threading.Lock()


class Store:
    """A connection to raftline; see the module docstring. Not thread-safe: one per thread."""

    def __init__(self, admin: str, base: str = DEFAULT_BASE):
        self._system = attach(admin, base)
        from thespian.actors import ActorExitRequest

        self.admin = admin
        self._exit_request = ActorExitRequest
        # Keyed by pid too: a forked child must not use its parent's clerk, which exits with the parent.
        self._clerk_key = (admin, os.getpid())
        with _clerks_lock:
            shared = _clerks.get(self._clerk_key)
            if shared is None or not self._answers(shared):
                # None yet, or it died (killed, or its host lost): the Stores still on it fail as before.
                shared = _clerks[self._clerk_key] = self._open_clerk(base)
            shared.stores += 1
        self._shared = shared
        self._clerk = shared.address
        self.clerk_pid = shared.pid
        self._requests = itertools.count(1)
        self.last_hops = 0
        """Messages on the critical path of the last clerk request (ClerkReply.hops), for benchmarks."""
        self.total_hops = 0
        """The same, summed over every clerk request of this store."""

    def _open_clerk(self, base: str) -> _SharedClerk:
        from clerk.clerk import Clerk

        coordinators = tuple(coordinator_addresses(self._system, self.admin, base).values())
        clerk = self._system.createActor(Clerk)
        opened = self._system.ask(clerk, ClerkOpen(owner_pid=os.getpid(), coordinators=coordinators),
                                  REQUEST_TIMEOUT)
        if not isinstance(opened, ClerkOpenReply):
            raise Unavailable(f"the system at {self.admin} did not start a clerk within {REQUEST_TIMEOUT:g} s")
        return _SharedClerk(address=clerk, pid=opened.pid)

    def _answers(self, shared: _SharedClerk) -> bool:
        """Whether the shared clerk still answers (a dead one's address refuses at once)."""
        opened = self._system.ask(shared.address, ClerkOpen(owner_pid=os.getpid(), coordinators=()), CLERK_CHECK_TIMEOUT)
        return isinstance(opened, ClerkOpenReply)

    # -- plain operations (each one a transaction) ---------------------------------

    def get(self, key: str) -> Any:
        """The committed value of `key`, or None when it does not exist.

        One round trip to the key's leader, read and validated in one log
        entry (ClerkGet); when that meets a concurrent writer, a transaction
        reads it instead, waiting for the writer."""
        return self.get_many([key])[key]

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The committed values of `keys` (None for a missing one), all as of
        one moment: a read-only transaction, read and validated at every
        owning cluster at once, in one round trip (as `get`)."""
        keys = list(dict.fromkeys(keys))
        for key in keys:
            check_key(key)
        reply = self._call(ClerkGet(req=next(self._requests), keys=tuple(keys)))
        if reply.outcome == "ok":
            return {key: result.value if result.exists else None for key, result in reply.values.items()}
        if reply.outcome != "aborted":
            raise Unavailable(reply.reason)
        return self._retry(lambda txn: txn.get_many(keys))

    def put(self, key: str, value: Any) -> None:
        check_value(value)
        self._retry(lambda txn: txn.put(key, value))

    def delete(self, key: str) -> None:
        self._retry(lambda txn: txn.delete(key))

    def _retry(self, body: Callable[[Transaction], Any], attempts: int = PLAIN_RETRIES) -> Any:
        """`body` in a transaction, committed; on an abort, again after
        `retry_delay`, up to `attempts` times in all."""
        for attempt in range(1, attempts + 1):
            txn = self.transaction()
            try:
                result = body(txn)
                txn.commit()
                return result
            except TransactionAborted:
                if attempt == attempts:
                    raise
                time.sleep(retry_delay(attempt))

    # -- transactions ------------------------------------------------------------------

    def transaction(self) -> Transaction:
        """A new transaction; commit it with `commit()` or by leaving its `with` block."""
        self._require_open()
        return Transaction(self)

    def transactional(self, retries: int = 20) -> Callable:
        """Decorator, like fdb.transactional: runs the function in a transaction,
        retrying up to `retries` times on TransactionAborted. Call it without the
        transaction argument; pass one to join an enclosing transaction instead."""

        def decorate(function: Callable) -> Callable:
            @functools.wraps(function)
            def run(*args, **kwargs):
                if args and isinstance(args[0], Transaction):
                    return function(*args, **kwargs)
                return self._retry(lambda txn: function(txn, *args, **kwargs), attempts=retries + 1)

            return run

        return decorate

    # -- administration -----------------------------------------------------------------

    def status(self) -> dict:
        from coordinator.admin import Cluster

        return Cluster(self.admin, base=DEFAULT_BASE).status()

    def close(self) -> None:
        if self._system is None:
            return
        with _clerks_lock:
            shared = self._shared
            shared.stores -= 1
            if shared.stores == 0:
                if _clerks.get(self._clerk_key) is shared:
                    del _clerks[self._clerk_key]
                self._system.tell(self._clerk, self._exit_request())
        self._system = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- talking to the clerk -------------------------------------------------------------

    def _require_open(self) -> None:
        if self._system is None:
            raise ClusterNotRunning("this store is closed")

    def _call(self, message) -> ClerkReply:
        self._require_open()
        reply = self._system.ask(self._clerk, message, REQUEST_TIMEOUT)
        while reply is not None and not (isinstance(reply, ClerkReply) and reply.req == message.req):
            reply = self._system.listen(REQUEST_TIMEOUT)  # a late answer to an earlier, timed-out request
        if reply is None:
            raise Unavailable(f"no answer from the clerk within {REQUEST_TIMEOUT:g} s (is the system at {self.admin} overloaded?)")
        self.last_hops = reply.hops
        self.total_hops += reply.hops
        return reply

    def _read(self, keys: list[str]) -> dict[str, ReadResult]:
        reply = self._call(ClerkRead(req=next(self._requests), keys=tuple(keys)))
        if reply.outcome != "ok":
            raise Unavailable(reply.reason)
        return reply.values

    def _commit(self, reads: dict[str, Stamp], writes: dict[str, Any], deletes: tuple[str, ...]) -> str:
        reply = self._call(ClerkCommit(req=next(self._requests), reads=reads, writes=writes, deletes=deletes))
        if reply.outcome == "aborted":
            raise TransactionAborted(f"transaction {reply.txid} aborted: {reply.reason}")
        if reply.outcome == "too_large":
            raise TransactionTooLarge(f"the transaction can never commit: {reply.reason}")
        if reply.outcome != "ok":
            raise Unavailable(reply.reason)
        return reply.txid


_DELETED = object()


class Transaction:
    """A serializable transaction: reads see the committed state (and this
    transaction's own writes); writes become visible atomically at commit."""

    def __init__(self, store: Store):
        self._store = store
        self._reads: dict[str, Stamp] = {}
        self._values: dict[str, Any] = {}
        self._present: set[str] = set()  # keys read that exist
        self._writes: dict[str, Any] = {}
        self._done = False

    def get(self, key: str) -> Any:
        return self.get_many([key])[key]

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Several keys at once: the ones not read yet travel in one request,
        read from their clusters in parallel (one round trip, not one per key)."""
        keys = list(dict.fromkeys(keys))
        for key in keys:
            check_key(key)
        self._require_active()
        unread = [key for key in keys if key not in self._writes and key not in self._reads]
        if unread:
            for key, result in self._store._read(unread).items():
                self._reads[key] = tuple(result.version)
                self._values[key] = result.value if result.exists else None
                if result.exists:
                    self._present.add(key)
        return {key: self._visible(key) for key in keys}

    def exists(self, key: str) -> bool:
        """Whether `key` exists (written and not deleted), as this transaction
        sees it; read and validated like `get`."""
        self.get_many([key])
        if key in self._writes:
            return self._writes[key] is not _DELETED
        return key in self._present

    def _visible(self, key: str) -> Any:
        if key in self._writes:
            value = self._writes[key]
            return None if value is _DELETED else value
        return self._values[key]

    def put(self, key: str, value: Any) -> None:
        check_key(key)
        self._require_active()
        self._writes[key] = check_value(value)

    def delete(self, key: str) -> None:
        check_key(key)
        self._require_active()
        self._writes[key] = _DELETED

    def commit(self) -> None:
        """Validate and install; raises TransactionAborted on a conflict."""
        self._require_active()
        self._done = True
        if not self._reads and not self._writes:
            return
        writes = {key: value for key, value in self._writes.items() if value is not _DELETED}
        deletes = tuple(sorted(key for key, value in self._writes.items() if value is _DELETED))
        self._store._commit(dict(self._reads), writes, deletes)

    def abort(self) -> None:
        """Drop everything buffered; nothing was sent, so nothing needs undoing."""
        self._done = True

    def _require_active(self) -> None:
        if self._done:
            raise RuntimeError("this transaction has already committed or aborted")

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._done:
            return
        if exc_type is None:
            self.commit()
        else:
            self.abort()
