"""gpufleet's XID / SXid policy: NVIDIA's catalogue as data, and the verdict each immediate action gets.

Source (:data:`CATALOG_SOURCE`): NVIDIA's Xid catalogue, "Analyzing Xid Errors with the Xid Catalog"
(docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html, the table for Ampere and newer GPUs, column
"Resolution Bucket (Immediate Action)"), as NVIDIA publishes it machine-readable in NVIDIA/NVSentinel
(``gpu-health-monitor/xiderrorsmapping.csv`` and ``nvswitch-health-monitor/sxiderrorsmapping.csv`` at commit
6f8b0fcfa8e502bdda78fabf96facef729a9285b; the Xid file is kept verbatim in
tests/data/kernel/catalog/ and a test keeps :data:`XIDS` equal to it).

Verdict (:data:`ACTION_VERDICT`): an immediate action that takes the GPU or node out of service (reset the GPU,
reboot, drain, an NVLink / fabric workflow, check the hardware, report an error NVIDIA does not expect) fails
the node; restart the application or ignore warns (the line is still worth a look).  An Xid the catalogue does
not list warns and says so.  The driver's own words override the number where they speak; see
:mod:`fleet.audit.checks_kernel`.  The NVLink5 Xids 144-150 have one headline action here
(WORKFLOW_NVLINK5_ERR); their lines are decoded per unit and error status with NVIDIA's "XID 144-150 Decode"
table (:mod:`fleet.audit.xid_nvlink5`), and the headline action applies only where that table cannot.
"""

from __future__ import annotations

from fleet.status import Status

CATALOG_SOURCE = ("NVIDIA Xid catalog (docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html, "
                  "immediate actions as in NVIDIA/NVSentinel xiderrorsmapping.csv @ 6f8b0fcf)")
CATALOG_VERSION = "NVIDIA/NVSentinel@6f8b0fcfa8e502bdda78fabf96facef729a9285b"

# NVIDIA's immediate action -> (gpufleet verdict, what to do, in words).
ACTION_VERDICT: dict[str, tuple[Status, str]] = {
    "RESTART_APP": (Status.WARN, "restart the application"),
    "IGNORE": (Status.WARN, "no action needed (NVIDIA: ignore)"),
    "WORKFLOW_XID_45": (Status.WARN, "restart the application; if other Xids came with it, follow theirs"),
    "CHECK_UVM": (Status.WARN, "check the application's unified-memory (UVM) use"),
    "XID_154_EVAL": (Status.WARN, "follow the recovery action the driver names"),
    "RESET_GPU": (Status.FAIL, "drain the node and reset the GPU (nvidia-smi -r)"),
    "RESTART_BM": (Status.FAIL, "drain and reboot the node (bare metal)"),
    "RESTART_VM": (Status.FAIL, "drain and restart the VM"),
    "RESET_FABRIC": (Status.FAIL, "drain the node and reset the NVLink fabric (GPUs and NVSwitches)"),
    "WORKFLOW_XID_48": (Status.FAIL, "double-bit ECC: drain, reset the GPU, check row remapping / page retirement"),
    "WORKFLOW_NVLINK_ERR": (Status.FAIL, "NVLink error: drain and follow NVIDIA's NVLink workflow (decode the "
                                         "registers, check links, run field diagnostics)"),
    "WORKFLOW_NVLINK5_ERR": (Status.FAIL, "NVLink error: drain and follow NVIDIA's NVLink5 workflow"),
    "WORKFLOW_NVLINK_POTENTIALY_FATAL_ERR": (Status.FAIL, "NVSwitch error: drain and follow NVIDIA's NVLink workflow"),
    "INVESTIGATE_LINK_SI": (Status.FAIL, "drain and investigate the NVLink's signal integrity"),
    "CHECK_LINK_MECHANICAL_CONNECTIONS": (Status.FAIL, "drain and check the NVLink's mechanical connections"),
    "RUN_FIELDDIAG": (Status.FAIL, "drain and run NVIDIA's field diagnostics"),
    "CHECK_MECHANICALS": (Status.FAIL, "drain and check the GPU's power cabling and seating"),
    "CHECK_THERMALS": (Status.FAIL, "drain and check cooling"),
    "CHECK_FM_CONFIG": (Status.FAIL, "check the Fabric Manager configuration"),
    "UPDATE_SWFW": (Status.FAIL, "update the driver / firmware"),
    "UNEXPECTED_ERR_REPORT_ISSUE": (Status.FAIL, "an Xid NVIDIA does not expect: drain and report it to NVIDIA "
                                                 "(nvidia-bug-report.sh)"),
    "REPORT_ISSUE": (Status.FAIL, "drain and report it to NVIDIA (nvidia-bug-report.sh)"),
}
# Xid 154's action column is prose ("Follow guidance as it aapplies to another Xid"): its line names the action.
_PROSE_ACTIONS = {"Follow guidance as it aapplies to another Xid": "XID_154_EVAL"}

