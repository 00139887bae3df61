"""The report's parts: one module each, which registers its key, title, sweeps and section with `@part`.

    from aerun.report.parts import part
    from aerun.report.plan import Sweep

    @part("mine", "My comparison", [Sweep("mine", "mine")], needs=("standard",))
    def section(doc, ctx):
        ...

is a new part (docs/extending.md, "Writing your own report part"): with its experiment config
(`conf/experiment/mine.yaml`) it is trained, written and chosen by `aerun report parts=[mine]`, and `aerun report`
writes it after the assignment's parts. Importing this package imports every module beside this file; the modules
named in the entry-point group `aerun.report_parts` of installed packages are imported when the parts are listed
(`registered`).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Iterable, Sequence

from aerun import plugins
from aerun.errors import UserError
from aerun.report.plan import Part, Section, Sweep

ENTRY_POINTS = "aerun.report_parts"
_PARTS: dict[str, Part] = {}


def part(key: str, title: str, sweeps: Iterable[Sweep], *, needs: Sequence[str] = (), twins: bool = False,
         beyond: bool = False, order: float = 100.0) -> Callable[[Section], Section]:
    """Register the decorated function as the section of the part `key` (see `aerun.report.plan.Part`)."""
    def add(section: Section) -> Section:
        if not callable(section):
            raise UserError(f"@part({key!r}) decorates {section!r}: decorate the function that writes the part")
        known = _PARTS.get(key)
        if known is not None and known.section is not section:
            raise UserError(f"the report part {key!r} is registered twice: by {known.section.__module__} and by "
                            f"{section.__module__}; rename one of them")
        _PARTS[key] = Part(key, title, tuple(sweeps), section, tuple(needs), twins, beyond, float(order))
        return section
    return add


def registered() -> dict[str, Part]:
    """Every part, aerun's and installed packages', in report order (`order`, then key)."""
    plugins.load(ENTRY_POINTS)
    return dict(sorted(_PARTS.items(), key=lambda item: (item[1].order, item[0])))


def chosen_parts(keys: Sequence[str] | None, beyond: bool) -> tuple[list[Part], list[Part]]:
    """(the parts to write up, the parts to train): the chosen ones (None: every registered part), and those they
    compare against; a part marked `beyond` is trained only with beyond=true."""
    parts = registered()
    keys = list(parts) if keys is None else list(keys)
    unknown = [k for k in keys if k not in parts]
    if unknown:
        raise UserError(f"parts has {unknown[0]!r}; allowed: {', '.join(parts)}")
    written = [parts[k] for k in parts if k in keys]
    needed = {k for p in written for k in (p.key, *p.needs)}
    missing = sorted(needed - set(parts))
    if missing:
        raise UserError(f"the report part {next(p.key for p in written if missing[0] in p.needs)!r} compares against "
                        f"a part {missing[0]!r} that no module registers")
    trained = [p for p in parts.values() if p.key in needed and (not p.beyond or beyond)]
    return written, trained


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")  # each registers its part
