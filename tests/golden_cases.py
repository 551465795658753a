"""Golden audit cases: recorded command outputs in, the exact facts and checks out.

A case is a directory under ``tests/golden/audit/<case>/`` holding, per fact section (its name in
:data:`fleet.audit.facts.SECTIONS`):

- ``<section>.out``: its stdout, verbatim; or ``<section>.src``: one line, a path relative to the
  repository root (``../shared/fixtures/...``, ``tests/data/...``) whose content is the stdout;
- ``<section>.err``: its stderr (default empty); ``<section>.rc``: its exit status (default 0).

A section with no file did not run (its fact's ``when`` was false).  Instead of section files a
case may hold ``output.txt``: the script's whole output, verbatim (framing errors).  Optional
``vars.yaml``: the host's inventory variables (``gpufleet_*``); optional ``expected.md``: the verdict decided
from the documentation before running.  Expected: ``facts.json`` and
``checks.json`` (``{"status", "checks"}``), compared exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from fleet.audit import Expectations, analyse, frame_sections
from fleet.audit.facts import SECTIONS
from fleet.framing import Section

ROOT = Path(__file__).resolve().parents[1]
CASES = Path(__file__).resolve().parent / "golden" / "audit"
_SUFFIXES = (".out", ".src", ".err", ".rc")
_OTHER_FILES = {"output.txt", "vars.yaml", "facts.json", "checks.json", "expected.md"}


def case_dirs() -> list[Path]:
    return sorted(p for p in CASES.iterdir() if p.is_dir())


def _read_source(case: Path, src: Path) -> str:
    path = ROOT / src.read_text().strip()
    if not path.is_file():
        raise FileNotFoundError(f"{case.name}: {src.name} names {path}, which does not exist "
                                f"(the shared captures live in ../shared/fixtures next to the repository)")
    return path.read_text()


def sections(case: Path) -> dict[str, Section]:
    """The case's section files -> {name: Section}, in the gather script's order."""
    names = set()
    for path in case.iterdir():
        if path.name in _OTHER_FILES:
            continue
        if path.suffix not in _SUFFIXES or path.stem not in SECTIONS:
            raise ValueError(f"{case.name}: unexpected file {path.name} (sections: {', '.join(SECTIONS)}; "
                             f"suffixes {', '.join(_SUFFIXES)})")
        names.add(path.stem)
    out = {}
    for name in (n for n in SECTIONS if n in names):
        out_file, src_file = case / f"{name}.out", case / f"{name}.src"
        if out_file.exists() == src_file.exists():
            raise ValueError(f"{case.name}: section {name} needs exactly one of {name}.out and {name}.src")
        stdout = out_file.read_text() if out_file.exists() else _read_source(case, src_file)
        err, rc = case / f"{name}.err", case / f"{name}.rc"
        out[name] = Section(stdout, err.read_text() if err.exists() else "",
                            int(rc.read_text()) if rc.exists() else 0)
    return out


def output(case: Path) -> str:
    """The framed output the gather script would have printed on that host."""
    whole = case / "output.txt"
    if whole.exists():
        if sections(case):
            raise ValueError(f"{case.name}: output.txt and section files are exclusive")
        return whole.read_text()
    return frame_sections(sections(case))


def expectations(case: Path) -> Expectations:
    path = case / "vars.yaml"
    return Expectations.from_vars(yaml.safe_load(path.read_text()) if path.exists() else {})


def run(case: Path) -> tuple[dict, dict]:
    """(facts, checks) as the JSON report holds them."""
    report = json.loads(json.dumps(analyse(output(case), expectations(case)).to_dict()))
    return report["facts"], {"status": report["status"], "checks": report["checks"]}


def dump(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
