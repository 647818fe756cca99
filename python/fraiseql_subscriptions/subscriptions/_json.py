"""How Python values that JSON has no type for are serialized (the Rust converter's hook).

``bool``, ``int``, ``float``, ``str``, ``None``, ``dict``, ``list`` and ``tuple`` are
converted in Rust directly; everything else comes here and is replaced by a JSON-able
stand-in:

- ``datetime``, ``date``, ``time``: ISO 8601 (``isoformat()``);
- ``UUID``: its canonical string; ``Decimal``: its exact string (``"12.50"``);
- ``Enum``: its ``value``; ``set`` / ``frozenset``: a list (sorted when sortable);
- dataclasses: a dict of their fields; pydantic models: ``model_dump(mode="json")``;
- objects with ``__json__()``: its result.

Anything else raises ``TypeError`` naming the type.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal
import enum
import uuid
from typing import Any


def to_jsonable(value: Any) -> Any:
    """A JSON-able stand-in for ``value``, or ``TypeError``."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a JSON number (NaN and infinity are not)")
        return str(value)
    if isinstance(value, (set, frozenset)):
        try:
            return sorted(value)
        except TypeError:
            return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):
        return model_dump(mode="json")
    as_json = getattr(value, "__json__", None)
    if callable(as_json):
        return as_json()
    if isinstance(value, int):  # an int subclass that is not an Enum
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(
            "Object of type bytes is not JSON serializable: decode it to str "
            "(or base64-encode it) first"
        )
    raise TypeError(
        f"Object of type {type(value).__name__} is not JSON serializable: return dicts, "
        "lists, str, int, float, bool, None, or a datetime, date, UUID, Decimal, Enum, "
        "dataclass or pydantic model"
    )
