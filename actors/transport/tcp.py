"""raftline's Thespian transport: persistent authenticated TCP connections
(docs/DESIGN.md section 13; the wire format is in `wire.py`).

Each process (admin, logger, actor, outside handle) has one transport. It
listens on its advertised address only (the admin also on loopback, where
the local tools reach it) and keeps one connection per receiver it sends
to, reused for every later message:

- A message is pickled when sent and queued on its receiver's `Channel`;
  frames queued while a handler runs go out with one `send()` per
  connection when control returns to the loop.
- The receiver acknowledges cumulatively, at most ACK_DELAY after a frame
  or at once after ACK_EVERY frames, and at once when its actor exits.
  A message's TransmitIntent completes when acknowledged.
- A connection lost with frames unacknowledged reconnects and sends them
  again; the receiver drops the ones it already delivered (same stream,
  same sequence numbers). A refused connection, or a receiver that turns
  out to be another process on the same port, makes them dead letters.
- One selector lives as long as the transport; registrations change only
  when sockets do.

Thespian's contract: the class is handed to children as the transport
type; `run` (from wakeupTransportBase) calls `_runWithExpiry`; intents are
completed through their callbacks; `TransmitOnly` runs return the number of
transmits still pending. Forked children close every inherited socket at
once (they never use them, and a copy would keep a dead parent's
connections open).
"""

from __future__ import annotations

import errno
import logging
import os
import pickle
import selectors
import socket
import weakref
from collections import OrderedDict, deque
from time import perf_counter

from thespian.actors import ActorAddress, ActorExitRequest, ActorSystemStartupFailure, WatchMessage
from thespian.system.addressManager import CannotPickleAddress
from thespian.system.messages.multiproc import ChildMayHaveDied
from thespian.system.transport import (
    ExternalInterfaceTransportInit,
    ReceiveEnvelope,
    SendStatus,
    Thespian__Run_Expired,
    Thespian__Run_HandlerResult,
    Thespian__Run_Terminated,
    Thespian__UpdateWork,
    TransmitOnly,
    TransportInit__Base,
)
from thespian.system.transport.asyncTransportBase import asyncTransportBase
from thespian.system.transport.IPBase import TCPv4ActorAddress, thisSystem
from thespian.system.transport.TCPTransport import TCPTransport
from thespian.system.transport.wakeupTransportBase import wakeupTransportBase
from thespian.system.utilis import thesplog

from actors.transport import SECRET_CAPABILITY, AuthenticationFailed, wire
from actors.transport.secret import SecretFileError, read_secret

LOOPBACK = "127.0.0.1"
ACK_DELAY = 0.002
ACK_EVERY = 32
CONNECT_TIMEOUT = 5.0
"""Seconds for a connection to be made and authenticated before it is retried."""
RETRY_FIRST, RETRY_MAX = 0.05, 2.0
IDLE_CLOSE = 120.0
"""An outbound connection with nothing to send or await for this long is closed."""
INBOUND_IDLE_CLOSE = 600.0
HOUSEKEEPING = 0.5
CLOSE_DRAIN = 1.0
"""Seconds a closing transport waits for its messages' acknowledgements."""
EXIT_DRAIN = 1.0
"""Seconds an exiting actor waits for its messages' acknowledgements."""
PEER_BACKLOG_BYTES = 64 * 1024 * 1024
"""Bytes queued or unacknowledged towards one receiver before new messages to
it fail: a frozen receiver must not exhaust the sender's memory."""
MAX_HANDSHAKING = 256
"""Unauthenticated inbound connections held at once; the oldest goes first."""
RECEIVE_BUFFER = 256 * 1024
DELIVERED_STREAMS = 4096
"""Closed streams whose last delivered frame is remembered, to drop resent duplicates."""
REFUSAL_LOG_PERIOD = 60.0


class UnsupportedCapability(ActorSystemStartupFailure):
    """A capability asks for a Thespian feature this transport does not offer
    (admin routing, outbound-only systems)."""


class RaftlineEndpoint(TransportInit__Base):
    """What a parent prepares for a child's transport (kept in memory across the fork)."""

    def __init__(self, instance, assigned, parent, admin, secret):
        self.args = (instance, assigned, parent, admin, secret)

    @property
    def addrInst(self):
        return self.args[0]


class ExternalCopy(TransportInit__Base):
    """An outside process's extra transport (`external_transport_clone`)."""

    def __init__(self, admin, secret):
        self.args = (admin, secret)


_LIVE: weakref.WeakSet = weakref.WeakSet()


def _forget_inherited() -> None:
    for transport in list(_LIVE):
        transport._forget_after_fork()


os.register_at_fork(after_in_child=_forget_inherited)


