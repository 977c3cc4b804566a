"""Model artifacts on disk: `weights.safetensors` + `manifest.json`; never pickle (docs/architecture.md).

The manifest holds everything needed to rebuild the module tree without the data:
the serialized FileDescriptorSet, the message name, ModelConfig and FitStats, plus
the vocabulary, normalisation and latent statistics for people and tools to read,
and the run's metadata (training config, summary, metrics). Loading goes manifest
-> compile -> load_file(cpu) -> load_state_dict(strict) -> .to(device), so a
GPU-trained model loads on a CPU. Saving writes temporary files, then renames them.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

import synth
from synth.configs import from_dict, to_dict
from synth.errors import AlreadyExists, ArtifactError, ConfigError, NotFound, SchemaError, VersionError
from synth.fitstats import FitStats
from synth.model import Model
from synth.model_config import LEGACY, ModelConfig
from synth.tokens import EOS, VOCAB
from synth.plan import NumberNode, ScalarsNode, walk
from synth.schema.loader import from_file_set

FORMAT = "protosynth-model"
FORMAT_VERSION = 1
WEIGHTS, MANIFEST = "weights.safetensors", "manifest.json"
BUNDLED_DIR = Path(__file__).parent / "pretrained"


def bundled_models() -> dict[str, Path]:
    """Pretrained models shipped in the package, by name."""
    if not BUNDLED_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(BUNDLED_DIR.iterdir()) if (p / MANIFEST).is_file()}


def resolve(name_or_path: str | Path) -> Path:
    """An artifact directory, or the name of a bundled model."""
    p = Path(name_or_path)
    if (p / MANIFEST).is_file():
        return p
    bundled = bundled_models()
    if str(name_or_path) in bundled:
        return bundled[str(name_or_path)]
    if p.exists():
        raise ArtifactError(f"{p} is not a protosynth model: {MANIFEST} is missing")
    raise NotFound(f"no model at {p} and no bundled model named {str(name_or_path)!r}",
                   bundled=sorted(bundled))


def manifest_of(model: Model) -> dict[str, Any]:
    mean, cov = model.vae.latent_distribution()
    normalisation = {
        n.path: {"fields": [f.name for f in n.fields] if isinstance(n, ScalarsNode) else [n.field.name],
                 "mean": model.vae.nodes[n.module].mean.tolist(),
                 "cov": model.vae.nodes[n.module].cov.tolist()}
        for n in walk(model.plan) if isinstance(n, (ScalarsNode, NumberNode))
    }
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "synth_version": synth.__version__,
        "message": model.schema.message_name,
        "proto_file": model.schema.proto_file,
        "file_descriptor_set": base64.b64encode(model.schema.file_set).decode(),
        "model_config": to_dict(model.config),
        "fit_stats": dataclasses.asdict(model.stats),
        "vocabulary": {"kind": "utf-8 bytes", "size": VOCAB, "eos": EOS},
        "normalisation": normalisation,
        "latent": {"steps": float(model.vae.latent_steps), "mean": mean.tolist(), "cov": cov.tolist(),
                   "prior": "mixture" if model.vae.prior_weights.numel() else "gaussian",
                   "mixture_components": int(model.vae.prior_weights.numel()),
                   "mixture_rotated": bool(model.vae.prior_basis.numel())},
        "metadata": model.metadata,
    }


def save(model: Model, directory: str | Path) -> Path:
    """Write the artifact; other files in `directory` (logs, checkpoints) are left alone.

    Each file is written under a temporary name and renamed into place, weights first
    and manifest last; the manifest carries the weights' checksum, so a crash between
    the two renames leaves an artifact that `load` refuses instead of a silently
    mismatched one.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp_weights = directory / f".{WEIGHTS}.tmp"
    tmp_manifest = directory / f".{MANIFEST}.tmp"
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.vae.state_dict().items()}
        save_file(state, str(tmp_weights))
        manifest = manifest_of(model)
        manifest["weights_sha256"] = _sha256(tmp_weights)
        tmp_manifest.write_text(json.dumps(manifest, indent=1))
        for tmp in (tmp_weights, tmp_manifest):  # on disk before the renames: a power cut leaves the
            _fsync(tmp)                            # old artifact or the new one, never an empty file
        os.chmod(tmp_weights, 0o644)  # safetensors writes 0600; artifacts are shared and packaged
        os.replace(tmp_weights, directory / WEIGHTS)
        os.replace(tmp_manifest, directory / MANIFEST)
    finally:
        tmp_weights.unlink(missing_ok=True)
        tmp_manifest.unlink(missing_ok=True)
    return directory


