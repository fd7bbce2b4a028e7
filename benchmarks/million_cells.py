"""Atlas-scale benchmark: the whole default target on 1, 2 or 4 million cells.

Input: N new cells made from the Kang et al. 2018 IFN-beta PBMCs (built-in source
``kang2018_ifnb``, 13,999 cells x 14,053 genes, raw counts): each mixes a real cell with one
of its 15 nearest neighbours, thinned binomially at a depth of its own (``new_cells``), so
that no two cells are copies of each other. Resampling real cells makes groups of copies
(Leiden found 16,545 "clusters" in 1 M resampled cells), and thinning the copies is not
enough (3,492 clusters in 1 M cells thinned at depths 0.5-1). The input is written as a
sparse (CSR, uncompressed) .h5ad, a chunk of cells at a time, as atlases come.

The workflow then runs on it with ``snakemake`` (its default target: preprocessing, the
iVAE and its controls at ``train.epochs: auto``, embeddings, reference labels, metrics,
nulls, figures, adata.h5ad) with ``keep_raw: false`` and one seed. Every job's wall time
and sampled peak RSS is read from Snakemake's benchmark files, and its exact peak RSS from
``process_peaks.py``, which runs beside Snakemake and reads each job process's high-water
mark: that of the job's script process, not adding the processes it starts, such as PyTorch's
compile workers (Snakemake samples every 30 s after a job's first 15 s and can miss a brief
peak).

Reproduce (from the repository root, in the environment of requirements.txt; each size
writes its input once under --workdir and reuses it):

    python benchmarks/million_cells.py --n-cells 1000000 2000000 4000000

Prints, and writes to --workdir/atlas_scale.tsv, one row per job and size: seconds, peak
RSS in GiB (``peak_rss_gib``: the exact one where process_peaks.py saw the job, else
Snakemake's sample, ``exact``: which), the whole target's wall time (from Snakemake's logs),
and how each job's time grows with cells (the exponent of a power law fitted over the
sizes: 1 is linear). In the printed table a sampled peak is marked "*". A second table sets
preprocessing's peak against its bound: 2.5 x the kept cells x HVG count matrix it writes,
plus one chunk of the input. Every
``process_peaks*.tsv`` in a size's directory is read, so the exact peaks of jobs rerun
apart (``snakemake --forcerun``, with process_peaks.py attached) count too.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))


def neighbours(X, k: int = 15, seed: int = 0) -> np.ndarray:
    """Each source cell's ``k`` nearest cells (50 principal components of log-normalised counts)."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.neighbors import NearestNeighbors

    X = sp.csr_matrix(X, dtype=np.float32)
    norm = sp.diags(1e4 / np.maximum(np.asarray(X.sum(1)).ravel(), 1)) @ X
    norm.data = np.log1p(norm.data)
    pcs = TruncatedSVD(50, random_state=seed).fit_transform(norm)
    return NearestNeighbors(n_neighbors=k + 1).fit(pcs).kneighbors(pcs, return_distance=False)[:, 1:]


def new_cells(src, n_cells: int, *, min_depth: float = 0.5, seed: int = 0, chunk: int = 100_000):
    """Yield ``(first source cell, second source cell, weight, depth, CSR counts)`` chunks of
    ``n_cells`` new cells. Each mixes a source cell a (drawn with replacement) with one of
    its 15 nearest neighbours b: counts = Binomial(x_a, p w) + Binomial(x_b, p (1 - w)),
    w ~ U(0, 1), depth p ~ U(min_depth, 1). So a new cell lies between two real neighbours,
    at its own depth, and no two are copies (resampling, even thinned, makes groups of
    near-copies that Leiden splits into thousands of clusters)."""
    rng = np.random.default_rng(seed)
    X = sp.csr_matrix(src, dtype=np.float32)
    knn = neighbours(X, seed=seed)
    for lo in range(0, n_cells, chunk):
        n = min(chunk, n_cells - lo)
        a = rng.integers(0, X.shape[0], n)
        b = knn[a, rng.integers(0, knn.shape[1], n)]
        w, depth = rng.uniform(0.0, 1.0, n), rng.uniform(min_depth, 1.0, n)
        block = None
        for cells, share in ((a, depth * w), (b, depth * (1 - w))):
            part = X[cells]
            part.data = rng.binomial(part.data.astype(np.int64), np.repeat(share, np.diff(part.indptr)))
            part = part.astype(np.float32)
            block = part if block is None else block + part
        block.eliminate_zeros()
        block.sort_indices()
        yield a, b, w, depth, block


