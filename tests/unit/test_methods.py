"""methods.py: every method defined once, its settings, role and colour."""

import pytest

import methods
from methods import BASELINES, BUILT_IN, MAIN, NO_COVARIATES, compare_method, default_methods, swept_method

MODEL = {"hidden_dim": 128, "latent_dim": 10, "i_dim": 4}
TRAIN = {"beta": 1.0, "irecon": 5.0}


def test_built_in_methods_and_their_settings():
    controls = ["VAE", "VAE-narrow", "VAE-beta-matched", "iVAE-stop-gradient"]
    assert default_methods(False) == [MAIN, *controls]
    assert default_methods(True) == [MAIN, *controls, NO_COVARIATES]
    assert BASELINES == ("PCA", "ICA", "NMF", "FA")
    assert BUILT_IN[MAIN].overrides(MODEL, TRAIN) == ({}, {})
    assert BUILT_IN["VAE"].overrides(MODEL, TRAIN) == ({}, {"irecon": 0.0})  # differs in the module's loss only
    assert BUILT_IN["VAE-narrow"].overrides(MODEL, TRAIN) == ({"latent_dim": 4, "i_dim": 3}, {"irecon": 0.0})
    assert BUILT_IN["VAE-narrow"].overrides({**MODEL, "i_dim": 1}, TRAIN) == ({"latent_dim": 2, "i_dim": 1},
                                                                               {"irecon": 0.0})
    # the iVAE's KL per unit of reconstruction weight: β / (1 + irecon)
    assert BUILT_IN["VAE-beta-matched"].overrides(MODEL, TRAIN) == ({}, {"irecon": 0.0, "beta": 1.0 / 6.0})
    assert BUILT_IN["VAE-beta-matched"].overrides(MODEL, {"beta": 0.5, "irecon": 1.0})[1]["beta"] == 0.25
    assert BUILT_IN["iVAE-stop-gradient"].overrides(MODEL, TRAIN) == ({"stop_gradient": True}, {})
    assert BUILT_IN[NO_COVARIATES].overrides(MODEL, TRAIN) == ({}, {}) and not BUILT_IN[NO_COVARIATES].covariates
    assert {m.role for m in BUILT_IN.values()} == {"model", "control", "standard", "baseline"}
    assert methods.STANDARD == ("scVI", "LDVAE") and not set(methods.STANDARD) & set(default_methods(True))
    assert not any(BUILT_IN[b].trained for b in BASELINES)


def test_every_trained_method_has_its_own_colour():
    trained = [m.colour for m in BUILT_IN.values() if m.trained]
    assert len(set(trained)) == len(trained)
    assert {BUILT_IN[b].colour for b in BASELINES} == {methods.BASELINE_GREY}


def test_compare_entries():
    entry = {"train": {"irecon": 0.0, "beta": 4.0}, "colour": "#009E73"}
    beta = compare_method("beta-VAE", entry)
    assert beta.role == "compare" and beta.colour == "#009E73" and beta.overrides(MODEL, TRAIN) == ({}, entry["train"])
    assert "beta 4" in beta.description
    # without a colour: the palette's colours the built-ins leave free, by position
    free = [c for c in methods.OKABE_ITO + methods.TOL_MUTED if c not in {m.colour for m in BUILT_IN.values()}]
    assert [compare_method(f"m{i}", {}, i).colour for i in range(len(free))] == free
    assert methods.colour("beta-VAE", {"beta-VAE": entry}) == "#009E73"
    with pytest.raises(ValueError, match="'VAE' is a built-in method"):
        compare_method("VAE", {})


def test_swept_methods():
    method = swept_method("i_dim=3", model_keys={"i_dim", "latent_dim"}, integer_keys={"i_dim"})
    assert method.overrides(MODEL, TRAIN) == ({"i_dim": 3}, {})
    assert isinstance(method.overrides(MODEL, TRAIN)[0]["i_dim"], int)
    assert swept_method("irecon=0.5", model_keys={"i_dim"}).overrides(MODEL, TRAIN) == ({}, {"irecon": 0.5})
    assert methods.colour("irecon=0.5") == BUILT_IN[MAIN].colour
    with pytest.raises(ValueError, match="unknown method 'nonsense'"):
        swept_method("nonsense", model_keys=set())
