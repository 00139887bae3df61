"""The `aerun` command: a thin Hydra layer over plain functions.

    aerun [train] [overrides]     train (the default)
    aerun train resume=DIR        continue a run from its last checkpoint
    aerun eval run=DIR            eval.json + eval.md beside the run
    aerun plot run=DIR            DIR/figures/*.png
    aerun encode run=DIR          DIR/codes-<split>.npz: the codes of a split
    aerun export run=DIR          DIR/export/model.onnx (or .pt): the model, checked against PyTorch
    aerun data                    fetch and verify the data set
    aerun bench                   time an epoch: the original pipeline, aerun's, the FLOP bound
    aerun report [beyond=true]    every part of the assignment: train, evaluate, plot, write up

Before Hydra starts, the command line is composed and checked once per sweep
combination (`preflight`), so bad input gets one line and exit status 2 before
any directory is written or any weight trained.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Callable

import hydra
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from aerun import failures, runlock, search
from aerun.compose import (CONF_DIR, compose_config, group_options, one_line, parse_overrides, preset_globals,
                           searchpath_overrides, sweep_combinations)
from aerun.errors import UserError
from aerun.schema import RETIRED
from aerun.failures import EXIT_FAILED

EXIT_INTERRUPTED = 130
MAX_PREFLIGHT_JOBS = 256
log = logging.getLogger("aerun")


def failures_as_one_line(task: Callable[[DictConfig], object]) -> Callable[[DictConfig], object]:
    """Inside Hydra's job, where the run's log file is open: any exception ends as one line, traceback to the log."""

    @functools.wraps(task)
    def wrapper(cfg: DictConfig) -> object:
        try:
            return task(cfg)
        except Exception as exc:
            failures.end(exc)

    return wrapper


def _required_run(cfg: DictConfig, key: str, command: str) -> Path:
    if OmegaConf.is_missing(cfg, key):
        raise UserError(f"`aerun {command}` needs {key}=DIR, a run or sweep directory under outputs/")
    return Path(cfg[key])


# --------------------------------------------------------------------------- commands


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _train_until_interrupted(cfg: DictConfig, run_dir: Path, resume: bool,
                             after_epoch: Callable[[int, dict[str, float]], bool] | None = None) -> dict:
    from aerun.train import train

    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # SIGTERM ends a run like Ctrl-C
    try:
        summary = train(cfg, run_dir, resume=resume, after_epoch=after_epoch)
    except KeyboardInterrupt:
        print(f"\naerun: interrupted; the last finished epoch is kept in {run_dir}; "
              f"continue with: aerun train resume={run_dir}", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    print(f"run written to {run_dir}  (next: aerun eval run={run_dir}; aerun plot run={run_dir})")
    return summary


def train_command(cfg: DictConfig) -> dict:
    """One run; in a sweep, a job whose folder holds a checkpoint goes on from it (a sweep run again, a Slurm
    job requeued): the preflight has checked that the checkpoint is this job's run."""
    from aerun import checkpoint as ckpt

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    resume = hydra_cfg.mode == RunMode.MULTIRUN and ckpt.saved(run_dir)  # train() loads and checks it
    say_preset_globals(cfg, hydra_cfg)
    if search.searching(hydra_cfg):
        return search_trial(cfg, hydra_cfg, run_dir, resume)
    return _train_until_interrupted(cfg, run_dir, resume=resume)


def say_preset_globals(cfg: DictConfig, hydra_cfg: DictConfig) -> None:
    """The run's first line, where a model preset sets training keys too (`epochs`, `optimizer.lr`, a weight):
    which, and their values, so that choosing a model never changes them without a word."""
    choice = hydra_cfg.runtime.choices.get("model")
    if not choice:
        return
    path, keys = preset_globals("model", str(choice), list(hydra_cfg.searchpath), list(hydra_cfg.overrides.task))
    if keys:
        shown = ", ".join(f"{k}={OmegaConf.select(cfg, k)}" for k in keys)
        log.info("model=%s also sets %s (%s); give any of them on the command line to change it", choice, shown,
                 f"conf/model/{path.name}" if path.parent.parent == CONF_DIR else path)


