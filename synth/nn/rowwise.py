"""Row-invariant arithmetic: a row's result that does not depend on the other rows of the batch.

Why: a micro-batching server (synth/service/batcher.py) merges small sample requests
into one model call, and a request must give the same records whether it ran alone or
beside others. Drawing each request's randomness from its own generator
(synth/nn/draws.py) is not enough, because the float kernels themselves depend on the
batch: BLAS picks another GEMM code path for 1 row than for 16 (different rounding),
and vectorised pointwise kernels (sigmoid, CELU, softplus) compute the last
`numel % 32` elements of a tensor with a scalar formula that differs in the last bit.

Inside `row_invariant()` (thread-local, so a server's other threads are unaffected):

* `linear` pads the batch to a row count of the same block structure (a multiple of
  8, at least 16) and runs one GEMM. Measured on MKL's sgemm/dgemm (1-4 threads), a
  row's result then does not depend on the other rows or its position: the 1-3 row
  cases take other kernels, and odd row counts a remainder kernel. This is a property
  of the BLAS, not a promise, so it is checked once per thread count
  (`padded_gemm_is_row_invariant`); where it fails, every row is its own (1, in) x
  (in, out) product in one `bmm` call, which is exact but about 6x slower at 16 rows;
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
    """F.linear; in row-invariant mode, on a padded batch or row by row (module docstring)."""
    if not enabled() or x.dim() != 2:
        return F.linear(x, weight, bias)
    if _padded_ok("linear", x.dtype, x.device):
        return F.linear(_pad_rows(x), weight, bias)[: x.shape[0]]
    out = torch.bmm(x.unsqueeze(1), weight.t().unsqueeze(0).expand(x.shape[0], -1, -1))[:, 0]
    return out + bias if bias is not None else out


def matmul(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """x (n, k) @ m (k, j); row-invariant in that mode, as `linear` (the whitening basis, float64)."""
    if not enabled() or x.dim() != 2:
        return x @ m
    if _padded_ok("matmul", x.dtype, x.device):
        return (_pad_rows(x) @ m)[: x.shape[0]]
    return torch.bmm(x.unsqueeze(1), m.unsqueeze(0).expand(x.shape[0], -1, -1))[:, 0]


MIN_ROWS, ROW_BLOCK = 16, 8
_checked: dict[tuple[str, int, torch.dtype], bool] = {}


def _pad_rows(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    rows = max(MIN_ROWS, -(-n // ROW_BLOCK) * ROW_BLOCK)
    return x if rows == n else torch.cat([x, x.new_zeros(rows - n, x.shape[1])])


def _padded_ok(op: str, dtype: torch.dtype, device: torch.device) -> bool:
    if device.type != "cpu":
        return False
    key = (op, torch.get_num_threads(), dtype)
    if key not in _checked:
        _checked[key] = padded_gemm_is_row_invariant(op, dtype)
    return _checked[key]


def padded_gemm_is_row_invariant(op: str = "linear", dtype: torch.dtype = torch.float32,
                                 max_rows: int = 64) -> bool:
    """Whether, on this BLAS and thread count, a row of a padded `linear` (x @ w.T + b) or
    `matmul` (x @ m, m contiguous or a transposed view) gives the same bits at every position of every padded
    batch size up to `max_rows` (a few ms; `linear` and `matmul` reach different kernels)."""
    g = torch.Generator().manual_seed(0)
    for k, o in ((128, 384), (40, 7)):
        w = torch.randn(o, k, generator=g, dtype=dtype)
        b = torch.randn(o, generator=g, dtype=dtype)
        m = w.t().contiguous()  # (k, o) as `matmul` may get it: contiguous, or w.t(), a view
        f = (lambda x: F.linear(x, w, b)) if op == "linear" else (lambda x: torch.cat([x @ m, x @ w.t()], 1))
        row = torch.randn(k, generator=g, dtype=dtype)
        ref = f(_pad_rows(row[None]))[0]
        for n in range(MIN_ROWS, max_rows + 1, ROW_BLOCK):
            x = torch.randn(n, k, generator=g, dtype=dtype)
            for pos in (0, n // 2 - 1, n - 1):
                x[pos] = row
                if not torch.equal(f(x)[pos], ref):
                    return False
    return True


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
