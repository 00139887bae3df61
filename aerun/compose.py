"""Config composition and sweep expansion, shared by the CLI and the report.

Both compose configs as Hydra does and expand a sweep into its jobs; keeping that
here means nothing below the CLI imports from it.
"""

from __future__ import annotations

import itertools
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig

from aerun import schema, sweep  # noqa: F401  (sweep: the aerun.job_folder resolver of hydra.sweep.subdir)
from aerun.errors import UserError

def _conf_dir() -> Path:
    """The configs: aerun/conf in an installed wheel (which carries conf/ as package data), else the
    checkout's top-level conf/ (an editable install, or the source tree)."""
    here = Path(__file__).resolve().parent
    packaged = here / "conf"
    return packaged if (packaged / "train.yaml").is_file() else here.parent / "conf"


CONF_DIR = _conf_dir()
SEARCHPATH = "hydra.searchpath"


@contextmanager
def _hydra() -> Iterator[None]:
    """Inside a running Hydra app, its search path; else conf/, initialised for the block."""
    if GlobalHydra.instance().is_initialized():
        yield
        return
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            yield
    finally:
        GlobalHydra.instance().clear()


def searchpath_overrides(overrides: Sequence[str]) -> list[str]:
    """The `hydra.searchpath=[...]` overrides among `overrides`: where presets outside conf/ are found."""
    return [o for o in overrides if o.split("=", 1)[0].lstrip("+~") == SEARCHPATH]


def with_app_searchpath(overrides: Sequence[str]) -> list[str]:
    """`overrides`, with the running Hydra app's `hydra.searchpath=[...]` before them where they give none: a
    config composed inside `aerun report 'hydra.searchpath=[...]'` finds the experiments and presets there."""
    overrides = list(overrides)
    if searchpath_overrides(overrides) or not HydraConfig.initialized():
        return overrides
    return [*searchpath_overrides(HydraConfig.get().overrides.hydra), *overrides]


def group_options(group: str, overrides: Sequence[str] = ()) -> list[str] | None:
    """The choices of a config group (`model` -> deep, pca, ...) in conf/ and on any `hydra.searchpath`
    among `overrides`; None if `group` is no config group."""
    with _hydra():
        try:
            options = GlobalHydra.instance().config_loader().get_group_options(
                group, overrides=searchpath_overrides(with_app_searchpath(overrides)))
        except HydraException as exc:
            raise UserError(f"cannot read {SEARCHPATH}: {one_line(exc)}") from None
    return sorted(options) or None


TYPE_NAMES = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false", "String": "a string"}


def one_line(exc: BaseException) -> str:
    """A Hydra or OmegaConf error as one line a user can act on."""
    causes = [exc]
    while causes[-1].__cause__ is not None and len(causes) < 8:
        causes.append(causes[-1].__cause__)
    for cause in causes:  # a value of the wrong type for aerun.schema, named by its key
        typed = re.search(r"Value '(.*)' of type '\w+' could not be converted to (\w+)\s+full_key: (\S+)",
                          str(cause), re.S)
        if typed:
            value, kind, key = typed.groups()
            shown = value if re.fullmatch(r"[-+0-9.eE]+|True|False|\[.*\]", value) else repr(value)
            return f"{key}={shown} is not allowed; it must be {TYPE_NAMES.get(kind, kind.lower())}"
    text = str(exc)
    unknown = re.search(r"Could not override '([^']+)'", text)
    if unknown:
        return f"{unknown.group(1)} is not a config key; `aerun --help` lists the keys"
    missing = re.search(r"Could not find '(.+)/([^/']+)'\s+Available options in '[^']+':\n((?:\t.*\n?)*)", text)
    if missing:
        options = [line.strip() for line in missing.group(3).splitlines() if line.strip()]
        return f"{missing.group(1)}={missing.group(2)} is not a choice; allowed: {', '.join(sorted(options))}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines[:2]) or type(exc).__name__


def parse_overrides(overrides: list[str]) -> list:
    """The command line's overrides as Hydra reads them; one line when it cannot."""
    try:
        return OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:
        raise UserError(f"cannot read the command line: {one_line(exc)}") from None


def sweep_combinations(overrides: list[str], multirun: bool) -> Iterator[list[str]]:
    """Every job a sweep would run, as plain overrides (sweep values expanded, in order); a group's choice is
    checked against its presets in conf/ and on the command line's `hydra.searchpath`."""
    choices = []
    for override in parse_overrides(overrides):
        key = override.get_key_element()
        if override.is_sweep_override():
            if not multirun:
                raise UserError(f"{override.input_line} is a sweep; add -m to run one job per value")
            try:
                values = list(override.sweep_string_iterator())
            except Exception:
                raise UserError(f"{override.input_line}: only comma lists and range() sweeps are supported") from None
        else:
            values = [override.get_value_element_as_str()]
        # Hydra's own groups (hydra/launcher, ...) also take its plugins' options: composing checks those
        options = None if override.key_or_group.startswith("hydra") else group_options(override.key_or_group,
                                                                                                overrides)
        if options is not None and override.package is None:
            chosen = override.value() if not override.is_sweep_override() else None
            named = [str(v) for v in chosen] if isinstance(chosen, list) else values  # logger=[tensorboard,mlflow]
            bad = [v for v in named if v not in options]
            if bad:
                raise UserError(f"{override.key_or_group}={bad[0]} is not a choice; allowed: {', '.join(options)}")
        choices.append([f"{key}={v}" for v in values])
    yield from (list(combo) for combo in itertools.product(*choices))


def compose_config(config_name: str, overrides: list[str], *, return_hydra_config: bool = False) -> DictConfig:
    """Compose as Hydra will: inside a running Hydra app with its search path, else from conf/.

    Errors surface as they are; callers turn them into one line with `one_line`.
    """
    schema.register()
    with _hydra():
        return compose(config_name=config_name, overrides=with_app_searchpath(overrides),
                       return_hydra_config=return_hydra_config)


def preset_globals(group: str, choice: str, searchpath: Sequence[str], given: Sequence[str]) -> tuple[Path, dict]:
    """What the chosen preset of `group` (`model=sparse`) sets outside its own node, `@package _global_` (epochs,
    optimizer.lr, a penalty's weight), as dotted keys, but those `given` on the command line: the preset's file and
    the keys with their values; an empty dict for a preset that keeps to its node. Presets are looked for in conf/,
    then in the `file://` folders of hydra.searchpath."""
    folders = [CONF_DIR, *(Path(str(p)[len("file://"):]) for p in searchpath if str(p).startswith("file://"))]
    path = next((f / group / f"{choice}.yaml" for f in folders if (f / group / f"{choice}.yaml").is_file()), None)
    if path is None:
        return Path(group, f"{choice}.yaml"), {}
    text = path.read_text()
    if not re.search(r"^#\s*@package\s+_global_\s*$", text, re.M):
        return path, {}
    found: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                found[f"{prefix}{key}"] = value

    walk({k: v for k, v in (yaml.safe_load(text) or {}).items() if k not in (group, "defaults")}, "")
    named = {o.split("=", 1)[0].lstrip("+~") for o in given}
    return path, {k: v for k, v in found.items() if k not in named}
