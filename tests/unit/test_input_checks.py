import pytest

from input_checks import RunSettings, cells_for_one_batch, check_dataset, held_out_cells, refusal, requirements
from rule_io import InputError
from train import held_out_split


@pytest.mark.parametrize("n", [10, 15, 57, 700, 1001])
@pytest.mark.parametrize("fractions", [(0.1, 0.1), (0.2, 0.0), (0.05, 0.15)])
def test_held_out_cells_is_the_training_split(n, fractions):
    settings = RunSettings(64, *fractions)
    train, val, test = held_out_split(n, *fractions, seed=3)
    assert held_out_cells(n, settings) == len(val) + len(test) == n - len(train)


def test_cells_for_one_batch_is_the_fewest():
    settings = RunSettings(128, 0.1, 0.1)
    n = cells_for_one_batch(settings)
    assert n - held_out_cells(n, settings) >= 128 and (n - 1) - held_out_cells(n - 1, settings) < 128
    with pytest.raises(InputError, match="hold out every cell"):
        cells_for_one_batch(RunSettings(8, 0.5, 0.5))


def test_requirements_pass_and_fail():
    runs = {"training": RunSettings(128, 0.1, 0.1), "small batches": RunSettings(16, 0.1, 0.1)}
    ok = requirements(700, 765, runs=runs, n_components=8, n_labelled=700, n_groups=10)
    assert ok["passed"].all() and refusal(ok, what="d") is None
    small = requirements(40, 6, runs=runs, n_components=8, n_labelled=7, n_groups=9)
    failed = small.loc[~small["passed"], "step"].tolist()
    assert failed == ["training", "baselines", "baselines", "clustering metrics"]
    message = refusal(small, what="dataset 'd' (x.h5ad)")
    assert message.startswith("dataset 'd' (x.h5ad): the dataset does not fit the configured run (nothing was trained)")
    assert "  - training: training cells >= train.batch_size (128), after 8 held-out cells: needs 160, has 40" in message
    assert "lower train.batch_size to at most 32" in message
    assert "highly variable genes >= latent_dim (8 components): needs 8, has 6" in message
    assert "labelled cells >= latent_dim (8 components): needs 8, has 7" in message
    assert "labelled cells > label groups (9): KMeans with k groups and the silhouettes: needs 10, has 7" in message
    assert message.endswith("This configuration needs at least 160 cells after QC.")


def test_steps_failing_alike_share_one_line():
    runs = {m: RunSettings(128, 0.1, 0.1) for m in ("a", "b", "c")}
    message = refusal(requirements(50, 100, runs=runs, n_components=8), what="d")
    assert "  - a, b, c: training cells" in message and message.count("needs 160") == 1


def test_check_dataset_reads_the_file(pbmc68k_h5ad, tmp_path):
    import anndata as ad

    runs = {"training": {"batch_size": 128, "validation_fraction": 0.1, "test_fraction": 0.1}}
    table = check_dataset(pbmc68k_h5ad, label_key="bulk_labels", runs=runs, n_components=8, what="d")
    assert table["passed"].all()
    assert table.loc[table["step"] == "clustering metrics", "available"].item() == 700
    small = ad.read_h5ad(pbmc68k_h5ad)[:12].copy()
    small.write_h5ad(tmp_path / "small.h5ad")
    with pytest.raises(InputError, match=r"training: .* needs 160, has 12"):
        check_dataset(tmp_path / "small.h5ad", label_key=None, runs=runs, n_components=8, what="d")
