"""Training-speed benchmark: this workflow's iVAE trainer against the reference `iVAE`
package (0.0.5, PyPI) and scvi-tools' SCVI, in one run on the same data.

Data: Kang et al. 2018 IFN-beta PBMCs (13,999 cells x 14,053 genes), fetched with the
workflow's own ``obtain.py``; 2,000 highly variable genes (scanpy, ``seurat_v3`` on the raw
counts) are kept and every tool gets the same raw counts of those genes (scipy CSR).
``--n-cells N`` draws N of the real cells (without replacement when N <= 13,999, with
replacement above) for scale tests; the matrix stays sparse, and only the trainers that
need it densify cells x 2,000 HVGs (never cells x all genes).

Tools (``--tools``):

``ours``, ``ours_compiled``, ``ours_cudagraphs``
    ``fit()`` of ``workflow/scripts/train.py``; per-epoch seconds from its history:
    eager; the loss compiled by torch.compile (mode "default"); compiled with CUDA graphs
    (mode "reduce-overhead", CUDA only).
``ivae_ref``
    ``iVAE.model.iVAE.update(batch)`` of the reference package alone, fed batches of
    log1p counts as its environment does; only the ``update()`` calls are timed.
``ivae_ref_eval``
    the reference package's own training loop, ``iVAE.agent.fit(n)``: every step (one
    agent "epoch") samples a batch, calls ``update()``, embeds the batch and scores it
    (KMeans + six metrics, ``envMixin._calc_score``). Timed as a whole.
``scvi``
    ``scvi.model.SCVI`` (n_hidden=128, n_latent=10, n_layers=2, gene_likelihood="nb",
    train_size=1.0, no progress bar); per-epoch wall time from a Lightning callback,
    measured from one epoch's start to the next (the last to ``on_train_end``), so
    scvi's end-of-epoch work is counted and Trainer/model setup is not.

Every tool x batch size runs in its own subprocess, so peak memory (``ru_maxrss`` of the
child; on CUDA also ``torch.cuda.max_memory_allocated``) is per tool. Speed is cells/s
per epoch: the median over epochs after a one-epoch warm-up. The reference package is
timed in rounds of ``--ref-steps`` steps instead of whole epochs (a round is one epoch
when the epoch has fewer steps); its "s/epoch" is the equivalent time for one pass over
all cells at the measured rate. The reference is also timed at its own default batch,
1 % of the cells, unless ``--no-ref-default-batch``.

All trainers use the same widths (hidden 128, two hidden layers, latent 10) and, for
the iVAE, the same objective (irecon=1, beta=1, no dip/tc/info, lr 1e-4).

Setup of the benchmark environment (a venv of its own, not the workflow's)::

    python3.11 -m venv /tmp/benchvenv
    /tmp/benchvenv/bin/pip install torch==2.13.0
    /tmp/benchvenv/bin/pip install torch==2.13.0 scvi-tools==1.4.2 anndata==0.12.19 \\
        scanpy==1.11.5 scikit-misc==0.5.3 psutil
    /tmp/benchvenv/bin/pip install --no-deps iVAE==0.0.5   # its scib need is only for iVAE.utils

Reproduce the reported measurement (from the repository root)::

    /tmp/benchvenv/bin/python benchmarks/bench_training.py --n-cells 20000 --epochs 5 \\
        --batch-size 128,1024

Outputs (git-ignored) go under ``benchmarks/out/``: the data cache, one log per child
process in ``logs/`` and the TSV (``--out``). Besides the table's columns the TSV has
every round's seconds, each child's wall and CPU seconds, its RSS before training
(after imports and data) and the 1-minute load average while it ran (which includes
the benchmark's own threads: much above ``--threads`` means other processes competed;
OpenMP threads slow down badly when the cores are oversubscribed, so rerun on an idle
machine or with fewer ``--threads``).
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCRIPTS = REPO / "workflow" / "scripts"
DEFAULT_OUT_DIR = HERE / "out"

TOOLS = ("ours", "ours_compiled", "ours_cudagraphs", "ivae_ref", "ivae_ref_eval", "scvi")
OURS = ("ours", "ours_compiled", "ours_cudagraphs")
REFERENCE_TOOLS = ("ivae_ref", "ivae_ref_eval")
SOURCE = "kang2018_ifnb"

#: Architecture and objective shared by all trainers.
HIDDEN_DIM, LATENT_DIM, I_DIM, N_LAYERS = 128, 10, 2, 2
LOSS = dict(irecon=1.0, beta=1.0, dip=0.0, tc=0.0, info=0.0)
LR = 1e-4
#: The reference agent's default batch: this fraction of the cells per step.
REF_DEFAULT_PERCENT = 0.01

GIB = 1024 ** 3
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


# --------------------------------------------------------------------------- options

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time the workflow's iVAE trainer, the reference iVAE package and scvi-tools "
        "SCVI on the same Kang 2018 PBMC counts (2,000 HVGs); print a Markdown table and write a TSV.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--n-cells", type=int, default=None, metavar="N",
                        help="cells to train on, drawn from the 13,999 real cells (with replacement "
                        "above 13,999); default: all real cells once")
    parser.add_argument("--epochs", type=int, default=5,
                        help="epochs per tool (the first is a warm-up, excluded from the median); "
                        "for the reference package: rounds of --ref-steps steps")
    parser.add_argument("--batch-size", type=_int_list, default="128", metavar="N[,N...]",
                        help="batch size, or a comma-separated list (e.g. 128,1024)")
    parser.add_argument("--threads", type=int, default=2,
                        help="CPU threads (torch.set_num_threads and OMP/MKL/OpenBLAS variables)")
    parser.add_argument("--tools", type=_tool_list, default=",".join(TOOLS), metavar="TOOL[,TOOL...]",
                        help=f"comma-separated subset of {','.join(TOOLS)}")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="device of every trainer (the reference and scvi too)")
    parser.add_argument("--ref-steps", type=int, default=200,
                        help="steps per timed round of the reference package (capped at one epoch); "
                        "0 = always one full epoch")
    parser.add_argument("--no-ref-default-batch", action="store_true",
                        help="do not also time the reference package at its default batch (1%% of the cells)")
    parser.add_argument("--n-top-genes", type=int, default=2000, help="highly variable genes kept")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cell draw and of every trainer")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR,
                        help="data cache, child logs and default TSV location (git-ignored)")
    parser.add_argument("--out", type=Path, default=None,
                        help="TSV of results; default: OUT_DIR/bench_training_<n>cells_<device>.tsv")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    return args


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got '{text}'") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be positive integers, got '{text}'")
    return values


def _tool_list(text: str) -> list[str]:
    tools = [t.strip() for t in text.split(",") if t.strip()]
    unknown = sorted(set(tools) - set(TOOLS))
    if unknown or not tools:
        raise argparse.ArgumentTypeError(f"unknown tool(s) {unknown}; choose from {','.join(TOOLS)}")
    return [t for t in TOOLS if t in tools]  # canonical order, ours first


def set_thread_env(threads: int) -> None:
    """Pin BLAS/OpenMP thread pools; must run before numpy or torch is imported."""
    for var in THREAD_VARS:
        os.environ[var] = str(threads)


# --------------------------------------------------------------------------- data

def prepare_counts(args) -> tuple[Path, int, int]:
    """Write (once, cached) the benchmark's count matrix; return (path, n_cells, n_genes).

    Fetches the Kang 2018 data with the workflow's ``obtain()``, picks ``--n-top-genes``
    HVGs with scanpy's seurat_v3 on the real cells' raw counts, then draws the cells.
    """
    import numpy as np
    import scipy.sparse as sp

    data_dir = args.out_dir / "data"
    raw = data_dir / f"{SOURCE}.h5ad"
    label = args.n_cells if args.n_cells is not None else "all"
    path = data_dir / f"{SOURCE}_hvg{args.n_top_genes}_cells{label}_seed{args.seed}.npz"
    if path.exists():
        counts = sp.load_npz(path)
        return path, counts.shape[0], counts.shape[1]

    sys.path.insert(0, str(SCRIPTS))
    from rule_io import setup_logging
    from obtain import obtain

    if not raw.exists():
        setup_logging(None)
        obtain(SOURCE, raw, args.out_dir / "cache")

    import anndata as ad
    import scanpy as sc

    adata = ad.read_h5ad(raw)
    adata.layers["counts"] = sp.csr_matrix(adata.X, dtype=np.float32)
    sc.pp.highly_variable_genes(adata, n_top_genes=args.n_top_genes, flavor="seurat_v3", layer="counts")
    counts = adata.layers["counts"][:, adata.var["highly_variable"].to_numpy()].tocsr()
    n_real = counts.shape[0]
    if args.n_cells is not None:
        rng = np.random.default_rng(args.seed)
        rows = rng.choice(n_real, size=args.n_cells, replace=args.n_cells > n_real)
        counts = counts[rows]
    counts = sp.csr_matrix(counts, dtype=np.float32)
    counts.sort_indices()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.npz")
    sp.save_npz(tmp, counts, compressed=False)
    os.replace(tmp, path)
    print(f"prepared {counts.shape[0]} cells x {counts.shape[1]} HVGs ({counts.nnz} non-zeros) "
          f"from {n_real} real cells -> {path}", file=sys.stderr)
    return path, counts.shape[0], counts.shape[1]


# --------------------------------------------------------------------------- machine

def machine_info(device: str, threads: int) -> dict:
    """CPU model, cores, library versions and the accelerator's name."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda, but torch sees no CUDA device on this machine")
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads": threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({cpu})",
    }
    for module, dist in (("scvi", "scvi-tools"), ("iVAE", "iVAE")):
        try:
            from importlib.metadata import version
            info[module] = version(dist)
        except Exception:  # noqa: BLE001 - a missing package is reported, not fatal
            info[module] = "not installed"
    return info


