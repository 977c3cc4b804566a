"""`python -m synth.train ARGS` is `synth train --distributed ARGS`: the module torchrun starts.

    torchrun --nproc_per_node=N -m synth.train PROTO --message M --data FILE --out DIR ...

An entry point like `synth.cli` itself (the top layer; nothing imports this module).
See docs/training.md, "Distributed training".
"""
import sys

from synth.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "--distributed", *sys.argv[1:]]))
