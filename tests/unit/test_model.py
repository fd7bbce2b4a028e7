import pytest
import torch

from losses import LossWeights, ivae_loss
from model import VAE, posterior_scale

N_GENES, HIDDEN, LATENT, I_DIM = 50, 16, 6, 2


@pytest.fixture
def model():
    torch.manual_seed(0)
    return VAE(N_GENES, HIDDEN, LATENT, I_DIM)


@pytest.fixture
def counts():
    g = torch.Generator().manual_seed(1)
    return torch.poisson(torch.full((32, N_GENES), 3.0), generator=g)


def test_forward_shapes(model, counts):
    q_z, q_m, q_s, pred_x, le, ld, pred_xl = model(torch.log1p(counts))
    assert q_z.shape == q_m.shape == q_s.shape == ld.shape == (32, LATENT)
    assert le.shape == (32, I_DIM)
    assert pred_x.shape == pred_xl.shape == (32, N_GENES)
    torch.testing.assert_close(pred_x.sum(-1), torch.ones(32))
    torch.testing.assert_close(pred_xl.sum(-1), torch.ones(32))
    assert (pred_x > 0).all()


def test_state_dict_keys_match_reference_package(model):
    expected = {
        "encoder.nn.0.weight", "encoder.nn.0.bias", "encoder.nn.2.weight", "encoder.nn.2.bias",
        "encoder.nn.4.weight", "encoder.nn.4.bias",
        "decoder.nn.0.weight", "decoder.nn.0.bias", "decoder.nn.2.weight", "decoder.nn.2.bias",
        "decoder.nn.4.weight", "decoder.nn.4.bias", "decoder.disp",
        "latent_encoder.weight", "latent_encoder.bias", "latent_decoder.weight", "latent_decoder.bias",
    }
    assert set(model.state_dict()) == expected
    assert model.state_dict()["encoder.nn.4.weight"].shape == (2 * LATENT, HIDDEN)
    assert model.state_dict()["decoder.disp"].shape == (N_GENES,)
    assert torch.all(model.state_dict()["encoder.nn.0.bias"] == 0.01)


def test_sample_uses_softplus_scale(model, counts):
    """q_z ~ Normal(q_m, softplus(q_s) + 1e-6): standardised samples are N(0, 1)."""
    x = torch.log1p(counts[:1]).expand(20000, -1)
    q_z, q_m, q_s = model.encoder(x)
    standardised = (q_z - q_m) / posterior_scale(q_s)
    assert abs(standardised.mean().item()) < 0.02
    assert abs(standardised.std().item() - 1) < 0.02


@pytest.mark.parametrize("irecon, reaches", [(1.0, True), (0.0, False)])
def test_gradient_reaches_interpretative_module_only_with_irecon(model, counts, irecon, reaches):
    terms = ivae_loss(model, counts, LossWeights(beta=1.0, irecon=irecon), n_cells=100)
    terms["loss"].backward()
    for module in (model.latent_encoder, model.latent_decoder):
        grad = module.weight.grad
        if reaches:
            assert grad is not None and grad.abs().sum() > 0
        else:
            assert grad is None or grad.abs().sum() == 0
    assert model.encoder.nn[0].weight.grad.abs().sum() > 0


def test_embed_is_deterministic_posterior_mean(model, counts):
    model.eval()
    x = torch.log1p(counts)
    a = model.embed(x)
    b = model.embed(x)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v)
    q_m = model.encoder(x)[1]
    torch.testing.assert_close(a[0], q_m)
    torch.testing.assert_close(a[1], model.latent_encoder(q_m))
    torch.testing.assert_close(a[2], model.latent_decoder(model.latent_encoder(q_m)))


def test_bad_dimensions_raise():
    with pytest.raises(ValueError, match="i_dim"):
        VAE(10, 8, latent_dim=2, i_dim=2)
    with pytest.raises(ValueError, match="positive"):
        VAE(0, 8, 4, 2)