def _nodelay(sock: socket.socket) -> None:
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Connection:
    """A socket with its read buffer and unsent bytes."""

    __slots__ = ("sock", "buffer", "view", "filled", "out", "writing", "since")

    def __init__(self, sock: socket.socket, now: float, size: int):
        self.sock = sock
        self.buffer = bytearray(size)
        self.view = memoryview(self.buffer)
        self.filled = 0
        self.out = bytearray()
        self.writing = False
        self.since = now

    def fit(self, needed: int, usual: int) -> None:
        """Size the buffer for a frame of `needed` bytes (0: none pending):
        grown for an oversize frame, back to `usual` once it is read."""
        size = max(needed, usual)
        if size > len(self.buffer) or (self.filled == 0 and len(self.buffer) > usual):
            self.view.release()
            if size > len(self.buffer):
                self.buffer.extend(bytes(size - len(self.buffer)))
            else:
                del self.buffer[usual:]
            self.view = memoryview(self.buffer)

    def consume(self, upto: int) -> None:
        remaining = self.filled - upto
        if remaining:
            self.buffer[:remaining] = bytes(self.view[upto : self.filled])
        self.filled = remaining


def _receive(conn: _Connection) -> int | None:
    """Read what has arrived into `conn`'s buffer: the byte count, 0 if the
    peer closed or the connection broke, None if nothing is there yet."""
    try:
        received = conn.sock.recv_into(conn.view[conn.filled :])
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return 0
    conn.filled += received
    return received


def _send_queued(conn: _Connection) -> bool:
    """Write as much of `conn`'s queued bytes as the socket takes; False if the connection broke."""
    if conn.out:
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return False
        del conn.out[:sent]
    return True


class Channel:
    """Everything this process sends to one receiver's listener."""

    __slots__ = (
        "key", "target", "conn", "state", "stream", "next_seq", "unsent", "inflight", "backlog",
        "data_mac", "ack_mac", "acks_read", "nonce", "retry_at", "retries", "quiet_since", "overloaded",
        "silent_closes", "incarnation",
    )

    def __init__(self, key, target):
        self.key = key
        self.target = target
        self.conn: _Connection | None = None
        self.state = "idle"  # idle | connecting | handshake | open | waiting (to retry)
        self.stream = os.urandom(wire.STREAM_BYTES)
        self.next_seq = 1
        self.unsent: deque = deque()  # [seq, intent, payload]; seq 0 until written
        self.inflight: deque = deque()  # written, not yet acknowledged
        self.backlog = 0  # payload bytes in unsent and inflight
        self.data_mac = self.ack_mac = None
        self.acks_read = 0
        self.nonce = b""
        self.retry_at = 0.0
        self.retries = 0
        self.quiet_since = 0.0
        self.overloaded = False
        self.silent_closes = 0  # connections closed on our hello, in a row
        self.incarnation = None  # the receiving process's, once a handshake showed it

    def pending(self) -> int:
        return len(self.unsent) + len(self.inflight)


class Inbound:
    """One connection some sender opened to this process's listener."""

    __slots__ = (
        "conn", "state", "nonce_c", "nonce_s", "sender", "stream", "next_seq", "delivered", "acked",
        "data_mac", "ack_mac", "acks_sent", "peer", "ack_every",
    )

    def __init__(self, conn: _Connection, peer: str):
        self.conn = conn
        self.peer = peer
        self.state = "hello"  # hello | proof | open
        self.nonce_c = self.nonce_s = b""
        self.sender = None
        self.stream = b""
        self.next_seq = 0
        self.delivered = 0
        self.acked = 0
        self.data_mac = self.ack_mac = None
        self.acks_sent = 0
        self.ack_every = ACK_EVERY


