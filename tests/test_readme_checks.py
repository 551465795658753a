"""The audit check table (docs/audit.md, once in the README) names exactly the checks the code can produce."""

from __future__ import annotations

import re
from pathlib import Path

from fleet.audit.analysis import ANALYSIS_CHECK_NAMES
from fleet.audit.checks import CHECK_NAMES
from fleet.audit.consistency import CHECK_NAMES as FLEET_CHECK_NAMES
from fleet.audit.xid_catalog import CATALOG_VERSION
from fleet.history.changes import HISTORY_CHECK_NAMES

AUDIT_PAGE = Path(__file__).resolve().parents[1] / "docs" / "audit.md"


def table_rows() -> dict[str, list[str]]:
    """{check name: the row's cells} from the table whose header starts with ``| check |``."""
    lines = AUDIT_PAGE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| check |"))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        for name in re.findall(r"`([^`]+)`", cells[0]):
            assert name not in rows, f"{name} listed twice in {AUDIT_PAGE.name}"
            rows[name] = cells
    return rows


def test_readme_table_lists_every_check_name():
    assert set(table_rows()) == (set(CHECK_NAMES) | set(ANALYSIS_CHECK_NAMES) | set(FLEET_CHECK_NAMES)
                                 | set(HISTORY_CHECK_NAMES))


def test_readme_names_the_xid_policy_and_its_catalogue():
    fails = table_rows()["xid"][1]
    assert "fleet/audit/xid_catalog.py" in fails and CATALOG_VERSION.split("@")[1][:8] in fails
