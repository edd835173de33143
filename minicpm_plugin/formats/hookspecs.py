"""pluggy hook specifications for dataset formats (project name ``minicpm_plugin``).

A package adds formats by exposing a module with a ``@hookimpl`` function under the entry-point
group ``minicpm_plugin.formats``::

    # pyproject.toml
    [project.entry-points."minicpm_plugin.formats"]
    myformat = "my_package.minicpm_formats"

    # my_package/minicpm_formats.py
    from minicpm_plugin.formats import Format, MATCH, NO, hookimpl

    class MyFormat(Format):
        name = "myformat"
        description = "records with prompt/completion"
        def detect(self, record):
            return MATCH if {"prompt", "completion"} <= record.keys() else NO
        def convert(self, record):
            return {"messages": [{"role": "user", "content": record["prompt"]},
                                 {"role": "assistant", "content": record["completion"]}]}

    @hookimpl
    def minicpm_plugin_formats():
        return [MyFormat()]

The built-in formats register through the same hook (entry point ``builtin``).
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT = "minicpm_plugin"
ENTRY_POINT_GROUP = "minicpm_plugin.formats"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def minicpm_plugin_formats() -> list[Any]:
    """Return the dataset formats this plugin provides.

    Each is an object with ``name`` (str), ``description`` (str), ``detect(record) -> int | bool``
    (``MATCH``, ``COMPATIBLE`` or ``NO``) and ``convert(record)`` returning the canonical conversation
    (a dict, or a ``Converted``); see :class:`minicpm_plugin.formats.Format`. Optional attributes:
    ``aliases``, ``specializes``, ``example``, ``version``.
    """
