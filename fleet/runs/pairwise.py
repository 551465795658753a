"""Pairwise isolation for multi-node collectives: which host, or which link, makes the all_reduce slow or hang.

Pure functions (the runs themselves are :mod:`fleet.runs.pairwise_run`).  Google's cluster-health-scanner's
method, over plain SSH:

1. **Round 1** (:func:`pair_up`): the hosts are paired at random (an odd one out joins a pair of three; with
   ``gpufleet_rack`` hints, ``--topology rack`` pairs within a rack, ``cross`` across racks); every pair runs a
   two-node all_reduce sweep at once, each with its own rendezvous and timeout.  ``--rounds R`` repeats with fresh
   pairings.
2. **Judging** (:func:`classify`): a pair whose result is wrong is ``wrong``; one that did not finish within its
   timeout is ``hang``; one that failed otherwise is ``error``; one whose bus bandwidth is below ``floor`` (0.7) of
   the median pair is ``slow``; else ``pass``.
3. **Re-pairing** (:func:`retest_pairs`): each host of a bad pair not yet cleared is paired with a host from a good
   pair it has not been tried with, until each suspect is cleared or condemned.  Work stays O(N) per round.  Three
   hosts (one group of three, nothing cleared): their pairs are tried one per round until one is good.
4. **Verdict** (:func:`verdict`): a host with a good pair is cleared; a host bad with every partner, two of them
   at least cleared elsewhere, is a **culprit** (one cleared partner is not enough: a pair with a hung host and
   one pair slow by chance on a busy machine would name an innocent host; the suspect is tried with another
   cleared host instead); a pair bad only together (both hosts cleared elsewhere) is run once more
   (:func:`next_groups`), and bad again it points at the **link** between them (good once, it was noise).
   Suspects that could not be settled are reported as such.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from statistics import median
from typing import Iterable, Mapping, Sequence

DEFAULT_FLOOR = 0.7
BAD = ("slow", "wrong", "hang", "error")


@dataclass
class PairResult:
    hosts: tuple
    round: int
    busbw_gbps: float | None = None
    status: str = "pass"  # pass | slow | wrong | hang | error
    reason: str = ""
    outcome: str = "ok"  # before judging: ok | wrong | hang | error

    def to_dict(self) -> dict:
        return {"hosts": list(self.hosts), "round": self.round, "busbw_gbps": self.busbw_gbps,
                "status": self.status, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: Mapping) -> "PairResult":
        status = str(d.get("status"))
        return cls(tuple(d.get("hosts") or ()), int(d.get("round") or 0), d.get("busbw_gbps"), status,
                   str(d.get("reason") or ""), "ok" if status in ("pass", "slow") else status)


def pair_up(hosts: Sequence[str], rng: random.Random, racks: Mapping[str, str] | None = None,
            topology: str = "random") -> list[tuple]:
    """Random pairs of ``hosts`` (an odd one out joins the last pair: a group of three).  ``topology``: ``random``,
    ``rack`` (pairs within a rack first, the rest at random), ``cross`` (each pair across two racks where it can)."""
    hosts = list(hosts)
    rng.shuffle(hosts)
    if topology != "random" and racks:
        by_rack: dict[str, list] = {}
        for h in hosts:
            by_rack.setdefault(str(racks.get(h, "")), []).append(h)
        if topology == "rack":
            ordered, leftovers = [], []
            for members in by_rack.values():
                even = len(members) - len(members) % 2
                ordered += members[:even]
                leftovers += members[even:]
            hosts = ordered + leftovers
        elif topology == "cross":
            queues = sorted(by_rack.values(), key=len, reverse=True)
            hosts = []
            while any(queues):  # deal one host from each of the two largest racks at a time
                queues.sort(key=len, reverse=True)
                for q in queues[:2]:
                    if q:
                        hosts.append(q.pop())
    pairs = [tuple(hosts[i:i + 2]) for i in range(0, len(hosts) - len(hosts) % 2, 2)]
    if len(hosts) % 2:
        if pairs:
            pairs[-1] = pairs[-1] + (hosts[-1],)
        else:
            pairs = [(hosts[-1],)]
    return pairs


def classify(results: list[PairResult], floor: float = DEFAULT_FLOOR) -> float | None:
    """Set each result's status (see the module); returns the median bus bandwidth the floor was taken from."""
    figures = [r.busbw_gbps for r in results if r.outcome == "ok" and r.busbw_gbps is not None]
    med = median(figures) if figures else None
    for r in results:
        if r.outcome != "ok":
            r.status = r.outcome
        elif med and r.busbw_gbps is not None and r.busbw_gbps < floor * med:
            r.status = "slow"
            r.reason = f"bus bandwidth {r.busbw_gbps:.3g} GB/s, below {floor:g} x the median pair's {med:.3g}"
        else:
            r.status = "pass"
            r.reason = r.reason if r.outcome != "ok" else ""
    return med


