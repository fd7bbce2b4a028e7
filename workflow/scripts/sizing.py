"""How large a dataset is, read from its file's header, and what a rule needs for it.

The rules' ``resources:`` (``mem_mb``, ``runtime``) call these functions, so that a cluster
job asks for memory and time in proportion to its data, and a retried job (``attempt``
2, 3, ...) for proportionally more. They run in the main Snakemake process, which may
live in an environment of its own: standard library only, plus h5py when it is there
(without it, sizes are estimated from the file size).

The cost models are deliberately generous upper bounds fitted to the measurements in
docs/performance.md: a job that asks for too little memory is killed, one that asks
for a little too much only waits a little longer in the queue.
"""

from __future__ import annotations

import gzip
import math
import os
from dataclasses import dataclass
from pathlib import Path

MB = 1 << 20
#: Rows per block when a job reads a matrix from disk (subsample.py; about 250 MB of CSR at
#: 1,000 stored values a row): the one block of rows a subsampling job holds at a time.
CHUNK_ROWS = 1 << 16
#: Bytes per stored value of a CSR count matrix in memory: float32 value + int32 index.
CSR_BYTES = 8
#: Counts compress about this well in gzip-compressed HDF5 (used when h5py is missing).
COMPRESSION_RATIO = 4.0
#: Training throughput assumed for the runtime request (cells per second). The CPU of a
#: laptop does ~12,000 and a GPU far more; the request must hold on slow nodes too.
TRAIN_CELLS_PER_S = 3000.0


@dataclass(frozen=True)
class MatrixSize:
    """Size of a cells x genes matrix: counts from the header where known, else None."""

    file_mb: float
    n_cells: int | None = None
    n_genes: int | None = None
    nnz: int | None = None
    raw_nnz: int | None = None  # stored values of .raw (preprocessed.h5ad), when present
    row_chunks: bool = False  # stored by rows (CSR .h5ad, 10x .h5): preprocessing streams it

    @property
    def csr_mb(self) -> float:
        """Memory of the matrix as CSR counts (MB); from the file size if nnz is unknown."""
        if self.nnz is not None:
            return self.nnz * CSR_BYTES / MB
        return self.file_mb * COMPRESSION_RATIO

    @property
    def dense_mb(self) -> float:
        """Memory of the matrix as a dense float32 array (MB)."""
        if self.n_cells is not None and self.n_genes is not None:
            return self.n_cells * self.n_genes * 4 / MB
        return self.csr_mb * 5  # count matrices are typically ~10 % non-zero

    @property
    def cells(self) -> int:
        """Number of cells, or an estimate from the stored values (~1,000 per cell)."""
        if self.n_cells is not None:
            return self.n_cells
        return max(1, int(self.csr_mb * MB / CSR_BYTES / 1000))


def _path_size_mb(path: Path) -> float:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / MB
    return path.stat().st_size / MB


def _h5_matrix(group, key: str):
    """(n_rows, n_cols, nnz) of an AnnData-encoded matrix element, or None."""
    if key not in group:
        return None
    element = group[key]
    if hasattr(element, "shape"):  # a dense dataset
        rows, cols = element.shape
        return int(rows), int(cols), int(rows) * int(cols)
    shape = element.attrs.get("shape")
    if shape is None or "data" not in element:
        return None
    return int(shape[0]), int(shape[1]), int(element["data"].shape[0])


def _read_h5_size(path: Path, layer: str | None, file_mb: float) -> MatrixSize | None:
    try:
        import h5py
    except ImportError:
        return None
    with h5py.File(path, "r") as f:
        if "matrix" in f and isinstance(f["matrix"], h5py.Group):  # 10x Cell Ranger .h5
            genes, cells = (int(v) for v in f["matrix/shape"][()])
            return MatrixSize(file_mb, cells, genes, int(f["matrix/data"].shape[0]), row_chunks=True)
        if "matrix" in f and "col_attrs" in f:  # .loom: dense genes x cells
            dataset = f["layers"][layer] if layer else f["matrix"]
            genes, cells = (int(v) for v in dataset.shape)
            return MatrixSize(file_mb, cells, genes)
        if layer == "raw.X":
            key = "raw/X"
        elif layer:
            key = f"layers/{layer}"
        else:  # preprocessed.h5ad: the counts layer is what training reads
            key = "layers/counts" if _h5_matrix(f, "layers/counts") else "X"
        found = _h5_matrix(f, key)
        if found is None:  # no matrix (embedding.h5ad): the cells are the obs
            obs = f.get("obs")
            index = obs.attrs.get("_index") if obs is not None else None
            if index is None or index not in obs:
                return None
            names = obs[index]
            if isinstance(names, h5py.Group):  # a nullable string array (pandas 3's strings)
                names = names.get("values")
            return MatrixSize(file_mb, int(names.shape[0])) if names is not None else None
        raw = _h5_matrix(f, "raw/X")
        row_chunks = f[key].attrs.get("encoding-type") == "csr_matrix"
        return MatrixSize(file_mb, found[0], found[1], found[2], raw[2] if raw else None, row_chunks)


