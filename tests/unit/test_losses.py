import math

import numpy as np
import pytest
import torch
from torch.distributions import NegativeBinomial, Normal, kl_divergence

from losses import (
    LOSS_TERMS, LossWeights, dip_vae_ii_penalty, ivae_loss, kl_normal_standard, log_nb, mmd,
    nb_count_terms, nb_reconstruction_loss, nb_reconstruction_losses, rbf_kernel, total_correlation,
)
from model import IVAE


@pytest.fixture(autouse=True)
def float64():
    """Exact comparisons in double precision; restored for the other test modules."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def test_log_nb_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 60, (200,), generator=g).double()
    mu = torch.rand(200, generator=g) * 30 + 0.05
    theta = torch.rand(200, generator=g) * 10 + 0.1
    # torch's NB counts successes with total_count failures; logits = log(mu / theta) gives mean mu
    ref = NegativeBinomial(total_count=theta, logits=torch.log(mu) - torch.log(theta)).log_prob(x)
    torch.testing.assert_close(log_nb(x, mu, theta, eps=0.0), ref)
    torch.testing.assert_close(log_nb(x, mu, theta), ref, rtol=1e-6, atol=1e-6)


def test_log_nb_known_value():
    # NB(x=2; mu=1, theta=1) is geometric with p = 1/2: P = (1/2)^3
    assert log_nb(torch.tensor(2.0), torch.tensor(1.0), torch.tensor(1.0), eps=0).item() == pytest.approx(math.log(1 / 8))


def test_nb_reconstruction_uses_library_size():
    counts = torch.tensor([[3.0, 0.0, 1.0], [10.0, 5.0, 5.0]])
    props = torch.tensor([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25]])
    library = counts.sum(-1, keepdim=True)
    log_theta = torch.log(torch.tensor([2.0, 3.0, 4.0]))
    expected = -np.mean([
        sum(NegativeBinomial(total_count=t, logits=math.log(p * lib) - math.log(t)).log_prob(torch.tensor(c)).item()
            for c, p, t in zip(row, prow, [2.0, 3.0, 4.0]))
        for row, prow, lib in zip(counts.tolist(), props.tolist(), library.ravel().tolist())
    ])
    got = nb_reconstruction_loss(counts, props * library, log_theta).item()
    assert got == pytest.approx(expected, rel=1e-6)


def test_shared_reconstruction_losses_equal_separate_ones():
    g = torch.Generator().manual_seed(4)
    counts = torch.poisson(torch.full((8, 30), 4.0), generator=g)
    props = [torch.softmax(torch.randn(8, 30, generator=g), -1) for _ in range(2)]
    library = counts.sum(-1, keepdim=True)
    log_theta = torch.randn(30, generator=g)
    counts[counts > 5] = 0  # many zeros, as in real data
    shared = nb_reconstruction_losses(counts, [p * library for p in props], log_theta)
    for p, got in zip(props, shared):
        torch.testing.assert_close(got, nb_reconstruction_loss(counts, p * library, log_theta))


def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(1)
    m = torch.randn(16, 5, generator=g)
    s = torch.rand(16, 5, generator=g) + 0.1
    ref = kl_divergence(Normal(m, s), Normal(0.0, 1.0)).sum(-1).mean()
    torch.testing.assert_close(kl_normal_standard(m, s), ref)
    assert kl_normal_standard(torch.zeros(3, 2), torch.ones(3, 2)).item() == pytest.approx(0.0)


def test_dip_penalty_hand_computed():
    q_m = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    scale = torch.full((4, 2), 0.5)
    # Cov[q_m] (n - 1 = 3): diag (2/3, 8/3), off 0; + E[s^2] = 0.25 on the diagonal
    c11, c22 = 2 / 3 + 0.25, 8 / 3 + 0.25
    expected = (c11 - 1) ** 2 + (c22 - 1) ** 2
    assert dip_vae_ii_penalty(q_m, scale).item() == pytest.approx(expected)
    skew = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, 1.0], [-1.0, -1.0]])  # cov off-diagonal 4/3
    got = dip_vae_ii_penalty(skew, torch.zeros(4, 2) + 1e-12, lambda_offdiag=1.0, lambda_diag=0.0).item()
    assert got == pytest.approx(2 * (4 / 3) ** 2)


def test_total_correlation_matches_brute_force():
    g = torch.Generator().manual_seed(2)
    z, m = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    s = torch.rand(6, 3, generator=g) + 0.3
    n_cells = 100
    expected = []
    for i in range(6):
        joint = [sum(Normal(m[j, d], s[j, d]).log_prob(z[i, d]).item() for d in range(3)) for j in range(6)]
        log_qz = np.logaddexp.reduce(joint) - math.log(n_cells * 6)
        marg = sum(
            np.logaddexp.reduce([Normal(m[j, d], s[j, d]).log_prob(z[i, d]).item() for j in range(6)])
            - math.log(n_cells * 6)
            for d in range(3)
        )
        expected.append(log_qz - marg)
    assert total_correlation(z, m, s, n_cells).item() == pytest.approx(np.mean(expected), rel=1e-9)


def test_mmd_hand_computed_and_sign():
    p = torch.tensor([[0.0], [1.0]])
    q = torch.tensor([[2.0], [3.0]])
    k = lambda d2: math.exp(-d2 / 2.0)  # noqa: E731 - D = 1
    expected = k(1) + k(1) - 2 * (k(4) + k(9) + k(1) + k(4)) / 4
    assert mmd(q, p).item() == pytest.approx(expected)
    torch.testing.assert_close(rbf_kernel(p, q), torch.tensor([[k(4), k(9)], [k(1), k(4)]]))
    g = torch.Generator().manual_seed(3)
    same = mmd(torch.randn(400, 4, generator=g), torch.randn(400, 4, generator=g)).item()
    shifted = mmd(torch.randn(400, 4, generator=g) + 2, torch.randn(400, 4, generator=g)).item()
    assert abs(same) < 0.02 < shifted


def test_ivae_loss_is_weighted_sum_and_skips_zero_weights():
    torch.manual_seed(0)
    model = IVAE(20, 8, 4, 2).double()
    counts = torch.poisson(torch.full((16, 20), 2.0))
    w = LossWeights(beta=0.5, irecon=2.0, dip=0.1, tc=0.2, info=0.3)
    terms = ivae_loss(model, counts, w, n_cells=50)
    assert set(terms) == set(LOSS_TERMS)
    parts = sum(terms[k] for k in LOSS_TERMS if k != "loss")
    torch.testing.assert_close(terms["loss"], parts)
    assert all(torch.isfinite(v) for v in terms.values())
    off = ivae_loss(model, counts, LossWeights(beta=1.0, irecon=0.0), n_cells=50)
    assert off["irecon"].item() == off["dip"].item() == off["tc"].item() == off["mmd"].item() == 0.0


def test_count_terms_only_at_nonzero_counts_equal_the_dense_sum():
    """The sparse form evaluates lgamma at non-zero counts only; value and gradient must
    equal the dense sum over every gene (zeros contribute exactly 0)."""
    g = torch.Generator().manual_seed(7)
    counts = torch.poisson(torch.full((16, 50), 1.5), generator=g)
    counts[:, ::3] = 0
    counts[3] = 0  # a cell with no counts at all
    log_theta = torch.randn(50, generator=g, dtype=torch.float64).requires_grad_()
    theta = torch.exp(log_theta)
    dense = (torch.lgamma(counts + theta) - torch.lgamma(theta) - torch.lgamma(counts + 1)).sum(-1)
    sparse = nb_count_terms(counts.double(), theta, sparse=True)
    torch.testing.assert_close(sparse, dense.double())
    assert sparse[3].item() == 0.0
    grad_dense, = torch.autograd.grad(dense.sum(), log_theta)
    grad_sparse, = torch.autograd.grad(nb_count_terms(counts.double(), torch.exp(log_theta), sparse=True).sum(), log_theta)
    torch.testing.assert_close(grad_sparse, grad_dense)


def test_count_terms_compile_around_the_sparse_part():
    """torch.compile of the whole loss runs the sparse part eagerly; compiled or not, the
    sparse form gives the dense form's loss, for batches with different numbers of non-zeros."""
    g = torch.Generator().manual_seed(8)
    counts = torch.poisson(torch.full((32, 40), 0.8), generator=g)
    props = torch.softmax(torch.randn(32, 40, generator=g), -1)
    log_theta = torch.randn(40, generator=g)

    def loss(c):
        return nb_reconstruction_losses(c, [props * c.sum(-1, keepdim=True)], log_theta, sparse=True)[0]

    compiled = torch.compile(loss, dynamic=False)
    counts2 = torch.poisson(torch.full((32, 40), 0.3), generator=g)  # another number of non-zeros
    assert int((counts2 > 0).sum()) != int((counts > 0).sum())
    for c in (counts, counts2):
        dense = nb_reconstruction_losses(c, [props * c.sum(-1, keepdim=True)], log_theta)[0]
        torch.testing.assert_close(compiled(c), dense)
        torch.testing.assert_close(loss(c), dense)


