"""raftline's transport on the wire: the handshake and the authenticated
frames (docs/DESIGN.md section 13). Pure: callers pass the nonces in and do
the I/O.

A connection carries one sender's messages to one receiver's listener, and
the receiver's acknowledgements back. Both ends prove they hold the
deployment secret before any message byte is read:

    client -> server   HELLO      MAGIC | nonce_c
    server -> client   CHALLENGE  MAGIC | nonce_s | incarnation | proof_s
    client -> server   PROOF      proof_c | stream | first_seq | ack_at_once | address
    then frames both ways: length (4) | MAC (16) | payload

proof_s covers the client's fresh nonce and proof_c the server's, so neither
can be replayed, not even on a process that has just restarted on the same
port (a nonce cache and a clock window could not promise that), at the cost
of one round trip per connection, which persistent connections pay once.
The MAC of every frame is keyed per connection and direction and covers the
frame's sequence number, which is implicit (counted by both ends, never
sent), so frames cannot be replayed, reordered, dropped or spliced between
connections without the MAC failing. Nothing is unpickled before its MAC is
checked.

MAGIC starts with text that Thespian's stock transport fails to parse as a
frame length, so a stock listener closes the connection at once and the
client can tell "not raftline's transport" from "wrong secret".
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

MAGIC = b"raftline>\x01"
"""Protocol name and version 1."""

NONCE_BYTES = 16
INCARNATION_BYTES = 8
STREAM_BYTES = 8
MAC_BYTES = 16
SECRET_BYTES = 32

HELLO_BYTES = len(MAGIC) + NONCE_BYTES
CHALLENGE_BYTES = len(MAGIC) + NONCE_BYTES + INCARNATION_BYTES + MAC_BYTES
_PROOF_HEAD = struct.Struct(f">{MAC_BYTES}s{STREAM_BYTES}sQ?H")
PROOF_HEAD_BYTES = _PROOF_HEAD.size
MAX_ADDRESS_BYTES = 300

FRAME_HEAD = struct.Struct(f">I{MAC_BYTES}s")
FRAME_HEAD_BYTES = FRAME_HEAD.size
MAX_FRAME_BYTES = 64 * 1024 * 1024
"""The largest payload a frame may carry; a larger length is an attack or a bug."""

ACK = struct.Struct(">Q")


class ProtocolError(Exception):
    """The peer does not speak this protocol (or sent a malformed handshake)."""


class AuthenticationError(Exception):
    """The peer speaks the protocol but does not hold the same secret."""


def _mac(key: bytes, label: bytes, *parts: bytes) -> bytes:
    hasher = hashlib.blake2b(key=key, digest_size=MAC_BYTES, person=label.ljust(16, b"\0"))
    for part in parts:
        hasher.update(part)
    return hasher.digest()


def hello(nonce_c: bytes) -> bytes:
    return MAGIC + nonce_c


def read_hello(data: bytes) -> bytes:
    """The client's nonce; ProtocolError if `data` is not a HELLO."""
    if data[: len(MAGIC)] != MAGIC:
        raise ProtocolError("not raftline's transport")
    return bytes(data[len(MAGIC) : HELLO_BYTES])


def challenge(secret: bytes, nonce_c: bytes, nonce_s: bytes, incarnation: bytes) -> bytes:
    return MAGIC + nonce_s + incarnation + _mac(secret, b"server", nonce_c, nonce_s, incarnation)


def read_challenge(secret: bytes, nonce_c: bytes, data: bytes) -> tuple[bytes, bytes]:
    """(nonce_s, the server's incarnation); ProtocolError or AuthenticationError."""
    if data[: len(MAGIC)] != MAGIC:
        raise ProtocolError("not raftline's transport")
    at = len(MAGIC)
    nonce_s = bytes(data[at : at + NONCE_BYTES])
    incarnation = bytes(data[at + NONCE_BYTES : at + NONCE_BYTES + INCARNATION_BYTES])
    proof = bytes(data[at + NONCE_BYTES + INCARNATION_BYTES : CHALLENGE_BYTES])
    if not hmac.compare_digest(proof, _mac(secret, b"server", nonce_c, nonce_s, incarnation)):
        raise AuthenticationError("the peer holds a different deployment secret")
    return nonce_s, incarnation


