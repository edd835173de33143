"""The axolotl glue: the only subpackage that imports axolotl."""
from minicpm_plugin.integration.plugin import MiniCPM3Plugin  # noqa: F401
