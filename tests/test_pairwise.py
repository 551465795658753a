"""Pairwise isolation (fleet.runs.pairwise, pure): pairing, judging, re-pairing and the verdict, with exact answers
for a slow host, a hung host, a bad link and a healthy fleet; the pairwise summary and its table."""

from __future__ import annotations

import random

from fleet.outcome import HostState
from fleet.runs.pairwise import PairResult, classify, next_groups, pair_up, verdict
from fleet.runs.pairwise_run import judge_pairwise, pair_outcome
from fleet.runs.record import HostRun
from fleet.runs.render import render_table
from tests.report_builder import arrived, node_report


def simulate(hosts, bad_host=None, bad_link=None, hang=False, rounds=1, seed=1, wrong=False):
    """The rounds pairwise_fleet runs, with each pair's outcome given by the planted fault."""
    rng = random.Random(seed)
    results: list[PairResult] = []

    def run(groups, n):
        for g in groups:
            r = PairResult(tuple(g), n, busbw_gbps=10.0)
            if bad_host in g or (bad_link and set(bad_link) <= set(g)):
                if hang:
                    r.busbw_gbps, r.outcome, r.reason = None, "hang", "did not finish within 30 s"
                elif wrong:
                    r.outcome, r.reason = "wrong", "allreduce_correct failed"
                else:
                    r.busbw_gbps = 0.8
            results.append(r)

    n = 0
    for _ in range(rounds):
        n += 1
        run(pair_up(hosts, rng), n)
    for _ in range(4):
        classify(results)
        groups = next_groups(results)
        if not groups:
            break
        n += 1
        run(groups, n)
    classify(results)
    return results, verdict(results)


def test_pairs_cover_every_host_once_an_odd_one_joins_a_pair_of_three():
    pairs = pair_up([f"h{i}" for i in range(7)], random.Random(3))
    assert sorted(len(p) for p in pairs) == [2, 2, 3]
    assert sorted(h for p in pairs for h in p) == [f"h{i}" for i in range(7)]
    assert pair_up(["solo"], random.Random(0)) == [("solo",)]


def test_rack_and_cross_topologies():
    racks = {"a1": "A", "a2": "A", "b1": "B", "b2": "B"}
    for seed in range(5):
        within = pair_up(list(racks), random.Random(seed), racks, "rack")
        assert all(len({racks[h] for h in p}) == 1 for p in within)
        across = pair_up(list(racks), random.Random(seed), racks, "cross")
        assert all(len({racks[h] for h in p}) == 2 for p in across)


def test_a_slow_host_is_the_culprit_the_others_cleared():
    hosts = [f"n{i}" for i in range(6)]
    results, v = simulate(hosts, bad_host="n3")
    assert v.culprits == [{"host": "n3", "evidence": v.culprits[0]["evidence"]}]
    assert len(v.culprits[0]["evidence"]) == 2 and all(": slow, 0.8 GB/s" in e for e in v.culprits[0]["evidence"])
    assert v.cleared == set(hosts) - {"n3"} and v.suspects == []
    assert len(results) <= 3 + 2 * 2  # O(N): one round, then a re-test of the two suspects (one more if needed)


def test_a_hung_host_is_the_culprit():
    results, v = simulate([f"n{i}" for i in range(4)], bad_host="n0", hang=True)
    assert [c.get("host") for c in v.culprits] == ["n0"]
    assert all(r.status == "hang" for r in results if "n0" in r.hosts)
    assert all("hung (did not finish within 30 s)" in e for e in v.culprits[0]["evidence"])


