"""Job sizes from file headers, and the memory/runtime each rule asks a cluster for."""

import builtins

import numpy as np
import pytest

import sizing
from conftest import write_10x_h5, write_10x_mtx
from sizing import MatrixSize, matrix_size, mem_mb, runtime_min

STEPS = ("preprocess", "train", "embed", "cell_labels", "metrics", "figures")


@pytest.fixture(scope="module")
def counts(pbmc68k_counts):
    return pbmc68k_counts[:300].copy()


def test_h5ad_sizes_from_header(counts, tmp_path):
    nnz = counts.X.nnz
    counts.write_h5ad(tmp_path / "x.h5ad", compression="gzip")
    size = matrix_size(tmp_path / "x.h5ad")
    assert (size.n_cells, size.n_genes, size.nnz) == (300, counts.n_vars, nnz)
    assert size.file_mb == pytest.approx((tmp_path / "x.h5ad").stat().st_size / 2**20)

    # a counts layer, .raw and a dense X are read where the dataset says the counts are
    other = counts.copy()
    other.layers["umis"] = counts.X.copy()
    other.X = counts.X.toarray()
    other.raw = counts[:, :50].copy()
    other.write_h5ad(tmp_path / "y.h5ad")
    assert matrix_size(tmp_path / "y.h5ad", "umis").nnz == nnz
    assert matrix_size(tmp_path / "y.h5ad", "raw.X").n_genes == 50
    dense = matrix_size(tmp_path / "y.h5ad")
    assert dense.nnz == 300 * counts.n_vars


def test_preprocessed_h5ad_counts_layer_and_raw(counts, tmp_path):
    import anndata as ad

    out = ad.AnnData(X=counts.X[:, :40].copy(), obs=counts.obs)
    out.layers["counts"] = counts.X[:, :40].copy()
    out.raw = counts
    out.write_h5ad(tmp_path / "pre.h5ad")
    size = matrix_size(tmp_path / "pre.h5ad")
    assert (size.n_cells, size.n_genes) == (300, 40)
    assert size.nnz == out.layers["counts"].nnz and size.raw_nnz == counts.X.nnz


def test_obs_only_h5ad_gives_the_cell_count(counts, tmp_path):
    import anndata as ad

    emb = ad.AnnData(obs=counts.obs)
    emb.obsm["X_ivae"] = np.zeros((300, 4), np.float32)
    emb.write_h5ad(tmp_path / "emb.h5ad")
    assert matrix_size(tmp_path / "emb.h5ad").n_cells == 300
    # names as a nullable string array, as anndata writes pandas 3's default strings
    import pandas as pd

    emb.obs_names = pd.Index(pd.array([f"c{i}" for i in range(300)], dtype="string"))
    with ad.settings.override(allow_write_nullable_strings=True):
        emb.write_h5ad(tmp_path / "emb_strings.h5ad")
    import h5py

    with h5py.File(tmp_path / "emb_strings.h5ad") as f:
        assert isinstance(f["obs"][f["obs"].attrs["_index"]], h5py.Group)  # the case being tested
    assert matrix_size(tmp_path / "emb_strings.h5ad").n_cells == 300


def test_10x_h5_and_matrix_market(counts, tmp_path):
    nnz = counts.X.nnz
    h5 = matrix_size(write_10x_h5(counts, tmp_path / "m.h5"))
    assert (h5.n_cells, h5.n_genes, h5.nnz) == (300, counts.n_vars, nnz)
    directory = write_10x_mtx(counts, tmp_path / "mtx")
    for path in (directory, directory / "matrix.mtx.gz"):
        mtx = matrix_size(path)
        assert (mtx.n_cells, mtx.n_genes, mtx.nnz) == (300, counts.n_vars, nnz)


def test_loom_shape(tmp_path):
    import h5py

    with h5py.File(tmp_path / "x.loom", "w") as f:
        f["matrix"] = np.zeros((70, 20), np.float32)  # genes x cells
        f.create_group("layers")["spliced"] = np.zeros((70, 20), np.float32)
        f.create_group("col_attrs")["CellID"] = np.array([f"c{i}" for i in range(20)], dtype="S")
        f.create_group("row_attrs")["Gene"] = np.array([f"g{i}" for i in range(70)], dtype="S")
    size = matrix_size(tmp_path / "x.loom")
    assert (size.n_cells, size.n_genes, size.nnz) == (20, 70, None)
    assert matrix_size(tmp_path / "x.loom", "spliced").n_cells == 20