def search_trial(cfg: DictConfig, hydra_cfg: DictConfig, run_dir: Path, resume: bool) -> dict:
    """A trial of `hydra/sweeper=optuna`: its result for the sweeper, a failure included (the search goes on)."""
    search.check(cfg)
    try:
        summary = _train_until_interrupted(cfg, run_dir, resume, after_epoch=search.pruning(cfg, hydra_cfg))
    except UserError as exc:  # a loss that became non-finite, say: this trial failed, not the search
        log.error("aerun: error: %s", exc)
        return {"failed": str(exc)}
    return search.result(summary, run_dir, cfg.search.metric, best=cfg.checkpoint.monitor == cfg.search.metric)


def resume_command(cfg: DictConfig) -> dict:
    from aerun import checkpoint as ckpt

    run_dir = _required_run(cfg, "resume", "train")
    found = ckpt.latest_intact(run_dir)  # a damaged last.pt: the previous checkpoint, said in the log
    if found is None:
        raise UserError(f"no checkpoint at {run_dir / ckpt.CHECKPOINT}; train a run first (`aerun train`)")
    config = OmegaConf.create(found[0]["config"])
    for key in ("epochs", "device", "logger", "precision", "cuda_graphs"):  # another precision: refused by train()
        if cfg[key] is not None:
            config[key] = str(cfg[key]) if key == "precision" else cfg[key]
    config.paths.data_dir = cfg.paths.data_dir
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        from aerun.validate import check_train

        check_train(config)
    except OmegaConfBaseException as exc:
        raise UserError(f"the config in {run_dir}'s checkpoint does not fit this aerun ({one_line(exc)}); "
                        "it was written by another version") from None
    return _train_until_interrupted(config, run_dir, resume=True)


def eval_command(cfg: DictConfig) -> None:
    from aerun import generation, ood
    from aerun.evaluate import eval_name, evaluate
    from aerun.train import resolve_device

    runs = _chosen_runs(cfg, "eval")
    path = _required_run(cfg, "run", "eval")
    noise = (cfg.noise.name, cfg.noise.level)
    if not isinstance(cfg.iw_samples, int) or isinstance(cfg.iw_samples, bool) or cfg.iw_samples < 0:
        raise UserError(f"iw_samples={cfg.iw_samples!r} is not allowed; it must be a whole number of samples "
                        "(0: no importance-weighted bound)")
    control = cfg.compare.control
    if control is not None and (len(runs) == 1 or not str(control).strip()):
        raise UserError("compare.control names the setting of a sweep that every other one is compared with "
                        "(compare.control=\"model.hidden=64\"); give it with run=SWEEP")
    if control is not None:  # checked before the evaluation, which takes a while
        from aerun.evaluate import job_labels, without_seed
        from aerun.sweep_page import control_index

        control_index(list(dict.fromkeys(without_seed(label) for label in job_labels(runs))), str(control))
    ood.check_kind(cfg.ood)
    if cfg.ood != "none" and noise[0] != "none":
        raise UserError(f"ood={cfg.ood} scores clean inputs; leave noise={noise[0]} out (or evaluate them apart)")
    generation.check(cfg.samples, cfg.sampler)
    if cfg.samples and noise[0] != "none":
        raise UserError(f"samples= compares samples with clean test images; leave noise={noise[0]} out")
    evaluate(path, cfg.paths.data_dir, resolve_device(cfg.device), noise, cfg.noise_seed, cfg.iw_samples,
             None if control is None else str(control), which=cfg.checkpoint, ood_kind=cfg.ood, ood_path=cfg.ood_path,
             samples=cfg.samples, sampler=cfg.sampler)
    summary = (path if len(runs) > 1 else runs[0]) / f"{eval_name(noise)}.md"
    print(summary.read_text())
    print(f"written: {summary} and eval.json beside it"
          + (f"; the sweep's page: {path / 'index.html'}" if len(runs) > 1 and noise[0] == "none" else ""))