def test_three_hosts_one_bad_their_pairs_are_tried_until_one_is_good_and_the_third_is_named():
    """Three hosts: round 1 is one group of three, wrong; nothing is cleared, so their pairs run one per round (in
    name order) until one is good; the host bad with both others (or in the group of three, against a good pair of
    the others) is the culprit."""
    for bad in ("a", "b", "c"):
        results, v = simulate(["a", "b", "c"], bad_host=bad, wrong=True)
        assert [(sorted(r.hosts), r.status) for r in results][:1] == [(["a", "b", "c"], "wrong")]
        assert [c["host"] for c in v.culprits] == [bad] and v.suspects == []
        assert v.cleared == {"a", "b", "c"} - {bad}
    results, v = simulate(["a", "b", "c"], bad_host="c", wrong=True)
    assert [(r.hosts, r.round, r.status) for r in results[1:]] == [(("a", "b"), 2, "pass")]  # then c is named
    assert v.culprits[0]["evidence"] == [f"round 1: with {'+'.join(results[0].hosts)}: wrong result, 10 GB/s "
                                         f"(allreduce_correct failed)", "round 2: with a+b: good, 10 GB/s"]
    results, v = simulate(["a", "b", "c"], bad_host="a", wrong=True)
    assert [(r.hosts, r.round, r.status) for r in results[1:]] == [
        (("a", "b"), 2, "wrong"), (("a", "c"), 3, "wrong"), (("b", "c"), 4, "pass")]
    assert len(v.culprits[0]["evidence"]) == 3


def test_three_hosts_bad_in_every_pairing_stop_unsettled_after_their_three_pairs():
    """A fault in every pairing (a bad switch, say): the group of three, then each of the three pairs, all bad:
    nothing cleared, no further round, every host unsettled."""
    runs = [PairResult(("b", "c", "a"), 1, 1.0, outcome="wrong")]
    for n, pair in enumerate((("a", "b"), ("a", "c"), ("b", "c")), start=2):
        classify(runs)
        assert next_groups(runs) == [pair]
        runs.append(PairResult(pair, n, 1.0, outcome="wrong"))
    classify(runs)
    v = verdict(runs)
    assert (v.cleared, v.culprits, sorted(v.suspects)) == (set(), [], ["a", "b", "c"]) and next_groups(runs) == []


def test_four_hosts_all_bad_are_not_repaired_among_themselves():
    runs = [PairResult(("a", "b"), 1, outcome="hang"), PairResult(("c", "d"), 1, outcome="hang")]
    classify(runs)
    assert next_groups(runs) == []


def test_a_pair_bad_only_together_points_at_their_link():
    hosts = ["a", "b", "c", "d"]
    rng_pairs = pair_up(hosts, random.Random(1))
    link = rng_pairs[0]  # make round 1 pair the two ends of the bad link
    results, v = simulate(hosts, bad_link=link)
    assert [c.get("link") for c in v.culprits] == [list(link)]
    assert v.cleared == set(hosts) and not [c for c in v.culprits if "host" in c]
    # confirmed: the pair ran twice, bad both times
    assert [r.status for r in results if set(r.hosts) == set(link)] == ["slow", "slow"]


def test_a_pair_slow_once_and_good_once_is_noise_not_a_link():
    runs = [PairResult(("a", "b"), 1, 10.0), PairResult(("c", "d"), 1, 10.0),
            PairResult(("a", "b"), 2, 2.0), PairResult(("c", "d"), 2, 10.0)]
    classify(runs)
    assert [r.status for r in runs] == ["pass", "pass", "slow", "pass"]
    v = verdict(runs)
    assert v.culprits == [] and v.suspects == [] and v.recheck == [] and next_groups(runs) == []


def test_a_pair_bad_once_only_together_is_run_again_before_it_is_blamed():
    runs = [PairResult(("a", "b"), 1, 2.0), PairResult(("c", "d"), 1, 10.0), PairResult(("a", "c"), 2, 10.0),
            PairResult(("b", "d"), 2, 10.0)]
    classify(runs)
    v = verdict(runs)
    assert v.culprits == [] and v.recheck == [("a", "b")] and next_groups(runs) == [("a", "b")]


