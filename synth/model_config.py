"""ModelConfig: everything that shapes a model's module tree (paper, appendix B).

Its own module, torch-free, so that reading or validating a run.toml, a manifest or
a service job upload does not import the compiler (and with it torch). The
compiler, the VAE and the store all read it from here; `synth.compiler.ModelConfig`
remains as a re-export. Built from dicts (run.toml `[model]`, manifests) by
`synth.configs.from_dict`, which checks every field's type first. The fields are
described in docs/model.md; run.toml in docs/training.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from synth.errors import ConfigError, Violation

if TYPE_CHECKING:
    from synth.nn.gru import GRUConfig
    from synth.schema.tree import SchemaOptions

__all__ = ["ModelConfig", "PAPER", "LEGACY"]


@dataclass(frozen=True)
class ModelConfig:
    """Everything that shapes the module tree.

    The sizes and initialisations are the paper's (appendix B). The recipe defaults
    (`auto_categorical`, `categorical_escape`, `field_order`, `scalar_likelihood`,
    `generation_feedback`) are our automatic recipe, chosen from the data at compile
    time; `PAPER` lists the settings that give the paper's model instead. A manifest
    written before a setting existed reads it as `LEGACY` says, so old artifacts rebuild
    the model they were trained as.
    """

    latent_dim: int = 128  # every module's embedding size, and the latent size
    char_dim: int = 16
    celu_alpha: float = 3.0
    celu_cap: float = 6.0
    std_layers: int = 3
    std_bias_init: float = -5.0  # sigma starts at sigmoid(-5) ~ 0.0067
    n_levels: int = 1  # standard deviation networks (multiscale VAE uses n > 1)
    whitening_decay: float = 0.999
    whitening_eps: float = 1e-5
    latent_stats_decay: float = 0.999  # moving mean/cov of sampled latents, for generation
    share_strings: bool = True  # one StringLiteral for all string fields (paper)
    share_message_modules: bool = True  # one Tuple per message type (needed for recursion)
    max_recursion: int = 3  # occurrences of one message type on a path
    int_categorical_max: int = 16  # ints with at most this many distinct values are categorical
    # Strings with a closed vocabulary become categorical leaves: the values seen at least
    # `categorical_min_count` times (at most `categorical_max_classes` of them) cover
    # `categorical_min_coverage` of the training values (docs/model.md, "The default
    # recipe"). Open text (identifiers, most values seen once) stays a char-RNN.
    auto_categorical: bool = True
    categorical_min_count: int = 2
    categorical_min_coverage: float = 0.8
    categorical_max_classes: int = 10000
    # A categorical string or int leaf has one more class, "other", whose value is modelled
    # by the kind the field would have had (characters, a number): rare values train it,
    # and any valid value encodes, so encode, reconstruct and `where` accept unseen values.
    categorical_escape: bool = True
    # Categorical ints also learn from their values' places in the range (Fourier features,
    # synth/nn/categorical.py), so that neighbouring values share what is learnt: an arrival
    # time follows its departure time, a carrier's flight numbers lie in one range.
    numeric_categories: bool = True
    # The order in which a message's decoder generates its fields: "declared" (the proto's,
    # paper) or "auto" (categorical leaves by number of classes, then numbers, then text,
    # then nested and repeated fields), so that free text is conditioned on the fields it
    # depends on. Records are always written in the proto's field order.
    field_order: str = "auto"
    # Per-field choice, overriding the automatic one: {"path.or.Type.field": "categorical"|"number"};
    # integer fields take either, string fields "categorical" (a softmax over the training values)
    field_overrides: dict[str, str] = field(default_factory=dict)
    max_string_len: int = 256  # hard cap on generated string length (bytes)
    string_len_slack: float = 1.5  # generation stops at slack x the longest training value
    max_sequence_len: int = 64
    latent_prior_components: int = 0  # 0: generate from one Gaussian (paper); K: a K-component mixture
    # Generation defaults (used when a call gives none): the temperature of leaf draws
    # (characters, categories, Gaussian scalars) and the scale of the latent noise.
    sample_temperature: float = 1.0
    latent_temperature: float = 1.0
    # Per-module multipliers of sample_temperature ({module key: t >= 1}), fitted on the
    # validation split after training so that no head is surer than held-out rows allow
    # (synth/train/calibrate.py); {} = none. Module keys as `synth inspect` prints them.
    leaf_temperatures: dict[str, float] = field(default_factory=dict)
    # Closed label pairs ({"A path -> B path": [[class of A, class of B], ...]}): sampled
    # records draw B only among the classes seen with the A drawn before it in training;
    # found on the validation split after training (synth/closed_pairs.py); {} = none.
    closed_pairs: dict[str, list[list[int]]] = field(default_factory=dict)
    scalar_likelihood: str = "gaussian"  # "gaussian" (learned spread; see ScalarTuple) or "mse" (paper)
    # Numbers are modelled on their normal scores (each member through its training quantile
    # function and the inverse normal CDF; synth/nn/scalar_tuple.py), or on raw values ("none", paper)
    number_transform: str = "normal_scores"
    # A message's joint floats are modelled relative to the class of the label that explains
    # them best (its mean and spread per class, from the training data; synth/anchor_stats.py),
    # so that a drawn postcode brings coordinates from its own area. False: plain whitening (paper).
    scalar_anchor: bool = True
    # An experiment (docs/benchmarks.md, item 19): anchored floats drawn from their class itself
    # for a learnt share of rows, beside the head's Gaussian (synth/nn/scalar_tuple.py)
    scalar_tail: bool = False
    # What the Tuple decoder feeds back while generating: the embedding it emitted (paper),
    # or the encoder's embedding of the leaf value actually drawn ("reencoded").
    generation_feedback: str = "reencoded"
    # The character decoder sees its field's embedding at every step, not only in its first
    # state (synth/nn/string_literal.py), so that a string outside any vocabulary (a rare
    # street, through a categorical's escape) reconstructs from the latent. False: the paper's.
    string_context: bool = True
    # A string's reconstruction loss: "mean" per character (paper: every string weighs 1) or
    # "sum" (its negative log-likelihood), so the latent is worth spending on a string's
    # characters in proportion to how many there are (synth/nn/string_literal.py).
    string_loss: str = "sum"
    # `encode` refines the encoder's posterior mean by this many Adam steps (at this rate)
    # on the record's own reconstruction loss (synth/refine.py), so that rare and unseen
    # strings come back from their latents; 0: the encoder's mean alone (paper). A field
    # whose loss rises above its value at the mean costs `encode_refine_guard` times the
    # rise on top (0: plain likelihood); the tuner chooses steps and guard on the
    # validation split (synth/train/tune_encoding.py).
    encode_refine_steps: int = 50
    encode_refine_lr: float = 0.05
    encode_refine_guard: float = 10.0

    def __post_init__(self) -> None:
        problems = []
        if self.scalar_likelihood not in ("mse", "gaussian"):
            problems.append(Violation("scalar_likelihood", "must be 'mse' or 'gaussian'"))
        if self.number_transform not in ("none", "normal_scores"):
            problems.append(Violation("number_transform", "must be 'none' or 'normal_scores'"))
        if self.generation_feedback not in ("emitted", "reencoded"):
            problems.append(Violation("generation_feedback", "must be 'emitted' or 'reencoded'"))
        if not (self.sample_temperature > 0 and self.latent_temperature > 0):
            problems.append(Violation("sample_temperature", "temperatures must be > 0"))
        if any(not (0 < t < float("inf")) for t in self.leaf_temperatures.values()):
            problems.append(Violation("leaf_temperatures", "temperatures must be finite and > 0"))
        if self.string_loss not in ("mean", "sum"):
            problems.append(Violation("string_loss", "must be 'mean' or 'sum'"))
        if self.encode_refine_steps < 0:
            problems.append(Violation("encode_refine_steps", "must be >= 0"))
        if not 0 < self.encode_refine_lr < float("inf"):
            problems.append(Violation("encode_refine_lr", "must be finite and > 0"))
        if not 0 <= self.encode_refine_guard < float("inf"):
            problems.append(Violation("encode_refine_guard", "must be finite and >= 0"))
        if self.field_order not in ("declared", "auto"):
            problems.append(Violation("field_order", "must be 'declared' or 'auto'"))
        if self.categorical_max_classes < 2:
            problems.append(Violation("categorical_max_classes", "must be >= 2"))
        if self.categorical_min_count < 1:
            problems.append(Violation("categorical_min_count", "must be >= 1"))
        if not 0.0 < self.categorical_min_coverage <= 1.0:
            problems.append(Violation("categorical_min_coverage", "must be in (0, 1]"))
        if self.n_levels < 1 or self.latent_dim < 1:
            problems.append(Violation("n_levels", "n_levels and latent_dim must be >= 1"))
        if problems:
            raise ConfigError("invalid model config", problems)

    def schema_options(self) -> SchemaOptions:
        from synth.schema.tree import SchemaOptions

        return SchemaOptions(max_recursion=self.max_recursion)

    def gru(self) -> GRUConfig:
        from synth.nn.gru import GRUConfig

        return GRUConfig(alpha=self.celu_alpha, cap=self.celu_cap)


# The settings that give the paper's model (Chou & Hathi 2019, appendix B) rather than the
# automatic recipe: every string a character RNN, fields in declared order, a point
# estimate for floats, the emitted embedding fed back. bench/configs/paper*.toml use them.
PAPER: dict[str, object] = {
    "auto_categorical": False, "categorical_escape": False, "field_order": "declared",
    "scalar_likelihood": "mse", "generation_feedback": "emitted", "numeric_categories": False,
    "number_transform": "none", "string_context": False, "scalar_anchor": False,
    "string_loss": "mean", "encode_refine_steps": 0,
}

# What a manifest that predates a setting meant by its absence (artifact format 1 from
# protosynth 0.2.0 and earlier): the defaults of the time, which were the paper's. The
# refinement of `encode` is left out: it changes no weight, so an old artifact still
# rebuilds the model it was trained as, and gets today's encoding.
LEGACY: dict[str, object] = {k: v for k, v in PAPER.items() if k != "encode_refine_steps"}