@dataclass
class Verdict:
    cleared: set = field(default_factory=set)
    culprits: list = field(default_factory=list)  # [{"host" | "link", "evidence": [...]}]
    suspects: list = field(default_factory=list)  # hosts in bad pairs not yet settled
    recheck: list = field(default_factory=list)  # pairs bad once, both hosts good elsewhere: run again to confirm

    @property
    def settled(self) -> bool:
        return not self.suspects


def _evidence(r: PairResult) -> str:
    what = {"slow": "slow", "wrong": "wrong result", "hang": "hung", "error": "failed", "pass": "good"}[r.status]
    bw = f", {r.busbw_gbps:.3g} GB/s" if r.busbw_gbps is not None else ""
    return f"round {r.round}: with {'+'.join(r.hosts)}: {what}{bw}" + (f" ({r.reason})" if r.reason and
                                                                       r.status != "slow" else "")


def verdict(results: Iterable[PairResult]) -> Verdict:
    results = list(results)
    v = Verdict()
    pairs_of: dict[str, list] = {}
    for r in results:
        for h in r.hosts:
            pairs_of.setdefault(h, []).append(r)
    v.cleared = {h for h, rs in pairs_of.items() if any(r.status == "pass" for r in rs)}
    for h, rs in sorted(pairs_of.items()):
        if h in v.cleared:
            continue
        partners = {p for r in rs for p in r.hosts if p != h}
        if len(partners & v.cleared) >= 2 and all(r.status in BAD for r in rs):
            evidence = [_evidence(r) for r in rs]
            if len(rs) == 1:  # one group of three: the other two were good as a pair
                evidence += [_evidence(o) for o in results if o.status == "pass" and set(o.hosts) <= partners][:1]
            v.culprits.append({"host": h, "evidence": evidence})
        else:
            v.suspects.append(h)
    # A pair bad only together points at their link, once confirmed: run again, bad every time.  A pair that was
    # also good once was noise, not a link.
    by_pair: dict[frozenset, list] = {}
    for r in results:
        if len(r.hosts) == 2:
            by_pair.setdefault(frozenset(r.hosts), []).append(r)
    for key, runs in by_pair.items():
        if not all(h in v.cleared for h in key) or not any(r.status in BAD for r in runs):
            continue
        if any(r.status == "pass" for r in runs):
            continue
        if len(runs) >= 2:
            hosts = list(runs[0].hosts)
            v.culprits.append({"link": hosts, "evidence": [_evidence(r) for r in runs] + [
                _evidence(o) for h in hosts for o in pairs_of[h] if frozenset(o.hosts) != key
                and o.status == "pass"][:4]})
        else:
            v.recheck.append(tuple(runs[0].hosts))
    return v


def retest_pairs(suspects: Sequence[str], cleared: Iterable[str], tried: set) -> list[tuple]:
    """Each suspect with a distinct cleared host it has not been paired with (``tried``: frozensets of hosts that
    ran together); suspects without such a partner this round wait for the next."""
    free = sorted(cleared)
    pairs = []
    for s in sorted(suspects):
        partner = next((g for g in free if frozenset((s, g)) not in tried), None)
        if partner is not None:
            free.remove(partner)
            pairs.append((s, partner))
    return pairs


def next_groups(results: list[PairResult]) -> list[tuple]:
    """The next re-pairing round: each unsettled suspect with a cleared host it has not run with, and each pair bad
    only together run once more to confirm (hosts already busy this round wait).  Three hosts (round 1 is one group
    of three) with nothing cleared: the next pair of them not yet tried (:func:`untried_pair`), one per round, until
    a pair is good and clears two hosts; the third is then judged against them."""
    v = verdict(results)
    if not v.cleared and len({h for r in results for h in r.hosts}) == 3:
        return untried_pair(v.suspects, tried_together(results))
    groups = retest_pairs(v.suspects, v.cleared, tried_together(results))
    busy = {h for g in groups for h in g}
    for pair in v.recheck:
        if not busy & set(pair):
            groups.append(pair)
            busy |= set(pair)
    return groups


def untried_pair(suspects: Sequence[str], tried: set) -> list[tuple]:
    """The first pair of suspects, in name order, that has not run as a pair ([] when every pair has)."""
    ordered = sorted(suspects)
    return next(([(a, b)] for i, a in enumerate(ordered) for b in ordered[i + 1:] if frozenset((a, b)) not in tried),
                [])


def tried_together(results: Iterable[PairResult]) -> set:
    """The pairs of hosts that ran as a pair.  Two hosts of a group of three did not: a third host was in their
    collective, so they may still be paired."""
    return {frozenset(r.hosts) for r in results if len(r.hosts) == 2}