def test_a_host_whose_pairs_were_with_a_hung_host_and_one_slow_by_chance_is_tried_again_not_named():
    """CI's pairwise run on a busy machine: pw-b's traffic is dropped.  Round 1: d+b hung, a+c good; round 2: b+a
    hung, and d+c came out slow by chance (0.257 against a median of 0.444).  d was bad with every partner, but one
    of them was the hung b: one cleared partner is not enough to name d.  Each suspect is tried with the other
    cleared host; d is good with a, b hangs with c: b alone is the culprit, and d+c is run once more."""
    runs = [PairResult(("d", "b"), 1, outcome="hang", reason="did not finish within 150 s on d"),
            PairResult(("a", "c"), 1, 0.631), PairResult(("b", "a"), 2, outcome="hang"),
            PairResult(("d", "c"), 2, 0.257)]
    classify(runs)
    assert [r.status for r in runs] == ["hang", "pass", "hang", "slow"]
    v = verdict(runs)
    assert (v.culprits, sorted(v.suspects), v.cleared) == ([], ["b", "d"], {"a", "c"})
    assert next_groups(runs) == [("b", "c"), ("d", "a")]
    runs += [PairResult(("b", "c"), 3, outcome="hang"), PairResult(("d", "a"), 3, 0.6)]
    classify(runs)
    v = verdict(runs)
    assert [c.get("host") for c in v.culprits] == ["b"] and v.suspects == []
    assert len(v.culprits[0]["evidence"]) == 3 and v.recheck == [("d", "c")]
    assert next_groups(runs) == [("d", "c")]
    runs.append(PairResult(("d", "c"), 4, 0.62))  # good this time: it was noise, no link
    classify(runs)
    v = verdict(runs)
    assert [c.get("host") for c in v.culprits] == ["b"] and v.recheck == [] and next_groups(runs) == []


def test_a_healthy_fleet_has_no_culprit_over_several_rounds():
    results, v = simulate([f"n{i}" for i in range(5)], rounds=3)
    assert v.culprits == [] and v.suspects == [] and {r.status for r in results} == {"pass"}
    assert len(results) == 3 * 2


def test_a_pair_with_a_wrong_result_is_wrong_whatever_its_speed():
    r = PairResult(("a", "b"), 1, 10.0, outcome="wrong", reason="collectives/allreduce_correct: mismatch")
    classify([r, PairResult(("c", "d"), 1, 10.0)])
    assert r.status == "wrong"


def test_pair_outcome_from_the_hosts_records():
    ok = arrived(node_report("a", [], {"allreduce/busbw_gbps": 3.5}))
    member = HostRun("b", HostState.OK, exit_code=0)
    assert pair_outcome(("a", "b"), {"a": ok, "b": member}, 1, 30).busbw_gbps == 3.5
    hung = HostRun("b", HostState.TIMED_OUT, "verify did not finish within 30s on the node")
    r = pair_outcome(("a", "b"), {"a": HostRun("a", HostState.TIMED_OUT), "b": hung}, 2, 30)
    assert (r.outcome, r.reason) == ("hang", "did not finish within 30 s on a, b")
    wrong = arrived(node_report("a", [], {"allreduce/busbw_gbps": 3.5}, checks=[
        {"name": "collectives/allreduce_correct", "status": "fail", "message": "max error 1.0"}]))
    assert pair_outcome(("a", "b"), {"a": wrong, "b": member}, 1, 30).outcome == "wrong"
    # every node reports its own ranks: a failure on b's report makes the pair wrong, named after b
    b_ok = arrived(node_report("b", [], {"allreduce/busbw_gbps": 3.5}))
    b_wrong = arrived(node_report("b", [], {"allreduce/busbw_gbps": 3.5}, checks=[
        {"name": "collectives/allreduce_correct", "status": "fail", "message": "max error 1.0"}]))
    r = pair_outcome(("a", "b"), {"a": ok, "b": b_wrong}, 1, 30)
    assert (r.outcome, r.reason, r.busbw_gbps) == ("wrong", "b: collectives/allreduce_correct: max error 1.0", 3.5)
    r = pair_outcome(("a", "b"), {"a": ok, "b": b_ok}, 1, 30)
    assert (r.outcome, r.reason, r.busbw_gbps) == ("ok", "", 3.5)
    crashed = HostRun("b", HostState.FAILED, "verify exited 1 and wrote no report", exit_code=1)
    r = pair_outcome(("a", "b"), {"a": ok, "b": crashed}, 1, 30)
    assert (r.outcome, r.reason) == ("error", "b: failed verify exited 1 and wrote no report")


