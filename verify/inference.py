"""Inference: ResNet-50 eval throughput over a few batch sizes (one device).

torchvision ResNet-50 with ``weights=None`` (nothing is downloaded; the
weights do not change the cost), ``torch.inference_mode``, random inputs; on
GPU channels_last and autocast (bf16 where supported, else fp16).
"""

from __future__ import annotations

import math

import torch

from verify.ddp import amp_dtype
from verify.status import ERROR, FAIL, PASS, make_check
from verify.timing import measure


def images_per_s(batch: int, seconds_per_batch: float) -> float:
    return batch / seconds_per_batch


def _model(device: torch.device):
    import torchvision

    model = torchvision.models.resnet50(weights=None).eval().to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def bench(model, device: torch.device, batch: int, side: int, min_time: float) -> tuple:
    """``(images/s, outputs finite)`` for one batch size."""
    x = torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(batch)).to(device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    amp = amp_dtype(device)
    with torch.inference_mode(), torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        seconds, _ = measure(lambda: model(x), device, min_time, max_iters=200)
        finite = bool(torch.isfinite(model(x)).all().item())
    return images_per_s(batch, seconds), finite


def run(device: torch.device, label: str, prof) -> tuple:
    """Metrics and the check of the inference stage for one device."""
    name = f"inference/resnet50:{label}"
    try:
        model = _model(device)
        results = {b: bench(model, device, b, prof.infer_image, prof.min_time) for b in prof.infer_batches}
    except Exception as exc:  # noqa: BLE001 - e.g. out of memory: this check errs, the run goes on
        return {}, [make_check(name, ERROR, f"{type(exc).__name__}: {exc}", device=label)]
    metrics = {f"inference/resnet50/bs{b}/images_per_s:{label}": ips for b, (ips, _) in results.items()}
    bad = [b for b, (ips, finite) in results.items() if not finite or not math.isfinite(ips)]
    summary = ", ".join(f"bs{b} {ips:.4g}/s" for b, (ips, _) in results.items())
    status = FAIL if bad else PASS
    msg = f"ResNet-50 eval {prof.infer_image}px: {summary}"
    if bad:
        msg += f"; non-finite outputs at batch size(s) {bad}"
    return metrics, [make_check(name, status, msg, device=label,
                                observed={f"bs{b}": round(ips, 3) for b, (ips, _) in results.items()})]