def plot_command(cfg: DictConfig) -> None:
    from aerun.plot import plot
    from aerun.train import resolve_device
    from aerun.validate import positive_int

    positive_int("filters", cfg.filters)
    path = _required_run(cfg, "run", "plot")
    _chosen_runs(cfg, "plot")
    figures = plot(
        path, cfg.paths.data_dir, str(resolve_device(cfg.device)), which=cfg.checkpoint,
        baseline=cfg.baseline, ood=cfg.ood, ood_path=cfg.ood_path, noise=(cfg.noise.name, cfg.noise.level), filters=cfg.filters,
        pixel_noise=list(cfg.pixel_noise), code_noise=list(cfg.code_noise), seed=cfg.noise_seed,
    )
    for figure in figures:
        print(figure)


def bench_command(cfg: DictConfig) -> dict:
    from aerun.bench import bench, table
    from aerun.models import family
    from aerun.validate import positive_int

    positive_int("repeats", cfg.repeats)
    positive_int("batch_size", cfg.batch_size)
    from aerun.precision import check as check_precision
    from aerun.validate import available_devices

    check_precision(cfg.precision, available_devices()[0] if cfg.device == "auto" else cfg.device)
    if not isinstance(cfg.reference, bool):
        raise UserError(f"reference={cfg.reference!r} is not allowed; it must be true or false")
    searchpath = searchpath_overrides(HydraConfig.get().overrides.hydra)  # presets outside conf/
    presets = {name: compose_config("train", [f"model={name}", *searchpath]).model
               for name in group_options("model", searchpath) or []}
    trained = [name for name, model in presets.items() if not family(model.builder).fitted]  # PCA is fitted
    names = trained if cfg.presets == "all" else cfg.presets
    if isinstance(names, str) or not names:
        raise UserError(f"presets={cfg.presets!r} is not allowed; give a list such as presets=[deep,conv_unpool], "
                        "or presets=all")
    unknown = [name for name in names if name not in trained]
    if unknown:
        raise UserError(f"presets has {unknown[0]!r}, not a trained model preset; allowed: {', '.join(trained)}, or all")
    models = {name: presets[name] for name in names}
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    result = bench(cfg, models, run_dir)
    print(table(result))
    print(f"written: {run_dir / 'bench.json'}")
    return result


