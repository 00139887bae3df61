"""A trial of `aerun -m hydra/sweeper=optuna`, from inside its job.

The sweeper (hydra_plugins/aerun_search) asks Optuna for parameters and launches one training job
per trial, numbered by the trial. The job trains as any run does, on the training split without
its validation images, and
- after each epoch reports its `search.metric` on the validation split to the trial (through the
  study's SQLite file), stopping when the pruner says the trial is hopeless;
- returns {"metric", "value"} (the last epoch's `search.metric` from loss_epoch.csv),
  {"pruned_at": epoch} or {"failed": why}: the sweeper tells Optuna which.
A search is tuned on the validation split only: without `dataset.val_size` it is refused.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig

from aerun.errors import UserError

SWEEPER = "hydra_plugins.aerun_search.search.SearchSweeper"
OPTUNA = "hydra/sweeper=optuna"
# What `hydra/sweeper=optuna` means to aerun, unless the command line says otherwise: aerun's sweeper, the
# study in the sweep folder (so the same command continues it), one trial at a time.
DEFAULTS = {
    "hydra.sweeper._target_": SWEEPER,
    "hydra.sweeper.storage": "'sqlite:///${hydra.sweep.dir}/study.db'",
    "hydra.sweeper.study_name": "aerun",
    "hydra.sweeper.n_jobs": "1",
}
PRUNERS = ("median", "none")
NO_TEST = "test_loss"  # never an objective: tuning on the test split makes its error optimistic
# The validation measures a search can be tuned on, and which way is better: the validation split's MSE, and the
# accuracy of a linear probe fitted on the training split's codes and scored on the validation split's (what a
# regulariser that shapes the code, not the reconstruction, is for).
VALIDATION = {"val_loss": "minimize", "val_probe": "maximize"}


def direction(metric: str) -> str:
    """Which way a metric is better: a validation measure's own way; a training column (a loss) is minimised."""
    return VALIDATION.get(metric, "minimize")


def check_metric(key: str, metric: str) -> None:
    """A column chosen to decide by (a search's objective, the best checkpoint): a validation measure or a training
    column of loss_epoch.csv, never the test split's; one line otherwise."""
    if metric == NO_TEST or not (metric in VALIDATION or metric.startswith("train_")):
        raise UserError(f"{key}={metric} is not allowed; it must be {', '.join(VALIDATION)} or a train_ column of "
                        "loss_epoch.csv (aerun never chooses on the test split: hold out dataset.val_size=N images)")


def chosen(args: list[str]) -> bool:
    """Whether a command line (aerun's train, with -m) runs a search: `hydra/sweeper=optuna` on it, or an experiment
    that selects that sweeper (conf/experiment/search_contractive.yaml)."""
    if not ("-m" in args or "--multirun" in args):
        return False
    if OPTUNA in args:
        return True
    experiments = [a for a in args if a.split("=", 1)[0].lstrip("+~") == "experiment"]
    if not experiments:
        return False
    from aerun.compose import compose_config, parse_overrides

    plain = [o.input_line for o in parse_overrides(experiments) if not o.is_sweep_override()]
    try:
        cfg = compose_config("train", plain, return_hydra_config=True)
    except Exception:  # the preflight names what is wrong with it
        return False
    return "optuna" in str(cfg.hydra.sweeper.get("_target_", ""))


def with_defaults(overrides: list[str]) -> list[str]:
    """A search's command line: the Optuna sweeper named (an experiment may have chosen it), and aerun's DEFAULTS
    for the keys it does not set."""
    given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    named = [] if OPTUNA in overrides else [OPTUNA]
    return [*overrides, *named, *(f"{key}={value}" for key, value in DEFAULTS.items() if key not in given)]


def searching(hydra_cfg: Any) -> bool:
    """Whether this job is a trial of aerun's Optuna search."""
    return str(hydra_cfg.sweeper.get("_target_", "")) == SWEEPER


def check(cfg: DictConfig, sweeper_direction: str | None = None) -> None:
    """What a search needs of each trial's config: a validation split, a metric it logs, and (where the sweeper's
    config is at hand) no direction set against the metric's."""
    if not cfg.dataset.val_size:
        raise UserError("a search is tuned on a validation split, never on the test split: add dataset.val_size=N "
                        "(for MNIST, 10000 holds out a sixth of the training images)")
    metric = cfg.search.metric
    check_metric("search.metric", metric)
    if sweeper_direction == "maximize" and direction(metric) == "minimize":
        raise UserError(f"hydra.sweeper.direction=maximize would search for the worst {metric}; leave the direction "
                        f"out: a search {direction(metric)}s its metric")
    if cfg.search.pruner not in PRUNERS:
        raise UserError(f"search.pruner={cfg.search.pruner} is not allowed; allowed: {', '.join(PRUNERS)}")


def pruning(cfg: DictConfig, hydra_cfg: Any) -> Callable[[int, dict[str, float]], bool]:
    """Report an epoch's `search.metric` (of its validation measures) to this job's trial; True when the trial
    should stop. A training column is not reported: its value is known only from the epoch's log."""
    from hydra_plugins.aerun_search.search import make_pruner, optuna

    sweeper = hydra_cfg.sweeper
    study = optuna.load_study(study_name=sweeper.study_name, storage=sweeper.storage,
                              pruner=make_pruner(cfg.search.pruner))
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, int(hydra_cfg.job.num))
    trial = optuna.trial.Trial(study, trial_id)

    def report(epoch: int, validation: dict[str, float]) -> bool:
        if cfg.search.metric not in validation:
            return False
        trial.report(validation[cfg.search.metric], epoch)
        return trial.should_prune()
    return report


def result(summary: dict[str, Any], run_dir: Path, metric: str, best: bool = False) -> dict[str, Any]:
    """What the job returns to the sweeper: its last epoch's `metric`, or with `best` (checkpoint.monitor is the
    search's metric) its best epoch's, the one checkpoints/best.pt holds; with the epoch it is from."""
    if summary.get("pruned_at") is not None:
        return {"pruned_at": summary["pruned_at"]}
    with open(Path(run_dir) / "loss_epoch.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or metric not in rows[-1]:
        return {"failed": f"{run_dir}/loss_epoch.csv has no {metric} column"}
    chosen = rows[-1]
    if best:  # the first epoch of the best value, as the best checkpoint keeps it (a later tie does not replace it)
        better = max if direction(metric) == "maximize" else min
        value = better(float(row[metric]) for row in rows)
        chosen = next(row for row in rows if float(row[metric]) == value)
    return {"metric": metric, "value": float(chosen[metric]), "epoch": int(chosen["epoch"])}
