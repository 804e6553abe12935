#!/usr/bin/python3
"""Golden values for stats/cuped.{h,cc}: writes stats/testdata/cuped.golden.

Run with Debian's Python (SciPy 1.10, statsmodels 0.13):

    /usr/bin/python3 stats/testdata/gen_cuped.py

Nothing here calls abexp's C++ or uses its formulas. Each case simulates raw
units (a fixed numpy seed): a covariate x measured before exposure and a
metric y correlated with it, in k arms. The expected figures come from
statsmodels OLS of y on the arm indicators and the centred covariate
(x - mean of x over all units), ordinary (non-robust) standard errors:

- theta            the covariate's coefficient
- adj              per arm: intercept + arm coefficient (the fitted value at
                   the mean covariate), the adjusted mean
- abs_*            per treatment arm: its coefficient, bse, the t interval of
                   conf_int(alpha) and the p-value; abs_df = df_resid
- rel_*            per treatment arm: coefficient / control's adjusted mean,
                   with the delta method on OLS's cov_params() (normal)
- vr               per treatment arm: 1 - bse² / bse² of OLS without the
                   covariate (y on the arm indicators alone)

The C++ reads only the per-arm sums, which are written here with math.fsum
(correctly rounded): n, sy, syy, sx, sxx, sxy (lists, one entry per arm,
control first). Per-treatment outputs are lists over arms 1..k-1.
"""

import math
import os

import numpy as np
import scipy
import statsmodels
import statsmodels.api as sm
from scipy import stats

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cuped.golden")


def fmt(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return ",".join(repr(float(x)) for x in v)
    return repr(float(v))


def fit(arms, alpha):
    """arms: list of (x, y) arrays per arm, control first."""
    k = len(arms)
    x = np.concatenate([a[0] for a in arms])
    y = np.concatenate([a[1] for a in arms]).astype(float)
    arm = np.concatenate([np.full(len(a[0]), g) for g, a in enumerate(arms)])
    dummies = np.column_stack([(arm == g).astype(float) for g in range(1, k)])
    with_cov = sm.add_constant(np.column_stack([dummies, x - x.mean()]),
                               has_constant="add")
    without = sm.add_constant(dummies, has_constant="add")
    res = sm.OLS(y, with_cov).fit()
    raw = sm.OLS(y, without).fit()
    ci = res.conf_int(alpha)
    cov = res.cov_params()
    z = stats.norm.isf(alpha / 2)
    out = {
        "theta": res.params[k],
        "abs_df": res.df_resid,
        "adj": [res.params[0]] + [res.params[0] + res.params[g]
                                  for g in range(1, k)],
    }
    for key in ("abs_estimate", "abs_se", "abs_ci_low", "abs_ci_high", "abs_p",
                "rel_estimate", "rel_se", "rel_ci_low", "rel_ci_high", "rel_p",
                "vr"):
        out[key] = []
    for g in range(1, k):
        out["abs_estimate"].append(res.params[g])
        out["abs_se"].append(res.bse[g])
        out["abs_ci_low"].append(ci[g][0])
        out["abs_ci_high"].append(ci[g][1])
        out["abs_p"].append(res.pvalues[g])
        # r = b_g / b_0 with C = b_0, T = b_0 + b_g: gradient of b_g / b_0.
        b0, bg = res.params[0], res.params[g]
        grad = np.zeros(len(res.params))
        grad[0] = -bg / b0**2
        grad[g] = 1 / b0
        se = math.sqrt(grad @ cov @ grad)
        r = bg / b0
        out["rel_estimate"].append(r)
        out["rel_se"].append(se)
        out["rel_ci_low"].append(r - z * se)
        out["rel_ci_high"].append(r + z * se)
        out["rel_p"].append(2 * stats.norm.sf(abs(r / se)))
        out["vr"].append(1 - res.bse[g]**2 / raw.bse[g]**2)
    return out


def sums(arms):
    cols = {"n": [], "sy": [], "syy": [], "sx": [], "sxx": [], "sxy": []}
    for x, y in arms:
        y = y.astype(float)
        cols["n"].append(len(x))
        cols["sy"].append(math.fsum(y))
        cols["syy"].append(math.fsum(y * y))
        cols["sx"].append(math.fsum(x))
        cols["sxx"].append(math.fsum(x * x))
        cols["sxy"].append(math.fsum(x * y))
    return cols


def means_arms(rng, sizes, lifts, rho, base=50.0, sd=20.0):
    """y = base + lift + rho·sd·z_x + sqrt(1-rho²)·sd·e; x = 10 + 3·z_x."""
    arms = []
    for n, lift in zip(sizes, lifts):
        zx = rng.standard_normal(n)
        e = rng.standard_normal(n)
        x = np.round(10 + 3 * zx, 3)
        y = np.round(base + lift + sd * (rho * zx + math.sqrt(1 - rho**2) * e),
                     2)
        arms.append((x, y))
    return arms


def rfm_sum_arms(rng, sizes, lifts):
    """Spend in the experiment against orders in the last 90 days (frequency,
    Poisson): skewed, many zeros, as revenue is."""
    arms = []
    for n, lift in zip(sizes, lifts):
        freq = rng.poisson(2.0, n).astype(float)
        buys = rng.random(n) < np.clip(0.1 + 0.08 * freq, 0, 0.95)
        spend = np.where(buys, np.round(rng.gamma(2.0, 20 + 5 * freq) *
                                        (1 + lift), 2), 0.0)
        arms.append((freq, spend))
    return arms


def binomial_arms(rng, sizes, lifts):
    """Conversion (0/1) against frequency: more frequent buyers convert more."""
    arms = []
    for n, lift in zip(sizes, lifts):
        freq = rng.poisson(1.5, n).astype(float)
        p = np.clip(0.05 + 0.06 * freq + lift, 0, 1)
        arms.append((freq, (rng.random(n) < p).astype(float)))
    return arms


def main():
    rng = np.random.default_rng(20240518)
    cases = [
        ("means_strong", "means", 0.05, means_arms(rng, [2000, 2000], [0, 1.5], 0.8)),
        ("means_weak", "means", 0.05, means_arms(rng, [1500, 1700], [0, 0.5], 0.2)),
        ("means_three_arms", "means", 0.1,
         means_arms(rng, [1200, 1000, 1100], [0, 2.0, -1.0], 0.6)),
        ("means_unrelated", "means", 0.05, means_arms(rng, [400, 400], [0, 0], 0.0)),
        ("sum_rfm_frequency", "means", 0.05,
         rfm_sum_arms(rng, [3000, 3000], [0, 0.08])),
        ("binomial_frequency", "binomial", 0.05,
         binomial_arms(rng, [5000, 5000], [0, 0.01])),
        ("binomial_three_arms", "binomial", 0.01,
         binomial_arms(rng, [3000, 2500, 3500], [0, 0.02, 0.0])),
    ]
    with open(OUT, "w") as f:
        f.write("# Generated by stats/testdata/gen_cuped.py (/usr/bin/python3, "
                f"SciPy {scipy.__version__}, statsmodels "
                f"{statsmodels.__version__}); do not edit.\n")
        for name, kind, alpha, arms in cases:
            fields = {"kind": kind, "alpha": alpha}
            fields.update(sums(arms))
            fields.update(fit(arms, alpha))
            line = f"case={name} kind={kind}" + "".join(
                f" {k}={fmt(v)}" for k, v in fields.items() if k != "kind")
            f.write(line + "\n")


if __name__ == "__main__":
    main()
