#!/usr/bin/env bash
# The GPU checks in one call on a CUDA machine (docs/performance.md and docs/tests.md), from the
# repository root. Needs what a bare GPU image lacks, prepared on a machine with pip:
#   .whl/                 wheels of anndata, scanpy, scvi-tools, snakemake, igraph, leidenalg
#                         and their missing dependencies (Python 3.12), installed to /tmp/site
#   benchmarks/out/data/kang2018_ifnb_hvg2000_cellsall_seed0.npz
#                         the Kang cells' raw counts of 2,000 HVGs, as bench_training.py
#                         prepares them (scipy CSR); the larger sets are drawn from it here
# Steps, each under its own time limit: the CUDA tests; the default workflow's pbmc68k
# metrics target with training on the GPU; bench_training.py side by side (ours eager,
# compiled, compiled with CUDA graphs, scvi-tools) at batch 128 and 1,024; one epoch in the
# device-CSR layout on more cells than half the GPU's memory holds densely.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1
section() { printf '\n=== %s (%s)\n' "$1" "$(date +%T)"; }
# STEPS: which steps to run (default all): tests draw bench128 bench1024 scvi1024 workflow csr
STEPS=" ${STEPS:-tests draw bench128 bench1024 workflow csr} "
want() { [[ "$STEPS" == *" $1 "* ]]; }

section "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
export PYTHONPATH=/tmp/site
python3 -c "import torch, anndata, scanpy, scvi, snakemake; print('torch', torch.__version__, torch.cuda.get_device_name(0), \
'| anndata', anndata.__version__, '| scanpy', scanpy.__version__, '| scvi-tools', scvi.__version__, '| snakemake', snakemake.__version__)"

want tests && { section "CUDA tests"
timeout 100 python3 -m pytest -q -p no:cacheprovider -rs tests/unit/test_train.py tests/unit/test_model.py \
    tests/unit/test_losses.py 2>&1 | tail -12; }

want draw && { section "draw the benchmark's cells"
timeout 90 python3 - <<'EOF'
import numpy as np, scipy.sparse as sp, torch
d = "benchmarks/out/data/kang2018_ifnb_hvg2000_cellsall_seed0.npz"
real = sp.load_npz(d).tocsr()
free, _ = torch.cuda.mem_get_info()
big = int(0.6 * free / (4 * real.shape[1]))  # dense would need more than half the free memory
for n in (200_000, 1_000_000, big):
    rows = np.random.default_rng(0).choice(real.shape[0], size=n, replace=n > real.shape[0])
    counts = sp.csr_matrix(real[rows], dtype=np.float32)
    counts.sort_indices()
    name = f"big_{n}.npz" if n == big else f"kang2018_ifnb_hvg2000_cells{n}_seed0.npz"
    sp.save_npz(f"benchmarks/out/data/{name}", counts, compressed=False)
    print(n, "cells,", counts.nnz, "non-zeros ->", name)
EOF
}

want bench128 && { section "bench, batch 128 (200,000 cells)"
timeout 150 python3 benchmarks/bench_training.py --device cuda --n-cells 200000 --epochs 2 --batch-size 128 \
    --threads 8 --tools ours,ours_compiled,ours_cudagraphs,scvi --out "$OUT/bench_cuda_bs128.tsv" 2>&1 \
    | grep -v "^running"; }

want bench1024 && { section "bench, batch 1024 (1,000,000 cells)"
timeout 120 python3 benchmarks/bench_training.py --device cuda --n-cells 1000000 --epochs 2 --batch-size 1024 \
    --threads 8 --tools ours,ours_compiled,ours_cudagraphs,scvi --out "$OUT/bench_cuda_bs1024.tsv" 2>&1 \
    | grep -v "^running"; }
want scvi1024 && { section "bench, batch 1024 (1,000,000 cells), scvi-tools alone"
timeout 90 python3 benchmarks/bench_training.py --device cuda --n-cells 1000000 --epochs 2 --batch-size 1024 \
    --threads 8 --tools scvi --out "$OUT/bench_cuda_bs1024_scvi.tsv" 2>&1 | grep -v "^running"; }

want workflow && { section "default workflow, pbmc68k, training on the GPU"
rm -rf /tmp/wf && mkdir -p /tmp/wf && cp config.yaml /tmp/wf/
timeout 300 python3 -m snakemake results/pbmc68k/metrics.tsv --snakefile Snakefile --directory /tmp/wf \
    --cores 16 --resources gpu=3 --quiet 2>&1 | tail -5
grep -h "INFO torch\|counts held\|done:" /tmp/wf/logs/train/pbmc68k.log
cp /tmp/wf/results/pbmc68k/metrics.tsv "$OUT/pbmc68k_metrics_gpu.tsv" 2>/dev/null
cp /tmp/wf/results/pbmc68k/metrics_summary.tsv "$OUT/pbmc68k_metrics_summary_gpu.tsv" 2>/dev/null
cp -r /tmp/wf/logs "$OUT/workflow_logs" 2>/dev/null; }

want csr && { section "device-CSR layout, one epoch at batch 1024, CUDA graphs"
timeout 60 python3 - <<'EOF'
import glob, sys, time
import scipy.sparse as sp
sys.path.insert(0, "workflow/scripts")
from rule_io import setup_logging
from model import ModelSettings
from train import TrainSettings, fit
setup_logging(None)
path = glob.glob("benchmarks/out/data/big_*.npz")[0]
counts = sp.load_npz(path).tocsr()
settings = TrainSettings(epochs=1, batch_size=1024, lr=1e-3, beta=1.0, irecon=1.0, dip=0.0, tc=0.0, info=0.0,
                         seed=0, checkpoint_every=1, compile=True, device="cuda", validation_fraction=0.0, test_fraction=0.0,
                         early_stopping=False, patience=1)
start = time.perf_counter()
_, history = fit(counts, ModelSettings(counts.shape[1], 128, 10, 4), settings, device="cuda")
print(f"{counts.shape[0]:,} cells: epoch {history['seconds'].iloc[0]:.1f} s "
      f"({counts.shape[0] / history['seconds'].iloc[0]:,.0f} cells/s, compilation included); "
      f"fit() {time.perf_counter() - start:.1f} s")
EOF
}
section "end"
