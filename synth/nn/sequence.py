"""Sequence: `repeated T`, an RNN over the element embeddings with a learned stop.

Encoder: one shared GRU cell over the elements (from a trainable initial state, so an
empty list has an embedding too), then FC. Decoder: like the Tuple decoder but with
one shared cell; at each step a stop logit decides whether another element follows
(Bernoulli, trained with BCE), and the emitted embedding is fed back (scheduled
sampling as in Tuple). Instances are sorted by length so each step runs on a prefix.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from synth.nn import rowwise
from synth.nn.draws import narrow, uniform
from synth.nn.gru import CeluGRUCell, GRUConfig
from synth.nn.init import celu_linear
from synth.nn.tuple import mix


def _padded(elements: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Instance-major flat elements (total, d) -> sorted padded (n, L, d), order, flat index (n, L)."""
    n = lengths.shape[0]
    steps = int(lengths.max().item()) if n else 0
    order = torch.argsort(lengths, descending=True, stable=True)
    starts = torch.cumsum(lengths, 0) - lengths
    pos = torch.arange(steps, device=lengths.device)
    index = starts[order].unsqueeze(1) + pos.unsqueeze(0)  # (n, L) into the flat list
    valid = pos.unsqueeze(0) < lengths[order].unsqueeze(1)
    index = torch.where(valid, index, torch.zeros_like(index))
    padded = elements[index] if elements.shape[0] else elements.new_zeros(n, steps, elements.shape[-1])
    return padded, order, torch.where(valid, index, -torch.ones_like(index))


class Sequence(nn.Module):
    def __init__(self, dim: int = 128, gru: GRUConfig = GRUConfig()):
        super().__init__()
        self.dim = dim
        self.h0 = nn.Parameter(torch.zeros(dim))
        self.enc_cell = CeluGRUCell(dim, dim, gru)
        self.enc_out = celu_linear(dim, dim, gru.alpha)
        self.dec_init = celu_linear(dim, dim, gru.alpha)
        self.dec_cell = CeluGRUCell(dim, dim, gru)
        self.emit = celu_linear(dim, dim, gru.alpha)
        self.stop = rowwise.Linear(dim, 1)
        nn.init.zeros_(self.stop.weight)
        nn.init.zeros_(self.stop.bias)

    def encode(self, elements: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """elements (total, dim) instance-major, lengths (n,) -> (n, dim)."""
        padded, order, _ = _padded(elements, lengths)
        sorted_len = lengths[order]
        h = self.h0.expand(lengths.shape[0], -1)
        for t in range(padded.shape[1]):
            a = int((sorted_len > t).sum())
            h = torch.cat([self.enc_cell(padded[:a, t], h[:a]), h[a:]])
        out = torch.empty_like(h)
        out[order] = h
        return self.enc_out(out)

    def decode_train(self, emb: torch.Tensor, truth: torch.Tensor, lengths: torch.Tensor,
                     p_truth: float, generator: torch.Generator | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> emitted element embeddings (total, dim) instance-major, stop loss (n,)."""
        padded, order, index = _padded(truth, lengths)
        sorted_len = lengths[order]
        h = self.dec_init(emb[order])
        x = torch.zeros_like(h)
        emitted = truth.new_zeros(truth.shape)
        stop_loss = emb.new_zeros(lengths.shape[0])
        for t in range(padded.shape[1] + 1):
            a = int((sorted_len >= t).sum())  # rows that still decide at step t
            h = torch.cat([self.dec_cell(x[:a], h[:a]), h[a:]])
            target = (sorted_len[:a] == t).float()
            bce = F.binary_cross_entropy_with_logits(self.stop(h[:a])[:, 0], target, reduction="none")
            stop_loss = stop_loss + F.pad(bce, (0, stop_loss.shape[0] - a))
            b = int((sorted_len > t).sum())  # rows that emit element t
            if b == 0:
                break
            e = self.emit(h[:b])
            emitted = emitted.index_copy(0, index[:b, t], e.to(emitted.dtype))  # (dtypes differ under autocast)
            x = torch.cat([mix(e, padded[:b, t], p_truth, generator), x[b:]])
        out = torch.empty_like(stop_loss)
        out[order] = stop_loss
        return emitted, out

    @torch.no_grad()
    def decode_sample(self, emb: torch.Tensor, max_len: int, temperature: float = 1.0,
                      greedy: bool = False, generator=None, min_len: int = 0
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> emitted element embeddings (total, dim) instance-major, lengths (n,) in
        [min_len, max_len].

        Stop draws are made for the rows still going only, so a row's draws do not
        depend on how long its batch neighbours run (synth.nn.draws). Before min_len
        elements no stop is drawn at all.
        """
        n = emb.shape[0]
        h = self.dec_init(emb)
        x = torch.zeros_like(h)
        lengths = torch.zeros(n, dtype=torch.long, device=emb.device)
        alive = torch.ones(n, dtype=torch.bool, device=emb.device)
        steps = []
        for t in range(max_len + 1):
            h = self.dec_cell(x, h)
            logit = self.stop(h)[:, 0]
            if t < min_len:
                stop = torch.zeros_like(alive)
            elif greedy:
                stop = logit > 0
            else:
                p = rowwise.pointwise(torch.sigmoid, logit[alive] / max(temperature, 1e-6))
                stop = torch.zeros_like(alive)
                stop[alive] = uniform(narrow(generator, alive), p.shape[0], emb.device) < p
            alive = alive & ~stop if t < max_len else torch.zeros_like(alive)
            if not bool(alive.any()):
                break
            x = self.emit(h)
            steps.append((x, alive.clone()))
            lengths += alive.long()
        if not steps:
            return emb.new_zeros(0, self.dim), lengths
        stacked = torch.stack([s[0] for s in steps], 1)  # (n, L, dim)
        mask = torch.stack([s[1] for s in steps], 1)  # (n, L)
        return stacked[mask], lengths