def report_command(cfg: DictConfig) -> Path:
    from aerun.report import report
    from aerun.report.jobs import JobsIncomplete
    from aerun.validate import device

    device(cfg.device)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        page = report(cfg)
    except JobsIncomplete as failed:
        for line in failed.lines:
            print(f"aerun: error: {line}", file=sys.stderr)
        print("aerun: error: the finished epochs are kept; run the same `aerun report` again to resume the "
              "jobs that did not finish", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        print(f"\naerun: report interrupted; finished epochs are kept under {cfg.dir}/runs; "
              "run the same `aerun report` again to continue where it stopped", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    print(f"\nreport written: {page.resolve()}\n         and    {page.with_name('report.md').resolve()}")
    return page


def _chosen_runs(cfg: DictConfig, command: str, writes: str | None = None) -> list[Path]:
    """The runs `run=` names (a run, or a sweep's jobs), each holding the `checkpoint=` asked for, or one line before
    any work; `out=` only for one run (`writes`: what each job writes beside it instead)."""
    from aerun.runs import checkpoint_path, find_runs

    runs = find_runs(_required_run(cfg, "run", command))
    if writes and cfg.out is not None and len(runs) > 1:
        raise UserError(f"out={cfg.out} names one file, and run= is a sweep of {len(runs)} jobs; leave out out= "
                        f"to write each job's {writes} beside it")
    for run in runs:
        checkpoint_path(run, cfg.checkpoint)
    return runs


def encode_command(cfg: DictConfig) -> None:
    from aerun.encode import encode_run
    from aerun.train import resolve_device

    runs = _chosen_runs(cfg, "encode", "codes")
    device = resolve_device(cfg.device)
    for run in runs:
        done = encode_run(run, str(cfg.split), cfg.paths.data_dir, device, cfg.checkpoint, cfg.out)
        print(f"{done['path']}: codes ({done['n']}, {done['code_dim']}), indices"
              + (", labels" if done["labels"] else "") + f" of the {cfg.split} split")


def export_command(cfg: DictConfig) -> None:
    from aerun.export import export_run

    for run in _chosen_runs(cfg, "export", "model"):
        done = export_run(run, str(cfg.format), cfg.paths.data_dir, cfg.checkpoint, cfg.out)
        worst = max(done["max_difference"].values())
        print(f"{done['path']}: {done['format']}, images (N, {', '.join(map(str, done['input']['shape'][1:]))}) -> "
              f"reconstruction, code; checked on {done['checked_on']}: largest difference from PyTorch {worst:.2g}")


def data_command(cfg: DictConfig) -> None:
    from aerun.data import dataset

    print(dataset(cfg.dataset, Path(cfg.paths.data_dir)).prepare())


COMMANDS: dict[str, Callable[[DictConfig], object]] = {
    "train": train_command,
    "resume": resume_command,
    "eval": eval_command,
    "plot": plot_command,
    "data": data_command,
    "encode": encode_command,
    "export": export_command,
    "bench": bench_command,
    "report": report_command,
}
TYPED = ("train", "eval", "plot", "encode", "export", "data", "bench", "report")  # what users type; `resume` is `train resume=DIR`


# --------------------------------------------------------------------------- preflight


def _refuse_before_composing(overrides: list[str]) -> None:
    """A key that moved (schema.RETIRED: `beta` is `model.beta`), and a run folder that holds a run already."""
    for item in overrides:
        key, _, value = item.partition("=")
        if key.lstrip("+~") in RETIRED:
            now = RETIRED[key.lstrip("+~")]
            raise UserError(f"{key.lstrip('+~')} is {now} now (it belongs to the model's family): give {now}={value}")
        if key != "hydra.run.dir":
            continue
        from aerun.checkpoint import CHECKPOINT  # it imports torch: only for a command line that names a run folder

        if (Path(value) / CHECKPOINT).exists():
            raise UserError(f"{value} already holds a trained run; choose another hydra.run.dir, "
                            f"or continue it with: aerun train resume={value}")


def preflight(config_name: str, args: list[str]) -> None:
    """Compose every job's config as Hydra will and check it; raise UserError on the first bad one."""
    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in args):
        return  # Hydra's own flags (--help, --cfg job, ...) are Hydra's business
    overrides = [a for a in args if not a.startswith("-")]
    multirun = len(overrides) < len(args)
    _refuse_before_composing(overrides)
    if multirun and config_name == "train" and search.OPTUNA in overrides:
        preflight_search(overrides)
        return
    combos, configs, checked_all = [], [], True
    for i, combo in enumerate(sweep_combinations(overrides, multirun=multirun)):
        if i == MAX_PREFLIGHT_JOBS:
            checked_all = False
            break
        GlobalHydra.instance().clear()
        try:
            cfg = compose_config(config_name, combo, return_hydra_config=True)
        except Exception as exc:
            raise UserError(one_line(exc)) from None
        check_composed(config_name, cfg, "hydra.sweep.dir" if multirun else "hydra.run.dir")
        combos.append(combo)
        configs.append(cfg)
    if multirun and config_name == "train" and combos:
        continue_sweep(combos, configs, checked_all)


def preflight_search(overrides: list[str]) -> None:
    """A search's command line, checked as its first trial could be (each search override at its first choice
    or its interval's start): the keys, their types, the validation split, the metric."""
    from importlib.util import find_spec

    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    if find_spec("optuna") is None or find_spec("hydra_plugins.hydra_optuna_sweeper") is None:
        raise UserError("hydra/sweeper=optuna needs Optuna and Hydra's Optuna sweeper: "
                        "pip install -e '.[search]' (make setup installs them)")
    first = []
    for override in parse_overrides(overrides):
        value = override.value()
        if isinstance(value, ChoiceSweep):
            value = value.list[0]
        elif isinstance(value, (IntervalSweep, RangeSweep)):
            value = value.start
        else:
            first.append(override.input_line)
            continue
        first.append(f"{override.get_key_element()}={value}")
    GlobalHydra.instance().clear()
    try:
        cfg = compose_config("train", first, return_hydra_config=True)
    except Exception as exc:
        raise UserError(one_line(exc)) from None
    check_composed("train", cfg, "hydra.sweep.dir")
    search.check(cfg, str(cfg.hydra.sweeper.get("direction", "")))


# What this process holds until it ends: the lock of the sweep folder it writes (released by the kernel at exit).
HELD = contextlib.ExitStack()


def continue_sweep(combos: list[list[str]], configs: list[DictConfig], checked_all: bool) -> None:
    """A sweep into a folder that holds one already continues it (aerun.sweep): one line says how. The folder is
    this process's alone while it sweeps: a second `aerun -m` on it is refused in one line naming the first."""
    from aerun import sweep

    sweep_dir = Path(str(configs[0].hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    HELD.enter_context(runlock.hold(sweep_dir, "swept"))
    if not checked_all and sweep.existing_jobs(sweep_dir):
        raise UserError(f"{sweep_dir} holds a sweep, and one of more than {MAX_PREFLIGHT_JOBS} jobs is not checked "
                        "job by job, so it cannot continue one; split it into sweeps of fewer jobs")
    found = sweep.plan(sweep_dir, combos, configs)
    if found is not None:
        print(found.line(sweep_dir), flush=True)

def check_composed(config_name: str, cfg: DictConfig, output_key: str) -> None:
    """The checks of one composed job: its values, and the folders it will write or read."""
    if config_name in ("eval", "plot", "encode", "export"):  # first, and before torch is loaded: the folder holds a run
        from aerun.runs import find_runs

        find_runs(_required_run(cfg, "run", config_name))
    from aerun import validate

    if config_name in ("train", "bench"):  # the others write beside a run, or under `dir`
        validate.writable_folder(output_key, OmegaConf.select(cfg, output_key))
    if config_name == "report":
        validate.writable_folder("dir", cfg.dir)
    if config_name == "train":
        validate.check_train(cfg)
    elif "noise" in cfg:
        validate.check_noise(cfg)
    if config_name in ("train", "data"):
        validate.data_folder(cfg)


def register_plugins(searching: bool = False) -> None:
    """Make aerun's watched launchers, and for a search its sweeper (importing Optuna takes seconds), known to Hydra.

    Hydra finds plugins by scanning the hydra_plugins package's folders, which an editable
    install (`pip install -e .`, as the Makefile does) does not expose; registering them is
    the public way to be found either way.
    """
    from hydra.core.plugins import Plugins
    from hydra_plugins.aerun_launcher.watched import WatchedLocalLauncher, WatchedSlurmLauncher

    for launcher in (WatchedLocalLauncher, WatchedSlurmLauncher):
        Plugins.instance().register(launcher)
    if searching:  # the preflight has checked that the search extra is installed
        from hydra_plugins.aerun_search.search import SearchSweeper

        Plugins.instance().register(SearchSweeper)


def main() -> None:
    args = sys.argv[1:]
    command = args.pop(0) if args and args[0] in TYPED else "train"
    if command == "train" and any(a.startswith("resume=") for a in args):
        command = "resume"
    searching = command == "train" and search.chosen(args)
    if searching:
        args = search.with_defaults(args)
    # Hydra's own failures (creating the run folder, say) reach the handler below instead of
    # being printed by Hydra as a stack trace.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    with HELD:  # the sweep folder's lock, released when the command ends
        _main(command, args, searching)


def _main(command: str, args: list[str], searching: bool) -> None:
    try:
        preflight(command, args)
        register_plugins(searching)
        sys.argv = [sys.argv[0], *args]  # Hydra reads its overrides from sys.argv
        task = failures_as_one_line(COMMANDS[command])
        hydra.main(config_path=str(CONF_DIR), config_name=command, version_base="1.3")(task)()
    except KeyboardInterrupt:  # training handles its own, with the command that resumes it
        print("\naerun: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except (HydraException, OmegaConfBaseException) as exc:  # a config Hydra rejects after the preflight
        failures.end(UserError(one_line(exc)))
    except BrokenPipeError:  # whoever read the output stopped reading (`aerun --help | head`): nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit's flush cannot fail
        sys.exit(0)
    except OSError as exc:  # Hydra making the output folder, its .hydra/ files or its log, before the task
        if exc.errno in failures.ENVIRONMENT_ERRNOS:
            failures.end(exc)
        failures.end(UserError(f"cannot write the output folder: {exc.strerror} ({exc.filename}); choose "
                               "another hydra.run.dir (hydra.sweep.dir with -m)"))
    except Exception as exc:
        failures.end(exc)


if __name__ == "__main__":
    main()
