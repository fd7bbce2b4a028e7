"""Train the iVAE on raw counts (the workflow's GPU rule).

The data go to the device once; each epoch draws a random permutation and slices it into
batches, without a DataLoader. Loss terms are summed on the device and read back once per
epoch, so the loop never waits for the host inside an epoch.

``fit`` reads as a table of contents of its parts, each with one job: the cells split and
placed (``split_cells``, ``place_data``), the model and its loss (``build_model``,
``loss_step``), one epoch and its validation (``Training``), early stopping
(``EarlyStopping``), checkpoints and resuming (``Checkpoints``), the epoch loop
(``run_epochs``) and the result (``finish``). What a person reads: every epoch in the
rule's log file; on the console a start line, a progress line now and then, an end line
(``Progress``).
"""


import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from checkpoint import save_checkpoint
from covariates import covariate_codes
from h5ad_parts import read_counts_layer, read_obs_columns
from rule_io import FILE_ONLY, InputError, atomic_path, log, setup_logging
from versions import software_versions
from losses import LOSS_TERMS, LossWeights, ivae_loss
from model import COVARIATE_LAYERS, IVAE, ModelSettings
from sizing import auto_epochs, held_out_sizes


@dataclass(frozen=True)
class TrainSettings:
    """The config's ``train`` section (workflow/schemas/config.schema.yaml), which holds
    the one default of each setting; see its descriptions."""

    epochs: int | str  # or "auto"
    batch_size: int
    lr: float
    beta: float
    irecon: float
    dip: float
    tc: float
    info: float
    seed: int
    checkpoint_every: int
    compile: str | bool
    device: str
    validation_fraction: float
    test_fraction: float
    early_stopping: bool
    patience: int

    @classmethod
    def from_config(cls, section: dict) -> "TrainSettings":
        """From the (validated) config section; a key the dataclass lacks, or the reverse, is an error."""
        names = {f.name for f in fields(cls)}
        if set(section) != names:
            raise ValueError(f"train settings: unknown {sorted(set(section) - names)}, missing {sorted(names - set(section))}")
        return cls(**section)

    @property
    def weights(self) -> LossWeights:
        return LossWeights(beta=self.beta, irecon=self.irecon, dip=self.dip, tc=self.tc, info=self.info)

    def n_epochs(self, n_cells: int) -> int:
        """``epochs``, or for ``auto`` scvi-tools' heuristic for ``n_cells`` training cells."""
        return auto_epochs(n_cells) if self.epochs == "auto" else int(self.epochs)


