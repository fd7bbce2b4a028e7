import numpy as np
import pytest
import scipy.sparse as sp
import torch

from common_io import InputError, load_checkpoint, save_checkpoint
from embed import embed
from losses import LOSS_TERMS
from train import fit, resolve_device

MODEL = dict(hidden_dim=32, latent_dim=6, i_dim=2)
TRAIN = dict(epochs=4, batch_size=64, lr=1e-3, beta=1.0, irecon=1.0, seed=0)


@pytest.fixture(scope="module")
def counts(pbmc68k_counts):
    return pbmc68k_counts.X[:, :200].tocsr()


def test_history_and_loss_decreases(counts):
    model, history = fit(counts, **MODEL, **{**TRAIN, "epochs": 15})
    assert list(history.columns) == ["epoch", "seconds", *LOSS_TERMS]
    assert history["epoch"].tolist() == list(range(1, 16))
    assert np.isfinite(history[list(LOSS_TERMS)].to_numpy()).all()
    assert history["loss"].iloc[-1] < 0.9 * history["loss"].iloc[0]
    assert (history["seconds"] > 0).all()
    assert not model.training


def test_same_seed_same_model_other_seed_differs(counts):
    a, ha = fit(counts, **MODEL, **TRAIN)
    b, hb = fit(sp.csr_matrix(counts), **MODEL, **TRAIN)
    c, _ = fit(counts, **MODEL, **{**TRAIN, "seed": 1})
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert ha[list(LOSS_TERMS)].equals(hb[list(LOSS_TERMS)])
    assert not torch.equal(a.state_dict()["encoder.nn.0.weight"], c.state_dict()["encoder.nn.0.weight"])


def test_fewer_cells_than_a_batch_is_an_error(counts):
    with pytest.raises(InputError, match="fewer than one batch.*batch_size=1000"):
        fit(counts[:50], **MODEL, **{**TRAIN, "batch_size": 1000})


