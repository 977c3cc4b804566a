"""StringLiteral (appendix B.1): a seq-to-seq character RNN over UTF-8 bytes.

Byte-level so that any Unicode string (and any `bytes` value) round-trips with a
fixed 257-symbol vocabulary (256 bytes + end-of-string). The 16-dim symbol
embedding is shared by encoder and decoder and initialised U(0, 1).

Batching: the codec hands us every string of every field that shares this module
in one (N, T) tensor sorted longest first, so step t runs the GRU on the prefix
slice of the `active[t]` rows still going. `forward` never loops over records.

Context (`StringLiteralConfig.context`, our addition; off in the paper's model): the
decoder sees the field's embedding at every step, not only through its first state.
Why: with the embedding only in the first state, what the latent says about a string
fades over its characters, and a string the vocabulary does not know (a street seen
once, through a categorical's escape) came back as a common one (docs/benchmarks.md).
The embedding's projection is added to the GRU's input projection, so it costs one
product per string and one addition per step.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from synth.nn import rowwise
from synth.nn.draws import narrow, softmax_draw
from synth.nn.gru import CeluGRUCell, GRUConfig
from synth.nn.init import celu_linear, in_degree_, linear
from synth.tokens import EOS, VOCAB


@dataclass(frozen=True)
class StringLiteralConfig:
    dim: int = 128
    char_dim: int = 16
    context: bool = False  # feed the embedding to every decoder step (module docstring)
    loss: str = "mean"  # a string's loss: "mean" per character (paper) or "sum" (its negative log-likelihood)


def active_counts(lengths: torch.Tensor, steps: int) -> list[int]:
    """Rows still running at each step, for lengths sorted descending (one host sync)."""
    counts = (lengths.unsqueeze(0) > torch.arange(steps, device=lengths.device).unsqueeze(1)).sum(1)
    return counts.tolist()


class StringLiteral(nn.Module):
    def __init__(self, cfg: StringLiteralConfig = StringLiteralConfig(), gru: GRUConfig = GRUConfig()):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(VOCAB, cfg.char_dim)
        self.enc_cell = CeluGRUCell(cfg.char_dim, cfg.dim, gru)
        self.enc_out = celu_linear(cfg.dim, cfg.dim, gru.alpha)
        self.dec_init = celu_linear(cfg.dim, cfg.dim, gru.alpha)
        self.dec_cell = CeluGRUCell(cfg.char_dim, cfg.dim, gru)
        self.dec_out = linear(cfg.dim, VOCAB)
        # the embedding's term in the decoder cell's gates (3 dim: r | z | n), per string
        self.dec_context = rowwise.Linear(cfg.dim, 3 * cfg.dim, bias=False) if cfg.context else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.embed.weight, 0.0, 1.0)
        if self.dec_context is not None:
            w = self.dec_context.weight.data
            in_degree_(w, self.cfg.char_dim + 2 * self.cfg.dim)  # the cell's gates now see [x; e; h]
            w[self.cfg.dim: 2 * self.cfg.dim].zero_()  # like the cell's own update gate: not forgetful at first

    def _context(self, emb: torch.Tensor) -> torch.Tensor | None:
        """The embedding's term in the decoder's input projection (N, 3 dim), or None."""
        return None if self.dec_context is None else self.dec_context(emb)

    def encode(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """tokens (N, T) incl. EOS, sorted by length desc -> embeddings (N, dim)."""
        n, steps = tokens.shape
        h = self.embed.weight.new_zeros(n, self.cfg.dim)
        finished = []  # final states of rows that ended, last rows first
        counts = active_counts(lengths, steps) + [0]
        # without gradients (inference), look each symbol's input projection up
        table = None if torch.is_grad_enabled() else self.enc_cell.input_table(self.embed.weight)
        for t in range(steps):
            a, nxt = counts[t], counts[t + 1]
            if table is not None:
                h = self.enc_cell(None, h, gi=table[tokens[:a, t]])
            else:
                # embed per step: slicing a full (N, T, char_dim) embedding would make its
                # backward allocate and zero that whole tensor at every step
                h = self.enc_cell(self.embed(tokens[:a, t]), h)  # (a, dim)
            # split (not slice): its backward allocates only the small finished part
            h, done = h.split([nxt, a - nxt])
            if a > nxt:
                finished.append(done)
            if nxt == 0:
                break
        final = torch.cat(finished[::-1]) if finished else h
        return self.enc_out(final)

    def loss(self, emb: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor,
             p_truth: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """Cross-entropy per string (N,): its mean per character (paper: each string weighs
        1) or, with `loss = "sum"`, its sum, the string's negative log-likelihood in nats.
        Why the sum: with the mean, a 12-character street weighs as much as one character
        does, so encoding it in the latent costs more KL than it saves, and a street outside
        the vocabulary came back as another (docs/benchmarks.md).

        Scheduled sampling: the next input is the ground-truth symbol with probability
        `p_truth`, else a symbol drawn from the decoder's own softmax.
        """
        n, steps = tokens.shape
        if n == 0:
            return emb.new_zeros(0)
        h = self.dec_init(emb)  # (N, dim)
        context = self._context(emb)
        logits = []
        counts = active_counts(lengths, steps) + [0]
        prev = tokens[:0, 0]  # the previous step's input symbols (none before step 0)
        for t in range(steps):
            a, nxt = counts[t], counts[t + 1]
            if a == 0:
                break
            if t > 0:
                gi = self.dec_cell.project_input(self.embed(prev))
                h = self.dec_cell(None, h, gi=gi if context is None else gi + context[:a])  # (a, dim)
            step_logits = self.dec_out(h)  # (a, VOCAB)
            logits.append(step_logits)
            prev = tokens[:nxt, t]
            if p_truth < 1.0 and nxt:
                drawn = torch.multinomial(F.softmax(step_logits[:nxt].detach(), -1), 1, generator=generator)[:, 0]
                keep = torch.rand(nxt, device=emb.device, generator=generator) < p_truth
                prev = torch.where(keep, prev, drawn)
            h = h.split([nxt, a - nxt])[0]
        # targets and row ids of the steps, in the same (t-major, prefix) order as `logits`
        rows = torch.cat([torch.arange(c, device=emb.device) for c in counts[: len(logits)]])
        steps_idx = torch.cat([torch.full((c,), t, device=emb.device) for t, c in enumerate(counts[: len(logits)])])
        ce = F.cross_entropy(torch.cat(logits), tokens[rows, steps_idx], reduction="none")
        per_string = ce.new_zeros(n).index_add(0, rows, ce)  # in the loss dtype (fp32 under autocast)
        return per_string if self.cfg.loss == "sum" else per_string / lengths.to(per_string.dtype)

    @torch.no_grad()
    def generate(self, emb: torch.Tensor, max_len: torch.Tensor, temperature: float = 1.0,
                 greedy: bool = False, generator=None) -> list[bytes]:
        """Decode embeddings (N, dim) to byte strings; row i stops at EOS or max_len[i] bytes.

        Rows leave the batch when they finish, so each step runs the GRU on the rows still
        going only; a `RowRNG` generator follows its rows out (synth.nn.draws). Symbols
        stay where they were drawn until the end: one copy to the host, not one per step.
        """
        n = emb.shape[0]
        steps = int(max_len.max().item()) if n else 0
        h = self.dec_init(emb)
        context = self._context(emb)
        alive = torch.arange(n, device=emb.device)
        limit = max_len.to(emb.device)
        rows, syms = [], []
        table = self.dec_cell.input_table(self.embed.weight)  # (VOCAB, 3 dim): no per-step input product
        for t in range(steps + 1):
            if alive.numel() == 0:
                break
            sym = softmax_draw(self.dec_out(h), temperature, greedy, generator)
            go_on = (sym != EOS) & (limit > t)
            alive, sym, h, limit = alive[go_on], sym[go_on], h[go_on], limit[go_on]
            generator = narrow(generator, go_on)
            if alive.numel() == 0:
                break
            rows.append(alive)
            syms.append(sym)
            if context is not None:
                context = context[go_on]
            h = self.dec_cell(None, h, gi=table[sym] if context is None else table[sym] + context)
        return _strings(n, rows, syms)


def _strings(n: int, rows: list[torch.Tensor], syms: list[torch.Tensor]) -> list[bytes]:
    """Byte strings from the rows alive at each step and their symbols (a row's bytes are
    written at steps 0..len-1, so its length is how often it appears)."""
    if not rows:
        return [b""] * n
    row = torch.cat(rows).cpu().numpy()
    step = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
    out = np.zeros((n, len(rows)), dtype=np.uint8)
    out[row, step] = torch.cat(syms).cpu().numpy()
    lengths = np.bincount(row, minlength=n)
    return [out[i, :k].tobytes() for i, k in enumerate(lengths.tolist())]
