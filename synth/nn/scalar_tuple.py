"""ScalarTuple (appendix B.2): the float fields of a message, modelled jointly.

PCA whitening with a moving mean and covariance (decay 0.999, eps 1e-5) handles
strongly correlated fields (lat/lon) where batch norm would overestimate the
variances. The statistics live in float64 buffers: coordinates need more than
float32's 7 digits to survive whitening and un-whitening. Also used with k=1 as the
scalar leaf for integers modelled as numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from synth.nn import rowwise
from synth.nn.calibration import gaussian_temperature, tail_temperature
from synth.nn.draws import normal, uniform
from synth.nn.init import linear


WHITE_CAP = 1e4  # whitened values are clamped to +-1e4 standard deviations


@dataclass(frozen=True)
class ScalarTupleConfig:
    dim: int = 128
    decay: float = 0.999  # moving-average decay of the whitening statistics
    eps: float = 1e-5  # added to the covariance before the eigendecomposition
    # "mse": the paper's point prediction (squared error; decoding is deterministic).
    # "gaussian": the decoder also predicts a full covariance (Cholesky factor) in whitened
    # space; the loss is the Gaussian NLL and generation samples from it, so the spread of
    # generated values given the latent and the preceding fields is learned, not zero.
    likelihood: str = "mse"
    # With an anchor and the gaussian likelihood: a share of rows (learnt) drawn from their
    # anchor class itself, N(0, I) in anchored units, beside the head's own Gaussian. The
    # head's residuals are heavy-tailed (docs/benchmarks.md, item 17): the latent places most
    # rows within their town, and some not at all. An experiment; off by default.
    tail: bool = False


class ScalarTuple(nn.Module):
    def __init__(self, k: int, cfg: ScalarTupleConfig = ScalarTupleConfig(),
                 mean: list[float] | None = None, cov: list[list[float]] | None = None,
                 grid: list[float] | None = None, quantiles: list[list[float]] | None = None,
                 anchor: tuple[list, list] | None = None):
        super().__init__()
        self.k, self.cfg = k, cfg
        # Initialised from the training data (FitStats) when known: the paper starts
        # from scratch, which costs thousands of steps of moving-average warm-up.
        m = torch.tensor(mean, dtype=torch.float64) if mean is not None else torch.zeros(k, dtype=torch.float64)
        c = torch.tensor(cov, dtype=torch.float64) if cov is not None else torch.eye(k, dtype=torch.float64)
        # The number transform (normal scores): each member goes through its training
        # quantile function, then the inverse normal CDF, before whitening. Why: a Gaussian
        # on raw values fits skewed and heavy-tailed numbers badly (flights' delays: most
        # within minutes of 0, some hours late); on normal scores every marginal is N(0, 1)
        # and the Gaussian head models how the members depend on each other and on the
        # latent. Rebuilt from FitStats, so not part of the weights.
        self.transformed = quantiles is not None
        if self.transformed:
            knots = torch.tensor(quantiles, dtype=torch.float64).reshape(k, -1)
            # strictly increasing (ties would make the map a step): nudge repeated values apart
            span = (knots[:, -1] - knots[:, 0]).clamp_min(1e-12).unsqueeze(1)
            knots = torch.cummax(knots + 1e-9 * span * torch.arange(knots.shape[1]) / knots.shape[1], 1).values
            self.register_buffer("knots", knots, persistent=False)
            self.register_buffer("probs", torch.linspace(0.0, 1.0, knots.shape[1], dtype=torch.float64),
                                 persistent=False)
            # The raw values' moments stay known (input bounds, synth/service/bounds.py)
            self.register_buffer("raw_mean", m.reshape(k).clone(), persistent=False)
            self.register_buffer("raw_cov", c.reshape(k, k).clone(), persistent=False)
            # Each score has mean 0 and variance 1; their correlations are not those of the raw
            # values (a monotone map changes them), so the moving statistics learn them
            m, c = torch.zeros(k, dtype=torch.float64), torch.eye(k, dtype=torch.float64)
        self.register_buffer("mean", m.reshape(k))
        self.register_buffer("cov", c.reshape(k, k))
        # The members' grid steps (synth.value_grid; 0 = none). Rebuilt from the artifact's
        # FitStats, so not part of the weights.
        g = torch.tensor(grid if grid is not None else [0.0] * k, dtype=torch.float64)
        self.register_buffer("grid", g.reshape(k), persistent=False)
        self.has_grid = bool((g > 0).any())
        # True while data-parallel training updates the statistics from the global batch
        # (synth/train/distributed.py) instead of each rank from its own share
        self.stats_from_outside = False
        # The anchor (synth.anchor_stats): per class of a label drawn before these floats,
        # the mean (C, k) and Cholesky factor (C, k, k) of the floats' scores, so that the
        # head models the floats relative to their class. `anchor`: the raw means and
        # covariances per class (the compiler's order, the escape last). Rebuilt from
        # FitStats, so not part of the weights.
        self.anchored = anchor is not None
        if self.anchored:
            a_mean, a_chol = self._score_moments(torch.tensor(anchor[0], dtype=torch.float64).reshape(-1, k),
                                                 torch.tensor(anchor[1], dtype=torch.float64).reshape(-1, k, k))
            self.register_buffer("anchor_mean", a_mean, persistent=False)
            self.register_buffer("anchor_chol", a_chol, persistent=False)
        self.enc = linear(k, cfg.dim)
        self.dec = linear(cfg.dim, k)
        if cfg.likelihood == "gaussian":
            self.scale = linear(cfg.dim, k * (k + 1) // 2)  # Cholesky factor: diagonal, then below
            nn.init.zeros_(self.scale.weight)
            with torch.no_grad():  # softplus(0.5413) = 1: unit spread in whitened space at first
                self.scale.bias[:k].fill_(0.5413)
        elif cfg.likelihood != "mse":
            raise ValueError(f"likelihood must be 'mse' or 'gaussian', not {cfg.likelihood!r}")
        self.has_tail = self.anchored and cfg.tail and cfg.likelihood == "gaussian"
        if self.has_tail:
            self.tail_logit = nn.Parameter(torch.tensor(-2.0))  # the share of class draws, sigmoid: 0.12 at first

    def _score_moments(self, mean: torch.Tensor, cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw means (C, k) and covariances (C, k, k) -> the mean and Cholesky factor of the
        scores (`to_scores`), by the unscented transform: the 2k points at +-sqrt(k) along
        the factor's columns go through the number transform, which is not linear."""
        k = self.k
        eye = torch.eye(k, dtype=torch.float64)
        chol = torch.linalg.cholesky(cov + 1e-12 * (cov.diagonal(dim1=1, dim2=2).amax(1)[:, None, None] + 1e-30) * eye)
        if self.transformed:
            spread = (k ** 0.5) * chol.transpose(1, 2)  # (C, k points, k)
            points = torch.cat([mean[:, None] + spread, mean[:, None] - spread], 1)  # (C, 2k, k)
            scores = self.to_scores(points.reshape(-1, k)).reshape(points.shape)
            mean = scores.mean(1)
            dev = scores - mean[:, None]
            cov = dev.transpose(1, 2) @ dev / (2 * k)
            # a class beyond the training range maps to the ends' scores: no spread left
            cov = cov + 1e-6 * eye
            chol = torch.linalg.cholesky(cov)
        return mean, chol

    def anchored_target(self, x: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        """Raw values (n, k) -> the head's target under the anchor: their scores standardised
        by their class's (n,) mean and factor (float32, clamped like `whiten`)."""
        resid = (self.to_scores(x) - self.anchor_mean[cls]).unsqueeze(-1)
        w = torch.linalg.solve_triangular(self.anchor_chol[cls], resid, upper=False)[..., 0]
        return w.clamp(-WHITE_CAP, WHITE_CAP).to(torch.float32)

    def target(self, x: torch.Tensor, cls: torch.Tensor | None) -> torch.Tensor:
        """The head's target for raw values (n, k): anchored when a class is given, else whitened."""
        return self.whiten(x) if cls is None else self.anchored_target(x, cls)

    def unanchor(self, w: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        """Values in their class's units (n, k) -> scores (n, k) float64: the class's factor
        times w plus its mean (the inverse of `anchored_target`, before the number transform)."""
        return (self.anchor_chol[cls] @ w.to(torch.float64).unsqueeze(-1))[..., 0] + self.anchor_mean[cls]

    def anchor_logdet(self, cls: torch.Tensor) -> torch.Tensor:
        """log |det| of each row's class factor (n,): the loss in anchored units plus this is
        the NLL of the scores, comparable across classes (conditions score latents by it)."""
        return torch.log(torch.diagonal(self.anchor_chol[cls], dim1=1, dim2=2)).sum(1).float()

    def _basis(self) -> tuple[torch.Tensor, torch.Tensor]:
        eye = torch.eye(self.k, dtype=torch.float64, device=self.cov.device)
        d, u = torch.linalg.eigh(self.cov + self.cfg.eps * eye)
        return u, d.clamp_min(self.cfg.eps).sqrt()

    def raw_moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (k,) and covariance (k, k) of the raw values: the training data's under the
        number transform (the whitening statistics are the scores' then), else the moving ones."""
        return (self.raw_mean, self.raw_cov) if self.transformed else (self.mean, self.cov)

    def to_scores(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """Raw values (n, k) -> what is whitened: normal scores under the number transform
        (values beyond the training range map to the ends), else the values, float64.
        `members`: the columns of x are these members only (n, len(members))."""
        x = x.to(torch.float64)
        if not self.transformed:
            return x
        knots = self.knots if members is None else self.knots[members]
        p = _interp(x, knots, self.probs.expand_as(knots))
        lo = 1e-4  # the ends' scores stay finite (+-3.72); the outer segments keep their spread
        return rowwise.pointwise(torch.special.ndtri, p.clamp(lo, 1.0 - lo))

    def from_scores(self, z: torch.Tensor) -> torch.Tensor:
        """The inverse of `to_scores` (generated values stay within the training range)."""
        if not self.transformed:
            return z
        p = rowwise.pointwise(torch.special.ndtr, z.to(torch.float64))
        return _interp(p, self.probs.expand_as(self.knots), self.knots)

    @torch.no_grad()
    def update_stats(self, x: torch.Tensor) -> None:
        """One moving-average step on a batch (n, k) of raw values (training only)."""
        if x.shape[0] < 2 or self.stats_from_outside:
            return
        x = self.to_scores(x)
        self.apply_stats(x.mean(0), torch.cov(x.T).reshape(self.k, self.k))

    @torch.no_grad()
    def apply_stats(self, mean: torch.Tensor, cov: torch.Tensor) -> None:
        """One moving-average step from a batch's mean (k,) and sample covariance (k, k)."""
        a = self.cfg.decay
        self.mean.mul_(a).add_((1 - a) * mean)
        self.cov.mul_(a).add_((1 - a) * cov)

    def dequantize(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """x + u q on the members with a grid step q, u ~ U(-1/2, 1/2) (n, k) (training
        targets): the likelihood of a cell's mass, which cannot grow without bound
        (synth.value_grid)."""
        return x.to(torch.float64) + u.to(device=x.device, dtype=torch.float64) * self.grid

    def snap(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Generated raw values (n, k) put back on their members' grids; `keep`: member
        indices left as they are (values a condition fixed)."""
        if not self.has_grid:
            return x
        q = self.grid.clone()
        if keep is not None:
            q[keep.to(q.device)] = 0.0
        safe = torch.where(q > 0, q, torch.ones_like(q))
        return torch.where(q > 0, torch.round(x / safe) * safe, x)

    def whiten(self, x: torch.Tensor) -> torch.Tensor:
        u, s = self._basis()
        w = rowwise.matmul(self.to_scores(x) - self.mean, u) / s
        # values far outside the training range (or beyond float32) must not poison the network
        return w.clamp(-WHITE_CAP, WHITE_CAP).to(torch.float32)  # (n, k)

    def unwhiten(self, w: torch.Tensor) -> torch.Tensor:
        u, s = self._basis()
        return self.from_scores(rowwise.matmul(w.to(torch.float64) * s, u.T) + self.mean)  # (n, k) float64

    def encode(self, xw: torch.Tensor) -> torch.Tensor:
        return rowwise.pointwise(torch.sigmoid, self.enc(xw))  # (n, dim)

    def cholesky(self, emb: torch.Tensor) -> torch.Tensor:
        """Lower-triangular factor (n, k, k) of the predicted covariance (gaussian likelihood)."""
        k = self.k
        raw = self.scale(emb)  # (n, k(k+1)/2)
        chol = emb.new_zeros(emb.shape[0], k, k)
        idx = torch.arange(k)
        chol[:, idx, idx] = rowwise.pointwise(nn.functional.softplus, raw[:, :k]) + 1e-3
        if k > 1:
            rows, cols = torch.tril_indices(k, k, offset=-1)
            chol[:, rows, cols] = raw[:, k:]
        return chol

    def loss(self, emb: torch.Tensor, xw: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """NLL per row (n,); `temperature`: the Gaussian's variance multiplier (a leaf temperature)."""
        if self.cfg.likelihood == "mse":
            # Summed, not averaged, squared error: all k fields together weigh 1 (B.2).
            return ((self.dec(emb) - xw) ** 2).sum(1)  # (n,)
        # The triangular solve and log-det need fp32 (and have no bf16 kernel): the head runs
        # outside autocast when training in bf16
        with torch.autocast(emb.device.type, enabled=False):
            white, chol = self._standardised(emb, xw)
            logdet = torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)
            nll = self._tempered(0.5 * (white**2).sum(1), logdet, temperature)  # constant dropped
            if not self.has_tail:
                return nll
            return self._mixture_nll(nll, xw)

    def _mixture_nll(self, head_nll: torch.Tensor, xw: torch.Tensor) -> torch.Tensor:
        """-log((1 - pi) N_head + pi N(0, I)) per row, given the head's NLL."""
        class_nll = 0.5 * (xw.float() ** 2).sum(1)
        both = torch.stack([nn.functional.logsigmoid(-self.tail_logit) - head_nll,
                            nn.functional.logsigmoid(self.tail_logit) - class_nll], 1)
        return -torch.logsumexp(both, 1)

    def _standardised(self, emb: torch.Tensor, xw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The residuals of whitened targets (n, k) under the Gaussian head, standardised
        by its Cholesky factor (n, k), and that factor (n, k, k); fp32."""
        emb = emb.float()
        chol = self.cholesky(emb)
        resid = (xw.float() - self.dec(emb)).unsqueeze(-1)  # (n, k, 1)
        return torch.linalg.solve_triangular(chol, resid, upper=False)[..., 0], chol

    @torch.no_grad()
    def calibrated_temperature(self, emb: torch.Tensor, xw: torch.Tensor) -> float:
        """The variance multiplier (>= 1, the temperature of `decode`) that fits held-out
        embeddings and whitened targets best (synth.nn.calibration); 1 for the MSE head,
        which has no spread to scale."""
        if self.cfg.likelihood != "gaussian":
            return 1.0
        white, chol = self._standardised(emb, xw)
        if not self.has_tail:
            return gaussian_temperature(white)
        # the head's variance multiplier under the mixture: the class component keeps its own
        logdet = torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)
        half_r2 = 0.5 * (white.double() ** 2).sum(1).float()
        return tail_temperature(lambda t: float(self._mixture_nll(self._tempered(half_r2, logdet, t), xw).mean()))

    def _tempered(self, half_r2: torch.Tensor, logdet: torch.Tensor, t: float) -> torch.Tensor:
        """The head's Gaussian NLL with its covariance multiplied by t (1: as trained), from half
        the squared standardised residual and the log-determinant of its Cholesky factor."""
        return half_r2 / t + logdet + 0.5 * self.k * math.log(t)

    def value_distribution(self, emb: torch.Tensor, cls: torch.Tensor | None = None
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder's Gaussian over raw values (over their normal scores under the number
        transform): mean (n, k) and covariance (n, k, k), float64.

        In whitened space it is N(dec(e), L L^T) (gaussian likelihood) or N(dec(e), I) (the
        MSE loss is that Gaussian's NLL); un-whitening x = A w + mean, A = U diag(s), maps it.
        Under the anchor, A and the mean are the row's class factor and mean."""
        if cls is not None:
            a = self.anchor_chol[cls]  # (n, k, k)
            mean = self.unanchor(self.dec(emb), cls)
        else:
            u, s = self._basis()
            a = u * s  # (k, k): columns scaled
            mean = self.dec(emb).to(torch.float64) @ a.T + self.mean
        if self.cfg.likelihood == "gaussian":
            la = a @ self.cholesky(emb).to(torch.float64)  # (n, k, k)
            return mean, la @ la.transpose(1, 2)
        return mean, (a @ a.transpose(-1, -2)).expand(emb.shape[0], -1, -1)

    def marginal_nll(self, emb: torch.Tensor, fixed: torch.Tensor, values: torch.Tensor,
                     cls: torch.Tensor | None = None) -> torch.Tensor:
        """-log p(x[fixed] = values | e) per row (n,), constant dropped: a condition on some
        members of the tuple (`where lat=...`) scores latents by this."""
        mean, cov = self.value_distribution(emb, cls)
        cff = cov[:, fixed][:, :, fixed] + 1e-9 * torch.eye(len(fixed), dtype=cov.dtype, device=cov.device)
        chol = torch.linalg.cholesky(cff)
        resid = (self.to_scores(values, fixed) - mean[:, fixed]).unsqueeze(-1)
        white = torch.linalg.solve_triangular(chol, resid, upper=False)[..., 0]
        logdet = torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)
        return (0.5 * (white**2).sum(1) + logdet).float()

    @torch.no_grad()
    def decode_given(self, emb: torch.Tensor, fixed: torch.Tensor, values: torch.Tensor, temperature: float = 1.0,
                     greedy: bool = False, generator=None, cls: torch.Tensor | None = None) -> torch.Tensor:
        """Raw values (n, k) float64 with x[fixed] = values and the other members drawn from
        the decoder's Gaussian conditioned on them (their conditional mean when greedy)."""
        mean, cov = self.value_distribution(emb, cls)
        free = torch.tensor([i for i in range(self.k) if i not in set(fixed.tolist())], dtype=torch.long)
        out = mean.clone()
        out[:, fixed] = scores = self.to_scores(values, fixed)
        if len(free):
            eye = torch.eye(len(fixed), dtype=cov.dtype, device=cov.device)
            cff = cov[:, fixed][:, :, fixed] + 1e-9 * eye
            crf = cov[:, free][:, :, fixed]  # (n, r, f)
            gain = torch.linalg.solve(cff, crf.transpose(1, 2)).transpose(1, 2)  # Crf Cff^-1
            resid = (scores - mean[:, fixed]).unsqueeze(-1)
            out[:, free] = mean[:, free] + (gain @ resid)[..., 0]
            if self.cfg.likelihood == "gaussian" and not greedy and emb.shape[0]:  # "mse" has no spread
                crr = cov[:, free][:, :, free] - gain @ crf.transpose(1, 2)
                crr = 0.5 * (crr + crr.transpose(1, 2))  # symmetric despite rounding
                jitter = 1e-9 * crr.diagonal(dim1=1, dim2=2).amax(1).clamp_min(1e-30)[:, None, None]
                chol = torch.linalg.cholesky(crr + jitter * torch.eye(len(free), dtype=cov.dtype, device=cov.device))
                eps = normal(generator, emb.shape[0], emb.device, len(free)).to(torch.float64)
                out[:, free] += (chol @ eps.unsqueeze(-1))[..., 0] * temperature**0.5
        out = self.from_scores(out)
        out[:, fixed] = values.to(torch.float64)  # exactly as given, not through the scores and back
        return out

    @torch.no_grad()
    def decode(self, emb: torch.Tensor, temperature: float = 1.0, greedy: bool = False,
               generator=None, cls: torch.Tensor | None = None) -> torch.Tensor:
        """Raw values (n, k) float64: the prediction, or a draw from it (gaussian likelihood);
        `cls`: each row's anchor class, when the floats are anchored."""
        w = self.dec(emb)
        if self.cfg.likelihood == "gaussian" and not greedy and w.shape[0]:
            eps = normal(generator, w.shape[0], w.device, w.shape[1]) * temperature**0.5
            w = w + (self.cholesky(emb) @ eps.unsqueeze(-1))[..., 0]
            if self.has_tail:  # every row draws both, so a row's draws do not depend on its batch
                broad = normal(generator, w.shape[0], w.device, w.shape[1])
                pick = uniform(generator, w.shape[0], w.device, 1) < torch.sigmoid(self.tail_logit)
                w = torch.where(pick, broad, w)
        return self.unwhiten(w) if cls is None else self.from_scores(self.unanchor(w, cls))


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation per column: x (n, k), knots xp and values fp (k, m),
    xp increasing; beyond the ends, the ends' values."""
    xp, fp = xp.contiguous(), fp.contiguous()
    idx = torch.searchsorted(xp, x.T.contiguous()).clamp(1, xp.shape[1] - 1)  # (k, n)
    x0, x1 = xp.gather(1, idx - 1), xp.gather(1, idx)
    f0, f1 = fp.gather(1, idx - 1), fp.gather(1, idx)
    t = ((x.T - x0) / (x1 - x0)).clamp(0.0, 1.0)
    return (f0 + t * (f1 - f0)).T
