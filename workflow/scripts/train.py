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

from common_io import (InputError, atomic_path, log, read_counts_layer, save_checkpoint, setup_logging,
                       software_versions)
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


#: ``compile_loss="auto"`` compiles the loss for runs of at least this many steps.
COMPILE_MIN_STEPS = 5000
#: On the CPU, matrices up to this size are densified once; larger ones stay sparse.
CPU_DENSE_LIMIT_BYTES = 2 << 30
#: On CUDA, the dense matrix may take up to this fraction of the free device memory.
CUDA_DENSE_FRACTION = 0.5


class CountBatches:
    """The count matrix on the training device, served as random-permutation batches.

    Three layouts, chosen by size and device:
    - ``dense``: one cells x genes float32 tensor; a batch is a row gather.
    - ``scipy`` (CPU, too big to densify): the CSR matrix stays in host memory; each
      batch's rows are sliced and densified (only ``batch_size`` rows ever are).
    - ``csr`` (CUDA, too big to densify): CSR arrays on the device. Each epoch permutes
      the rows once on the device; batches are then contiguous nnz ranges whose bounds
      are known on the host, so densifying a batch never waits for the device.
    Every layout yields the same batches for the same permutation.
    """

    def __init__(self, counts, device: torch.device, layout: str = "auto"):
        self.device = device
        self.n_cells, self.n_genes = counts.shape
        if layout == "auto":
            layout = self.choose_layout(counts.shape, device)
        self.layout = layout
        if layout == "dense":
            dense = counts.toarray() if sp.issparse(counts) else np.asarray(counts)
            self.data = torch.as_tensor(dense, dtype=torch.float32, device=device)
            return
        csr = sp.csr_matrix(counts, dtype=np.float32)
        csr.sort_indices()
        if layout == "scipy":
            self.csr = csr
        elif layout == "csr":
            self.crow = torch.as_tensor(csr.indptr.astype(np.int64), device=device)
            self.col = torch.as_tensor(csr.indices.astype(np.int64), device=device)
            self.val = torch.as_tensor(csr.data, device=device)
        else:
            raise ValueError(f"unknown layout {layout!r}")

    @staticmethod
    def choose_layout(shape, device: torch.device) -> str:
        nbytes = 4 * shape[0] * shape[1]
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            return "dense" if nbytes <= CUDA_DENSE_FRACTION * free else "csr"
        return "dense" if nbytes <= CPU_DENSE_LIMIT_BYTES else "scipy"

    def epoch(self, order: torch.Tensor, batch_size: int):
        """Yield the full batches of one epoch, cells taken in ``order``."""
        n_batches = self.n_cells // batch_size
        if self.layout == "dense":
            for b in range(n_batches):
                yield self.data[order[b * batch_size:(b + 1) * batch_size]]
        elif self.layout == "scipy":
            order = order.cpu().numpy()
            for b in range(n_batches):
                block = self.csr[order[b * batch_size:(b + 1) * batch_size]].toarray()
                yield torch.from_numpy(block)
        else:
            crow, col, val = self.permuted(order)
            bounds = crow.cpu()  # one transfer per epoch
            rows = torch.arange(batch_size, device=self.device)
            for b in range(n_batches):
                lo, hi = int(bounds[b * batch_size]), int(bounds[(b + 1) * batch_size])
                lengths = crow[b * batch_size + 1:(b + 1) * batch_size + 1] - crow[b * batch_size:(b + 1) * batch_size]
                row_ids = torch.repeat_interleave(rows, lengths, output_size=hi - lo)
                batch = torch.zeros(batch_size, self.n_genes, device=self.device)
                batch[row_ids, col[lo:hi]] = val[lo:hi]
                yield batch

    def permuted(self, order: torch.Tensor):
        """CSR arrays (crow, col, val) of the rows taken in ``order``, on the device."""
        lengths = (self.crow[1:] - self.crow[:-1])[order]
        crow = torch.zeros(self.n_cells + 1, dtype=torch.int64, device=self.device)
        torch.cumsum(lengths, 0, out=crow[1:])
        nnz = self.val.numel()
        row_of = torch.repeat_interleave(torch.arange(self.n_cells, device=self.device), lengths, output_size=nnz)
        src = self.crow[:-1][order][row_of] + (torch.arange(nnz, device=self.device) - crow[row_of])
        return crow, self.col[src], self.val[src]


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
    layout: str = "auto",
    compile_loss: str | bool = "auto",
    checkpoint_path=None,
    checkpoint_every: int = 10,
):
    """Train a VAE on a cells x genes count matrix (dense or scipy sparse).

    Returns ``(model, history)``: the trained model (on the CPU, eval mode) and a
    DataFrame with one row per epoch: ``epoch``, ``seconds`` and each loss term (mean
    over the epoch's batches, weighted as in the objective). Batches are random
    permutations of the cells; the last incomplete batch of an epoch is dropped so every
    step sees ``batch_size`` cells. ``on_epoch(row)`` is called after each epoch.
    ``layout`` says how the counts are held (see CountBatches); all give the same result.
    ``compile_loss``: ``torch.compile`` the loss (forward and backward fused by Inductor):
    True, False, or ``"auto"``, which compiles when the run has at least
    ``COMPILE_MIN_STEPS`` steps, so the one-off compilation (about 15 s) pays for itself.

    With ``checkpoint_path``, the full training state (model, optimizer, random
    generators, history) is saved there every ``checkpoint_every`` epochs; a run that
    finds a checkpoint of the same settings and data resumes from it, and continues
    exactly as the uninterrupted run would have (on the CPU, eager). A run that diverges
    leaves the last good checkpoint in place.
    """
    device = torch.device(device) if isinstance(device, str) else device
    n_cells, n_genes = counts.shape
    if n_cells < batch_size:
        raise InputError(
            f"{n_cells} cells is fewer than one batch (train.batch_size={batch_size}); lower batch_size."
        )
    seed_everything(seed, device)
    data = CountBatches(counts, device, layout)
    log.info("counts held as %s on %s", data.layout, device)
    model = VAE(n_genes, hidden_dim, latent_dim, i_dim).to(device)
    model.train()
    # Fused Adam: one kernel for all parameters, on the CPU as on CUDA.
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    weights = LossWeights(beta=beta, irecon=irecon, dip=dip, tc=tc, info=info)
    n_batches = n_cells // batch_size
    n_steps = epochs * n_batches
    if compile_loss == "auto":
        compile_loss = n_steps >= COMPILE_MIN_STEPS

    def compute(batch):
        return ivae_loss(model, batch, weights, n_cells)

    if compile_loss:
        compute = torch.compile(compute, dynamic=False)
    log.info("%d steps; loss %s", n_steps, "compiled with torch.compile" if compile_loss else "eager")
    generator = torch.Generator(device=device).manual_seed(seed)
    fingerprint = repr((n_cells, n_genes, float(counts.sum()), hidden_dim, latent_dim, i_dim, batch_size, lr,
                        weights, seed, str(device)))
    history, first_epoch = [], 1
    state = load_training_state(checkpoint_path, fingerprint)
    if state is not None and len(state["history"]) < epochs:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        history = state["history"]
        first_epoch = len(history) + 1
        log.info("resuming from %s after epoch %d", checkpoint_path, len(history))

    for epoch in range(first_epoch, epochs + 1):
        start = time.perf_counter()
        totals = torch.zeros(len(LOSS_TERMS), device=device)
        order = torch.randperm(n_cells, device=device, generator=generator)
        for batch in data.epoch(order, batch_size):
            terms = compute(batch)
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
        if checkpoint_path is not None and (epoch % checkpoint_every == 0) and epoch < epochs:
            save_training_state(checkpoint_path, fingerprint, model, optimizer, generator, history, device)
        if on_epoch is not None:
            on_epoch(row)
    model.eval()
    return model.cpu(), pd.DataFrame(history)


