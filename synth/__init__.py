"""protosynth: compile a protobuf message into a tree-recursive VAE (Chou & Hathi 2019)."""
__version__ = "0.2.0"  # the one version source: pyproject, the contract and the client read it

# The Python API, imported on first use (module __getattr__, PEP 562): `import synth` stays
# cheap and torch-free for the client, the contract and `synth --version`.
_LAZY = {
    "Synthesizer": "synth.synthesizer",
    "Model": "synth.model",
    "Trainer": "synth.train",
    "TrainConfig": "synth.train",
    "RunConfig": "synth.run_config",
    "load_run_config": "synth.run_config",
    "ModelConfig": "synth.model_config",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'synth' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
