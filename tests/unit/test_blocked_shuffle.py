"""blocked_shuffle.py: a uniform random permutation that stays in the caches, and its use by
correlation.permutation_null for long columns."""

import itertools
from math import factorial

import numpy as np
import pytest
from scipy import stats

import correlation
from blocked_shuffle import _shuffle_buckets, blocked_shuffle
from correlation import correlation_matrix, mean_abs_offdiagonal, permutation_null


def shuffled_copy(values, rng, **kwargs):
    out = np.empty_like(values)
    blocked_shuffle(values, out, rng, **kwargs)
    return out


@pytest.mark.parametrize(("n", "bucket_size"), [(1, 4), (7, 1), (1000, 16), (1000, 5000), (70_000, 1 << 15)])
def test_output_is_a_permutation_of_the_input(n, bucket_size):
    values = np.random.default_rng(0).standard_normal(n)
    before = values.copy()
    out = shuffled_copy(values, np.random.default_rng(1), bucket_size=bucket_size)
    np.testing.assert_array_equal(np.sort(out), np.sort(values))
    np.testing.assert_array_equal(values, before)  # the input is left as it was
    if n >= 1000:
        assert not np.array_equal(out, values)


def test_same_seed_same_permutation_and_other_dtypes():
    values = np.arange(50_000, dtype=np.int32)
    a = shuffled_copy(values, np.random.default_rng(7), bucket_size=1000)
    np.testing.assert_array_equal(a, shuffled_copy(values, np.random.default_rng(7), bucket_size=1000))
    assert not np.array_equal(a, shuffled_copy(values, np.random.default_rng(8), bucket_size=1000))
    assert a.dtype == np.int32 and np.array_equal(np.sort(a), values)


@pytest.mark.parametrize(("n", "bucket_size", "draws"), [(4, 2, 24_000), (5, 2, 36_000), (4, 1, 24_000)])
def test_every_permutation_is_equally_likely(n, bucket_size, draws):
    """Several buckets of random sizes (and more buckets than elements): each of the n!
    orders appears as often as chance allows (chi-square on the counts of all orders)."""
    rng = np.random.default_rng(11)
    index = {p: i for i, p in enumerate(itertools.permutations(range(n)))}
    counts = np.zeros(factorial(n))
    values = np.arange(n)
    for _ in range(draws):
        counts[index[tuple(shuffled_copy(values, rng, bucket_size=bucket_size))]] += 1
    assert counts.min() > 0
    assert stats.chisquare(counts).pvalue > 1e-3


def test_every_element_lands_anywhere_equally_often():
    """A longer column in many buckets: where each element ends up is uniform over the
    positions (chi-square on the element x position table)."""
    rng = np.random.default_rng(12)
    n, draws = 12, 12_000
    table = np.zeros((n, n))
    values = np.arange(n)
    for _ in range(draws):
        table[shuffled_copy(values, rng, bucket_size=3), np.arange(n)] += 1
    expected = draws / n
    chi2 = ((table - expected) ** 2 / expected).sum()
    assert stats.chi2.sf(chi2, (n - 1) ** 2) > 1e-3


def test_a_rejected_word_is_skipped_and_a_stop_resumes_where_it_was():
    """Lemire's method: for a bound of 3, 2^32 mod 3 = 1, so the word 0 (product 0, in the
    biased range) is rejected and the next one used. And a shuffle that runs out of words
    returns its position; continuing there with the rest gives what one call would."""
    starts = np.array([0, 3])
    words = np.array([0, 0x80000000, 0xFFFFFFFF], dtype=np.uint32)  # 0 is rejected
    with_rejection = np.array([10.0, 20.0, 30.0])
    assert _shuffle_buckets(with_rejection, starts, words, 0, 2) == (1, 0)
    without = np.array([10.0, 20.0, 30.0])
    _shuffle_buckets(without, starts, words[1:], 0, 2)
    np.testing.assert_array_equal(with_rejection, without)
    # k=2: floor(0.5 * 3) = 1, swap positions 2 and 1; k=1: floor(~1 * 2) = 1, no swap
    np.testing.assert_array_equal(without, [10.0, 30.0, 20.0])

    rng = np.random.default_rng(3)
    starts = np.array([0, 40, 41, 100])
    words = rng.integers(0, 1 << 32, 200, dtype=np.uint32)
    whole = np.arange(100.0)
    assert _shuffle_buckets(whole, starts, words, 0, 39) == (3, 0)
    pieces = np.arange(100.0)
    position, used = (0, 39), 0
    for size in (10, 25, 30, 135):
        position = _shuffle_buckets(pieces, starts, words[used:used + size], *position)
        used += size
    assert position == (3, 0)
    np.testing.assert_array_equal(pieces, whole)


