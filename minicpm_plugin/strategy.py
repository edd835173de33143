"""`datasets: [{type: minicpm_plugin.strategy}]`: axolotl imports this module and calls `load`.

The strategy lives in `minicpm_plugin.integration.strategy` with the rest of the axolotl glue.
"""

from minicpm_plugin.integration.strategy import MiniCPM3Strategy, load, row_conversation

__all__ = ["MiniCPM3Strategy", "load", "row_conversation"]
