"""Recipe files (axolotl YAML): reading them with errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class RecipeError(ValueError):
    """The recipe is not valid for axolotl (message names the recipe and what to change)."""


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a recipe YAML file into a dict."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: expected a mapping of keys to values at the top level")
    return data
