"""What a ``gpufleet.summary/1`` document flags, read for summary.html (pure): stragglers and regressions per host,
and the small readings of numbers and model names the page and its plots share."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from fleet.runs.metrics import split_key


def model_label(model: Optional[str]) -> str:
    if not model:
        return "-"
    return model[len("NVIDIA "):] if model.startswith("NVIDIA ") else model


def base(label: Any) -> str:
    """``matmul/bf16/tflops`` of a mark label ``matmul/bf16/tflops:gpu2``."""
    return split_key(str(label))[0]


def mark_label(metric: Any, gpu: Any) -> str:
    return f"{metric}:{gpu}" if gpu else str(metric)


def regressions(summary: Mapping) -> Optional[list]:
    """The regression records; None when the run was not judged against a history (no ``baseline``)."""
    regs = summary.get("regressions")
    if not isinstance(regs, list) or (not regs and summary.get("baseline") is None):
        return None
    return [r for r in regs if isinstance(r, Mapping)]


def flags(summary: Mapping) -> tuple[dict, dict]:
    """``(slow, regressed)``: host -> set of base keys it straggles / regresses on."""
    slow: dict = {}
    for s in summary.get("stragglers") or ():
        slow.setdefault(s.get("host"), set()).add(s.get("metric"))
    regressed: dict = {}
    for r in regressions(summary) or ():
        regressed.setdefault(r.get("host"), set()).add(r.get("metric"))
    for host, entry in (summary.get("hosts") or {}).items():
        for label in entry.get("straggler_metrics") or ():
            slow.setdefault(host, set()).add(base(label))
        for label in entry.get("regression_metrics") or ():
            regressed.setdefault(host, set()).add(base(label))
    return slow, regressed


def regression_labels(summary: Mapping, host: str, entry: Mapping) -> list:
    labels = [str(x) for x in entry.get("regression_metrics") or ()]
    for r in regressions(summary) or ():
        if r.get("host") == host:
            label = mark_label(r.get("metric"), r.get("gpu"))
            if label not in labels:
                labels.append(label)
    return labels


def is_regressed(summary: Mapping, host: str, entry: Mapping) -> bool:
    return bool(entry.get("regression")) or bool(regression_labels(summary, host, entry))
