import pytest
import torch

from losses import LossWeights, ivae_loss
from model import IVAE, VAE, posterior_scale

N_GENES, HIDDEN, LATENT, I_DIM = 50, 16, 6, 2


@pytest.fixture
def model():
    torch.manual_seed(0)
    return IVAE(N_GENES, HIDDEN, LATENT, I_DIM)


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
    a = model.embed(counts)
    b = model.embed(counts)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v)
    q_m = model.encoder(torch.log1p(counts))[1]  # embed takes raw counts: log1p is the model's
    torch.testing.assert_close(a[0], q_m)
    torch.testing.assert_close(a[1], model.latent_encoder(q_m))
    torch.testing.assert_close(a[2], model.latent_decoder(model.latent_encoder(q_m)))


def test_bad_dimensions_raise():
    with pytest.raises(ValueError, match="i_dim"):
        IVAE(10, 8, latent_dim=2, i_dim=2)
    with pytest.raises(ValueError, match="positive"):
        IVAE(0, 8, 4, 2)



# --- the scvi-tools-style interface, and equality with the seed (tests/data/seed_model.py) ---

def seed_module():
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("seed_model", REPO / "tests" / "data" / "seed_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weights_at_a_seed_are_the_seeds(seed):
    """Without covariates: the same keys, shapes and initial numbers as the seed model."""
    torch.manual_seed(seed)
    ours = IVAE(N_GENES, HIDDEN, LATENT, I_DIM).state_dict()
    torch.manual_seed(seed)
    theirs = seed_module().VAE(N_GENES, HIDDEN, LATENT, I_DIM).state_dict()
    assert list(ours) == list(theirs)
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), key


def test_the_seeds_name_still_imports():
    """Users' code and checkpoints name the network `model.VAE`: the same class as IVAE,
    loading a state_dict saved under either name."""
    assert VAE is IVAE
    saved = seed_module().VAE(N_GENES, HIDDEN, LATENT, I_DIM).state_dict()
    VAE(N_GENES, HIDDEN, LATENT, I_DIM).load_state_dict(saved)


def test_forward_and_loss_equal_the_seeds(model, counts):
    """forward() returns the seed's seven outputs, bit for bit, and the loss built from
    inference()/generative() equals the seed's formula on forward()'s outputs."""
    from losses import kl_normal_standard, nb_reconstruction_loss

    seed = seed_module().VAE(N_GENES, HIDDEN, LATENT, I_DIM)
    seed.load_state_dict(model.state_dict())
    x = torch.log1p(counts)
    torch.manual_seed(3)
    ours = model(x)
    torch.manual_seed(3)
    theirs = seed(x)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)

    torch.manual_seed(4)
    terms = ivae_loss(model, counts, LossWeights(beta=1.0, irecon=5.0), n_cells=100)
    torch.manual_seed(4)
    q_z, q_m, q_s, pred_x, le, ld, pred_xl = seed(x)
    library = counts.sum(-1, keepdim=True)
    log_theta = seed.decoder.disp
    torch.testing.assert_close(terms["recon"], nb_reconstruction_loss(counts, pred_x * library, log_theta))
    torch.testing.assert_close(terms["irecon"], 5.0 * nb_reconstruction_loss(counts, pred_xl * library, log_theta))
    torch.testing.assert_close(terms["kl"], kl_normal_standard(q_m, posterior_scale(q_s)))


def test_inference_and_generative(model, counts):
    torch.manual_seed(0)
    inf = model.inference(counts)
    assert {"q_m", "q_s", "scale", "q_z", "le", "ld", "library", "covariates"} <= set(inf)
    torch.testing.assert_close(inf["library"], counts.sum(-1, keepdim=True))
    torch.testing.assert_close(inf["q_m"], model.encoder(torch.log1p(counts))[1])
    torch.testing.assert_close(inf["scale"], posterior_scale(inf["q_s"]))
    torch.testing.assert_close(inf["ld"], model.latent_decoder(model.latent_encoder(inf["q_z"])))
    gen = model.generative(inf["q_m"], inf["library"])
    torch.testing.assert_close(gen["mu"].sum(-1, keepdim=True), inf["library"])  # proportions sum to 1
    assert gen["mu"].shape == counts.shape and gen["log_theta"] is model.decoder.disp