class RaftlineTransport(asyncTransportBase, wakeupTransportBase):
    """Thespian transport with persistent, authenticated, acknowledged connections."""

    def __init__(self, initType, *args):
        super().__init__()
        self._external = False
        if isinstance(initType, ExternalInterfaceTransportInit):
            capabilities, _log_definitions, _concurrency = args
            for unsupported in ("Admin Routing", "Outbound Only"):
                if capabilities.get(unsupported):
                    raise UnsupportedCapability(f"raftline's transport does not support {unsupported!r}")
            self._secret = _secret_from(capabilities)
            self._adminAddr = TCPTransport.getAdminAddr(capabilities)
            self._parentAddr = None
            self._external = True
            conventions = TCPTransport.getConventionAddress(capabilities)
            template = TCPv4ActorAddress(None, 0, external=conventions[0] if conventions else self._adminAddr)
            is_admin = False
        elif isinstance(initType, RaftlineEndpoint):
            _instance, assigned, self._parentAddr, self._adminAddr, self._secret = initType.args
            is_admin = assigned == self._adminAddr
            template = (assigned.addressDetails if assigned else
                        TCPv4ActorAddress(None, 0, external=self._parentAddr or self._adminAddr or True))
        elif isinstance(initType, ExternalCopy):
            self._adminAddr, self._secret = initType.args
            self._parentAddr = None
            self._external = True
            template = TCPv4ActorAddress(None, 0, external=self._adminAddr)
            is_admin = False
        else:
            raise ActorSystemStartupFailure(f"raftline's transport cannot start from {type(initType).__name__}")
        self.txOnly = False
        host, port = template.sockname[:2]
        self._listeners = [self._listen(host, port)]
        port = self._listeners[0].getsockname()[1]
        if is_admin and host != LOOPBACK:
            self._listeners.append(self._listen(LOOPBACK, port))
        self.myAddress = ActorAddress(TCPv4ActorAddress(host, port, external=True))
        self._my_port = port
        self._selector = selectors.DefaultSelector()
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._wake_out.setblocking(False)
        self._selector.register(self._wake_in, selectors.EVENT_READ, (RaftlineTransport._on_wake, None))
        for listener in self._listeners:
            self._selector.register(listener, selectors.EVENT_READ, (RaftlineTransport._on_accept, listener))
        self._incarnation = os.urandom(wire.INCARNATION_BYTES)
        self._channels: dict = {}
        self._inbound: dict = {}  # socket -> Inbound
        self._open_streams: dict = {}  # stream -> Inbound
        self._delivered_streams: OrderedDict = OrderedDict()  # stream -> last delivered seq, closed streams
        self._envelopes: deque = deque()
        self._finished: list = []
        self._dirty: set = set()
        self._acks_owed: set = set()
        self._ack_deadline = None
        self._housekeeping_at = perf_counter() + HOUSEKEEPING
        self._watches: list = []
        self._watch_ready: list = []
        self._check_children = False
        self._shutdown_signalled = False
        self._aborting = None
        self._drain_until = None
        self._refusals_logged: dict = {}
        self._auth_failure = None
        self._closed = False
        _LIVE.add(self)

    # -- set-up ---------------------------------------------------------------------------------------------

    @staticmethod
    def _listen(host: str, port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((host, port))
        except OSError:
            listener.close()
            raise
        listener.listen(128)
        listener.setblocking(False)
        return listener

    getAdminAddr = staticmethod(TCPTransport.getAdminAddr)
    getAddressFromString = staticmethod(TCPTransport.getAddressFromString)
    getConventionAddress = staticmethod(TCPTransport.getConventionAddress)

    @staticmethod
    def probeAdmin(addr) -> bool:
        """Whether something already listens on the admin's address (Thespian then verifies it)."""
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(addr.addressDetails.sockname[:2])
            return False
        except OSError as error:
            return error.errno == errno.EADDRINUSE
        finally:
            probe.close()

    def external_transport_clone(self):
        return RaftlineTransport(ExternalCopy(self._adminAddr, self._secret))

    def prepEndpoint(self, assignedLocalAddr, capabilities):
        if isinstance(assignedLocalAddr.addressDetails, TCPv4ActorAddress):
            instance, assigned = None, assignedLocalAddr
        else:
            instance, assigned = assignedLocalAddr.addressDetails.addressInstanceNum, None
        return RaftlineEndpoint(instance, assigned, self.myAddress, self._adminAddr, self._secret)

    def connectEndpoint(self, endPoint):
        pass

    def protectedFileNumList(self):
        return [sock.fileno() for sock in self._sockets()] + [self._selector.fileno()]

    def childResetFileNumList(self):
        # Children close every inherited socket at fork (_forget_after_fork):
        # closing descriptor numbers later could hit ones reused by then.
        return []

    def _sockets(self):
        yield self._wake_in
        yield self._wake_out
        yield from self._listeners
        yield from self._inbound
        for channel in self._channels.values():
            if channel.conn is not None:
                yield channel.conn.sock

    def _forget_after_fork(self) -> None:
        """In a forked child: close the parent's sockets without shutting
        them down (the parent still uses them) and drop all state."""
        for sock in list(self._sockets()):
            sock.close()
        self._selector.close()
        self._channels, self._inbound, self._open_streams = {}, {}, {}
        self._envelopes, self._finished = deque(), []
        self._dirty, self._acks_owed = set(), set()
        self._closed = True
        _LIVE.discard(self)

    def close(self):
        if self._closed:
            return
        self._flush_acks(force=True)
        self._drain(CLOSE_DRAIN)
        for channel in list(self._channels.values()):
            self._fail(channel, SendStatus.Failed)
        self._complete_finished()
        for sock in list(self._sockets()):
            sock.close()
        self._selector.close()
        self._inbound, self._open_streams = {}, {}
        self._closed = True
        _LIVE.discard(self)

    def _drain(self, seconds: float) -> None:
        """Send what is queued and wait, up to `seconds`, for it to be
        acknowledged: a reply can overtake the acknowledgement of its request,
        and closing must not call a delivered message failed."""
        deadline = perf_counter() + seconds
        while self._pending_transmits() and not self._auth_failure:
            self._flush()
            remaining = deadline - perf_counter()
            if remaining <= 0:
                return
            self._dispatch(min(remaining, HOUSEKEEPING))
            self._housekeeping_if_due()

    def __del__(self):
        # Only the sockets: callbacks must not run from the garbage collector.
        if not getattr(self, "_closed", True):
            self._closed = True
            for sock in list(self._sockets()):
                sock.close()
            self._selector.close()

    # -- sending --------------------------------------------------------------------------------------------

    def scheduleTransmit(self, addressManager, transmitIntent, has_exclusive_flag=False):
        if addressManager:
            target, message = addressManager.prepMessageSend(transmitIntent.targetAddr, transmitIntent.message)
            try:
                dead = message == SendStatus.DeadTarget
            except Exception:
                dead = False
            if dead:
                # A dead letter or exit notice about a dead target: never resent (Thespian's rule).
                transmitIntent.tx_done(SendStatus.Sent)
                return
            if not target:
                raise CannotPickleAddress(transmitIntent.targetAddr)
            transmitIntent.changeTargetAddr(target)
            transmitIntent.changeMessage(message)
        message = transmitIntent.message
        if isinstance(message, Thespian__UpdateWork):
            transmitIntent.tx_done(SendStatus.Sent)
            return
        target = transmitIntent.targetAddr
        details = target.addressDetails
        if not isinstance(details, TCPv4ActorAddress):
            raise CannotPickleAddress(target)
        if details.sockname[1] == self._my_port and target == self.myAddress:
            self._envelopes.append(ReceiveEnvelope(self.myAddress, message))
            self._finished.append((transmitIntent, SendStatus.Sent))
            return
        payload = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        if len(payload) > wire.MAX_FRAME_BYTES:
            raise ValueError(f"a message of {len(payload)} bytes exceeds the transport's "
                             f"{wire.MAX_FRAME_BYTES}-byte limit")
        key = details.sockname[:2]
        channel = self._channels.get(key)
        if channel is None:
            channel = self._channels[key] = Channel(key, target)
        if channel.backlog + len(payload) > PEER_BACKLOG_BYTES:
            if not channel.overloaded:
                channel.overloaded = True
                thesplog("raftline transport: %s is not taking messages; dropping new ones to it",
                         target, level=logging.WARNING)
            self._finished.append((transmitIntent, SendStatus.Failed))
            return
        channel.unsent.append([0, transmitIntent, payload])
        channel.backlog += len(payload)
        if channel.state == "open":
            self._dirty.add(channel)
        elif channel.state == "idle":
            self._connect(channel)

    def _connect(self, channel: Channel) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        _nodelay(sock)
        now = perf_counter()
        outcome = sock.connect_ex(channel.key)
        if outcome not in (0, errno.EINPROGRESS):
            sock.close()
            self._connect_failed(channel, outcome)
            return
        channel.conn = _Connection(sock, now, 4096)
        channel.state = "connecting"
        channel.nonce = os.urandom(wire.NONCE_BYTES)
        channel.conn.writing = True
        self._selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE,
                                (RaftlineTransport._on_channel, channel))

    def _connect_failed(self, channel: Channel, code: int) -> None:
        if code == errno.ECONNREFUSED:
            # Nobody listens there: the receiver is dead; its messages are dead letters.
            self._fail(channel, SendStatus.DeadTarget)
            return
        self._retry_later(channel)

    def _retry_later(self, channel: Channel) -> None:
        self._drop_connection(channel)
        if not channel.pending():
            channel.state = "idle"
            return
        channel.state = "waiting"
        delay = min(RETRY_MAX, RETRY_FIRST * (2 ** channel.retries))
        channel.retries += 1
        channel.retry_at = perf_counter() + delay

    def _drop_connection(self, channel: Channel) -> None:
        conn = channel.conn
        if conn is None:
            return
        channel.conn = None
        self._dirty.discard(channel)
        try:
            self._selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        # Whatever was written and not acknowledged goes out again on the next connection.
        while channel.inflight:
            entry = channel.inflight.pop()
            channel.unsent.appendleft(entry)

    def _fail(self, channel: Channel, status) -> None:
        """End every message to `channel`'s receiver with `status` and forget the channel."""
        self._drop_connection(channel)
        for _seq, intent, _payload in channel.unsent:
            if intent is not None:
                self._finished.append((intent, status))
        channel.unsent.clear()
        channel.backlog = 0
        if self._channels.get(channel.key) is channel:
            del self._channels[channel.key]
        channel.state = "idle"

    def _on_channel(self, channel: Channel, mask: int) -> None:
        conn = channel.conn
        if conn is None:
            return
        if channel.state == "connecting":
            code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self._connect_failed(channel, code)
                return
            channel.state = "handshake"
            conn.out += wire.hello(channel.nonce)
            self._write(channel, conn)
            return
        if mask & selectors.EVENT_WRITE:
            self._write(channel, conn)
            if channel.conn is None:
                return
        if mask & selectors.EVENT_READ:
            self._read_channel(channel, conn)

    def _read_channel(self, channel: Channel, conn: _Connection) -> None:
        received = _receive(conn)
        if received is None:
            return
        if not received:
            self._connection_lost(channel)
            return
        if channel.state == "handshake":
            if conn.filled < wire.CHALLENGE_BYTES:
                return
            self._authenticated_by_receiver(channel, conn)
            return
        at = 0
        head_bytes = wire.FRAME_HEAD_BYTES
        acknowledged = 0
        while conn.filled - at >= head_bytes + wire.ACK.size:
            length, mac = wire.FRAME_HEAD.unpack_from(conn.buffer, at)
            payload = bytes(conn.buffer[at + head_bytes : at + head_bytes + wire.ACK.size])
            if length != wire.ACK.size or not channel.ack_mac.valid(channel.acks_read, payload, mac):
                self._refused(channel.key[0], "sent a forged or corrupt acknowledgement")
                self._connection_lost(channel)
                return
            channel.acks_read += 1
            acknowledged = wire.ACK.unpack_from(payload)[0]
            at += head_bytes + wire.ACK.size
        conn.consume(at)
        if acknowledged:
            self._acknowledged(channel, acknowledged)

    def _authenticated_by_receiver(self, channel: Channel, conn: _Connection) -> None:
        try:
            nonce_s, incarnation = wire.read_challenge(self._secret, channel.nonce, conn.buffer)
        except wire.ProtocolError:
            self._handshake_failed(channel, "does not speak raftline's transport (a stock Thespian base?)")
            return
        except wire.AuthenticationError:
            self._handshake_failed(channel, "holds a different deployment secret")
            return
        if channel.incarnation is not None and channel.incarnation != incarnation:
            # Another process took the port while this channel had messages for
            # the old one: they are dead letters. Later ones go to the new one.
            self._fail(channel, SendStatus.DeadTarget)
            return
        channel.incarnation = incarnation
        conn.consume(wire.CHALLENGE_BYTES)
        data_key, ack_key = wire.connection_keys(self._secret, channel.nonce, nonce_s)
        channel.data_mac, channel.ack_mac = wire.FrameMac(data_key), wire.FrameMac(ack_key)
        channel.acks_read = 0
        first = channel.unsent[0][0] if channel.unsent and channel.unsent[0][0] else channel.next_seq
        declared = wire.Proof(stream=channel.stream, first_seq=first, ack_at_once=self._external,
                              address=self._address_text())
        conn.out += wire.proof(self._secret, channel.nonce, nonce_s, declared)
        channel.state = "open"
        channel.retries = channel.silent_closes = 0
        channel.quiet_since = perf_counter()
        self._dirty.add(channel)

    def _address_text(self) -> str:
        host, port = self.myAddress.addressDetails.sockname[:2]
        return f"{host}:{port}"

    def _handshake_failed(self, channel: Channel, why: str) -> None:
        self._fail(channel, SendStatus.Failed)
        if self._external:
            # An outside process says so to its user, by exception, not in a log.
            self._auth_failure = AuthenticationFailed(f"the actor system at {channel.key[0]}:{channel.key[1]} {why}")
        else:
            self._refused(f"{channel.key[0]}:{channel.key[1]}", why)

    def _connection_lost(self, channel: Channel) -> None:
        if channel.state == "handshake" and channel.conn is not None and channel.conn.filled == 0:
            # Closed on our hello: twice in a row, the listener is not raftline's
            # transport; once may be a receiver that died meanwhile.
            channel.silent_closes += 1
            if channel.silent_closes >= 2:
                self._handshake_failed(channel, "does not speak raftline's transport (a stock Thespian base?)")
                return
        if channel.pending() and channel.retries == 0:
            self._drop_connection(channel)
            channel.retries = 1
            self._connect(channel)
            return
        self._retry_later(channel)

    def _acknowledged(self, channel: Channel, seq: int) -> None:
        inflight = channel.inflight
        while inflight and inflight[0][0] <= seq:
            _seq, intent, payload = inflight.popleft()
            channel.backlog -= len(payload)
            if intent is not None:
                self._finished.append((intent, SendStatus.Sent))
        channel.overloaded = False
        if not channel.pending():
            channel.quiet_since = perf_counter()

    def _write(self, channel: Channel, conn: _Connection) -> None:
        if not _send_queued(conn):
            self._connection_lost(channel)
            return
        self._want_write(conn, bool(conn.out), (RaftlineTransport._on_channel, channel))

    def _want_write(self, conn: _Connection, wanted: bool, data) -> None:
        if wanted != conn.writing:
            conn.writing = wanted
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if wanted else 0)
            self._selector.modify(conn.sock, events, data)

    def flush_now(self) -> None:
        """Write what the running handler queued so far, without waiting for it to return."""
        self._flush()

    def _flush(self) -> None:
        """Write what handlers queued: every frame for one receiver in one send()."""
        dirty, self._dirty = self._dirty, set()
        for channel in dirty:
            conn = channel.conn
            if channel.state != "open" or conn is None:
                continue
            out, mac = conn.out, channel.data_mac
            while channel.unsent:
                entry = channel.unsent.popleft()
                if not entry[0]:
                    entry[0] = channel.next_seq
                    channel.next_seq += 1
                payload = entry[2]
                out += mac.head(entry[0], payload)
                out += payload
                channel.inflight.append(entry)
            self._write(channel, conn)

    # -- receiving ------------------------------------------------------------------------------------------

    def _on_accept(self, listener: socket.socket, _mask: int) -> None:
        now = perf_counter()
        for _ in range(64):
            try:
                sock, (host, port) = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                thesplog("raftline transport: accept failed: %s", error, level=logging.WARNING)
                return
            _nodelay(sock)
            inbound = Inbound(_Connection(sock, now, RECEIVE_BUFFER), f"{host}:{port}")
            self._inbound[sock] = inbound
            self._selector.register(sock, selectors.EVENT_READ, (RaftlineTransport._on_inbound, inbound))
            self._limit_handshaking()

    def _limit_handshaking(self) -> None:
        handshaking = [inbound for inbound in self._inbound.values() if inbound.state != "open"]
        if len(handshaking) > MAX_HANDSHAKING:
            self._close_inbound(min(handshaking, key=lambda inbound: inbound.conn.since))

    def _on_inbound(self, inbound: Inbound, mask: int) -> None:
        conn = inbound.conn
        if mask & selectors.EVENT_WRITE:
            self._write_inbound(inbound)
            if inbound.conn.sock not in self._inbound:
                return
        if not mask & selectors.EVENT_READ:
            return
        received = _receive(conn)
        if received is None:
            return
        if not received:
            self._close_inbound(inbound)
            return
        if inbound.state != "open" and not self._inbound_handshake(inbound, conn):
            return
        self._read_frames(inbound, conn)

    def _inbound_handshake(self, inbound: Inbound, conn: _Connection) -> bool:
        """Advance the handshake with what has arrived; True once open."""
        try:
            if inbound.state == "hello":
                if conn.filled < wire.HELLO_BYTES:
                    return False
                inbound.nonce_c = wire.read_hello(conn.buffer)
                conn.consume(wire.HELLO_BYTES)
                inbound.nonce_s = os.urandom(wire.NONCE_BYTES)
                conn.out += wire.challenge(self._secret, inbound.nonce_c, inbound.nonce_s, self._incarnation)
                inbound.state = "proof"
                self._write_inbound(inbound)
            if conn.filled < wire.PROOF_HEAD_BYTES:
                return False
            length = wire.proof_length(conn.buffer)
            if conn.filled < length:
                return False
            declared = wire.read_proof(self._secret, inbound.nonce_c, inbound.nonce_s, conn.buffer)
            host, _, port = declared.address.rpartition(":")
            sender = ActorAddress(TCPv4ActorAddress(host, int(port), external=True))
        except wire.AuthenticationError:
            self._refused(inbound.peer, "holds a different deployment secret")
            self._close_inbound(inbound)
            return False
        except (wire.ProtocolError, ValueError, OSError):
            self._refused(inbound.peer, "does not speak raftline's transport (a stock Thespian base, or a stranger)")
            self._close_inbound(inbound)
            return False
        conn.consume(length)
        data_key, ack_key = wire.connection_keys(self._secret, inbound.nonce_c, inbound.nonce_s)
        inbound.data_mac, inbound.ack_mac = wire.FrameMac(data_key), wire.FrameMac(ack_key)
        inbound.sender = sender
        inbound.stream = declared.stream
        inbound.next_seq = declared.first_seq
        inbound.ack_every = 1 if declared.ack_at_once else ACK_EVERY
        delivered = self._delivered_streams.pop(declared.stream, 0)
        previous = self._open_streams.get(declared.stream)
        if previous is not None:
            delivered = max(delivered, previous.delivered)
            self._close_inbound(previous)
        inbound.delivered = max(delivered, declared.first_seq - 1)
        # Frames resent but delivered before are acknowledged again once read.
        inbound.acked = declared.first_seq - 1
        self._open_streams[declared.stream] = inbound
        inbound.state = "open"
        return True

    def _read_frames(self, inbound: Inbound, conn: _Connection) -> None:
        at, filled, buffer, view = 0, conn.filled, conn.buffer, conn.view
        head_bytes = wire.FRAME_HEAD_BYTES
        unpack_head = wire.FRAME_HEAD.unpack_from
        mac, sender, envelopes = inbound.data_mac, inbound.sender, self._envelopes
        needed = 0
        while filled - at >= head_bytes:
            length, tag = unpack_head(buffer, at)
            end = at + head_bytes + length
            if length > wire.MAX_FRAME_BYTES:
                self._refused(inbound.peer, f"sent a frame of {length} bytes")
                self._close_inbound(inbound)
                return
            if end > filled:
                needed = end - at
                break
            payload = view[at + head_bytes : end]
            seq = inbound.next_seq
            if not mac.valid(seq, payload, tag):
                payload.release()
                self._refused(inbound.peer, "sent a frame whose MAC is wrong")
                self._close_inbound(inbound)
                return
            inbound.next_seq = seq + 1
            if seq > inbound.delivered:
                inbound.delivered = seq
                try:
                    message = pickle.loads(payload)
                except Exception as error:  # an authenticated peer's message this process cannot load
                    thesplog("raftline transport: cannot load a message from %s: %r", sender, error,
                             level=logging.ERROR)
                else:
                    envelopes.append(ReceiveEnvelope(sender, message))
            payload.release()
            at = end
        conn.consume(at)
        conn.since = perf_counter()
        conn.fit(needed, RECEIVE_BUFFER)
        if inbound.delivered - inbound.acked >= inbound.ack_every:
            self._send_ack(inbound)
        elif inbound.delivered > inbound.acked:
            self._acks_owed.add(inbound)
            if self._ack_deadline is None:
                self._ack_deadline = perf_counter() + ACK_DELAY

    def _send_ack(self, inbound: Inbound) -> None:
        payload = wire.ACK.pack(inbound.delivered)
        conn = inbound.conn
        conn.out += inbound.ack_mac.head(inbound.acks_sent, payload)
        conn.out += payload
        inbound.acks_sent += 1
        inbound.acked = inbound.delivered
        self._acks_owed.discard(inbound)
        self._write_inbound(inbound)

    def _write_inbound(self, inbound: Inbound) -> None:
        conn = inbound.conn
        if not _send_queued(conn):
            self._close_inbound(inbound)
            return
        self._want_write(conn, bool(conn.out), (RaftlineTransport._on_inbound, inbound))

    def _flush_acks(self, force: bool = False) -> None:
        if not self._acks_owed:
            self._ack_deadline = None
            return
        if not force and perf_counter() < self._ack_deadline:
            return
        for inbound in list(self._acks_owed):
            if inbound.conn.sock in self._inbound:
                self._send_ack(inbound)
        self._acks_owed.clear()
        self._ack_deadline = None

    def _close_inbound(self, inbound: Inbound) -> None:
        sock = inbound.conn.sock
        if self._inbound.pop(sock, None) is None:
            return
        self._acks_owed.discard(inbound)
        if inbound.state == "open":
            if self._open_streams.get(inbound.stream) is inbound:
                del self._open_streams[inbound.stream]
            self._delivered_streams[inbound.stream] = inbound.delivered
            self._delivered_streams.move_to_end(inbound.stream)
            while len(self._delivered_streams) > DELIVERED_STREAMS:
                self._delivered_streams.popitem(last=False)
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()

    def _refused(self, peer: str, why: str) -> None:
        """Log a refused peer once per REFUSAL_LOG_PERIOD per host: a storm of
        bad connections must not become a storm of log lines."""
        host = peer.rpartition(":")[0] or peer
        now = perf_counter()
        if now - self._refusals_logged.get(host, -REFUSAL_LOG_PERIOD) >= REFUSAL_LOG_PERIOD:
            self._refusals_logged[host] = now
            # Looked up now: Thespian replaces the logging tree in actor processes.
            logging.getLogger("raftline.transport").warning("raftline transport at %s refused a connection from %s: the peer %s",
                        self._address_text(), peer, why)

    # -- the loop -------------------------------------------------------------------------------------------

    def _on_wake(self, _unused, _mask: int) -> None:
        try:
            while self._wake_in.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        if self._check_children:
            self._check_children = False
            self._envelopes.append(ReceiveEnvelope(self.myAddress, ChildMayHaveDied()))
        if self._shutdown_signalled:
            self._shutdown_signalled = False
            self._envelopes.append(ReceiveEnvelope(self.myAddress, ActorExitRequest()))

    def _on_watch(self, fileno: int, _mask: int) -> None:
        self._watch_ready.append(fileno)

    def interrupt_wait(self, signal_shutdown=False, check_children=False):
        # May run in a signal handler: set flags and poke the loop, nothing more.
        self._shutdown_signalled |= signal_shutdown
        self._check_children |= check_children
        try:
            self._wake_out.send(b"!")
        except OSError:
            pass

    def abort_run(self, drain=False):
        self._aborting = drain
        if drain and self._drain_until is None:
            self._drain_until = perf_counter() + EXIT_DRAIN
        self._flush_acks(force=True)

    def _awaited(self) -> int:
        """Transmits still worth waiting for: none once an exiting actor has
        waited EXIT_DRAIN (what it wrote reaches a live receiver all the same;
        a frozen one must not hold the exit up)."""
        if self._drain_until is not None and perf_counter() > self._drain_until:
            return 0
        return self._pending_transmits()

    def set_watch(self, watchlist):
        watchlist = list(watchlist or [])
        if watchlist == self._watches:
            return
        for fileno in self._watches:
            try:
                self._selector.unregister(fileno)
            except (KeyError, ValueError, OSError):
                pass
        self._watches = []
        for fileno in watchlist:
            try:
                self._selector.register(fileno, selectors.EVENT_READ, (RaftlineTransport._on_watch, fileno))
                self._watches.append(fileno)
            except (KeyError, ValueError, OSError) as error:
                thesplog("raftline transport: cannot watch %s: %s", fileno, error, level=logging.WARNING)

    def _pending_transmits(self) -> int:
        return sum(channel.pending() for channel in self._channels.values())

    def _complete_finished(self) -> bool:
        if not self._finished:
            return False
        while self._finished:
            finished, self._finished = self._finished, []
            for intent, status in finished:
                intent.tx_done(status)
        return True

    def _runWithExpiry(self, incomingHandler):
        self._aborting = None
        try:
            return self._loop(incomingHandler)
        finally:
            # Whoever called may not run the loop again soon (an outside
            # process between asks, an actor about to exit): what it owes goes now.
            self._flush()
            self._flush_acks(force=True)

    def _loop(self, incomingHandler):
        transmit_only = incomingHandler is TransmitOnly or isinstance(incomingHandler, TransmitOnly)
        envelopes = self._envelopes
        while True:
            if self._auth_failure is not None:
                failure, self._auth_failure = self._auth_failure, None
                raise failure
            completed = self._complete_finished()
            if self._aborting is not None and (not self._aborting or not self._awaited()):
                return Thespian__Run_Terminated()
            if transmit_only:
                if completed or not self._awaited():
                    return self._awaited()
            else:
                while envelopes:
                    envelope = envelopes.popleft()
                    if incomingHandler is None:
                        return envelope
                    result = Thespian__Run_HandlerResult(incomingHandler(envelope))
                    if not result:
                        return result
            self._flush()
            now = perf_counter()
            deadline = self.run_time._time_to_quit
            if deadline is not None and now >= deadline:
                return Thespian__Run_Expired()
            wake_at = self._housekeeping_at
            if self._ack_deadline is not None and self._ack_deadline < wake_at:
                wake_at = self._ack_deadline
            if deadline is not None and deadline < wake_at:
                wake_at = deadline
            timeout = 0 if (self._finished or (envelopes and not transmit_only)) else max(0.0, wake_at - now)
            self._dispatch(timeout)
            if self._watch_ready:
                self._envelopes.append(ReceiveEnvelope(self.myAddress, WatchMessage(self._watch_ready)))
                self._watch_ready = []
            self._housekeeping_if_due()

    def _dispatch(self, timeout: float) -> None:
        """Wait up to `timeout` for sockets, and hand each ready one to its handler."""
        for key, mask in self._selector.select(timeout):
            handler, subject = key.data
            handler(self, subject, mask)

    def _housekeeping_if_due(self) -> None:
        now = perf_counter()
        if self._ack_deadline is not None and now >= self._ack_deadline:
            self._flush_acks()
        if now >= self._housekeeping_at:
            self._housekeeping(now)

    def _housekeeping(self, now: float) -> None:
        self._housekeeping_at = now + HOUSEKEEPING
        for channel in list(self._channels.values()):
            self._expire_intents(channel)
            state = channel.state
            if state in ("connecting", "handshake") and now - channel.conn.since > CONNECT_TIMEOUT:
                thesplog("raftline transport: no connection to %s within %ss; retrying", channel.target,
                         CONNECT_TIMEOUT, level=logging.INFO)
                self._retry_later(channel)
            elif state == "waiting" and now >= channel.retry_at:
                self._connect(channel)
            elif state == "open" and not channel.pending() and now - channel.quiet_since > IDLE_CLOSE:
                self._drop_connection(channel)
                del self._channels[channel.key]
            elif state == "idle" and not channel.pending():
                del self._channels[channel.key]
        for inbound in list(self._inbound.values()):
            idle = now - inbound.conn.since
            if (inbound.state != "open" and idle > CONNECT_TIMEOUT) or idle > INBOUND_IDLE_CLOSE:
                self._close_inbound(inbound)

    def _expire_intents(self, channel: Channel) -> None:
        """Fail the intents whose time is up (Thespian's TransmitIntent limit).
        A frame already written stays, with no intent, so the sequence of
        frames on a reconnection has no gap."""
        for queue in (channel.unsent, channel.inflight):
            for entry in queue:
                intent = entry[1]
                if intent is not None and intent.expired():
                    self._finished.append((intent, SendStatus.Failed))
                    entry[1] = None
        kept = deque(entry for entry in channel.unsent if entry[1] is not None or entry[0])
        if len(kept) != len(channel.unsent):
            channel.backlog = sum(len(entry[2]) for entry in kept) + sum(len(e[2]) for e in channel.inflight)
            channel.unsent = kept

    # -- Thespian's bookkeeping -----------------------------------------------------------------------------

    def deadAddress(self, addressManager, childAddr):
        channel = self._channels.get(childAddr.addressDetails.sockname[:2]) \
            if isinstance(childAddr.addressDetails, TCPv4ActorAddress) else None
        if channel is not None:
            self._fail(channel, SendStatus.DeadTarget)
        super().deadAddress(addressManager, childAddr)

    def lostRemote(self, rmtaddr):
        for channel in list(self._channels.values()):
            if not channel.pending() and thisSystem.isSameSystem(channel.key, rmtaddr.addressDetails.sockname):
                self._fail(channel, SendStatus.Failed)

    def _updateStatusResponse(self, resp):
        for channel in self._channels.values():
            for _seq, intent, _payload in list(channel.inflight) + list(channel.unsent):
                if intent is not None:
                    resp.addPendingMessage(self.myAddress, channel.target, str(intent.message))
        for envelope in self._envelopes:
            resp.addReceivedMessage(envelope.sender, self.myAddress, str(envelope.message))
        wakeupTransportBase._updateStatusResponse(self, resp)


def _secret_from(capabilities: dict) -> bytes:
    path = capabilities.get(SECRET_CAPABILITY)
    if not path:
        raise ActorSystemStartupFailure(
            f"raftline's transport needs the deployment secret: give the capability {SECRET_CAPABILITY!r} "
            "(the secret file's path)")
    try:
        return read_secret(path)
    except SecretFileError as error:
        raise ActorSystemStartupFailure(str(error)) from None
