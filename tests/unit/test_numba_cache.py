"""numba_cache.py: UMAP's compiled code cached across processes, same coordinates."""

import numpy as np
import pytest



UMAP_SCRIPT = """
import sys, time
import numpy as np
sys.path.insert(0, {scripts!r})
import plot_embeddings
if sys.argv[1] == "uncached":
    plot_embeddings.cache_umap_compilation = lambda: 0
x = np.random.default_rng(0).normal(size=(300, 6)).astype(np.float32)
x[:150] += 4
np.save(sys.argv[2], plot_embeddings.umap_coordinates(x, seed=0))
"""


@pytest.mark.slow  # three processes compile UMAP (two at once): about 25 s
def test_umap_compilation_cached_across_processes_with_the_same_result(tmp_path):
    """The second process reuses the first one's compiled umap code from numba's cache, and
    all give the coordinates of a run without the cache."""
    import os
    import subprocess
    import sys

    from conftest import SCRIPTS

    script = tmp_path / "umap_run.py"
    script.write_text(UMAP_SCRIPT.format(scripts=str(SCRIPTS)))

    def start(name, cache):
        env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / cache)}
        return subprocess.Popen([sys.executable, str(script), name, str(tmp_path / f"{name}.npy")], env=env)

    def cached(cache):
        return [p.name for p in (tmp_path / cache).rglob("umap_*.smooth_knn_dist*.nbi")]

    # the run without the cache and the first cached one side by side (each compiles on one core)
    uncached, first = start("uncached", "numba-uncached"), start("first", "numba")
    assert uncached.wait() == 0 and first.wait() == 0
    assert not cached("numba-uncached")  # umap itself does not cache it
    assert cached("numba")
    assert start("second", "numba").wait() == 0
    runs = {name: np.load(tmp_path / f"{name}.npy") for name in ("uncached", "first", "second")}
    np.testing.assert_array_equal(runs["first"], runs["uncached"])
    np.testing.assert_array_equal(runs["second"], runs["uncached"])