def test_covariates_are_one_hot_inputs_of_encoder_and_decoder(counts):
    torch.manual_seed(0)
    model = IVAE(N_GENES, HIDDEN, LATENT, I_DIM, n_categories=(2, 3))
    sd = model.state_dict()
    assert sd["encoder.nn.0.weight"].shape == (HIDDEN, N_GENES + 5)
    assert sd["encoder.nn.2.weight"].shape == (HIDDEN, HIDDEN + 5)  # every hidden layer, as scVI
    assert sd["encoder.nn.4.weight"].shape == (2 * LATENT, HIDDEN)
    assert sd["decoder.nn.0.weight"].shape == (HIDDEN, LATENT + 5)
    assert sd["decoder.nn.2.weight"].shape == (HIDDEN, HIDDEN + 5)  # injected into both hidden layers
    assert sd["decoder.nn.4.weight"].shape == (N_GENES, HIDDEN)
    codes = torch.stack([torch.arange(32) % 2, torch.arange(32) % 3], dim=1)
    onehot = model.one_hot(codes)
    assert onehot.shape == (32, 5) and torch.equal(onehot.sum(-1), torch.full((32,), 2.0))
    model.eval()
    a = model.embed(counts, codes)
    b = model.embed(counts, (codes + 1) % torch.tensor([2, 3]))
    assert not torch.allclose(a[0], b[0])  # the covariate changes the embedding
    z = torch.zeros(32, LATENT)
    lib = counts.sum(-1, keepdim=True)
    assert not torch.allclose(model.generative(z, lib, model.one_hot(codes))["mu"],
                              model.generative(z, lib, model.one_hot(codes.flip(0)))["mu"])
    terms = ivae_loss(model, counts, LossWeights(beta=1.0, irecon=1.0), n_cells=100, covariates=codes)
    assert torch.isfinite(terms["loss"])
    with pytest.raises(ValueError, match="2 covariate"):
        model.inference(counts)
    with pytest.raises(ValueError, match="at least one category"):
        IVAE(N_GENES, HIDDEN, LATENT, I_DIM, n_categories=(0,))


def test_settings_mirror_the_config_schema():
    """ModelSettings and TrainSettings hold exactly the schema's keys (its defaults are the only ones)."""
    from dataclasses import MISSING, fields

    from conftest import schema_defaults
    from model import ModelSettings
    from train import TrainSettings

    assert {f.name for f in fields(ModelSettings)} - {"n_genes", "n_categories"} == set(schema_defaults("model"))
    assert {f.name for f in fields(TrainSettings)} == set(schema_defaults("train"))
    assert all(f.default is MISSING for f in fields(TrainSettings))  # no second default in code


def test_draws_after_building_do_not_depend_on_the_module():
    """The module's weights are drawn, then the stream is put back: the encoder's and
    decoder's weights and every later draw are the same at any i_dim (a model that does not
    use the module trains the same whatever its width)."""
    torch.manual_seed(7)
    narrow = IVAE(N_GENES, HIDDEN, LATENT, 2)
    after_narrow = torch.randn(5)
    torch.manual_seed(7)
    wide = IVAE(N_GENES, HIDDEN, LATENT, LATENT - 1)
    after_wide = torch.randn(5)
    assert torch.equal(after_narrow, after_wide)
    for key, value in narrow.state_dict().items():
        if not key.startswith("latent_"):
            assert torch.equal(value, wide.state_dict()[key]), key


@pytest.mark.parametrize("stop_gradient", [True, False])
def test_stopped_gradient_keeps_the_module_from_shaping_z(counts, stop_gradient):
    """The reconstruction through the module trains the module and the decoder; with the
    gradient stopped it never reaches the encoder, whose z the module then cannot shape."""
    torch.manual_seed(0)
    model = IVAE(N_GENES, HIDDEN, LATENT, I_DIM, stop_gradient=stop_gradient)
    terms = ivae_loss(model, counts, LossWeights(beta=1.0, irecon=5.0), n_cells=100)
    terms["irecon"].backward()
    encoder = [p.grad for p in model.encoder.parameters()]
    assert all(g is None or not g.any() for g in encoder) == stop_gradient
    assert all(p.grad is not None and p.grad.any() for p in model.latent_encoder.parameters())
    assert model.decoder.nn[0].weight.grad.any()
    # the forward pass is the same either way
    torch.manual_seed(1)
    other = IVAE(N_GENES, HIDDEN, LATENT, I_DIM, stop_gradient=not stop_gradient)
    other.load_state_dict(model.state_dict())
    torch.manual_seed(2)
    a = model.embed(counts)
    b = other.embed(counts)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
