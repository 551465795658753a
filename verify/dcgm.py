"""DCGM diagnostics (``dcgmi diag -r N -j``) as verify checks, for an acceptance burn-in.

``run(level, allow_skips, timeout)`` runs NVIDIA's diagnostic at run level 1-4 where ``dcgmi`` is
installed and turns its JSON into checks; ``parse_diag(text)`` is the pure half (tested against
published captures in ``tests/data/dcgm/``).  See docs/dcgm.md for the mapping.

Checks, one per DCGM test and one per entity result DCGM gives for it::

    dcgm/<test slug>          the test as a whole (DCGM 4.x: its ``test_summary``; older: the worst result)
    dcgm/<test slug>:gpu<N>   DCGM's result for GPU N (DCGM's GPU id, i.e. the NVML index)
    dcgm                      the run (run() only): dcgmi absent, or DCGM could not run the diagnostic
                              (a runtime_error, or dcgmi exited with a status of CANNOT_RUN such as
                              DCGM_ST_CONNECTION_NOT_VALID: the host engine is down) -> fail, with the reason;
                              timed out / no JSON -> error; otherwise the worst test status and a summary

run() is called only for a diagnostic that was asked for (``--dcgm-level N`` or ``--checks dcgm``): one that
cannot run fails; it is never a skip that leaves the host passing.

The slug is the test name lower-cased with every run of other characters made ``_`` (DCGM 3.x
"GPU Memory" -> ``gpu_memory``, 4.x "memory" -> ``memory``).  Status strings, in any case:
Pass -> pass; Fail -> fail; Warn -> warn; Skip and Not Run -> **fail** unless ``allow_skips``
(then skip): DCGM skips tests it was not allowed to run without saying so (DCGM issue #55); a
result DCGM calls Pass but that carries an error (e.g. DCGM_FR_MEMORY_ALLOC, DCGM issue #284) ->
fail; anything else -> error.

Document shapes read (dcgmi/Diag.cpp of each release):

- 2.x to 3.1.6: ``{"DCGM GPU Diagnostic": {"test_categories": [{"category", "tests": [{"name",
  "results": [{"gpu_ids": "0", "status", "warnings": "text", "info": "text"}]}]}]}}``; the
  Deployment tests have one result and no GPU id.
- 3.1.7 to 3.2.x: the same, with ``version`` and ``Driver Version Detected`` at the top level.
- 3.3.x: per-GPU key ``gpu_id``, ``warnings`` a list of ``{"warning", "error_id", "error_category",
  "error_severity"}``.  Deployment tests: in 3.3.1 one result per error (text ``warnings`` and
  ``error_id`` beside it, a ``status`` only on the first); from 3.3.3 one result, an integer
  ``gpu_id`` when it has errors, each error's text keyed ``warnings`` inside the list entry.
- 4.x: ``{"DCGM Diagnostic": {"test_categories": [... {"name", "results": [{"entity_group": "GPU",
  "entity_id": 0, "status", "warnings": [...], "info": [...]}], "test_summary": {"status", ...}}]},
  "entity_groups": [...], "metadata": {"version", "Driver Version Detected"}}``.
- any release, on an error: ``{"DCGM [GPU ]Diagnostic": {"version", "runtime_error": "text"}}``.

dcgmi omits results (and, in 4.x, whole test summaries) for tests it did not run; dcgmi prints a
DCGM warning as ``Fail`` in JSON (HelperDisplayDiagResult).  dcgmi exits with the DCGM status as an
unsigned byte: 0, 226 (DCGM_ST_NVVS_ERROR, -30: a test reported an error), 205
(DCGM_ST_NVVS_ISOLATE_ERROR, -51: isolate the GPU), others for failures to run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from typing import Any, Optional

from verify.contract import DCGM_LEVELS, DCGM_SUGGESTED_TIMEOUT_S
from verify.status import ERROR, FAIL, PASS, SKIP, WARN, make_check

LEVELS = DCGM_LEVELS
# Wall-clock budgets (verify/contract.py); run() takes its timeout from the caller, these are a suggestion.
SUGGESTED_TIMEOUT_S = DCGM_SUGGESTED_TIMEOUT_S
# dcgmi stops the diagnostic on SIGTERM and waits up to 25 s for it (dcgmi/Diag.cpp).
STOP_GRACE_S = 30.0
MESSAGE_CHARS = 600
TAIL_CHARS = 1500

ROOT_KEYS = ("DCGM Diagnostic", "DCGM GPU Diagnostic")  # 4.x, then 2.x/3.x
DEPLOYMENT = "deployment"
DCGM_FR_MEMORY_ALLOC = 56

# DCGM return codes (dcgm_structs.h) dcgmi diag is known to exit with, as negative values.
DCGM_STATUS = {
    -6: "DCGM_ST_NOT_SUPPORTED", -14: "DCGM_ST_NO_DATA", -17: "DCGM_ST_NO_PERMISSION",
    -21: "DCGM_ST_CONNECTION_NOT_VALID", -22: "DCGM_ST_GPU_NOT_SUPPORTED", -29: "DCGM_ST_REQUIRES_ROOT",
    -30: "DCGM_ST_NVVS_ERROR", -39: "DCGM_ST_DIAG_ALREADY_RUNNING", -40: "DCGM_ST_DIAG_BAD_JSON",
    -41: "DCGM_ST_DIAG_BAD_LAUNCH", -51: "DCGM_ST_NVVS_ISOLATE_ERROR", -52: "DCGM_ST_NVVS_BINARY_NOT_FOUND",
    -53: "DCGM_ST_NVVS_KILLED", -58: "DCGM_ST_NVVS_NO_AVAILABLE_TEST",
}
# The statuses that say DCGM could not run the diagnostic on this node at all (no host engine, no permission,
# no diagnostic binary, one already running, an unsupported GPU), as opposed to a test that failed.
CANNOT_RUN = frozenset({-6, -17, -21, -22, -29, -39, -41, -52, -58})

# DCGM's result words, lower-cased -> kind ("notrun": DCGM did not run it; counted as a skip).
_KIND = {"pass": "pass", "fail": "fail", "warn": "warn", "warning": "warn", "skip": "skip", "skipped": "skip",
         "not run": "notrun", "not_run": "notrun", "notrun": "notrun"}
_RANK = {PASS: 0, SKIP: 1, WARN: 2, FAIL: 3, ERROR: 4}  # skip outranks pass here: a test partly skipped is not passed


def slug(name: str) -> str:
    """``Page Retirement/Row Remap`` -> ``page_retirement_row_remap``."""
    return re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_") or "unnamed"


def exit_meaning(code: Optional[int]) -> str:
    """``226`` -> ``DCGM_ST_NVVS_ERROR``; dcgmi exits with the (negative) DCGM status as an unsigned byte."""
    if code is None or code == 0:
        return "" if code == 0 else "no exit status"
    if code < 0:
        return f"killed by signal {-code}"
    name = DCGM_STATUS.get(code - 256) if code >= 128 else None
    return f"{name}, {code - 256}" if name else (f"DCGM status {code - 256}" if code >= 128 else "")


def _clip(text: str, limit: int = MESSAGE_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def tail(text: str, limit: int = TAIL_CHARS) -> str:
    """The last ``limit`` characters of ``text``, stripped ("(no output)" for none)."""
    text = (text or "").strip()
    if not text:
        return "(no output)"
    return text if len(text) <= limit else "..." + text[-limit:]


def find_document(text: str) -> Optional[dict]:
    """The first JSON object in ``text`` (dcgmi may print other lines around it), or None."""
    decoder = json.JSONDecoder()
    pos, tries = text.find("{"), 0
    while pos != -1 and tries < 200:
        try:
            doc, _ = decoder.raw_decode(text, pos)
        except ValueError:
            pos, tries = text.find("{", pos + 1), tries + 1
            continue
        if isinstance(doc, dict):
            return doc
        pos, tries = text.find("{", pos + 1), tries + 1
    return None


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _warnings(entry: dict) -> tuple:
    """``(texts, error ids)`` of an entry's ``warnings``: a string (2.x-3.1), or a list of objects keyed
    ``warning`` (or ``warnings``, DCGM 3.x Deployment results), with ``error_id``."""
    texts, ids = [], []
    for w in _as_list(entry.get("warnings")):
        if isinstance(w, dict):
            text = w.get("warning", w.get("warnings"))
            texts.append(str(text) if text is not None else json.dumps(w, sort_keys=True))
            if isinstance(w.get("error_id"), int) and not isinstance(w.get("error_id"), bool):
                ids.append(w["error_id"])
        elif w not in (None, ""):
            texts.append(str(w))
    top = entry.get("error_id")  # DCGM 3.3.1 Deployment results: the error's fields sit beside a text "warnings"
    if texts and not ids and isinstance(top, int) and not isinstance(top, bool):
        ids.append(top)
    return texts, ids


def _info(entry: dict) -> list:
    return [str(i) for i in _as_list(entry.get("info")) if i not in (None, "")]


def _entity(result: dict) -> Optional[tuple]:
    """``(label, display)`` such as ``("gpu0", "GPU 0")`` for a result about one entity, else None."""
    if "entity_id" in result or "entity_group" in result:
        group, ident = str(result.get("entity_group") or "GPU"), result.get("entity_id")
    elif "gpu_id" in result:
        group, ident = "GPU", result["gpu_id"]
    elif "gpu_ids" in result:
        group, ident = "GPU", result["gpu_ids"]
    else:
        return None
    if isinstance(ident, str) and ident.strip().isdigit():
        ident = int(ident.strip())
    if not isinstance(ident, int) or isinstance(ident, bool) or ident < 0:
        return None  # "0,1,2,3" (a result for several GPUs) or nothing usable: a test-level result
    return f"{slug(group)}{ident}", f"{group} {ident}"


def _judge(raw: Any, warnings: list, error_ids: list, info: list, allow_skips: bool) -> tuple:
    """``(status, message)`` for one DCGM result (or test summary)."""
    word = raw.strip() if isinstance(raw, str) else raw
    kind = _KIND.get(word.lower()) if isinstance(word, str) else None
    said = ("; ".join(warnings)) or ""
    notes = ("; ".join(info)) or ""
    if word is None and warnings:  # DCGM 3.3.1 lists a Deployment test's further errors as results without a status
        return FAIL, _clip(f"DCGM recorded an error: {said}")
    if kind is None:
        return ERROR, _clip(f"unrecognised DCGM status {raw!r}" + (f": {said}" if said else ""))
    if kind == "pass":
        if warnings:  # DCGM#284: a memory test passes after DCGM_FR_MEMORY_ALLOC; a pass carrying an error is no pass
            alloc = " (DCGM_FR_MEMORY_ALLOC: the test could not allocate the memory it needs)" \
                if DCGM_FR_MEMORY_ALLOC in error_ids else ""
            return FAIL, _clip(f"DCGM says Pass but recorded an error{alloc}: {said}")
        return PASS, _clip("Pass" + (f": {notes}" if notes else ""))
    if kind in ("fail", "warn"):
        text = said or notes or "DCGM gave no reason"
        return (FAIL if kind == "fail" else WARN), _clip(f"{word}: {text}")
    what = "skipped" if kind == "skip" else "not run"
    reason = said or notes or "DCGM gave no reason"
    if allow_skips:
        return SKIP, _clip(f"{what} by DCGM: {reason}")
    return FAIL, _clip(f"{what} by DCGM ({reason}); counted as a failure: a burn-in test DCGM did not run "
                       f"proves nothing (allow_skips=True accepts it)")


def _worst(statuses) -> str:
    return max(statuses, key=_RANK.__getitem__, default=PASS)


class _Names:
    """Unique check names (a report may not hold two checks of one name)."""

    def __init__(self):
        self.seen = set()

    def __call__(self, name: str) -> str:
        unique, n = name, 1
        while unique in self.seen:
            n += 1
            unique = f"{name}#{n}"
        self.seen.add(unique)
        return unique


def _test_checks(category: str, test: dict, allow_skips: bool, names: _Names) -> list:
    """The checks of one DCGM test: the test, then each entity result."""
    name = str(test.get("name", "unnamed"))
    base = f"dcgm/{slug(name)}"
    results = [r for r in _as_list(test.get("results")) if r is not None]
    entity_checks, loose = [], []  # loose: (status, message, raw status, details) of results about no one entity
    for r in results:
        if not isinstance(r, dict):
            loose.append((ERROR, _clip(f"malformed DCGM result {r!r}"), None, {}))
            continue
        warnings, ids = _warnings(r)
        info = _info(r)
        status, message = _judge(r.get("status"), warnings, ids, info, allow_skips)
        details = {"category": category, "test": name, "warnings": warnings or None, "error_ids": ids or None,
                   "info": [_clip(i, 300) for i in info] or None}
        ent = _entity(r)
        if ent is None:
            if "gpu_ids" in r:
                details["gpu_ids"] = r["gpu_ids"]
            loose.append((status, message, r.get("status"), details))
            continue
        label, display = ent
        details["entity"] = display
        entity_checks.append(make_check(names(f"{base}:{label}"), status, message, observed=r.get("status"),
                                        details={k: v for k, v in details.items() if v is not None}))

    details = {"category": category, "test": name}
    parts = list(loose)
    summary = test.get("test_summary")
    summary_said = False
    if isinstance(summary, dict):  # DCGM 4.x: the test's own verdict, with the errors not tied to one entity
        warnings, ids = _warnings(summary)
        info = _info(summary)
        status, message = _judge(summary.get("status"), warnings, ids, info, allow_skips)
        details.update(warnings=warnings or None, error_ids=ids or None, info=[_clip(i, 300) for i in info] or None)
        parts.insert(0, (status, message, summary.get("status"), {}))
        summary_said = bool(warnings)
    if not parts and not entity_checks:  # neither results nor summary: dcgmi leaves out what it did not run
        status, message = _judge("Not Run", [], [], [], allow_skips)
        parts.append((status, message, "Not Run", {}))

    final = _worst([p[0] for p in parts] + [c["status"] for c in entity_checks])
    at_final = [c for c in entity_checks if c["status"] == final]
    first = next((p for p in parts if p[0] == final), None)
    if first is not None and (summary_said or final == PASS or not at_final):
        _, message, observed, extra = first
        message = " | ".join(dict.fromkeys(p[1] for p in parts if p[0] == final))  # 3.3.1: one result per error
        details.update({k: v for k, v in extra.items() if v is not None})
    elif at_final and final != PASS:
        per = "; ".join(f"{c['name'].rsplit(':', 1)[1]}: {c['message']}" for c in at_final)
        message = f"{len(at_final)} of {len(entity_checks)} entity results {final}: {per}"
        observed = first[2] if first is not None else at_final[0].get("observed")
    else:
        n = len(entity_checks)
        message = f"Pass ({n} entity result{'s' if n > 1 else ''})"
        raws = {str(c.get("observed")) for c in entity_checks}
        observed = entity_checks[0].get("observed") if len(raws) == 1 else "mixed"
    test_check = make_check(names(base), final, _clip(message), observed=observed,
                            details={k: v for k, v in details.items() if v is not None})
    return [test_check] + entity_checks


def metadata(doc: dict) -> dict:
    """``{"version": ..., "driver": ...}`` from wherever the release put them (values may be None)."""
    body = next((doc[k] for k in ROOT_KEYS if isinstance(doc.get(k), dict)), {})
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    version = meta.get("version") or doc.get("version") or body.get("version")
    driver = meta.get("Driver Version Detected") or doc.get("Driver Version Detected")
    return {"version": str(version) if version else None, "driver": str(driver) if driver else None}


def parse(text: str, allow_skips: bool = False) -> tuple:
    """``(document or None, test checks, problem or None)``: the problem says why the output is not a
    usable result (no JSON, no DCGM object, a runtime_error, no tests)."""
    doc = find_document(text or "")
    if doc is None:
        return None, [], "no JSON object in dcgmi's output"
    key = next((k for k in ROOT_KEYS if k in doc), None)
    if key is None:
        return doc, [], f"JSON without a {' or '.join(repr(k) for k in ROOT_KEYS)} object (keys: {sorted(doc)[:8]})"
    body = doc[key]
    if not isinstance(body, dict):
        return doc, [], f"{key!r} is a {type(body).__name__}, not an object: not a DCGM diagnostic result"
    names, checks = _Names(), []
    names("dcgm")
    categories = body.get("test_categories")
    for cat in categories if isinstance(categories, list) else []:
        if not isinstance(cat, dict):
            continue
        category = str(cat.get("category", ""))
        for test in _as_list(cat.get("tests")):
            if isinstance(test, dict):
                checks += _test_checks(category, test, allow_skips, names)
    if body.get("runtime_error"):
        return doc, checks, _clip(f"DCGM runtime error: {body['runtime_error']}")
    if not checks:
        return doc, checks, f"{key!r} holds no test results"
    return doc, checks, None


def parse_diag(text: str, allow_skips: bool = False) -> list:
    """The checks of one ``dcgmi diag -j`` output (pure): one per DCGM test and entity result, and a
    ``dcgm`` error check where the output is not a usable result."""
    doc, checks, problem = parse(text, allow_skips)
    if problem:
        meta = metadata(doc) if doc else {}
        checks.append(make_check("dcgm", ERROR, problem, details={k: v for k, v in meta.items() if v} or None))
    return checks


def missing(dcgmi: str = "dcgmi") -> str:
    """Why a DCGM diagnostic cannot run where ``dcgmi`` is not found."""
    return (f"{dcgmi} not found (not on PATH or not executable); install NVIDIA's datacenter-gpu-manager "
            f"and start its host engine (nv-hostengine) to run DCGM diagnostics")


def cannot_run(doc: Optional[dict], code: Optional[int]) -> bool:
    """Whether dcgmi's document or exit status says the diagnostic could not run on this node at all (a
    ``runtime_error``, or an exit status in :data:`CANNOT_RUN`), rather than that a test failed (pure)."""
    body = next((doc[k] for k in ROOT_KEYS if isinstance(doc.get(k), dict)), {}) if isinstance(doc, dict) else {}
    if body.get("runtime_error"):
        return True
    return code is not None and code >= 128 and (code - 256) in CANNOT_RUN


def _is_test(check: dict) -> bool:
    return ":" not in check["name"] and check["name"] != "dcgm"


def _stop(proc: subprocess.Popen, grace: float) -> tuple:
    """SIGTERM dcgmi's process group (dcgmi then stops the diagnostic), SIGKILL after ``grace``; its output."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            return proc.communicate(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return b"", b""  # something outside the group holds the pipes: give up on the output, never hang


