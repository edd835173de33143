"""Runs without a GPU: single-process CPU fallback, and several processes over gloo.

`cpu_fallback` makes a GPU recipe run on a CPU-only machine (smoke tests, CI). The rest makes several
training processes on a machine without a GPU work for `accelerate launch` and `deepspeed`:

axolotl 0.19.0 assumes one GPU per process once WORLD_SIZE > 1: it sets `device_map={"": LOCAL_RANK}`
(a GPU index, which transformers rejects without an accelerator) and creates its accelerate state
without `cpu=True` (so accelerate sees no backend and every rank trains alone on all the data).
`setup_cpu_processes` runs from the plugin's `register`, before axolotl touches either, and makes the
same launch commands that use NCCL on GPUs run as real data parallel over gloo on CPUs.
"""

from __future__ import annotations

import os
from typing import Any

from minicpm_plugin.utils import patch_once


def has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def cpu_fallback(cfg: dict[str, Any]) -> list[str]:
    """Make a GPU recipe run on a CPU-only machine (for smoke tests). Returns what was changed."""
    changed = []

    def put(key: str, value: Any) -> None:
        if cfg.get(key) != value:
            changed.append(f"{key}: {cfg.get(key)} -> {value}")
            cfg[key] = value

    if cfg.get("bf16") not in (False, None) or cfg.get("fp16"):
        put("bf16", False)
        put("fp16", False)
    elif cfg.get("bf16") is None:
        put("bf16", False)  # axolotl's default `auto` would pick fp16 on a machine without bf16
    if cfg.get("tf32"):
        put("tf32", False)
    for key in ("flash_attention", "flex_attention", "xformers_attention"):
        if cfg.get(key):
            put(key, False)
    if cfg.get("attn_implementation") in ("flash_attention_2", "flash_attention_3", "flex_attention"):
        put("attn_implementation", "sdpa")
    for key in ("lora_mlp_kernel", "lora_embedding_kernel"):
        if cfg.get(key):
            put(key, False)
    # bitsandbytes' CPU backend quantizes (QLoRA) and steps its 8-bit/paged optimizers on CPU too.
    return changed


def init_single_process_gloo() -> None:
    """Give single-process DeepSpeed a gloo group, before axolotl creates an NCCL one (no GPU)."""
    import torch.distributed as dist

    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        if "MASTER_PORT" not in os.environ:
            import socket

            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                os.environ["MASTER_PORT"] = str(s.getsockname()[1])
        for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
            os.environ.setdefault(key, value)
        dist.init_process_group("gloo", rank=0, world_size=1)


def world_size() -> int:
    """Number of training processes the launcher started (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def cpu_device_map(device_map: Any) -> Any:
    """A device map that places the whole model on the CPU, for maps that name GPU indices."""
    if isinstance(device_map, int) or (isinstance(device_map, str) and device_map.startswith("cuda")):
        return "cpu"
    if isinstance(device_map, dict) and any(isinstance(v, int) or str(v).startswith("cuda") for v in device_map.values()):
        return "cpu"
    return device_map


def _patch_model_loader_device_map() -> None:
    """Rewrite axolotl's per-rank GPU device map to "cpu" right before the model loader reads it."""
    from axolotl.loaders.model import ModelLoader

    def wrap(original: Any) -> Any:
        def _set_device_map_config(self: Any) -> None:
            self.cfg.device_map = cpu_device_map(self.cfg.device_map)
            original(self)

        return _set_device_map_config

    patch_once(ModelLoader, "_set_device_map_config", wrap)


def _patch_deepspeed_all_gather() -> None:
    """Let ZeRO-1/2 gather its parameter partitions over gloo.

    gloo runs `all_gather_into_tensor` on a worker thread that copies into chunks of the output; the
    thread does not inherit the caller's no-grad mode, so DeepSpeed's flat parameter buffer (which
    requires grad) fails with "Output 0 of Split is a view and is being modified inplace". Detached
    aliases share the same storage, so the gathered values still land in DeepSpeed's buffer.
    """
    from deepspeed.comm.torch import TorchBackend

    def wrap(original: Any) -> Any:
        def all_gather_into_tensor(self: Any, output_tensor: Any, input_tensor: Any, group: Any = None,
                                   async_op: bool = False) -> Any:
            return original(self, output_tensor.detach(), input_tensor.detach(), group=group, async_op=async_op)

        return all_gather_into_tensor

    patch_once(TorchBackend, "all_gather_into_tensor", wrap)


