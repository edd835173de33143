"""The plugin manager: built-in and third-party formats through the same pluggy hook.

The built-ins are registered directly (so they work without installed package metadata) under the
name ``builtin``, which is also their entry point, so loading the entry-point group skips them.
Third-party packages are found through the entry-point group ``minicpm_plugin.formats``. A plugin
that fails to import is reported (``Registry.load_errors``), not fatal, unless its format is asked for.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pluggy

from minicpm_plugin.formats import hookspecs
from minicpm_plugin.formats.base import COMPATIBLE, MATCH, NO

#: Records looked at to detect a file's format.
DETECT_SAMPLE = 100
FORCE_HINT = "force one with --format NAME (check/render) or `minicpm3_format: NAME` (training config)"


class FormatLookupError(ValueError):
    """An unknown format name, or a file whose format cannot be decided. ``code`` is a problem code."""

    def __init__(self, message: str, code: str = "no-format") -> None:
        super().__init__(message)
        self.code = code


def score(fmt: Any, record: Mapping[str, Any]) -> int:
    """``fmt.detect(record)`` as NO/COMPATIBLE/MATCH (True means MATCH; an exception means NO)."""
    try:
        result = fmt.detect(record)
    except Exception:
        return NO
    if result is True:
        return MATCH
    if not result:
        return NO
    return MATCH if int(result) >= MATCH else COMPATIBLE


@dataclass
class Registry:
    """The formats known in this process, in registration order (built-ins first)."""

    formats: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    load_errors: list[str] = field(default_factory=list)
    plugin_manager: pluggy.PluginManager | None = None

    def names(self) -> list[str]:
        return list(self.formats)

    def get(self, name: str) -> Any:
        """The format called ``name`` (or one of its aliases), case-insensitively."""
        key = name.strip().lower()
        for fmt in self.formats.values():
            if key == fmt.name.lower() or key in (a.lower() for a in getattr(fmt, "aliases", ())):
                return fmt
        msg = f"unknown format {name!r}; known formats: {', '.join(self.names())}"
        if self.load_errors:
            msg += "; format plugins that failed to load: " + "; ".join(self.load_errors)
        raise FormatLookupError(msg)

    def detect(self, records: Sequence[Any]) -> Any:
        """The one format that reads every sampled record and recognises at least one of them.

        Formats that another candidate ``specializes`` are dropped. Raises FormatLookupError when
        none or several remain.
        """
        sample = [r for r in records if isinstance(r, Mapping)][:DETECT_SAMPLE]
        if not sample:
            raise FormatLookupError("no JSON object records to detect the format from")
        scores = {name: [score(fmt, r) for r in sample] for name, fmt in self.formats.items()}
        candidates = [n for n, s in scores.items() if min(s) >= COMPATIBLE and max(s) == MATCH]
        dropped = {d for n in candidates for d in getattr(self.formats[n], "specializes", ())}
        final = [n for n in candidates if n not in dropped]
        checked = f"{len(sample)} record{'s' if len(sample) != 1 else ''} checked"
        if len(final) == 1:
            return self.formats[final[0]]
        if not final:
            partial = [f"{n} {sum(x >= COMPATIBLE for x in s)}" for n, s in scores.items() if max(s) == MATCH]
            keys = ", ".join(list(sample[0])[:12]) or "none"
            msg = f"no known format reads every record ({checked}; keys of the first record: {keys})"
            if partial:
                msg += (f"; partly: {', '.join(partial)} of {len(sample)} (a mixed file? force a format to list the "
                        "records that do not fit it)")
            msg += f". Known formats: {', '.join(self.names())}; {FORCE_HINT}, or add a format plugin " \
                   f"(entry-point group {hookspecs.ENTRY_POINT_GROUP})"
            raise FormatLookupError(msg, "no-format")
        raise FormatLookupError(f"the file matches several formats: {', '.join(final)} ({checked}); {FORCE_HINT}", "several-formats")


def _valid_format(obj: Any) -> str | None:
    if not isinstance(getattr(obj, "name", None), str) or not obj.name:
        return "has no string 'name'"
    for attr in ("detect", "convert"):
        if not callable(getattr(obj, attr, None)):
            return f"has no {attr}() method"
    return None


def get_plugin_manager(*, entry_points: bool = True) -> tuple[pluggy.PluginManager, list[str]]:
    """A plugin manager with the built-ins and (optionally) every installed format plugin.

    Returns the manager and the list of plugins that failed to load.
    """
    from minicpm_plugin.formats import builtin

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(builtin, name="builtin")
    errors: list[str] = []
    if entry_points:
        for ep in importlib.metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP):
            if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
                continue
            try:
                pm.register(ep.load(), name=ep.name)
            except Exception as exc:
                errors.append(f"{ep.name} = {ep.value}: {type(exc).__name__}: {exc}")
    return pm, errors


def build_registry(*, entry_points: bool = True) -> Registry:
    pm, errors = get_plugin_manager(entry_points=entry_points)
    reg = Registry(plugin_manager=pm, load_errors=errors)
    # Call each implementation separately (built-ins first) so that a broken plugin is reported
    # by name and the origin of every format is known.
    impls = sorted(pm.hook.minicpm_plugin_formats.get_hookimpls(), key=lambda i: i.plugin_name != "builtin")
    for impl in impls:
        try:
            provided = list(impl.function() or [])
        except Exception as exc:
            reg.load_errors.append(f"{impl.plugin_name}: minicpm_plugin_formats() raised {type(exc).__name__}: {exc}")
            continue
        for fmt in provided:
            problem = _valid_format(fmt)
            if problem:
                reg.load_errors.append(f"{impl.plugin_name}: format {fmt!r} {problem}")
            elif fmt.name in reg.formats:
                reg.load_errors.append(f"{impl.plugin_name}: format {fmt.name!r} ignored, already provided by {reg.origins[fmt.name]}")
            else:
                reg.formats[fmt.name] = fmt
                reg.origins[fmt.name] = impl.plugin_name
    return reg


_REGISTRY: Registry | None = None


def get_registry(*, reload: bool = False) -> Registry:
    """The process-wide registry (built once; ``reload=True`` rescans installed plugins)."""
    global _REGISTRY
    if _REGISTRY is None or reload:
        _REGISTRY = build_registry()
    return _REGISTRY

