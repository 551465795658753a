"""What the controller may know about verify without importing torch.

The controller (``fleet/``) has no torch: it imports this module, never the stages.  It holds the report's
schema name, the stage names in the order they run, the profile names, the statuses (from
:mod:`verify.status`, the one severity table), the DCGM run levels and the name of the check that says why a
stage did not run.  ``verify/stages.py`` declares every stage of :data:`STAGES` (a test holds the two to one
list); ``verify/profiles.py`` builds the profiles named here.
"""

from __future__ import annotations

from verify import SCHEMA, __version__
from verify.status import CHECK_STATUSES, ERROR, FAIL, PASS, REPORT_STATUSES, SKIP, WARN, severity

__all__ = ["SCHEMA", "VERSION", "STAGES", "SCOPES", "WORLD", "DEVICE", "RANK", "BASE_PROFILES", "SUSTAINED",
           "DURATION", "BURN_SHARE", "PROFILES", "DCGM_LEVELS", "DCGM_SUGGESTED_TIMEOUT_S", "NOT_ASKED",
           "stage_check",
           "PASS", "WARN", "FAIL", "SKIP", "ERROR", "CHECK_STATUSES", "REPORT_STATUSES", "severity"]

VERSION = __version__

# The stages, in the order a run takes them (``--checks`` names a subset; the environment checks always run).
STAGES = ("collectives", "ddp", "compute", "memory", "inference", "pipeline", "burn", "memtest", "dcgm")

# A stage's scope: ``world`` every rank takes part (the same result on every rank); ``device`` once per device
# of a rank (its checks named after the device); ``rank`` on the ranks it is placed on (its checks from rank 0,
# another rank's only when not pass or skip).  The report's merge keeps checks by these scopes.
WORLD, DEVICE, RANK = "world", "device", "rank"
SCOPES = (WORLD, DEVICE, RANK)

# Profiles: two base profiles, and the sustained ones (a base profile's stages, then burn and memory test on
# every device for --duration seconds, BURN_SHARE of it burning; DURATION when --duration is not given).
BASE_PROFILES = ("quick", "full")
SUSTAINED = {"nightly": "quick", "acceptance": "full"}
DURATION = {"nightly": 300.0, "acceptance": 1800.0}
BURN_SHARE = 0.7
# The burn's own warning rule (verify/burn.py judges with it; summary.html tints with it).
BURN_SAG = 0.90  # last quarter's median / first quarter's median below this: throughput sagged
BURN_SPREAD = 0.20  # (p95 - p5) / median above this: throughput varied
PROFILES = BASE_PROFILES + tuple(SUSTAINED)

# ``dcgmi diag -r N``: the levels, and wall-clock budgets that leave room over NVIDIA's figures (level 1
# seconds, 2 about 2 min, 3 about 15-30 min, 4 longer): the controller sizes a node's timeout with them.
DCGM_LEVELS = (1, 2, 3, 4)
DCGM_SUGGESTED_TIMEOUT_S = {1: 300.0, 2: 900.0, 3: 3600.0, 4: 10800.0}


# What a stage/<name> skip check says of an opt-in stage nobody asked for (not news: the terminal leaves it out).
NOT_ASKED = "not asked for"


def stage_check(stage: str) -> str:
    """The name of the check that says why ``stage`` did not run (``skip``: left out by the profile or not
    asked for; ``fail``: asked for and it could not run) or that it raised (``error``): ``stage/<stage>``."""
    return f"stage/{stage}"