def held_out_split(n_cells: int, validation_fraction: float, test_fraction: float,
                   seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(training, validation, test cells), each sorted: one seeded permutation of the cells,
    its first ``validation_fraction`` for validation (early stopping), the next
    ``test_fraction`` for testing (never trained on, never used to choose an epoch), the
    rest for training; a positive fraction holds out at least one cell. With no test cells
    the split is the validation split of earlier versions."""

    n_val, n_test = held_out_sizes(n_cells, validation_fraction, test_fraction)
    order = np.random.default_rng(seed).permutation(n_cells)
    return np.sort(order[n_val + n_test:]), np.sort(order[:n_val]), np.sort(order[n_val:n_val + n_test])


def validation_split(n_cells: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training cells, validation cells) without test cells (held_out_split)."""
    train, val, _ = held_out_split(n_cells, fraction, 0.0, seed)
    return train, val


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


#: ``compile: auto`` compiles the loss for runs of at least this many steps.
COMPILE_MIN_STEPS = 5000
#: torch.compile mode of the loss on CUDA: "reduce-overhead" replays the compiled forward
#: and backward as CUDA graphs, which removes the kernel-launch cost that bounds small
#: batches; "default" compiles without graphs. On the CPU the mode is always "default".
#: Chosen by measurement (README, "Performance": benchmarks/gpu_check.sh).
CUDA_COMPILE_MODE = "reduce-overhead"
#: For ``compile: auto`` with early stopping: the epochs expected, in units of the patience.
EARLY_STOP_EPOCHS_PER_PATIENCE = 5
#: Seconds between progress lines within an epoch (an atlas's epoch takes minutes).
PROGRESS_EVERY_S = 60.0
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
    Every layout yields the same batches for the same permutation. ``covariates`` (integer
    codes, cells x covariates) are held on the device and sliced with the counts. ``rows``:
    the rows of ``counts`` served (None: all); the ``scipy`` layout reads them from
    ``counts`` itself (a float32 CSR matrix is then shared, not copied: an atlas's training
    and validation cells cost the matrix once), the others copy them.
    """

    def __init__(self, counts, device: torch.device, layout: str = "auto", covariates=None, rows=None):
        self.device = device
        self.n_cells, self.n_genes = (counts.shape[0] if rows is None else len(rows)), counts.shape[1]
        self.covariates = None if covariates is None else torch.as_tensor(
            np.asarray(covariates, dtype=np.int64).reshape(self.n_cells, -1), device=device)
        if layout == "auto":
            layout = self.choose_layout((self.n_cells, self.n_genes), device)
        self.layout = layout
        self.row_map = None
        if layout == "scipy" and rows is not None and len(rows) < counts.shape[0]:
            self.row_map = np.asarray(rows, dtype=np.int64)
        elif rows is not None:
            counts = _rows(counts, np.asarray(rows))
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
        """Yield ``(counts, covariate codes or None)`` of the full batches of one epoch,
        cells taken in ``order``."""
        codes = None if self.covariates is None else self.covariates[order]
        for b, counts in enumerate(self._counts(order, batch_size)):
            yield counts, None if codes is None else codes[b * batch_size:(b + 1) * batch_size]

    def rows(self, idx: torch.Tensor):
        """``(counts, covariate codes or None)`` of the rows ``idx`` (any number of them), dense."""
        codes = None if self.covariates is None else self.covariates[idx]
        if self.layout == "dense":
            return self.data[idx], codes
        if self.layout == "scipy":
            return torch.from_numpy(self.csr[self._source_rows(idx.cpu().numpy())].toarray()), codes
        starts, lengths = self.crow[idx], self.crow[idx + 1] - self.crow[idx]
        total = int(lengths.sum())
        row_ids = torch.repeat_interleave(torch.arange(len(idx), device=self.device), lengths, output_size=total)
        offsets = torch.cumsum(lengths, 0) - lengths
        src = starts[row_ids] + torch.arange(total, device=self.device) - offsets[row_ids]
        batch = torch.zeros(len(idx), self.n_genes, device=self.device)
        batch[row_ids, self.col[src]] = self.val[src]
        return batch, codes

    def _counts(self, order: torch.Tensor, batch_size: int):
        n_batches = self.n_cells // batch_size
        if self.layout == "dense":
            for b in range(n_batches):
                yield self.data[order[b * batch_size:(b + 1) * batch_size]]
        elif self.layout == "scipy":
            order = self._source_rows(order.cpu().numpy())
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

    def _source_rows(self, idx: np.ndarray) -> np.ndarray:
        """Rows of the held matrix for the served rows ``idx``."""
        return idx if self.row_map is None else self.row_map[idx]

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
    model_settings: ModelSettings,
    settings: TrainSettings,
    *,
    covariates=None,
    device: str | torch.device = "cpu",
    on_epoch=None,
    layout: str = "auto",
    checkpoint_path=None,
    initial: IVAE | None = None,
    trainable: dict | None = None,
    compile_mode: str | None = None,
):
    """Train the model of ``model_settings`` on a cells x genes count matrix (dense or scipy sparse).

    ``initial``: start from this model instead of a fresh one; ``trainable``: parameter
    name -> boolean mask of the entries that learn (gradients elsewhere are zeroed, other
    parameters are frozen): how architecture surgery trains only new covariate weights.

    A seeded ``settings.validation_fraction`` of the cells is held out; the rest are
    trained on. Returns ``(model, history)``: the trained model (on the CPU, eval mode)
    and a DataFrame with one row per epoch: ``epoch``, ``seconds`` (of training), each
    loss term (mean over the epoch's batches, weighted as in the objective), with
    held-out cells the same terms on them as ``val_<term>`` (the model in eval mode;
    the latent still sampled, as the objective is an expectation over it), and
    ``selected``, True for the epoch whose model is returned. Batches are
    random permutations of the training cells; the last incomplete batch of an epoch is
    dropped so every step sees ``settings.batch_size`` cells. ``covariates``: integer
    codes, cells x covariates (``model_settings.n_categories`` categories each).

    With ``settings.early_stopping``, training stops when the validation loss has not
    improved for ``settings.patience`` epochs, and the model of the best epoch is
    returned (the history keeps every epoch run). ``settings.epochs`` may be ``auto``
    (``auto_epochs``). ``on_epoch(row)`` is called after each epoch. ``layout`` says how
    the counts are held (see CountBatches); all give the same result.
    ``settings.compile``: ``torch.compile`` the loss (forward and backward fused by
    Inductor): True, False, or ``"auto"``, which compiles when the run has at least
    ``COMPILE_MIN_STEPS`` steps, so the one-off compilation (about 15 s) pays for itself.
    ``compile_mode``: torch.compile's mode (default: ``CUDA_COMPILE_MODE`` on CUDA,
    ``"default"`` elsewhere). ``settings.device`` is resolved by the caller into ``device``.

    With ``checkpoint_path``, the full training state (model, optimizer, random
    generators, history, best model) is saved there every ``settings.checkpoint_every``
    epochs; a run that finds a checkpoint of the same settings and data resumes from it,
    and continues exactly as the uninterrupted run would have (on the CPU, eager). A run
    that diverges leaves the last good checkpoint in place.

    Logging: a start and an end line, and on a long run a progress line now and then
    (Progress); every epoch's line goes to the log file only (``FILE_ONLY``).
    """
    began = time.perf_counter()
    device = torch.device(device) if isinstance(device, str) else device
    train_idx, val_idx = split_cells(counts, model_settings, settings)
    epochs = settings.n_epochs(len(train_idx))
    codes = None if covariates is None else np.asarray(covariates, dtype=np.int64).reshape(counts.shape[0], -1)
    seed_everything(settings.seed, device)
    data, held_out = place_data(counts, codes, train_idx, val_idx, device, layout)
    model = build_model(model_settings, device, initial, trainable)
    training = Training.start(model, data, held_out, settings, epochs, compile_mode)
    stopper = EarlyStopping(settings.patience) if settings.early_stopping else None
    checkpoints = Checkpoints(checkpoint_path, run_fingerprint(counts, codes, model_settings, settings, epochs, device),
                              settings.checkpoint_every, epochs)
    history = checkpoints.resume(training, stopper)
    log.info("%s", format_start(training, counts.shape[0] - len(train_idx), resumed_after=len(history)))
    progress = Progress(epochs, training.n_batches, settings.batch_size, settings.early_stopping,
                        first_epoch=len(history) + 1)
    run_epochs(training, history, stopper, checkpoints, progress, on_epoch)
    model, table = finish(model, history, stopper, epochs)
    log.info("%s", format_end(table, early_stopping=settings.early_stopping, seconds=time.perf_counter() - began))
    return model, table


# --- the parts of fit(), in its order ------------------------------------------------------

def split_cells(counts, model_settings: ModelSettings, settings: TrainSettings) -> tuple[np.ndarray, np.ndarray]:
    """(training cells, validation cells) of ``counts`` (held_out_split; the test cells are
    left out of both), once the counts, the model and the settings are checked to fit
    together."""
    n_cells, n_genes = counts.shape
    if n_genes != model_settings.n_genes:
        raise ValueError(f"the counts have {n_genes} genes, the model settings {model_settings.n_genes}")
    if settings.early_stopping and settings.validation_fraction <= 0:
        raise InputError("train.early_stopping needs held-out cells: set train.validation_fraction > 0.")
    train_idx, val_idx, test_idx = held_out_split(n_cells, settings.validation_fraction, settings.test_fraction,
                                                  settings.seed)
    if len(train_idx) < settings.batch_size:
        raise InputError(
            f"{len(train_idx)} training cells ({n_cells} cells, {len(val_idx) + len(test_idx)} held out) is fewer "
            f"than one batch (train.batch_size={settings.batch_size}); lower batch_size."
        )
    return train_idx, val_idx


def place_data(counts, codes, train_idx: np.ndarray, val_idx: np.ndarray, device: torch.device,
               layout: str) -> tuple[CountBatches, CountBatches | None]:
    """The training cells and the held-out ones (None: none), counts and covariate codes,
    on the device in ``layout`` (CountBatches)."""
    data = CountBatches(counts, device, layout, None if codes is None else codes[train_idx], rows=train_idx)
    held_out = (CountBatches(counts, device, layout, None if codes is None else codes[val_idx], rows=val_idx)
                if len(val_idx) else None)
    log.info("counts held as %s on %s; %d training cells, %d held out for validation", data.layout, device,
             data.n_cells, len(val_idx), extra=FILE_ONLY)
    return data, held_out


def build_model(model_settings: ModelSettings, device: torch.device, initial: IVAE | None = None,
                trainable: dict | None = None) -> IVAE:
    """A fresh model of ``model_settings`` (drawn from torch's seeded generator), or
    ``initial``, on the device in training mode. With ``trainable`` (parameter name ->
    boolean mask) only the masked entries learn: their gradients are zeroed elsewhere and
    the parameters not named are frozen."""
    model = (IVAE.from_settings(model_settings) if initial is None else initial).to(device)
    model.train()
    if trainable is not None:
        for name, parameter in model.named_parameters():
            if name in trainable:  # Adam's update is 0 where the gradient always is
                parameter.register_hook(lambda grad, mask=trainable[name].to(device): grad * mask)
            else:
                parameter.requires_grad_(False)
    return model


def should_compile(settings: TrainSettings, epochs: int, n_batches: int) -> bool:
    """``settings.compile``, with ``auto`` resolved: compile when the run is expected to take
    at least COMPILE_MIN_STEPS steps (early stopping usually ends within a few times its
    patience)."""
    if settings.compile != "auto":
        return bool(settings.compile)
    expected = min(epochs, EARLY_STOP_EPOCHS_PER_PATIENCE * settings.patience) if settings.early_stopping else epochs
    return expected * n_batches >= COMPILE_MIN_STEPS


def loss_step(model: IVAE, weights: LossWeights, data: CountBatches, *, compiled: bool, mode: str | None):
    """``(loss(batch, codes) -> terms, graphs)``: the objective of one batch of ``data``'s
    cells, eager or compiled with torch.compile in ``mode`` (default: CUDA_COMPILE_MODE on
    CUDA; always "default" on the CPU), and whether it replays CUDA graphs. Counts held
    sparse on the CPU (atlases) take the likelihood's lgamma terms at non-zeros only."""
    device, n_train, sparse_likelihood = data.device, data.n_cells, data.layout == "scipy"

    def loss(batch, batch_codes):
        return ivae_loss(model, batch, weights, n_train, batch_codes, sparse_likelihood=sparse_likelihood)

    mode = mode or (CUDA_COMPILE_MODE if device.type == "cuda" else "default")
    graphs = compiled and mode == "reduce-overhead" and device.type == "cuda"
    if compiled:
        loss = torch.compile(loss, dynamic=False, mode=mode if device.type == "cuda" else "default")
    return loss, graphs


@dataclass
class Training:
    """One run's moving parts: the model and its optimiser, the loss of a batch, the cells
    (training and held out) and the generator of the batches' order."""

    model: IVAE
    optimizer: torch.optim.Optimizer
    loss: Callable
    graphs: bool  # the loss replays CUDA graphs
    data: CountBatches
    held_out: CountBatches | None
    generator: torch.Generator
    settings: TrainSettings
    epochs: int

    @classmethod
    def start(cls, model: IVAE, data: CountBatches, held_out: CountBatches | None, settings: TrainSettings,
              epochs: int, compile_mode: str | None = None) -> "Training":
        """Fused Adam (one kernel for all parameters, on the CPU as on CUDA) on the parameters
        that learn, the loss (compiled per should_compile), the order's generator seeded."""
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=settings.lr, fused=True)
        n_batches = data.n_cells // settings.batch_size
        compiled = should_compile(settings, epochs, n_batches)
        loss, graphs = loss_step(model, settings.weights, data, compiled=compiled, mode=compile_mode)
        log.info("%d epochs, %d steps; loss %s%s", epochs, epochs * n_batches,
                 f"compiled with torch.compile ({'CUDA graphs' if graphs else 'no CUDA graphs'})" if compiled
                 else "eager", "; likelihood's lgamma terms at non-zero counts" if data.layout == "scipy" else "",
                 extra=FILE_ONLY)
        generator = torch.Generator(device=data.device).manual_seed(settings.seed)
        return cls(model, optimizer, loss, graphs, data, held_out, generator, settings, epochs)

    @property
    def n_batches(self) -> int:
        return self.data.n_cells // self.settings.batch_size

    def train_epoch(self, epoch: int, progress: "Progress") -> dict:
        """One pass over the training cells in a fresh random order: ``{"epoch", "seconds",
        <term>: mean over the batches}``. The terms are summed on the device and read back
        once, at the end."""
        start = time.perf_counter()
        progress.start_epoch(epoch, start)
        batch_size, device = self.settings.batch_size, self.data.device
        totals = torch.zeros(len(LOSS_TERMS), device=device)
        order = torch.randperm(self.data.n_cells, device=device, generator=self.generator)
        for step, (batch, batch_codes) in enumerate(self.data.epoch(order, batch_size), 1):
            progress.step(step)
            if self.graphs:  # a new step: the last step's graph outputs (already summed) may be reused
                torch.compiler.cudagraph_mark_step_begin()
            terms = self.loss(batch, batch_codes)
            self.optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            self.optimizer.step()
            totals += torch.stack([terms[k].detach() for k in LOSS_TERMS])
        means = (totals / self.n_batches).tolist()  # the one host sync of the epoch
        return {"epoch": epoch, "seconds": time.perf_counter() - start, **dict(zip(LOSS_TERMS, means))}

    def validate(self, epoch: int) -> dict:
        """``val_<term>`` of the held-out cells after ``epoch`` (evaluate; their latents drawn
        from a seed of the epoch's own); empty without held-out cells."""
        if self.held_out is None:
            return {}
        terms = evaluate(self.model, self.held_out, self.settings.weights, self.data.n_cells,
                         seed=self.settings.seed + epoch)
        return {f"val_{k}": v for k, v in terms.items()}


def check_finite(row: dict) -> None:
    """Raise FloatingPointError naming the epoch and the terms of ``row`` that are not finite."""
    bad = [k for k in row if k not in ("epoch", "seconds") and not np.isfinite(row[k])]
    if bad:
        raise FloatingPointError(
            f"training diverged at epoch {row['epoch']}: non-finite {', '.join(bad)}; "
            "lower train.lr or check the input."
        )


class Verdict(NamedTuple):
    """EarlyStopping's word on an epoch."""

    best: bool  # the lowest validation loss so far: keep this epoch's model
    stop: bool  # ``patience`` epochs since the best: stop training


@dataclass
class EarlyStopping:
    """Stop when the validation loss has not fallen for ``patience`` epochs, and remember the
    best epoch: its number, its loss and (``keep``) its weights."""

    patience: int
    best_epoch: int = 0
    best_loss: float = math.inf
    best_weights: dict | None = None

    def update(self, epoch: int, loss: float) -> Verdict:
        """Take ``epoch``'s validation loss: is it the best so far, and is it time to stop?"""
        best = loss < self.best_loss
        if best:
            self.best_epoch, self.best_loss = epoch, loss
        return Verdict(best=best, stop=epoch - self.best_epoch >= self.patience)

    def keep(self, model: IVAE) -> None:
        """A copy of ``model``'s weights as the best epoch's."""
        self.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def state(self) -> dict | None:
        """The best epoch as a checkpoint holds it (None before the first)."""
        if self.best_weights is None:
            return None
        return {"epoch": self.best_epoch, "val_loss": self.best_loss, "model": self.best_weights}

    def restore(self, state: dict | None) -> None:
        if state is not None:
            self.best_epoch, self.best_loss, self.best_weights = state["epoch"], state["val_loss"], state["model"]


def run_fingerprint(counts, codes, model_settings: ModelSettings, settings: TrainSettings, epochs: int,
                    device: torch.device) -> str:
    """What a checkpoint must match to be resumed: the data, the settings, the device."""
    n_cells, n_genes = counts.shape
    return repr((n_cells, n_genes, float(counts.sum()), model_settings, settings, epochs, str(device),
                 None if codes is None else int(codes.sum())))


@dataclass
class Checkpoints:
    """The full training state saved at ``path`` (None: never) every ``every`` epochs, and
    the run resumed from it when it is of the same data and settings (``fingerprint``)."""

    path: str | os.PathLike | None
    fingerprint: str
    every: int
    epochs: int

    def due(self, epoch: int, stop: bool) -> bool:
        """Save after ``epoch``? Not after the last epoch run, which the result holds."""
        return self.path is not None and epoch % self.every == 0 and epoch < self.epochs and not stop

    def save(self, training: Training, history: list, stopper: EarlyStopping | None) -> None:
        save_training_state(self.path, self.fingerprint, training.model, training.optimizer, training.generator,
                            history, None if stopper is None else stopper.state(), training.data.device)

    def resume(self, training: Training, stopper: EarlyStopping | None) -> list:
        """The history of the epochs already run (empty: from the start); the model, the
        optimiser, the random generators and ``stopper`` restored to their state after them."""
        state = load_training_state(self.path, self.fingerprint)
        if state is None or len(state["history"]) >= self.epochs:
            return []
        device = training.data.device
        training.model.load_state_dict(state["model"])
        training.optimizer.load_state_dict(state["optimizer"])
        training.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        if stopper is not None:
            stopper.restore(state["best"])
        log.info("resuming from %s after epoch %d", self.path, len(state["history"]), extra=FILE_ONLY)
        return state["history"]


def run_epochs(training: Training, history: list, stopper: EarlyStopping | None, checkpoints: Checkpoints,
               progress: "Progress", on_epoch=None) -> None:
    """Train from the epoch after ``history`` to the last, or until ``stopper`` says stop;
    ``history`` gains a row per epoch. A diverged epoch raises before it is saved."""
    for epoch in range(len(history) + 1, training.epochs + 1):
        row = training.train_epoch(epoch, progress)
        row.update(training.validate(epoch))
        check_finite(row)
        history.append(row)
        stop = False
        if stopper is not None:
            verdict = stopper.update(epoch, row["val_loss"])
            if verdict.best:
                stopper.keep(training.model)
            stop = verdict.stop
        if checkpoints.due(epoch, stop):
            checkpoints.save(training, history, stopper)
        progress.end_epoch(row, history)
        if on_epoch is not None:
            on_epoch(row)
        if stop:
            log.info("early stopping at epoch %d: no lower validation loss for %d epochs since epoch %d",
                     epoch, stopper.patience, stopper.best_epoch, extra=FILE_ONLY)
            return


def finish(model: IVAE, history: list, stopper: EarlyStopping | None, epochs: int) -> tuple[IVAE, pd.DataFrame]:
    """fit()'s result: the model kept (the last epoch's, or with early stopping the best
    epoch's) on the CPU in eval mode, and the history as a table with ``selected``."""
    kept = history[-1]["epoch"]
    if stopper is not None:
        model.load_state_dict(stopper.best_weights)
        kept = stopper.best_epoch
        log.info("model of epoch %d, the lowest validation loss (%.4g)", kept, stopper.best_loss, extra=FILE_ONLY)
    model.eval()
    table = pd.DataFrame(history)
    table["selected"] = table["epoch"] == kept  # the epoch whose model is returned
    table.attrs["max_epochs"] = epochs
    return model.cpu(), table


#: Weights whose inputs end with the one-hot covariates (model.COVARIATE_LAYERS).
COVARIATE_WEIGHTS = tuple(f"{part}.nn.{i}.weight" for part in ("encoder", "decoder") for i in COVARIATE_LAYERS)


def covariate_surgery(model: IVAE, old: list[list[str]], new: list[list[str]]) -> tuple[IVAE, dict]:
    """``model`` grown from covariate categories ``old`` to ``new`` (each old list a prefix
    of its new one), and the ``trainable`` masks of fit() that let only the new categories'
    weights learn (scArches' architecture surgery, Lotfollahi et al. 2022).

    The one-hot columns of the new categories are added to every layer that takes the
    covariates (the hidden layers of encoder and decoder), initialised at zero: a new sample
    starts as no sample in particular and learns its own shift; everything else is the
    reference's, unchanged.
    """
    if len(old) != len(new) or any(list(n[:len(o)]) != list(o) for o, n in zip(old, new)):
        raise ValueError("new covariate categories must extend the old ones, covariate by covariate")
    grown = IVAE(model.encoder.nn[0].in_features - sum(map(len, old)), model.encoder.nn[0].out_features,
                 model.encoder.latent_dim, model.latent_encoder.out_features, tuple(map(len, new)),
                 stop_gradient=model.stop_gradient)
    state, trainable = dict(model.state_dict()), {}
    old_offsets, new_offsets = np.cumsum([0, *map(len, old)]), np.cumsum([0, *map(len, new)])
    for name in COVARIATE_WEIGHTS:
        weight = state[name]
        rest = weight.shape[1] - sum(map(len, old))
        wide = torch.zeros(weight.shape[0], rest + sum(map(len, new)))
        mask = torch.zeros_like(wide, dtype=torch.bool)
        wide[:, :rest] = weight[:, :rest]
        for i, (o, n) in enumerate(zip(old, new)):
            src, dst = rest + old_offsets[i], rest + new_offsets[i]
            wide[:, dst:dst + len(o)] = weight[:, src:src + len(o)]
            mask[:, dst + len(o):dst + len(n)] = True
        state[name], trainable[name] = wide, mask
    grown.load_state_dict(state)
    return grown, trainable


def _rows(counts, idx: np.ndarray):
    """The rows ``idx`` of a dense or sparse matrix (the matrix itself when that is all of them)."""
    if len(idx) == counts.shape[0]:
        return counts
    return counts[idx]


@torch.no_grad()
def evaluate(model, cells: CountBatches, weights: LossWeights, n_cells: int, *, seed: int,
             batch_size: int = 4096) -> dict:
    """Loss terms of held-out ``cells`` (means over cells), the model in eval mode.

    The latent is sampled from its own generator (seeded), inside ``fork_rng`` so that
    the training's random stream is the same with or without validation.
    """
    was_training = model.training
    model.eval()
    devices = [cells.device] if cells.device.type == "cuda" else []
    totals = dict.fromkeys(LOSS_TERMS, 0.0)
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        order = torch.arange(cells.n_cells, device=cells.device)
        for start in range(0, cells.n_cells, batch_size):
            batch, batch_codes = cells.rows(order[start:start + batch_size])
            terms = ivae_loss(model, batch, weights, n_cells, batch_codes, sparse_likelihood=cells.layout == "scipy")
            for k in LOSS_TERMS:
                totals[k] += float(terms[k]) * batch.shape[0]
    model.train(was_training)
    return {k: v / cells.n_cells for k, v in totals.items()}


def save_training_state(path, fingerprint, model, optimizer, generator, history, best, device) -> None:
    """Everything needed to continue training exactly where it stopped, written atomically."""
    state = {"fingerprint": fingerprint, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "generator": generator.get_state(), "torch_rng": torch.get_rng_state(), "history": list(history),
             "best": best}
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


def format_within_epoch(epoch: int, epochs: int, done: int, n_batches: int, batch_size: int, seconds: float) -> str:
    """A progress line within a long epoch: batches done, the rate, the epoch's time left."""
    rate = done * batch_size / max(seconds, 1e-9)
    left = (n_batches - done) * batch_size / rate if rate > 0 else float("nan")
    return (f"epoch {epoch}/{epochs}: {done:,} of {n_batches:,} batches ({rate:,.0f} cells/s; "
            f"{left:,.0f} s left in this epoch)")


def format_epoch(row: dict, epochs: int, cells_per_epoch: int, history: list) -> str:
    """One progress line per epoch: its number of the most there will be, its seconds, the
    training rate, the time left at most (early stopping may end sooner), every term."""
    mean = np.mean([h["seconds"] for h in history])
    left = (epochs - row["epoch"]) * mean
    terms = " ".join(f"{k}={row[k]:.4g}" for k in row if k not in ("epoch", "seconds"))
    return (f"epoch {row['epoch']}/{epochs} {row['seconds']:.3f}s ({cells_per_epoch / row['seconds']:,.0f} cells/s; "
            f"at most {left:,.0f} s left) {terms}")


#: Console progress lines of a long run: at most one every this many seconds and every
#: this fraction of the (most) epochs, whichever is rarer.
CONSOLE_EVERY_S = 30.0
CONSOLE_EVERY_FRACTION = 0.1


@dataclass
class Progress:
    """Lines about a run under way. To the log file (``FILE_ONLY``): every epoch's, and within
    a long epoch (an atlas's takes minutes) one every PROGRESS_EVERY_S. To the console: at
    most one every CONSOLE_EVERY_S and every CONSOLE_EVERY_FRACTION of the epochs, with the
    rate and the time left, so that parallel jobs sharing a console stay readable."""

    epochs: int
    n_batches: int
    batch_size: int
    early_stopping: bool = False
    first_epoch: int = 1  # after a resume, the first epoch this process runs
    start: float = field(default_factory=time.perf_counter)

    def __post_init__(self):
        self.console_at = (self.start, float(self.first_epoch - 1))  # (time, epochs done) of the last console line
        self.epoch, self.epoch_start, self.file_at = self.first_epoch, self.start, self.start

    @property
    def cells_per_epoch(self) -> int:
        return self.n_batches * self.batch_size

    def start_epoch(self, epoch: int, now: float) -> None:
        self.epoch, self.epoch_start, self.file_at = epoch, now, now

    def step(self, step: int) -> None:
        """Before step ``step`` (from 1) of the epoch."""
        now = time.perf_counter()
        if now - self.file_at >= PROGRESS_EVERY_S:
            self.file_at = now
            log.info("%s", format_within_epoch(self.epoch, self.epochs, step - 1, self.n_batches, self.batch_size,
                                               now - self.epoch_start), extra=FILE_ONLY)
        self.console(self.epoch - 1 + (step - 1) / self.n_batches, now)

    def end_epoch(self, row: dict, history: list) -> None:
        log.info("%s", format_epoch(row, self.epochs, self.cells_per_epoch, history), extra=FILE_ONLY)
        self.console(row["epoch"], time.perf_counter())

    def console_due(self, done: float, now: float) -> bool:
        """A console line when ``done`` epochs are done at ``now``? Not at the end (the end line follows)."""
        last_time, last_done = self.console_at
        return (done < self.epochs and now - last_time >= CONSOLE_EVERY_S
                and done - last_done >= CONSOLE_EVERY_FRACTION * self.epochs)

    def console(self, done: float, now: float) -> None:
        if self.console_due(done, now):
            self.console_at = (now, done)
            log.info("%s", format_progress(done, self.epochs, now - self.start, self.cells_per_epoch,
                                           since=self.first_epoch - 1, early_stopping=self.early_stopping))


def format_duration(seconds: float) -> str:
    """``42 s``, ``12.5 min``, ``3.2 h``."""
    if not math.isfinite(seconds):
        return "? s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def format_progress(done: float, epochs: int, seconds: float, cells_per_epoch: int, *, since: float = 0.0,
                    early_stopping: bool = False) -> str:
    """A console line on a long run: ``done`` epochs (fractions within one) of ``epochs``,
    the rate since training began (or resumed, after ``since`` epochs) ``seconds`` ago, and
    the time left at that rate (at most, with early stopping)."""
    rate = (done - since) / max(seconds, 1e-9)  # epochs per second
    left = (epochs - done) / rate if rate > 0 else math.inf
    per_min = f"{60 * rate:,.0f}" if 60 * rate >= 100 else f"{60 * rate:.3g}"
    return (f"{done:,.1f} of {epochs:,} epochs ({done / epochs:.0%}): {per_min} epochs/min, "
            f"{rate * cells_per_epoch:,.0f} cells/s; {'at most' if early_stopping else 'about'} "
            f"{format_duration(left)} left")


