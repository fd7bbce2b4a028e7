"""Extract embeddings from a trained iVAE: eval mode, no gradients, in batches.

Writes ``embedding.h5ad`` (the preprocessed obs; obsm ``X_ivae`` = posterior mean q_m,
``X_ivae_interp`` = the i_dim interpretative embedding, ``X_ivae_ld`` = the latent after
the interpretative module) and, beside it, ``latent.npy`` and ``iembed.npy`` (the
reference package's output names for q_m and the interpretative embedding).
"""


import numpy as np
import scipy.sparse as sp
import torch

from checkpoint import load_checkpoint
from covariates import covariate_codes
from h5ad_parts import read_counts_layer, read_obs_columns
from rule_io import InputError, atomic_path, log, setup_logging, write_h5ad
from h5ad_parts import read_obs


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
