"""A readable rendering of the compiled module tree, with parameter counts (`synth inspect`).

Each node's one-line description is its kind's `render` (synth.kinds).
"""
from __future__ import annotations

from torch import nn

from synth.kinds import kind_of
from synth.model import Model
from synth.plan import Node, children_of


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _label(node: Node, model: Model, seen: set[str]) -> str:
    mods = model.vae.nodes
    shared = node.module in seen
    seen.add(node.module)
    count = "" if not node.module else (
        f"  [{node.module}, shared]" if shared else f"  [{node.module}, {_params(mods[node.module]):,} params]")
    name = node.path.rsplit(".", 1)[-1] or model.schema.message_name
    kind = kind_of(node).render(node)
    return f"{name}  {kind}{count}"


def render(model: Model) -> str:
    lines: list[str] = []
    seen: set[str] = set()

    def visit(node: Node, prefix: str, last: bool, root: bool) -> None:
        branch = "" if root else ("└── " if last else "├── ")
        lines.append(prefix + branch + _label(node, model, seen))
        kids = children_of(node)
        ext = "" if root else ("    " if last else "│   ")
        for i, c in enumerate(kids):
            visit(c, prefix + ext, i == len(kids) - 1, False)

    visit(model.plan, "", True, True)
    std = model.vae.std_nets
    lines.append(f"std networks: {len(std)} x StdNet  [{sum(_params(s) for s in std):,} params]")
    lines.append(f"latent: {model.latent_dim}-dim;  total parameters: {model.n_parameters():,}")
    return "\n".join(lines)
