"""Load and validate a raftline topology: which clusters exist, how big they
are, and the settings every process runs with.

Rules:
- A topology is one YAML mapping. `clusters` is required; every other key
  has the default of the embedded default_topology.yaml, and the dataclass defaults
  below are the single source of those defaults.
- Everything is checked and nothing is ignored: YAML syntax, unknown and
  duplicate keys, types, ranges and enum values. YAML 1.1 spellings are not
  guessed at: `"50"` is a string, not a number.
- Every refusal is ONE TopologyError naming the file, the key path and the
  YAML line; for a missing key, the line of the mapping that lacks it.
- Relative paths resolve against the directory of the topology file.
- Multi-host: the first entry of `hosts:` is the convention leader, where
  `raftline start` runs; every other host joins it with `raftline join`.
  With `hosts:`, clusters spread over hosts by default, and a cluster with
  more replicas than hosts is refused; the coordinator's replicas spread
  over the hosts in turn, the first host first (`coordinator_placement`).
- Parsing reads no clock and imports no Thespian; `load_topology` only reads
  the file it is given.

Invariants of a Topology built here: at least one cluster; cluster names
match CLUSTER_NAME and are unique, so replica ids `<cluster>-r<i>` are
unambiguous; 1 <= replicas <= MAX_REPLICAS; clusters <= slots <= MAX_SLOTS;
1 <= heartbeat_ticks < election_min < election_max; a cluster with
spread "hosts" has at most as many replicas as there are hosts.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NoReturn, TypeVar

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

CLUSTER_NAME = re.compile(r"[a-z][a-z0-9_]*")
"""Cluster names (full match). No `-`, so `<cluster>-r<i>` parses back unambiguously."""
HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
BASES = ("raftlineTCPBase",)
"""The one Thespian base raftline runs on: Thespian's multiprocess machinery
(each actor in its own process, docs/DESIGN.md section 1) on raftline's own
authenticated transport (section 13)."""
REFUSED_BASES = {
    "multiprocTCPBase": "Thespian's stock TCP base listens on every interface and unpickles unauthenticated "
                        "messages; raftline runs on its own raftlineTCPBase",
    "multiprocUDPBase": "it loses messages under bursts and listens unauthenticated",
    "multiprocQueueBase": "it cannot be attached to from outside",
}
READ_FROM = ("leader", "follower")
ENGINES = ("sqlite", "memory")
SPREADS = ("none", "hosts")
ON_HOST_LOSS = ("report", "replace")
MAX_PORT = 65535
MAX_SLOTS = 4096
MAX_REPLICAS = 9

_REPLICA_ID = re.compile(r"([a-z][a-z0-9_]*)-r(0|[1-9][0-9]*)")


class TopologyError(ValueError):
    """The topology is wrong and the user must fix it.

    Attributes:
        source: the file as the user named it, or "<string>".
        line: 1-based line in the YAML, or None when no line applies.
        key: the dotted key path, e.g. "raft.election_ticks"; "" for the whole file.
        problem: what is wrong, in words.
    """

    def __init__(self, problem: str, *, source: str, line: int | None = None, key: str = ""):
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")
        self.source = source
        self.line = line
        self.key = key
        self.problem = problem


def replica_id(cluster: str, index: int) -> str:
    """The id of replica `index` of `cluster`: replica_id("c1", 0) == "c1-r0"."""
    return f"{cluster}-r{index}"


def parse_replica_id(rid: str) -> tuple[str, int]:
    """Split "c1-r0" into ("c1", 0); ValueError when `rid` is not a replica id."""
    match = _REPLICA_ID.fullmatch(rid)
    if match is None:
        raise ValueError(f"not a replica id (expected <cluster>-r<index>, e.g. c1-r0): {rid!r}")
    return match.group(1), int(match.group(2))


@dataclass(frozen=True, kw_only=True, slots=True)
class HostSpec:
    """A machine of a multi-host deployment.

    Fields:
        name: unique short name of the host; its actor system's `node` capability.
        address: host name or IP address the other hosts reach it at; its
            actor system advertises exactly this (THESPIAN_BASE_IPADDR).
        admin_port: its actor-system admin port (defaults to the top-level admin_port).
    """

    name: str
    address: str
    admin_port: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ClusterSpec:
    """One Raft cluster as the deployment starts it.

    Fields:
        name: matches CLUSTER_NAME, e.g. "c1".
        replicas: how many replicas it starts with, 1..MAX_REPLICAS.
        spread: "none" (every replica on the first host) or "hosts" (no two
            replicas on one host; the default when the topology has hosts).
    """

    name: str
    replicas: int
    spread: str = "none"

    @property
    def replica_ids(self) -> tuple[str, ...]:
        return tuple(replica_id(self.name, index) for index in range(self.replicas))


@dataclass(frozen=True, kw_only=True, slots=True)
class RaftSettings:
    """Raft timing, in logical ticks (docs/DESIGN.md section 2). From the `raft` section.

    Fields:
        tick_ms: milliseconds of real time per logical tick.
        heartbeat_ticks: a leader sends a heartbeat every this many ticks.
        election_min, election_max: `election_ticks: [min, max]`; the election
            timeout is drawn from this range of ticks.
        snapshot_entries: snapshot and compact once the applied log grows past
            this many entries.
        lease_reads: a leader holding a lease answers gets and read-only
            transactions' checks without a log entry (docs/DESIGN.md section 4).
    """

    tick_ms: int = 50
    heartbeat_ticks: int = 2
    election_min: int = 6
    election_max: int = 12
    snapshot_entries: int = 10_000
    lease_reads: bool = True


@dataclass(frozen=True, kw_only=True, slots=True)
class TransactionSettings:
    """From the `transactions` section (docs/DESIGN.md section 4).

    Fields:
        prepare_timeout_ms: a participant asks the primary about a transaction
            it has held prepared this long.
        read_from: "leader", or "follower" (stale reads are caught by validation).
        max_clock_offset_ms: the most any two hosts' clocks may differ; a
            clerk holds each commit's answer until its clock has passed the
            commit's timestamp by this much (docs/DESIGN.md section 4,
            "Timestamps"). 0 on one host, which has one clock; 10 by default
            with `hosts:`.
    """

    prepare_timeout_ms: int = 2000
    read_from: str = "leader"
    max_clock_offset_ms: int = 0


HOSTS_CLOCK_OFFSET_MS = 10
"""`max_clock_offset_ms` when the topology lists hosts and does not say."""


@dataclass(frozen=True, kw_only=True, slots=True)
class StorageSettings:
    """From the `storage` section (docs/DESIGN.md section 2).

    Fields:
        engine: "sqlite" (durable) or "memory" (lost on restart; for tests).
        fsync: whether SQLite syncs each write transaction to disk.
    """

    engine: str = "sqlite"
    fsync: bool = True


@dataclass(frozen=True, kw_only=True, slots=True)
class PlacementSettings:
    """What the coordinator does when a host is lost. From the `placement` section.

    Fields:
        on_host_loss: "report" (its replicas show as down until the host
            joins again) or "replace" (each of its replicas is replaced by a
            new one on a surviving host, through add-replica then remove-replica).
        replace_after_ms: how long a host must stay lost before its replicas
            are replaced (a host that is only restarting should come back instead).
    """

    on_host_loss: str = "report"
    replace_after_ms: int = 10_000


@dataclass(frozen=True, kw_only=True, slots=True)
class CoordinatorSettings:
    """From the `coordinator` section (docs/DESIGN.md section 5, "The coordinator group").

    Fields:
        replicas: coordinator replicas, agreeing through Raft; 3 survive the
            death of any one, 1 survives none.
    """

    replicas: int = 3

    @property
    def replica_ids(self) -> tuple[str, ...]:
        return tuple(coordinator_replica_id(index) for index in range(self.replicas))


def coordinator_replica_id(index: int) -> str:
    """The id of coordinator replica `index`: its data directory's name, its process title."""
    return f"coordinator-{index}"


