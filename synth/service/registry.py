"""Finding and loading models by name, for the service (docs/service.md).

A request names a model; this module turns the name into a loaded `Model` safely
(names are single path segments) and cheaply (manifests and weights cached, keyed
by the manifest's mtime). Separate from the service so the job manager can check
and publish names through the same registry.
"""
from __future__ import annotations

import base64
import collections
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synth import store
from synth.configs import from_dict
from synth.errors import ArtifactError, ConfigError, FailedPrecondition, NotFound, SchemaError, Violation
from synth.model import Model
from synth.model_config import ModelConfig
from synth.schema.loader import LoadedSchema, from_file_set
from synth.schema.tree import MessageNode, build_tree
from synth.service.types import NAME_RE, FieldInfo, GeoFields, ModelInfo, check_name

log = logging.getLogger(__name__)

LAT_NAMES = {"lat", "latitude"}
LON_NAMES = {"lon", "lng", "long", "longitude"}


# ----------------------------------------------------------------------------- schema helpers

def field_infos(tree: MessageNode, limit: int = 1000) -> list[FieldInfo]:
    """Every field path of the (recursion-unrolled) tree, capped for huge schemas."""
    out: list[FieldInfo] = []
    for f in tree.walk():
        out.append(FieldInfo(f.name, f.path, f.type, f.repeated))
        if len(out) >= limit:
            break
    return out


def geo_fields(fields: Sequence[FieldInfo]) -> GeoFields | None:
    """The first lat/lon pair of floating-point fields with the same parent, if any."""
    by_parent: dict[str, dict[str, str]] = {}
    for f in fields:
        if f.repeated or f.type not in ("double", "float"):
            continue
        parent = f.path.rpartition(".")[0]
        kind = "lat" if f.name.lower() in LAT_NAMES else "lon" if f.name.lower() in LON_NAMES else None
        if kind:
            by_parent.setdefault(parent, {}).setdefault(kind, f.path)
    for pair in by_parent.values():
        if "lat" in pair and "lon" in pair:
            return GeoFields(pair["lat"], pair["lon"])
    return None


# ----------------------------------------------------------------------------- registry

@dataclass
class _Entry:
    path: Path
    mtime: float
    source: str
    manifest: dict[str, Any]
    schema: LoadedSchema
    info: ModelInfo
    model: Model | None = None


