"""protosynth: compile a protobuf message into a tree-recursive VAE (Chou & Hathi 2019)."""
__version__ = "0.1.0"