def held_out_model(n_genes=30):
    torch.manual_seed(0)
    model = IVAE(n_genes, 16, 4, 2).double().eval()
    counts = torch.poisson(torch.rand(200, n_genes, dtype=torch.float64) * 5)
    return model, counts


def test_importance_weights_match_torch_distributions(float64):
    """log w = log NB(x | z) + log N(z; 0, 1) - log N(z; q_m, scale), for the z drawn."""
    from losses import log_importance_weights

    model, counts = held_out_model()
    torch.manual_seed(5)
    with torch.no_grad():
        log_w = log_importance_weights(model, counts, 3)
        torch.manual_seed(5)
        inf = model.inference(counts)
        z = inf["q_m"] + inf["scale"] * torch.randn((3, *inf["q_m"].shape), dtype=torch.float64)
        mu = model.generative(z.reshape(-1, 4), inf["library"].repeat(3, 1))["mu"].reshape(3, 200, -1)
        theta = torch.exp(model.decoder.disp)
        log_px = NegativeBinomial(total_count=theta, logits=torch.log(mu) - torch.log(theta)).log_prob(counts).sum(-1)
        expected = (log_px + Normal(0.0, 1.0).log_prob(z).sum(-1)
                    - Normal(inf["q_m"], inf["scale"]).log_prob(z).sum(-1))
    assert log_w.shape == (3, 200)
    torch.testing.assert_close(log_w, expected, rtol=1e-6, atol=1e-6)


def test_importance_weighted_bound_is_tighter_and_tightens_with_samples(float64):
    """IWAE <= negative ELBO per cell for the same draws (Jensen), equal at K = 1; over many
    cells the mean bound falls as K grows, the negative ELBO does not (in expectation)."""
    from losses import held_out_bounds, log_importance_weights

    model, counts = held_out_model()
    with torch.no_grad():
        torch.manual_seed(1)
        log_w = log_importance_weights(model, counts, 100)
    nelbo, iwae = held_out_bounds(log_w)
    assert (iwae <= nelbo + 1e-9).all() and (iwae < nelbo).any()
    one_nelbo, one_iwae = held_out_bounds(log_w[:1])
    torch.testing.assert_close(one_nelbo, one_iwae)
    bounds = {k: held_out_bounds(log_w[:k])[1].mean().item() for k in (1, 10, 100)}
    assert bounds[1] > bounds[10] > bounds[100]
    torch.testing.assert_close(held_out_bounds(log_w)[1], -(torch.logsumexp(log_w, 0) - math.log(100)))
