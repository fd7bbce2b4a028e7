"""`train_standard` rule: the field's standard models from scvi-tools beside the iVAE.

- ``scVI`` (Lopez et al. 2018): scvi-tools' ``SCVI`` at its defaults (one hidden layer of
  128, dropout 0.1, zero-inflated negative binomial, observed library size);
- ``LDVAE`` (Svensson et al. 2020): scvi-tools' ``LinearSCVI`` at its defaults (a linear
  decoder: its loadings, genes x components, are read as gene programs).

Held equal with every other method: the highly variable genes' raw counts, the batch
covariate where the dataset has one (scVI: ``batch_key``, then the other covariate keys as
scvi-tools' categorical covariates; LDVAE, which has a batch key only: every covariate
combined), ``n_latent`` = the dataset's latent_dim, the run's seed
(``scvi.settings.seed``), and the cells: the same training / validation / test split as the
workflow's models at that seed (train.held_out_split), the validation cells for early
stopping and the test cells for the held-out likelihood only; and the training protocol:
train.lr and train.batch_size, the KL weight 1 throughout (no warm-up, as the workflow's
models), early stopping on the validation ELBO with train.patience, the best epoch's
weights kept; at most train.epochs epochs, and with ``auto`` scvi-tools' default for the
dataset's size (400 up to 20,000 cells, fewer above), the rule ``auto`` follows for the
workflow's models too. A run whose training diverges (non-finite values) is recorded as
such (write_diverged), not retried: retrying would choose runs by their outcome.

Writes the run's files as the ``embed`` rule writes them for a workflow model, so that
run_metrics, the figures and the verdict read them alike: ``embedding.h5ad`` (obsm
``X_ivae`` = the posterior mean), ``latent.npy``, ``training_log.tsv`` (per epoch the
training and validation ELBO loss, and the epoch kept), ``test_likelihood.tsv`` (the negative ELBO and
scvi-tools' importance-sampled marginal log-likelihood, K = evaluation.importance_samples,
per test cell); and ``loadings.tsv`` (LDVAE: each component's genes by loading, as
component_genes.tsv ranks the iVAE's), and the saved model.
"""

import numpy as np
import pandas as pd
import scipy.sparse as sp

from covariates import covariate_codes
from h5ad_parts import read_counts_layer, read_obs, read_obs_columns
from rule_io import InputError, atomic_path, log, setup_logging, write_h5ad
from train import held_out_split

#: The standard models and their scvi-tools classes.
MODELS = {"scVI": "SCVI", "LDVAE": "LinearSCVI"}


def default_max_epochs(n_cells: int) -> int:
    """scvi-tools' default: min(round(20,000 / cells x 400), 400)."""
    return int(min(round(20000 / n_cells * 400), 400))


def make_anndata(counts, genes, covariates: pd.DataFrame | None = None):
    """An AnnData of raw counts (CSR float32) with the covariates as categorical obs."""
    import anndata as ad

    adata = ad.AnnData(X=sp.csr_matrix(counts, dtype=np.float32),
                       var=pd.DataFrame(index=pd.Index(map(str, genes), name=None)))
    adata.var_names_make_unique()
    if covariates is not None:
        for key in covariates:
            adata.obs[f"covariate_{key}"] = pd.Categorical(covariates[key].astype(str).to_numpy())
    return adata


def setup(adata, name: str) -> dict:
    """Register ``adata``'s covariates with the model class ``name``; what was registered.
    scVI takes the first covariate as its batch and the others as categorical covariates;
    LDVAE (``LinearSCVI``) has a batch key only, so there it is every covariate combined
    (donor x assay, ...): the same information as the other models get."""
    import scvi

    keys = [c for c in adata.obs if c.startswith("covariate_")]
    cls = getattr(scvi.model, MODELS[name])
    if name == "LDVAE" and len(keys) > 1:
        adata.obs["covariates_joint"] = pd.Categorical(
            adata.obs[keys].astype(str).agg(" | ".join, axis=1).to_numpy())
        cls.setup_anndata(adata, batch_key="covariates_joint")
        return {"batch_key": "covariates_joint"}
    kwargs = {"batch_key": keys[0] if keys else None,
              **({"categorical_covariate_keys": keys[1:]} if len(keys) > 1 else {})}
    cls.setup_anndata(adata, **kwargs)
    return kwargs