MAX_COORDINATOR_REPLICAS = 7


@dataclass(frozen=True, kw_only=True, slots=True)
class Topology:
    """A validated deployment description.

    Fields:
        clusters: the clusters to start, in file order.
        source: the file it came from, as named by the user, or "<string>".
        admin_port: the coordinator's actor-system admin port on loopback;
            0 means a free port chosen at start.
        base: the Thespian system base, one of BASES.
        data_dir: one directory per replica and one for the coordinator live
            under it; absolute when loaded from a file.
        slots: how many slots the keyspace is hashed into; fixed for the life
            of the deployment.
        hosts: the machines of a multi-host deployment, the convention leader
            first; empty for one host.
        coordinator, raft, transactions, storage, placement: the sections of the same names.
    """

    clusters: tuple[ClusterSpec, ...]
    source: str = "<string>"
    admin_port: int = 19000
    base: str = "raftlineTCPBase"
    data_dir: Path = Path("data")
    slots: int = 64
    hosts: tuple[HostSpec, ...] = ()
    coordinator: CoordinatorSettings = CoordinatorSettings()
    raft: RaftSettings = RaftSettings()
    transactions: TransactionSettings = TransactionSettings()
    storage: StorageSettings = StorageSettings()
    placement: PlacementSettings = PlacementSettings()

    @property
    def leader_host(self) -> HostSpec | None:
        """The convention leader's host (the first one), or None for one host."""
        return self.hosts[0] if self.hosts else None

    @property
    def system_admin_port(self) -> int:
        """Where the system is started and reached: the convention leader's
        admin port on several hosts (it may differ from the top-level one)."""
        return self.leader_host.admin_port if self.leader_host else self.admin_port

    def host(self, name: str) -> HostSpec:
        """The host called `name`; KeyError when there is none."""
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(f"no host {name!r} in {self.source}")

    @property
    def cluster_names(self) -> tuple[str, ...]:
        return tuple(cluster.name for cluster in self.clusters)

    def cluster(self, name: str) -> ClusterSpec:
        """The cluster called `name`; KeyError when there is none."""
        for cluster in self.clusters:
            if cluster.name == name:
                return cluster
        raise KeyError(f"no cluster {name!r} in {self.source}")

    def members(self) -> dict[str, tuple[str, ...]]:
        """Cluster name -> its initial replica ids, in file order (the shard map's input)."""
        return {cluster.name: cluster.replica_ids for cluster in self.clusters}

    def coordinator_placement(self, kept_on_first_host: Iterable[str] = ()) -> dict[str, str]:
        """Coordinator replica id -> the name of its host ("" on one host).
        With `hosts:`, replica i goes to host i mod len(hosts), so 3 replicas
        on 3 hosts are one per host and the group survives the loss of any
        one host. A replica in `kept_on_first_host` (its data directory is
        there: an earlier version ran every replica on the first host) stays
        there, since a replica that forgot its log and votes must never vote."""
        if not self.hosts:
            return dict.fromkeys(self.coordinator.replica_ids, "")
        kept = set(kept_on_first_host)
        return {replica: self.hosts[0].name if replica in kept else self.hosts[index % len(self.hosts)].name
                for index, replica in enumerate(self.coordinator.replica_ids)}


