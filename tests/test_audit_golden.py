"""Every golden case (tests/golden/audit/<case>/, see tests/golden_cases.py): recorded outputs -> analyse -> the
exact facts.json and checks.json.  ``GPUFLEET_UPDATE_GOLDEN=1`` rewrites them instead: review the diff."""

from __future__ import annotations

import json
import os
import re

import pytest

from fleet.audit.analysis import ANALYSIS_CHECK_NAMES
from fleet.audit.checks import CHECK_NAMES
from tests import golden_cases

UPDATE = os.environ.get("GPUFLEET_UPDATE_GOLDEN") == "1"
CASES = golden_cases.case_dirs()


def test_enough_cases():
    assert len(CASES) >= 10, f"expected the golden cases in {golden_cases.CASES}"


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_golden(case):
    facts, checks = golden_cases.run(case)
    names = {re.sub(r":gpu\d+$", ":gpuN", c["name"]) for c in checks["checks"]}
    assert names <= set(CHECK_NAMES) | set(ANALYSIS_CHECK_NAMES), "a check name missing from CHECK_NAMES"
    if UPDATE:
        (case / "facts.json").write_text(golden_cases.dump(facts))
        (case / "checks.json").write_text(golden_cases.dump(checks))
    for name, got in (("facts.json", facts), ("checks.json", checks)):
        path = case / name
        assert path.exists(), f"{path} missing: run with GPUFLEET_UPDATE_GOLDEN=1 and review what it writes"
        assert got == json.loads(path.read_text()), f"{case.name}/{name} differs"
