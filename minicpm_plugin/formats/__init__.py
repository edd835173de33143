"""Dataset formats -> canonical MiniCPM3 conversations, with located validation problems.

Formats are pluggy plugins (entry-point group ``minicpm_plugin.formats``); see
:mod:`minicpm_plugin.formats.hookspecs` and docs/data_formats.md. No torch/axolotl imports here.
"""

from minicpm_plugin.formats.base import COMPATIBLE, MATCH, NO, Converted, DatasetFormat, Format, RecordError
from minicpm_plugin.formats.canonical import Issue, canonicalize
from minicpm_plugin.formats.hookspecs import ENTRY_POINT_GROUP, hookimpl, hookspec
from minicpm_plugin.formats.manager import FormatLookupError, Registry, get_registry
from minicpm_plugin.formats.prepare import (
    PreparedDataset,
    decode_row,
    load_conversations,
    prepare_dataset_file,
    read_prepared,
)
from minicpm_plugin.formats.problems import CODES, DataError, Problem
from minicpm_plugin.formats.scan import Row, ScannedFile, scan_file

__all__ = [
    "CODES",
    "COMPATIBLE",
    "ENTRY_POINT_GROUP",
    "MATCH",
    "NO",
    "Converted",
    "DataError",
    "DatasetFormat",
    "Format",
    "FormatLookupError",
    "Issue",
    "PreparedDataset",
    "Problem",
    "RecordError",
    "Registry",
    "Row",
    "ScannedFile",
    "canonicalize",
    "decode_row",
    "get_registry",
    "hookimpl",
    "hookspec",
    "load_conversations",
    "prepare_dataset_file",
    "read_prepared",
    "scan_file",
]
