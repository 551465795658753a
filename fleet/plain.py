"""Plain data (dicts, lists, scalars) from dataclasses, for reports and JSON."""

from __future__ import annotations

import functools
from dataclasses import fields

_SCALARS = frozenset({str, int, float, bool, type(None)})


@functools.lru_cache(maxsize=None)
def _field_names(cls: type) -> tuple[str, ...] | None:
    """A dataclass's field names, in order; None for any other type."""
    return tuple(f.name for f in fields(cls)) if hasattr(cls, "__dataclass_fields__") else None


def plain(value):
    """``dataclasses.asdict`` without its deep copies (they were half of the audit's analysis per host):
    dataclasses become dicts, lists and dicts are rebuilt, tuples keep their type; every other value in
    facts and checks is immutable (str, int, float, bool, None, enums) and is shared as is."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is list:
        return [plain(v) for v in value]
    if kind is dict:
        return {plain(k): plain(v) for k, v in value.items()}
    names = _field_names(kind)
    if names is not None:
        return {name: plain(getattr(value, name)) for name in names}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        items = [plain(v) for v in value]
        return kind(*items) if hasattr(value, "_fields") else kind(items)
    return value