def format_start(training: Training, n_held_out: int, *, resumed_after: int = 0) -> str:
    """The console's first line of a run: cells, genes, device, epochs."""
    settings, data = training.settings, training.data
    stopping = (f" at most (early stopping after {settings.patience} epochs without a lower validation loss)"
                if settings.early_stopping else "")
    resumed = f"; resuming after epoch {resumed_after}" if resumed_after else ""
    return (f"training on {data.n_cells:,} cells x {data.n_genes:,} genes ({n_held_out:,} more held out) on "
            f"{device_name(data.device, threads=True)}: {training.epochs:,} epochs{stopping}{resumed}")


def format_end(history: pd.DataFrame, *, early_stopping: bool, seconds: float) -> str:
    """The console's last line of a run (fit()'s ``history``): epochs run, the epoch kept,
    the seconds of training (over every process, when resumed) and ``seconds`` in all."""
    kept = int(history.loc[history["selected"], "epoch"].iloc[0])
    stopped = early_stopping and len(history) < history.attrs["max_epochs"]
    return (f"done: {len(history)} epochs in {history['seconds'].sum():.1f} s ({history['seconds'].mean():.3f} s "
            f"per epoch){', stopped early' if stopped else ''}; kept epoch {kept} "
            f"({'the lowest validation loss' if early_stopping else 'the last'}); {format_duration(seconds)} in all")


