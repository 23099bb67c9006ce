"""RaftlineTransport's faults, driven in one process: two transports on
loopback, pumped in turn, plus raw sockets playing broken or hostile peers.
Delivery is exactly once and in order across lost connections; a dead
receiver's messages become dead letters; bad frames close their connection,
are logged once, and harm no one else."""

from __future__ import annotations

import logging
import os
import socket
import time
from datetime import timedelta

import pytest

from coordinator.admin import prepare_environment

prepare_environment()  # before thespian is imported

from thespian.actors import ActorAddress  # noqa: E402
from thespian.system.transport import (  # noqa: E402
    ExternalInterfaceTransportInit,
    ReceiveEnvelope,
    SendStatus,
    TransmitIntent,
)
from thespian.system.transport.IPBase import TCPv4ActorAddress  # noqa: E402

from actors.transport import (  # noqa: E402
    SECRET_CAPABILITY,
    AuthenticationFailed,
    create_secret,
    read_secret,
    tcp,
    wire,
)


@pytest.fixture
def secret(tmp_path):
    return create_secret(tmp_path / "secret")


@pytest.fixture
def make(secret):
    made = []

    def make_transport(secret_file=secret):
        transport = tcp.RaftlineTransport(ExternalInterfaceTransportInit(),
                                          {"Admin Port": 1, SECRET_CAPABILITY: str(secret_file)}, None, None)
        made.append(transport)
        return transport

    yield make_transport
    for transport in made:
        transport._closed or transport._forget_after_fork()


class Outcomes:
    """Every intent's completion status, by message."""

    def __init__(self):
        self.status = {}

    def intent(self, target, message, **options):
        return TransmitIntent(target, message, onSuccess=self._done, onError=self._done, **options)

    def _done(self, status, intent):
        self.status[intent.message] = status


def pump(transports, until, timeout=10.0):
    """Run each transport briefly in turn until `until()`; returns what each received."""
    received = {transport: [] for transport in transports}
    deadline = time.monotonic() + timeout
    while not until(received):
        assert time.monotonic() < deadline, "timed out"
        for transport in transports:
            got = transport.run(None, timedelta(milliseconds=5))
            while isinstance(got, ReceiveEnvelope):
                received[transport].append(got.message)
                got = transport.run(None, timedelta(0))
    return received


def test_a_thousand_messages_arrive_once_in_order_and_complete(make):
    sender, receiver = make(), make()
    outcomes = Outcomes()
    for number in range(1000):
        sender.scheduleTransmit(None, outcomes.intent(receiver.myAddress, number))
    got = pump([sender, receiver], lambda r: len(r[receiver]) == 1000 and len(outcomes.status) == 1000)
    assert got[receiver] == list(range(1000))
    assert set(outcomes.status.values()) == {SendStatus.Sent}


def test_a_message_larger_than_the_socket_buffers_arrives_whole(make):
    """Partial writes and reads: 8 MB cannot go out in one send()."""
    sender, receiver = make(), make()
    big = os.urandom(8 * 1024 * 1024)
    sender.scheduleTransmit(None, Outcomes().intent(receiver.myAddress, big))
    sender.scheduleTransmit(None, Outcomes().intent(receiver.myAddress, "after"))
    got = pump([sender, receiver], lambda r: len(r[receiver]) == 2)
    assert got[receiver] == [big, "after"]


def test_frames_delivered_but_unacknowledged_when_the_connection_drops_are_not_delivered_twice(make, monkeypatch):
    sender, receiver = make(), make()
    # The receiver reads and delivers, but its acknowledgements are lost.
    monkeypatch.setattr(tcp.RaftlineTransport, "_send_ack", lambda self, inbound: None)
    for number in range(5):
        sender.scheduleTransmit(None, Outcomes().intent(receiver.myAddress, number))
    got = pump([sender, receiver], lambda r: len(r[receiver]) == 5)
    assert got[receiver] == [0, 1, 2, 3, 4]
    monkeypatch.undo()
    outcomes = Outcomes()
    sender.scheduleTransmit(None, outcomes.intent(receiver.myAddress, 5))
    for inbound in list(receiver._inbound.values()):
        receiver._close_inbound(inbound)  # the sender resends 0..5 on a new connection
    more = pump([sender, receiver], lambda r: 5 in outcomes.status)
    assert more[receiver] == [5]
    assert outcomes.status[5] == SendStatus.Sent


