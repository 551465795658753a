"""The Slurm commands gpufleet runs: here (a login node), or over SSH on ``--slurm-host``.

Every command is an argv list; over SSH each word is quoted (an inventory value never reaches a shell
unquoted).  A command that fails raises :class:`SlurmError`, one line naming the command and the cause
(:func:`cause`: the first meaningful line of its error output), which a command can print as it is and exit 2.
"""

from __future__ import annotations

import re
import subprocess
import threading
from dataclasses import dataclass
from typing import Callable, Iterable

from fleet.shell import quote
from fleet.slurm import reservation
from fleet.slurm.nodes import SlurmNode, fields, parse_show_node

COMMAND_TIMEOUT_S = 60.0


class SlurmError(RuntimeError):
    """A Slurm command failed (or could not run); its message is one line naming the command and the cause."""


_PREFIX = re.compile(r"^(?:[\w.-]+: )?(?:error|fatal): |^slurm_\w+ error: ")
_RETRYING = re.compile(r",? retrying in \d+ ?sec.*$")


def cause(text: str) -> str:
    """The cause in a Slurm client's error output, on one line (pure).

    Its first line, without the program's ``scontrol: error:`` prefix (or ``slurm_load_node error:``); when a
    later line is ``fatal:``, that one, with the first in brackets: ``Could not establish a configuration source
    (resolve_ctls_from_dns_srv: res_nsearch error: Unknown host)``.  At most 300 characters."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return "no output"
    first = _RETRYING.sub("", _PREFIX.sub("", lines[0]))
    fatal = next((ln for ln in lines[1:] if re.match(r"^(?:[\w.-]+: )?fatal: ", ln)), None)
    out = f"{_PREFIX.sub('', fatal)} ({first})" if fatal else first
    return out if len(out) <= 300 else out[:299] + "…"


def command_name(argv: list[str]) -> str:
    """What a failed command is called in its error: ``scontrol show node``, ``scontrol update``, ``sbatch``
    (its options and values left out)."""
    if not argv:
        return "?"
    words = [w for w in argv[1:] if not w.startswith("-") and "=" not in w]
    return " ".join([argv[0], *words[:2]]) if argv[0] == "scontrol" else argv[0]


def failed(argv: list[str], r: "Result") -> SlurmError:
    """The one-line error for a command that exited ``r.rc``: the command and the cause, from its stderr (else its
    stdout)."""
    return SlurmError(f"{command_name(argv)} failed (exit {r.rc}): {cause(r.stderr if r.stderr.strip() else r.stdout)}")


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str


def local_runner(argv: list[str], timeout: float) -> Result:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise SlurmError(f"{argv[0]}: not found here (run on a login node, or give --slurm-host)") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{command_name(argv)}: no answer within {timeout:g} s") from None
    return Result(r.returncode, r.stdout, r.stderr)


def ssh_runner(transport) -> Callable[[list[str], float], Result]:
    """Run on a login node through an open :class:`fleet.transport.Transport` (one at a time: one SSH session)."""
    lock = threading.Lock()

    def run(argv: list[str], timeout: float) -> Result:
        with lock:
            r = transport.run(" ".join(quote(a) for a in argv), timeout=timeout)
        return Result(r.exit_code, r.stdout, r.stderr)

    return run


def parse_squeue(text: str) -> dict[str, tuple[str, str]]:
    """``squeue --format=%i|%T|%r`` lines -> ``{job id: (state, reason)}`` (pure; other lines are ignored)."""
    out = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3 and parts[0] and parts[1]:
            out[parts[0]] = (parts[1], parts[2])
    return out


class SlurmClient:
    def __init__(self, runner: Callable[[list[str], float], Result] = local_runner,
                 timeout: float = COMMAND_TIMEOUT_S) -> None:
        self.runner = runner
        self.timeout = timeout

    def run(self, *argv: str, ok: Iterable[int] = (0,)) -> Result:
        r = self.runner(list(argv), self.timeout)
        if r.rc not in tuple(ok):
            raise failed(list(argv), r)
        return r

    def nodes(self, names: Iterable[str] | None = None) -> dict[str, SlurmNode]:
        """The nodes' state (every node without ``names``); a name Slurm does not know is absent."""
        names = list(names) if names is not None else None
        if names is not None and not names:
            return {}
        argv = ["scontrol", "-o", "show", "node", *([",".join(names)] if names else [])]
        r = self.run(*argv, ok=(0, 1))
        if r.rc != 0 and "not found" not in (r.stderr + r.stdout).lower():
            raise failed(argv, r)
        found = parse_show_node(r.stdout)
        if r.rc != 0 and names:  # one unknown name fails the whole query: ask one by one
            found = {}
            for name in names:
                one = self.runner(["scontrol", "-o", "show", "node", name], self.timeout)
                found.update(parse_show_node(one.stdout) if one.rc == 0 else {})
        return found

    def drain(self, node: str, reason: str) -> None:
        self.run("scontrol", "update", f"NodeName={node}", "State=DRAIN", f"Reason={reason}")

    def resume(self, node: str) -> None:
        self.run("scontrol", "update", f"NodeName={node}", "State=RESUME")

    def user(self) -> str:
        """The user the commands run as (here, or the login on ``--slurm-host``): whom a reservation admits."""
        r = self.run("id", "-un")
        name = r.stdout.strip()
        if not name:
            raise SlurmError("id -un printed no user name")
        return name

    def reservation(self, name: str) -> dict[str, str] | None:
        """``scontrol -o show reservation NAME``'s fields; None when there is none of that name."""
        argv = reservation.show_argv(name)
        r = self.runner(argv, self.timeout)
        if r.rc != 0:
            if "not found" in (r.stderr + r.stdout).lower():
                return None
            raise failed(argv, r)
        return reservation.parse_show(r.stdout)

    def delete_reservation(self, name: str) -> str:
        """Delete reservation ``name``: ``deleted``, ``gone`` (there was none), or ``in use`` (jobs still in it;
        Slurm refuses until they end)."""
        argv = reservation.delete_argv(name)
        r = self.runner(argv, self.timeout)
        text = (r.stderr + r.stdout).lower()
        if r.rc == 0:
            return "deleted"
        if "is invalid" in text or "not found" in text:
            return "gone"
        if "in use" in text:
            return "in use"
        raise failed(argv, r)

    def sbatch(self, options: list[str], command: str) -> str:
        """Submit ``command`` (one shell line, run by the job's ``sh -c``) with ``options``; its job id."""
        r = self.run("sbatch", "--parsable", *options, f"--wrap={command}")
        job = r.stdout.strip().split(";")[0]
        if not job.isdigit():
            raise SlurmError(f"sbatch printed no job id: {r.stdout.strip()[:200]!r}")
        return job

    def states(self, job_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """One ``squeue`` for many jobs: ``{job id: (JobState, Reason)}``; a job Slurm no longer lists is absent."""
        ids = [str(j) for j in job_ids if j]
        if not ids:
            return {}
        argv = ["squeue", "--noheader", "--states=all", f"--jobs={','.join(ids)}", "--format=%i|%T|%r"]
        r = self.runner(argv, self.timeout)
        if r.rc != 0:
            if "invalid job id" in (r.stderr + r.stdout).lower():  # every one of them forgotten
                return {}
            raise failed(argv, r)
        return parse_squeue(r.stdout)

    def job(self, job_id: str) -> dict[str, str] | None:
        """``scontrol show job -o``'s fields (JobState, ExitCode, Reason, NodeList...), None when Slurm forgot it."""
        argv = ["scontrol", "-o", "show", "job", str(job_id)]
        r = self.runner(argv, self.timeout)
        if r.rc != 0:
            if "invalid job id" in (r.stderr + r.stdout).lower():
                return None
            raise failed(argv, r)
        line = next((ln for ln in r.stdout.splitlines() if ln.strip()), "")
        return fields(line) if line else None

    def cancel(self, job_ids: Iterable[str]) -> None:
        ids = [str(j) for j in job_ids if j]
        if ids:
            self.run("scancel", *ids, ok=(0, 1))
