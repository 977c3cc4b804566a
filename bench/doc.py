"""docs/benchmarks.md is assembled from marked blocks, each rewritten by the script that measures it."""
from __future__ import annotations

import os
import platform
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs/benchmarks.md"


def replace_block(key: str, title: str, body: str, doc: Path = DOC) -> None:
    """Replace the `<!-- key:start -->...<!-- key:end -->` block, or append it under `title`."""
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if start in text and end in text:
        pre, rest = text.split(start, 1)
        text = pre + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + f"\n\n## {title}\n\n{block}\n"
    doc.write_text(text)


def cpu_name() -> str:
    """The processor and its core count, for the hardware line of every block."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"