def make_input(n_cells: int, dest: Path, cache: Path, *, min_depth: float = 0.5, seed: int = 0) -> None:
    """Write ``n_cells`` thinned Kang cells to ``dest`` (CSR .h5ad, written by chunks)."""
    import anndata as ad

    from rule_io import setup_logging
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
    parts, first = [], []
    for a, b, w, depth, block in new_cells(src.X, n_cells, min_depth=min_depth, seed=seed):
        writer.append(block)
        first.append(a)
        parts.append(pd.DataFrame({"source_a": src.obs_names[a].to_numpy(), "source_b": src.obs_names[b].to_numpy(),
                                   "weight_a": w, "depth": depth}))
    obs = pd.concat(parts, ignore_index=True)
    obs.index = pd.Index([f"cell{i}" for i in range(n_cells)])
    first = np.concatenate(first)
    for column in src.obs.columns:  # the first source cell's annotations (e.g. its sample)
        obs[column] = src.obs[column].to_numpy()[first]
    writer.finish(obs, src.var, {"benchmark": {"source": "kang2018_ifnb", "min_depth": min_depth, "seed": seed}})
    tmp.rename(dest)


def exact_peaks(workdir: Path) -> dict[str, float]:
    """Each job's exact peak RSS (GiB) from the size's process_peaks*.tsv files, by job key
    (its log path without ``logs/`` and ``.log``): the largest of its processes."""
    tables = [pd.read_csv(path, sep="\t") for path in sorted(workdir.glob("process_peaks*.tsv"))
              if path.stat().st_size > 1]  # a watch that saw no process writes an empty file
    tables = [t for t in tables if "job" in t and not t.empty]
    if not tables:
        return {}
    peaks = pd.concat(tables).dropna(subset=["job"])
    return peaks.groupby("job")["peak_rss_gib"].max().to_dict()


def rule_costs(workdir: Path) -> pd.DataFrame:
    """Every job's seconds and peak RSS from Snakemake's benchmark files, named by rule and
    wildcards, e.g. ``train VAE/seed0``; the peak is the exact one where known."""
    rows = []
    root = workdir / "logs" / "benchmarks"
    exact = exact_peaks(workdir)
    for path in sorted(root.rglob("*.tsv")):
        bench = pd.read_csv(path, sep="\t")
        key = path.relative_to(root).with_suffix("")
        rule, *rest = key.parts
        name = " ".join([rule, "/".join(rest[1:])]).strip()  # rest[0] is the dataset
        sampled = float(bench["max_rss"].iloc[-1]) / 1024 if pd.notna(bench["max_rss"].iloc[-1]) else 0.0
        peak = exact.get(key.as_posix())
        rows.append({"rule": name, "jobs": 1, "seconds": float(bench["s"].iloc[-1]),
                     "peak_rss_gib": sampled if peak is None else peak, "sampled_rss_gib": sampled,
                     "exact": peak is not None})
    return pd.DataFrame(rows).set_index("rule")


def run_size(n_cells: int, args) -> pd.DataFrame:
    workdir = (args.workdir / f"n{n_cells}").resolve()
    data = workdir.parent / "data" / f"kang_atlas_{n_cells}.h5ad"
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
    if args.resume:  # keep what an interrupted run finished; its wall time is added
        cmd += ["--rerun-triggers", "mtime"]
    run = subprocess.Popen(cmd)
    peaks = subprocess.Popen([sys.executable, str(REPO / "benchmarks" / "process_peaks.py"), "--pid", str(run.pid),
                              "--out", str(workdir / f"process_peaks_{time.strftime('%Y%m%dT%H%M%S')}.tsv")])
    returncode = run.wait()
    peaks.wait()
    if returncode:
        raise subprocess.CalledProcessError(returncode, cmd)
    return report_size(n_cells, args)


def snakemake_wall_seconds(workdir: Path) -> float:
    """Wall time of the run from Snakemake's own logs: for each invocation (an interrupted
    run resumed counts each part), its first to its last timestamped line."""
    from datetime import datetime

    total = 0.0
    for log in sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log")):
        stamps = [datetime.strptime(line.strip()[1:-1], "%a %b %d %H:%M:%S %Y")
                  for line in log.read_text().splitlines() if line.startswith("[") and line.strip().endswith("]")]
        if stamps:
            total += (stamps[-1] - stamps[0]).total_seconds()
    return total


def report_size(n_cells: int, args) -> pd.DataFrame:
    """The rules' costs of the finished run of ``n_cells`` cells, and its wall time."""
    workdir = (args.workdir / f"n{n_cells}").resolve()
    wall = snakemake_wall_seconds(workdir)
    costs = rule_costs(workdir).reset_index()
    costs.insert(0, "cells", n_cells)
    largest = costs.loc[costs["peak_rss_gib"].idxmax()]
    total = pd.DataFrame([{"cells": n_cells, "rule": "whole target (wall time)", "jobs": costs["jobs"].sum(),
                           "seconds": wall, "peak_rss_gib": largest["peak_rss_gib"],
                           "sampled_rss_gib": costs["sampled_rss_gib"].max(), "exact": largest["exact"]}])
    return pd.concat([costs, total], ignore_index=True)


def _csr_gib(group) -> float:
    """Bytes of a stored CSR matrix (its data, indices and indptr), in GiB."""
    return sum(group[part].size * group[part].dtype.itemsize for part in ("data", "indices", "indptr")) / 2**30