def device_name(device: torch.device, *, threads: bool = False) -> str:
    """``cuda (NVIDIA H100 80GB HBM3)``, ``cpu`` (``cpu, 8 threads`` with ``threads``)."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    n = torch.get_num_threads()
    return f"cpu, {n} thread{'s' if n > 1 else ''}" if threads else "cpu"


# --- the rule's entry ------------------------------------------------------------------------

def main(snakemake) -> None:
    setup_logging(snakemake.log[0], label=job_label(snakemake.log[0]))
    settings = TrainSettings.from_config(dict(snakemake.params.train))
    device = training_device(settings.device, snakemake.threads)
    keys = list(snakemake.params.covariates)
    counts, genes, codes, categories = read_training_data(snakemake.input[0], keys)
    model_settings = ModelSettings(n_genes=len(genes), **snakemake.params.model,
                                   n_categories=tuple(len(c) for c in categories))
    log.info("training on %d cells x %d genes; conditioned on %s; %s; %s", counts.shape[0], counts.shape[1],
             {k: c for k, c in zip(keys, categories)} or "nothing", model_settings, settings, extra=FILE_ONLY)
    checkpoint = f"{snakemake.output.model}.checkpoint"
    try:
        model, history = fit(counts, model_settings, settings, covariates=codes, device=device,
                             checkpoint_path=checkpoint)
    except InputError as exc:  # say which dataset and file
        raise InputError(f"dataset '{snakemake.wildcards.dataset}' ({snakemake.input[0]}): {exc}") from None
    write_model(snakemake.output.model, model, history, genes=genes, model_settings=model_settings,
                settings=settings, device=device, covariates={"keys": keys, "categories": categories},
                n_cells=counts.shape[0])
    with atomic_path(snakemake.output.log_tsv) as tmp:
        history.to_csv(tmp, sep="\t", index=False)
    if os.path.exists(checkpoint):
        os.remove(checkpoint)


def job_label(log_path) -> str:
    """The job's name on a console that parallel jobs share, from its log file's path:
    ``train/pbmc68k/ivae/seed0`` for ``logs/train/pbmc68k/ivae/seed0.log``."""
    parts = Path(log_path).with_suffix("").parts
    return "/".join(parts[1:] if len(parts) > 1 and parts[0] == "logs" else parts)


def training_device(name: str, threads: int) -> torch.device:
    """The device ``train.device`` names (resolve_device); on the CPU, ``threads`` threads."""
    device = resolve_device(name)
    if device.type == "cpu":
        torch.set_num_threads(threads)
    log.info("torch %s on %s (threads: %d)", torch.__version__, device_name(device),
             torch.get_num_threads(), extra=FILE_ONLY)
    return device


def read_training_data(path, keys: list[str]):
    """``(counts, genes, covariate codes, their categories)`` of the preprocessed file: the
    raw counts layer and the obs columns ``keys``."""
    counts, genes = read_counts_layer(path)
    what = str(path)
    codes, categories = covariate_codes(read_obs_columns(path, keys, what=what), keys, what=what)
    return counts, genes, codes, categories


def write_model(path, model: IVAE, history: pd.DataFrame, *, genes, model_settings: ModelSettings,
                settings: TrainSettings, device: torch.device, covariates: dict, n_cells: int) -> None:
    """The trained model with what it was trained on, with and by (save_checkpoint)."""
    save_checkpoint(
        path, model, gene_names=genes, model_params=asdict(model_settings),
        train_params={**asdict(settings), "device": str(device)},
        extra={"n_cells": n_cells, "epochs": history.attrs["max_epochs"], "covariates": covariates,
               "test_cells": torch.as_tensor(held_out_split(n_cells, settings.validation_fraction,
                                                            settings.test_fraction, settings.seed)[2]),
               "software": {
            **software_versions(["torch", "numpy", "anndata"]), "cuda": torch.version.cuda or "none",
            "device": device_name(device),
        }},
    )


if "snakemake" in globals():
    main(snakemake)  # noqa: F821
