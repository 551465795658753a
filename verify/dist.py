"""The process group: torchrun's ranks, or a 1-rank group of our own.

Under torchrun (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set) every rank joins the
group through torchrun's rendezvous (``env://``); multi-node works with
torchrun's own flags, and each rank knows its node (``GROUP_RANK``): every
node's local rank 0 writes that node's own report.  Run as plain ``python -m verify``, verify makes a
1-rank group itself on an in-process ``HashStore`` (no port, no network), so the
collective and DDP checks still run (with a world of one).

The backend is NCCL on GPU and gloo on CPU.  Objects (figures, check records)
travel over a gloo group so they never need a GPU.  Every group has the
``--timeout`` timeout: a dead or stuck rank turns into an exception, never a hang.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Mapping, Optional

import torch
import torch.distributed as dist


@dataclass
class World:
    rank: int
    local_rank: int
    world_size: int
    local_world_size: int
    backend: str
    host: str
    launched: bool
    device: torch.device
    obj_group: Any = None
    node_rank: int = 0  # torchrun's GROUP_RANK: which node of the run this rank is on (0 run alone)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def last_rank(self) -> int:
        return self.world_size - 1

    @property
    def is_last_local(self) -> bool:
        """The last rank on this node (the last rank when the run is one node)."""
        return self.local_rank == self.local_world_size - 1


def launched_by_torchrun(environ: Optional[Mapping[str, str]] = None) -> bool:
    env = os.environ if environ is None else environ
    return all(k in env for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def rank_info(environ: Optional[Mapping[str, str]] = None) -> dict:
    """rank, local_rank, world_size and local_world_size from torchrun's variables (or 0/0/1/1)."""
    env = os.environ if environ is None else environ
    if not launched_by_torchrun(env):
        return {"rank": 0, "local_rank": 0, "world_size": 1, "local_world_size": 1}
    world = int(env["WORLD_SIZE"])
    return {"rank": int(env["RANK"]), "local_rank": int(env["LOCAL_RANK"]), "world_size": world,
            "local_world_size": int(env.get("LOCAL_WORLD_SIZE", world))}


def node_rank(environ: Optional[Mapping[str, str]] = None) -> int:
    """This node's place in the run: torchrun's ``GROUP_RANK`` (0 run alone), the same on every rank of a node.

    The c10d rendezvous hands these out in its own order (not necessarily ``--node_rank``'s)."""
    env = os.environ if environ is None else environ
    return int(env.get("GROUP_RANK", 0)) if launched_by_torchrun(env) else 0


def node_count(hosts) -> int:
    return len(set(hosts))


def init(device: torch.device, timeout_s: float) -> World:
    """Join (or make) the process group for ``device``'s type."""
    info = rank_info()
    launched = launched_by_torchrun()
    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = timedelta(seconds=timeout_s)
    kwargs = {"backend": backend, "timeout": timeout}
    if device.type == "cuda":
        torch.cuda.set_device(device)
        kwargs["device_id"] = device
    if launched:
        dist.init_process_group(**kwargs)
    else:
        dist.init_process_group(store=dist.HashStore(), rank=0, world_size=1, **kwargs)
    obj_group = dist.new_group(backend="gloo", timeout=timeout) if backend != "gloo" else None
    return World(backend=backend, host=socket.gethostname(), launched=launched, device=device,
                 obj_group=obj_group, node_rank=node_rank(), **info)


def gather(world: World, obj: Any) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    out = [None] * world.world_size
    dist.all_gather_object(out, obj, group=world.obj_group)
    return out


def broadcast(world: World, obj: Any, src: int = 0) -> Any:
    """``obj`` from rank ``src``, on every rank."""
    box = [obj if world.rank == src else None]
    dist.broadcast_object_list(box, src=src, group=world.obj_group)
    return box[0]


def barrier(world: World) -> None:
    dist.barrier(group=world.obj_group)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