def test_messages_to_a_port_where_nothing_listens_are_dead_letters(make):
    sender = make()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nowhere = ActorAddress(TCPv4ActorAddress("127.0.0.1", closed.getsockname()[1], external=True))
    outcomes = Outcomes()
    sender.scheduleTransmit(None, outcomes.intent(nowhere, "lost"))
    pump([sender], lambda r: "lost" in outcomes.status)
    assert outcomes.status["lost"] == SendStatus.DeadTarget


def test_messages_sent_as_the_receiver_dies_become_dead_letters(make):
    """kill -9 of the receiver: its sockets close without a word; everything
    written and unacknowledged, and everything sent after, is a dead letter."""
    sender, receiver = make(), make()
    outcomes = Outcomes()
    sender.scheduleTransmit(None, outcomes.intent(receiver.myAddress, "first"))
    pump([sender, receiver], lambda r: outcomes.status.get("first") == SendStatus.Sent)
    receiver._forget_after_fork()  # what the kernel does at kill -9
    for number in range(5):
        sender.scheduleTransmit(None, outcomes.intent(receiver.myAddress, number))
    pump([sender], lambda r: len(outcomes.status) == 6)
    assert [outcomes.status[number] for number in range(5)] == [SendStatus.DeadTarget] * 5


def test_another_process_on_the_dead_receivers_port_gets_none_of_its_messages(make, secret):
    sender, receiver = make(), make()
    outcomes = Outcomes()
    sender.scheduleTransmit(None, outcomes.intent(receiver.myAddress, "first"))
    pump([sender, receiver], lambda r: outcomes.status.get("first") == SendStatus.Sent)
    address = receiver.myAddress
    receiver._forget_after_fork()
    successor = tcp.RaftlineTransport(tcp.RaftlineEndpoint(None, address, None, None, read_secret(secret)))
    try:
        sender.scheduleTransmit(None, outcomes.intent(address, "meant for the dead one"))
        got = pump([sender, successor], lambda r: "meant for the dead one" in outcomes.status)
        assert outcomes.status["meant for the dead one"] == SendStatus.DeadTarget
        assert got[successor] == []
    finally:
        successor.close()


def test_an_intent_that_outlives_its_time_limit_fails(make, monkeypatch):
    """A listener that accepts and never answers: the intent's own limit ends it."""
    monkeypatch.setattr(tcp, "HOUSEKEEPING", 0.05)
    sender = make()
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        target = ActorAddress(TCPv4ActorAddress("127.0.0.1", silent.getsockname()[1], external=True))
        outcomes = Outcomes()
        sender.scheduleTransmit(None, outcomes.intent(target, "stuck", maxPeriod=timedelta(milliseconds=200)))
        pump([sender], lambda r: "stuck" in outcomes.status)
    assert outcomes.status["stuck"] == SendStatus.Failed


def test_an_outside_process_with_another_secret_is_told_so(make, tmp_path):
    receiver = make()
    stranger = make(create_secret(tmp_path / "other"))
    stranger.scheduleTransmit(None, Outcomes().intent(receiver.myAddress, "hello"))
    with pytest.raises(AuthenticationFailed, match="different deployment secret"):
        pump([stranger, receiver], lambda r: False)


def test_a_listener_that_is_not_raftlines_transport_is_named_as_such(make):
    """Thespian's stock transport closes the connection on raftline's hello."""
    sender = make()
    with socket.socket() as stock:
        stock.bind(("127.0.0.1", 0))
        stock.listen()
        stock.setblocking(False)
        target = ActorAddress(TCPv4ActorAddress("127.0.0.1", stock.getsockname()[1], external=True))
        sender.scheduleTransmit(None, Outcomes().intent(target, "hello"))

        def hang_up(_received):
            try:
                stock.accept()[0].close()
            except BlockingIOError:
                pass
            return False

        with pytest.raises(AuthenticationFailed, match="does not speak raftline's transport"):
            pump([sender], hang_up)