def save_training_state(path, fingerprint, model, optimizer, generator, history, device) -> None:
    """Everything needed to continue training exactly where it stopped, written atomically."""
    state = {"fingerprint": fingerprint, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "generator": generator.get_state(), "torch_rng": torch.get_rng_state(), "history": list(history)}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_training_state(path, fingerprint):
    """The saved state if ``path`` holds one for these settings and data, else None."""
    if path is None or not os.path.exists(path):
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - an unreadable checkpoint is ignored, not fatal
        log.warning("ignoring unreadable checkpoint %s (%s)", path, exc)
        return None
    if state.get("fingerprint") != fingerprint:
        log.info("checkpoint %s is from other settings or data: starting afresh", path)
        return None
    return state


def format_epoch(row: dict, epochs: int) -> str:
    terms = " ".join(f"{k}={row[k]:.4g}" for k in LOSS_TERMS)
    return f"epoch {row['epoch']}/{epochs} {row['seconds']:.3f}s {terms}"


def main(snakemake) -> None:
    setup_logging(snakemake.log[0])
    model_params = dict(snakemake.params.model)
    train_params = dict(snakemake.params.train)
    device = resolve_device(train_params.pop("device"))
    compile_loss = train_params.pop("compile")
    if device.type == "cpu":
        torch.set_num_threads(snakemake.threads)
    log.info("torch %s on %s%s (threads: %d)", torch.__version__, device,
             f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "",
             torch.get_num_threads())

    counts, genes = read_counts_layer(snakemake.input[0])
    log.info("training on %d cells x %d genes; model %s; train %s",
             counts.shape[0], counts.shape[1], model_params, train_params)
    checkpoint = f"{snakemake.output.model}.checkpoint"
    try:
        model, history = fit(
            counts, **model_params, **train_params, device=device, compile_loss=compile_loss,
            checkpoint_path=checkpoint,
            on_epoch=lambda row: log.info("%s", format_epoch(row, train_params["epochs"])),
        )
    except InputError as exc:  # say which dataset and file
        raise InputError(f"dataset '{snakemake.wildcards.dataset}' ({snakemake.input[0]}): {exc}") from None
    log.info("done: %d epochs in %.1f s (%.3f s per epoch)", len(history), history["seconds"].sum(),
             history["seconds"].mean())
    save_checkpoint(
        snakemake.output.model, model, gene_names=genes, model_params=model_params,
        train_params={**train_params, "device": str(device), "compile": compile_loss},
        extra={"n_cells": counts.shape[0], "software": {
            **software_versions(["torch", "numpy", "anndata"]), "cuda": torch.version.cuda or "none",
            "device": f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "cpu",
        }},
    )
    with atomic_path(snakemake.output.log_tsv) as tmp:
        history.to_csv(tmp, sep="\t", index=False)
    if os.path.exists(checkpoint):
        os.remove(checkpoint)


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
