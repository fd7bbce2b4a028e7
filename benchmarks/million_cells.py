"""Atlas-scale benchmark: the whole default target on 1, 2 or 4 million cells.

Input: the Kang et al. 2018 IFN-beta PBMCs (built-in source ``kang2018_ifnb``, 13,999 cells
x 14,053 genes, raw counts) resampled with replacement up to N cells, and each cell then
thinned binomially at its own depth (every count x -> Binomial(x, p), p drawn uniformly in
[``--min-depth``, 1] per cell, seeded), so that no two cells are copies of each other (with
plain resampling, Leiden finds thousands of "clusters" of identical cells). The input is
written as a sparse (CSR, uncompressed) .h5ad, a chunk of cells at a time, as atlases come.

The workflow then runs on it with ``snakemake`` (its default target: preprocessing, the
iVAE and its controls at ``train.epochs: auto``, embeddings, reference labels, metrics,
nulls, figures, adata.h5ad) with ``keep_raw: false`` and one seed, and every rule's wall
time and peak RSS is read from Snakemake's benchmark files.

Reproduce (from the repository root, in the environment of requirements.txt; each size
writes its input once under --workdir and reuses it):

    python benchmarks/million_cells.py --n-cells 1000000 2000000 4000000

Prints, and writes to --workdir/atlas_scale.tsv, one row per rule and size: seconds and
peak RSS (GiB), and for each rule how its time grows with cells (the exponent of a
power law fitted over the sizes: 1 is linear).
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))


def thinned_cells(src, n_cells: int, *, min_depth: float = 0.5, seed: int = 0, chunk: int = 100_000):
    """Yield ``(source cell indices, depths, CSR counts)`` chunks of ``n_cells`` new cells:
    source cells drawn with replacement, each count thinned binomially at the cell's depth."""
    rng = np.random.default_rng(seed)
    X = src.tocsr()
    for lo in range(0, n_cells, chunk):
        n = min(chunk, n_cells - lo)
        idx = rng.integers(0, X.shape[0], n)
        depth = rng.uniform(min_depth, 1.0, n)
        block = X[idx]
        p = np.repeat(depth, np.diff(block.indptr))
        block.data = rng.binomial(block.data.astype(np.int64), p).astype(np.float32)
        block.eliminate_zeros()
        yield idx, depth, block


def make_input(n_cells: int, dest: Path, cache: Path, *, min_depth: float = 0.5, seed: int = 0) -> None:
    """Write ``n_cells`` thinned Kang cells to ``dest`` (CSR .h5ad, written by chunks)."""
    import anndata as ad

    from common_io import setup_logging
    from obtain import obtain
    from stream import H5adWriter

    setup_logging(None)
    kang = cache / "kang2018_ifnb.h5ad"
    if not kang.exists():
        obtain("kang2018_ifnb", kang, cache / "wheels")
    src = ad.read_h5ad(kang)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    writer = H5adWriter(tmp, src.n_vars, compression=None)
    sources, depths = [], []
    for idx, depth, block in thinned_cells(src.X, n_cells, min_depth=min_depth, seed=seed):
        writer.append(block)
        sources.append(idx)
        depths.append(depth)
    idx = np.concatenate(sources)
    obs = pd.DataFrame({"source_cell": src.obs_names[idx].to_numpy(), "depth": np.concatenate(depths)},
                       index=pd.Index([f"cell{i}" for i in range(n_cells)]))
    for column in src.obs.columns:
        obs[column] = src.obs[column].to_numpy()[idx]
    writer.finish(obs, src.var, {"benchmark": {"source": "kang2018_ifnb", "min_depth": min_depth, "seed": seed}})
    tmp.rename(dest)


def rule_costs(workdir: Path) -> pd.DataFrame:
    """Every job's seconds and peak RSS from Snakemake's benchmark files, summed per rule
    (seconds) and maximised (RSS)."""
    rows = []
    for path in sorted((workdir / "benchmarks").rglob("*.tsv")):
        bench = pd.read_csv(path, sep="\t")
        rows.append({"rule": path.parent.relative_to(workdir / "benchmarks").parts[0], "job": path.stem,
                     "s": float(bench["s"].iloc[-1]), "max_rss_gib": float(bench["max_rss"].iloc[-1]) / 1024})
    jobs = pd.DataFrame(rows)
    return jobs.groupby("rule").agg(jobs=("job", "size"), seconds=("s", "sum"), peak_rss_gib=("max_rss_gib", "max"))


def run_size(n_cells: int, args) -> pd.DataFrame:
    workdir = (args.workdir / f"n{n_cells}").resolve()
    data = workdir.parent / "data" / f"kang_thinned_{n_cells}.h5ad"
    if not data.exists():
        start = time.perf_counter()
        make_input(n_cells, data, workdir.parent / "cache", min_depth=args.min_depth)
        print(f"wrote {data} in {time.perf_counter() - start:.0f} s", flush=True)
    name = f"kang{n_cells}"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(
        f"datasets:\n  {name}:\n    path: {data}\n"
        "preprocess: {keep_raw: false}\n"
        f"train: {{batch_size: {args.batch_size}}}\n"
        "evaluation: {seeds: [0]}\n"
    )
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", str(args.cores), *args.targets]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - start
    costs = rule_costs(workdir).reset_index()
    costs.insert(0, "cells", n_cells)
    total = pd.DataFrame([{"cells": n_cells, "rule": "whole target (wall time)", "jobs": costs["jobs"].sum(),
                           "seconds": wall, "peak_rss_gib": costs["peak_rss_gib"].max()}])
    return pd.concat([costs, total], ignore_index=True)


def growth(table: pd.DataFrame) -> pd.Series:
    """Per rule, the exponent b of seconds ~ cells^b fitted over the sizes (NaN with one size)."""
    def slope(rows):
        rows = rows[rows["seconds"] > 0]
        if rows["cells"].nunique() < 2:
            return float("nan")
        return float(np.polyfit(np.log(rows["cells"]), np.log(rows["seconds"]), 1)[0])
    return table.groupby("rule")[["cells", "seconds"]].apply(slope).rename("growth_exponent")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-cells", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--min-depth", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--targets", nargs="*", default=[], help="snakemake targets (default: the default target)")
    parser.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "out" / "atlas")
    args = parser.parse_args()
    args.workdir = args.workdir.resolve()

    table = pd.concat([run_size(n, args) for n in args.n_cells], ignore_index=True)
    table = table.merge(growth(table), left_on="rule", right_index=True)
    out = args.workdir / "atlas_scale.tsv"
    table.to_csv(out, sep="\t", index=False)
    print(f"\n{out}\n")
    print(table.to_markdown(index=False, floatfmt=".2f") if hasattr(table, "to_markdown") else table.to_string())


if __name__ == "__main__":
    main()