def _mtx_header(path: Path) -> tuple[int, int, int] | None:
    """(rows, cols, entries) from a Matrix Market header, gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        for line in fh:
            if not line.startswith("%"):
                rows, cols, entries = (int(v) for v in line.split()[:3])
                return rows, cols, entries
    return None


def _find_mtx(path: Path) -> Path | None:
    if path.name.endswith((".mtx", ".mtx.gz")):
        return path
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.name.endswith(("matrix.mtx", "matrix.mtx.gz")))
        return found[0] if found else None
    return None


def matrix_size(path: str | os.PathLike, layer: str | None = None) -> MatrixSize:
    """Size of the count matrix in ``path`` (.h5ad, 10x .h5, .loom, Matrix Market file or
    directory), read from headers only; unknown fields stay None. ``layer`` is the
    dataset's ``counts_layer``. A missing path gives a zero size (dry runs)."""
    path = Path(path)
    if not path.exists():
        return MatrixSize(0.0)
    file_mb = _path_size_mb(path)
    try:
        mtx = _find_mtx(path)
        if mtx is not None:
            header = _mtx_header(mtx)
            if header is not None:
                genes, cells, entries = header  # 10x/GEO orientation; only the product matters
                return MatrixSize(file_mb, cells, genes, entries)
        elif path.suffix in (".h5ad", ".h5", ".loom"):
            found = _read_h5_size(path, layer, file_mb)
            if found is not None:
                return found
    except (OSError, ValueError, KeyError):
        pass  # unreadable header: fall back on the file size; the rule itself says what is wrong
    return MatrixSize(file_mb)


#: ``epochs: auto`` as scvi-tools does it (``get_max_epochs_heuristic``): 400 epochs up to
#: 20,000 cells, then fewer in proportion, so that every dataset gets about as many steps.
AUTO_EPOCHS_CAP = 400
AUTO_EPOCHS_DECAY_AT = 20_000


def gpu_visible(environ=None, dev: str | os.PathLike = "/dev") -> bool:
    """Whether this machine shows CUDA an NVIDIA GPU: a driver device file (``/dev/nvidia0``,
    ...) or ``nvidia-smi`` on the PATH, and ``CUDA_VISIBLE_DEVICES`` not set to hide them all.
    (The main Snakemake process has no torch to ask; training's ``device: auto`` asks torch.)"""
    environ = os.environ if environ is None else environ
    if environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return False
    if any(p.name[len("nvidia"):].isdigit() for p in Path(dev).glob("nvidia*")):
        return True
    import shutil

    return shutil.which("nvidia-smi", path=environ.get("PATH")) is not None


#: Below this many cells a job is mostly process start-up, imports and compilation, which
#: threads do not shorten: it claims one thread, so that such jobs run side by side.
SMALL_JOB_CELLS = 20_000


def job_threads(threads: int, size: MatrixSize) -> int:
    """Threads of a job of a rule that uses ``threads`` for data of ``size``: one below
    ``SMALL_JOB_CELLS`` cells (measured on the default run: the 2-core run's small jobs
    took 2-10 s each, one at a time, when each claimed both cores)."""
    return 1 if size.cells < SMALL_JOB_CELLS else threads


