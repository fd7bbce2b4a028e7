"""A uniform random permutation of a long column that stays in the CPU caches: the shuffle
``correlation.permutation_null`` uses for columns of many cells.

NumPy's ``Generator.shuffle`` is a Fisher-Yates shuffle: one swap per element with a
uniformly chosen earlier position. Once the column outgrows the caches every swap is a
DRAM access, and the cost per element grows with the column (``benchmarks/shuffle_cost.py``
times it beside this shuffle; docs/performance.md, "Atlas scale", gives the numbers). That made the
permutation null of a 4-million-cell latent cost more per cell than that of a 1-million-cell
one.

``blocked_shuffle`` is Rao's and Sandelius's two-stage method (Rao 1961, Sandelius 1962):

1. every element gets a bucket, independently and uniformly among ``n_buckets``, and the
   elements are scattered into their buckets (a counting sort: two sequential passes);
2. each bucket, ``bucket_size`` elements on average (2^15 float64 = 256 KiB, inside a
   core's L2), is shuffled by Fisher-Yates.

The result is a uniform permutation, exactly: given the bucket sizes, every assignment of
elements to buckets with those sizes is equally likely, and every order within a bucket is
equally likely, so every arrangement of the elements is (each arises from exactly one
assignment and one order per bucket, and all of them have the same probability). Both
stages touch memory sequentially or within L2, so the cost per element stays flat as the
column grows.

The randomness comes from the caller's ``numpy.random.Generator``: the bucket labels from
``integers`` (NumPy's unbiased bounded draws) and the Fisher-Yates positions from uniform
32-bit words turned into bounded integers by Lemire's multiply-and-reject method (Lemire
2019, "Fast random integer generation in an interval"), which is exact: a word whose
product falls in the biased range is rejected and the next word drawn. The same generator
state gives the same permutation.
"""

import numba
import numpy as np

BUCKET_SIZE = 1 << 15
"""Mean elements per bucket: 2^15 float64 values are 256 KiB, well inside a 1 MiB L2."""


@numba.njit(cache=True)
def _scatter_into_buckets(values, labels, n_buckets, out):
    """Counting sort of ``values`` by ``labels`` into ``out`` (stable); returns the buckets'
    start offsets, ``n_buckets + 1`` of them (the last is ``values.size``)."""
    starts = np.zeros(n_buckets + 1, np.int64)
    for i in range(labels.size):
        starts[labels[i] + 1] += 1
    for b in range(n_buckets):
        starts[b + 1] += starts[b]
    position = starts[:-1].copy()
    for i in range(values.size):
        b = labels[i]
        out[position[b]] = values[i]
        position[b] += 1
    return starts


@numba.njit(cache=True)
def _shuffle_buckets(out, starts, words, bucket, k):
    """Fisher-Yates within each bucket of ``out`` (``starts`` as above), from ``bucket`` at
    its position ``k`` downwards, drawing each position from ``words`` (uniform uint32) by
    Lemire's method. Returns where it stopped: ``(bucket, k)`` if the words ran out before
    the end (the caller passes more words and this position), else ``(n_buckets, 0)``."""
    n_buckets = starts.size - 1
    w = 0
    two32 = np.uint64(1) << np.uint64(32)
    low_bits = two32 - np.uint64(1)
    while bucket < n_buckets:
        base = starts[bucket]
        while k > 0:
            if w == words.size:
                return bucket, k
            bound = np.uint64(k + 1)  # a uniform position in [0, k]
            product = np.uint64(words[w]) * bound
            w += 1
            low = product & low_bits
            if low < bound and low < (two32 - bound) % bound:
                continue  # the biased range: reject this word
            j = base + np.int64(product >> np.uint64(32))
            i = base + k
            held = out[i]
            out[i] = out[j]
            out[j] = held
            k -= 1
        bucket += 1
        if bucket < n_buckets:
            k = starts[bucket + 1] - starts[bucket] - 1
    return n_buckets, 0


def blocked_shuffle(values: np.ndarray, out: np.ndarray, rng: np.random.Generator, *,
                    bucket_size: int = BUCKET_SIZE, words_per_refill: int = 1024) -> None:
    """Write a uniform random permutation of the 1-D array ``values`` into ``out`` (same
    length and dtype, not the same memory), drawing from ``rng``.

    ``bucket_size`` is the mean bucket length; ``words_per_refill`` how many further words
    are drawn when rejections have used up the first batch (rare: the first batch has
    ``n + n/1024 + 64`` words, and a word is rejected with probability below
    bucket length / 2^32). Both only change which permutation a given seed gives, not the
    permutation's distribution; tests use small values to exercise every path."""
    values = np.asarray(values)
    if values.ndim != 1 or out.shape != values.shape or out.dtype != values.dtype:
        raise ValueError(f"blocked_shuffle needs a 1-D array and an output of the same shape and dtype; "
                         f"got {values.shape} {values.dtype} and {out.shape} {out.dtype}.")
    if np.shares_memory(values, out):
        raise ValueError("blocked_shuffle writes a permutation of values into out: they must not overlap.")
    if bucket_size < 1 or words_per_refill < 1:
        raise ValueError(f"bucket_size and words_per_refill must be positive; got {bucket_size}, {words_per_refill}.")
    n = values.size
    if n == 0:
        return
    n_buckets = -(-n // bucket_size)
    if n_buckets > np.iinfo(np.uint16).max + 1:
        raise ValueError(f"{n} elements need {n_buckets} buckets of {bucket_size}: at most 65536; "
                         f"raise bucket_size.")
    labels = rng.integers(0, n_buckets, n, dtype=np.uint16)
    starts = _scatter_into_buckets(values, labels, n_buckets, out)
    words = rng.integers(0, 1 << 32, n + (n >> 10) + 64, dtype=np.uint32)
    bucket, k = 0, starts[1] - 1
    while True:
        bucket, k = _shuffle_buckets(out, starts, words, bucket, k)
        if bucket == n_buckets:
            return
        words = rng.integers(0, 1 << 32, words_per_refill, dtype=np.uint32)