def publish(staging: str | Path, target: str | Path) -> Path:
    """Move a complete artifact (saved by `save` into `staging`) to `target` with one rename.

    The artifact is checked first (its manifest reads), the rename is atomic on one
    filesystem, and it fails rather than replace an existing `target`: a model
    appears complete or not at all, and never over another one. Used to publish
    trained jobs (synth.service.jobs).
    """
    staging, target = Path(staging), Path(target)
    read_manifest(staging)  # ArtifactError when the artifact is incomplete
    if target.exists():
        raise AlreadyExists(f"a model named {target.name!r} already exists")
    try:
        os.rename(staging, target)  # atomic; refuses (ENOTEMPTY/EEXIST) if target appeared meanwhile
    except OSError as e:
        if target.exists():
            raise AlreadyExists(f"a model named {target.name!r} already exists") from e
        raise
    _fsync(target.parent)
    return target


def _fsync(path: Path) -> None:
    """Flush a file, or a directory's entries, to disk (best effort where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if path.is_file():  # a file that cannot reach the disk (ENOSPC, EIO) is a failed save
            raise
        del e
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(directory: str | Path) -> dict[str, Any]:
    path = resolve(directory) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{path}: unreadable manifest ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{path} is not a protosynth manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise VersionError(
            f"{path} has artifact format {version}, written by protosynth "
            f"{manifest.get('synth_version')}; this is protosynth {synth.__version__}, which reads "
            f"format {FORMAT_VERSION}. Install the protosynth version that wrote it, or retrain.",
            found=version, expected=FORMAT_VERSION)
    return manifest


def load(directory: str | Path, device: str | torch.device = "cpu") -> Model:
    """Rebuild a model from its artifact. Corrupt or incompatible artifacts are refused."""
    directory = resolve(directory)
    manifest = read_manifest(directory)
    try:
        schema = from_file_set(base64.b64decode(manifest["file_descriptor_set"]), manifest["message"])
        config = from_dict(ModelConfig, {**LEGACY, **manifest["model_config"]})
        stats = FitStats(**manifest["fit_stats"])
    except (KeyError, TypeError, ValueError, SchemaError, ConfigError) as e:
        raise ArtifactError(f"{directory}: manifest is incomplete or invalid ({e})") from e
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise ArtifactError(f"{directory}: {WEIGHTS} is missing")
    expected = manifest.get("weights_sha256")
    if expected and _sha256(weights) != expected:
        raise ArtifactError(f"{weights} does not match its manifest checksum: the file is corrupt")
    try:  # compiling checks the stored field order against the schema
        model = Model(schema, config, stats)
    except SchemaError as e:
        raise ArtifactError(f"{directory}: the manifest does not fit its own schema ({e})") from e
    try:
        state = load_file(str(weights), device="cpu")
        if "prior_weights" in state:  # the mixture prior's size is the data's, not the config's
            model.vae.load_prior(state)
        model.vae.load_state_dict(state, strict=True)
    except Exception as e:  # safetensors raises its own error types for truncated files
        raise ArtifactError(f"{weights}: weights do not fit the model ({e})") from e
    model.metadata = manifest.get("metadata") or {}
    model.vae.eval()
    return model.to(device)