def test_without_h5py_or_a_readable_header_the_file_size_is_used(counts, tmp_path, monkeypatch):
    counts.write_h5ad(tmp_path / "x.h5ad")
    real_import = builtins.__import__

    def no_h5py(name, *args, **kwargs):
        if name == "h5py":
            raise ImportError("no h5py here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_h5py)
    size = matrix_size(tmp_path / "x.h5ad")
    assert size.nnz is None and size.file_mb > 0
    assert size.csr_mb == pytest.approx(size.file_mb * sizing.COMPRESSION_RATIO)
    monkeypatch.undo()
    (tmp_path / "broken.h5ad").write_bytes(b"not hdf5")
    assert matrix_size(tmp_path / "broken.h5ad").nnz is None
    assert matrix_size(tmp_path / "absent.h5ad") == MatrixSize(0.0)


@pytest.mark.parametrize("step", STEPS)
def test_requests_grow_with_data_and_attempt(step):
    small = MatrixSize(10.0, 10_000, 2_000, 10_000_000)
    large = MatrixSize(1000.0, 1_000_000, 2_000, 1_000_000_000)
    assert mem_mb(step, large) > mem_mb(step, small) >= 1500
    assert runtime_min(step, large) > runtime_min(step, small) >= 10
    assert mem_mb(step, small, attempt=3) == 3 * mem_mb(step, small)
    assert runtime_min(step, small, attempt=2) == 2 * runtime_min(step, small)


def test_preprocess_memory_follows_the_stored_values():
    """2.5 x the CSR matrix (8 bytes per stored value) plus 1.5 GB."""
    size = MatrixSize(1.0, 1_000_000, 14_000, 800_000_000)
    assert mem_mb("preprocess", size) == int(np.ceil(1500 + 2.5 * 800_000_000 * 8 / 2**20))


def test_training_runtime_grows_with_epochs():
    size = MatrixSize(100.0, 100_000, 2_000, 100_000_000)
    assert runtime_min("train", size, epochs=100) > runtime_min("train", size, epochs=10)
    assert runtime_min("train", size, epochs=100) >= 100 * 100_000 / sizing.TRAIN_CELLS_PER_S / 60


def test_training_runtime_with_auto_epochs():
    size = MatrixSize(100.0, 1_000_000, 2_000, 1_000_000_000)
    assert runtime_min("train", size, epochs="auto") == runtime_min("train", size, epochs=sizing.auto_epochs(10**6))


def test_unknown_step_is_an_error():
    with pytest.raises(ValueError, match="unknown step"):
        mem_mb("nope", MatrixSize(1.0))
    with pytest.raises(ValueError, match="unknown step"):
        runtime_min("nope", MatrixSize(1.0))


def test_gpu_visible_from_device_files_or_nvidia_smi(tmp_path):
    dev, bin_dir = tmp_path / "dev", tmp_path / "bin"
    dev.mkdir()
    bin_dir.mkdir()
    (dev / "nvidiactl").touch()  # the control file alone is not a GPU
    assert not sizing.gpu_visible({"PATH": str(bin_dir)}, dev)
    (dev / "nvidia0").touch()
    assert sizing.gpu_visible({"PATH": str(bin_dir)}, dev)
    assert not sizing.gpu_visible({"PATH": str(bin_dir), "CUDA_VISIBLE_DEVICES": ""}, dev)
    assert not sizing.gpu_visible({"PATH": str(bin_dir), "CUDA_VISIBLE_DEVICES": "-1"}, dev)
    (dev / "nvidia0").unlink()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\n")
    smi.chmod(0o755)
    assert sizing.gpu_visible({"PATH": str(bin_dir)}, dev)


@pytest.mark.parametrize(
    "device, local, gpu, claims",
    [
        ("auto", True, True, (1, sizing.GPU_TRAIN_THREADS)),  # workstation with a GPU: one at a time
        ("auto", True, False, (0, 1)),  # CPU-only workstation: side by side, a core each
        ("cpu", True, True, (0, 1)),
        ("auto", False, False, (1, sizing.GPU_TRAIN_THREADS)),  # a cluster job asks for a GPU
        ("cuda:1", False, False, (1, sizing.GPU_TRAIN_THREADS)),
        ("cpu", False, True, (0, sizing.GPU_TRAIN_THREADS)),
    ],
)
def test_training_claims(device, local, gpu, claims):
    assert sizing.training_claims(device, local=local, gpu=gpu) == claims


def test_small_jobs_claim_one_thread():
    assert sizing.job_threads(2, MatrixSize(file_mb=9, n_cells=2638, n_genes=2000)) == 1
    assert sizing.job_threads(2, MatrixSize(file_mb=900, n_cells=sizing.SMALL_JOB_CELLS, n_genes=2000)) == 2


def test_subsampled_jobs_stop_growing_above_max_cells():
    """cell_labels and the baselines read only max_cells rows above it: their matrix terms
    stop growing; at or below max_cells (or without it) the request is unchanged."""
    small = MatrixSize(100.0, 200_000, 2_000, 200_000_000)
    atlas = MatrixSize(2000.0, 4_000_000, 2_000, 4_000_000_000)
    for step in ("cell_labels", "metrics"):
        assert mem_mb(step, small, max_cells=200_000) == mem_mb(step, small)
        assert mem_mb(step, atlas, max_cells=200_000) < mem_mb(step, atlas) / 5
        assert mem_mb(step, atlas, max_cells=200_000) < 24 * 1024  # fits a 24 GiB workstation
    # the baselines' dense subsample: 200,000 x 2,000 float32, three times, plus the rest
    assert mem_mb("metrics", atlas, max_cells=200_000) > 3 * 200_000 * 2_000 * 4 / 2**20


def test_streamed_preprocessing_needs_a_chunk_not_the_matrix(tmp_path, counts):
    """A CSR .h5ad or 10x .h5 is preprocessed chunk by chunk: the request follows the
    chunk, not the matrix (measured: 3.2 GiB at 1,000,000 cells, 4.1 GiB at 4,000,000:
    docs/performance.md, "Atlas scale"); other inputs are held whole."""
    from conftest import write_10x_h5

    counts.write_h5ad(tmp_path / "csr.h5ad")
    assert matrix_size(tmp_path / "csr.h5ad").row_chunks
    assert matrix_size(write_10x_h5(counts, tmp_path / "m.h5")).row_chunks
    dense = counts.copy()
    dense.X = dense.X.toarray()
    dense.write_h5ad(tmp_path / "dense.h5ad")
    assert not matrix_size(tmp_path / "dense.h5ad").row_chunks
    atlas = MatrixSize(20_000.0, 4_000_000, 14_000, 2_800_000_000, row_chunks=True)
    streamed = mem_mb("preprocess", atlas, chunk_cells=100_000)
    assert streamed < 12 * 1024 < mem_mb("preprocess", atlas)
    assert streamed > 1500 + 4 * 2_800_000_000 * 8 / 2**20 / 40  # four copies of a 1/40 chunk
    assert mem_mb("preprocess", atlas, chunk_cells=400_000) > streamed
    whole = MatrixSize(20_000.0, 4_000_000, 14_000, 2_800_000_000)
    assert mem_mb("preprocess", whole, chunk_cells=100_000) == mem_mb("preprocess", whole)


def test_local_jobs_claim_at_most_half_the_cores():
    assert [sizing.local_thread_cap(c) for c in (1, 2, 3, 4, 16)] == [1, 1, 1, 2, 8]


#: Exact peaks (GiB) of the atlas benchmark's jobs (docs/performance.md, "Atlas scale"; benchmarks/process_peaks.py:
#: the job process's high-water mark), and the stored counts at each size (2,000 HVGs).
ATLAS = {999_996: 109_173_289, 1_999_989: 218_800_151, 3_999_978: 437_091_518}


@pytest.mark.parametrize("n_cells, peak_gib", [(999_996, 2.68), (1_999_989, 4.42), (3_999_978, 4.45)])
def test_train_request_covers_the_measured_atlas_peaks(n_cells, peak_gib):
    """Training's largest exact peak at each size (counts too large to hold densely) is
    under the request, which beyond its fixed 1.5 GB for PyTorch is not twice the peak."""
    size = MatrixSize(file_mb=ATLAS[n_cells] * 6 / 2**20, n_cells=n_cells, n_genes=2000, nnz=ATLAS[n_cells],
                      row_chunks=True)
    assert size.dense_mb > 2048
    assert peak_gib * 1024 < mem_mb("train", size) and mem_mb("train", size) - 1500 < 2 * peak_gib * 1024


@pytest.mark.parametrize("n_cells, peak_gib", [(999_996, 1.33), (1_999_989, 2.25), (3_999_978, 4.09)])
def test_embed_request_covers_the_measured_atlas_peaks(n_cells, peak_gib):
    """The largest exact peak of the three embedding jobs at each size is under the
    request, which beyond its fixed 1.5 GB for PyTorch is not twice the peak."""
    size = MatrixSize(file_mb=ATLAS[n_cells] * 6 / 2**20, n_cells=n_cells, n_genes=2000, nnz=ATLAS[n_cells],
                      row_chunks=True)
    assert peak_gib * 1024 < mem_mb("embed", size) and mem_mb("embed", size) - 1500 < 2 * peak_gib * 1024
