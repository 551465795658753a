"""The run: set up the world, run the stages, gather every rank's results, write each node's report.

The stages come from the registry (:mod:`verify.stages`), in its order: each
declares its scope (world: every rank takes part; device; rank), where it runs
and what it needs; the runner has no per-stage branch.  After the gather, each
node's local rank 0 writes that node's report: its own ranks' checks and
figures, and the world stages every rank took part in.  A written report means
exit 0 (its status is the verdict).  A stage that raises in a multi-rank run
leaves the ranks out of step, so the run is aborted: each node writes what it
has with status ``error`` and exits 1, so that torchrun stops the others.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback

import torch
from tqdm import tqdm

from verify import SCHEMA, __version__, burn, guard, profiles, stages, telemetry
from verify import dist as vdist
from verify import env as venv
from verify import reference, report
from verify.contract import DEVICE, RANK, WORLD, stage_check
from verify.status import ERROR, PASS, SKIP, make_check, overall


def nvml_uuid(device) -> str:
    """A CUDA device's UUID as NVML spells it (``GPU-xxxxxxxx-...``)."""
    u = str(torch.cuda.get_device_properties(device).uuid)
    return u if u.startswith(("GPU-", "MIG-")) else f"GPU-{u}"


class Abort(Exception):
    """A world stage failed: the ranks can no longer be trusted to be in step."""


class Terminated(BaseException):
    """SIGTERM (torchrun stops the other ranks this way when one dies)."""


