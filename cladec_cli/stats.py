"""Summary statistics over runs: mean, sample standard deviation, Welch's and the paired t-test
(scipy.stats). Missing (None) and non-finite values are left out."""

import math

import numpy as np
from scipy import stats


def _finite(x):
    return x is not None and math.isfinite(x)


def mean_std(values):
    """(mean, sample std with ddof 1; 0 for a single value) of the finite values, NaN when none."""
    v = np.asarray([x for x in values if _finite(x)], np.float64)
    if len(v) == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def welch_t_test(a, b):
    """p-value of Welch's two-sample t-test (unequal variances); NaN with fewer than 2 runs each."""
    a = np.asarray([x for x in a if _finite(x)], np.float64)
    b = np.asarray([x for x in b if _finite(x)], np.float64)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    if a.var(ddof=1) + b.var(ddof=1) == 0:
        return 0.0 if a.mean() != b.mean() else 1.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def paired_t_test(a, b):
    """p-value of the paired t-test of a[i] against b[i] (runs that share a seed and a classifier);
    pairs with a missing value are left out; NaN with fewer than 2 pairs."""
    pairs = np.asarray([(x, y) for x, y in zip(a, b) if _finite(x) and _finite(y)], np.float64).reshape(-1, 2)
    if len(pairs) < 2:
        return float("nan")
    differences = pairs[:, 0] - pairs[:, 1]
    if differences.var(ddof=1) == 0:
        return 0.0 if differences.mean() != 0 else 1.0
    return float(stats.ttest_rel(pairs[:, 0], pairs[:, 1]).pvalue)