def test_pairwise_summary_fails_the_culprit_and_renders_the_pairs():
    results, v = simulate([f"n{i}" for i in range(4)], bad_host="n2")
    meta = {"run_id": "20261123T050000Z", "started": "s", "finished": "f", "interrupted": False,
            "pairwise": {"hosts": [f"n{i}" for i in range(4)], "floor": 0.7, "pair_timeout": 30},
            "pairs": [r.to_dict() for r in results]}
    summary = judge_pairwise(meta)
    assert {h: e["status"] for h, e in summary["hosts"].items()} == {"n0": "pass", "n1": "pass", "n2": "fail",
                                                                     "n3": "pass"}
    assert summary["hosts"]["n2"]["culprit"] is True and summary["exit_code"] == 1
    assert [c.get("host") for c in summary["culprits"]] == ["n2"]
    assert summary["pairs"] == [r.to_dict() for r in results]
    table = render_table(summary)
    assert "culprits: host n2" in table and "pairs (two-node all_reduce" in table
    healthy = dict(meta, pairs=[PairResult(("n0", "n1"), 1, 10.0).to_dict(),
                                PairResult(("n2", "n3"), 1, 10.0).to_dict()])
    ok = judge_pairwise(healthy)
    assert ok["exit_code"] == 0 and ok["culprits"] == [] and "culprits: none" in render_table(ok)



def test_a_host_left_out_of_the_pairing_keeps_its_state_and_does_not_fail_the_run():
    """Under Slurm a busy node is never paired: it is ``skipped`` in state ``busy`` with its reason; an unknown
    node is an ``error``; the paired hosts are judged as before."""
    meta = {"run_id": "r", "pairwise": {"hosts": ["a", "b", "c", "d"], "left_out": {
                "c": {"state": "busy", "message": "node gpu3 is allocated (running jobs): not checked"},
                "d": {"state": "error", "message": "Slurm has no node 'gpu9' (set gpufleet_slurm_node)"}}},
            "pairs": [PairResult(("a", "b"), 1, 10.0).to_dict()]}
    summary = judge_pairwise(meta)
    assert {h: (e["status"], e["state"], e["message"]) for h, e in summary["hosts"].items()} == {
        "a": ("pass", "ok", ""), "b": ("pass", "ok", ""),
        "c": ("skipped", "busy", "node gpu3 is allocated (running jobs): not checked"),
        "d": ("error", "error", "Slurm has no node 'gpu9' (set gpufleet_slurm_node)")}
    assert summary["hosts"]["c"]["reasons"] == [{"kind": "state", "status": "skipped", "message": "node gpu3 is "
                                                 "allocated (running jobs): not checked", "state": "busy"}]
    assert summary["exit_code"] == 1  # d's error; c alone would not fail the run
    del meta["pairwise"]["left_out"]["d"]
    meta["pairwise"]["hosts"].remove("d")
    assert judge_pairwise(meta)["exit_code"] == 0


def test_the_html_page_shows_pairs_and_culprits():
    from fleet.outputs.html import render_html

    results, _ = simulate([f"n{i}" for i in range(4)], bad_host="n2")
    meta = {"run_id": "r", "pairwise": {"hosts": [f"n{i}" for i in range(4)]}, "pairs": [r.to_dict() for r in results]}
    page = render_html(judge_pairwise(meta))
    assert '<table id="pairs-table">' in page and page.count("<tr><td class=\"num\">") == len(results)
    assert '<ul id="culprits"><li><b>host n2</b>' in page
