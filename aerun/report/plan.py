"""The report's plan: which parts, which sweeps, which jobs, and whether a job's folder can be reused.

Every part of the report is one or more sweeps of an experiment config (`conf/experiment/`); every point of a
sweep is a setting, trained once per seed. The parts themselves are registered in aerun/report/parts/.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

from omegaconf import DictConfig, OmegaConf

from aerun import checkpoint as ckpt
from aerun.compose import compose_config, group_options, one_line, sweep_combinations
from aerun.errors import UserError
from aerun.validate import check_train


@dataclass(frozen=True)
class Sweep:
    """One experiment's sweep, trained under runs/<name>/<job>/; `extra` overrides go on every job."""

    name: str
    experiment: str
    extra: tuple[str, ...] = ()


TWIN = "_twin"  # conf/experiment/<preset>_twin.yaml: the preset's network without its family's own part


def twin_sweeps(sweep: Sweep) -> tuple[Sweep, ...]:
    """One sweep per model preset of `sweep` that has a twin experiment, `<preset>_twin`."""
    params = compose_config("train", [f"experiment={sweep.experiment}"],
                            return_hydra_config=True).hydra.sweeper.params or {}
    presets = [v.strip() for v in str(params.get("model", "")).split(",") if v.strip()]
    experiments = set(group_options("experiment") or [])
    return tuple(Sweep(p + TWIN, p + TWIN) for p in presets if p + TWIN in experiments)


Section = Callable[[Any, Any], None]  # (the Document, the report's Context): writes the part


@dataclass(frozen=True)
class Part:
    """One part of the report: its sweeps and the section that writes it up (registered by its module in
    aerun/report/parts/, `@part`)."""

    key: str
    title: str
    own: tuple[Sweep, ...]
    section: Section
    needs: tuple[str, ...] = ()  # parts whose runs this part's section compares against
    twins: bool = False  # each model preset of its sweeps also trained as its twin, where it has one
    beyond: bool = False  # trained only with beyond=true (the section says how to train it otherwise)
    order: float = 100.0  # where it stands in the report: the assignment's parts are 1-6

    @cached_property
    def sweeps(self) -> tuple[Sweep, ...]:
        """Its own sweeps, then (with `twins`) a twin sweep per preset that has one."""
        if not self.twins:
            return self.own
        return (*self.own, *(twin for sweep in self.own for twin in twin_sweeps(sweep)))


@dataclass
class Job:
    """One training run: a setting of a sweep with one seed."""

    sweep: Sweep
    labels: list[str]  # the sweep's own overrides, e.g. ["model.hidden=64"]
    cfg: DictConfig
    run_dir: Path

    @property
    def seed(self) -> int:
        return int(self.cfg.seed)

    @property
    def label(self) -> str:
        return " ".join(self.labels) or self.cfg.model.name

    @property
    def overrides(self) -> list[str]:
        """What `.hydra/overrides.yaml` records: the sweep's overrides, and the seed where it is not 0."""
        return [*self.labels, *([f"seed={self.seed}"] if self.seed else [])]


@dataclass
class Setting:
    """One point of a sweep, with its jobs: one per seed, the first seed first."""

    jobs: list[Job]

    @property
    def first(self) -> Job:
        return self.jobs[0]

    @property
    def cfg(self) -> DictConfig:
        return self.first.cfg

    @property
    def label(self) -> str:
        return self.first.label

    @property
    def runs(self) -> list[Path]:
        return [job.run_dir for job in self.jobs]


def report_seeds(seeds: Any, extra: Sequence[str]) -> list[int] | None:
    """The seeds every job trains with: 0..seeds-1; None for one seed (the config's own, 0 by default)."""
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise UserError(f"seeds={seeds!r} is not allowed; it must be a positive integer (seeds 0..seeds-1 per job)")
    if seeds == 1:
        return None
    if any(o.split("=", 1)[0].lstrip("+~") == "seed" for o in extra):
        raise UserError("train_overrides sets seed, and seeds=N trains every job with seeds 0..N-1; drop one of the two")
    return list(range(seeds))


def job_dir(sweep_dir: Path, index: int, seed: int, first_seed: int) -> Path:
    """runs/<sweep>/<index>/ for the first seed (as one-seed reports always had it), <index>-seed<s>/ else."""
    return sweep_dir / (str(index) if seed == first_seed else f"{index}-seed{seed}")


def plan_sweep(sweep: Sweep, extra: Sequence[str], runs_dir: Path, seeds: list[int] | None = None) -> list[Setting]:
    """Every setting of a sweep, composed as `aerun -m experiment=...` composes it, checked, once per seed."""
    base = [f"experiment={sweep.experiment}", *sweep.extra]
    try:
        params = compose_config("train", base, return_hydra_config=True).hydra.sweeper.params or {}
        combos = list(sweep_combinations([f"{k}={v}" for k, v in params.items()], multirun=True))
        per_seed = [f"seed={s}" for s in seeds] if seeds else [None]
        configs = [[compose_config("train", [*base, *combo, *extra, *([s] if s else [])]) for s in per_seed]
                   for combo in combos]
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"report: cannot compose experiment={sweep.experiment} with "
                        f"train_overrides={list(extra)}: {one_line(exc)}") from None
    settings = []
    for i, (combo, cfgs) in enumerate(zip(combos, configs)):
        jobs = []
        for cfg in cfgs:
            check_train(cfg)
            if cfg.early_stop.patience:
                raise UserError(f"train_overrides sets early_stop.patience={cfg.early_stop.patience}: the report sets "
                                "runs of one length side by side (a spread must not mix run lengths); drop it")
            jobs.append(Job(sweep, combo, cfg, job_dir(runs_dir / sweep.name, i, int(cfg.seed), int(cfgs[0].seed))))
        settings.append(Setting(jobs))
    return settings


def job_state(job: Job) -> ckpt.RunState:
    """What a job's folder holds against the job (aerun.checkpoint.run_state: new, resume or complete; a
    checkpoint of another config, or one trained longer, is refused in one line)."""
    return ckpt.run_state(job.run_dir, OmegaConf.to_container(job.cfg, resolve=True), "this report's",
                          "write the report elsewhere with dir=...")
