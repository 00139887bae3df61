"""A sweep that continues: run `aerun -m ... hydra.sweep.dir=DIR` again and it goes on where it stopped.

A job is known by its overrides, not by its place on the command line: DIR/jobs.yaml maps each job's
overrides (those that make it another run: `epochs`, `device`, `logger` and `paths.*` do not) to its
folder, and `hydra.sweep.subdir` looks the job up there (the `aerun.job_folder` resolver), so a value
added to a sweep gets a new folder and every other job keeps its own. Before Hydra starts, `plan`
reads the folders already in DIR, checks that the command line still describes the same sweep (the
same keys; a key that had one value keeps it) and that each trained job's checkpoint holds the config
this command composes (only the epochs may grow), says what it found in one line, and writes the map.
Each job then resumes its own checkpoint, or finds it complete (aerun.cli.train_command): the same path
a Slurm job takes when the cluster requeues it.

A sweep into a new folder has no map: its jobs are numbered in order, as Hydra numbers them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml
from omegaconf import OmegaConf

from aerun.runs import REUSABLE_CHANGES

MANIFEST = "jobs.yaml"
OVERRIDES = Path(".hydra") / "overrides.yaml"
GROUPS_OF_THE_SAME_RUN = ("paths", "search", "logger")  # any key under them
# The single keys a job may change and stay the same run (schema.REUSABLE_CHANGES): changing them continues a job.
SAME_RUN_KEYS = tuple(key for key in REUSABLE_CHANGES if key not in GROUPS_OF_THE_SAME_RUN)


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _hydra_key(key: str) -> bool:
    return key.split(".")[0] == "hydra" or key.startswith("hydra/")


def job_key(overrides: Iterable[str]) -> tuple[str, ...]:
    """A job's overrides as its sweep's map records them: the last of each key (the one Hydra applies), sorted,
    Hydra's own aside."""
    last = {override_key(str(o)): str(o) for o in overrides}
    return tuple(sorted(o for key, o in last.items() if not _hydra_key(key)))


def identity(overrides: Iterable[str], keep: Iterable[str] = ()) -> tuple[str, ...]:
    """What makes a job another run: its overrides but those a run may change and stay the same run (epochs,
    device, logger, paths.*), unless the sweep sweeps one of them (`keep`)."""
    keep = set(keep)

    def same_run(key: str) -> bool:
        return key not in keep and (key in SAME_RUN_KEYS or key.split(".")[0] in GROUPS_OF_THE_SAME_RUN)
    return tuple(o for o in job_key(overrides) if not same_run(override_key(o)))


def read_manifest(sweep_dir: Path) -> dict[tuple[str, ...], str]:
    """A sweep folder's map: each job's overrides (`job_key`) to its folder; empty where there is none."""
    path = Path(sweep_dir) / MANIFEST
    if not path.is_file():
        return {}
    jobs = (yaml.safe_load(path.read_text()) or {}).get("jobs", {})
    return {job_key(overrides): str(folder) for folder, overrides in jobs.items()}


def job_folder(*, _root_: Any) -> str:
    """`hydra.sweep.subdir`: this job's folder in its sweep's map, else its number (a sweep into a new folder)."""
    hydra = _root_.hydra
    known = read_manifest(Path(str(hydra.sweep.dir)))
    if not known:
        return str(hydra.job.num)
    mine = job_key(hydra.overrides.task)
    if mine not in known:
        raise ValueError(f"job {' '.join(mine) or '(no overrides)'} is not in {hydra.sweep.dir}/{MANIFEST}, "
                         "written when this sweep started; run the sweep's command again")
    return known[mine]


def existing_jobs(sweep_dir: Path) -> dict[str, list[str]]:
    """The jobs a sweep folder holds, folder -> overrides: its map, and every job folder Hydra wrote."""
    jobs = {folder: list(key) for key, folder in read_manifest(sweep_dir).items()}
    for path in sorted(Path(sweep_dir).glob(f"*/{OVERRIDES}")):
        jobs[path.parent.parent.name] = list(job_key(yaml.safe_load(path.read_text()) or []))
    return jobs


def _as_dict(job: Sequence[str]) -> dict[str, str]:
    return {override_key(o): o.split("=", 1)[1] if "=" in o else "" for o in job}


