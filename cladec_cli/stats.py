"""Summary statistics over runs: mean, sample standard deviation, Welch's t-test (scipy.stats)."""

import math

import numpy as np
from scipy import stats


def mean_std(values):
    """(mean, sample std with ddof 1; 0 for a single value) of the finite values, NaN when none."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    if len(v) == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def welch_t_test(a, b):
    """p-value of Welch's two-sample t-test (unequal variances); NaN with fewer than 2 runs each."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    if a.var(ddof=1) + b.var(ddof=1) == 0:
        return 0.0 if a.mean() != b.mean() else 1.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)
