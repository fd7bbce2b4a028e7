"""`paper_reference` rule: the reference package (``iVAE`` 0.0.5) trained as the paper did,
scored by both protocols.

The package's own loop (``agent.fit``), its defaults (hidden 128, latent 10, i_dim 2,
lr 1e-4, beta 1) and ``irecon`` 5 for its iVAE or 0 for its VAE (the paper's Figure 1C),
on the dataset's highly variable genes' raw counts (the package applies its log1p itself),
for ``steps`` steps (the package's "epochs"; the figure reads step 5,000). Three changes,
each needed to run it at all or to reproduce it:

- every random stream is seeded with the run's seed (the package seeds nothing);
- its minibatch has at least 3 x latent_dim cells (paper_protocol.paper_batch_size);
- its reference clusters are paper_protocol.reference_clusters (the same KMeans, seeded),
  so that both model families are scored against the same reference.

Writes ``trace.tsv`` (the package's loss terms and scores at every step), ``model.pt``
(its network's weights) and ``scores.tsv``: the paper's protocol (paper_protocol.paper_scores
after training), the mean of the package's own trace over as many last steps
(``paper_trace``, the scores as the package prints them), and this workflow's protocol
(the posterior mean of every cell against the dataset's reference labels).
"""

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # the package's progress bar: one line per step in the log

import numpy as np
import pandas as pd
import torch

from h5ad_parts import read_counts_layer, read_obs_columns
from metrics import embedding_metrics, known_reference
from paper_protocol import (METRICS, PACKAGE_DEFAULTS, paper_batch_size, paper_scores, reference_clusters)
from rule_io import InputError, atomic_path, log, setup_logging
from train import seed_everything

LOSS_COLUMNS = ["loss", "recon", "irecon_loss", "kl", "dip", "tc", "mmd"]


def seed_all(seed: int) -> None:
    """Python's, NumPy's and torch's streams (the package draws from the global ones)."""
    seed_everything(seed, torch.device("cpu"))


def train_reference(counts, *, irecon: float, steps: int, seed: int, reference=None):
    """The package's agent on ``counts`` (cells x genes, dense raw counts), trained for
    ``steps`` steps on the CPU. ``reference``: the reference clusters its per-step scores
    use (default: paper_protocol.reference_clusters at the package's latent_dim)."""
    import anndata as ad
    from iVAE import agent

    counts = np.asarray(counts, dtype=np.float32)
    seed_all(seed)
    adata = ad.AnnData(X=counts)
    adata.layers["counts"] = counts
    model = agent(adata, layer="counts", irecon=float(irecon), device=torch.device("cpu"), **PACKAGE_DEFAULTS)
    model.batch_size = paper_batch_size(counts.shape[0], PACKAGE_DEFAULTS["latent_dim"])
    model.labels = (reference_clusters(model.X, PACKAGE_DEFAULTS["latent_dim"], seed) if reference is None
                    else np.asarray(reference))
    seed_all(seed)
    model.fit(epochs=steps)
    return model


def trace_table(model) -> pd.DataFrame:
    """One row per step: the package's loss terms and its scores."""
    trace = pd.concat([pd.DataFrame(model.loss, columns=LOSS_COLUMNS),
                       pd.DataFrame(model.score, columns=METRICS)], axis=1)
    trace.insert(0, "step", np.arange(1, len(trace) + 1))
    return trace


@torch.no_grad()
def posterior_mean(model, chunk: int = 4096) -> np.ndarray:
    """q_m of every cell (the package's encoder on its log1p input), without gradients."""
    x = torch.as_tensor(model.X, dtype=torch.float32)
    return torch.cat([model.nn.encoder(x[i:i + chunk])[1] for i in range(0, len(x), chunk)]).numpy()


def score_reference(model, labels, known, *, seed: int, n_batches: int, max_cells=None) -> pd.DataFrame:
    """The three rows of scores.tsv for a trained package model (see the module docstring)."""
    seed_all(seed)
    paper = paper_scores(lambda rows: model.take_latent(model.X[rows]), model.labels,
                         batch_size=model.batch_size, n_batches=n_batches, seed=seed)
    last = pd.DataFrame(model.score[-n_batches:], columns=METRICS).mean()
    workflow = embedding_metrics(posterior_mean(model)[known], labels, seed=seed, max_cells=max_cells)
    return pd.DataFrame([
        {"protocol": "paper", **{m: paper[m] for m in METRICS}},
        {"protocol": "paper_trace", **last.to_dict()},
        {"protocol": "workflow", **{m: workflow[m] for m in METRICS}},
    ])


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    torch.set_num_threads(snakemake.threads)
    seed, method = int(snakemake.params.seed), snakemake.params.method
    counts, _ = read_counts_layer(snakemake.input.data)
    obs = read_obs_columns(snakemake.input.data, [], with_index=True, what=snakemake.input.data)
    labels, kind, known = known_reference(snakemake.input.labels, obs.index)
    if kind != "labels":
        raise InputError(f"{snakemake.input.labels}: the paper's protocol is compared on labelled datasets only "
                         f"(this one has no label_key).")
    irecon = float(snakemake.params.irecon[method])
    log.info("reference package: %s (irecon %g), %d steps, seed %d, %d cells x %d genes", method, irecon,
             snakemake.params.steps, seed, *counts.shape)
    model = train_reference(counts.toarray(), irecon=irecon, steps=int(snakemake.params.steps), seed=seed)
    log.info("batch %d cells; last step: %s", model.batch_size, dict(zip(METRICS, np.round(model.score[-1], 3))))
    scores = score_reference(model, labels, known, seed=seed, n_batches=int(snakemake.params.scoring_batches),
                             max_cells=snakemake.params.max_cells)
    scores.insert(0, "seed", seed)
    scores.insert(0, "method", method)
    scores["batch_size"] = model.batch_size
    scores["steps"] = len(model.score)
    log.info("\n%s", scores.to_string(index=False))
    with atomic_path(snakemake.output.trace) as tmp:
        trace_table(model).to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    with atomic_path(snakemake.output.model) as tmp:
        torch.save({"format": "iVAE-0.0.5/state_dict", "irecon": irecon, "seed": seed,
                    "state_dict": model.nn.state_dict()}, tmp)
    with atomic_path(snakemake.output.scores) as tmp:
        scores.to_csv(tmp, sep="\t", index=False)


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
