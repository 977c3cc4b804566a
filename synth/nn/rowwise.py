"""Row-invariant arithmetic: a row's result that does not depend on the other rows of the batch.

Why: a micro-batching server (synth/service/batcher.py) merges small sample requests
into one model call, and a request must give the same records whether it ran alone or
beside others. Drawing each request's randomness from its own generator
(synth/nn/draws.py) is not enough, because the float kernels themselves depend on the
batch: BLAS picks another GEMM code path for 1 row than for 16 (different rounding),
and vectorised pointwise kernels (sigmoid, CELU, softplus) compute the last
`numel % 32` elements of a tensor with a scalar formula that differs in the last bit.

Inside `row_invariant()` (thread-local, so a server's other threads are unaffected):

* `linear` computes every row as its own (1, in) x (in, out) product of the same shape
  (one `bmm` call), so each row takes the same kernel whatever the batch;
* `pointwise` runs a function on a view whose rows are not adjacent in memory, so the
  kernel walks row by row and every row gets the same vector/scalar split.

Outside it both are the plain calls. The mode is for small batches (a few rows per
request, `synth.model.EXACT_ROWS`): `bmm` over rows is slower than one GEMM for big ones.
Batches stay below torch's parallel grain (32768 elements) there, so the thread count
does not split a row either. tests/test_batcher.py checks the invariance on real models.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

_state = threading.local()
ALIGNED = 64  # widths that are a multiple of this never reach a kernel's scalar tail


def enabled() -> bool:
    return getattr(_state, "on", False)


@contextmanager
def row_invariant(on: bool = True) -> Iterator[None]:
    """Compute every row independently of its batch neighbours (this thread only)."""
    before = enabled()
    _state.on = on
    try:
        yield
    finally:
        _state.on = before


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear; row by row (one bmm of 1-row products) in row-invariant mode."""
    if not enabled() or x.dim() != 2:
        return F.linear(x, weight, bias)
    out = torch.bmm(x.unsqueeze(1), weight.t().unsqueeze(0).expand(x.shape[0], -1, -1))[:, 0]
    return out + bias if bias is not None else out


def matmul(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """x (n, k) @ m (k, j); row by row in row-invariant mode (the whitening basis, float64)."""
    if not enabled() or x.dim() != 2:
        return x @ m
    return torch.bmm(x.unsqueeze(1), m.unsqueeze(0).expand(x.shape[0], -1, -1))[:, 0]


def pointwise(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """fn(x) for an elementwise fn; in row-invariant mode each row is computed alike."""
    if (not enabled() or x.dim() not in (1, 2) or x.numel() == 0
            or (x.dim() == 2 and x.shape[1] % ALIGNED == 0 and x.is_contiguous())):
        return fn(x)
    rows = x if x.dim() == 2 else x.unsqueeze(1)
    # A row stride one wider than the row: the kernel cannot merge rows into one run.
    padded = rows.new_empty(rows.shape[0], rows.shape[1] + 1)
    padded[:, : rows.shape[1]] = rows
    return fn(padded[:, : rows.shape[1]]).reshape(x.shape)


class Linear(nn.Linear):
    """nn.Linear (same parameters and state dict keys) that honours row-invariant mode."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
