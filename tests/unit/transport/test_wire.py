"""The transport's wire format (actors/transport/wire.py): both ends must
prove the secret before any message is read, and no frame can be forged,
replayed, reordered or moved to another connection without its MAC failing."""

import os

import pytest

from actors.transport import wire

SECRET = bytes(range(32))
OTHER_SECRET = bytes(32)


def handshake(client_secret=SECRET, server_secret=SECRET, ack_at_once=False):
    """A whole handshake; returns (declared, client keys, server keys)."""
    nonce_c, nonce_s = os.urandom(16), os.urandom(16)
    assert wire.read_hello(wire.hello(nonce_c)) == nonce_c
    challenge = wire.challenge(server_secret, nonce_c, nonce_s, b"incarnat")
    got_nonce, incarnation = wire.read_challenge(client_secret, nonce_c, challenge)
    declared = wire.Proof(stream=b"stream-1", first_seq=7, ack_at_once=ack_at_once, address="127.0.0.1:4242")
    proof = wire.proof(client_secret, nonce_c, got_nonce, declared)
    assert wire.proof_length(proof) == len(proof)
    received = wire.read_proof(server_secret, nonce_c, nonce_s, proof)
    return received, wire.connection_keys(client_secret, nonce_c, got_nonce), wire.connection_keys(
        server_secret, nonce_c, nonce_s)


def test_a_handshake_between_holders_of_the_secret_agrees_on_keys_and_the_declaration():
    declared, client_keys, server_keys = handshake(ack_at_once=True)
    assert declared == wire.Proof(stream=b"stream-1", first_seq=7, ack_at_once=True, address="127.0.0.1:4242")
    assert client_keys == server_keys
    messages, acknowledgements = client_keys
    assert messages != acknowledgements


def test_a_client_with_another_secret_rejects_the_server():
    with pytest.raises(wire.AuthenticationError):
        handshake(client_secret=OTHER_SECRET)


def test_a_server_rejects_a_proof_made_with_another_secret():
    nonce_c, nonce_s = os.urandom(16), os.urandom(16)
    declared = wire.Proof(stream=b"s" * 8, first_seq=1, ack_at_once=False, address="127.0.0.1:1")
    with pytest.raises(wire.AuthenticationError):
        wire.read_proof(SECRET, nonce_c, nonce_s, wire.proof(OTHER_SECRET, nonce_c, nonce_s, declared))


def test_a_recorded_proof_is_useless_against_a_fresh_challenge():
    """Whole-connection replay: the server's nonce is new on every connection."""
    nonce_c = os.urandom(16)
    declared = wire.Proof(stream=b"s" * 8, first_seq=1, ack_at_once=False, address="127.0.0.1:1")
    recorded = wire.proof(SECRET, nonce_c, os.urandom(16), declared)
    with pytest.raises(wire.AuthenticationError):
        wire.read_proof(SECRET, nonce_c, os.urandom(16), recorded)


@pytest.mark.parametrize("field, value", [("address", "10.0.0.9:4242"), ("first_seq", 1), ("ack_at_once", True)])
def test_a_proof_whose_declaration_was_altered_is_rejected(field, value):
    nonce_c, nonce_s = os.urandom(16), os.urandom(16)
    declared = wire.Proof(stream=b"s" * 8, first_seq=7, ack_at_once=False, address="127.0.0.1:4242")
    proof = bytearray(wire.proof(SECRET, nonce_c, nonce_s, declared))
    forged = wire.proof(OTHER_SECRET, nonce_c, nonce_s, _replace(declared, field, value))
    spliced = proof[: wire.MAC_BYTES] + forged[wire.MAC_BYTES :]  # the genuine tag on an altered declaration
    with pytest.raises(wire.AuthenticationError):
        wire.read_proof(SECRET, nonce_c, nonce_s, bytes(spliced))


def _replace(declared, field, value):
    fields = {name: getattr(declared, name) for name in ("stream", "first_seq", "ack_at_once", "address")}
    fields[field] = value
    return wire.Proof(**fields)


@pytest.mark.parametrize("data", [b"12>" + bytes(40), b"GET / HTTP/1.1\r\n\r\n" + bytes(10), bytes(26)])
def test_anything_but_a_hello_is_not_the_protocol(data):
    with pytest.raises(wire.ProtocolError):
        wire.read_hello(data)


def test_an_oversize_address_in_a_proof_is_malformed():
    head = bytes(wire.MAC_BYTES + wire.STREAM_BYTES + 8 + 1) + (wire.MAX_ADDRESS_BYTES + 1).to_bytes(2, "big")
    with pytest.raises(wire.ProtocolError):
        wire.proof_length(head)


def frame(mac, seq, payload):
    return mac.head(seq, payload) + payload


def verify(mac, seq, data):
    length, tag = wire.FRAME_HEAD.unpack_from(data)
    payload = data[wire.FRAME_HEAD_BYTES :]
    return length == len(payload) and mac.valid(seq, payload, tag)


def test_a_frame_verifies_only_as_the_frame_it_was_sealed_as():
    key, other_key = os.urandom(32), os.urandom(32)
    sealed = frame(wire.FrameMac(key), 5, b"payload")
    assert verify(wire.FrameMac(key), 5, sealed)
    assert not verify(wire.FrameMac(key), 6, sealed), "replayed or reordered"
    assert not verify(wire.FrameMac(key), 4, sealed), "replayed or reordered"
    assert not verify(wire.FrameMac(other_key), 5, sealed), "spliced from another connection"
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    assert not verify(wire.FrameMac(key), 5, tampered)


def test_keys_differ_per_connection():
    nonce_c = os.urandom(16)
    assert wire.connection_keys(SECRET, nonce_c, os.urandom(16)) != wire.connection_keys(SECRET, nonce_c, os.urandom(16))