def fit(adata, name: str, *, latent_dim: int, seed: int, split, patience: int, max_epochs: int | None = None,
        batch_size: int = 128, lr: float = 1e-3, accelerator: str = "cpu", checkpoints: str | None = None):
    """Train ``name`` (scVI or LDVAE) on ``adata`` with the given (train, validation, test)
    ``split``, under the workflow models' training protocol: the KL weight 1 from the first
    epoch (scvi-tools' default warms it up over 400 epochs, during which the unweighted
    validation ELBO that early stopping reads rises, so the runs stopped at a poor point),
    learning rate ``lr``, early stopping on the validation ELBO with ``patience``, and the
    weights of the epoch with the lowest validation ELBO kept. ``checkpoints``: a folder
    for that epoch's weights (a temporary one if None). Returns (model, history table)."""
    import tempfile

    import scvi
    from scvi.train import SaveCheckpoint

    scvi.settings.seed = seed
    scvi.settings.dl_num_workers = 0
    setup(adata, name)
    model = getattr(scvi.model, MODELS[name])(adata, n_latent=latent_dim)
    train_idx, val_idx, test_idx = (np.asarray(i, dtype=np.int64) for i in split)
    if len(val_idx) == 0:
        raise InputError("the standard models stop early on validation cells: set train.validation_fraction > 0.")
    with tempfile.TemporaryDirectory(dir=checkpoints) as folder:
        best = SaveCheckpoint(dirpath=folder, monitor="elbo_validation", mode="min", load_best_on_end=True)
        try:
            model.train(max_epochs=max_epochs or default_max_epochs(adata.n_obs), accelerator=accelerator, devices=1,
                        batch_size=batch_size, early_stopping=True, early_stopping_patience=patience,
                        early_stopping_monitor="elbo_validation",
                        plan_kwargs={"lr": lr, "n_epochs_kl_warmup": None, "n_steps_kl_warmup": None},
                        datasplitter_kwargs={"external_indexing": [train_idx, val_idx, test_idx]},
                        callbacks=[best], enable_checkpointing=True, enable_progress_bar=False)
        except ValueError as error:
            if "invalid values" not in str(error):
                raise
            raise FloatingPointError(f"{name} diverged at seed {seed}: non-finite values in training "
                                     f"({str(error).splitlines()[0][:120]}...); lower train.lr or check the input."
                                     ) from None
    return model, history_table(model.history)


def history_table(history: dict) -> pd.DataFrame:
    """Per epoch: the training and validation loss (negative ELBO per cell); ``selected``:
    the epoch with the lowest validation loss, whose weights are kept."""
    train = history["elbo_train"].iloc[:, 0].to_numpy()
    val = history["elbo_validation"].iloc[:, 0].to_numpy()
    n = min(len(train), len(val))
    table = pd.DataFrame({"epoch": np.arange(1, n + 1), "loss": train[:n], "val_loss": val[:n]})
    table["selected"] = table["epoch"] == int(np.argmin(val[:n])) + 1
    return table


def held_out(model, test_idx, n_samples: int, *, max_cells: int = 10000, seed: int = 0) -> dict:
    """Mean per test cell of the negative ELBO and of the importance-sampled negative
    marginal log-likelihood (NaN without test cells); at most ``max_cells`` test cells, the
    seeded subsample the workflow's models use (embed.held_out_likelihood), so the columns
    are those of their test_likelihood.tsv."""
    idx = np.sort(np.asarray(test_idx, dtype=np.int64))
    if len(idx) > max_cells:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=max_cells, replace=False))
    if len(idx) == 0:
        return {"test_cells": 0, "samples": n_samples, "test_nelbo": float("nan"), "test_iwae_nll": float("nan")}
    elbo = model.get_elbo(indices=idx, return_mean=False)
    marginal = model.get_marginal_ll(indices=idx, n_mc_samples=n_samples, return_mean=False)
    return {"test_cells": len(idx), "samples": n_samples, "test_nelbo": float(-np.asarray(elbo).mean()),
            "test_iwae_nll": float(-np.asarray(marginal).mean())}


def loadings_table(model) -> pd.DataFrame:
    """LDVAE's loadings, long: component, gene, loading, rank (1 = largest |loading|
    within the component)."""
    wide = model.get_loadings()
    long = wide.reset_index(names="gene").melt(id_vars="gene", var_name="component", value_name="loading")
    long["component"] = long["component"].str.replace("Z_", "", regex=False).astype(int)
    long["rank"] = long["loading"].abs().groupby(long["component"]).rank(method="first", ascending=False).astype(int)
    return long.sort_values(["component", "rank"], ignore_index=True)[["component", "gene", "loading", "rank"]]


def quiet_lightning() -> None:
    """Keep Lightning's banners (accelerators, tips, its SLURM hint, deprecations, early
    stopping) off the console, which several jobs share; this script logs what matters."""
    import logging
    import warnings

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in (".*srun.*", ".*LeafSpec.*", ".*smaller than the logging interval.*"):
        warnings.filterwarnings("ignore", message=message)


