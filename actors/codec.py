"""JSON encoding of log-entry commands and state-machine snapshots.

Client values are JSON and are never pickled (docs/DESIGN.md section 7), so what
goes into a Raft entry's `data` or a snapshot is JSON bytes.

Rules:
- `decode(encode(x)) == x` with the same types throughout, for None, bool,
  int, float (finite), str, bytes, list, tuple, dict with str keys, and the
  registered log types (`actors.messages.txn.LOG_TYPES`), nested
  arbitrarily. Only those dataclasses are built on decode: a log entry can
  never make a replica construct anything else.
- Deterministic: equal values give equal bytes (object keys are sorted), so
  replicas that hold equal state produce byte-identical snapshots. Compact:
  no whitespace.
- Values JSON cannot say directly are single-key objects whose key is a tag:
  {"#b": base64} bytes, {"#t": [...]} a tuple, {"#m": [class name, {field: value}]}
  a message dataclass. A user dict that itself has exactly one key starting
  with "#" is escaped as {"#d": {...}}, so no user data is ever read as a tag.
- Anything else (NaN or infinity, non-str dict keys, sets, other classes)
  is refused with TypeError or ValueError on encode; malformed input to
  `decode` raises ValueError.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from typing import Any

from actors.messages.txn import LOG_TYPES

_BYTES = "#b"
_TUPLE = "#t"
_DICT = "#d"
_MESSAGE = "#m"
_TAG_PREFIX = "#"

_REGISTRY = {kind.__name__: kind for kind in LOG_TYPES}


def encode(obj: Any) -> bytes:
    """`obj` as compact, deterministic JSON bytes (see the module rules)."""
    return json.dumps(_to_json(obj), separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


def decode(data: bytes) -> Any:
    """The value `encode` was given. Raises ValueError on malformed input."""
    return _from_json(json.loads(data, parse_constant=_refuse_constant))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON and never produced by encode")


def _looks_tagged(value: dict) -> bool:
    if len(value) != 1:
        return False
    (key,) = value
    return key.startswith(_TAG_PREFIX)


def _to_json(obj: Any) -> Any:
    # Exact type checks: a subclass (bool of int, an enum of str) would not
    # come back as itself.
    kind = type(obj)
    if obj is None or kind is bool or kind is int or kind is str:
        return obj
    if kind is float:
        if obj != obj or obj in (float("inf"), float("-inf")):
            raise ValueError(f"cannot encode {obj!r}: JSON has no NaN or infinity")
        return obj
    if kind is list:
        return [_to_json(item) for item in obj]
    if kind is tuple:
        return {_TUPLE: [_to_json(item) for item in obj]}
    if kind is bytes:
        return {_BYTES: base64.b64encode(obj).decode("ascii")}
    if kind is dict:
        for key in obj:
            if type(key) is not str:
                raise TypeError(f"cannot encode a dict key of type {type(key).__name__}: keys must be str")
        encoded = {key: _to_json(value) for key, value in obj.items()}
        return {_DICT: encoded} if _looks_tagged(obj) else encoded
    if _REGISTRY.get(kind.__name__) is kind:
        fields = {field.name: _to_json(getattr(obj, field.name)) for field in dataclasses.fields(obj) if field.init}
        return {_MESSAGE: [kind.__name__, fields]}
    raise TypeError(f"cannot encode a value of type {kind.__module__}.{kind.__qualname__}")


def _from_json(value: Any) -> Any:
    if isinstance(value, list):
        return [_from_json(item) for item in value]
    if not isinstance(value, dict):
        return value
    if not _looks_tagged(value):
        return {key: _from_json(item) for key, item in value.items()}
    ((tag, payload),) = value.items()
    if tag == _TUPLE and isinstance(payload, list):
        return tuple(_from_json(item) for item in payload)
    if tag == _BYTES and isinstance(payload, str):
        try:
            return base64.b64decode(payload, validate=True)
        except binascii.Error as error:
            raise ValueError(f"malformed base64 in {_BYTES}: {error}") from None
    if tag == _DICT and isinstance(payload, dict):
        return {key: _from_json(item) for key, item in payload.items()}
    if tag == _MESSAGE and _is_message_payload(payload):
        name, fields = payload
        return _message(name, {key: _from_json(item) for key, item in fields.items()})
    raise ValueError(f"malformed or unknown tagged value {tag!r}")


def _is_message_payload(payload: Any) -> bool:
    return (
        isinstance(payload, list)
        and len(payload) == 2
        and isinstance(payload[0], str)
        and isinstance(payload[1], dict)
    )


def _message(name: str, fields: dict[str, Any]) -> Any:
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ValueError(f"unknown message type {name!r}: not a registered log type")
    try:
        return cls(**fields)
    except TypeError as error:
        raise ValueError(f"cannot build {name} from fields {sorted(fields)}: {error}") from None
