"""Scale test: preprocessing and training of N cells (default 1,000,000) through the workflow.

Real cells of the Kang et al. 2018 IFN-beta PBMC set (built-in source ``kang2018_ifnb``)
are resampled with replacement up to N and written as raw counts (sparse, never dense);
then the workflow runs on them with ``snakemake`` (preprocess -> train -> embed -> figure),
and the peak RSS and wall time of every rule are read from Snakemake's benchmark files.

Reproduce (from the repository root, in the environment of requirements.txt):

    python benchmarks/million_cells.py --n-cells 1000000 --epochs 1 --workdir benchmarks/out/million

Prints a Markdown table: rule, seconds, peak RSS (GiB); and training's seconds per epoch.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))


def make_input(n_cells: int, dest: Path, cache: Path, seed: int = 0) -> None:
    """Write ``n_cells`` cells resampled from the Kang data, as a CSR count .h5ad."""
    import anndata as ad

    from common_io import setup_logging
    from obtain import obtain

    setup_logging(None)
    kang = cache / "kang2018_ifnb.h5ad"
    if not kang.exists():
        obtain("kang2018_ifnb", kang, cache / "wheels")
    src = ad.read_h5ad(kang)
    idx = np.sort(np.random.default_rng(seed).integers(0, src.n_obs, n_cells))
    out = ad.AnnData(X=src.X[idx], obs=src.obs.iloc[idx].reset_index(names="source_cell"), var=src.var)
    out.obs_names = [f"cell{i}" for i in range(n_cells)]
    dest.parent.mkdir(parents=True, exist_ok=True)
    out.write_h5ad(dest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-cells", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "out" / "million")
    args = parser.parse_args()

    workdir = args.workdir.resolve()
    data = workdir / "data" / f"kang_{args.n_cells}.h5ad"
    if not data.exists():
        start = time.perf_counter()
        make_input(args.n_cells, data, workdir / "cache")
        print(f"wrote {data} in {time.perf_counter() - start:.0f} s", flush=True)
    name = f"kang{args.n_cells}"
    (workdir / "config.yaml").write_text(
        f"datasets:\n  {name}:\n    path: {data}\n"
        "preprocess: {max_pct_mt: null, keep_raw: false}\n"
        f"train: {{epochs: {args.epochs}, batch_size: {args.batch_size}}}\n"
        "evaluation: {seeds: [0]}\n"  # the main iVAE only: its nulls need no other seed
    )
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", str(args.cores), f"results/{name}/figures/latent_correlation.png"]
    subprocess.run(cmd, check=True)

    import pandas as pd

    print(f"\n{args.n_cells:,} cells, {args.epochs} epoch(s) at batch {args.batch_size}, {args.cores} cores\n")
    print("| rule | seconds | peak RSS (GiB) |\n| --- | --- | --- |")
    for rule in ("preprocess", "train", "embed"):
        bench = pd.read_csv(workdir / "benchmarks" / rule / f"{name}.tsv", sep="\t")
        print(f"| {rule} | {bench['s'].iloc[-1]:.0f} | {bench['max_rss'].iloc[-1] / 1024:.2f} |")
    log = pd.read_csv(workdir / "results" / name / "training_log.tsv", sep="\t")
    print(f"\ntraining: {log['seconds'].median():.1f} s per epoch, "
          f"{args.n_cells / log['seconds'].median():,.0f} cells/s")


if __name__ == "__main__":
    main()
