"""The report's training loop over its jobs: each trained, resumed or reused, in this process."""

from __future__ import annotations

from typing import Sequence

import yaml
from omegaconf import OmegaConf

from aerun.report.plan import Job, Part, Setting, is_complete, trained_epochs


def write_job_files(job: Job) -> None:
    """What Hydra would leave in a job's .hydra/: its overrides (sweep labels read them) and its config."""
    hydra_dir = job.run_dir / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    (hydra_dir / "overrides.yaml").write_text(yaml.safe_dump(job.overrides))
    (hydra_dir / "config.yaml").write_text(OmegaConf.to_yaml(job.cfg))


def train_all(settings: dict[str, list[Setting]], parts: Sequence[Part], device: str) -> None:
    """Train every job not yet complete, with progress as `part k/K · job i/N`.

    Reuse is per job: a report with more seeds than the last trains only the new seeds.
    """
    from aerun.train import train

    total = sum(len(s.jobs) for p in parts for sweep in p.sweeps for s in settings[sweep.name])
    done = 0
    for k, part in enumerate(parts, 1):
        for sweep in part.sweeps:
            for job in (job for setting in settings[sweep.name] for job in setting.jobs):
                done += 1
                have = trained_epochs(job)
                complete = is_complete(job, have)
                state = "reused (complete)" if complete else (
                    f"resuming at epoch {have}" if have else f"training {job.cfg.epochs} epochs")
                print(f"[report] part {k}/{len(parts)} {part.key} · job {done}/{total} · "
                      f"{sweep.name} {job.label} seed {job.seed}: {state}", flush=True)
                if complete:
                    continue
                write_job_files(job)
                job.cfg.device = device
                train(job.cfg, job.run_dir, resume=have is not None)
