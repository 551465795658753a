"""JUnit XML for CI systems: one ``<testsuite>`` per host, one ``<testcase>`` per check (audit), per reason
of the verdict (verify: a failing or warning check, a straggler or regression record), per step and validation
(provision).

- ``pass`` -> a passed testcase; ``warn`` -> passed, with the message in ``<system-out>``;
  ``skip`` / ``skipped`` -> ``<skipped>``; ``fail`` / ``failed`` -> ``<failure>``; ``error`` -> ``<error>``.
- A host whose work did not end ``ok`` (not reached, timed out, bad report...) and has no failing
  testcase of its own gets one more, ``<kind>.<state>``, that errors (a ``fail`` status: fails) with
  the runner's message.

:func:`junit_xml` is pure; :func:`write_junit` writes it atomically.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Mapping

from fleet.jsonio import write_text_atomic
from fleet.runs.verdict import reasons_of

KINDS = ("audit", "verify", "provision")

_OUTCOME = {"pass": "pass", "ok": "pass", "changed": "pass", "warn": "warn", "skip": "skipped",
            "skipped": "skipped", "fail": "failure", "failed": "failure", "error": "error", "unreachable": "error"}

# characters XML 1.0 cannot hold, even escaped
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value: Any) -> str:
    return _INVALID_XML.sub("\ufffd", "" if value is None else str(value))


def _case(name: str, classname: str, status: str, message: str, time: float | None = None,
          output: str | None = None, error_type: str | None = None) -> ET.Element:
    case = ET.Element("testcase", {"name": _text(name), "classname": _text(classname)})
    if time is not None:
        case.set("time", f"{time:.3f}")
    outcome = _OUTCOME.get(str(status), "error")
    msg = _text(message)
    if outcome == "skipped":
        ET.SubElement(case, "skipped", {"message": msg})
    elif outcome in ("failure", "error"):
        el = ET.SubElement(case, outcome, {"message": msg, "type": _text(error_type or status)})
        el.text = _text(output) if output else msg
    elif outcome == "warn":
        ET.SubElement(case, "system-out").text = f"warn: {msg}"
    if output and outcome not in ("failure", "error"):
        ET.SubElement(case, "system-out").text = _text(output)
    return case


def _failed(case: ET.Element) -> bool:
    return case.find("failure") is not None or case.find("error") is not None


def _not_run(host: str, kind: str, h: Mapping) -> ET.Element:
    """The one testcase of a host whose work did not end ``ok``."""
    state = h.get("state") or "error"
    status = h.get("status") or "error"
    return _case(f"{kind}.{state}", f"{kind}.{host}", "fail" if status == "fail" else "error",
                 h.get("message") or f"{kind} {state}", error_type=state)


def _audit_cases(host: str, h: Mapping) -> list[ET.Element]:
    checks = h.get("checks") or []
    cases = [_case(c.get("name", "?"), f"audit.{host}", c.get("status", "error"), c.get("message", ""))
             for c in checks]
    if h.get("state", "ok") != "ok" and not any(_failed(c) for c in cases):
        cases.append(_not_run(host, "audit", h))
    return cases


def _verify_cases(host: str, h: Mapping) -> list[ET.Element]:
    """A testcase per reason of the host's verdict (a check that did not pass, a straggler or regression record,
    ``report``/``culprit``), as the verdict decided them; a passing host gets one passing ``verify``."""
    cases = []
    for r in reasons_of(h):
        kind = r.get("kind")
        if kind == "state":
            continue
        name = r.get("name") if kind == "check" else f"{kind}:{r['metric']}" if r.get("metric") else kind
        cases.append(_case(str(name or "?"), f"verify.{host}", r.get("status", "error"), r.get("message", "")))
    if h.get("state", "ok") != "ok":
        cases.append(_not_run(host, "verify", h))
    elif not cases:
        status = h.get("status") or "error"
        cases.append(_case("verify", f"verify.{host}", status if status in ("pass", "warn") else "error",
                           h.get("message") or f"verify {status}"))
    return cases


def _provision_cases(host: str, h: Mapping) -> list[ET.Element]:
    cases = [_case(f"step:{s.get('name', '?')}", f"provision.{host}", s.get("status", "error"), s.get("message", ""),
                   output=s.get("output")) for s in h.get("steps") or []]
    cases += [_case(f"validation:{v.get('name', '?')}", f"provision.{host}", v.get("status", "error"),
                    v.get("message", "")) for v in h.get("validation") or []]
    if h.get("state", "ok") != "ok" and not any(_failed(c) for c in cases):
        cases.append(_not_run(host, "provision", h))
    return cases


def junit_xml(doc: Mapping, kind: str) -> str:
    """JUnit XML of an audit report (``kind="audit"``), a verify summary (``"verify"``) or a provision report."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
    root = ET.Element("testsuites", {"name": f"gpufleet {kind}"})
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for host, h in (doc.get("hosts") or {}).items():
        if kind == "audit":
            cases = _audit_cases(host, h)
        elif kind == "verify":
            cases = _verify_cases(host, h)
        else:
            cases = _provision_cases(host, h)
        counts = {"tests": len(cases),
                  "failures": sum(1 for c in cases if c.find("failure") is not None),
                  "errors": sum(1 for c in cases if c.find("error") is not None),
                  "skipped": sum(1 for c in cases if c.find("skipped") is not None)}
        suite = ET.SubElement(root, "testsuite", {"name": _text(host), **{k: str(v) for k, v in counts.items()}})
        if isinstance(h.get("duration_s"), (int, float)):
            suite.set("time", f"{h['duration_s']:.3f}")
        stamp = doc.get("generated") or doc.get("started")
        if stamp:
            suite.set("timestamp", _text(stamp))
        props = ET.SubElement(suite, "properties")
        for key in ("status", "state", "address", "gpu_model"):
            if h.get(key) is not None:
                ET.SubElement(props, "property", {"name": key, "value": _text(h[key])})
        suite.extend(cases)
        for k, v in counts.items():
            totals[k] += v
    for k, v in totals.items():
        root.set(k, str(v))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: str | os.PathLike, doc: Mapping, kind: str) -> Path:
    """Write :func:`junit_xml` atomically."""
    return write_text_atomic(path, junit_xml(doc, kind))