# Xid -> (NVIDIA's mnemonic, NVIDIA's immediate action), as published (see the module docstring).
XIDS: dict[int, tuple[str, str]] = {
    1: ('ROBUST_CHANNEL_FIFO_ERROR_FIFO_METHOD', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    2: ('ROBUST_CHANNEL_FIFO_ERROR_SW_METHOD', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    3: ('ROBUST_CHANNEL_FIFO_ERROR_UNK_METHOD', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    4: ('ROBUST_CHANNEL_FIFO_ERROR_CHANNEL_BUSY', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    5: ('ROBUST_CHANNEL_FIFO_ERROR_RUNOUT_OVERFLOW', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    6: ('ROBUST_CHANNEL_FIFO_ERROR_PARSE_ERR', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    7: ('ROBUST_CHANNEL_FIFO_ERROR_PTE_ERR', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    8: ('ROBUST_CHANNEL_FIFO_ERROR_IDLE_TIMEOUT', 'RESTART_APP'),
    9: ('ROBUST_CHANNEL_GR_ERROR_INSTANCE', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    10: ('ROBUST_CHANNEL_GR_ERROR_SINGLE_STEP', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    11: ('ROBUST_CHANNEL_GR_ERROR_MISSING_HW', 'RESTART_APP'),
    12: ('ROBUST_CHANNEL_GR_ERROR_SW_METHOD', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    13: ('ROBUST_CHANNEL_GR_EXCEPTION / ROBUST_CHANNEL_GR_ERROR_SW_NOTIFY', 'RESTART_APP'),
    14: ('ROBUST_CHANNEL_FAKE_ERROR', 'IGNORE'),
    15: ('ROBUST_CHANNEL_SCANLINE_TIMEOUT', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    16: ('ROBUST_CHANNEL_VBLANK_CALLBACK_TIMEOUT', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    17: ('ROBUST_CHANNEL_PARAMETER_ERROR', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    18: ('ROBUST_CHANNEL_BUS_MASTER_TIMEOUT_ERROR', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    19: ('ROBUST_CHANNEL_DISP_MISSED_NOTIFIER', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    20: ('ROBUST_CHANNEL_MPEG_ERROR_SW_METHOD', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    21: ('ROBUST_CHANNEL_ME_ERROR_SW_METHOD', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    22: ('ROBUST_CHANNEL_VP_ERROR_SW_METHOD', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    23: ('ROBUST_CHANNEL_RC_LOGGING_ENABLED', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    24: ('ROBUST_CHANNEL_GR_SEMAPHORE_TIMEOUT', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    25: ('ROBUST_CHANNEL_GR_ILLEGAL_NOTIFY', 'RESTART_APP'),
    26: ('ROBUST_CHANNEL_FIFO_ERROR_FBISTATE_TIMEOUT', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    27: ('ROBUST_CHANNEL_VP_ERROR', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    28: ('ROBUST_CHANNEL_VP2_ERROR', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    29: ('ROBUST_CHANNEL_BSP_ERROR', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    30: ('ROBUST_CHANNEL_BAD_ADDR_ACCESS', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    31: ('ROBUST_CHANNEL_FIFO_ERROR_MMU_ERR_FLT', 'RESTART_APP'),
    32: ('ROBUST_CHANNEL_PBDMA_ERROR', 'RESTART_APP'),
    33: ('ROBUST_CHANNEL_SEC_ERROR', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    34: ('ROBUST_CHANNEL_MSVLD_ERROR', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    35: ('ROBUST_CHANNEL_MSPDEC_ERROR', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    36: ('ROBUST_CHANNEL_MSPPP_ERROR', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    37: ('ROBUST_CHANNEL_FECS_ERR_UNIMP_FIRMWARE_METHOD', 'IGNORE'),
    38: ('ROBUST_CHANNEL_FECS_ERR_WATCHDOG_TIMEOUT', 'IGNORE'),
    39: ('ROBUST_CHANNEL_CE0_ERROR', 'RESTART_APP'),
    40: ('ROBUST_CHANNEL_CE1_ERROR', 'RESTART_APP'),
    41: ('ROBUST_CHANNEL_CE2_ERROR', 'RESTART_APP'),
    42: ('ROBUST_CHANNEL_VIC_ERROR', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    43: ('ROBUST_CHANNEL_RESETCHANNEL_VERIF_ERROR', 'IGNORE'),
    44: ('ROBUST_CHANNEL_GR_FAULT_DURING_CTXSW', 'IGNORE'),
    45: ('ROBUST_CHANNEL_PREEMPTIVE_REMOVAL', 'WORKFLOW_XID_45'),
    46: ('ROBUST_CHANNEL_GPU_TIMEOUT_ERROR', 'RESET_GPU'),
    47: ('ROBUST_CHANNEL_NVENC0_ERROR', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    48: ('ROBUST_CHANNEL_GPU_ECC_DBE', 'WORKFLOW_XID_48'),
    49: ('SILENT_RUNNING_CONSTANT_LEVEL_SET_BY_REGISTRY', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    50: ('SILENT_RUNNING_LEVEL_TRANSITION_DUE_TO_RC_ERROR', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    51: ('SILENT_RUNNING_STRESS_TEST_FAILURE', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    52: ('SILENT_RUNNING_LEVEL_TRANS_DUE_TO_TEMP_RISE', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    53: ('SILENT_RUNNING_TEMP_REDUCED_CLOCKING', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    54: ('SILENT_RUNNING_PWR_REDUCED_CLOCKING', 'CHECK_MECHANICALS'),
    55: ('SILENT_RUNNING_TEMPERATURE_READ_ERROR', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    56: ('DISPLAY_CHANNEL_EXCEPTION', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    57: ('FB_LINK_TRAINING_FAILURE_ERROR', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    58: ('FB_MEMORY_ERROR', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    59: ('PMU_ERROR', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    60: ('ROBUST_CHANNEL_SEC2_ERROR', 'RESTART_APP'),
    61: ('PMU_BREAKPOINT', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    62: ('PMU_HALT_ERROR', 'RESET_GPU'),
    63: ('INFOROM_DRAM_RETIREMENT_EVENT', 'IGNORE'),
    64: ('INFOROM_DRAM_RETIREMENT_FAILURE', 'RESET_GPU'),
    65: ('ROBUST_CHANNEL_NVENC1_ERROR', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    66: ('ROBUST_CHANNEL_FECS_ERR_REG_ACCESS_VIOLATION', 'IGNORE'),
    67: ('ROBUST_CHANNEL_FECS_ERR_VERIF_VIOLATION', 'IGNORE'),
    68: ('ROBUST_CHANNEL_NVDEC0_ERROR', 'RESTART_APP'),
    69: ('ROBUST_CHANNEL_GR_CLASS_ERROR', 'RESTART_APP'),
    70: ('ROBUST_CHANNEL_CE3_ERROR', 'RESTART_APP'),
    71: ('ROBUST_CHANNEL_CE4_ERROR', 'RESTART_APP'),
    72: ('ROBUST_CHANNEL_CE5_ERROR', 'RESTART_APP'),
    73: ('ROBUST_CHANNEL_NVENC2_ERROR', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    74: ('NVLINK_ERROR', 'WORKFLOW_NVLINK_ERR'),
    75: ('ROBUST_CHANNEL_CE6_ERROR', 'RESTART_APP'),
    76: ('ROBUST_CHANNEL_CE7_ERROR', 'RESTART_APP'),
    77: ('ROBUST_CHANNEL_CE8_ERROR', 'RESTART_APP'),
    78: ('VGPU_START_ERROR', 'UPDATE_SWFW'),
    79: ('ROBUST_CHANNEL_GPU_HAS_FALLEN_OFF_THE_BUS', 'RESTART_BM'),
    80: ('PBDMA_PUSHBUFFER_CRC_MISMATCH', 'RESTART_APP'),
    81: ('ROBUST_CHANNEL_VGA_SUBSYSTEM_ERROR', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    82: ('ROBUST_CHANNEL_NVJPG0_ERROR', 'RESTART_APP'),
    83: ('ROBUST_CHANNEL_NVDEC1_ERROR', 'RESTART_APP'),
    84: ('ROBUST_CHANNEL_NVDEC2_ERROR', 'RESTART_APP'),
    85: ('ROBUST_CHANNEL_CE9_ERROR', 'RESTART_APP'),
    86: ('ROBUST_CHANNEL_OFA0_ERROR', 'RESTART_APP'),
    87: ('NVTELEMETRY_DRIVER_REPORT', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    88: ('ROBUST_CHANNEL_NVDEC3_ERROR', 'RESTART_APP'),
    89: ('ROBUST_CHANNEL_NVDEC4_ERROR', 'RESTART_APP'),
    90: ('LTC_ERROR', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    91: ('RESERVED_XID', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    92: ('EXCESSIVE_SBE_INTERRUPTS', 'IGNORE'),
    93: ('INFOROM_ERASE_LIMIT_EXCEEDED', 'IGNORE'),
    94: ('ROBUST_CHANNEL_CONTAINED_ERROR', 'RESTART_APP'),
    95: ('ROBUST_CHANNEL_UNCONTAINED_ERROR', 'RESET_GPU'),
    96: ('ROBUST_CHANNEL_NVDEC5_ERROR', 'RESTART_APP'),
    97: ('ROBUST_CHANNEL_NVDEC6_ERROR', 'RESTART_APP'),
    98: ('ROBUST_CHANNEL_NVDEC7_ERROR', 'RESTART_APP'),
    99: ('ROBUST_CHANNEL_NVJPG1_ERROR', 'RESTART_APP'),
    100: ('ROBUST_CHANNEL_NVJPG2_ERROR', 'RESTART_APP'),
    101: ('ROBUST_CHANNEL_NVJPG3_ERROR', 'RESTART_APP'),
    102: ('ROBUST_CHANNEL_NVJPG4_ERROR', 'RESTART_APP'),
    103: ('ROBUST_CHANNEL_NVJPG5_ERROR', 'RESTART_APP'),
    104: ('ROBUST_CHANNEL_NVJPG6_ERROR', 'RESTART_APP'),
    105: ('ROBUST_CHANNEL_NVJPG7_ERROR', 'RESTART_APP'),
    106: ('SMBPBI_TEST_MESSAGE', 'IGNORE'),
    107: ('SMBPBI_TEST_MESSAGE_SILENT', 'IGNORE'),
    108: ('DESTINATION_FLA_TRANSLATION_ERROR', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    109: ('ROBUST_CHANNEL_CTXSW_TIMEOUT_ERROR', 'RESET_GPU'),
    110: ('SEC_FAULT_ERROR', 'RESET_GPU'),
    111: ('BUNDLE_ERROR_EVENT', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    112: ('DISP_SUPERVISOR_ERROR', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    113: ('DP_LT_FAILURE', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    114: ('HEAD_RG_UNDERFLOW', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    115: ('CORE_CHANNEL_REGS', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    116: ('WINDOW_CHANNEL_REGS', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    117: ('CURSOR_CHANNEL_REGS', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    118: ('HEAD_REGS', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    119: ('GSP_RPC_TIMEOUT', 'RESET_GPU'),
    120: ('GSP_ERROR', 'RESET_GPU'),
    121: ('C2C_ERROR', 'IGNORE'),
    122: ('SPI_PMU_RPC_READ_FAIL', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    123: ('SPI_PMU_RPC_WRITE_FAIL', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    124: ('SPI_PMU_RPC_ERASE_FAIL', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    125: ('INFOROM_FS_ERROR', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    126: ('ROBUST_CHANNEL_CE10_ERROR', 'RESTART_APP'),
    127: ('ROBUST_CHANNEL_CE11_ERROR', 'RESTART_APP'),
    128: ('ROBUST_CHANNEL_CE12_ERROR', 'RESTART_APP'),
    129: ('ROBUST_CHANNEL_CE13_ERROR', 'RESTART_APP'),
    130: ('ROBUST_CHANNEL_CE14_ERROR', 'RESTART_APP'),
    131: ('ROBUST_CHANNEL_CE15_ERROR', 'RESTART_APP'),
    132: ('ROBUST_CHANNEL_CE16_ERROR', 'RESTART_APP'),
    133: ('ROBUST_CHANNEL_CE17_ERROR', 'RESTART_APP'),
    134: ('ROBUST_CHANNEL_CE18_ERROR', 'RESTART_APP'),
    135: ('ROBUST_CHANNEL_CE19_ERROR', 'RESTART_APP'),
    136: ('ALI_TRAINING_FAIL', 'RESET_GPU'),
    137: ('NVLINK_FLA_PRIV_ERR', 'IGNORE'),
    138: ('ROBUST_CHANNEL_DLA_ERROR', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    139: ('ROBUST_CHANNEL_OFA1_ERROR', 'RESTART_APP'),
    140: ('UNRECOVERABLE_ECC_ERROR_ESCAPE', 'RESET_GPU'),
    141: ('ROBUST_CHANNEL_FAST_PATH_ERROR', 'IGNORE'),
    142: ('ROBUST_CHANNEL_NVENC3_ERROR', 'UNEXPECTED_ERR_REPORT_ISSUE'),
    143: ('GPU_INIT_ERROR', 'RESET_GPU'),
    144: ('NVLINK_SAW_ERROR', 'WORKFLOW_NVLINK5_ERR'),
    145: ('NVLINK_RLW_ERROR', 'WORKFLOW_NVLINK5_ERR'),
    146: ('NVLINK_TLW_ERROR', 'WORKFLOW_NVLINK5_ERR'),
    147: ('NVLINK_TREX_ERROR', 'WORKFLOW_NVLINK5_ERR'),
    148: ('NVLINK_NVLPW_CTRL_ERROR', 'WORKFLOW_NVLINK5_ERR'),
    149: ('NVLINK_NETIR_ERROR', 'WORKFLOW_NVLINK5_ERR'),
    150: ('NVLINK_MSE_ERROR', 'WORKFLOW_NVLINK5_ERR'),
    151: ('ROBUST_CHANNEL_KEY_ROTATION_ERROR', 'RESTART_VM'),
    152: ('ROBUST_CHANNEL_DLA_SMMU_ERROR', 'IGNORE'),
    153: ('ROBUST_CHANNEL_DLA_TIMEOUT', 'IGNORE'),
    154: ('GPU_RECOVERY_ACTION_CHANGED', 'Follow guidance as it aapplies to another Xid'),
    155: ('NVLINK_SW_DEFINED_ERROR', 'RESET_GPU'),
    156: ('RESOURCE_RETIREMENT_EVENT', 'RESET_GPU'),
    157: ('RESOURCE_RETIREMENT_FAILURE', 'IGNORE'),
    158: ('GPU_FATAL_TIMEOUT', 'RESET_GPU'),
    159: ('ROBUST_CHANNEL_CHI_NON_DATA_ERROR', 'CHECK_UVM'),
    160: ('CHANNEL_RETIREMENT_EVENT', 'RESTART_BM'),
    161: ('CHANNEL_RETIREMENT_FAILURE', 'IGNORE'),
    162: ('', 'RESET_GPU'),
}

# The driver's recovery action (Xid 154 "GPU recovery action changed from 0x0 (None) to 0xN (<label>)"; NVML's
# nvmlDeviceGpuRecoveryAction_t): anything but None takes the GPU out of service.
RECOVERY_ACTIONS: dict[str, tuple[Status, str]] = {
    "None": (Status.WARN, "the driver needs no recovery action"),
    "GPU Reset Required": (Status.FAIL, "drain the node and reset the GPU"),
    "Node Reboot Required": (Status.FAIL, "drain and reboot the node"),
    "Drain P2P": (Status.FAIL, "drain peer-to-peer traffic from the GPU"),
    "Drain and Reset": (Status.FAIL, "drain the node and reset the GPU"),
}


def _codes(spec: str) -> list[int]:
    out = []
    for part in spec.split():
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


# SXid (NVSwitch) -> NVIDIA's immediate action, from nvswitch-health-monitor/sxiderrorsmapping.csv (see above),
# grouped by action.
_SXID_SPEC = {
    "IGNORE": "10001-10002 10005 11002-11003 11005-11006 11008 11010-11012 11014-11016 11021-11027 11031-11047 "
              "12003 12006 12009-12019 12021 12023 12029 12033-12034 12036 12038 12040 12042 12044 12046 "
              "12049-12051 14003 14005 14007 14009 14015 15002-15004 15007-15008 15011 15014 15016 15018 15020 "
              "16001 17001 17004-17005 17008 19009 19022-19026 19033-19035 19038-19045 19049-19052 19055 19057 "
              "19059 19062 19065 19068 19071-19073 19077-19078 19081-19082 20001-20003 20008 20013-20015 20035 "
              "22001-22002 22004-22010 22013 24001-24003 25001-25007 26008 28002 28004 29001 29003 29005-29006 "
              "30001 30003 30005-30006",
    "RESET_FABRIC": "10003 10006-10008 12020 12028 12032 14017 19084 22003 22011 23001-23008 23010-23016 "
                    "26001-26007",
    "RESET_GPU": "14001-14002 14014 14018 20034 24007-24010",
    "CHECK_THERMALS": "10004 28001 28003 28005",
    "CHECK_FM_CONFIG": "11004",
    "REPORT_ISSUE": "28006",
    "WORKFLOW_NVLINK_POTENTIALY_FATAL_ERR": "11001 11007 11009 11013 11017-11020 11028-11030 12001-12002 12022 "
                                            "12024-12027 12030-12031 12035 12037 12039 12041 12043 12045 "
                                            "12047-12048 14004 14006 14008 14010 14016 15001 15005-15006 "
                                            "15009-15010 15012-15013 15015 15017 15019 17002-17003 17006-17007 "
                                            "19004-19006 19013-19017 19046-19048 19053-19054 19056 19058 "
                                            "19060-19061 19063-19064 19066-19067 19069-19070 22012 23009 23017 "
                                            "24004-24006 29002 29004 30002 30004",
    "UNEXPECTED_ERR_REPORT_ISSUE": "12004-12005 12007-12008 13001-13008 14011-14013 16002-16003 18011 18016 "
                                   "19027-19032 19074-19076 19079 20011 20016-20033 21001-21010",
    "INVESTIGATE_LINK_SI": "18001-18010 18012-18015 18017-18020 19001-19003 19007-19008 19010-19012 19018-19021 "
                           "20004-20005 25008-25010",
    "RUN_FIELDDIAG": "19036-19037 19080 19083 20006-20007 20036-20038",
    "CHECK_LINK_MECHANICAL_CONNECTIONS": "20009-20010 20012 27001-27007",
}
SXIDS: dict[int, str] = {code: action for action, spec in _SXID_SPEC.items() for code in _codes(spec)}


def xid_action(xid: int) -> str | None:
    """NVIDIA's immediate action for ``xid`` (an :data:`ACTION_VERDICT` key), None when not catalogued."""
    entry = XIDS.get(xid)
    if entry is None:
        return None
    return _PROSE_ACTIONS.get(entry[1], entry[1])


def xid_name(xid: int) -> str:
    entry = XIDS.get(xid)
    return entry[0] if entry and entry[0] else f"Xid {xid}"


def verdict(action: str | None) -> tuple[Status, str]:
    """(verdict, advice) for NVIDIA's action; an action gpufleet does not know warns and says so."""
    if action is None:
        return Status.WARN, "not in NVIDIA's Xid catalogue: look it up for this GPU and driver"
    return ACTION_VERDICT.get(action, (Status.WARN, f"NVIDIA's action {action!r} is not in gpufleet's policy"))
