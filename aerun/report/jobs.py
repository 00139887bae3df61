"""The report's training over its jobs: in this process (the default), or through a Hydra launcher.

With `hydra/launcher=NAME` (joblib, submitit_local, submitit_slurm, aerun's slurm), every
incomplete job is one launcher job: the launcher composes the report's config with
`+report_job=<run dir>`, and `train_job` trains the run whose config the report wrote into
that directory. Reuse and resume are the same either way, since both go through the run
directory's checkpoint. The launcher gets the jobs longest first (by their counted training FLOPs),
so that on a few workers no long job starts last while the other workers have nothing left to do.
"""

from __future__ import annotations

import logging
import time
import traceback
from pathlib import Path
from typing import Sequence

import torch
import yaml
from hydra._internal.callbacks import Callbacks
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.types import HydraContext, RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from aerun import atomic
from aerun import checkpoint as ckpt
from aerun.models import build, builder_args, family
from aerun.report.plan import Job, Part, Setting, job_state
from aerun.train import train

JOB_CONFIG = Path(".hydra") / "config.yaml"
IN_PROCESS = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
log = logging.getLogger(__name__)


class JobsIncomplete(Exception):
    """Jobs a launcher ran that did not reach their epochs: `lines` says which and where to look."""
    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


def write_job_files(job: Job) -> None:
    """What Hydra would leave in a job's .hydra/: its overrides (sweep labels read them) and its config."""
    hydra_dir = job.run_dir / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_text(hydra_dir / "overrides.yaml", yaml.safe_dump(job.overrides))
    atomic.write_text(hydra_dir / "config.yaml", OmegaConf.to_yaml(job.cfg, resolve=True))


def train_job(cfg: DictConfig) -> None:
    """A launcher's task: train (or resume) the report job whose directory is `cfg.report_job`.

    It does not evaluate its run: on two cores that made the report 42 s slower (601 s against 559 s, one run
    each, 2026-12-02; docs/results.md, "Wall times"): the workers' evaluations took 162 s between them, each
    process fitting the PCA and pixel probes again with one thread, against 95 s in the report's process."""
    run_dir = Path(cfg.report_job)
    job_cfg = OmegaConf.load(run_dir / JOB_CONFIG)
    train(job_cfg, run_dir, resume=ckpt.saved(run_dir))


def launcher_target() -> str:
    """The `_target_` of the launcher the command line chose (in-process outside a Hydra app)."""
    if not HydraConfig.initialized():
        return IN_PROCESS
    return str(HydraConfig.get().launcher.get("_target_", IN_PROCESS))


def train_all(settings: dict[str, list[Setting]], parts: Sequence[Part], device: str, root: Path,
              requested_device: str = "auto") -> None:
    """Train every job not yet complete, with progress as `part k/K · job i/N`.

    Reuse is per job: a report with more seeds than the last trains only the new seeds.
    """
    total = sum(len(s.jobs) for p in parts for sweep in p.sweeps for s in settings[sweep.name])
    in_process = launcher_target() == IN_PROCESS
    done, pending = 0, []
    for k, part in enumerate(parts, 1):
        for sweep in part.sweeps:
            for job in (job for setting in settings[sweep.name] for job in setting.jobs):
                done += 1
                found = job_state(job)
                have, complete = found.epochs, found.action == "complete"
                verb = "fitting" if family(job.cfg.model.builder).fitted else f"training {job.cfg.epochs} epochs"
                state = "reused (complete)" if complete else (
                    f"resuming at epoch {have}" if have else verb)
                print(f"[report] part {k}/{len(parts)} {part.key} · job {done}/{total} · "
                      f"{sweep.name} {job.label} seed {job.seed}: {state}"
                      + ("" if complete or in_process else " (through the launcher)"), flush=True)
                if complete:
                    continue
                if in_process:
                    job.cfg.device = device
                    write_job_files(job)
                    train(job.cfg, job.run_dir, resume=have is not None)
                else:
                    job.cfg.device = requested_device  # `auto` is resolved where the job runs
                    with open_dict(job.cfg):
                        job.cfg.paths.data_dir = str(Path(job.cfg.paths.data_dir).resolve())
                    write_job_files(job)
                    pending.append((job, job.cfg.epochs - (have or 0)))
    if pending:
        launch(longest_first(pending), root)


def longest_first(jobs: Sequence[tuple[Job, int]]) -> list[Job]:
    """The jobs, each with the epochs it has still to train, by their training FLOPs (per image, counted by
    torch on one step, times those epochs), largest first; ties keep the plan's order. On two workers, the report's 22 jobs took 530 s of
    training in the plan's order, where its conv AEs come last and the third of them trains alone at the
    end (2026-12-02; docs/results.md, "Wall times")."""
    from aerun.bench import training_flops

    def work(pending: tuple[Job, int]) -> float:
        job, epochs = pending
        with torch.random.fork_rng():  # a model's weights and the counted step's images are drawn: leave this
            model = build(job.cfg.model.builder, **builder_args(job.cfg.model))  # process's stream as it was
            return training_flops(model, 1) * epochs

    return [job for job, _ in sorted(jobs, key=work, reverse=True)]


def launch(jobs: Sequence[Job], root: Path) -> None:
    """Run jobs through the command line's Hydra launcher; raise JobsIncomplete for those that did not finish."""
    hydra_cfg = HydraConfig.get()
    where = (root / "launcher" / time.strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    loader = GlobalHydra.instance().config_loader()
    overrides = [*hydra_cfg.overrides.task, *hydra_cfg.overrides.hydra, f"hydra.sweep.dir={where}"]
    config = loader.load_configuration(config_name=hydra_cfg.job.config_name, overrides=overrides,
                                       run_mode=RunMode.MULTIRUN)
    launcher = Plugins.instance().instantiate_launcher(
        hydra_context=HydraContext(config_loader=loader, callbacks=Callbacks(config)),
        task_function=train_job, config=config)
    if hasattr(launcher, "exit_on_failure"):
        launcher.exit_on_failure = False  # the report says itself which jobs to resume
    name = hydra_cfg.runtime.choices.get("hydra/launcher", "launcher")
    print(f"[report] {len(jobs)} jobs to {name}, longest first; its files: {where}", flush=True)
    lines: list[str] = []
    try:
        launcher.launch([[f"+report_job='{job.run_dir.resolve()}'"] for job in jobs], initial_job_idx=0)
    except Exception as exc:  # the launcher's own account of what failed, kept beside the checkpoints' verdict
        lines = list(getattr(exc, "lines", [])) or [f"the launcher stopped: {str(exc).strip().splitlines()[0]}"]
        where.mkdir(parents=True, exist_ok=True)
        atomic.write_text(where / "launcher-error.log", traceback.format_exc())
    incomplete = [job for job in jobs if job_state(job).action != "complete"]
    if incomplete:
        lines += [f"{job.run_dir} is not complete ({job.sweep.name} {job.label} seed {job.seed})" for job in incomplete]
        raise JobsIncomplete(lines + [f"launcher files and logs: {where}"])
