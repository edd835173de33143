"""Where a model named by the user lives: a local folder, the local Hugging Face cache, or the hub.

Answered without downloading anything: the cache is looked up with `huggingface_hub`, and the hub
is probed with one TCP connection (skipped when HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is set or a
proxy is configured). No torch, no axolotl.
"""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_TRUE = ("1", "true", "yes", "on")


def looks_like_hub_id(name: str) -> bool:
    """`owner/name` or `name` as the hub spells repository ids (not `./x`, `/x`, `a/b/c`, `x.jsonl`...)."""
    return bool(_HUB_ID.match(name)) and ".." not in name and not name.endswith((".", "-"))


def offline_setting() -> str | None:
    """The environment variable that forbids hub access (e.g. "HF_HUB_OFFLINE=1"), or None."""
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(key, "").strip().lower() in _TRUE:
            return f"{key}={os.environ[key]}"
    return None


def hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the hub cannot be reached (offline setting, no connection), or None if it may be."""
    setting = offline_setting()
    if setting:
        return setting
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # a proxy decides; a direct connection says nothing
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return f"no connection to {host}: {exc.strerror or exc}"
    return None


def cache_dir() -> str:
    """The hub cache folder huggingface_hub uses in this process (HF_HUB_CACHE, HF_HOME/hub, ...)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def cached_snapshot(repo_id: str, filename: str = "config.json", revision: str | None = None) -> Path | None:
    """The local snapshot folder of `repo_id` when `filename` of it is in the cache, else None."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, filename, revision=revision)
    except Exception:  # an id the hub would refuse (HFValidationError) is simply not cached
        return None
    return Path(found).parent if isinstance(found, str) else None


def model_unavailable(name: str, key: str, recipe: str | None = None, filename: str = "config.json",
                      revision: str | None = None) -> str | None:
    """None when `name` is a local folder, is cached, or the hub may be reached; else one line that says
    what is wrong and the ways out."""
    path = Path(name).expanduser()
    if path.is_dir():
        return None
    if not looks_like_hub_id(name):
        what = "is a file, not a model folder" if path.exists() else "does not exist"
        return f"{key} {name!r} {what}: point {key} at a local model folder (with config.json) or a hub id such as openbmb/MiniCPM3-4B"
    snapshot = cached_snapshot(name, filename, revision)
    missing = None if snapshot is None else missing_weights(snapshot) if filename == "config.json" else []
    if missing == []:
        return None
    why = hub_unreachable()
    if why is None:
        return None
    smoke = f"minicpm-plugin smoke {recipe or 'RECIPE.yml'}"
    where = (f"is not in the local Hugging Face cache ({cache_dir()})" if missing is None else
             f"is only partly in the local Hugging Face cache ({snapshot}: no {', '.join(missing[:3])})")
    return (f"{key} {name!r} {where} and the hub cannot be reached ({why}): download it where there is network "
            f"(hf download {name}) into that cache, or set {key} to a local model folder; to try the recipe on CPU "
            f"without the model: {smoke}")


def missing_weights(snapshot: Path) -> list[str]:
    """Weight files a cached snapshot lacks (an interrupted download): the shards its index names, or a
    single weights file when there is no index."""
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (snapshot / index).is_file():
            try:
                shards = sorted(set(json.loads((snapshot / index).read_text(encoding="utf-8"))["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
                return [f"readable {index}"]
            return [s for s in shards if not (snapshot / s).is_file()]
    if any((snapshot / f).is_file() for f in ("model.safetensors", "pytorch_model.bin")):
        return []
    return ["model.safetensors"]
