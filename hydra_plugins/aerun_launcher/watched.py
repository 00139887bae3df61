"""Submitit launchers that say what the cluster is doing, and what went wrong, in one line each.

Hydra's submitit launcher waits for each job in turn and, when one was cancelled or
failed, raises a multi-line error from the middle of the wait. These subclasses keep
its submission unchanged, then watch all jobs together: a status line whenever the
counts change (`[slurm] 4 jobs: 1 pending, 2 running, 1 done, 0 failed`), and for every
job that did not finish, one line naming its overrides, its state and its log.
Hydra only instantiates launchers from the hydra_plugins package, hence this module's home.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence
from unittest import mock

from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher

RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING"}
FAILED = {"FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "INTERRUPTED"}
# A job Slurm puts back in the queue (preempted, `scontrol requeue`, a node that failed, submitit's requeue
# before the time limit) runs again from its last checkpoint (aerun.cli.train_command): it is not failed.
REQUEUED = {"REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "PREEMPTED"}
POLL_S = 2.0


class JobsFailed(RuntimeError):
    """Some jobs ended without a result; `lines` says which, in what state, and where their logs are."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


def category(state: str) -> str:
    state = state.upper().split()[0] if state else "UNKNOWN"  # "CANCELLED by 0" -> CANCELLED
    if state in REQUEUED:
        return "requeued"
    if state in FAILED:
        return "failed"
    if state in RUNNING:
        return "running"
    if state in ("COMPLETED", "FINISHED", "DONE"):
        return "done"
    return "pending"


def labels(overrides: Sequence[Sequence[str]]) -> list[str]:
    """Each job by the overrides that tell it from the others (`model.hidden=16`), else by all of its own."""
    jobs = [filter_overrides(o) for o in overrides]
    common = set.intersection(*(set(o) for o in jobs)) if len(jobs) > 1 else set()
    return [" ".join(o for o in job if o not in common) or " ".join(job) or "no overrides" for job in jobs]


def slurm_requeued(job_ids: Sequence[str]) -> set[str]:
    """The jobs that Slurm's accounting shows ran more than once: each requeue leaves a record of its own
    (`sacct --duplicates`), which a state polled now and then can miss when the job is quickly back."""
    bases = sorted({job_id.split("_")[0] for job_id in job_ids})
    try:
        listed = subprocess.run(["sacct", "-X", "-n", "-P", "--duplicates", "-o", "JobID,State", "-j", ",".join(bases)],
                                capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    records = [line.split("|")[0] for line in listed.splitlines() if "|" in line]
    return {job_id for job_id in job_ids if records.count(job_id) > 1}


def watch(jobs: Sequence[Any], overrides: Sequence[Sequence[str]], name: str, out=sys.stdout,
          requeues: Callable[[Sequence[str]], set[str]] | None = None) -> None:
    """Wait for every job; print the counts when they change; raise JobsFailed for those that failed.

    A job that Slurm requeues is counted pending again, and among the requeued (those seen back in the
    queue, or running again after it, or that `requeues` names), not failed: it goes on from its checkpoint
    when it runs again."""
    last, requeued, seen = None, set(), ["pending"] * len(jobs)
    while True:
        states = []
        for i, job in enumerate(jobs):
            done = job.done()
            state = category(job.state)
            if state == "requeued" or (seen[i] == "running" and state == "pending"):
                requeued.add(i)
                state = "pending"
            if done and state not in ("failed", "pending"):
                state = "done" if job.paths.result_pickle.exists() else "failed"
            seen[i] = state
            states.append(state)
        counts = {c: states.count(c) for c in ("pending", "running", "done", "failed")}
        if requeues is not None and counts != {c: n for c, n in (last or {}).items() if c != "requeued"}:
            again = requeues([job.job_id for job in jobs])  # one accounting query for all the jobs
            requeued |= {i for i, job in enumerate(jobs) if job.job_id in again}
        if requeued:
            counts["requeued"] = len(requeued)
        if counts != last:
            print(f"[{name}] {len(jobs)} jobs: " + ", ".join(f"{n} {c}" for c, n in counts.items()), file=out,
                  flush=True)
            last = counts
        if counts["pending"] + counts["running"] == 0:
            break
        time.sleep(POLL_S)
    failed = []
    for job, state, label in zip(jobs, states, labels(overrides)):
        if state == "failed":
            failed.append(f"job {job.job_id} ({label}) ended {job.state or 'without a result'}; "
                          f"its log: {Path(job.paths.stderr)}")
    if failed:
        raise JobsFailed(failed)


class _Watched:
    """Mixin: submit as Hydra's launcher does, then watch the array instead of waiting job by job.

    The parent's `launch` builds the executor from the config and submits the array; only the
    step after submission changes, so the submission is wrapped rather than rewritten.
    With `exit_on_failure` (the default, for `aerun -m`), failed jobs end the command with one
    line each and exit status 1; the report clears it and handles JobsFailed itself.
    """

    _EXECUTOR: str
    _requeues: Callable[[Sequence[str]], set[str]] | None = None
    exit_on_failure = True

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        submit = submitit.AutoExecutor.map_array

        def submit_and_watch(executor: Any, fn: Any, *iterables: Any) -> list[Any]:
            jobs = submit(executor, fn, *iterables)
            watch(jobs, job_overrides, self._EXECUTOR, requeues=self._requeues)
            return jobs

        try:
            with mock.patch.object(submitit.AutoExecutor, "map_array", submit_and_watch):
                return super().launch(job_overrides, initial_job_idx)  # type: ignore[misc]
        except JobsFailed as failed:
            if not self.exit_on_failure:
                raise
            sweep = Path(str(self.config.hydra.sweep.dir))  # type: ignore[attr-defined]
            for line in failed.lines:
                print(f"aerun: error: {line}", file=sys.stderr)
            print(f"aerun: error: {len(failed.lines)} of {len(job_overrides)} jobs did not finish; the finished "
                  f"epochs of each are kept under {sweep}/<job>/; run the same command again to continue the sweep "
                  f"(with hydra.sweep.dir={sweep})", file=sys.stderr)
            sys.exit(1)


class WatchedSlurmLauncher(_Watched, SlurmLauncher):
    _requeues = staticmethod(slurm_requeued)


class WatchedLocalLauncher(_Watched, LocalLauncher):
    pass
