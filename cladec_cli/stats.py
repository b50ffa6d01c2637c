"""Summary statistics over runs: mean, sample standard deviation, Welch's t-test."""

import math

import numpy as np


def mean_std(values):
    """(mean, sample std with ddof 1; 0 for a single value) of the finite values, NaN when none."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    if len(v) == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def student_t_sf2(t, df):
    """Two-sided tail probability P(|T| >= |t|) of Student's t with `df` degrees of freedom."""
    import tensorflow as tf

    x = df / (df + t * t)
    return float(tf.math.betainc(tf.constant(df / 2, tf.float64), tf.constant(0.5, tf.float64),
                                 tf.constant(x, tf.float64)))


def welch_t_test(a, b):
    """p-value of Welch's two-sample t-test (unequal variances); NaN with fewer than 2 runs each."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        return 0.0 if a.mean() != b.mean() else 1.0
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return student_t_sf2(t, df)
