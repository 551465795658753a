"""``push``: install the node-side package on every selected host (once per content hash), deep-checked."""

from __future__ import annotations

from fleet.commands import Outcome, common
from fleet.outcome import ExitCode, Recap, status_for


def run(selected: list, options, wheelhouse) -> Outcome:
    from fleet import push as push_lib
    from fleet.fanout import run_fleet

    common.ready_to_connect(selected)
    artifact = push_lib.build_wheel()
    common.note(f"verify wheel {artifact.filename} (content {artifact.digest})")
    result = run_fleet(selected, lambda t: push_lib.push(t, artifact, deep=True, wheelhouse=wheelhouse), options,
                       desc="push")
    recap = Recap({r.host.name: status_for(r.state, "pass") for r in result})
    code = ExitCode.INTERRUPTED if result.interrupted else recap.exit_code
    return Outcome(push_lib.render_table(result) + "\n\n" + recap.line(), {}, int(code))
