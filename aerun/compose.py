"""Config composition and sweep expansion, shared by the CLI and the report.

Both compose configs as Hydra does and expand a sweep into its jobs; keeping that
here means nothing below the CLI imports from it.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Iterator

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from aerun.errors import UserError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def group_options(group: str) -> list[str] | None:
    """The choices of a config group (`model` -> deep, pca, ...); None if `group` is not a folder of conf/."""
    folder = CONF_DIR / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else None


def one_line(exc: Exception) -> str:
    """A Hydra or OmegaConf error as one line a user can act on."""
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


def sweep_combinations(overrides: list[str], multirun: bool) -> Iterator[list[str]]:
    """Every job a sweep would run, as plain overrides (sweep values expanded, in order)."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:
        raise UserError(f"cannot read the command line: {one_line(exc)}") from None
    choices = []
    for override in parsed:
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
        options = None if override.key_or_group.startswith("hydra/") else group_options(override.key_or_group)
        if options is not None and override.package is None:
            bad = [v for v in values if v not in options]
            if bad:
                raise UserError(f"{override.key_or_group}={bad[0]} is not a choice; allowed: {', '.join(options)}")
        choices.append([f"{key}={v}" for v in values])
    yield from (list(combo) for combo in itertools.product(*choices))


def compose_config(config_name: str, overrides: list[str], *, return_hydra_config: bool = False) -> DictConfig:
    """Compose as Hydra will: inside a running Hydra app with its search path, else from conf/.

    Errors surface as they are; callers turn them into one line with `one_line`.
    """
    if GlobalHydra.instance().is_initialized():
        return compose(config_name=config_name, overrides=overrides, return_hydra_config=return_hydra_config)
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name=config_name, overrides=overrides, return_hydra_config=return_hydra_config)
    finally:
        GlobalHydra.instance().clear()
