"""Extract embeddings from a trained iVAE: eval mode, no gradients, in batches.

Writes ``embedding.h5ad`` (the preprocessed obs; obsm ``X_ivae`` = posterior mean q_m,
``X_ivae_interp`` = the i_dim interpretative embedding, ``X_ivae_ld`` = the latent after
the interpretative module) and, beside it, ``latent.npy`` and ``iembed.npy`` (the
reference package's output names for q_m and the interpretative embedding), and
``test_likelihood.tsv``: on the model's test cells (never trained on, never used for early
stopping), the mean negative ELBO and importance-weighted bound per cell.
"""


import numpy as np
import scipy.sparse as sp
import torch

import pandas as pd

from checkpoint import load_checkpoint
from covariates import covariate_codes
from h5ad_parts import read_counts_layer, read_obs, read_obs_columns
from rule_io import InputError, atomic_path, log, setup_logging, write_h5ad


def embed(model, counts, *, covariates=None, batch_size: int = 4096, device: str | torch.device = "cpu"):
    """Posterior-mean embeddings of every cell, computed ``batch_size`` cells at a time.

    ``counts``: cells x genes raw counts (dense or scipy sparse; only one batch is ever
    densified, into one reused buffer); ``covariates``: integer codes, cells x covariates,
    for a model trained with them. Returns float32 numpy arrays ``(latent, interp, after)``
    of shapes (cells, latent_dim), (cells, i_dim), (cells, latent_dim), filled in place:
    an atlas's embedding costs its outputs and one batch, not a list of per-batch pieces.
    """
    model = model.to(device).eval()
    sparse = sp.issparse(counts)
    counts = counts.tocsr() if sparse else np.asarray(counts)
    n_cells = counts.shape[0]
    codes = None if covariates is None else torch.as_tensor(
        np.asarray(covariates, dtype=np.int64).reshape(n_cells, -1), device=device)
    outs = None
    buffer = np.empty((min(batch_size, n_cells), counts.shape[1]), dtype=np.float32) if sparse else None
    with torch.inference_mode():
        for start in range(0, n_cells, batch_size):
            stop = min(start + batch_size, n_cells)
            block = counts[start:stop]
            if sparse:
                block = block.astype(np.float32, copy=False).toarray(out=buffer[:stop - start])
            x = torch.as_tensor(block, dtype=torch.float32, device=device)
            batch_codes = None if codes is None else codes[start:stop]
            pieces = [t.cpu().numpy() for t in model.embed(x, batch_codes)]
            if outs is None:
                outs = tuple(np.empty((n_cells, p.shape[1]), dtype=np.float32) for p in pieces)
            for out, piece in zip(outs, pieces):
                out[start:stop] = piece
    return outs if outs is not None else tuple(np.empty((0, 0), np.float32) for _ in range(3))


def held_out_likelihood(model, counts, cells, *, covariates=None, n_samples: int = 100, max_cells: int = 10000,
                        seed: int = 0, batch_size: int = 64) -> dict:
    """Mean per test cell of the negative ELBO and of the importance-weighted bound's
    negative (losses.held_out_bounds, ``n_samples`` posterior draws a cell), in nats; at
    most ``max_cells`` of ``cells`` (a seeded subsample). Both are upper bounds on
    -log p(x); the importance-weighted one is the tighter. Seeded: the same model gives the
    same numbers on the same machine."""
    from losses import held_out_bounds, log_importance_weights

    cells = np.sort(np.asarray(cells, dtype=np.int64))
    if len(cells) > max_cells:
        cells = np.sort(np.random.default_rng(seed).choice(cells, size=max_cells, replace=False))
    if not len(cells):
        return {"test_cells": 0, "samples": n_samples, "test_nelbo": float("nan"), "test_iwae_nll": float("nan")}
    model = model.eval()
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    codes = None if covariates is None else np.asarray(covariates, dtype=np.int64).reshape(counts.shape[0], -1)
    nelbo, iwae = [], []
    with torch.inference_mode():
        for start in range(0, len(cells), batch_size):
            rows = cells[start:start + batch_size]
            block = counts[rows]
            block = block.toarray() if sp.issparse(block) else np.asarray(block)
            x = torch.as_tensor(block, dtype=torch.float32)
            batch_codes = None if codes is None else torch.as_tensor(codes[rows])
            bounds = held_out_bounds(log_importance_weights(model, x, n_samples, batch_codes))
            nelbo.append(bounds[0].double().numpy())
            iwae.append(bounds[1].double().numpy())
    torch.random.set_rng_state(generator_state)
    return {"test_cells": len(cells), "samples": n_samples, "test_nelbo": float(np.concatenate(nelbo).mean()),
            "test_iwae_nll": float(np.concatenate(iwae).mean())}


def main(snakemake) -> None:
    import anndata as ad

    setup_logging(snakemake.log[0])
    torch.set_num_threads(snakemake.threads)
    counts, genes = read_counts_layer(snakemake.input.data)
    model, ckpt = load_checkpoint(snakemake.input.model)
    if list(map(str, genes)) != ckpt["gene_names"]:
        raise InputError(
            f"{snakemake.input.model} was trained on other genes than {snakemake.input.data} holds; rerun training."
        )
    covariates = ckpt.get("covariates", {"keys": [], "categories": []})
    what = str(snakemake.input.data)
    codes, _ = covariate_codes(read_obs_columns(snakemake.input.data, covariates["keys"], what=what),
                               covariates["keys"], covariates["categories"], what=what)
    latent, interp, after = embed(model, counts, covariates=codes, batch_size=snakemake.params.batch_size)
    log.info("embedded %d cells: latent %s, interpretative %s", counts.shape[0], latent.shape, interp.shape)
    test_cells = ckpt["test_cells"].numpy() if "test_cells" in ckpt else np.empty(0, np.int64)
    likelihood = held_out_likelihood(model, counts, test_cells, covariates=codes,
                                     n_samples=snakemake.params.importance_samples,
                                     max_cells=snakemake.params.likelihood_cells, seed=snakemake.params.seed)
    log.info("held out: %s", likelihood)
    with atomic_path(snakemake.output.likelihood) as tmp:
        pd.DataFrame([likelihood]).to_csv(tmp, sep="\t", index=False)
    del counts  # the full obs (an atlas's per-cell strings) is read only once the counts are gone
    out = ad.AnnData(obs=read_obs(snakemake.input.data))
    out.obsm["X_ivae"] = latent
    out.obsm["X_ivae_interp"] = interp
    out.obsm["X_ivae_ld"] = after
    out.uns["ivae"] = {"model_params": ckpt["model_params"], "train_params": ckpt["train_params"],
                       "covariates": covariates["keys"], "epochs": ckpt.get("epochs", ckpt["train_params"]["epochs"])}
    write_h5ad(out, snakemake.output.h5ad)
    for path, array in ((snakemake.output.latent, latent), (snakemake.output.iembed, interp)):
        with atomic_path(path) as tmp:
            np.save(tmp, array)


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
