"""`paper_score_workflow` rule: one of this workflow's trained models scored by the iVAE
paper's protocol (paper_protocol.paper_scores).

Sampled latents z ~ q(z | x) of minibatches of the package's size, against the same
reference clusters as the reference package's runs (KMeans, k = the package's latent_dim,
of log1p counts, seeded with the run's seed). This workflow's own protocol for the same
model is its row of the metrics table (run_metrics).
"""

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from checkpoint import load_checkpoint
from covariates import covariate_codes
from h5ad_parts import read_counts_layer, read_obs_columns
from paper_protocol import METRICS, PACKAGE_DEFAULTS, paper_batch_size, paper_scores, reference_clusters
from rule_io import atomic_path, log, setup_logging


def latent_sampler(model, counts, codes=None):
    """``sample(rows)``: z ~ q(z | counts of those rows) from the model (eval mode, no
    gradients; torch's global generator draws the noise)."""
    counts = sp.csr_matrix(counts)

    @torch.no_grad()
    def sample(rows):
        x = torch.as_tensor(counts[rows].toarray(), dtype=torch.float32)
        c = None if codes is None else torch.as_tensor(np.asarray(codes)[rows], dtype=torch.int64)
        return model.inference(x, c)["q_z"].numpy()

    return sample


def score_workflow_model(model, counts, *, seed: int, n_batches: int, codes=None) -> dict:
    """The paper's protocol for a trained workflow model on ``counts`` (cells x genes)."""
    counts = sp.csr_matrix(counts, dtype=np.float32)
    k = PACKAGE_DEFAULTS["latent_dim"]
    reference = reference_clusters(np.log1p(counts.toarray()), k, seed)
    torch.manual_seed(seed)
    return paper_scores(latent_sampler(model.eval(), counts, codes), reference,
                        batch_size=paper_batch_size(counts.shape[0], k), n_batches=n_batches, seed=seed)


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    torch.set_num_threads(snakemake.threads)
    seed = int(snakemake.params.seed)
    counts, _ = read_counts_layer(snakemake.input.data)
    model, ckpt = load_checkpoint(snakemake.input.model)
    covariates = ckpt.get("covariates", {"keys": [], "categories": []})
    what = str(snakemake.input.data)
    codes, _ = covariate_codes(read_obs_columns(snakemake.input.data, covariates["keys"], what=what),
                               covariates["keys"], covariates["categories"], what=what)
    scores = score_workflow_model(model, counts, seed=seed, n_batches=int(snakemake.params.scoring_batches),
                                  codes=codes)
    row = pd.DataFrame([{"method": snakemake.params.method, "seed": seed, "protocol": "paper",
                         **{m: scores[m] for m in METRICS}}])
    log.info("\n%s", row.to_string(index=False))
    with atomic_path(snakemake.output[0]) as tmp:
        row.to_csv(tmp, sep="\t", index=False)


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
