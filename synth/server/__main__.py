"""`python -m synth.server [flags]`: the same as `synth serve` (one front-end, in synth.cli)."""
from __future__ import annotations

import sys

from synth.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
