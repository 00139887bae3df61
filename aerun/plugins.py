"""Plugins of installed packages: the modules named in an entry-point group, imported once per process.

The groups are `aerun.models` (families), `aerun.datasets` (data sets), `aerun.loggers` (trackers) and
`aerun.report_parts` (parts of the report); each module registers what it holds
when imported. A module that fails to import, or whose registration fails, is one UserError naming its entry
point and its package.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Callable, TypeVar

from aerun.errors import UserError

_LOADED: set[str] = set()
T = TypeVar("T", bound=type)


def load(group: str) -> None:
    """Import every module named in the entry-point group `group` (once per process and group)."""
    if group in _LOADED:
        return
    for point in sorted(entry_points(group=group), key=lambda p: p.name):
        source = f"the {group} entry point {point.name!r} ({point.value}" + (
            f", from {point.dist.name} {point.dist.version})" if point.dist else ")")
        try:
            point.load()
        except UserError as exc:
            raise UserError(f"{source}: {exc}") from None
        except Exception as exc:
            text = " ".join(str(exc).split())[:200]
            raise UserError(f"{source} could not be imported: {type(exc).__name__}: {text}; "
                            "fix that package or uninstall it") from None
    _LOADED.add(group)


def check_registration(registry: dict[str, type], name: str, cls: object, base: type, what: str,
                       decorator: str) -> None:
    """What `@register(name)` and `@register_dataset(name)` refuse, in one line: a class that does not derive from
    `base`, and a name another class holds."""
    where = getattr(cls, "__module__", "?")
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise UserError(f"@{decorator}({name!r}) in {where}: {getattr(cls, '__name__', cls)!r} is not a subclass of "
                        f"{base.__module__.rsplit('.', 1)[0]}.{base.__name__}; a {what} is a class that derives from it")
    if name in registry and registry[name] is not cls:
        raise UserError(f"the {what} name {name!r} is registered twice: by {registry[name].__module__}."
                        f"{registry[name].__name__} and by {where}.{cls.__name__}; rename one of them")


def registered(registry: dict[str, type], name: str, base: type, what: str, decorator: str) -> Callable[[T], T]:
    """The class decorator of `@decorator(name)`: the class, checked (`check_registration`), into `registry`."""
    def add(cls: T) -> T:
        check_registration(registry, name, cls, base, what, decorator)
        registry[name] = cls
        return cls
    return add
