"""etcd beside raftline in one bench run (`raftline bench WORKLOAD --versus etcd`).

- EtcdCluster starts a cluster of `etcd` members on loopback (free ports, data
  under the run's directory, fsync on as etcd always does) and ends every
  member it started, however the run ends.
- EtcdStore is the subset of raftline's Store that the bench workloads use
  (raftline/workloads.py: `transaction()` with get, get_many, put, commit),
  over etcd's v3 JSON gateway on one kept-alive HTTP connection, so every
  workload runs unchanged against both. A transaction is etcd's optimistic
  pattern, as its own `concurrency.STM` does: reads are ranges (several keys
  in one etcd txn, one snapshot), writes are buffered, and commit is one etcd
  txn comparing every read key's mod_revision (0 for a key read absent) with
  what was read; a failed compare is TransactionAborted, retried as
  raftline's aborts are. A transaction that only reads commits nothing: its
  reads were linearizable ranges. Values are JSON, as raftline stores them.

The gateway costs etcd some CPU that a Go gRPC client would not; measured
here, a Python gRPC client (the `etcd3` package) was no faster per put.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from clerk.errors import TransactionAborted, Unavailable

ETCD_START_TIMEOUT = 30.0
ETCD_STOP_GRACE = 5.0
REQUEST_TIMEOUT = 10.0
CLUSTER_TOKEN = "raftline-bench"
"""Every member the bench starts carries it on its command line, so a leftover is easy to find."""


def etcd_binary() -> str | None:
    return shutil.which("etcd")


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class EtcdCluster:
    """`members` etcd processes on loopback, as a context manager; `endpoints` are their client URLs."""

    def __init__(self, directory: Path, members: int = 3):
        binary = etcd_binary()
        if binary is None:
            raise FileNotFoundError("--versus etcd needs the `etcd` binary on PATH (Debian: apt-get install etcd-server)")
        self.directory = directory
        ports = _free_ports(2 * members)
        client_ports, peer_ports = ports[:members], ports[members:]
        self.endpoints = [f"http://127.0.0.1:{port}" for port in client_ports]
        initial = ",".join(f"m{index}=http://127.0.0.1:{port}" for index, port in enumerate(peer_ports))
        self.commands = [
            [binary, "--name", f"m{index}", "--data-dir", os.fspath(directory / f"m{index}"),
             "--listen-client-urls", self.endpoints[index], "--advertise-client-urls", self.endpoints[index],
             "--listen-peer-urls", f"http://127.0.0.1:{peer_ports[index]}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_ports[index]}",
             "--initial-cluster", initial, "--initial-cluster-state", "new", "--initial-cluster-token", CLUSTER_TOKEN]
            for index in range(members)
        ]
        self.processes: list[subprocess.Popen] = []

    def __enter__(self) -> EtcdCluster:
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            for index, command in enumerate(self.commands):
                with open(self.directory / f"m{index}.log", "w") as log:
                    self.processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                                           stdin=subprocess.DEVNULL))
            self._wait_until_serving()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + ETCD_START_TIMEOUT
        while True:
            for process, command in zip(self.processes, self.commands):
                if process.poll() is not None:
                    log = self.directory / f"{command[2]}.log"
                    last = log.read_text().strip().splitlines()[-1:] if log.exists() else []
                    raise RuntimeError(f"etcd member {command[2]} exited with status {process.returncode}: "
                                       f"{last[0] if last else 'no output'}")
            try:
                with EtcdStore(self.endpoints) as store:
                    store.put_now("raftline-bench-ready", True)
                return
            except (OSError, Unavailable):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"etcd did not serve within {ETCD_START_TIMEOUT:g} s") from None
                time.sleep(0.2)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=ETCD_STOP_GRACE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class EtcdStore:
    """The bench's view of a store, on etcd (see the module docstring). Not thread-safe."""

    total_hops = 0  # raftline's clerk counts critical-path messages; etcd has no such count

    def __init__(self, endpoints: list[str]):
        host, port = endpoints[0].removeprefix("http://").rsplit(":", 1)
        self._connection = http.client.HTTPConnection(host, int(port), timeout=REQUEST_TIMEOUT)

    def __enter__(self) -> EtcdStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._connection.close()

    def call(self, path: str, body: dict) -> dict:
        try:
            self._connection.request("POST", f"/v3/{path}", json.dumps(body), {"Content-Type": "application/json"})
            response = self._connection.getresponse()
            answer = json.loads(response.read() or b"{}")
        except (OSError, http.client.HTTPException, ValueError) as error:
            self._connection.close()  # the next request opens a new connection
            raise Unavailable(f"etcd: {error}") from None
        if response.status != 200:
            raise Unavailable(f"etcd: {response.status} {answer.get('error') or answer.get('message', '')}")
        return answer

    def transaction(self) -> EtcdTransaction:
        return EtcdTransaction(self)

    def get(self, key: str) -> Any:
        return self.transaction().get(key)

    def put_now(self, key: str, value: Any) -> None:
        self.call("kv/put", {"key": _b64(key), "value": _b64(json.dumps(value))})


class EtcdTransaction:
    """Reads remembered with their mod_revision, writes buffered until commit."""

    def __init__(self, store: EtcdStore):
        self._store = store
        self._read: dict[str, tuple[Any, int]] = {}  # key -> (value, mod_revision; 0: absent)
        self._writes: dict[str, Any] = {}

    def __enter__(self) -> EtcdTransaction:
        return self

    def __exit__(self, kind, *exc) -> None:
        if kind is None:
            self.commit()

    def get(self, key: str) -> Any:
        return self.get_many([key])[key]

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        wanted = [key for key in dict.fromkeys(keys) if key not in self._writes and key not in self._read]
        if len(wanted) == 1:
            self._remember(wanted[0], self._store.call("kv/range", {"key": _b64(wanted[0])}))
        elif wanted:
            answer = self._store.call("kv/txn", {"success": [{"request_range": {"key": _b64(key)}}
                                                              for key in wanted]})
            for key, response in zip(wanted, answer.get("responses", [])):
                self._remember(key, response.get("response_range", {}))
        return {key: self._writes[key] if key in self._writes else self._read[key][0] for key in keys}

    def _remember(self, key: str, answer: dict) -> None:
        kvs = answer.get("kvs") or []
        if kvs:
            value = json.loads(base64.b64decode(kvs[0].get("value", "")) or b"null")
            self._read[key] = (value, int(kvs[0]["mod_revision"]))
        else:
            self._read[key] = (None, 0)

    def put(self, key: str, value: Any) -> None:
        self._writes[key] = value

    def commit(self) -> None:
        if not self._writes:
            return
        puts = [{"request_put": {"key": _b64(key), "value": _b64(json.dumps(value))}}
                for key, value in self._writes.items()]
        if not self._read and len(puts) == 1:
            self._store.call("kv/put", puts[0]["request_put"])
            return
        compare = [{"key": _b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(revision)}
                   for key, (_, revision) in self._read.items()]
        if not self._store.call("kv/txn", {"compare": compare, "success": puts}).get("succeeded"):
            raise TransactionAborted(f"etcd: a key read changed before commit ({', '.join(self._read)})")