def test_divergence_names_epoch_and_term(counts):
    bad = counts.toarray()
    bad[0, 0] = np.inf
    with pytest.raises(FloatingPointError, match="epoch 1: non-finite loss"):
        fit(bad, **MODEL, **{**TRAIN, "batch_size": 700 // 2})


def test_checkpoint_round_trip_and_batched_embedding(counts, tmp_path):
    model, _ = fit(counts, **MODEL, **TRAIN)
    genes = [f"g{i}" for i in range(counts.shape[1])]
    save_checkpoint(tmp_path / "m.pt", model, gene_names=genes, model_params=MODEL, train_params=TRAIN)
    loaded, payload = load_checkpoint(tmp_path / "m.pt")
    assert payload["gene_names"] == genes and payload["model_params"]["n_genes"] == 200
    whole = embed(model, counts, batch_size=10_000)
    batched = embed(loaded, counts, batch_size=97)
    for w, b in zip(whole, batched):
        np.testing.assert_allclose(w, b, rtol=1e-5, atol=1e-6)
    latent, interp, after = batched
    assert latent.shape == (counts.shape[0], 6) and interp.shape == (counts.shape[0], 2) and after.shape == latent.shape
    with torch.no_grad():
        x = torch.log1p(torch.as_tensor(counts.toarray(), dtype=torch.float32))
        np.testing.assert_allclose(latent, model.encoder(x)[1].numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_requested_without_cuda_is_an_error():
    with pytest.raises(InputError, match="CUDA is not available"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_trains_on_gpu(counts):
    model, history = fit(counts, **MODEL, **TRAIN, device=resolve_device("auto"))
    assert np.isfinite(history["loss"]).all()
    assert next(model.parameters()).device.type == "cpu"


@pytest.mark.parametrize("layout", ["scipy", "csr"])
def test_sparse_layouts_give_the_dense_batches(counts, layout):
    from train import CountBatches

    device = torch.device("cpu")
    dense = CountBatches(counts, device, "dense")
    other = CountBatches(counts, device, layout)
    order = torch.randperm(counts.shape[0], generator=torch.Generator().manual_seed(5))
    got = list(other.epoch(order, 64))
    want = list(dense.epoch(order, 64))
    assert len(got) == len(want) == counts.shape[0] // 64
    for g, w in zip(got, want):
        assert torch.equal(g, w)


def test_sparse_layout_trains_identically(counts):
    a, ha = fit(counts, **MODEL, **TRAIN, layout="dense")
    b, hb = fit(counts, **MODEL, **TRAIN, layout="csr")
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


def test_compiled_loss_trains_like_eager(counts, monkeypatch):
    """torch.compile changes the speed, not the maths: same losses to float tolerance.

    Inductor draws its own random numbers by default; ``fallback_random`` makes it use
    eager's generator, so both runs sample the same latents.
    """
    import torch._inductor.config

    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)
    torch._dynamo.reset()
    _, eager = fit(counts, **MODEL, **{**TRAIN, "epochs": 2}, compile_loss=False)
    _, compiled = fit(counts, **MODEL, **{**TRAIN, "epochs": 2}, compile_loss=True)
    np.testing.assert_allclose(compiled[list(LOSS_TERMS)].to_numpy(), eager[list(LOSS_TERMS)].to_numpy(), rtol=1e-3)


def test_interrupted_training_resumes_exactly(counts, tmp_path):
    """A run killed after epoch 5 continues from its checkpoint to the same model."""
    ckpt = tmp_path / "model.pt.checkpoint"
    whole, whole_history = fit(counts, **MODEL, **{**TRAIN, "epochs": 8}, compile_loss=False)

    def interrupt(row):
        if row["epoch"] == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(counts, **MODEL, **{**TRAIN, "epochs": 8}, compile_loss=False, checkpoint_path=ckpt,
            checkpoint_every=2, on_epoch=interrupt)
    assert ckpt.exists()
    epochs_run = []
    resumed, history = fit(counts, **MODEL, **{**TRAIN, "epochs": 8}, compile_loss=False, checkpoint_path=ckpt,
                           checkpoint_every=2, on_epoch=lambda row: epochs_run.append(row["epoch"]))
    assert epochs_run == [5, 6, 7, 8]  # resumed after the epoch-4 checkpoint
    for k, v in whole.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    np.testing.assert_array_equal(history[list(LOSS_TERMS)].to_numpy(), whole_history[list(LOSS_TERMS)].to_numpy())


def test_checkpoint_of_other_settings_is_ignored(counts, tmp_path):
    ckpt = tmp_path / "model.pt.checkpoint"
    with pytest.raises(KeyboardInterrupt):
        fit(counts, **MODEL, **{**TRAIN, "epochs": 4}, checkpoint_path=ckpt, checkpoint_every=1,
            on_epoch=lambda row: (_ for _ in ()).throw(KeyboardInterrupt) if row["epoch"] == 2 else None)
    epochs_run = []
    fit(counts, **MODEL, **{**TRAIN, "epochs": 4, "lr": 2e-3}, checkpoint_path=ckpt,
        on_epoch=lambda row: epochs_run.append(row["epoch"]))
    assert epochs_run == [1, 2, 3, 4]


def test_divergence_keeps_the_last_good_checkpoint(counts, tmp_path, monkeypatch):
    """Epoch 3 diverges: the error names it and the term, and the epoch-2 state stays on disk."""
    import train

    calls = {"n": 0}
    steps_per_epoch = counts.shape[0] // TRAIN["batch_size"]

    def diverging_loss(*args, **kwargs):
        terms = train_ivae_loss(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] > 2 * steps_per_epoch:
            terms["kl"] = terms["kl"] * float("nan")
        return terms

    train_ivae_loss = train.ivae_loss
    monkeypatch.setattr(train, "ivae_loss", diverging_loss)
    ckpt = tmp_path / "model.pt.checkpoint"
    with pytest.raises(FloatingPointError, match="epoch 3: non-finite kl"):
        fit(counts, **MODEL, **{**TRAIN, "epochs": 5}, compile_loss=False, checkpoint_path=ckpt, checkpoint_every=1)
    state = torch.load(ckpt, weights_only=True)
    assert len(state["history"]) == 2
