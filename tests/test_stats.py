import math

import pytest

from cladec_cli.stats import mean_std, paired_t_test, welch_t_test


def test_mean_std_uses_sample_std_and_skips_missing():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([5.0, None, float("nan")]) == (5.0, 0.0)
    assert all(math.isnan(v) for v in mean_std([]))


def test_welch_t_test_known_answer():
    # Two runs each with equal spread: Welch's df is 2, whose t distribution has the closed form
    # P(|T| >= t) = 1 - t / sqrt(2 + t^2); here t = sqrt(2).
    assert welch_t_test([0.0, 2.0], [2.0, 4.0]) == pytest.approx(1 - math.sqrt(2) / 2, rel=1e-9)


def test_welch_t_test():
    assert welch_t_test([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert welch_t_test([27.9, 28.2, 28.0], [7.3, 7.2, 7.4]) < 1e-6
    assert math.isnan(welch_t_test([1.0], [2.0, 3.0]))
    # Swapping the groups changes nothing.
    assert welch_t_test([1, 2, 4, 8], [3, 3, 5, 9]) == pytest.approx(welch_t_test([3, 3, 5, 9], [1, 2, 4, 8]))


def test_paired_t_test_known_answer_and_pairing():
    # Differences 1, 3: t = mean / (sd / sqrt(2)) = 2 / (sqrt(2) / sqrt(2)) = 2 with 1 degree of
    # freedom, whose two-sided p-value is 1 - 2 * atan(2) / pi.
    assert paired_t_test([1.0, 3.0], [0.0, 0.0]) == pytest.approx(1 - 2 * math.atan(2) / math.pi, rel=1e-9)
    # Runs that move together: the paired test sees the constant-ish shift that Welch's misses.
    a, b = [10.0, 20.0, 30.0, 40.0], [10.5, 20.4, 30.6, 40.5]
    assert paired_t_test(a, b) < 0.01 and welch_t_test(a, b) > 0.9


def test_paired_t_test_leaves_out_incomplete_pairs():
    assert paired_t_test([1.0, None, 3.0, 4.0], [0.0, 5.0, 0.0, 2.0]) == pytest.approx(
        paired_t_test([1.0, 3.0, 4.0], [0.0, 0.0, 2.0]))
    assert math.isnan(paired_t_test([1.0, None], [2.0, 3.0]))
    assert welch_t_test([1.0, 2.0, None], [5.0, 6.0, 7.0]) == pytest.approx(welch_t_test([1.0, 2.0], [5.0, 6.0, 7.0]))
