"""The `aerun` command: a thin Hydra layer over plain functions.

    aerun [train] [overrides]    train (the default)
    aerun eval run=DIR           eval.json + eval.md beside the run
    aerun plot run=DIR           DIR/figures/*.png
    aerun data                   fetch and verify the data set
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Callable

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from aerun.errors import UserError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def user_errors_as_one_line(task: Callable[[DictConfig], object]) -> Callable[[DictConfig], object]:
    @functools.wraps(task)
    def wrapper(cfg: DictConfig) -> object:
        try:
            return task(cfg)
        except UserError as exc:
            print(f"aerun: error: {exc}", file=sys.stderr)
            sys.exit(2)

    return wrapper


def _required_run(cfg: DictConfig, command: str) -> Path:
    if OmegaConf.is_missing(cfg, "run"):
        raise UserError(f"`aerun {command}` needs run=DIR, a run or sweep directory under outputs/")
    return Path(cfg.run)


def train_command(cfg: DictConfig) -> None:
    from aerun.train import train

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    summary = train(cfg, run_dir)
    print(f"run written to {run_dir}  (next: aerun eval run={run_dir}; aerun plot run={run_dir})")
    return summary


def eval_command(cfg: DictConfig) -> None:
    from aerun.evaluate import EVAL_MD, evaluate, find_runs
    from aerun.train import resolve_device

    path = _required_run(cfg, "eval")
    evaluate(path, cfg.paths.data_dir, resolve_device(cfg.device))
    summary = path / EVAL_MD if len(find_runs(path)) > 1 else find_runs(path)[0] / EVAL_MD
    print(summary.read_text())
    print(f"written: {summary} and eval.json beside it")


def plot_command(cfg: DictConfig) -> None:
    from aerun.plot import plot
    from aerun.train import resolve_device

    for figure in plot(_required_run(cfg, "plot"), cfg.paths.data_dir, str(resolve_device(cfg.device))):
        print(figure)


def data_command(cfg: DictConfig) -> None:
    from aerun.data import IDX_DATASETS, ensure

    name = cfg.dataset.name
    if name not in IDX_DATASETS:
        print(f"{name} is made in memory; nothing to fetch")
        return
    raw = ensure(name, Path(cfg.paths.data_dir))
    print(f"{name}: verified (SHA-256) in {raw}")


COMMANDS: dict[str, Callable[[DictConfig], object]] = {
    "train": train_command,
    "eval": eval_command,
    "plot": plot_command,
    "data": data_command,
}


def main() -> None:
    args = sys.argv[1:]
    command = args.pop(0) if args and args[0] in COMMANDS else "train"
    sys.argv = [sys.argv[0], *args]  # Hydra reads its overrides from sys.argv
    task = user_errors_as_one_line(COMMANDS[command])
    hydra.main(config_path=str(CONF_DIR), config_name=command, version_base="1.3")(task)()


if __name__ == "__main__":
    main()