class ModelRegistry:
    """Models by name: the models directory first, then the bundled models.

    Names are single path segments (checked by `check_name`), so a request can
    never reach outside the models directory. Manifests are read on demand and
    weights loaded lazily, both cached and keyed by the manifest's mtime, so a
    model retrained under the same name is picked up without a restart. At most
    `cache_size` loaded models are kept (least recently used evicted).
    """

    def __init__(self, models_dir: str | Path | None = "models", include_bundled: bool = True,
                 device: str = "cpu", cache_size: int = 8):
        self.models_dir = Path(models_dir) if models_dir is not None else None
        self.include_bundled = include_bundled
        self.device = device
        self.cache_size = cache_size
        self._entries: collections.OrderedDict[str, _Entry] = collections.OrderedDict()
        self._lock = threading.RLock()
        self._load_locks: dict[str, threading.Lock] = {}

    # -- lookup -----------------------------------------------------------------------
    def _bundled(self) -> dict[str, Path]:
        return store.bundled_models() if self.include_bundled else {}

    def _locate(self, name: str) -> tuple[Path, str] | None:
        if self.models_dir is not None:
            local = self.models_dir / name
            if (local / store.MANIFEST).is_file():
                return local, "local"
        bundled = self._bundled().get(name)
        return (bundled, "bundled") if bundled is not None else None

    def names(self) -> list[str]:
        names: set[str] = set(self._bundled())
        if self.models_dir is not None and self.models_dir.is_dir():
            names |= {p.name for p in self.models_dir.iterdir()
                      if NAME_RE.match(p.name) and (p / store.MANIFEST).is_file()}
        return sorted(names)

    def exists(self, name: str) -> bool:
        return self._locate(check_name(name)) is not None

    def _entry(self, name: str) -> _Entry:
        check_name(name)
        found = self._locate(name)
        if found is None:
            raise NotFound(f"no model named {name!r}", [Violation("name", "unknown model")],
                           available=self.names())
        path, source = found
        mtime = (path / store.MANIFEST).stat().st_mtime
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None and entry.path == path and entry.mtime == mtime:
                self._entries.move_to_end(name)
                return entry
        manifest = store.read_manifest(path)
        try:
            schema = from_file_set(base64.b64decode(manifest["file_descriptor_set"]), manifest["message"])
            config = from_dict(ModelConfig, manifest.get("model_config") or {})
            fields = field_infos(build_tree(schema.descriptor, config.schema_options()))
        except (KeyError, TypeError, ValueError, SchemaError, ConfigError) as e:
            raise ArtifactError(f"model {name!r}: manifest is incomplete or invalid ({e})") from e
        info = ModelInfo(name, schema.message_name, fields, config.latent_dim, source, geo_fields(fields))
        entry = _Entry(path, mtime, source, manifest, schema, info)
        with self._lock:
            self._entries[name] = entry
            self._entries.move_to_end(name)
            self._evict()
        return entry

    def _evict(self) -> None:
        loaded = [n for n, e in self._entries.items() if e.model is not None]
        for n in loaded[: max(0, len(loaded) - self.cache_size)]:
            self._entries[n].model = None
        while len(self._entries) > 4 * self.cache_size + 64:  # manifests are small, but bound them
            self._entries.popitem(last=False)

    # -- what the service uses --------------------------------------------------------
    def info(self, name: str) -> ModelInfo:
        return self._entry(name).info

    def manifest(self, name: str) -> dict[str, Any]:
        return self._entry(name).manifest

    def schema(self, name: str) -> LoadedSchema:
        return self._entry(name).schema

    def loaded(self, name: str) -> Model | None:
        """The model when it is loaded and its files unchanged, else None. Never reads or loads
        anything (a stat at most), for callers that must not block: the async REST path."""
        check_name(name)
        with self._lock:
            entry = self._entries.get(name)
        if entry is None or entry.model is None or self._locate(name) != (entry.path, entry.source):
            return None
        return entry.model if (entry.path / store.MANIFEST).stat().st_mtime == entry.mtime else None

    def model(self, name: str) -> Model:
        """The loaded model (lazily, once: concurrent first requests wait for one load)."""
        entry = self._entry(name)
        if entry.model is not None:
            return entry.model
        with self._lock:
            load_lock = self._load_locks.setdefault(name, threading.Lock())
        with load_lock:
            if entry.model is None:
                log.info("loading model %s from %s", name, entry.path)
                entry.model = store.load(entry.path, device=self.device)
                with self._lock:
                    self._evict()
            return entry.model

    def delete(self, name: str) -> Path:
        """Remove a model of the models directory (NotFound; FailedPrecondition for a bundled one).

        The folder is renamed away first (`.deleted-<name>-*`, one atomic step: the model is
        gone from listings at once), then removed; a crash in between leaves a hidden folder
        that the next start removes (synth.service.job_store). Returns the path it had."""
        found = self._locate(check_name(name))
        if found is None:
            raise NotFound(f"no model named {name!r}", [Violation("name", "unknown model")], available=self.names())
        path, source = found
        if source != "local" or self.models_dir is None:
            raise FailedPrecondition(f"{name!r} is a bundled model; only models of the models directory can be "
                                     "deleted", [Violation("name", "a bundled model")])
        grave = self.models_dir / f".deleted-{name}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(path, grave)
        except FileNotFoundError:  # deleted by a concurrent request
            raise NotFound(f"no model named {name!r}", [Violation("name", "unknown model")]) from None
        with self._lock:
            self._entries.pop(name, None)
        shutil.rmtree(grave, ignore_errors=True)
        return path

    def target_dir(self, name: str) -> Path:
        """Where a newly trained model called `name` is saved."""
        if self.models_dir is None:
            raise FailedPrecondition("this server has no models directory to save trained models in")
        return self.models_dir / check_name(name)
