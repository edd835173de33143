"""The built-in formats, registered through the same pluggy hook as third-party ones."""

from __future__ import annotations

from typing import Any

from minicpm_plugin.formats.glaive import GlaiveFormat
from minicpm_plugin.formats.hermes import HermesFormat
from minicpm_plugin.formats.hookspecs import hookimpl
from minicpm_plugin.formats.openai import OpenAIFormat
from minicpm_plugin.formats.seed import SeedFormat
from minicpm_plugin.formats.sharegpt import ShareGPTFormat
from minicpm_plugin.formats.xlam import XLAMFormat


@hookimpl
def minicpm_plugin_formats() -> list[Any]:
    return [SeedFormat(), OpenAIFormat(), ShareGPTFormat(), GlaiveFormat(), XLAMFormat(), HermesFormat()]