def run(level: int, allow_skips: bool, timeout: float, dcgmi: str = "dcgmi", *, grace: float = STOP_GRACE_S) -> tuple:
    """``(metrics, checks)`` of ``dcgmi diag -r level -j``, bounded by ``timeout`` seconds.

    ``dcgmi`` is a command name looked up on PATH or a path.  Absent: one ``dcgm`` check, fail (the caller
    asked for the diagnostic).  DCGM unable to run it (:func:`cannot_run`: the host engine down...): fail.
    Past ``timeout``: the process group gets SIGTERM (dcgmi stops the diagnostic), SIGKILL ``grace``
    seconds later, and ``dcgm`` is an error.  No parseable result: ``dcgm`` is an error with the tail
    of the output.  Otherwise the checks of :func:`parse_diag` and a ``dcgm`` summary.
    """
    if level not in LEVELS:
        raise ValueError(f"DCGM run level must be one of {LEVELS}, not {level!r}")
    exe = shutil.which(dcgmi)
    if exe is None:
        return {}, [make_check("dcgm", FAIL, f"{missing(dcgmi)}: the DCGM diagnostic asked for (level {level}) "
                                             f"cannot run")]
    argv = [exe, "diag", "-r", str(level), "-j"]
    cmd = f"dcgmi diag -r {level} -j"
    metrics = {"dcgm/level": level}
    start = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
    except OSError as exc:
        return metrics, [make_check("dcgm", ERROR, f"{cmd}: cannot start {exe}: {exc}")]
    try:
        out, err = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        out, err = _stop(proc, grace)
        timed_out = True
    seconds = time.monotonic() - start
    metrics["dcgm/seconds"] = round(seconds, 3)
    text = (out or b"").decode("utf-8", "replace")
    both = text + ("\n" + err.decode("utf-8", "replace") if err else "")
    code = proc.returncode
    if timed_out:
        return metrics, [make_check("dcgm", ERROR, f"{cmd} did not finish within {timeout:g} s and was stopped "
                                                   f"(SIGTERM, SIGKILL after {grace:g} s); output: {tail(both)}",
                                    observed=round(seconds, 1), expected=timeout)]
    metrics["dcgm/exit_code"] = code
    meaning = exit_meaning(code)
    exit_text = f"exit {code}" + (f" ({meaning})" if meaning else "")
    doc, checks, problem = parse(text, allow_skips)
    meta = metadata(doc) if doc else {"version": None, "driver": None}
    details = {k: v for k, v in {"argv": argv, "exit_code": code, **meta}.items() if v is not None}
    if problem:
        message = f"{cmd}: {exit_text}; {problem}" + ("" if checks else f"; output: {tail(both)}")
        if cannot_run(doc, code):
            return metrics, checks + [make_check("dcgm", FAIL, f"DCGM could not run the diagnostic asked for: "
                                                               f"{message}", details=details)]
        return metrics, checks + [make_check("dcgm", ERROR, message, details=details)]

    tests = [c for c in checks if _is_test(c)]
    metrics["dcgm/tests"] = len(tests)
    not_passed = [c for c in tests if c["status"] != PASS]
    status = _worst([c["status"] for c in checks])
    where = f"DCGM {meta['version'] or '?'}" + (f", driver {meta['driver']}" if meta["driver"] else "")
    summary = (f"{cmd} ({where}), {exit_text}, {seconds:.0f} s: {len(tests) - len(not_passed)} of {len(tests)} "
               f"tests passed" + (": " + ", ".join(f"{c['name'][5:]} {c['status']}" for c in not_passed)
                                  if not_passed else ""))
    categories = {str(c.get("details", {}).get("category", "")).lower() for c in tests}
    if level >= 2 and categories <= {DEPLOYMENT, ""}:
        # asked for level >= 2 and got only the deployment checks: DCGM ran none of the hardware tests
        summary += f"; level {level} ran no test beyond the deployment checks"
        status = _worst([status, SKIP if allow_skips else FAIL])
    if code != 0 and status in (PASS, SKIP):
        status = ERROR
        summary += "; dcgmi exited non-zero though no test failed: the result cannot be trusted"
    return metrics, checks + [make_check("dcgm", status, _clip(summary, 2 * MESSAGE_CHARS), details=details)]