def _on_sigterm(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated("terminated by SIGTERM (another rank died, or the run was stopped)")


def merge(results: list, ranks=None) -> tuple:
    """Merge ranks' ``(metrics, [(scope, check)])`` into one report's metrics and checks.

    ``ranks``: the global rank of each result (default 0, 1, ...); the first is
    the lead of the report (a node's report: the node's lowest rank).  Scopes:
    ``world`` (the same on every rank: the lead's copy is kept), ``rank`` (the
    lead's kept; another rank's only when not pass/skip, named
    ``<name>:rank<r>``), ``device`` (named after their device: all kept).
    """
    ranks = list(range(len(results))) if ranks is None else list(ranks)
    lead = ranks[0] if ranks else 0
    metrics, checks, names = {}, [], set()
    for r, (rank_metrics, scoped) in zip(ranks, results):
        metrics.update(rank_metrics)
        for scope, c in scoped:
            if r != lead and scope == "world":
                continue
            if r != lead and scope == "rank":
                if c["status"] in (PASS, SKIP):
                    continue
                c = dict(c, name=f"{c['name']}:rank{r}")
            name, n = c["name"], 2
            while name in names:  # never two checks of one name
                name, n = f"{c['name']}#{n}", n + 1
            names.add(name)
            checks.append(dict(c, name=name))
    return metrics, checks


def node_share(ranks: list, node: int) -> list:
    """The gathered ``(metrics, scoped, entry)`` of the ranks on node ``node`` (``entry["node"]``), in rank
    order: what that node's report is made of.  Each node reports its own ranks; the checks of a world stage
    (every rank took part) are on every node's report."""
    return sorted((x for x in ranks if x[2].get("node", 0) == node), key=lambda x: x[2]["rank"])


class Runner:
    def __init__(self, args, planted=frozenset()):
        self.args, self.planted = args, planted
        self.metrics, self.scoped = {}, []
        self.stage_seconds: dict = {}
        self.world = None
        self.bar = None

    # -- setup --------------------------------------------------------------------------------
    def _devices(self, cuda_ok: bool, info: dict) -> list:
        if not cuda_ok:
            return [torch.device("cpu")]
        if vdist.launched_by_torchrun():
            if info["local_rank"] >= torch.cuda.device_count():
                raise RuntimeError(f"local rank {info['local_rank']} has no GPU: "
                                   f"{torch.cuda.device_count()} visible")
            return [torch.device("cuda", info["local_rank"])]
        return [torch.device("cuda", i) for i in range(torch.cuda.device_count())]

    def _label(self, device) -> str:
        """``gpu<N>``/``cpu<N>``: N the global rank under torchrun, else the CUDA index (``cpu0``)."""
        if self.world.launched:
            index = self.world.rank
        else:
            index = device.index if device.type == "cuda" else 0
        return report.device_label(device.type, index)

    def _guard(self, devices, apps) -> set:
        """Labels of this rank's devices not to benchmark (busy, and no --force); adds the guard checks."""
        if devices[0].type != "cuda":
            return set()
        pids = vdist.gather(self.world, (self.world.host, os.getpid()))
        mine = {pid for host, pid in pids if host == self.world.host}
        uuids = {d.index: str(torch.cuda.get_device_properties(d).uuid) for d in devices}
        busy = guard.busy_devices(apps, uuids, mine)
        skipped = set()
        for d in devices:
            label = self._label(d)
            if apps is None:
                c = make_check(f"guard:{label}", SKIP, "nvidia-smi unavailable: no busy-GPU guard")
            elif d.index in busy and not self.args.force:
                skipped.add(label)
                c = make_check(f"guard:{label}", SKIP, f"not benchmarked: GPU busy with {guard.describe(busy[d.index])}"
                               " (--force to benchmark anyway)", details={"processes": busy[d.index]})
            elif d.index in busy:
                c = make_check(f"guard:{label}", PASS, f"benchmarked despite {guard.describe(busy[d.index])} "
                               "(--force): figures may be low")
            else:
                c = make_check(f"guard:{label}", PASS, "no other compute processes on this GPU")
            self.scoped.append(("device", c))
        return skipped

    # -- stages -------------------------------------------------------------------------------
    def _stage(self, name: str, fn, scope: str) -> None:
        if self.bar is not None:
            self.bar.set_description(f"verify {name}")
        started = time.monotonic()
        try:
            metrics, checks = fn()
        except Terminated as exc:
            self.scoped.append((RANK, make_check(stage_check(name), ERROR, f"interrupted: {exc}")))
            raise
        except Exception as exc:
            tail = traceback.format_exc().strip().splitlines()[-6:]
            self.scoped.append((RANK, make_check(stage_check(name), ERROR, f"{type(exc).__name__}: {exc}",
                                                 details={"traceback": tail})))
            if self.world.world_size > 1 and scope == WORLD:
                raise Abort(f"stage {name} failed on rank {self.world.rank}: {exc}") from exc
        else:
            self.metrics.update(metrics)
            self.scoped += [(scope, c) for c in checks]
        finally:
            self.stage_seconds[name] = round(self.stage_seconds.get(name, 0.0) + time.monotonic() - started, 3)
            if self.bar is not None:
                self.bar.update(1)

    def _world_stage(self, name: str, fn, busy_ranks: list) -> None:
        if busy_ranks:
            self.scoped.append((WORLD, make_check(name, SKIP, f"skipped: GPU busy on rank(s) {busy_ranks}")))
            self.bar and self.bar.update(1)
            return
        self._stage(name, fn, WORLD)

    def _per_device(self, name: str, devices, skipped, fn) -> None:
        def run_all():
            metrics, checks = {}, []
            for d in devices:
                if self._label(d) not in skipped:
                    m, c = fn(d, self._label(d))
                    metrics.update(m)
                    checks += c
            return metrics, checks
        self._stage(name, run_all, DEVICE)

    def _run_stages(self, devices, skipped, prof) -> None:
        """The registry's stages that --checks selects, in its order (verify/stages.py): no stage is special
        here.  Each rank runs the stages placed on it; a node-wide stage's other ranks wait for it."""
        w = self.world
        busy = [r for r, b in enumerate(vdist.gather(w, self._label(devices[0]) in skipped)) if b]
        ctx = stages.Context(
            world=w, dcgm_level=self.args.dcgm_level, dcgm_allow_skips=self.args.dcgm_allow_skips,
            refs={self._label(d): reference.lookup(torch.cuda.get_device_name(d)) if d.type == "cuda" else None
                  for d in devices})
        facts = stages.Facts(device_type=devices[0].type, profile=prof, asked=frozenset(self.args.requested))
        for stage in stages.selected(self.args.checks):
            if stages.placed(stage, w.rank, w.local_rank):
                self._run_stage(stage, stages.decide(stage, facts), ctx, prof, devices, skipped, busy)
            if stage.on == stages.NODE:
                vdist.barrier(w)  # the node's other ranks wait for it

    def _run_stage(self, stage, not_run, ctx, prof, devices, skipped, busy) -> None:
        """One stage: its ``stage/<name>`` check where it does not run (``not_run``: status and why), else its
        call with the profile fields it declared, by its scope."""
        w = self.world
        if not_run is not None:
            status, message = not_run
            self.scoped.append((WORLD if stage.scope == WORLD else RANK,
                                make_check(stage_check(stage.name), status, message)))
            if self.bar is not None:
                self.bar.update(1)
            return
        fields = profiles.Reads(prof, stage.reads, stage.name)
        if stage.scope == WORLD:
            self._world_stage(stage.name, lambda: stage.call(ctx, fields), busy)
        elif stage.scope == RANK:
            self._stage(stage.name, lambda: stage.call(ctx, fields), RANK)
        else:
            def on_device(d, label):
                return stage.call(ctx, fields, d, label)
            if stage.telemetry:
                self._per_device_sampled(stage.name, devices, skipped, on_device)
            elif stage.turns:
                for r in range(w.world_size):  # one rank at a time
                    if r == w.rank:
                        self._per_device(stage.name, devices, skipped, on_device)
                    vdist.barrier(w)
            else:
                self._per_device(stage.name, devices, skipped, on_device)

    def _per_device_sampled(self, name: str, devices, skipped, fn) -> None:
        """A per-device stage with NVML telemetry sampled every second while it runs (GPUs only)."""
        cuda = [d for d in devices if d.type == "cuda" and self._label(d) not in skipped]
        if not cuda:
            self._per_device(name, devices, skipped, fn)
            if devices and devices[0].type != "cuda":
                self.scoped += [(DEVICE, make_check(f"telemetry:{self._label(d)}", SKIP,
                                                    "telemetry needs a GPU (NVML): this is a CPU run",
                                                    device=self._label(d))) for d in devices]
            return
        samplers = []  # (sampler, {uuid: label}): each GPU sampled only while its own stage runs (one process may
        #                test several GPUs in turn; an idle one's clocks are no figure under load)

        def sampled(d, label):
            if d.type != "cuda":
                return fn(d, label)
            uuid = nvml_uuid(d)
            with telemetry.Sampler([uuid]) as sampler:
                try:
                    return fn(d, label)
                finally:
                    samplers.append((sampler, {uuid: label}))

        self._per_device(name, devices, skipped, sampled)
        for sampler, labels in samplers:
            m, c = telemetry.checks(sampler, labels, burn.downsample)
            self.metrics.update(m)
            self.scoped += [(DEVICE, x) for x in c]

    # -- the run ------------------------------------------------------------------------------
    def run(self) -> int:
        started = report.now()
        signal.signal(signal.SIGTERM, _on_sigterm)
        info = vdist.rank_info()
        cuda = venv.probe_cuda()
        env_info = venv.collect(cuda)
        self.scoped += [("rank", c) for c in venv.checks(env_info, cuda, self.args.device)]
        use_cuda = cuda["available"] and self.args.device != "cpu"
        if self.args.device == "cuda" and not use_cuda:
            return self._finish_alone(started, env_info, info, "cuda", "--device cuda but CUDA is unusable")
        try:
            devices = self._devices(use_cuda, info)
        except RuntimeError as exc:
            return self._finish_alone(started, env_info, info, "cuda", str(exc))
        apps = guard.query_compute_apps() if use_cuda else None  # before any CUDA context of ours
        free = torch.cuda.mem_get_info(devices[0])[0] if use_cuda else None
        prof = profiles.make(self.args.profile, devices[0].type, free, self.args.duration)
        aborted = None
        try:
            self.world = vdist.init(devices[0], self.args.timeout)
            skipped = self._guard(devices, apps)
            stages = [s for s in self.args.checks if s != "pipeline" or self.world.is_main]
            self.bar = tqdm(total=len(stages), file=sys.stderr, disable=not self._progress(), leave=False)
            self._run_stages(devices, skipped, prof)
            ranks = vdist.gather(self.world, (self.metrics, self.scoped, self._rank_entry(devices[0])))
        except (Exception, Terminated) as exc:  # noqa: BLE001 - any failure still ends in a report
            aborted = f"{type(exc).__name__}: {exc}"
            self.scoped.append(("rank", make_check("run", ERROR, f"run aborted: {aborted}")))
            ranks = [(self.metrics, self.scoped, self._rank_entry(devices[0]))]
        finally:
            if self.bar is not None:
                self.bar.close()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the report is written whole or not at all
        if self._writes_report(info):  # every node's local rank 0: that node's report
            self._write(started, env_info, devices[0].type, ranks, node=vdist.node_rank())
        if aborted is not None and self._world_size(info) > 1:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)  # the world broke: torchrun must stop the other ranks; peers may be gone, so no waiting
        vdist.shutdown()
        return 0  # the report carries the verdict: a failed check is no crash, and must not look like one

    # -- helpers ------------------------------------------------------------------------------
    def _progress(self) -> bool:
        return self.world.is_main and not self.args.no_progress and sys.stderr.isatty()

    @staticmethod
    def _writes_report(info) -> bool:
        """Each node's local rank 0 writes the node's report (of the node's own ranks)."""
        return info["local_rank"] == 0

    def _world_size(self, info) -> int:
        return self.world.world_size if self.world else info["world_size"]

    def _rank_entry(self, device) -> dict:
        w = self.world
        if w is None:
            info = vdist.rank_info()
            return {"rank": info["rank"], "local_rank": info["local_rank"], "node": vdist.node_rank(),
                    "host": venv.socket.gethostname(), "device": str(device), "pid": os.getpid()}
        return {"rank": w.rank, "local_rank": w.local_rank, "node": w.node_rank, "host": w.host,
                "device": self._label(device), "torch_device": str(device), "pid": os.getpid()}

    def _finish_alone(self, started, env_info, info, device_type, why) -> int:
        """No process group could be made: each node's local rank 0 writes what it has.  Exits 0 with a report
        written by a run of one process; in a world of several the ranks cannot agree on anything: 1."""
        self.scoped.append(("rank", make_check("run", ERROR, f"not run: {why}")))
        if self._writes_report(info):
            entry = {"rank": info["rank"], "local_rank": info["local_rank"], "node": vdist.node_rank(),
                     "host": env_info["hostname"], "device": device_type}
            self._write(started, env_info, device_type, [(self.metrics, self.scoped, entry)],
                        world_size=info["world_size"], node=vdist.node_rank())
        return 0 if info["world_size"] == 1 else 1

    def _write(self, started, env_info, device_type, ranks, world_size=None, node=0) -> None:
        """Write node ``node``'s report: its own ranks' figures and checks, the whole world's rank -> host map."""
        mine = node_share(ranks, node)
        metrics, checks = merge([(m, s) for m, s, _ in mine], [e["rank"] for _, _, e in mine])
        entries = sorted((e for _, _, e in ranks), key=lambda e: e["rank"])
        if world_size is None:
            world_size = self.world.world_size if self.world else 1
        if len(entries) != world_size:  # aborted: other ranks' entries are unknown
            known = {e["rank"] for e in entries}
            entries += [{"rank": r, "local_rank": None, "host": None, "device": None}
                        for r in range(world_size) if r not in known]
            entries.sort(key=lambda e: e["rank"])
        nodes = {e.get("node") for e in entries if e.get("node") is not None}  # nodes may share a host name
        lead = mine[0][2] if mine else entries[0]
        status = overall(checks)
        doc = {
            "schema": SCHEMA, "version": __version__, "host": lead["host"] or env_info["hostname"],
            "started": started, "finished": report.now(), "status": status, "profile": self.args.profile,
            "device": device_type, "env": env_info, "metrics": report.clean_metrics(metrics), "checks": checks,
            "world": {"world_size": world_size, "node_count": max(1, len(nodes)),
                      "backend": self.world.backend if self.world else None,
                      "launcher": "torchrun" if vdist.launched_by_torchrun() else "single-process",
                      "ranks": entries, "node": {"node_rank": node, "ranks": [e["rank"] for _, _, e in mine]}},
            "options": {"checks": list(self.args.checks), "force": self.args.force, "timeout_s": self.args.timeout,
                        "requested_device": self.args.device, "duration_s": self.args.duration,
                        "dcgm_level": self.args.dcgm_level},
            "stages": dict(self.stage_seconds),
        }
        if self.planted:
            doc["faults"] = sorted(self.planted)
        report.write_atomic(self.args.out, doc)
        if not self.args.quiet:
            self._summary(doc)

    def _summary(self, doc) -> None:
        for c in doc["checks"]:
            print(f"{c['status'].upper():5} {c['name']}: {c['message']}")
        print(f"verify: {doc['status']} ({len(doc['metrics'])} metrics, {len(doc['checks'])} checks) -> "
              f"{os.path.abspath(self.args.out)}")
        sys.stdout.flush()
