"""Reference figures: what each common NVIDIA GPU model should reach.

Every entry gives, with its source, the *peak* figures from NVIDIA's datasheet
or architecture whitepaper:

- ``matmul_tflops``: dense (no structured sparsity) matrix-multiply TFLOP/s per
  dtype: ``fp32`` (plain FP32, no tensor cores), ``tf32``, ``bf16`` and
  ``fp16`` (tensor cores with FP32 accumulate, which is what PyTorch uses),
  ``fp8`` (e4m3, FP32 accumulate: the GeForce whitepaper's "with FP32
  accumulate" figure, half its FP16-accumulate one).  ``None`` where the chip
  has no such tensor-core path (T4, V100: no TF32/BF16; before Ada: no FP8).
- ``memory_gbps``: device memory bandwidth, GB/s (1e9 bytes).  Compared with
  verify's ``memory/d2d/gbps``, which counts bytes read plus bytes written.
- ``pcie_gbps``: host link bandwidth *per direction*, GB/s (datasheets quote
  both directions together: "PCIe Gen5 128 GB/s" is 64 GB/s each way).
  Compared with ``memory/h2d/gbps`` and ``memory/d2h/gbps``.

The *achievable* figure is what a healthy card reaches in practice with the
kernels verify runs: ``peak * ACHIEVABLE[kind]`` (documented fractions below,
matmul 0.70, memory 0.85, PCIe 0.80 of peak).  On an H100 80GB HBM3 verify's
quick profile measured 716 of 989 bf16 TFLOP/s (0.72), 52 of 67 fp32 (0.77),
3010 of 3350 GB/s in a device copy (0.90) and 55 of 64 GB/s each way over
PCIe Gen5 (0.86).  The fp8 fraction is the matmul one, not yet measured
here on an fp8 GPU.

Grading (:func:`grade`): a measured figure at or above ``WARN_BELOW`` (0.8) of
the achievable figure passes, below it warns, below ``FAIL_BELOW`` (0.5) of it
fails.

:func:`lookup` is pure and importable without torch, so the controller can
reuse it on nvidia-smi product names.
"""

from __future__ import annotations

import math
import re
from typing import Optional

ACHIEVABLE = {"matmul": 0.70, "memory": 0.85, "pcie": 0.80}
WARN_BELOW = 0.8
FAIL_BELOW = 0.5

_H100_DS = ("NVIDIA H100 Tensor Core GPU datasheet",
            "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet")
_H200_DS = ("NVIDIA H200 Tensor Core GPU product page / datasheet",
            "https://www.nvidia.com/en-us/data-center/h200/")
_A100_DS = ("NVIDIA A100 Tensor Core GPU datasheet",
            "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
            "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf")
_L40S_DS = ("NVIDIA L40S GPU datasheet", "https://resources.nvidia.com/en-us-l40s/l40s-datasheet-28413")
_L40_DS = ("NVIDIA L40 GPU datasheet",
           "https://images.nvidia.com/content/Solutions/data-center/vgpu-L40-datasheet.pdf")
_A10_DS = ("NVIDIA A10 Tensor Core GPU datasheet",
           "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a10/pdf/datasheet-new/"
           "nvidia-a10-datasheet.pdf")
_A10G_SRC = ("A10G is AWS-specific (EC2 G5), no public NVIDIA datasheet; figures as published in "
             "'NVIDIA A10 vs A10G for ML model inference' (Baseten)",
             "https://www.baseten.co/blog/nvidia-a10-vs-a10g-for-ml-model-inference/")
_T4_DS = ("NVIDIA T4 Tensor Core GPU datasheet",
          "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/tesla-t4/t4-tensor-core-datasheet-951643.pdf")
_L4_DS = ("NVIDIA L4 Tensor Core GPU datasheet",
          "https://resources.nvidia.com/en-us-data-center-overview/l4-gpu-datasheet")
_V100_DS = ("NVIDIA V100 Tensor Core GPU datasheet",
            "https://images.nvidia.com/content/technologies/volta/pdf/volta-v100-datasheet-update-us-1165301-r5.pdf")
_ADA_WP = ("NVIDIA Ada Lovelace GPU Architecture whitepaper v2.1, Appendix A (GeForce RTX 4090)",
           "https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf")
_GA102_WP = ("NVIDIA Ampere GA102 GPU Architecture whitepaper v2, Appendix A (GeForce RTX 3090)",
             "https://www.nvidia.com/content/PDF/nvidia-ampere-ga-102-gpu-architecture-whitepaper-v2.pdf")

