"""Why the permutation null (correlation_nulls) grows faster than cells: the cost of one
in-place shuffle of a float64 column, per element, as the column outgrows the CPU caches.

``correlation.permutation_null`` shuffles every latent component of every cell with
``numpy.random.Generator.shuffle`` (a Fisher-Yates shuffle: one random swap per element),
200 draws x 10 components. Each swap touches a random position of the column: while the
column (8 bytes a cell) fits in the caches that is a cache hit, beyond them a DRAM access.
This script times one shuffle at sizes around the caches and prints nanoseconds per
element; the column sizes in MiB are printed beside them to compare with ``lscpu``'s
caches. Single-threaded, a few seconds.

Reproduce (from the repository root, in the environment of requirements.txt):

    python benchmarks/shuffle_cost.py
"""

import argparse
import time

import numpy as np


def ns_per_element(n: int, repeats: int, seed: int = 0) -> float:
    """The fastest of ``repeats`` shuffles of an ``n``-element float64 column, in ns per element."""
    rng = np.random.default_rng(seed)
    column = rng.standard_normal(n)
    rng.shuffle(column)  # touch every page first
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        rng.shuffle(column)
        best = min(best, time.perf_counter() - start)
    return best / n * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, nargs="+",
                        default=[1 << 16, 1 << 18, 1 << 20, 1 << 21, 1 << 22, 1 << 23, 1 << 24])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("cells\tcolumn_mib\tns_per_element")
    for n in args.cells:
        print(f"{n}\t{n * 8 / 2**20:.1f}\t{ns_per_element(n, args.repeats):.1f}", flush=True)


if __name__ == "__main__":
    main()