def test_refilling_words_keeps_the_shuffle_uniform():
    """A refill of one word at a time (the path taken when rejections use up the first
    batch) still gives a permutation, and the same one for the same seed."""
    values = np.arange(300.0)
    a = shuffled_copy(values, np.random.default_rng(5), bucket_size=7, words_per_refill=1)
    np.testing.assert_array_equal(np.sort(a), values)


@pytest.mark.parametrize(("out", "message"), [(np.empty(9), "same shape"), (np.empty(10, np.float32), "same shape"),
                                              ("self", "must not overlap")])
def test_bad_arguments_are_refused(out, message):
    values = np.arange(10.0)
    with pytest.raises(ValueError, match=message):
        blocked_shuffle(values, values if isinstance(out, str) else out, np.random.default_rng(0))
    with pytest.raises(ValueError, match="positive"):
        blocked_shuffle(values, np.empty(10), np.random.default_rng(0), bucket_size=0)
    with pytest.raises(ValueError, match="at most 65536"):
        blocked_shuffle(np.zeros(70_000), np.empty(70_000), np.random.default_rng(0), bucket_size=1)


def test_permutation_null_blocked_path_gives_the_same_null_distribution():
    """The blocked path (columns 2..d shuffled by blocked_shuffle, the first left in place)
    and NumPy's (every column shuffled) draw from one distribution: two-sample
    Kolmogorov-Smirnov on 600 draws each, on a latent whose components are correlated."""
    rng = np.random.default_rng(6)
    z = rng.normal(size=(400, 1)) @ np.ones((1, 4)) + rng.normal(size=(400, 4)) * [1, 2, 0.5, 1]
    numpy_draws = permutation_null(z, 600, seed=1)
    blocked_draws = permutation_null(z, 600, seed=2, blocked_from_cells=0)
    assert not np.allclose(numpy_draws[:10], permutation_null(z, 10, seed=1, blocked_from_cells=0))
    assert stats.ks_2samp(numpy_draws, blocked_draws).pvalue > 1e-3
    assert blocked_draws.mean() == pytest.approx(np.sqrt(2 / (np.pi * 400)), rel=0.1)
    assert mean_abs_offdiagonal(correlation_matrix(z)) > 0.4 > blocked_draws.max()


def test_permutation_null_switches_to_the_blocked_shuffle_at_the_threshold():
    """From BLOCKED_SHUFFLE_MIN_CELLS cells on the default is the blocked path; below it
    the draws are NumPy's, as every published null was computed (tested against
    rng.permutation in test_plot.py)."""
    n = correlation.BLOCKED_SHUFFLE_MIN_CELLS
    z = np.random.default_rng(9).normal(size=(n, 3))
    default = permutation_null(z, 2, seed=0)
    np.testing.assert_array_equal(default, permutation_null(z, 2, seed=0, blocked_from_cells=n))
    assert not np.allclose(default, permutation_null(z, 2, seed=0, blocked_from_cells=n + 1))
    small = z[:1000]
    np.testing.assert_array_equal(permutation_null(small, 3, seed=0),
                                  permutation_null(small, 3, seed=0, blocked_from_cells=1001))
