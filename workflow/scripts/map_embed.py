"""`map_embed` rule: the query embedded by the reference's model.

The reference's model embeds the query in eval mode. A reference trained with covariates
needs the same obs columns in the query; categories it never saw (new samples) get
weights of their own, trained on the query alone, every other weight frozen (scArches'
architecture surgery; ``mapping.surgery_epochs``, the reference's other training
settings and seed, CUDA when present).
"""

import scipy.sparse as sp

from rule_io import InputError, log, setup_logging, write_h5ad


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    import anndata as ad
    import torch

    from checkpoint import load_checkpoint
    from covariates import covariate_codes
    from embed import embed
    from model import ModelSettings
    from train import TrainSettings, covariate_surgery, fit, resolve_device

    torch.set_num_threads(snakemake.threads)
    query = ad.read_h5ad(snakemake.input.counts)
    model, ckpt = load_checkpoint(snakemake.input.model)
    covariates = ckpt.get("covariates", {"keys": [], "categories": []})
    what = f"query '{snakemake.params.query}'"
    codes, categories = None, covariates["categories"]
    if covariates["keys"]:
        observed = [sorted(query.obs[k].astype(str).unique()) if k in query.obs else None for k in covariates["keys"]]
        missing = [k for k, o in zip(covariates["keys"], observed) if o is None]
        if missing:
            raise InputError(f"{what}: the reference was trained conditioned on obs {covariates['keys']}; the "
                             f"query lacks {missing}. Give the query those columns (its own samples are new "
                             "categories, learnt by surgery).")
        grown = [list(c) + [v for v in o if v not in c] for c, o in zip(categories, observed)]
        if grown != [list(c) for c in categories]:
            log.info("%s: new categories %s: training their weights only (surgery)", what,
                     {k: g[len(c):] for k, c, g in zip(covariates["keys"], categories, grown)})
            model, trainable = covariate_surgery(model, categories, grown)
            codes, categories = covariate_codes(query.obs, covariates["keys"], grown, what=what)
            # the reference's training settings and seed, at most surgery_epochs epochs, on this machine
            settings = TrainSettings.from_config({**ckpt["train_params"], "device": "auto", "compile": False,
                                                  "epochs": snakemake.params.surgery_epochs, "test_fraction": 0.0})
            device = resolve_device(settings.device)
            model, _ = fit(sp.csr_matrix(query.X), ModelSettings(**{**ckpt["model_params"],
                                                                    "n_categories": tuple(map(len, grown))}),
                           settings, covariates=codes, initial=model, trainable=trainable, device=device)
        else:
            codes, _ = covariate_codes(query.obs, covariates["keys"], categories, what=what)
    latent, interp, after = embed(model, sp.csr_matrix(query.X), covariates=codes)
    out = ad.AnnData(obs=query.obs)
    out.obsm["X_ivae"], out.obsm["X_ivae_interp"], out.obsm["X_ivae_ld"] = latent, interp, after
    out.uns["mapping"] = {**dict(query.uns["mapping"]), "covariates": covariates["keys"],
                          "categories": {k: list(c) for k, c in zip(covariates["keys"], categories)}}
    write_h5ad(out, snakemake.output[0])


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
