"""The real nvidia-smi captures in ../shared/fixtures/nvidia-smi/ (next to the repository), for parametrizing.

A test parametrized over them must not silently collect nothing when the folder is missing:
:func:`captures` then fails the collection of its module, naming the folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "nvidia-smi"


def captures() -> list[Path]:
    paths = sorted(FIXTURES.glob("*.xml"))
    if not paths:
        pytest.fail(f"no nvidia-smi captures in {FIXTURES}: the shared fixtures folder (../shared/fixtures next to "
                    f"the repository) is missing", pytrace=False)
    return paths