PCIE_GEN3, PCIE_GEN4, PCIE_GEN5 = 16.0, 32.0, 64.0  # x16, GB/s per direction


def _entry(model, source, fp32, tf32, bf16, fp16, memory, pcie, fp8=None):
    return {
        "model": model,
        "source": source[0],
        "source_url": source[1],
        "matmul_tflops": {"fp32": fp32, "tf32": tf32, "bf16": bf16, "fp16": fp16, "fp8": fp8},
        "memory_gbps": memory,
        "pcie_gbps": pcie,
    }


# key -> peak figures.  Tensor-core figures are the datasheets' dense ones
# (half of the "with sparsity" figures where only those are printed).
TABLE = {
    "h100-sxm": _entry("H100 SXM5 80GB", _H100_DS, 67.0, 494.7, 989.4, 989.4, 3350.0, PCIE_GEN5, 1978.9),
    "h100-pcie": _entry("H100 PCIe 80GB", _H100_DS, 51.2, 378.0, 756.0, 756.0, 2000.0, PCIE_GEN5, 1513.0),
    "h100-nvl": _entry("H100 NVL 94GB", _H100_DS, 60.0, 417.5, 835.0, 835.0, 3900.0, PCIE_GEN5, 1670.5),
    "h200-sxm": _entry("H200 SXM 141GB", _H200_DS, 67.0, 494.7, 989.4, 989.4, 4800.0, PCIE_GEN5, 1978.9),
    "h200-nvl": _entry("H200 NVL 141GB", _H200_DS, 60.0, 417.5, 835.5, 835.5, 4800.0, PCIE_GEN5, 1670.5),
    "a100-sxm-80gb": _entry("A100 SXM4 80GB", _A100_DS, 19.5, 156.0, 312.0, 312.0, 2039.0, PCIE_GEN4),
    "a100-sxm-40gb": _entry("A100 SXM4 40GB", _A100_DS, 19.5, 156.0, 312.0, 312.0, 1555.0, PCIE_GEN4),
    "a100-pcie-80gb": _entry("A100 PCIe 80GB", _A100_DS, 19.5, 156.0, 312.0, 312.0, 1935.0, PCIE_GEN4),
    "a100-pcie-40gb": _entry("A100 PCIe 40GB", _A100_DS, 19.5, 156.0, 312.0, 312.0, 1555.0, PCIE_GEN4),
    "l40s": _entry("L40S", _L40S_DS, 91.6, 183.0, 362.05, 362.05, 864.0, PCIE_GEN4, 733.0),
    "l40": _entry("L40", _L40_DS, 90.5, 90.5, 181.05, 181.05, 864.0, PCIE_GEN4, 362.05),
    "a10g": _entry("A10G (AWS)", _A10G_SRC, 31.52, 35.0, 70.0, 70.0, 600.0, PCIE_GEN4),
    "a10": _entry("A10", _A10_DS, 31.2, 62.5, 125.0, 125.0, 600.0, PCIE_GEN4),
    "l4": _entry("L4", _L4_DS, 30.3, 60.0, 121.0, 121.0, 300.0, PCIE_GEN4, 242.5),
    "t4": _entry("T4", _T4_DS, 8.1, None, None, 65.0, 320.0, PCIE_GEN3),
    "v100-sxm2": _entry("V100 SXM2", _V100_DS, 15.7, None, None, 125.0, 900.0, PCIE_GEN3),
    "v100-pcie": _entry("V100 PCIe", _V100_DS, 14.0, None, None, 112.0, 900.0, PCIE_GEN3),
    "rtx-4090": _entry("GeForce RTX 4090", _ADA_WP, 82.6, 82.6, 165.2, 165.2, 1008.0, PCIE_GEN4, 330.3),
    "rtx-3090": _entry("GeForce RTX 3090", _GA102_WP, 35.6, 35.6, 71.0, 71.0, 936.0, PCIE_GEN4),
}

