"""The atlas benchmark's measurements: exact peak memory per job (benchmarks/process_peaks.py)
and how benchmarks/million_cells.py tabulates them."""

import subprocess
import sys
import threading

import pandas as pd
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import million_cells  # noqa: E402
import process_peaks  # noqa: E402


def test_script_and_job_read_from_snakemakes_script_copy(tmp_path):
    scripts = tmp_path / ".snakemake" / "scripts"
    scripts.mkdir(parents=True)
    (scripts / "tmpab12_x9.embed.py").write_bytes(
        b"import pickle;snakemake = pickle.loads(b'\\x80...logs/embed/kang1000000/VAE/seed0.log\\x94...')\n")
    cmdline = [sys.executable, ".snakemake/scripts/tmpab12_x9.embed.py"]
    assert process_peaks.script_and_job(cmdline, str(tmp_path)) == ("embed", "embed/kang1000000/VAE/seed0")
    assert process_peaks.script_and_job(["bash", "-c", "true"], str(tmp_path)) == ("bash -c true", "")


def test_watch_records_a_childs_peak_after_it_has_freed_it():
    """The high-water mark keeps a peak the process no longer holds: 400 MB allocated,
    freed, then a second of idling; sampled RSS at that point would show none of it."""
    child = ("import numpy as np, time; a = np.ones(50_000_000); del a; time.sleep(1.5)")
    root = subprocess.Popen(["bash", "-c", f"{sys.executable} -c '{child}'; true"])
    result = {}
    watcher = threading.Thread(target=lambda: result.update(table=process_peaks.watch(root.pid, 0.1)))
    watcher.start()
    root.wait()
    watcher.join(timeout=30)
    table = result["table"]
    python = table[table["script"].str.contains("import numpy")]
    assert len(python) == 1
    assert 0.37 < python["peak_rss_gib"].iloc[0] < 1.5


def write_bench(path, seconds, max_rss_mb):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{"s": seconds, "h:m:s": "0:00:01", "max_rss": max_rss_mb}]).to_csv(path, sep="\t", index=False)


def test_rule_costs_take_the_exact_peak_where_known(tmp_path):
    bench = tmp_path / "logs" / "benchmarks"
    write_bench(bench / "embed" / "ds" / "iVAE" / "seed0.tsv", 90.0, 2048.0)
    write_bench(bench / "embed" / "ds" / "VAE" / "seed0.tsv", 80.0, 1024.0)
    write_bench(bench / "preprocess" / "ds.tsv", 30.0, 512.0)
    pd.DataFrame([{"pid": 1, "script": "embed", "job": "embed/ds/iVAE/seed0", "start_s": 0, "end_s": 90,
                   "peak_rss_gib": 3.5},
                  {"pid": 2, "script": "x", "job": None, "start_s": 0, "end_s": 1, "peak_rss_gib": 9.0}]
                 ).to_csv(tmp_path / "process_peaks_1.tsv", sep="\t", index=False)
    costs = million_cells.rule_costs(tmp_path)
    assert costs.loc["embed iVAE/seed0", "peak_rss_gib"] == 3.5 and costs.loc["embed iVAE/seed0", "exact"]
    assert costs.loc["embed iVAE/seed0", "sampled_rss_gib"] == 2.0
    assert costs.loc["embed VAE/seed0", "peak_rss_gib"] == 1.0
    assert not costs.loc["embed VAE/seed0", "exact"]
    assert costs.loc["preprocess", "peak_rss_gib"] == 0.5
    table = costs.reset_index().assign(cells=1000, growth_exponent=float("nan"))
    text = million_cells.markdown(table)
    assert "| embed iVAE/seed0 | 90 / 3.50 |" in text and "| embed VAE/seed0 | 80 / 1.00* |" in text


def test_preprocessed_counts_sets_the_peak_against_its_bound(tmp_path):
    """The counts matrix's size is the bytes of its stored CSR (data, indices, indptr) in
    the size's preprocessed.h5ad; one chunk is chunk_cells rows' share of the input's CSR;
    the bound is 2.5 x counts + chunk, and the ratio the peak over the counts."""
    import types

    import anndata as ad
    import numpy as np
    import scipy.sparse as sp

    workdir = tmp_path / "n1000"
    results = workdir / "results" / "kang1000"
    results.mkdir(parents=True)
    raw = sp.random(1000, 80, density=0.2, format="csr", dtype=np.float32, random_state=1)
    ad.AnnData(raw).write_h5ad(tmp_path / "input.h5ad")
    (workdir / "config.yaml").write_text(f"datasets:\n  kang1000:\n    path: {tmp_path / 'input.h5ad'}\n")
    counts = sp.random(900, 50, density=0.1, format="csr", dtype=np.float32, random_state=0)
    ad.AnnData(counts.copy(), layers={"counts": counts},
               uns={"preprocess": {"chunk_cells": 250}}).write_h5ad(results / "preprocessed.h5ad")
    write_bench(workdir / "logs" / "benchmarks" / "preprocess" / "kang1000.tsv", 10.0, 512.0)
    row = million_cells.preprocessed_counts(1000, types.SimpleNamespace(workdir=tmp_path))

    def gib(m):
        return (m.data.nbytes + m.indices.nbytes + m.indptr.nbytes) / 2**30

    assert row["kept_cells"] == 900 and row["hvgs"] == 50
    assert row["counts_gib"] == pytest.approx(gib(counts)) and row["chunk_gib"] == pytest.approx(gib(raw) / 4)
    assert row["bound_gib"] == pytest.approx(2.5 * gib(counts) + gib(raw) / 4)
    assert row["peak_over_counts"] == pytest.approx(0.5 / row["counts_gib"])
    assert "| 1,000 | 900 x 50 |" in million_cells.counts_markdown([row])


@pytest.mark.parametrize("content", ["", "pid\tscript\tstart_s\tend_s\tpeak_rss_gib\n1\tembed\t0\t1\t2.0\n"])
def test_peak_files_without_job_keys_are_ignored(tmp_path, content):
    (tmp_path / "process_peaks_old.tsv").write_text(content)
    assert million_cells.exact_peaks(tmp_path) == {}


def test_shuffle_cost_prints_one_row_per_size():
    """benchmarks/shuffle_cost.py (docs/performance.md, "Atlas scale": why the permutation null grew
    faster than cells) runs and reports a positive cost per element of both shuffles for
    each size asked."""
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "shuffle_cost.py"), "--cells", "1000", "4096",
                          "--repeats", "1"], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "cells\tcolumn_mib\tnumpy_ns_per_element\tblocked_ns_per_element"
    rows = [line.split("\t") for line in out[1:]]
    assert [int(r[0]) for r in rows] == [1000, 4096] and all(float(x) > 0 for r in rows for x in r[2:])
