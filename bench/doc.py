"""docs/benchmarks.md is assembled from marked blocks, each rewritten by the script that measures it."""
from __future__ import annotations

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