# (pattern over the normalised name, key); the first match wins, so the more
# specific patterns come first.
_PATTERNS = [
    (r"\bh100\b.*\bnvl\b", "h100-nvl"),
    (r"\bh100\b.*\bpcie\b", "h100-pcie"),
    (r"\bh100\b", "h100-sxm"),
    (r"\bh200\b.*\bnvl\b", "h200-nvl"),
    (r"\bh200\b", "h200-sxm"),
    (r"\ba100\b(?=.*\bpcie\b)(?=.*\b80gb\b)", "a100-pcie-80gb"),
    (r"\ba100\b.*\bpcie\b", "a100-pcie-40gb"),
    (r"\ba100\b.*\b40gb\b", "a100-sxm-40gb"),
    (r"\ba100\b", "a100-sxm-80gb"),
    (r"\bl40s\b", "l40s"),
    (r"\bl40\b", "l40"),
    (r"\ba10g\b", "a10g"),
    (r"\ba10\b", "a10"),
    (r"\bl4\b", "l4"),
    (r"\bt4\b", "t4"),
    (r"\bv100\b.*\bpcie\b", "v100-pcie"),
    (r"\bv100\b", "v100-sxm2"),
    (r"\brtx 4090\b(?! (ti|d|laptop|mobile)\b)", "rtx-4090"),
    (r"\brtx 3090\b(?! (ti|laptop|mobile)\b)", "rtx-3090"),
]


def normalize_name(name: str) -> str:
    """Lower case, every run of other characters than letters and digits one space."""
    return " ".join(re.split(r"[^a-z0-9]+", name.lower())).strip()


def match_key(gpu_name: str) -> Optional[str]:
    """The table key for a GPU name (torch or nvidia-smi spelling), or None."""
    norm = normalize_name(gpu_name or "")
    for pattern, key in _PATTERNS:
        if re.search(pattern, norm):
            return key
    return None


def lookup(gpu_name: str) -> Optional[dict]:
    """Reference figures for ``gpu_name`` with achievable figures filled in, or None.

    The result (a fresh dict) has ``key``, ``model``, ``source``, ``source_url``,
    and ``matmul_tflops`` (dtype -> ``{"peak", "achievable"}`` or None),
    ``memory_gbps`` and ``pcie_gbps`` (each ``{"peak", "achievable"}``).
    """
    key = match_key(gpu_name)
    if key is None:
        return None
    raw = TABLE[key]
    return {
        "key": key,
        "model": raw["model"],
        "source": raw["source"],
        "source_url": raw["source_url"],
        "matmul_tflops": {dt: _figure(peak, "matmul") for dt, peak in raw["matmul_tflops"].items()},
        "memory_gbps": _figure(raw["memory_gbps"], "memory"),
        "pcie_gbps": _figure(raw["pcie_gbps"], "pcie"),
    }


def _figure(peak: Optional[float], kind: str) -> Optional[dict]:
    if peak is None:
        return None
    return {"peak": peak, "achievable": round(peak * ACHIEVABLE[kind], 3)}


def expected(ref: Optional[dict], kind: str, variant: Optional[str] = None) -> Optional[dict]:
    """The ``{"peak", "achievable"}`` figure of ``ref`` for ``kind``
    (``matmul`` with a dtype variant, ``memory`` or ``pcie``), or None."""
    if ref is None:
        return None
    if kind == "matmul":
        return ref["matmul_tflops"].get(variant)
    if kind == "memory":
        return ref["memory_gbps"]
    if kind == "pcie":
        return ref["pcie_gbps"]
    raise ValueError(f"unknown reference kind {kind!r}")


def grade(observed: float, achievable: float, warn_below: float = WARN_BELOW,
          fail_below: float = FAIL_BELOW) -> tuple:
    """``(status, ratio)`` of a measured figure against the achievable one."""
    if achievable <= 0:
        raise ValueError("achievable figure must be positive")
    ratio = observed / achievable
    if not math.isfinite(ratio) or ratio < fail_below:  # NaN/inf: a broken measurement
        return "fail", ratio
    if ratio < warn_below:
        return "warn", ratio
    return "pass", ratio


def assess(observed: float, figure: Optional[dict], unit: str) -> dict:
    """Check fields (status, message, reference, ratio) for one measured figure.

    Without a reference figure the status is ``pass`` (the figure was measured;
    there is nothing to hold it against).
    """
    if figure is None:
        return {"status": "pass", "message": f"{observed:.4g} {unit} (no reference figure for this model)"}
    status, ratio = grade(observed, figure["achievable"])
    message = (f"{observed:.4g} {unit} = {ratio:.0%} of achievable {figure['achievable']:.4g} "
               f"(peak {figure['peak']:.4g}); warn below {WARN_BELOW:.0%}, fail below {FAIL_BELOW:.0%}")
    return {"status": status, "message": message, "reference": figure, "ratio": round(ratio, 4)}
