"""The user-facing model: records in, records out (docs/architecture.md, `Model`).

    model = Model.create("address.proto", "Address", records=train)
    mu, sigma = model.encode(records)
    model.sample(10, seed=0)

Wires the layers in order: schema tree -> plan/modules (compiler) -> codec -> VAE.
Records may be messages of the schema or dicts in the proto3 JSON mapping; results
are messages of the user's class (`synth.records.to_dict` gives the JSON mapping).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from google.protobuf.message import Message

from synth.codec import Codec
from synth.compiler import compile_plan
from synth.model_config import ModelConfig
from synth.condition import parse_where
from synth.errors import InvalidArgument
from synth.latent_prior import fit_mixture, sample_mixture
from synth.nn import rowwise
from synth.nn.draws import RowStreams
from synth.fitstats import FitStats, fit_stats
from synth.plan import TupleNode
from synth.records import to_messages
from synth.closed_pairs import allowed_tables
from synth.refine import refine_latents
from synth.schema.loader import LoadedSchema, load_schema
from synth.schema.tree import build_tree
from synth.vae import DecodeOptions, RecordVAE

CHUNK = 1024  # records per forward pass in inference helpers, on the CPU
# On CUDA a forward pass of 16k rows costs little more than one of 1k (the per-step launches
# dominate), so inference takes bigger bites there
GPU_CHUNK = 16384
# Sample requests of at most this many records are generated with row-invariant kernels
# (synth/nn/rowwise.py) and per-request random streams, alone or merged with others
# (`sample_many`), so that a micro-batching server gives the same records either way.
EXACT_ROWS = 16


@dataclass
class LossReport:
    """Mean loss per record, and its breakdown by field and term (`street/recon`, `kl`, ...)."""

    total: float
    reconstruction: float
    skew: float
    kl: float
    beta: float
    terms: dict[str, float]

    def by_field(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for name, v in self.terms.items():
            path, _, kind = name.rpartition("/")
            out.setdefault(path or name, {})[kind or name] = v
        return out


class Model:
    def __init__(self, schema: LoadedSchema, config: ModelConfig = ModelConfig(),
                 stats: FitStats | None = None):
        self.schema, self.config = schema, config
        self.stats = stats or FitStats()
        self.tree = build_tree(schema.descriptor, config.schema_options())
        plan, modules = compile_plan(self.tree, config, self.stats)
        self.plan: TupleNode = plan
        self.codec = Codec(plan, schema.descriptor)
        self.vae = RecordVAE(plan, modules, config)
        self.vae.eval()
        self.metadata: dict[str, Any] = {}  # training config, summary, metrics: kept in the manifest
        # (config.closed_pairs, device, their tables): rebuilt when either changes
        self._closed: tuple[Any, Any, dict] | None = None

    @classmethod
    def create(cls, source: Any, message: str | None = None, records: Iterable[Any] | None = None,
               config: ModelConfig | None = None) -> "Model":
        """Compile `message` of `source` (.proto path/text, class or descriptor) into a fresh model.

        `records` (training data) fix the data-dependent choices: categorical ints,
        string and list length caps, the initial whitening statistics.
        """
        schema = load_schema(source, message)
        config = config or ModelConfig()
        stats = fit_stats(to_messages(list(records), schema.message_class)) \
            if records is not None else FitStats()
        return cls(schema, config, stats)

    # -- plumbing ---------------------------------------------------------------------
    @property
    def message_class(self) -> type[Message]:
        return self.schema.message_class

    @property
    def reencode(self) -> bool:
        return self.config.generation_feedback == "reencoded"

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def device(self) -> torch.device:
        return self.vae.device

    def to(self, device: str | torch.device) -> "Model":
        self.vae.to(device)
        return self

    def messages(self, records: Iterable[Any]) -> list[Message]:
        return to_messages(list(records), self.message_class)

    def batch(self, records: Iterable[Any]):
        return self.codec.encode(self.messages(records))

    def generator(self, seed: int | None) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, ()).item()))
        return g

    @property
    def chunk(self) -> int:
        """Records per forward pass of the inference helpers."""
        return GPU_CHUNK if self.device.type == "cuda" else CHUNK

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.vae.parameters())

    # -- the API ----------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, records: Sequence[Any], refine_steps: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (mu, sigma), each (n, latent_dim), on CPU. sigma is the first level's.

        mu is the encoder's mean refined by `refine_steps` gradient steps on each record's
        reconstruction loss (default: the config's `encode_refine_steps`; 0: the encoder's
        mean itself, what the prior is fitted to; synth/refine.py).
        """
        steps = self.config.encode_refine_steps if refine_steps is None else refine_steps
        if steps < 0:
            raise InvalidArgument(f"refine_steps must be >= 0, got {steps}")
        msgs = self.messages(records)
        mus, sigmas = [], []
        self.vae.eval()
        for i in range(0, len(msgs), self.chunk):
            batch = self.codec.encode(msgs[i: i + self.chunk])
            mu, enc = self.vae.encode(batch)
            mu = refine_latents(self.vae, batch, mu, enc, steps, self.config.encode_refine_lr,
                                self.config.encode_refine_guard, self.config.leaf_temperatures)
            mus.append(mu.cpu())
            sigmas.append(self.vae.sigma(mu).cpu())
        if not mus:
            empty = torch.zeros(0, self.latent_dim)
            return empty, empty.clone()
        return torch.cat(mus), torch.cat(sigmas)

    @torch.inference_mode()
    def decode(self, z: Any, temperature: float | None = None, greedy: bool = False,
               seed: int | None = None, generator: torch.Generator | None = None,
               closed: bool = False) -> list[Message]:
        """Latents (n, latent_dim) -> records. Deterministic with greedy=True or a seed.
        `closed`: keep the labels to the closed pairs' combinations, as `sample` does."""
        z = self._latents(z)
        temperature = self.config.sample_temperature if temperature is None else temperature
        g = generator or self.generator(seed)
        self.vae.eval()
        out: list[Message] = []
        tables = self.closed_tables() if closed else None
        for i in range(0, z.shape[0], self.chunk):
            batch = self.vae.generate(z[i: i + self.chunk].to(self.device), temperature, greedy, g,
                                      reencode=self.reencode, leaf_temperatures=self.config.leaf_temperatures,
                                      closed=tables)
            out += self.codec.decode(batch)
        return out

    def _latents(self, z: Any) -> torch.Tensor:
        z = torch.as_tensor(np.asarray(z, dtype=np.float32) if not isinstance(z, torch.Tensor) else z)
        if z.dim() == 1:
            z = z.unsqueeze(0)
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise InvalidArgument(f"latents must have shape (n, {self.latent_dim}), got {tuple(z.shape)}",
                                  expected=self.latent_dim)
        if not torch.isfinite(z).all():
            raise InvalidArgument("latents contain NaN or infinity")
        return z.float()

    @torch.no_grad()
    def fit_latent_prior(self, records: Sequence[Any], components: int, max_records: int = 20000,
                         seed: int = 0) -> None:
        """Fit the mixture prior used for generation to the posteriors of `records`."""
        if components < 1:
            raise InvalidArgument(f"components must be >= 1, got {components}")
        g = torch.Generator().manual_seed(seed)
        msgs = self.messages(records)
        if len(msgs) > max_records:
            msgs = [msgs[i] for i in torch.randperm(len(msgs), generator=g)[:max_records].tolist()]
        mu, sigma = self.encode(msgs, refine_steps=0)
        self.vae.set_prior(fit_mixture(mu, sigma, components, generator=g))

    def closed_tables(self) -> dict[str, list[tuple[str, torch.Tensor]]]:
        """The closed pairs' tables (synth/closed_pairs.py), built once per setting."""
        pairs = self.config.closed_pairs
        if not pairs:
            return {}
        if self._closed is None or self._closed[0] is not pairs or self._closed[1] != self.device:
            self._closed = (pairs, self.device, allowed_tables(self.plan, pairs, self.device))
        return self._closed[2]

    @torch.no_grad()
    def sample_latents(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """z from the fitted mixture prior, else z ~ N(m, S), the moving mean/covariance of
        the training latents (paper section 2.4)."""
        if n < 0:
            raise InvalidArgument(f"n must be >= 0, got {n}")
        scale = self.config.latent_temperature
        mix = self.vae.prior()
        if mix is not None:
            return sample_mixture(mix.with_weights(mix.weights, scale), n, generator)
        mean, cov = self.vae.latent_distribution()
        eye = torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
        chol = torch.linalg.cholesky(cov + 1e-6 * eye)
        eps = torch.randn(n, cov.shape[0], generator=generator, device=self.device, dtype=cov.dtype) * scale
        return (mean + eps @ chol.T).float()

    def sample(self, n: int, seed: int | None = None, temperature: float | None = None, greedy: bool = False,
               where: dict[str, Any] | None = None, candidates: int = 16) -> list[Message]:
        """n fake records; the same seed gives the same records.

        where: {field path: value} conditions (see synth.condition); every record
        satisfies them exactly, and the other fields are drawn conditioned on them.
        """
        if not where and 0 <= n <= EXACT_ROWS:
            return self.sample_many([(n, seed)], temperature, greedy)[0]
        g = self.generator(seed)
        temperature = self.config.sample_temperature if temperature is None else temperature
        if not where:
            return self.decode(self.sample_latents(n, g), temperature, greedy, generator=g, closed=True)
        return self._sample_where(n, g, temperature, greedy, where, max(1, candidates))

    @torch.inference_mode()
    def sample_many(self, requests: Sequence[tuple[int, int | None]], temperature: float | None = None,
                    greedy: bool = False) -> list[list[Message]]:
        """Several small sample requests (n, seed) in one model call: request k gets exactly
        the records `sample(n_k, seed_k)` gives, whatever else is in the call.

        Each request draws its latents and every later random number from its own
        generator (synth.nn.draws.RowStreams), and the call runs with row-invariant
        kernels (synth.nn.rowwise), so no row depends on its neighbours. For requests of
        at most EXACT_ROWS records (synth/service/batcher.py merges those).
        """
        sizes = [int(n) for n, _ in requests]
        if any(n < 0 or n > EXACT_ROWS for n in sizes):
            raise InvalidArgument(f"sample_many takes requests of 0 to {EXACT_ROWS} records, got {sizes}")
        temperature = self.config.sample_temperature if temperature is None else temperature
        gens = [self.generator(seed) for _, seed in requests]
        out: list[list[Message]] = [[] for _ in requests]
        live = [k for k, n in enumerate(sizes) if n]
        if not live:
            return out
        z = torch.cat([self.sample_latents(sizes[k], gens[k]) for k in live]).to(self.device)
        streams = RowStreams([gens[k] for k in live], np.repeat(np.arange(len(live)), [sizes[k] for k in live]))
        if self.vae.training:  # (eval() walks every module: not on every small request)
            self.vae.eval()
        with rowwise.row_invariant():
            batch = self.vae.generate(z, temperature, greedy, None, reencode=self.reencode, streams=streams,
                                      leaf_temperatures=self.config.leaf_temperatures, closed=self.closed_tables())
        records = self.codec.decode(batch)
        start = 0
        for k in live:
            out[k] = records[start: start + sizes[k]]
            start += sizes[k]
        return out

    @torch.no_grad()
    def _sample_where(self, n: int, g: torch.Generator, temperature: float, greedy: bool,
                      where: dict[str, Any], candidates: int) -> list[Message]:
        cond = parse_where(where, self.plan, self.message_class)
        fixed = cond.fixed_nodes()
        partial = {p: (torch.tensor(i, dtype=torch.long), torch.tensor(v, dtype=torch.float64, device=self.device))
                   for p, (i, v) in cond.partial_nodes().items()}
        self.vae.eval()
        # The conditioning record: a generated (so valid) record with the fixed values written
        # in; the schema's defaults are not always values the model knows (categorical ints).
        anchor = self.decode(self.sample_latents(1, g), greedy=True, generator=g)[0]
        cond.apply(anchor)
        cond.message = anchor
        cond_batch = self.codec.encode([anchor])
        _, enc = self.vae.encode(cond_batch)
        embeddings = {p: enc[p] for p in fixed}  # (1, D) each
        values = {p: cond_batch.nodes[p].values for p in fixed}
        draw = self._conditioned_prior(cond, fixed, partial)
        out: list[Message] = []
        per_chunk = max(1, self.chunk // candidates)
        for start in range(0, n, per_chunk):
            k = min(per_chunk, n - start)
            z = draw(k * candidates, g)
            if fixed or partial:
                ll = self.vae.fixed_loglik(self.codec.encode([cond.message] * (k * candidates)),
                                           z.to(self.device), fixed, partial)
                pick = torch.multinomial(torch.softmax(ll.view(k, candidates).double(), 1), 1, generator=g)
                z = z.view(k, candidates, -1)[torch.arange(k), pick[:, 0].cpu()]
            else:
                z = z[:k]
            batch = self.vae.generate(z.to(self.device), temperature, greedy, g, embeddings,
                                      cond.forced_presence(), self.reencode, partial,
                                      leaf_temperatures=self.config.leaf_temperatures, fixed_values=values,
                                      closed=self.closed_tables())
            records = self.codec.decode(batch)
            for r in records:
                cond.apply(r)
            out += records
        return out

    def _conditioned_prior(self, cond, fixed: frozenset[str], partial: dict):
        """A latent sampler that already favours the condition, where the prior allows it.

        With a mixture prior, each component is reweighted by the decoder's likelihood of
        the fixed values at its mean (one pass over K components), so candidates come from
        the regions of latent space that produce them; the per-record resampling then
        refines within those. With the single-Gaussian prior, draws are unconditioned.
        """
        prior = self.vae.prior()
        if not (fixed or partial) or prior is None:
            return self.sample_latents
        means = prior.latent_means()
        ll = torch.cat([self.vae.fixed_loglik(self.codec.encode([cond.message] * len(chunk)), chunk, fixed, partial)
                        for chunk in means.split(self.chunk)])
        logw = torch.log(prior.weights.double()) + ll.double()
        mix = prior.with_weights(torch.softmax(logw, 0).float(), self.config.latent_temperature)
        return lambda n, g: sample_mixture(mix, n, g)

    def reconstruct(self, records: Sequence[Any], greedy: bool = True, seed: int | None = None,
                    refine_steps: int | None = None) -> list[Message]:
        """decode(encode(records).mu): greedy by default, so the result is deterministic."""
        mu, _ = self.encode(records, refine_steps=refine_steps)
        return self.decode(mu, greedy=greedy, seed=seed)

    def interpolate(self, a: Any, b: Any, steps: int = 8, method: str = "linear",
                    greedy: bool = True, seed: int | None = None,
                    refine_steps: int | None = None) -> tuple[list[Message], torch.Tensor]:
        """Records along the path between the latents of a and b (inclusive), and the latents."""
        if steps < 2:
            raise InvalidArgument(f"steps must be >= 2, got {steps}")
        mu, _ = self.encode([a, b], refine_steps=refine_steps)
        t = torch.linspace(0, 1, steps).unsqueeze(1)
        if method == "linear":
            z = (1 - t) * mu[0] + t * mu[1]
        elif method == "slerp":
            z = slerp(mu[0], mu[1], t)
        else:
            raise InvalidArgument(f"method must be 'linear' or 'slerp', not {method!r}")
        records = self.decode(z, greedy=greedy, seed=seed)
        # The path runs between the records the caller gave: its ends are those records
        # themselves, not their reconstructions (which may differ in a character or a digit).
        ends = self.messages([a, b])
        for i, end in ((0, ends[0]), (-1, ends[1])):
            records[i].CopyFrom(end)
        return records, z

    @torch.no_grad()
    def loss(self, records: Sequence[Any], beta: float = 1.0, p_truth_tuple: float = 1.0,
             p_truth_string: float = 1.0, sample_latent: bool = False,
             seed: int | None = 0) -> LossReport:
        """Mean VAE loss per record with its breakdown: recon and skew per field, and KL.

        By default the decoder is teacher-forced from mu, so the number is deterministic.
        """
        msgs = self.messages(records)
        if not msgs:
            raise InvalidArgument("loss needs at least one record")
        self.vae.eval()
        g = self.generator(seed)
        sums: dict[str, float] = {}
        for i in range(0, len(msgs), self.chunk):
            opts = DecodeOptions(p_truth_tuple, p_truth_string, sample_latent=sample_latent, generator=g)
            terms = self.vae(self.codec.encode(msgs[i: i + self.chunk]), opts).terms
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.sum())
        terms = {k: v / len(msgs) for k, v in sums.items()}
        return summarize(terms, beta)


def summarize(terms: dict[str, float], beta: float) -> LossReport:
    recon = sum(v for k, v in terms.items() if k != "kl" and not k.endswith("/skew"))
    skew = sum(v for k, v in terms.items() if k.endswith("/skew"))
    kl = terms.get("kl", 0.0)
    return LossReport(recon + skew + beta * kl, recon, skew, kl, beta, terms)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation; falls back to linear when a and b are (anti)parallel."""
    na, nb = a.norm(), b.norm()
    cos = torch.clamp((a @ b) / (na * nb + 1e-12), -1.0, 1.0)
    omega = torch.arccos(cos)
    if float(torch.sin(omega)) < 1e-6:
        return (1 - t) * a + t * b
    so = torch.sin(omega)
    return torch.sin((1 - t) * omega) / so * a + torch.sin(t * omega) / so * b
