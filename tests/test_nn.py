"""nn modules: the GRU twin, the paper's initialisation (appendix B) and ScalarTuple whitening."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from synth.nn.categorical import Categorical
from synth.nn.gru import CeluGRUCell, GRUConfig
from synth.nn.oneof import Oneof
from synth.nn.presence import Presence
from synth.nn.scalar_tuple import ScalarTuple, ScalarTupleConfig
from synth.nn.sequence import Sequence
from synth.nn.stdnet import StdNet
from synth.nn.string_literal import EOS, VOCAB, StringLiteral, StringLiteralConfig
from synth.nn.tuple import Tuple


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# -- GRU cell ------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_in,hidden", [(3, 5), (16, 16), (8, 32)])
def test_gru_tanh_matches_torch_gru_cell(n_in, hidden):
    ref = nn.GRUCell(n_in, hidden)
    with torch.no_grad():  # non-zero biases, so every term of the formula is exercised
        ref.bias_ih.uniform_(-0.5, 0.5)
        ref.bias_hh.uniform_(-0.5, 0.5)
    ours = CeluGRUCell(n_in, hidden, GRUConfig(candidate="tanh"))
    assert ours.weight_ih.shape == ref.weight_ih.shape == (3 * hidden, n_in)
    assert ours.weight_hh.shape == ref.weight_hh.shape == (3 * hidden, hidden)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(ours, name).copy_(getattr(ref, name))
    x = torch.randn(7, n_in) * 2
    h = torch.randn(7, hidden)
    torch.testing.assert_close(ours(x, h), ref(x, h), atol=1e-5, rtol=1e-5)
    # and over a few steps (errors would compound)
    h1 = h2 = h
    for _ in range(5):
        h1, h2 = ours(x, h1), ref(x, h2)
    torch.testing.assert_close(h1, h2, atol=1e-5, rtol=1e-5)


def test_gru_default_candidate_is_capped_celu():
    cell = CeluGRUCell(4, 4)
    x = torch.linspace(-20, 20, 101)
    expected = torch.minimum(F.celu(x, 3.0), torch.tensor(6.0))
    torch.testing.assert_close(cell.candidate(x), expected)
    assert cell.candidate(torch.tensor([100.0])).item() == 6.0
    assert cell.candidate(torch.tensor([-100.0])).item() == pytest.approx(-3.0)


def test_gru_init_update_gate_zero_weights_bias_one():
    H, n_in = 32, 16
    cell = CeluGRUCell(n_in, H)
    z = slice(H, 2 * H)  # gates r|z|n
    assert torch.count_nonzero(cell.weight_ih[z]) == 0
    assert torch.count_nonzero(cell.weight_hh[z]) == 0
    torch.testing.assert_close(cell.bias_ih[z] + cell.bias_hh[z], torch.ones(H))
    # other gates: in-degree scaled truncated normal, zero bias
    others = torch.cat([cell.weight_ih[:H].flatten(), cell.weight_ih[2 * H:].flatten(),
                        cell.weight_hh[:H].flatten(), cell.weight_hh[2 * H:].flatten()])
    std = 1 / math.sqrt(n_in + H)
    assert others.abs().max() <= 2 * std + 1e-6
    assert 0.6 * std < others.std() < 1.1 * std
    for b in (cell.bias_ih, cell.bias_hh):
        assert torch.count_nonzero(b[:H]) == 0 and torch.count_nonzero(b[2 * H:]) == 0
    # so at init the cell keeps sigmoid(1) ~ 73% of its state
    x, h = torch.randn(3, n_in), torch.randn(3, H)
    out = cell(x, h)
    n = cell.candidate(F.linear(x, cell.weight_ih[2 * H:]) + torch.sigmoid(
        F.linear(x, cell.weight_ih[:H]) + F.linear(h, cell.weight_hh[:H])) * F.linear(h, cell.weight_hh[2 * H:]))
    s = torch.sigmoid(torch.tensor(1.0))
    torch.testing.assert_close(out, (1 - s) * n + s * h, atol=1e-5, rtol=1e-5)


def test_every_module_gru_cell_starts_with_the_paper_init():
    # Tuple, Sequence and StringLiteral all build their cells with reset_parameters
    mods = [Tuple(3, 16), Sequence(16), StringLiteral(StringLiteralConfig(16, 8))]
    cells = [m for mod in mods for m in mod.modules() if isinstance(m, CeluGRUCell)]
    assert len(cells) == 3 * 3 + 2 + 2
    for c in cells:
        H = c.hidden_size
        assert torch.count_nonzero(c.weight_ih[H:2 * H]) == 0
        assert torch.all(c.bias_ih[H:2 * H] + c.bias_hh[H:2 * H] == 1)


# -- StdNet ----------------------------------------------------------------------------------------
def test_stdnet_init_zero_weights_bias_minus_five():
    net = StdNet(16, layers=3, bias_init=-5.0)
    assert torch.count_nonzero(net.out.weight) == 0
    assert torch.all(net.out.bias == -5.0)
    assert len([m for m in net.hidden.modules() if isinstance(m, nn.Linear)]) == 3
    mu = torch.randn(10, 16) * 3
    sigma = net(mu)
    assert sigma.shape == (10, 16)
    torch.testing.assert_close(sigma, torch.full((10, 16), 1 / (1 + math.exp(5))))
    assert sigma[0, 0].item() == pytest.approx(0.0066929, abs=1e-6)


def test_model_std_net_uses_config_bias():
    from schemas import ADDRESS_PROTO, tiny
    from synth.model import Model

    model = Model.create(ADDRESS_PROTO, "Address", config=tiny(std_bias_init=-3.0, n_levels=2))
    assert len(model.vae.std_nets) == 2
    for net in model.vae.std_nets:
        assert torch.all(net.out.bias == -3.0) and torch.count_nonzero(net.out.weight) == 0


# -- StringLiteral ------------------------------------------------------------------------------------
def test_string_literal_char_embedding_uniform_0_1_and_shared():
    sl = StringLiteral(StringLiteralConfig(dim=32, char_dim=16))
    w = sl.embed.weight
    assert w.shape == (VOCAB, 16) and VOCAB == 257 and EOS == 256
    assert w.min() >= 0.0 and w.max() <= 1.0
    assert w.std() > 0.2  # spread over the interval, not a constant
    embeddings = [m for m in sl.modules() if isinstance(m, nn.Embedding)]
    assert embeddings == [sl.embed]  # one table for encoder and decoder


def test_string_literal_every_byte_string_round_trips_through_the_vocabulary():
    # greedy generation from embeddings trained nowhere still yields bytes in 0..255
    sl = StringLiteral(StringLiteralConfig(dim=16, char_dim=8))
    out = sl.generate(torch.randn(5, 16), torch.tensor([3, 0, 10, 1, 7]), greedy=True)
    assert [len(s) <= m for s, m in zip(out, [3, 0, 10, 1, 7])] == [True] * 5
    assert all(isinstance(s, bytes) for s in out)


def test_string_context_reaches_every_decoder_step():
    """With `context`, the embedding reaches the decoder beyond its first state: with that
    first state held fixed, two embeddings still give different losses; without it, the
    same (the paper's decoder sees the embedding only through `dec_init`)."""
    tokens = torch.tensor([[72, 73, 74, EOS], [75, 76, EOS, 0]])
    lengths = torch.tensor([4, 3])
    a, b = torch.randn(2, 16, generator=torch.Generator().manual_seed(0)).split(1)
    losses = {}
    for context in (False, True):
        torch.manual_seed(1)
        sl = StringLiteral(StringLiteralConfig(dim=16, char_dim=8, context=context))
        for p in sl.dec_init.parameters():  # the first state: the same for every embedding
            nn.init.zeros_(p)
        losses[context] = [sl.loss(e.expand(2, -1), tokens, lengths) for e in (a, b)]
    assert torch.equal(losses[False][0], losses[False][1])
    assert not torch.allclose(losses[True][0], losses[True][1])
    # the update-gate third starts at zero, like the cell's own
    sl = StringLiteral(StringLiteralConfig(dim=16, char_dim=8, context=True))
    assert torch.count_nonzero(sl.dec_context.weight[16:32]) == 0 and torch.count_nonzero(sl.dec_context.weight) > 0


def test_string_loss_sum_is_the_strings_negative_log_likelihood():
    """`loss = "sum"`: each string's cross-entropy summed over its characters (EOS
    included); the paper's "mean" divides it by the length, so long strings weigh as one."""
    tokens = torch.tensor([[72, 73, 74, 75, 76, EOS], [75, 76, EOS, 0, 0, 0]])
    lengths = torch.tensor([6, 3])
    emb = torch.randn(2, 16, generator=torch.Generator().manual_seed(3))
    out = {}
    for loss in ("mean", "sum"):
        torch.manual_seed(4)
        out[loss] = StringLiteral(StringLiteralConfig(dim=16, char_dim=8, loss=loss)).loss(emb, tokens, lengths)
    torch.testing.assert_close(out["sum"], out["mean"] * lengths)
    # against a plain per-step softmax: -sum log p(symbol)
    torch.manual_seed(4)
    sl = StringLiteral(StringLiteralConfig(dim=16, char_dim=8, loss="sum"))
    with torch.no_grad():
        h, nll = sl.dec_init(emb[:1]), 0.0
        for t in range(6):
            if t:
                h = sl.dec_cell(sl.embed(tokens[:1, t - 1]), h)
            nll -= F.log_softmax(sl.dec_out(h), -1)[0, tokens[0, t]].item()
    assert math.isclose(out["sum"][0].item(), nll, rel_tol=1e-5)


def test_string_context_follows_its_row_when_rows_finish_early():
    """Rows leave the generation batch at different steps; each keeps its own context,
    so a batch decodes every row as that row decodes alone."""
    sl = StringLiteral(StringLiteralConfig(dim=16, char_dim=8, context=True))
    with torch.no_grad():
        sl.dec_context.weight.mul_(8.0)  # make the context decide the symbols
    emb = torch.randn(6, 16, generator=torch.Generator().manual_seed(2))
    limits = torch.tensor([9, 2, 6, 0, 4, 7])
    together = sl.generate(emb, limits, greedy=True)
    alone = [sl.generate(emb[i: i + 1], limits[i: i + 1], greedy=True)[0] for i in range(6)]
    assert together == alone
    assert len(set(together)) > 2  # the rows really differ


# -- ScalarTuple --------------------------------------------------------------------------------------
def correlated(n=4000, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, generator=g, dtype=torch.float64)
    b = 0.9 * a + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    return torch.stack([44.5 + 0.3 * a, -72.6 + 0.5 * b], 1)  # lat/lon-like, corr ~0.95


def test_scalar_tuple_whitening_gives_identity_covariance():
    x = correlated()
    st = ScalarTuple(2, ScalarTupleConfig(dim=8), x.mean(0).tolist(), torch.cov(x.T).tolist())
    assert st.mean.dtype == torch.float64 and st.cov.dtype == torch.float64
    w = st.whiten(x).double()
    torch.testing.assert_close(w.mean(0), torch.zeros(2, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.cov(w.T), torch.eye(2, dtype=torch.float64), atol=2e-2, rtol=0)
    # and the raw data really was correlated
    assert torch.corrcoef(x.T)[0, 1] > 0.9


def test_scalar_tuple_moving_stats_converge():
    x = correlated()
    st = ScalarTuple(2, ScalarTupleConfig(dim=8, decay=0.9))  # starts at N(0, I)
    g = torch.Generator().manual_seed(1)
    for _ in range(300):
        st.update_stats(x[torch.randint(0, len(x), (512,), generator=g)])
    torch.testing.assert_close(st.mean, x.mean(0), atol=0.02, rtol=0)
    torch.testing.assert_close(st.cov, torch.cov(x.T), atol=0.02, rtol=0)
    w = st.whiten(x).double()
    torch.testing.assert_close(torch.cov(w.T), torch.eye(2, dtype=torch.float64), atol=0.15, rtol=0)
    st.update_stats(x[:1])  # a single row carries no covariance: ignored
    assert torch.isfinite(st.cov).all()


def test_scalar_tuple_unwhiten_inverts_whiten_in_float64():
    # The statistics and un-whitening are float64; the whitened values are the network's
    # float32 input, so the round trip is exact to float32 precision of the whitened scale.
    x = correlated()
    st = ScalarTuple(2, ScalarTupleConfig(dim=8), x.mean(0).tolist(), torch.cov(x.T).tolist())
    back = st.unwhiten(st.whiten(x))
    assert back.dtype == torch.float64
    torch.testing.assert_close(back, x, atol=1e-6, rtol=0)


def test_scalar_tuple_decode_is_unwhitened_float64():
    x = correlated(100)
    st = ScalarTuple(2, ScalarTupleConfig(dim=8), x.mean(0).tolist(), torch.cov(x.T).tolist())
    out = st.decode(torch.randn(4, 8))
    assert out.shape == (4, 2) and out.dtype == torch.float64
    # zero decoder output decodes to the mean
    with torch.no_grad():
        st.dec.weight.zero_()
    torch.testing.assert_close(st.decode(torch.randn(3, 8)), x.mean(0).expand(3, 2))


# -- small modules: shapes and losses -----------------------------------------------------------------
def test_categorical_presence_oneof_shapes():
    cat = Categorical(4, 16)
    idx = torch.tensor([0, 3, 1])
    assert cat.encode(idx).shape == (3, 16)
    assert cat.loss(torch.randn(3, 16), idx).shape == (3,)
    assert set(cat.decode(torch.randn(50, 16)).tolist()) <= {0, 1, 2, 3}

    pres = Presence(16)
    present = torch.tensor([True, False, True])
    out = pres.encode(present, torch.ones(2, 16))
    assert torch.all(out[1] == pres.absent) and torch.all(out[0] == 1)
    assert pres.loss(torch.randn(3, 16), present).shape == (3,)

    one = Oneof(3, 16)
    case = torch.tensor([-1, 0, 2, 0])
    enc = one.encode(case, [torch.ones(2, 16), torch.ones(0, 16), torch.ones(1, 16)])
    assert enc.shape == (4, 16)
    torch.testing.assert_close(enc[0], one.case_embed.weight[0])
    torch.testing.assert_close(enc[1], one.case_embed.weight[1] + 1)
    assert set(one.choose(torch.randn(40, 16)).tolist()) <= {-1, 0, 1, 2}


def test_sequence_encodes_empty_and_varied_lengths():
    seq = Sequence(16).eval()
    lengths = torch.tensor([0, 3, 1])
    elements = torch.randn(4, 16)
    out = seq.encode(elements, lengths)
    assert out.shape == (3, 16)
    # the same instance encoded alone gives the same embedding (batching is invisible)
    alone = seq.encode(elements[0:3], torch.tensor([3]))
    torch.testing.assert_close(out[1:2], alone, atol=1e-6, rtol=1e-6)
    empty = seq.encode(torch.zeros(0, 16), torch.tensor([0]))
    torch.testing.assert_close(out[0:1], empty)
    emitted, stop = seq.decode_train(torch.randn(3, 16), elements, lengths, 1.0)
    assert emitted.shape == (4, 16) and stop.shape == (3,)
    emitted, lens = seq.decode_sample(torch.randn(5, 16), max_len=4)
    assert lens.max() <= 4 and emitted.shape == (int(lens.sum()), 16)


def test_model_config_defaults_are_the_papers():
    from synth.model_config import ModelConfig

    cfg = ModelConfig()
    assert (cfg.latent_dim, cfg.char_dim, cfg.celu_alpha, cfg.celu_cap) == (128, 16, 3.0, 6.0)
    assert (cfg.std_layers, cfg.std_bias_init, cfg.n_levels) == (3, -5.0, 1)
    assert (cfg.whitening_decay, cfg.whitening_eps) == (0.999, 1e-5)
    assert cfg.share_strings
    assert cfg.gru() == GRUConfig(alpha=3.0, cap=6.0, candidate="celu")


# -- categorical draws ---------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1024, 1500, 2049])  # whole blocks, and a short last block
def test_large_vocabulary_draws_follow_the_softmax(k):
    """The two-level inverse CDF (large vocabularies on the CPU) draws from softmax(logits / t):
    a chi-square test over 60,000 draws, and never a class of probability zero."""
    from scipy import stats

    from synth.nn.draws import BLOCKED_MIN_CLASSES, softmax_draw

    assert k >= BLOCKED_MIN_CLASSES
    logits = torch.randn(k) * 1.5
    logits[::5] = -math.inf  # blocked classes, including the first and (k=2049) the lone last one
    logits[-1] = -math.inf
    n = 60_000
    got = softmax_draw(logits.expand(n, k).contiguous(), 0.7, False, torch.Generator().manual_seed(k))
    counts = torch.bincount(got, minlength=k).double()
    p = F.softmax(logits.double() / 0.7, -1)
    assert counts[p == 0].sum() == 0
    # pool rare classes so every expected count is at least 5
    order = torch.argsort(p, descending=True)
    expected, observed = p[order] * n, counts[order]
    cut = int((expected >= 5).sum())
    exp_bins = torch.cat([expected[:cut], expected[cut:].sum(0, keepdim=True)])
    obs_bins = torch.cat([observed[:cut], observed[cut:].sum(0, keepdim=True)])
    assert stats.chisquare(obs_bins.numpy(), exp_bins.numpy()).pvalue > 1e-3


def test_large_vocabulary_draw_is_the_same_whatever_the_batch():
    """A row's draw depends on its logits and its uniform only, not on the rows beside it."""
    from synth.nn.draws import softmax_draw

    logits = torch.randn(300, 5000) * 2
    whole = softmax_draw(logits, 1.0, False, torch.Generator().manual_seed(3))
    for rows in (slice(0, 1), slice(7, 40), slice(40, 300)):
        gen = torch.Generator()
        gen.set_state(_generator_after(rows.start, 3))  # the uniforms of the rows before are used up
        assert torch.equal(softmax_draw(logits[rows], 1.0, False, gen), whole[rows])


def _generator_after(draws: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    torch.rand(draws, generator=gen)
    return gen.get_state()


def test_artifacts_from_before_string_context_rebuild_without_it(tmp_path):
    """A manifest without `string_context` and `string_loss` (LEGACY: the paper's decoder and
    loss) loads the model it was trained as: no context weights expected, the same strings
    decoded."""
    import json

    from schemas import ADDRESS_PROTO, address_records, tiny
    from synth import store
    from synth.model import Model

    rows = address_records(32)
    old = Model.create(ADDRESS_PROTO, "Address", records=rows, config=tiny(string_context=False, string_loss="mean"))
    d = store.save(old, tmp_path / "m")
    manifest = json.loads((d / store.MANIFEST).read_text())
    del manifest["model_config"]["string_context"], manifest["model_config"]["string_loss"]
    (d / store.MANIFEST).write_text(json.dumps(manifest))
    loaded = store.load(d)
    assert not loaded.config.string_context and loaded.config.string_loss == "mean"
    assert not any(k.endswith("dec_context.weight") for k in loaded.vae.state_dict())
    z = old.sample_latents(8, torch.Generator().manual_seed(0))
    assert [r.street for r in loaded.decode(z, greedy=True)] == [r.street for r in old.decode(z, greedy=True)]
    new = Model.create(ADDRESS_PROTO, "Address", records=rows, config=tiny())
    assert any(k.endswith("dec_context.weight") for k in new.vae.state_dict())