def skip_deepspeed_shm_op() -> None:
    """Keep DeepSpeed from compiling its shared-memory all-reduce op on a machine without a GPU.

    DeepSpeed's communication backend builds `deepspeed_shm_comm` (about 50 s of g++ on a 2-core
    machine, on the first run) whenever the accelerator is the CPU. Only its inference all-reduce uses
    that op; ZeRO training communicates through torch.distributed, so the build buys training nothing.
    """
    import importlib

    # `import deepspeed.comm.torch as m` would bind the torch package that deepspeed.comm re-exports.
    ds_torch = importlib.import_module("deepspeed.comm.torch")
    patch_once(ds_torch, "build_shm_op", lambda original: lambda: None)


def _patch_accelerate_deepspeed_backend() -> None:
    """Let accelerate count all ranks of a DeepSpeed run on CPU.

    axolotl's trainer resets accelerate's state and rebuilds it with `cpu=False` (DeepSpeed needs that);
    accelerate then finds no GPU backend, reports one process and does not shard the data, while the
    DeepSpeed engine averages over all ranks. Reporting the existing gloo group's backend makes
    accelerate read world size and rank from it.
    """
    from accelerate.state import PartialState

    def wrap(original: Any) -> Any:
        def _prepare_backend(self: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            backend, distributed_type = original(self, *args, **kwargs)
            import torch.distributed as dist

            if (backend is None and os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
                    and dist.is_available() and dist.is_initialized()):
                backend = dist.get_backend()
            return backend, distributed_type

        return _prepare_backend

    patch_once(PartialState, "_prepare_backend", wrap)


def _init_gloo_group() -> None:
    """Join the launcher's ranks in a gloo process group (env:// rendezvous from torchrun/deepspeed)."""
    import torch.distributed as dist

    if dist.is_available() and not dist.is_initialized():
        dist.init_process_group("gloo", rank=int(os.environ["RANK"]), world_size=world_size())


def setup_cpu_processes(cfg: dict[str, Any]) -> list[str]:
    """Prepare a multi-process CPU run (WORLD_SIZE > 1, no GPU); returns what was set, for the log.

    - the torch process group is created on gloo before axolotl or DeepSpeed would ask for NCCL, and
      accelerate's process state with `cpu=True`, so axolotl's barriers and main-process checks see
      all ranks until the trainer builds its own state;
    - plain data parallel: `ACCELERATE_USE_CPU=true` makes the trainer's accelerate state CPU/gloo;
    - DeepSpeed: `ACCELERATE_USE_CPU` is removed (accelerate drops DeepSpeed under it), accelerate is
      made to count the gloo ranks, DeepSpeed communicates on the gloo group (ZeRO-3 reads its world
      size at model load), and ZeRO's all-gather is made gloo-safe;
    - axolotl's `device_map={"": LOCAL_RANK}` is mapped to "cpu" when the model is loaded.
    """
    if world_size() <= 1:
        return []
    done = []
    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    if cfg.get("deepspeed"):
        # accelerate's state ignores DeepSpeed when ACCELERATE_USE_CPU is on: the run would silently be DDP.
        if use_cpu:
            del os.environ["ACCELERATE_USE_CPU"]
            done.append("ACCELERATE_USE_CPU unset (accelerate turns DeepSpeed off with it)")
        _patch_deepspeed_all_gather()
        _patch_accelerate_deepspeed_backend()
    elif not use_cpu:
        os.environ["ACCELERATE_USE_CPU"] = "true"
        done.append("ACCELERATE_USE_CPU=true")
    _init_gloo_group()
    done.append(f"gloo process group of {world_size()} ranks")
    if cfg.get("deepspeed"):
        # On GPUs accelerate hands DeepSpeed its communication backend. Here DeepSpeed would not know the
        # gloo group, and ZeRO-3's zero.Init (model loading) would read a world size of 1 and stop at its
        # batch-size check (train_batch_size 2 != 1 * 1 * 1).
        import deepspeed

        deepspeed.init_distributed(dist_backend="gloo")
        done.append("DeepSpeed communication on the gloo group")
    from accelerate import PartialState

    PartialState(cpu=True)
    _patch_model_loader_device_map()
    done.append('device_map {"": LOCAL_RANK} -> "cpu"')
    return done
