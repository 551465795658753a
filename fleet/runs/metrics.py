"""Metric keys (SuperBench's flat style: ``matmul/bf16/tflops:gpu0``): the base and the device of a key, which
way is better, and the table's key figures.  Pure; read by the verdict, the history, the page and the terminal."""

from __future__ import annotations

import math
import re
from typing import Any, Iterable, Optional

# The table's key figures, in column order; matmul dtypes come first (see key_figures()).
KEY_FIGURES = ("memory/d2d/gbps", "memory/h2d/gbps", "allreduce/busbw_gbps", "ddp/resnet50/images_per_s")
MATMUL_DTYPES = ("bf16", "fp16", "fp8", "tf32", "fp32")

_DEVICE_RE = re.compile(r"^(?P<base>.+):(?P<kind>[A-Za-z]+)(?P<index>\d+)$")
_TIME_WORDS = frozenset({"ms", "us", "ns", "s", "sec", "secs", "second", "seconds", "msec", "usec",
                         "min", "minutes", "latency", "time", "duration", "elapsed", "wall"})


def split_key(key: str) -> tuple:
    """``(base, device)`` of a metric key: ``"matmul/bf16/tflops:gpu3"`` -> ``("matmul/bf16/tflops", "gpu3")``;
    ``device`` is None without a ``:<letters><digits>`` suffix."""
    m = _DEVICE_RE.match(key)
    if not m:
        return key, None
    return m.group("base"), m.group("kind") + m.group("index")


def device_kind(device: str) -> str:
    """``"gpu"`` for ``"gpu3"``."""
    return device.rstrip("0123456789")


def _tokens(text: str) -> list:
    return [t for t in re.split(r"[^a-z0-9]+", text.lower()) if t]


def higher_is_better(key: str) -> bool:
    """Whether a bigger value of metric ``key`` is better (the default), or a smaller one.

    Lower is better when the unit (last ``/`` segment) is a time (``step_ms``,
    ``latency_us``, ``s``) or any segment names a latency/time, except for a
    rate (``images_per_s``: what comes before ``per`` is not a time).  A time
    per thing (``ms_per_step``) is lower-is-better.
    """
    base, _ = split_key(key)
    segments = base.split("/")
    unit = _tokens(segments[-1])
    if "per" in unit:
        numerator = unit[: unit.index("per")]
        return not any(t in _TIME_WORDS for t in numerator)
    if any(t in _TIME_WORDS for t in unit):
        return False
    for seg in segments[:-1]:
        if any(t in ("latency", "duration", "elapsed") for t in _tokens(seg)):
            return False
    return True


def key_figures(metric_keys: Iterable[str]) -> list:
    """The table's key figures present among ``metric_keys`` (base keys), in column order."""
    present = set(metric_keys)
    matmul = sorted((k for k in present if re.fullmatch(r"matmul/[^/]+/tflops", k)),
                    key=lambda k: (MATMUL_DTYPES.index(k.split("/")[1]) if k.split("/")[1] in MATMUL_DTYPES
                                   else len(MATMUL_DTYPES), k))
    return matmul + [k for k in KEY_FIGURES if k in present]


def number(value: Any) -> Optional[float]:
    """A finite float of an int or float (not a bool); None for anything else (a figure from a report)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None
