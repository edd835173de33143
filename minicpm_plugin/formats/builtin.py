"""The built-in formats, registered through the same pluggy hook as third-party ones."""

from __future__ import annotations

from typing import Any

from minicpm_plugin.formats.alpaca import AlpacaFormat, QueryResponseFormat
from minicpm_plugin.formats.glaive import GlaiveFormat
from minicpm_plugin.formats.hermes import HermesFormat
from minicpm_plugin.formats.hookspecs import hookimpl
from minicpm_plugin.formats.llamafactory_v1 import LlamaFactoryV1Format
from minicpm_plugin.formats.openai import OpenAIFormat
from minicpm_plugin.formats.refuse import PreferenceFormat
from minicpm_plugin.formats.seed import SeedFormat
from minicpm_plugin.formats.sharegpt import ShareGPTFormat
from minicpm_plugin.formats.swift import SwiftAgentFormat
from minicpm_plugin.formats.xlam import XLAMFormat


@hookimpl
def minicpm_plugin_formats() -> list[Any]:
    return [SeedFormat(), OpenAIFormat(), ShareGPTFormat(), GlaiveFormat(), XLAMFormat(), HermesFormat(),
            LlamaFactoryV1Format(), SwiftAgentFormat(), AlpacaFormat(), QueryResponseFormat(), PreferenceFormat()]
