"""Image pipeline: JPEGs generated with Pillow, decoded and transformed in a DataLoader with workers.

The seeds' image test, without a downloaded model or picture: ``jpeg_count``
JPEGs (Pillow's noise, gradient and Mandelbrot generators, so they compress
like photographs rather than like flat colour) are written to a temporary
directory, then read back through ``Resize -> CenterCrop -> ToTensor ->
Normalize`` in a DataLoader with ``jpeg_workers`` worker processes.  Figure:
decoded images per second, timed from the first batch (worker start-up
excluded).  Runs on rank 0 only: it measures the host, not a GPU.
"""

from __future__ import annotations

import os
import tempfile
import time

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from verify.status import FAIL, PASS, make_check

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def make_jpeg(path: str, side: int, seed: int) -> None:
    size = (side, side)
    noise = Image.effect_noise(size, 24 + seed % 40)
    gradient = Image.linear_gradient("L").rotate(seed * 37 % 360).resize(size)
    fractal = Image.effect_mandelbrot(size, (-2.0 + (seed % 10) * 0.05, -1.2, 0.6, 1.2), 64)
    Image.merge("RGB", (noise, gradient, fractal)).save(path, "JPEG", quality=90)


def make_jpegs(directory: str, count: int, side: int) -> list:
    paths = [os.path.join(directory, f"img{i:05d}.jpg") for i in range(count)]
    for i, p in enumerate(paths):
        make_jpeg(p, side, i)
    return paths


def crop_for(side: int) -> int:
    """The seeds' 256 -> 224 ratio, for any side."""
    return max(16, side * 7 // 8)


class JpegDataset(Dataset):
    def __init__(self, paths: list, side: int):
        from torchvision import transforms

        self.paths = paths
        self.transform = transforms.Compose([
            transforms.Resize(side), transforms.CenterCrop(crop_for(side)), transforms.ToTensor(),
            transforms.Normalize(MEAN, STD)])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        with Image.open(self.paths[i]) as img:
            return self.transform(img.convert("RGB"))


def run_pipeline(directory: str, prof) -> tuple:
    """``(images/s, images decoded, bad shapes)`` over the generated JPEGs."""
    paths = make_jpegs(directory, prof.jpeg_count, prof.jpeg_side)
    batch = max(1, min(16, prof.jpeg_count // 12))  # enough batches that the first one is a small share
    loader = DataLoader(JpegDataset(paths, prof.jpeg_side), batch_size=batch, num_workers=prof.jpeg_workers)
    crop = crop_for(prof.jpeg_side)
    seen, bad, t0, after_first = 0, 0, None, 0
    for batch in loader:
        if t0 is None:
            t0, after_first = time.perf_counter(), -batch.shape[0]
        seen += batch.shape[0]
        after_first += batch.shape[0]
        bad += 0 if tuple(batch.shape[1:]) == (3, crop, crop) and torch.isfinite(batch).all() else batch.shape[0]
    elapsed = time.perf_counter() - t0
    return (after_first / elapsed if after_first and elapsed > 0 else 0.0), seen, bad


def run(prof) -> tuple:
    with tempfile.TemporaryDirectory(prefix="gpufleet-jpeg-") as tmp:
        ips, seen, bad = run_pipeline(tmp, prof)
    ok = seen == prof.jpeg_count and bad == 0 and ips > 0
    msg = (f"{seen}/{prof.jpeg_count} JPEGs {prof.jpeg_side}px decoded and transformed by "
           f"{prof.jpeg_workers} DataLoader worker(s): {ips:.4g} images/s")
    if bad:
        msg += f"; {bad} with a wrong shape or non-finite values"
    return {"pipeline/jpeg/images_per_s": ips}, [make_check("pipeline/jpeg", PASS if ok else FAIL, msg,
                                                             observed=round(ips, 3))]