def local_thread_cap(cores: int) -> int:
    """The most threads a job claims in a local run on ``cores`` cores: half of them (at
    least one), so that a long job never holds the whole machine while the others wait.
    On 2 cores each job then takes one: a 4-million-cell run had left a core idle for the
    20 minutes of its last training, whose downstream jobs each wanted both cores."""
    return max(1, int(cores) // 2)


#: Threads of a training job that runs on a GPU (feeding it), or anywhere on a cluster
#: (where the cluster profile sets its own).
GPU_TRAIN_THREADS = 4


def training_claims(device: str, *, local: bool, gpu: bool) -> tuple[int, int]:
    """``(gpus, threads)`` a training job claims, for ``train.device`` ``device``.

    A job that will run on a GPU claims one (so the workstation profile's ``gpu=1`` runs
    one at a time and a cluster job requests one) and ``GPU_TRAIN_THREADS`` threads. A job
    that will run on the CPU claims no GPU: ``device: cpu``, or ``auto`` in a local run on
    a machine without a GPU (``gpu``: ``gpu_visible()``). Locally it then claims one thread,
    so that the several trainings of a run (controls x seeds) run side by side, one per
    core: on 2 cores two one-thread trainings do 1.3 x the epochs per second of one
    two-thread training (0.30 vs 0.20 s per PBMC 3k epoch). ``--set-threads train=N``
    overrides it, e.g. for a single long training on a many-core machine.
    """
    on_cpu = device == "cpu" or (device == "auto" and local and not gpu)
    if not on_cpu:
        return 1, GPU_TRAIN_THREADS
    return 0, (1 if local else GPU_TRAIN_THREADS)


def auto_epochs(n_cells: int) -> int:
    """min(400, round(400 * 20,000 / n_cells)), at least 1."""
    return max(1, min(AUTO_EPOCHS_CAP, round(AUTO_EPOCHS_CAP * AUTO_EPOCHS_DECAY_AT / max(n_cells, 1))))


def _scaled(value: float, attempt: int) -> int:
    """A request rounded up, multiplied by the attempt: each retry asks for more."""
    return int(math.ceil(value)) * max(1, int(attempt))


def mem_mb(step: str, size: MatrixSize, attempt: int = 1, *, max_cells: int | None = None,
           chunk_cells: int | None = None) -> int:
    """Memory (MB) a rule's job needs for data of ``size`` (its main input).

    - ``preprocess``: an input stored by rows (``size.row_chunks``) is read ``chunk_cells``
      cells at a time: about 4 copies of one chunk plus per-cell tables (~1 kB per cell);
      other inputs are held whole, about 2.5 times their counts as CSR;
    - ``train``: the counts as CSR plus, when small enough to be held densely (2 GiB),
      the dense matrix, else once more the CSR's size and at least 2 GiB (batches,
      evaluation, compilation: the exact peaks at 2 and 4 M atlas cells were both 4.4 GiB,
      with CSRs of 1.6 and 3.3 GiB); PyTorch itself ~1.5 GB;
    - ``embed``: the counts as CSR, then (once they are freed) the obs, with the
      embeddings (~0.1 kB per cell) throughout: the CSR plus half the per-cell allowance
      (the atlas benchmark's obs, with three string columns, takes ~0.45 kB per cell);
    - ``cell_labels``, ``metrics``, ``figures``: the log-normalised matrix, .raw, the
      dense HVG matrix the baselines factorise, kNN graphs (~1 kB per cell). With
      ``max_cells`` (``cell_labels`` and ``metrics`` only: the jobs that read just a
      subsample's rows above evaluation.max_cells), the matrix terms scale with the share
      max_cells / cells (at most 1), plus one block of rows read at a time.
    """
    base = 1500.0
    csr = size.csr_mb
    raw = (size.raw_nnz or 0) * CSR_BYTES / MB
    per_cell = size.cells * 1000 / MB
    share = 1.0 if max_cells is None else min(1.0, max_cells / size.cells)
    block = 0.0 if share == 1.0 else csr * min(1.0, CHUNK_ROWS / size.cells)
    if step == "preprocess" and size.row_chunks and chunk_cells:
        need = base + 4 * csr * min(1.0, chunk_cells / size.cells) + per_cell
    elif step == "preprocess":
        need = base + 2.5 * csr
    elif step == "train":
        need = base + csr + (size.dense_mb if size.dense_mb <= 2048 else max(csr, 2048.0))
    elif step == "embed":
        need = base + csr + per_cell / 2
    elif step == "cell_labels":
        need = base + 3 * csr * share + 2 * raw * share + block + 2 * per_cell
    elif step == "metrics":
        need = base + (2 * csr + 3 * size.dense_mb) * share + block + 2 * per_cell
    elif step == "figures":
        need = base + 4 * per_cell
    else:
        raise ValueError(f"unknown step {step!r}")
    return _scaled(need, attempt)


def runtime_min(step: str, size: MatrixSize, attempt: int = 1, *, epochs: int | str = 1) -> int:
    """Wall time (minutes) a rule's job needs for data of ``size``; training also grows
    with ``epochs`` (at ``TRAIN_CELLS_PER_S``; ``auto``: at most ``auto_epochs``)."""
    gb = size.csr_mb / 1024
    cells = size.cells
    if epochs == "auto":
        epochs = auto_epochs(cells)
    if step == "preprocess":
        need = 10 + 10 * gb
    elif step == "train":
        need = 10 + epochs * cells / TRAIN_CELLS_PER_S / 60
    elif step == "embed":
        need = 10 + cells / 20000 / 60 + 2 * gb
    elif step in ("cell_labels", "metrics", "figures"):
        need = 20 + cells / 1000 / 60 * 5
    else:
        raise ValueError(f"unknown step {step!r}")
    return _scaled(need, attempt)


def held_out_sizes(n_cells: int, validation_fraction: float, test_fraction: float) -> tuple[int, int]:
    """(validation cells, test cells) of ``n_cells``: each fraction rounded, a positive
    fraction holding out at least one cell (train.held_out_split, input_checks)."""

    def size(fraction: float) -> int:
        return max(int(round(n_cells * fraction)), 1) if fraction > 0 else 0

    return size(validation_fraction), size(test_fraction)
