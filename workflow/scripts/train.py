"""Train the iVAE on raw counts (the workflow's GPU rule).

The data go to the device once; each epoch draws a random permutation and slices it into
batches, without a DataLoader. Loss terms are summed on the device and read back once per
epoch, so the loop never waits for the host inside an epoch.
"""


import os
import random
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from common_io import InputError, atomic_path, log, save_checkpoint, setup_logging
from losses import LOSS_TERMS, LossWeights, ivae_loss
from model import VAE


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise the named torch device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"train.device is '{name}' but CUDA is not available on this machine.")
    return device


def seed_everything(seed: int, device: torch.device) -> None:
    """Seed Python, NumPy and torch; make CUDA kernels deterministic."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if device.type == "cuda":
        # cuBLAS needs a fixed workspace to be deterministic; set before the first matmul.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True)


def fit(
    counts,
    *,
    hidden_dim: int,
    latent_dim: int,
    i_dim: int,
    epochs: int,
    batch_size: int,
    lr: float,
    beta: float,
    irecon: float,
    dip: float = 0.0,
    tc: float = 0.0,
    info: float = 0.0,
    seed: int = 0,
    device: str | torch.device = "cpu",
    on_epoch=None,
):
    """Train a VAE on a cells x genes count matrix (dense or scipy sparse).

    Returns ``(model, history)``: the trained model (on the CPU, eval mode) and a
    DataFrame with one row per epoch: ``epoch``, ``seconds`` and each loss term (mean
    over the epoch's batches, weighted as in the objective). Batches are random
    permutations of the cells; the last incomplete batch of an epoch is dropped so every
    step sees ``batch_size`` cells. ``on_epoch(row)`` is called after each epoch.
    """
    device = torch.device(device) if isinstance(device, str) else device
    n_cells, n_genes = counts.shape
    if n_cells < batch_size:
        raise InputError(
            f"{n_cells} cells is fewer than one batch (train.batch_size={batch_size}); lower batch_size."
        )
    seed_everything(seed, device)
    dense = counts.toarray() if sp.issparse(counts) else np.asarray(counts)
    data = torch.as_tensor(dense, dtype=torch.float32, device=device)
    model = VAE(n_genes, hidden_dim, latent_dim, i_dim).to(device)
    model.train()
    fused = device.type == "cuda"
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=fused)
    weights = LossWeights(beta=beta, irecon=irecon, dip=dip, tc=tc, info=info)
    generator = torch.Generator(device=device).manual_seed(seed)
    n_batches = n_cells // batch_size

    history = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        totals = torch.zeros(len(LOSS_TERMS), device=device)
        order = torch.randperm(n_cells, device=device, generator=generator)
        for b in range(n_batches):
            batch = data[order[b * batch_size:(b + 1) * batch_size]]
            terms = ivae_loss(model, batch, weights, n_cells)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            totals += torch.stack([terms[k].detach() for k in LOSS_TERMS])
        means = (totals / n_batches).tolist()  # the one host sync of the epoch
        row = {"epoch": epoch, "seconds": time.perf_counter() - start, **dict(zip(LOSS_TERMS, means))}
        bad = [k for k in LOSS_TERMS if not np.isfinite(row[k])]
        if bad:
            raise FloatingPointError(
                f"training diverged at epoch {epoch}: non-finite {', '.join(bad)}; lower train.lr or check the input."
            )
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
    model.eval()
    return model.cpu(), pd.DataFrame(history)


def format_epoch(row: dict, epochs: int) -> str:
    terms = " ".join(f"{k}={row[k]:.4g}" for k in LOSS_TERMS)
    return f"epoch {row['epoch']}/{epochs} {row['seconds']:.3f}s {terms}"


def main(snakemake) -> None:
    import anndata as ad

    setup_logging(snakemake.log[0])
    model_params = dict(snakemake.params.model)
    train_params = dict(snakemake.params.train)
    device = resolve_device(train_params.pop("device"))
    if device.type == "cpu":
        torch.set_num_threads(snakemake.threads)
    log.info("torch %s on %s%s (threads: %d)", torch.__version__, device,
             f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "",
             torch.get_num_threads())

    adata = ad.read_h5ad(snakemake.input[0])
    counts = adata.layers["counts"]
    log.info("training on %d cells x %d genes; model %s; train %s",
             adata.n_obs, adata.n_vars, model_params, train_params)
    model, history = fit(
        counts, **model_params, **train_params, device=device,
        on_epoch=lambda row: log.info("%s", format_epoch(row, train_params["epochs"])),
    )
    log.info("done: %d epochs in %.1f s (%.3f s per epoch)", len(history), history["seconds"].sum(),
             history["seconds"].mean())
    save_checkpoint(
        snakemake.output.model, model, gene_names=adata.var_names, model_params=model_params,
        train_params={**train_params, "device": str(device)}, extra={"n_cells": adata.n_obs},
    )
    with atomic_path(snakemake.output.log_tsv) as tmp:
        history.to_csv(tmp, sep="\t", index=False)


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
