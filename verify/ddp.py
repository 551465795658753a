"""DDP training: the seeds' pattern, checked.

DistributedDataParallel over the process group, a DistributedSampler with
``set_epoch`` every epoch, two models on synthetic data (nothing downloaded):

- the seeds' small ConvNet on a learnable synthetic task (noisy class
  prototypes): its loss must fall from the first epoch to the last;
- torchvision ResNet-50 (``weights=None``) on random images: images/s.

After the steps, the parameters must be identical on every rank; a checkpoint
saved from ``model.module.state_dict()`` on rank 0 must load back with
``map_location`` on every rank and give rank 0's outputs.  The checkpoint's
bytes are broadcast, so ranks on other hosts load it from their own disk.
Mixed precision (autocast bf16, or fp16 with a GradScaler) on GPU.
"""

from __future__ import annotations

import math
import os
import tempfile
import time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from verify import dist as vdist
from verify import faults
from verify.status import FAIL, PASS, SKIP, make_check
from verify.timing import synchronize

SEED = 1234
CLASSES = 10
CONVNET_STEPS_PER_EPOCH = 4


class ConvNet(nn.Module):
    """The seeds' ConvNet (two conv+pool blocks, two linear layers), for any input side."""

    def __init__(self, classes: int = CLASSES, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4))
        self.classifier = nn.Sequential(nn.Linear(2 * width * 16, 64), nn.ReLU(), nn.Linear(64, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def resnet50() -> nn.Module:
    import torchvision

    return torchvision.models.resnet50(weights=None, num_classes=CLASSES)


def prototype_dataset(n: int, side: int, seed: int = SEED) -> TensorDataset:
    """Images = a fixed coarse (4x4, upsampled) random pattern per class + noise: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    protos = F.interpolate(torch.randn(CLASSES, 3, 4, 4, generator=g), size=(side, side), mode="nearest")
    labels = torch.randint(0, CLASSES, (n,), generator=g)
    return TensorDataset(protos[labels] + 0.5 * torch.randn(n, 3, side, side, generator=g), labels)


def random_dataset(n: int, side: int, seed: int = SEED) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 3, side, side, generator=g), torch.randint(0, CLASSES, (n,), generator=g))


def loader_for(dataset, world, batch: int) -> tuple:
    """``(sampler, loader)``: each rank sees its own shard, reshuffled by ``set_epoch``."""
    sampler = DistributedSampler(dataset, num_replicas=world.world_size, rank=world.rank, shuffle=True,
                                 seed=SEED, drop_last=True)
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, drop_last=True,
                        pin_memory=world.device.type == "cuda")
    return sampler, loader


def amp_dtype(device: torch.device):
    """The autocast dtype on GPU (bf16 where supported, else fp16); None (fp32) on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class Trainer:
    """One DDP model with its optimiser and mixed-precision settings."""

    def __init__(self, module: nn.Module, world, lr: float, channels_last: bool = False):
        self.world, self.device = world, world.device
        self.channels_last = channels_last and self.device.type == "cuda"
        module = module.to(self.device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.model = DDP(module, device_ids=ids)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.amp = amp_dtype(self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            loss = F.cross_entropy(self.model(x), y)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        return loss.detach()


def mean_across_ranks(world, value: float) -> float:
    values = vdist.gather(world, value)
    return sum(values) / len(values)


def train_convnet(world, prof) -> tuple:
    """Train the ConvNet for some epochs; ``(trainer, per-epoch mean losses over all ranks, images/s)``."""
    torch.manual_seed(SEED)
    n = world.world_size * prof.convnet_batch * CONVNET_STEPS_PER_EPOCH
    sampler, loader = loader_for(prototype_dataset(n, 32), world, prof.convnet_batch)
    trainer = Trainer(ConvNet(), world, lr=3e-3)
    losses, images = [], 0
    vdist.barrier(world)
    t0 = time.perf_counter()
    for epoch in range(prof.convnet_epochs):
        sampler.set_epoch(epoch)
        epoch_losses = [trainer.step(x, y) for x, y in loader]
        images += sum(1 for _ in epoch_losses) * prof.convnet_batch * world.world_size
        losses.append(mean_across_ranks(world, torch.stack(epoch_losses).float().mean().item()))
    synchronize(world.device)
    return trainer, losses, images / (time.perf_counter() - t0)


def train_resnet(world, prof) -> tuple:
    """One epoch of ResNet-50, the first step a warm-up; ``(trainer, losses, images/s)``."""
    torch.manual_seed(SEED)
    n = world.world_size * prof.ddp_batch * (prof.ddp_steps + 1)
    sampler, loader = loader_for(random_dataset(n, prof.ddp_image), world, prof.ddp_batch)
    trainer = Trainer(resnet50(), world, lr=1e-3, channels_last=True)
    sampler.set_epoch(0)
    batches = iter(loader)
    losses = [trainer.step(*next(batches))]
    synchronize(world.device)
    vdist.barrier(world)
    t0 = time.perf_counter()
    losses += [trainer.step(x, y) for x, y in batches]
    synchronize(world.device)
    vdist.barrier(world)
    elapsed = time.perf_counter() - t0
    return trainer, [float(v) for v in torch.stack(losses).float().cpu()], \
        world.world_size * prof.ddp_batch * prof.ddp_steps / elapsed


def params_max_diff(module: nn.Module, world) -> float:
    """Largest difference between this rank's parameters and rank 0's."""
    flat = torch.cat([p.detach().reshape(-1).float() for p in module.parameters()])
    ref = flat.clone()
    dist.broadcast(ref, src=0)
    return (flat - ref).abs().max().item()


def perturb_if_planted(module: nn.Module, world) -> None:
    if faults.planted("ddp-perturb") and world.world_size > 1 and world.rank == world.last_rank:
        with torch.no_grad():
            next(module.parameters()).view(-1)[0] += 1e-3  # planted fault: this rank drifts


def sync_check(name: str, module: nn.Module, world) -> dict:
    perturb_if_planted(module, world)
    diffs = vdist.gather(world, params_max_diff(module, world))
    cname = f"ddp/{name}/params_in_sync"
    if world.world_size < 2:
        return make_check(cname, SKIP, "world of one rank: nothing to compare")
    off = {r: d for r, d in enumerate(diffs) if d != 0.0}
    if off:
        return make_check(cname, FAIL, f"parameters differ from rank 0's after DDP steps on rank(s) "
                          f"{', '.join(f'{r} (max diff {d:.3g})' for r, d in off.items())}",
                          details={"max_abs_diff": diffs})
    return make_check(cname, PASS, f"parameters identical on all {world.world_size} ranks after the DDP steps")


def _save_on_rank0(module: nn.Module, path: str) -> bytes:
    state = module.state_dict()
    if faults.planted("checkpoint-corrupt"):
        key = next(k for k, v in state.items() if v.is_floating_point())
        state = dict(state, **{key: state[key] + 0.5})  # planted fault: the saved weights are wrong
    torch.save(state, path)
    with open(path, "rb") as f:
        return f.read()


def _probe(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    was_training = module.training
    module.eval()
    with torch.no_grad():
        out = module(x).float().cpu()
    module.train(was_training)
    return out


def checkpoint_check(name: str, module: nn.Module, factory, world, side: int) -> dict:
    """Rank 0 saves ``model.module.state_dict()``; every rank loads it with map_location and compares."""
    x = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(SEED + 7)).to(world.device)
    with tempfile.TemporaryDirectory(prefix="gpufleet-verify-") as tmp:
        path = os.path.join(tmp, f"{name}.pt")
        payload = _save_on_rank0(module, path) if world.is_main else None
        live = vdist.broadcast(world, _probe(module, x) if world.is_main else None)
        payload = vdist.broadcast(world, payload)  # other hosts cannot read rank 0's disk
        if not world.is_main:
            with open(path, "wb") as f:
                f.write(payload)
        state = torch.load(path, map_location=world.device, weights_only=True)
        fresh = factory().to(world.device)
        fresh.load_state_dict(state)
        out = _probe(fresh, x)
    diff = (out - live).abs().max().item()
    tol = 1e-3 * max(1.0, live.abs().max().item())
    results = vdist.gather(world, (diff <= tol, diff))  # NaN fails too
    cname = f"ddp/{name}/checkpoint"
    bad = {r: d for r, (ok, d) in enumerate(results) if not ok}
    if bad:
        return make_check(cname, FAIL, "checkpoint from rank 0 does not reproduce rank 0's outputs on rank(s) "
                          + ", ".join(f"{r} (max diff {d:.3g})" for r, d in bad.items()),
                          details={"max_abs_diff": [d for _, d in results], "tolerance": tol})
    return make_check(cname, PASS, f"checkpoint saved on rank 0 loads with map_location on all "
                      f"{world.world_size} rank(s) and reproduces rank 0's outputs (max diff "
                      f"{max(d for _, d in results):.2g})")


def loss_check(losses: list) -> dict:
    first, last = losses[0], losses[-1]
    ok = math.isfinite(last) and last < 0.9 * first
    msg = f"ConvNet mean loss {first:.4f} (epoch 0) -> {last:.4f} (epoch {len(losses) - 1})"
    return make_check("ddp/convnet/loss_decreases", PASS if ok else FAIL,
                      msg + ("" if ok else ": did not fall by 10%"), details={"epoch_losses": losses})


def run(world, prof) -> tuple:
    """Metrics and (rank 0's) checks of the DDP stage; every rank must call it."""
    trainer, losses, conv_ips = train_convnet(world, prof)
    checks = [loss_check(losses),
              sync_check("convnet", trainer.model.module, world),
              checkpoint_check("convnet", trainer.model.module, ConvNet, world, 32)]
    trainer, r_losses, r_ips = train_resnet(world, prof)
    finite = all(math.isfinite(v) for v in r_losses)
    amp = str(trainer.amp).replace("torch.", "") if trainer.amp else "fp32"
    checks.append(make_check("ddp/resnet50/throughput", PASS if finite else FAIL,
                             f"ResNet-50 {prof.ddp_image}px, batch {prof.ddp_batch}/rank, {world.world_size} "
                             f"rank(s), {amp}: {r_ips:.4g} images/s"
                             + ("" if finite else "; loss not finite"), observed=round(r_ips, 3),
                             details={"losses": r_losses}))
    checks.append(sync_check("resnet50", trainer.model.module, world))
    checks.append(checkpoint_check("resnet50", trainer.model.module, resnet50, world, prof.ddp_image))
    metrics = {"ddp/convnet/images_per_s": conv_ips, "ddp/resnet50/images_per_s": r_ips}
    return metrics, checks