@dataclass(frozen=True, slots=True)
class Proof:
    """What the client declares once authenticated.

    Fields:
        stream: the sender's stream to this receiver; stays the same across
            reconnections so the receiver can drop frames it already delivered.
        first_seq: the sequence number of the first frame on this connection.
        ack_at_once: acknowledge every frame at once rather than a few
            milliseconds later: an outside process sends a few messages and
            waits for each (`tell`), an actor streams many.
        address: the sender's own listening "HOST:PORT" (its actor address).
    """

    stream: bytes
    first_seq: int
    ack_at_once: bool
    address: str


def proof(secret: bytes, nonce_c: bytes, nonce_s: bytes, declared: Proof) -> bytes:
    address = declared.address.encode("ascii")
    flag = bytes([declared.ack_at_once])
    tag = _mac(secret, b"client", nonce_c, nonce_s, declared.stream, ACK.pack(declared.first_seq), flag, address)
    return _PROOF_HEAD.pack(tag, declared.stream, declared.first_seq, declared.ack_at_once, len(address)) + address


def proof_length(head: bytes) -> int:
    """The whole PROOF's length, from its first PROOF_HEAD_BYTES."""
    length = _PROOF_HEAD.unpack_from(head)[4]
    if length > MAX_ADDRESS_BYTES:
        raise ProtocolError("malformed handshake")
    return PROOF_HEAD_BYTES + length


def read_proof(secret: bytes, nonce_c: bytes, nonce_s: bytes, data: bytes) -> Proof:
    tag, stream, first_seq, ack_at_once, length = _PROOF_HEAD.unpack_from(data)
    address = bytes(data[PROOF_HEAD_BYTES : PROOF_HEAD_BYTES + length])
    flag = bytes([ack_at_once])
    expected = _mac(secret, b"client", nonce_c, nonce_s, stream, ACK.pack(first_seq), flag, address)
    if not hmac.compare_digest(tag, expected):
        raise AuthenticationError("the peer holds a different deployment secret")
    try:
        return Proof(stream=stream, first_seq=first_seq, ack_at_once=ack_at_once, address=address.decode("ascii"))
    except UnicodeDecodeError:
        raise ProtocolError("malformed handshake") from None


def connection_keys(secret: bytes, nonce_c: bytes, nonce_s: bytes) -> tuple[bytes, bytes]:
    """The MAC keys of one connection: (messages, acknowledgements)."""
    derive = hashlib.blake2b(key=secret, digest_size=32, person=b"raftline keys".ljust(16, b"\0"))
    derive.update(nonce_c + nonce_s)
    messages = derive.copy()
    messages.update(b"messages")
    acknowledgements = derive.copy()
    acknowledgements.update(b"acknowledgements")
    return messages.digest(), acknowledgements.digest()


class FrameMac:
    """MACs of one direction of one connection. The sequence number each MAC
    covers is counted by the caller on both ends and never sent."""

    __slots__ = ("_keyed",)

    def __init__(self, key: bytes):
        self._keyed = hashlib.blake2b(key=key, digest_size=MAC_BYTES)

    def head(self, seq: int, payload) -> bytes:
        """The frame's head (length and MAC) for `payload` as frame `seq`."""
        hasher = self._keyed.copy()
        hasher.update(ACK.pack(seq))
        hasher.update(payload)
        return FRAME_HEAD.pack(len(payload), hasher.digest())

    def valid(self, seq: int, payload, mac: bytes) -> bool:
        hasher = self._keyed.copy()
        hasher.update(ACK.pack(seq))
        hasher.update(payload)
        return hmac.compare_digest(hasher.digest(), mac)
