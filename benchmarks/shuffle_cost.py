"""Why the permutation null (correlation_nulls) grew faster than cells, and what the
blocked shuffle changes: the cost of one shuffle of a float64 column, per element, as the
column outgrows the CPU caches, for NumPy's shuffle and for ``blocked_shuffle`` side by side.

``correlation.permutation_null`` shuffles every latent component of every cell, 200 draws
x 10 components. NumPy's ``Generator.shuffle`` is a Fisher-Yates shuffle: one random swap
per element, each touching a random position of the column. While the column (8 bytes a
cell) fits in the caches that is a cache hit, beyond them a DRAM access.
``blocked_shuffle.blocked_shuffle`` (what ``permutation_null`` uses from
``correlation.BLOCKED_SHUFFLE_MIN_CELLS`` cells on) scatters the elements into random
L2-sized buckets and shuffles each bucket, so its cost per element should stay flat.
Both columns time the same work: copy the column, then shuffle it (``permutation_null``
needs the unshuffled column again for the next draw). The column sizes in MiB are printed
beside them to compare with ``lscpu``'s caches. Single-threaded, under a minute.

Reproduce (from the repository root, in the environment of requirements.txt):

    python benchmarks/shuffle_cost.py
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))
from blocked_shuffle import blocked_shuffle  # noqa: E402


def ns_per_element(n: int, repeats: int, method: str, seed: int = 0) -> float:
    """The fastest of ``repeats`` copy-and-shuffles of an ``n``-element float64 column by
    ``method`` ("numpy" or "blocked"), in ns per element."""
    rng = np.random.default_rng(seed)
    column = rng.standard_normal(n)
    shuffled = np.empty_like(column)

    def numpy_shuffle():
        shuffled[:] = column
        rng.shuffle(shuffled)

    shuffle = numpy_shuffle if method == "numpy" else (lambda: blocked_shuffle(column, shuffled, rng))
    shuffle()  # touch every page first (and compile the blocked shuffle)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        shuffle()
        best = min(best, time.perf_counter() - start)
    return best / n * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, nargs="+",
                        default=[1 << 16, 1 << 18, 1 << 20, 1 << 21, 1 << 22, 1 << 23, 1 << 24])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("cells\tcolumn_mib\tnumpy_ns_per_element\tblocked_ns_per_element")
    for n in args.cells:
        numpy_ns = ns_per_element(n, args.repeats, "numpy")
        blocked_ns = ns_per_element(n, args.repeats, "blocked")
        print(f"{n}\t{n * 8 / 2**20:.1f}\t{numpy_ns:.1f}\t{blocked_ns:.1f}", flush=True)


if __name__ == "__main__":
    main()
