"""Submitit launchers that say what the cluster is doing, and what went wrong, in one line each.

Hydra's submitit launcher waits for each job in turn and, when one was cancelled or
failed, raises a multi-line error from the middle of the wait. These subclasses keep
its submission unchanged, then watch all jobs together: a status line whenever the
counts change (`[slurm] 4 jobs: 1 pending, 2 running, 1 done, 0 failed`), and for every
job that did not finish, one line naming its overrides, its state and its log.
Hydra only instantiates launchers from the hydra_plugins package, hence this module's home.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Sequence
from unittest import mock

from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher

RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING"}
FAILED = {"FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE",
          "INTERRUPTED"}
POLL_S = 2.0


class JobsFailed(RuntimeError):
    """Some jobs ended without a result; `lines` says which, in what state, and where their logs are."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


def category(state: str) -> str:
    state = state.upper().split()[0] if state else "UNKNOWN"  # "CANCELLED by 0" -> CANCELLED
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


def watch(jobs: Sequence[Any], overrides: Sequence[Sequence[str]], name: str, out=sys.stdout) -> None:
    """Wait for every job; print the counts when they change; raise JobsFailed for those that failed."""
    last = None
    while True:
        states = []
        for job in jobs:
            done = job.done()
            state = category(job.state)
            if done and state != "failed":
                state = "done" if job.paths.result_pickle.exists() else "failed"
            states.append(state)
        counts = {c: states.count(c) for c in ("pending", "running", "done", "failed")}
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
    exit_on_failure = True

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        submit = submitit.AutoExecutor.map_array

        def submit_and_watch(executor: Any, fn: Any, *iterables: Any) -> list[Any]:
            jobs = submit(executor, fn, *iterables)
            watch(jobs, job_overrides, self._EXECUTOR)
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
                  f"epochs of each are kept under {sweep}/<job>/; continue one with: aerun train resume={sweep}/<job>",
                  file=sys.stderr)
            sys.exit(1)


class WatchedSlurmLauncher(_Watched, SlurmLauncher):
    pass


class WatchedLocalLauncher(_Watched, LocalLauncher):
    pass
