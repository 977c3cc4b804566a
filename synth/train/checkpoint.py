"""Trainer checkpoints: the model artifact plus optimizer, RNG and schedule state.

Everything is safetensors + JSON (no pickle, so a checkpoint can be shared and
loaded safely). A checkpoint is written into a temporary directory and renamed
over the previous one, so a crash mid-write never leaves a broken checkpoint.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from synth import store
from synth.errors import ArtifactError
from synth.model import Model

STATE_JSON, STATE_TENSORS = "trainer.json", "trainer.safetensors"


def optimizer_state(opt: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"opt.{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{k}"] = v
    return {"param_groups": sd["param_groups"], "scalars": scalars}, tensors


def load_optimizer_state(opt: torch.optim.Optimizer, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    for key, v in meta["scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(directory: Path, model: Model, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".ckpt.", dir=directory.parent))
    try:
        store.save(model, tmp / "model")
        save_file(tensors, str(tmp / STATE_TENSORS))
        (tmp / STATE_JSON).write_text(json.dumps(meta))
        old = directory.with_name(directory.name + ".old")
        if directory.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def recover_checkpoint(directory: Path) -> Path | None:
    """The last good checkpoint: `directory`, or its `.old` twin when a kill fell between the two renames."""
    if (directory / STATE_JSON).is_file():
        return directory
    old = directory.with_name(directory.name + ".old")
    if (old / STATE_JSON).is_file():
        shutil.rmtree(directory, ignore_errors=True)  # a half-renamed new one, if any
        os.replace(old, directory)
        return directory
    return None


def load_checkpoint(directory: Path, device: str | torch.device) -> tuple[Model, dict[str, Any], dict[str, torch.Tensor]]:
    if not (directory / STATE_JSON).is_file():
        raise ArtifactError(f"no checkpoint in {directory}")
    model = store.load(directory / "model", device=device)
    try:
        meta = json.loads((directory / STATE_JSON).read_text())
        tensors = load_file(str(directory / STATE_TENSORS), device="cpu")
    except Exception as e:  # corrupt files: refuse clearly
        raise ArtifactError(f"checkpoint {directory} is corrupt ({e})") from e
    return model, meta, tensors