@pytest.mark.parametrize("bad", ["garbage", "stock frame", "oversize", "wrong MAC", "cut mid-frame"])
def test_a_bad_connection_is_closed_logged_once_and_harms_nobody(make, secret, caplog, bad):
    receiver, sender = make(), make()
    host, port = receiver.myAddress.addressDetails.sockname[:2]
    key = read_secret(secret)
    with caplog.at_level(logging.WARNING, logger="raftline.transport"):
        for _ in range(3):
            sock = socket.create_connection((host, port), timeout=5)
            if bad == "garbage":
                sock.sendall(os.urandom(64))
            elif bad == "stock frame":
                sock.sendall(b"44>" + bytes(44))
            else:
                nonce_c = os.urandom(wire.NONCE_BYTES)
                sock.sendall(wire.hello(nonce_c))
                challenge = received_exactly(sock, wire.CHALLENGE_BYTES, receiver)
                nonce_s, _ = wire.read_challenge(key, nonce_c, challenge)
                declared = wire.Proof(stream=os.urandom(8), first_seq=1, ack_at_once=True, address="127.0.0.1:1")
                sock.sendall(wire.proof(key, nonce_c, nonce_s, declared))
                messages_key, _ = wire.connection_keys(key, nonce_c, nonce_s)
                frame_mac = wire.FrameMac(messages_key)
                if bad == "oversize":
                    sock.sendall(wire.FRAME_HEAD.pack(0xFFFFFFFF, bytes(16)))
                elif bad == "wrong MAC":
                    sock.sendall(frame_mac.head(2, b"payload") + b"payload")  # as frame 2: a replay or reorder
                else:
                    whole = frame_mac.head(1, b"x" * 1000) + b"x" * 1000
                    sock.sendall(whole[:500])
            if bad == "cut mid-frame":
                sock.close()
                pump([receiver], lambda r: not receiver._inbound)
            else:
                pump([receiver], lambda r: closed_by_peer(sock))
                sock.close()
    refusals = [record for record in caplog.records if record.name == "raftline.transport"]
    assert len(refusals) == (0 if bad == "cut mid-frame" else 1), [r.getMessage() for r in refusals]
    outcomes = Outcomes()
    sender.scheduleTransmit(None, outcomes.intent(receiver.myAddress, "still served"))
    got = pump([sender, receiver], lambda r: r[receiver])
    assert got[receiver] == ["still served"]


def received_exactly(sock, count, transport):
    data = b""
    sock.setblocking(False)
    while len(data) < count:
        transport.run(None, timedelta(milliseconds=5))
        try:
            data += sock.recv(count - len(data))
        except BlockingIOError:
            pass
    sock.setblocking(True)
    return data


def closed_by_peer(sock) -> bool:
    sock.setblocking(False)
    try:
        while data := sock.recv(4096):
            del data
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_a_storm_of_half_open_connections_leaves_the_listener_serving(make, monkeypatch):
    monkeypatch.setattr(tcp, "MAX_HANDSHAKING", 20)
    receiver, sender = make(), make()
    host, port = receiver.myAddress.addressDetails.sockname[:2]
    storm = [socket.create_connection((host, port), timeout=5) for _ in range(60)]
    try:
        pump([receiver], lambda r: len(receiver._inbound) <= 20)
        outcomes = Outcomes()
        sender.scheduleTransmit(None, outcomes.intent(receiver.myAddress, "through the storm"))
        got = pump([sender, receiver], lambda r: r[receiver])
        assert got[receiver] == ["through the storm"]
    finally:
        for sock in storm:
            sock.close()


def test_listeners_bind_the_advertised_address_only(make):
    transport = make()
    assert [listener.getsockname()[0] for listener in transport._listeners] == ["127.0.0.1"]