def preprocessed_counts(n_cells: int, args) -> dict:
    """The size's preprocessing against the issue's memory bound: kept cells, highly variable
    genes, the kept cells x HVG count matrix as stored (``layers/counts`` of
    preprocessed.h5ad) in GiB, one chunk of the input as read (``chunk_cells`` rows, from
    the run's ``uns["preprocess"]``, of the input's stored CSR), the bound 2.5 x counts +
    one chunk, and preprocessing's peak RSS (also as a multiple of the counts)."""
    import h5py
    import yaml

    workdir = (args.workdir / f"n{n_cells}").resolve()
    (path,) = sorted(workdir.glob("results/*/preprocessed.h5ad"))
    with h5py.File(path, "r") as f:
        shape = tuple(int(x) for x in f["layers/counts"].attrs["shape"])
        counts_gib = _csr_gib(f["layers/counts"])
        chunk_cells = int(f["uns/preprocess/chunk_cells"][()])
    (dataset,) = yaml.safe_load((workdir / "config.yaml").read_text())["datasets"].values()
    with h5py.File(dataset["path"], "r") as f:
        n_input = int(f["X"].attrs["shape"][0])
        chunk_gib = _csr_gib(f["X"]) * min(chunk_cells, n_input) / n_input
    peak = rule_costs(workdir).at["preprocess", "peak_rss_gib"]
    bound = 2.5 * counts_gib + chunk_gib
    return {"cells": n_cells, "kept_cells": shape[0], "hvgs": shape[1], "counts_gib": counts_gib,
            "chunk_gib": chunk_gib, "bound_gib": bound, "preprocess_peak_gib": peak,
            "peak_over_counts": peak / counts_gib}


def counts_markdown(rows: list[dict]) -> str:
    """``preprocessed_counts`` of each size as a table."""
    lines = ["| cells | kept cells x HVGs | counts GiB | one input chunk GiB | bound: 2.5 x counts + chunk, GiB "
             "| preprocess peak GiB | peak / counts |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['cells']:,} | {r['kept_cells']:,} x {r['hvgs']:,} | {r['counts_gib']:.2f} | "
              f"{r['chunk_gib']:.2f} | {r['bound_gib']:.2f} | {r['preprocess_peak_gib']:.2f} | "
              f"{r['peak_over_counts']:.2f} |" for r in rows]
    return "\n".join(lines)


def growth(table: pd.DataFrame) -> pd.Series:
    """Per rule, the exponent b of seconds ~ cells^b fitted over the sizes (NaN with one size)."""
    def slope(rows):
        rows = rows[rows["seconds"] > 0]
        if rows["cells"].nunique() < 2:
            return float("nan")
        return float(np.polyfit(np.log(rows["cells"]), np.log(rows["seconds"]), 1)[0])
    return table.groupby("rule")[["cells", "seconds"]].apply(slope).rename("growth_exponent")


def markdown(table: pd.DataFrame) -> str:
    """One row per job: seconds and peak RSS at each size, and the growth exponent."""
    sizes = sorted(table["cells"].unique())
    order = list(dict.fromkeys(table.sort_values("seconds", ascending=False)["rule"]))
    order = [r for r in order if not r.startswith("whole")] + [r for r in order if r.startswith("whole")]
    head = ["job", *[f"{n / 1e6:g} M cells: s / peak GiB" for n in sizes], "growth exponent"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for rule in order:
        rows = table[table["rule"] == rule].set_index("cells")
        cells = [f"{rows.at[n, 'seconds']:,.0f} / {rows.at[n, 'peak_rss_gib']:.2f}{'' if rows.at[n, 'exact'] else '*'}"
                 if n in rows.index else "–" for n in sizes]
        exponent = rows["growth_exponent"].iloc[0]
        lines.append(f"| {rule} | " + " | ".join(cells) + f" | {'–' if np.isnan(exponent) else f'{exponent:.2f}'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-cells", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--min-depth", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--targets", nargs="*", default=[], help="snakemake targets (default: the default target)")
    parser.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "out" / "atlas")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run: keep its finished jobs (wall times add up)")
    parser.add_argument("--report-only", action="store_true",
                        help="only tabulate the sizes' finished runs under --workdir")
    args = parser.parse_args()
    args.workdir = args.workdir.resolve()

    if args.report_only:
        table = pd.concat([report_size(n, args) for n in args.n_cells], ignore_index=True)
    else:
        table = pd.concat([run_size(n, args) for n in args.n_cells], ignore_index=True)
    table = table.merge(growth(table), left_on="rule", right_index=True)
    out = args.workdir / "atlas_scale.tsv"
    table.to_csv(out, sep="\t", index=False)
    print(f"\n{out}\n")
    print(markdown(table))
    print("\nPreprocessing's peak against the kept cells x HVG counts it writes and one input chunk:\n")
    print(counts_markdown([preprocessed_counts(n, args) for n in args.n_cells]))


if __name__ == "__main__":
    main()
