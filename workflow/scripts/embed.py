"""Extract embeddings from a trained iVAE: eval mode, no gradients, in batches.

Writes ``embedding.h5ad`` (the preprocessed obs; obsm ``X_ivae`` = posterior mean q_m,
``X_ivae_interp`` = the i_dim interpretative embedding, ``X_ivae_ld`` = the latent after
the interpretative module) and, beside it, ``latent.npy`` and ``iembed.npy`` (the
reference package's output names for q_m and the interpretative embedding).
"""


import numpy as np
import scipy.sparse as sp
import torch

from common_io import (InputError, atomic_path, covariate_codes, load_checkpoint, log, read_counts_layer,
                       setup_logging, write_h5ad)


def embed(model, counts, *, covariates=None, batch_size: int = 4096, device: str | torch.device = "cpu"):
    """Posterior-mean embeddings of every cell, computed ``batch_size`` cells at a time.

    ``counts``: cells x genes raw counts (dense or scipy sparse; only one batch is ever
    densified); ``covariates``: integer codes, cells x covariates, for a model trained with
    them. Returns numpy arrays ``(latent, interp, after)`` of shapes (cells, latent_dim),
    (cells, i_dim), (cells, latent_dim).
    """
    model = model.to(device).eval()
    counts = counts.tocsr() if sp.issparse(counts) else np.asarray(counts)
    codes = None if covariates is None else torch.as_tensor(
        np.asarray(covariates, dtype=np.int64).reshape(counts.shape[0], -1), device=device)
    outs = ([], [], [])
    with torch.inference_mode():
        for start in range(0, counts.shape[0], batch_size):
            block = counts[start:start + batch_size]
            block = block.toarray() if sp.issparse(block) else block
            x = torch.as_tensor(block, dtype=torch.float32, device=device)
            batch_codes = None if codes is None else codes[start:start + batch_size]
            for out, t in zip(outs, model.embed(x, batch_codes)):
                out.append(t.cpu().numpy())
    return tuple(np.concatenate(o) if o else np.empty((0, 0), np.float32) for o in outs)


def main(snakemake) -> None:
    import anndata as ad

    setup_logging(snakemake.log[0])
    torch.set_num_threads(snakemake.threads)
    counts, genes, obs = read_counts_layer(snakemake.input.data, with_obs=True)
    model, ckpt = load_checkpoint(snakemake.input.model)
    if list(map(str, genes)) != ckpt["gene_names"]:
        raise InputError(
            f"{snakemake.input.model} was trained on other genes than {snakemake.input.data} holds; rerun training."
        )
    covariates = ckpt.get("covariates", {"keys": [], "categories": []})
    codes, _ = covariate_codes(obs, covariates["keys"], covariates["categories"], what=snakemake.input.data)
    latent, interp, after = embed(model, counts, covariates=codes, batch_size=snakemake.params.batch_size)
    log.info("embedded %d cells: latent %s, interpretative %s", counts.shape[0], latent.shape, interp.shape)
    out = ad.AnnData(obs=obs)
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