DEFAULT_TOPOLOGY_FILE = Path(__file__).with_name("default_topology.yaml")
"""The embedded default deployment (package data): 3 clusters x 3 replicas on loopback."""


def topology_file(named: str | os.PathLike[str] | None) -> Path:
    """The topology a command uses: the one named (-t), else ./topology.yaml
    when there is one, else the embedded default."""
    if named is not None:
        return Path(named)
    local = Path("topology.yaml")
    return local if local.exists() else DEFAULT_TOPOLOGY_FILE


def load_topology(path: str | os.PathLike[str]) -> Topology:
    """Read and validate the topology file at `path`; relative paths inside it
    resolve against the file's directory, and for the embedded default against
    the current directory (its data lands where raftline runs, never in the
    installed package). Raises TopologyError."""
    source = os.fspath(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise TopologyError("no such file (name an existing topology with -t FILE, or a running system with"
                            " --admin HOST:PORT)", source=source) from None
    except IsADirectoryError:
        raise TopologyError("is a directory, not a topology file", source=source) from None
    except OSError as error:
        raise TopologyError(f"cannot read: {error.strerror or error}", source=source) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise TopologyError("not UTF-8 text", source=source, line=line) from None
    embedded = Path(path).resolve() == DEFAULT_TOPOLOGY_FILE.resolve()
    return parse_topology(text, source, base_dir=Path.cwd() if embedded else Path(path).absolute().parent)


def parse_topology(text: str, source: str = "<string>", *, base_dir: Path | None = None) -> Topology:
    """Validate topology YAML `text`. `source` names it in errors; a relative
    data_dir resolves against `base_dir`, or stays relative when it is None.
    Raises TopologyError."""
    return _Parser(source, base_dir).topology(text)


_TAG_INT = "tag:yaml.org,2002:int"
_TAG_BOOL = "tag:yaml.org,2002:bool"
_TAG_STR = "tag:yaml.org,2002:str"
_TAG_NULL = "tag:yaml.org,2002:null"
_KINDS = {
    _TAG_INT: "an integer",
    _TAG_BOOL: "a boolean",
    _TAG_STR: "a string",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:timestamp": "a date",
}
_T = TypeVar("_T")


def _show(node: Node, limit: int = 40) -> str:
    """`node` as the user wrote it, shortened, for "got ..." in messages."""
    if isinstance(node, ScalarNode):
        shown = repr(node.value) if node.tag == _TAG_STR else node.value
    elif isinstance(node, SequenceNode):
        shown = "[" + ", ".join(_show(item, limit) for item in node.value) + "]"
    else:
        shown = "{" + ", ".join(f"{_show(k, limit)}: {_show(v, limit)}" for k, v in node.value) + "}"
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _describe(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return f"a list {_show(node)}"
    if node.tag == _TAG_NULL:
        return "nothing (null)"
    return f"{_KINDS.get(node.tag, f'a value tagged {node.tag}')} {_show(node)}"


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Section:
    """One YAML mapping with its key path. Unknown and duplicate keys are
    refused on construction; values are read on demand by typed readers."""

    def __init__(self, parser: _Parser, node: Node, path: str, line: int, allowed: tuple[str, ...]):
        self.parser = parser
        self.path = path
        # A missing key is reported on the line that introduced this mapping.
        self.line = line
        entries = parser.entries(node, path)
        for key, (key_node, _) in entries.items():
            if key not in allowed:
                parser.fail_unknown(key, _join(path, key), key_node, allowed)
        self.key_nodes = {key: key_node for key, (key_node, _) in entries.items()}
        self.values = {key: value_node for key, (_, value_node) in entries.items()}

    def get(self, key: str, default: _T, read: Callable[[Node, str], _T]) -> _T:
        node = self.values.get(key)
        return default if node is None else read(node, _join(self.path, key))

    def require(self, key: str, read: Callable[[Node, str], _T]) -> _T:
        node = self.values.get(key)
        if node is None:
            self.parser.fail(self.line, _join(self.path, key), "missing; this key is required")
        return read(node, _join(self.path, key))

    def section(self, key: str, allowed: tuple[str, ...]) -> _Section | None:
        node = self.values.get(key)
        if node is None:
            return None
        return _Section(self.parser, node, _join(self.path, key), _line(self.key_nodes[key]), allowed)


class _Parser:
    def __init__(self, source: str, base_dir: Path | None):
        self.source = source
        self.base_dir = base_dir
        self.constructor = SafeConstructor()

    def fail(self, where: Node | int, key: str, problem: str) -> NoReturn:
        line = where if isinstance(where, int) else _line(where)
        raise TopologyError(problem, source=self.source, line=line, key=key)

    def fail_unknown(self, word: str, key: str, node: Node, known: tuple[str, ...]) -> NoReturn:
        close = difflib.get_close_matches(word, known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "expected one of " + ", ".join(known)
        self.fail(node, key, f"unknown key; {hint}")

    # -- structure ---------------------------------------------------------

    def topology(self, text: str) -> Topology:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as error:
            line = error.problem_mark.line + 1 if error.problem_mark else None
            context = ""
            if error.context and error.context_mark:
                context = f" ({error.context}, from line {error.context_mark.line + 1})"
            elif error.context:
                context = f" ({error.context})"
            problem = f"invalid YAML: {error.problem}{context}"
            raise TopologyError(problem, source=self.source, line=line) from None
        except yaml.reader.ReaderError as error:
            line = text.count("\n", 0, error.position) + 1
            raise TopologyError(f"invalid YAML: {error.reason}", source=self.source, line=line) from None
        if root is None:
            raise TopologyError("the file is empty; a topology needs at least `clusters`",
                                source=self.source, line=1)
        top = _Section(self, root, "", _line(root), _TOP_KEYS)
        admin_port = top.get("admin_port", _DEFAULT.admin_port, self.port)
        hosts = top.get("hosts", (), lambda node, key: self.hosts(node, key, admin_port))
        clusters = top.require("clusters", lambda node, key: self.clusters(node, key, len(hosts)))
        slots = top.get("slots", _DEFAULT.slots, self.slots)
        if slots < len(clusters):
            self.fail(top.values["slots"], "slots",
                      f"{slots} slots cannot give each of the {len(clusters)} clusters one; "
                      f"expected at least {len(clusters)}")
        return Topology(
            clusters=clusters,
            source=self.source,
            admin_port=admin_port,
            base=top.get("base", _DEFAULT.base, self.base),
            data_dir=top.get("data_dir", self.resolve(_DEFAULT.data_dir), self.directory),
            slots=slots,
            hosts=hosts,
            coordinator=self.coordinator(top.section("coordinator", _COORDINATOR_KEYS)),
            raft=self.raft(top.section("raft", _RAFT_KEYS)),
            transactions=self.transactions(top.section("transactions", _TRANSACTION_KEYS), bool(hosts)),
            storage=self.storage(top.section("storage", _STORAGE_KEYS)),
            placement=self.placement(top.section("placement", _PLACEMENT_KEYS), bool(hosts)),
        )

    def entries(self, node: Node, path: str) -> dict[str, tuple[ScalarNode, Node]]:
        """The mapping `node` as key -> (key node, value node); keys must be unique strings."""
        if not isinstance(node, MappingNode):
            self.fail(node, path, f"expected {'a mapping' if path else 'a mapping at the top level'}, "
                                  f"got {_describe(node)}")
        entries: dict[str, tuple[ScalarNode, Node]] = {}
        for key_node, value_node in node.value:
            if not (isinstance(key_node, ScalarNode) and key_node.tag == _TAG_STR):
                self.fail(key_node, path, f"keys must be strings, got {_describe(key_node)} (quote it)")
            key = key_node.value
            if key in entries:
                first = _line(entries[key][0])
                self.fail(key_node, _join(path, key), f"duplicate key (first on line {first})")
            entries[key] = (key_node, value_node)
        return entries

    def clusters(self, node: Node, path: str, host_count: int) -> tuple[ClusterSpec, ...]:
        entries = self.entries(node, path)
        if not entries:
            self.fail(node, path, "no clusters; at least one is required, e.g. `c1: {replicas: 3}`")
        clusters = []
        for name, (name_node, cluster_node) in entries.items():
            key = _join(path, name)
            if not CLUSTER_NAME.fullmatch(name):
                self.fail(name_node, key,
                          "invalid cluster name; expected a lowercase letter, then lowercase letters, "
                          "digits or _ (e.g. c1)")
            section = _Section(self, cluster_node, key, _line(name_node), _CLUSTER_KEYS)
            replicas = section.require("replicas", lambda n, k: self.integer(n, k, 1, MAX_REPLICAS))
            default_spread = "hosts" if host_count else "none"
            spread = section.get("spread", default_spread, lambda n, k: self.choice(n, k, SPREADS))
            if spread == "hosts" and not host_count:
                self.fail(section.values["spread"], f"{key}.spread",
                          "spread: hosts needs a top-level `hosts:` list")
            if spread == "hosts" and replicas > host_count:
                # No two replicas of a cluster on one host: losing a host must not lose a majority.
                how = "spread: hosts" if "spread" in section.values else "spread: hosts (the default with hosts:)"
                self.fail(section.values["replicas"], f"{key}.replicas",
                          f"{replicas} replicas with {how} need {replicas} hosts, but `hosts:` lists "
                          f"{host_count}; add hosts, lower replicas, or set spread: none")
            clusters.append(ClusterSpec(name=name, replicas=replicas, spread=spread))
        return tuple(clusters)

    def hosts(self, node: Node, path: str, default_port: int) -> tuple[HostSpec, ...]:
        if not isinstance(node, SequenceNode):
            self.fail(node, path, f"expected a list of hosts, got {_describe(node)}")
        hosts: list[HostSpec] = []
        for index, host_node in enumerate(node.value):
            key = f"{path}[{index}]"
            section = _Section(self, host_node, key, _line(host_node), _HOST_KEYS)
            host = HostSpec(
                name=section.require("name", self.host_name),
                address=section.require("address", self.text),
                admin_port=section.get("admin_port", default_port, self.port),
            )
            if host.admin_port == 0:
                # Other hosts must know where to reach it: "a free port" cannot be looked up remotely.
                self.fail(section.values.get("admin_port", host_node), f"{key}.admin_port",
                          "a host needs a fixed admin port, not 0")
            for earlier in hosts:
                if earlier.name == host.name:
                    self.fail(section.values["name"], f"{key}.name", f"duplicate host name {host.name!r}")
                if (earlier.address, earlier.admin_port) == (host.address, host.admin_port):
                    self.fail(host_node, key,
                              f"same address and admin_port as host {earlier.name!r}")
            hosts.append(host)
        return tuple(hosts)

    def raft(self, section: _Section | None) -> RaftSettings:
        default = RaftSettings()
        if section is None:
            return default
        positive = self.positive
        election = section.get("election_ticks", (default.election_min, default.election_max), self.election)
        heartbeat = section.get("heartbeat_ticks", default.heartbeat_ticks, positive)
        if heartbeat >= election[0]:
            # Followers must hear a heartbeat before any of them times out.
            if "heartbeat_ticks" in section.values:
                self.fail(section.values["heartbeat_ticks"], "raft.heartbeat_ticks",
                          f"must be below the election timeout minimum ({election[0]} ticks), "
                          f"got {heartbeat}")
            self.fail(section.values["election_ticks"], "raft.election_ticks",
                      f"min must be above heartbeat_ticks ({heartbeat}), got {election[0]}")
        return RaftSettings(
            tick_ms=section.get("tick_ms", default.tick_ms, positive),
            heartbeat_ticks=heartbeat,
            election_min=election[0],
            election_max=election[1],
            snapshot_entries=section.get("snapshot_entries", default.snapshot_entries, positive),
            lease_reads=section.get("lease_reads", default.lease_reads, self.boolean),
        )

    def coordinator(self, section: _Section | None) -> CoordinatorSettings:
        default = CoordinatorSettings()
        if section is None:
            return default
        return CoordinatorSettings(replicas=section.get(
            "replicas", default.replicas, lambda n, k: self.integer(n, k, 1, MAX_COORDINATOR_REPLICAS)))

    def transactions(self, section: _Section | None, have_hosts: bool) -> TransactionSettings:
        default = TransactionSettings(max_clock_offset_ms=HOSTS_CLOCK_OFFSET_MS if have_hosts else 0)
        if section is None:
            return default
        return TransactionSettings(
            prepare_timeout_ms=section.get("prepare_timeout_ms", default.prepare_timeout_ms, self.positive),
            read_from=section.get("read_from", default.read_from, lambda n, k: self.choice(n, k, READ_FROM)),
            max_clock_offset_ms=section.get("max_clock_offset_ms", default.max_clock_offset_ms,
                                            lambda n, k: self.integer(n, k, 0, 60_000)),
        )

    def storage(self, section: _Section | None) -> StorageSettings:
        default = StorageSettings()
        if section is None:
            return default
        return StorageSettings(
            engine=section.get("engine", default.engine, lambda n, k: self.choice(n, k, ENGINES)),
            fsync=section.get("fsync", default.fsync, self.boolean),
        )

    def placement(self, section: _Section | None, have_hosts: bool) -> PlacementSettings:
        default = PlacementSettings()
        if section is None:
            return default
        if not have_hosts:
            self.fail(section.line, "placement", "placement needs a top-level `hosts:` list")
        return PlacementSettings(
            on_host_loss=section.get("on_host_loss", default.on_host_loss,
                                     lambda n, k: self.choice(n, k, ON_HOST_LOSS)),
            replace_after_ms=section.get("replace_after_ms", default.replace_after_ms, self.positive),
        )

    # -- typed values --------------------------------------------------------

    def integer(self, node: Node, key: str, low: int, high: int | None = None, expected: str = "") -> int:
        if not expected:
            expected = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"
        if not (isinstance(node, ScalarNode) and node.tag == _TAG_INT):
            self.fail(node, key, f"expected {expected}, got {_describe(node)}")
        value = self.constructor.construct_object(node)
        if value < low or (high is not None and value > high):
            self.fail(node, key, f"expected {expected}, got {value}")
        return value

    def positive(self, node: Node, key: str) -> int:
        return self.integer(node, key, 1)

    def port(self, node: Node, key: str) -> int:
        return self.integer(node, key, 0, MAX_PORT, f"a port from 0 to {MAX_PORT} (0 = a free port)")

    def slots(self, node: Node, key: str) -> int:
        return self.integer(node, key, 1, MAX_SLOTS)

    def election(self, node: Node, key: str) -> tuple[int, int]:
        expected = "expected [min, max] with 1 <= min < max"
        items = node.value if isinstance(node, SequenceNode) else []
        if len(items) != 2 or not all(isinstance(n, ScalarNode) and n.tag == _TAG_INT for n in items):
            self.fail(node, key, f"{expected}, got {_show(node)}")
        low, high = (self.constructor.construct_object(n) for n in items)
        if not 1 <= low < high:
            self.fail(node, key, f"{expected}, got {_show(node)}")
        return low, high

    def boolean(self, node: Node, key: str) -> bool:
        if not (isinstance(node, ScalarNode) and node.tag == _TAG_BOOL):
            self.fail(node, key, f"expected true or false, got {_describe(node)}")
        return self.constructor.construct_object(node)

    def text(self, node: Node, key: str) -> str:
        if not (isinstance(node, ScalarNode) and node.tag == _TAG_STR and node.value.strip()):
            self.fail(node, key, f"expected a non-empty string, got {_describe(node)}")
        return node.value

    def choice(self, node: Node, key: str, options: tuple[str, ...]) -> str:
        expected = "expected " + " or ".join(options)
        if not (isinstance(node, ScalarNode) and node.tag == _TAG_STR):
            self.fail(node, key, f"{expected}, got {_describe(node)}")
        if node.value not in options:
            close = difflib.get_close_matches(node.value, options, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.fail(node, key, f"{expected}, got {node.value!r}{hint}")
        return node.value

    def base(self, node: Node, key: str) -> str:
        if isinstance(node, ScalarNode) and node.value in REFUSED_BASES:
            self.fail(node, key, f"expected {BASES[0]}, got {node.value!r}: {REFUSED_BASES[node.value]}")
        return self.choice(node, key, BASES)

    def host_name(self, node: Node, key: str) -> str:
        name = self.text(node, key)
        if not HOST_NAME.fullmatch(name):
            self.fail(node, key, "invalid host name; expected letters, digits, '.', '-' or '_'")
        return name

    def directory(self, node: Node, key: str) -> Path:
        return self.resolve(Path(self.text(node, key)))

    def resolve(self, path: Path) -> Path:
        path = path.expanduser()
        if path.is_absolute() or self.base_dir is None:
            return path
        return self.base_dir / path


_DEFAULT = Topology(clusters=())
_TOP_KEYS = (
    "admin_port", "base", "data_dir", "slots", "clusters", "hosts", "coordinator", "raft", "transactions",
    "storage", "placement")
_COORDINATOR_KEYS = ("replicas",)
_CLUSTER_KEYS = ("replicas", "spread")
_HOST_KEYS = ("name", "address", "admin_port")
_RAFT_KEYS = ("tick_ms", "heartbeat_ticks", "election_ticks", "snapshot_entries", "lease_reads")
_TRANSACTION_KEYS = ("prepare_timeout_ms", "read_from", "max_clock_offset_ms")
_STORAGE_KEYS = ("engine", "fsync")
_PLACEMENT_KEYS = ("on_host_loss", "replace_after_ms")