def write_diverged(snakemake, adata, message: str, n_test: int, max_epochs: int, keys) -> None:
    """A run whose training diverged, as data: every output written, the embedding and the
    likelihood NaN, ``uns["ivae"]["diverged"]`` the reason. run_metrics records it as a row
    of NaN scores with the reason in its note; the figures, components and scIB metrics
    leave it out; comparisons pair the seeds where both models ran."""
    import os

    import anndata as ad

    latent = np.full((adata.n_obs, int(snakemake.params.latent_dim)), np.nan, dtype=np.float32)
    os.makedirs(snakemake.output.model, exist_ok=True)
    with open(os.path.join(snakemake.output.model, "diverged.txt"), "w") as handle:
        handle.write(message + "\n")
    outputs = {snakemake.output.log_tsv: pd.DataFrame(columns=["epoch", "loss", "val_loss", "selected"]),
               snakemake.output.likelihood: pd.DataFrame([{"test_cells": n_test,
                                                            "samples": int(snakemake.params.importance_samples),
                                                            "test_nelbo": np.nan, "test_iwae_nll": np.nan}]),
               snakemake.output.loadings: pd.DataFrame(columns=["component", "gene", "loading", "rank"])}
    for path, frame in outputs.items():
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, sep="\t", index=False)
    with atomic_path(snakemake.output.latent) as tmp:
        np.save(tmp, latent)
    out = ad.AnnData(obs=read_obs(snakemake.input.data))
    out.obsm["X_ivae"] = latent
    out.uns["ivae"] = {"model": snakemake.params.method, "epochs": max_epochs, "covariates": list(keys),
                       "diverged": message}
    write_h5ad(out, snakemake.output.h5ad)


def main(snakemake) -> None:
    import anndata as ad
    import scvi
    import torch

    setup_logging(snakemake.log[0])
    quiet_lightning()
    torch.set_num_threads(snakemake.threads)
    name, seed = snakemake.params.method, int(snakemake.params.seed)
    train = snakemake.params.train
    counts, genes = read_counts_layer(snakemake.input.data)
    keys = list(snakemake.params.covariates)
    what = str(snakemake.input.data)
    obs = read_obs_columns(snakemake.input.data, keys, what=what) if keys else None
    if keys:
        covariate_codes(obs, keys, what=what)  # the same checks as the workflow's models
    adata = make_anndata(counts, genes, obs)
    split = held_out_split(adata.n_obs, float(train["validation_fraction"]), float(train["test_fraction"]), seed)
    accelerator = "gpu" if torch.cuda.is_available() and train["device"] != "cpu" else "cpu"
    max_epochs = default_max_epochs(adata.n_obs) if train["epochs"] == "auto" else int(train["epochs"])
    log.info("%s: %d cells x %d genes, covariates %s, seed %d, %s, at most %d epochs; %d training, %d validation, "
             "%d test cells", name, *adata.shape, keys or "none", seed, accelerator, max_epochs, *map(len, split))
    try:
        model, history = fit(adata, name, latent_dim=int(snakemake.params.latent_dim), seed=seed, split=split,
                             patience=int(train["patience"]), max_epochs=max_epochs, batch_size=int(train["batch_size"]),
                             lr=float(train["lr"]), accelerator=accelerator,
                             checkpoints=getattr(snakemake.resources, "tmpdir", None))
    except FloatingPointError as error:
        log.error("%s; the run is recorded as diverged (NaN embedding and scores), not retried", error)
        write_diverged(snakemake, adata, str(error), len(split[2]), max_epochs, keys)
        return
    kept = history[history["selected"]].iloc[0]
    log.info("%d epochs; kept epoch %d, validation loss %.2f", len(history), kept["epoch"], kept["val_loss"])
    latent = np.asarray(model.get_latent_representation(), dtype=np.float32)
    likelihood = held_out(model, split[2], int(snakemake.params.importance_samples),
                          max_cells=int(snakemake.params.likelihood_cells), seed=int(snakemake.params.eval_seed))
    log.info("held out: %s", likelihood)
    with atomic_path(snakemake.output.log_tsv) as tmp:
        history.to_csv(tmp, sep="\t", index=False)
    with atomic_path(snakemake.output.likelihood) as tmp:
        pd.DataFrame([likelihood]).to_csv(tmp, sep="\t", index=False)
    with atomic_path(snakemake.output.latent) as tmp:
        np.save(tmp, latent)
    loadings = loadings_table(model) if name == "LDVAE" else pd.DataFrame(columns=["component", "gene", "loading",
                                                                                  "rank"])
    with atomic_path(snakemake.output.loadings) as tmp:
        loadings.to_csv(tmp, sep="\t", index=False)
    model.save(snakemake.output.model, overwrite=True, save_anndata=False)
    out = ad.AnnData(obs=read_obs(snakemake.input.data))
    out.obsm["X_ivae"] = latent
    out.uns["ivae"] = {"model": name, "package": f"scvi-tools {scvi.__version__}",
                       "epochs": max_epochs, "covariates": keys}
    write_h5ad(out, snakemake.output.h5ad)


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