# --------------------------------------------------------------------------- child: one tool

def _torch_device(name: str):
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda but torch sees no CUDA device")
    return torch.device(name)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ours(counts, spec: dict, compile_loss: bool = False, mode: str = "default") -> dict:
    """The workflow's ``fit()``: per-epoch seconds from its history (excludes densifying).

    With ``compile_loss`` the loss is compiled by torch.compile in ``mode`` ("default", or
    "reduce-overhead": CUDA graphs, CUDA only); the compilation falls in the warm-up epoch,
    which the median excludes.
    """
    sys.path.insert(0, str(SCRIPTS))
    from model import ModelSettings
    from train import TrainSettings, fit

    bs = spec["batch_size"]
    model = ModelSettings(n_genes=counts.shape[1], hidden_dim=HIDDEN_DIM, latent_dim=LATENT_DIM, i_dim=I_DIM)
    settings = TrainSettings(epochs=spec["epochs"], batch_size=bs, lr=LR, **LOSS, seed=spec["seed"],
                             checkpoint_every=spec["epochs"], compile=compile_loss, device=str(spec["device"]),
                             validation_fraction=0.0, test_fraction=0.0, early_stopping=False,
                             patience=1)  # every cell, every epoch
    start = time.perf_counter()
    _model, history = fit(counts, model, settings, device=spec["device"], compile_mode=mode)
    total = time.perf_counter() - start
    seconds = [float(s) for s in history["seconds"]]
    return {
        "round_seconds": seconds,
        "cells_per_round": (counts.shape[0] // bs) * bs,  # fit drops the last incomplete batch
        "steps_per_round": counts.shape[0] // bs,
        "setup_s": total - sum(seconds),
        "timing": "fit() history 'seconds' per epoch",
    }


def _ref_round_steps(n_cells: int, bs: int, ref_steps: int) -> int:
    per_epoch = max(n_cells // bs, 1)
    return per_epoch if ref_steps <= 0 else min(per_epoch, ref_steps)


def time_ivae_ref(counts, spec: dict) -> dict:
    """The reference ``iVAE.update()`` alone, on batches of log1p counts (sparse rows densified per batch)."""
    import numpy as np
    import torch
    from iVAE.model import iVAE

    device = _torch_device(spec["device"])
    torch.manual_seed(spec["seed"])
    rng = np.random.default_rng(spec["seed"])
    start = time.perf_counter()
    ref = iVAE(**LOSS, state_dim=counts.shape[1], hidden_dim=HIDDEN_DIM, latent_dim=LATENT_DIM,
               i_dim=I_DIM, lr=LR, device=device)
    setup = time.perf_counter() - start
    n_cells, bs = counts.shape[0], spec["batch_size"]
    steps = _ref_round_steps(n_cells, bs, spec["ref_steps"])
    rounds = []
    for _ in range(spec["epochs"]):
        order = rng.permutation(n_cells)
        elapsed = 0.0
        for b in range(steps):
            rows = order[b * bs:(b + 1) * bs]  # steps <= n_cells // bs
            batch = np.log1p(counts[rows].toarray())  # the package feeds log1p(counts)
            _sync(device)
            t0 = time.perf_counter()
            ref.update(batch)
            _sync(device)
            elapsed += time.perf_counter() - t0
        rounds.append(elapsed)
    return {
        "round_seconds": rounds, "cells_per_round": steps * bs, "steps_per_round": steps,
        "setup_s": setup, "timing": f"sum of update() calls, {steps} steps per round",
    }


def time_ivae_ref_eval(counts, spec: dict) -> dict:
    """The reference package's own loop, ``agent.fit(steps)``: sample, update, embed, KMeans + metrics.

    The agent is built on a dense counts layer (its sparse path calls ``.A``, which
    scipy >= 1.14 no longer has); its constructor log1p-densifies all cells and runs
    KMeans on them, which is setup, not timed, but counted in the peak memory.
    """
    import anndata as ad
    import numpy as np
    import torch
    from iVAE import agent

    device = _torch_device(spec["device"])
    n_cells, bs = counts.shape[0], spec["batch_size"]
    np.random.seed(spec["seed"])  # the package samples with numpy's global generator
    torch.manual_seed(spec["seed"])
    start = time.perf_counter()
    adata = ad.AnnData(X=counts, layers={"counts": counts.toarray()})
    percent = (bs + 0.5) / n_cells  # so that the agent's int(percent * n_obs) == bs
    ag = agent(adata, layer="counts", percent=percent, **LOSS, hidden_dim=HIDDEN_DIM,
               latent_dim=LATENT_DIM, i_dim=I_DIM, lr=LR, device=device)
    del adata
    setup = time.perf_counter() - start
    if ag.batch_size != bs:
        raise RuntimeError(f"agent batch {ag.batch_size} != requested {bs}")
    steps = _ref_round_steps(n_cells, bs, spec["ref_steps"])
    rounds = []
    for _ in range(spec["epochs"]):
        _sync(device)
        t0 = time.perf_counter()
        ag.fit(epochs=steps)
        _sync(device)
        rounds.append(time.perf_counter() - t0)
    return {
        "round_seconds": rounds, "cells_per_round": steps * bs, "steps_per_round": steps,
        "setup_s": setup, "timing": f"agent.fit({steps}) per round (one step = one agent epoch)",
    }


def time_scvi(counts, spec: dict) -> dict:
    """scvi-tools SCVI; per-epoch times from a Lightning callback (start of epoch to start of next)."""
    import anndata as ad
    import scvi
    import torch
    from lightning.pytorch import Callback

    device = _torch_device(spec["device"])

    class EpochTimer(Callback):
        """Timestamps at each epoch start and at the end of training."""

        def __init__(self):
            self.stamps = []

        def _stamp(self):
            _sync(device)
            self.stamps.append(time.perf_counter())

        def on_train_epoch_start(self, trainer, pl_module):
            self._stamp()

        def on_train_end(self, trainer, pl_module):
            self._stamp()

    scvi.settings.seed = spec["seed"]
    scvi.settings.num_threads = spec["threads"]
    scvi.settings.dl_num_workers = 0
    start = time.perf_counter()
    adata = ad.AnnData(X=counts)
    scvi.model.SCVI.setup_anndata(adata)
    model = scvi.model.SCVI(adata, n_hidden=HIDDEN_DIM, n_latent=LATENT_DIM, n_layers=N_LAYERS,
                            gene_likelihood="nb")
    timer = EpochTimer()
    t0 = time.perf_counter()
    model.train(
        max_epochs=spec["epochs"], batch_size=spec["batch_size"], train_size=1.0,
        accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
        enable_progress_bar=False, callbacks=[timer],
    )
    train_wall = time.perf_counter() - t0
    seconds = [b - a for a, b in zip(timer.stamps, timer.stamps[1:])]
    if len(seconds) != spec["epochs"]:
        raise RuntimeError(f"expected {spec['epochs']} epoch times, got {len(seconds)}")
    return {
        "round_seconds": seconds, "cells_per_round": counts.shape[0],
        "steps_per_round": -(-counts.shape[0] // spec["batch_size"]),
        "setup_s": (t0 - start) + train_wall - sum(seconds),
        "timing": "Lightning callback, epoch start to next epoch start (last: on_train_end)",
        "torch_threads": torch.get_num_threads(),
    }


TIMERS = {"ours": time_ours, "ours_compiled": lambda counts, spec: time_ours(counts, spec, compile_loss=True),
          "ours_cudagraphs": lambda counts, spec: time_ours(counts, spec, compile_loss=True, mode="reduce-overhead"),
          "ivae_ref": time_ivae_ref, "ivae_ref_eval": time_ivae_ref_eval,
          "scvi": time_scvi}


def _preimport(tool: str) -> None:
    """Import the tool's package up front, so that ``rss_start`` includes the library."""
    import importlib

    if tool in OURS:
        sys.path.insert(0, str(SCRIPTS))
    importlib.import_module({"ours": "train", "ours_compiled": "train", "ours_cudagraphs": "train",
                             "scvi": "scvi"}.get(tool, "iVAE"))


def run_child(spec: dict) -> None:
    """Entry point of a child process: time one tool at one batch size, write JSON."""
    set_thread_env(spec["threads"])
    if spec["tool"] == "ivae_ref_eval":
        os.environ["TQDM_DISABLE"] = "1"  # the agent's progress bar
    import psutil
    import scipy.sparse as sp
    import torch

    torch.set_num_threads(spec["threads"])
    if spec["device"] == "cuda":
        torch.cuda.reset_peak_memory_stats()
    counts = sp.load_npz(spec["counts"]).tocsr()
    _preimport(spec["tool"])
    rss_start = psutil.Process().memory_info().rss
    load_start = os.getloadavg()[0]
    result = TIMERS[spec["tool"]](counts, spec)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result.update(
        cpu_s=usage.ru_utime + usage.ru_stime,
        loadavg_1m=(load_start + os.getloadavg()[0]) / 2,
        peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB,  # KiB on Linux
        rss_start_gib=rss_start / GIB,
        cuda_peak_gib=torch.cuda.max_memory_allocated() / GIB if spec["device"] == "cuda" else None,
        torch_threads=result.get("torch_threads", torch.get_num_threads()),
    )
    Path(spec["result"]).write_text(json.dumps(result))


# --------------------------------------------------------------------------- parent

def run_tool(spec: dict, log_dir: Path) -> dict:
    """Run one tool x batch size in a subprocess; return its result or a failure record."""
    name = f"{spec['tool']}_bs{spec['batch_size']}"
    log_path = log_dir / f"{name}.log"
    spec = {**spec, "result": str(log_dir / f"{name}.json")}
    Path(spec["result"]).unlink(missing_ok=True)
    print(f"running {name} ... (log: {log_path})", file=sys.stderr, flush=True)
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                              stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not Path(spec["result"]).exists():
        tail = log_path.read_text().strip().splitlines()[-1:] or ["no output"]
        print(f"  {name} FAILED (exit {proc.returncode}): {tail[0]}", file=sys.stderr, flush=True)
        return {"status": f"failed (exit {proc.returncode}): {tail[0][:200]}", "wall_s": wall}
    result = json.loads(Path(spec["result"]).read_text())
    result.update(status="ok", wall_s=wall)
    print(f"  {name}: {wall:.1f} s, rounds {[round(s, 3) for s in result['round_seconds']]}",
          file=sys.stderr, flush=True)
    return result


def summarise(tool: str, bs: int, note: str, result: dict, n_cells: int) -> dict:
    """One table row: median cells/s after a one-round warm-up, and derived times."""
    row = {"tool": tool, "batch_size": bs, "batch_note": note, "status": result["status"]}
    if result["status"] != "ok":
        return row
    rounds = result["round_seconds"]
    timed = rounds[1:] if len(rounds) > 1 else rounds
    median = statistics.median(timed)
    cells_per_s = result["cells_per_round"] / median
    row.update(
        cells_per_s=cells_per_s,
        s_per_epoch=n_cells / cells_per_s,
        ms_per_step=1000 * median / result["steps_per_round"],
        steps_per_round=result["steps_per_round"],
        rounds_timed=len(timed),
        peak_rss_gib=result["peak_rss_gib"],
        rss_start_gib=result["rss_start_gib"],
        cuda_peak_gib=result["cuda_peak_gib"],
        setup_s=result["setup_s"],
        cpu_s=result["cpu_s"],
        wall_s=result["wall_s"],
        loadavg_1m=result["loadavg_1m"],
        round_seconds=",".join(f"{s:.4f}" for s in rounds),
        timing=result["timing"],
        torch_threads=result["torch_threads"],
    )
    return row


def add_ratios(rows: list[dict], first_bs: int) -> None:
    """ours / tool for speed (>1: ours faster) and peak RSS (>1: ours uses more), same batch size
    when ours ran at it, else ours at the first --batch-size. ``ours_compiled_speedup`` is
    the same speed ratio for the compiled trainer."""
    def by_batch(tool):
        return {r["batch_size"]: r for r in rows if r["tool"] == tool and r["status"] == "ok"}

    ours, compiled = by_batch("ours"), by_batch("ours_compiled")
    for r in rows:
        if r["tool"] == "ours_compiled" or r["status"] != "ok":
            continue
        fast = compiled.get(r["batch_size"]) or compiled.get(first_bs)
        if fast is not None:
            r["ours_compiled_speedup"] = fast["cells_per_s"] / r["cells_per_s"]
        ref = ours.get(r["batch_size"]) or ours.get(first_bs)
        if r["tool"] == "ours" or ref is None:
            continue
        r["vs_ours_batch"] = ref["batch_size"]
        r["ours_speedup"] = ref["cells_per_s"] / r["cells_per_s"]
        r["ours_mem_ratio"] = ref["peak_rss_gib"] / r["peak_rss_gib"]
        if ref["cuda_peak_gib"] and r.get("cuda_peak_gib"):
            r["ours_cuda_mem_ratio"] = ref["cuda_peak_gib"] / r["cuda_peak_gib"]


def markdown_table(rows: list[dict], cuda: bool) -> str:
    head = ["tool", "batch", "cells/s", "s/epoch", "ms/step", "peak RSS GiB"]
    if cuda:
        head.append("CUDA peak GiB")
    head += ["ours speed-up", "compiled speed-up", "ours/tool RSS", "setup s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        batch = f"{r['batch_size']}" + (f" ({r['batch_note']})" if r["batch_note"] else "")
        if r["status"] != "ok":
            lines.append(f"| {r['tool']} | {batch} | " + " | ".join([r["status"]] + [""] * (len(head) - 3)) + " |")
            continue
        ratio_note = "" if r.get("vs_ours_batch") in (None, r["batch_size"]) else f" (vs ours@{r['vs_ours_batch']})"
        cells = [r["tool"], batch, f"{r['cells_per_s']:,.0f}", f"{r['s_per_epoch']:.2f}",
                 f"{r['ms_per_step']:.2f}", f"{r['peak_rss_gib']:.2f}"]
        if cuda:
            cells.append(f"{r['cuda_peak_gib']:.3f}")
        cells += [f"{r['ours_speedup']:.2f}x{ratio_note}" if "ours_speedup" in r else "—",
                  f"{r['ours_compiled_speedup']:.2f}x" if "ours_compiled_speedup" in r else "—",
                  f"{r['ours_mem_ratio']:.2f}" if "ours_mem_ratio" in r else "—",
                  f"{r['setup_s']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_tsv(rows: list[dict], machine: dict, path: Path, n_cells: int, n_genes: int, epochs: int) -> None:
    cols = ["tool", "batch_size", "batch_note", "status", "cells_per_s", "s_per_epoch", "ms_per_step",
            "steps_per_round", "rounds_timed", "peak_rss_gib", "rss_start_gib", "cuda_peak_gib",
            "setup_s", "wall_s", "cpu_s", "loadavg_1m", "vs_ours_batch", "ours_speedup", "ours_compiled_speedup", "ours_mem_ratio",
            "ours_cuda_mem_ratio",
            "round_seconds", "timing", "torch_threads", "n_cells", "n_genes", "epochs",
            "device", "device_name", "cpu", "usable_cores", "torch", "scvi", "iVAE"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fh.write("\t".join(cols) + "\n")
        for r in rows:
            full = {**machine, **r, "n_cells": n_cells, "n_genes": n_genes, "epochs": epochs}
            fh.write("\t".join(_fmt(full.get(c)) for c in cols) + "\n")


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).replace("\t", " ")


def skip_reason(tool: str, bs: int, n_cells: int, n_genes: int) -> str | None:
    """Why a tool x batch size cannot run here, or None.

    The reference agent holds the cells x genes counts and their log1p densely and its
    KMeans on all cells copies them once more: about three dense float32 matrices.
    """
    import psutil

    if bs > n_cells:
        return f"batch > {n_cells} cells"
    if tool == "ivae_ref_eval":
        need = 3 * n_cells * n_genes * 4
        available = psutil.virtual_memory().available
        if need > 0.9 * available:
            return (f"the agent needs ~{need / GIB:.0f} GiB (dense counts, log1p and KMeans on all "
                    f"cells), {available / GIB:.0f} GiB available")
    return None


def main(argv=None) -> None:
    args = parse_args(argv)
    set_thread_env(args.threads)
    args.out_dir = args.out_dir.resolve()
    counts_path, n_cells, n_genes = prepare_counts(args)
    machine = machine_info(args.device, args.threads)
    print(f"machine: {machine['cpu']}; {machine['usable_cores']} usable of {machine['logical_cores']} "
          f"logical cores; {args.threads} threads; python {machine['python']}; torch {machine['torch']}; "
          f"scvi-tools {machine['scvi']}; iVAE {machine['iVAE']}; device {args.device} ({machine['device_name']})")
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"WARNING: 1-min load average is {load:.1f} before the benchmark: other processes compete "
              "for the CPU, and OpenMP threads slow down badly when the cores are oversubscribed. "
              "The TSV records each child's load average and CPU seconds.")
    print(f"data: {SOURCE}, {n_cells} cells x {n_genes} HVGs (raw counts, CSR); epochs {args.epochs} "
          f"(first one warm-up); batch sizes {args.batch_size}")

    log_dir = args.out_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    base = {"counts": str(counts_path), "epochs": args.epochs, "threads": args.threads,
            "device": args.device, "seed": args.seed, "ref_steps": args.ref_steps}
    ref_default = max(int(REF_DEFAULT_PERCENT * n_cells), 1)
    rows = []
    for tool in args.tools:
        batches = [(bs, "") for bs in args.batch_size]
        if tool in REFERENCE_TOOLS and not args.no_ref_default_batch and ref_default not in args.batch_size:
            batches.append((ref_default, "1% default"))
        for bs, note in batches:
            skip = ("CUDA graphs need --device cuda" if tool == "ours_cudagraphs" and args.device != "cuda"
                    else skip_reason(tool, bs, n_cells, n_genes))
            if skip:
                print(f"skipping {tool}_bs{bs}: {skip}", file=sys.stderr, flush=True)
                rows.append({"tool": tool, "batch_size": bs, "batch_note": note, "status": f"skipped: {skip}"})
                continue
            result = run_tool({**base, "tool": tool, "batch_size": bs}, log_dir)
            rows.append(summarise(tool, bs, note, result, n_cells))
    add_ratios(rows, args.batch_size[0])

    print()
    print(markdown_table(rows, cuda=args.device == "cuda"))
    print()
    print("cells/s: median over epochs after a 1-epoch warm-up (reference: rounds of steps); "
          "s/epoch = n_cells / (cells/s); ours speed-up = ours cells/s / tool cells/s; "
          "ours/tool RSS = peak RSS ratio (each tool in its own process, incl. imports and data).")
    out = args.out or args.out_dir / f"bench_training_{n_cells}cells_{args.device}.tsv"
    write_tsv(rows, machine, out, n_cells, n_genes, args.epochs)
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        run_child(json.loads(sys.argv[2]))
    else:
        main()