def check_same_sweep(old: Sequence[Sequence[str]], new: Sequence[Sequence[str]], sweep_dir: Path) -> None:
    """Refuse a command line that describes another sweep than the one in `sweep_dir`: a key added or
    dropped, or a key that had one value given another one (a new value of a swept key is a new job)."""
    from aerun.errors import UserError

    before, after = [_as_dict(j) for j in old], [_as_dict(j) for j in new]
    keys_before, keys_after = set().union(*before), set().union(*after)
    for key in sorted(keys_before ^ keys_after):
        was = "was" if key in keys_before else "was not"
        raise UserError(f"{key} {was} set on the jobs in {sweep_dir} and {'is not' if was == 'was' else 'is'} set "
                        "now; a sweep continues with the same keys: give the same ones, or start another "
                        "hydra.sweep.dir")
    for key in sorted(keys_after):
        values_before = {job.get(key) for job in before}
        values_after = {job.get(key) for job in after}
        if len(values_before) == 1 and len(values_after) == 1 and values_before != values_after:
            raise UserError(f"{key}={values_after.pop()} differs from the {key}={values_before.pop()} the jobs in "
                            f"{sweep_dir} were trained with; continue with that value (adding values sweeps "
                            "them), or start another hydra.sweep.dir")


@dataclass
class Plan:
    """Where each job of a continued sweep stands, for the line that says so."""

    folders: dict[tuple[str, ...], list[str]] = field(default_factory=dict)  # folder -> the job's overrides
    complete: int = 0
    resume: int = 0
    restart: int = 0
    new: int = 0

    def line(self, sweep_dir: Path) -> str:
        counts = [f"{self.complete} complete", f"{self.resume} to resume", f"{self.new} new"]
        if self.restart:
            counts.insert(2, f"{self.restart} to rerun from the start")
        return f"[sweep] continuing {sweep_dir}: {len(self.folders)} jobs, " + ", ".join(counts)


def plan(sweep_dir: Path, combos: Sequence[Sequence[str]], configs: Sequence[Any]) -> Plan | None:
    """Continue the sweep in `sweep_dir` with these jobs (each one's overrides and composed config), or None
    when the folder holds no sweep yet. Raises UserError, naming the key, when it is not the same sweep."""
    from omegaconf import open_dict

    from aerun import atomic
    from aerun import checkpoint as ckpt
    from aerun.errors import UserError

    sweep_dir = Path(sweep_dir)
    old = existing_jobs(sweep_dir)
    if not old:
        return None
    swept = {k for k in SAME_RUN_KEYS if len({_as_dict(job).get(k) for job in combos}) > 1}
    check_same_sweep([identity(j, swept) for j in old.values()], [identity(j, swept) for j in combos], sweep_dir)
    known: dict[tuple[str, ...], str] = {}
    for folder, overrides in sorted(old.items(), key=lambda kv: _order(kv[0])):
        ident = identity(overrides, swept)
        if ident in known:
            raise UserError(f"jobs {known[ident]} and {folder} of {sweep_dir} differ only in "
                            f"{', '.join(SAME_RUN_KEYS)}, which this command does not sweep; sweep the same "
                            "keys as they were, or start another hydra.sweep.dir")
        known[ident] = folder
    next_number = max((int(f) for f in old if f.isdigit()), default=-1) + 1
    result = Plan()
    for job, cfg in zip(combos, configs):
        ident = identity(job, swept)
        folder = known.get(ident)
        if folder is None:
            folder, next_number = str(next_number), next_number + 1
            known[ident] = folder
            result.new += 1
        else:
            wanted = cfg.copy()
            with open_dict(wanted):
                wanted.pop("hydra", None)
            state = ckpt.run_state(sweep_dir / folder, OmegaConf.to_container(wanted, resolve=True),
                                   "what this command composes", "start another hydra.sweep.dir")
            if state.action == "new":
                result.restart += 1
            elif state.action == "complete":
                result.complete += 1
            else:
                result.resume += 1
        result.folders[folder] = list(job_key(job))
    jobs = dict(sorted({**old, **result.folders}.items(), key=lambda kv: _order(kv[0])))
    atomic.write_text(sweep_dir / MANIFEST, "# each job's folder by its overrides: aerun -m continues it\n"
                      + yaml.safe_dump({"jobs": jobs}, sort_keys=False))
    return result


def _order(folder: str) -> tuple[int, str]:
    return (int(folder), "") if folder.isdigit() else (1 << 30, folder)


def register_resolver() -> None:
    """`${aerun.job_folder:}` (conf/train.yaml's hydra.sweep.subdir) known to OmegaConf: done on import, by every
    process that composes or launches a sweep (aerun.compose imports this module)."""
    if not OmegaConf.has_resolver("aerun.job_folder"):
        OmegaConf.register_new_resolver("aerun.job_folder", job_folder, use_cache=False)


register_resolver()
