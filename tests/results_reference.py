#!/usr/bin/python3
"""Reference figures for the results RPC, from per-unit raw data.

tests/results_simulation_test.cc writes the units it exposed (and what each
one did) to a CSV, runs this script with Debian's Python (SciPy 1.10,
statsmodels 0.13), and compares the JSON it prints with what
ResultsService.GetResults returned. Nothing here reads abexp's code or its
aggregates: every figure is computed from the raw per-unit values, by
library routines where one exists:

- proportions: statsmodels test_proportions_2indep / confint_proportions_2indep
  (Wald, unpooled), the per-unit 0/1 values counted here;
- sums (means per exposed unit): scipy.stats.ttest_ind(equal_var=False) for
  t and p, statsmodels ttest_ind(usevar="unequal") for the Welch df and
  CompareMeans.tconfint_diff for the interval;
- ratios: the delta method (docs/statistics.md) from numpy's sample
  covariance matrix (ddof 1) of each unit's numerator and denominator, with
  a normal test from scipy.stats.norm;
- relative lifts: the delta method for a ratio of independent estimates
  (docs/statistics.md), with each arm's variance of the estimate taken from
  the raw values as above;
- Holm: statsmodels multipletests, one family of absolute and one of
  relative p-values over (metrics x non-control variants);
- Bayes for sums and ratios: D ~ N(d, s^2), chance scipy.stats.norm.cdf,
  losses as integrals of the normal survival function (scipy.integrate.quad),
  cross-checked against the closed forms. For a metric named in
  --lower-is-better the chance is P(D < 0), the loss of shipping E[max(D, 0)]
  and of keeping E[max(-D, 0)], each integrated from its definition;
- SRM: scipy.stats.chisquare of the units per variant against the weights;
- CUPED (--cuped KEY=Y:X): statsmodels OLS of y on [1, variant indicators,
  x - mean(x)] over the units whose x is not NaN: the treatment's
  coefficient with its t interval and p-value, the pooled theta (the
  coefficient of x), the arms' adjusted means (the constant, and the
  constant plus the arm's coefficient), the relative lift by the delta
  method from the fit's covariance matrix, and the variance reduction
  1 - bse^2 / bse0^2 against OLS without x on the same units.
- funnels (--funnel KEY=WINDOW_MS;STEP;STEP...): each STEP is the time
  columns (ms after exposure, NaN for none) of the step's event joined by
  '+', optionally ':' and the step's own window in ms. Each unit's events
  are replayed in time order by the rule of docs/attribution.md
  ("Funnels"); the step counts, the rates from exposure and from the
  previous step, and their comparisons (the proportions test above, over
  every unit, or over the units that reached the previous step) are
  computed from the reached steps. The metric itself is the proportion of
  units that reached the last step, compared like --binomial.

Usage:
  results_reference.py --csv FILE --variants control,treatment
      [--weights 50,50] [--alpha 0.05]
      [--binomial KEY=COLUMN] [--sum KEY=COLUMN] [--ratio KEY=NUM/DEN] ...
      [--lower-is-better KEY] ... [--cuped KEY=YCOLUMN:XCOLUMN] ...
      [--funnel "KEY=WINDOW_MS;COL[+COL][:STEP_WINDOW_MS];..."] ...

CSV: a header row, then one row per exposed unit; the column `variant` is
its variant, the others the unit's values (a unit with no events has 0).

Output (JSON on stdout; null where a figure is undefined):
  {"units": {VARIANT: n},
   "srm": {"chi2": .., "p_value": ..},
   "metrics": {KEY: {
       "estimate": {VARIANT: ..},
       "vs_control": {VARIANT: {
           "absolute": {"estimate", "ci_low", "ci_high", "p_value",
                        "adjusted_p_value", "df" (sums only)},
           "relative": {same, without df},
           "bayes": {"chance_to_beat_control", "expected_loss_ship",
                     "expected_loss_keep"} (sums and ratios only)}}}},
   "cuped": {KEY: {"units": {VARIANT: n with x}, "estimate": {VARIANT: ..},
       "theta": .., "vs_control": {VARIANT: {"absolute": {"estimate",
       "ci_low", "ci_high", "p_value", "df"}, "relative": {"estimate",
       "ci_low", "ci_high", "p_value"}, "variance_reduction": ..}}}},
   "funnels": {KEY: {"steps": {VARIANT: [{"units", "rate_from_exposure",
       "rate_from_previous"}, ...]}, "vs_control": {VARIANT: [{
       "from_exposure": {"absolute", "relative"}, "from_previous": {..}},
       ...]}}}}
"""

import argparse
import csv
import json
import math
import sys

import numpy as np
import statsmodels.api as sm
from scipy import integrate, stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import (confint_proportions_2indep,
                                          test_proportions_2indep)
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttest_ind


def fail(message):
    sys.exit("results_reference.py: " + message)


def finite_or_none(x):
    return float(x) if x is not None and math.isfinite(x) else None


def normal_test(estimate, se, alpha):
    """Two-sided z test and interval for an estimate with standard error se."""
    if se is None or not se > 0:
        return {"estimate": estimate, "ci_low": None, "ci_high": None,
                "p_value": None}
    q = stats.norm.isf(alpha / 2)
    return {"estimate": estimate, "ci_low": estimate - q * se,
            "ci_high": estimate + q * se,
            "p_value": 2 * stats.norm.sf(abs(estimate / se))}


def relative_lift(est_c, var_c, est_t, var_t, alpha):
    """r = est_t / est_c - 1 with the delta-method SE for independent arms."""
    if est_c == 0:
        return normal_test(None, None, alpha)
    r = (est_t - est_c) / est_c
    se = math.sqrt(var_t / est_c ** 2 + est_t ** 2 * var_c / est_c ** 4)
    return normal_test(r, se, alpha)


def gaussian_bayes(d, se, lower_is_better):
    """Chance and losses for D ~ N(d, se^2), by integration, checked against
    the closed forms s phi(z) + d Phi(z) and s phi(z) - d Phi(-z). Better is
    D > 0, or D < 0 when lower is better."""
    if not se > 0:
        return {"chance_to_beat_control": None, "expected_loss_ship": None,
                "expected_loss_keep": None}
    dist = stats.norm(loc=d, scale=se)
    chance = dist.cdf(0) if lower_is_better else dist.sf(0)
    # E[max(D, 0)] = int_0^inf P(D > t) dt; E[max(-D, 0)] = int_0^inf P(D < -t) dt.
    keep = integrate.quad(lambda t: dist.sf(t), 0, np.inf,
                          epsabs=0, epsrel=1e-13, limit=200)[0]
    ship = integrate.quad(lambda t: dist.cdf(-t), 0, np.inf,
                          epsabs=0, epsrel=1e-13, limit=200)[0]
    z = d / se
    keep_closed = se * stats.norm.pdf(z) + d * stats.norm.cdf(z)
    ship_closed = se * stats.norm.pdf(z) - d * stats.norm.cdf(-z)
    for name, a, b in (("keep", keep, keep_closed), ("ship", ship, ship_closed)):
        if abs(a - b) > 1e-10 * abs(b):
            fail(f"expected loss of {name}: quad {a!r} vs closed form {b!r}")
    if lower_is_better:
        # Shipping loses when the treatment is higher: E[max(D, 0)].
        ship, keep = keep, ship
    return {"chance_to_beat_control": chance, "expected_loss_ship": ship,
            "expected_loss_keep": keep}


def compare_binomial(xc, xt, alpha):
    nc, nt = len(xc), len(xt)
    cc, ct = int(xc.sum()), int(xt.sum())
    if not np.all((xc == 0) | (xc == 1)) or not np.all((xt == 0) | (xt == 1)):
        fail("a binomial column holds a value other than 0 or 1")
    res = test_proportions_2indep(ct, nt, cc, nc, method="wald",
                                  compare="diff", correction=False)
    low, high = confint_proportions_2indep(ct, nt, cc, nc, method="wald",
                                           compare="diff", alpha=alpha)
    pc, pt = cc / nc, ct / nt
    absolute = {"estimate": pt - pc, "ci_low": low, "ci_high": high,
                "p_value": res.pvalue}
    # The Wald variance of a rate is the population variance of the 0/1
    # values over n.
    relative = relative_lift(pc, np.var(xc) / nc, pt, np.var(xt) / nt, alpha)
    return absolute, relative, None


def compare_sum(xc, xt, alpha, lower_is_better):
    welch = stats.ttest_ind(xt, xc, equal_var=False)
    _, p_sm, df = ttest_ind(xt, xc, usevar="unequal")
    if abs(p_sm - welch.pvalue) > 1e-10 * welch.pvalue:
        fail(f"Welch p: scipy {welch.pvalue!r} vs statsmodels {p_sm!r}")
    low, high = CompareMeans(DescrStatsW(xt), DescrStatsW(xc)).tconfint_diff(
        alpha=alpha, usevar="unequal")
    mc, mt = xc.mean(), xt.mean()
    vc, vt = xc.var(ddof=1) / len(xc), xt.var(ddof=1) / len(xt)
    absolute = {"estimate": mt - mc, "ci_low": low, "ci_high": high,
                "p_value": welch.pvalue, "df": df}
    relative = relative_lift(mc, vc, mt, vt, alpha)
    return absolute, relative, gaussian_bayes(mt - mc, math.sqrt(vc + vt),
                                              lower_is_better)


def ratio_arm(num, den):
    """R = sum(num) / sum(den) and its delta-method variance."""
    n = len(num)
    r = num.sum() / den.sum()
    cov = np.cov(np.vstack([num, den]), ddof=1)
    var = (cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / (
        n * den.mean() ** 2)
    return r, var


def compare_ratio(arm_c, arm_t, alpha, lower_is_better):
    (rc, vc), (rt, vt) = arm_c, arm_t
    absolute = normal_test(rt - rc, math.sqrt(vc + vt), alpha)
    relative = relative_lift(rc, vc, rt, vt, alpha)
    return absolute, relative, gaussian_bayes(rt - rc, math.sqrt(vc + vt),
                                              lower_is_better)


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        fail(f"{path} has no units")
    return rows


def column(rows, name):
    if name not in rows[0]:
        fail(f"the CSV has no column {name!r}; it has {list(rows[0])}")
    return np.array([float(r[name]) for r in rows], dtype=np.float64)


def funnel_reached(row, steps, window):
    """How many of `steps` ([(columns, step window or None)]) the unit
    reached, replaying its events in time order (exposure at 0)."""
    events = []
    for k, (cols, _) in enumerate(steps):
        for c in cols:
            t = float(row[c])
            if not math.isnan(t):
                events.append((t, k))
    events.sort()
    reached, at = 0, 0.0
    for t, k in events:
        if reached == len(steps) or k != reached:
            continue
        step_window = steps[k][1]
        if at <= t < window and (step_window is None or t < at + step_window):
            reached, at = reached + 1, t
    return reached


def parse_funnel(spec):
    key, rest = key_value(spec, "=")
    parts = rest.split(";")
    steps = []
    for part in parts[1:]:
        cols, _, w = part.partition(":")
        steps.append((cols.split("+"), float(w) if w else None))
    return key, float(parts[0]), steps


def funnel(by_variant, variants, steps, window, alpha):
    reached = {v: np.array([funnel_reached(r, steps, window)
                            for r in by_variant[v]]) for v in variants}
    out = {"steps": {}, "vs_control": {}}
    for v in variants:
        n = len(reached[v])
        rows = []
        for k in range(len(steps)):
            units = int((reached[v] >= k + 1).sum())
            previous = n if k == 0 else int((reached[v] >= k).sum())
            rows.append({"units": units,
                         "rate_from_exposure": units / n if n else None,
                         "rate_from_previous":
                             units / previous if previous else None})
        out["steps"][v] = rows
    control = reached[variants[0]]
    for v in variants[1:]:
        cells = []
        for k in range(len(steps)):
            cell = {}
            for name, c, t in (
                    ("from_exposure", control, reached[v]),
                    ("from_previous", control[control >= k],
                     reached[v][reached[v] >= k])):
                absolute, relative, _ = compare_binomial(
                    (c >= k + 1).astype(float), (t >= k + 1).astype(float),
                    alpha)
                absolute["adjusted_p_value"] = None
                relative["adjusted_p_value"] = None
                cell[name] = {"absolute": absolute, "relative": relative}
            cells.append(cell)
        out["vs_control"][v] = cells
    return out, reached


def key_value(spec, sep):
    key, _, value = spec.partition(sep)
    if not key or not value:
        fail(f"{spec!r} should be KEY{sep}VALUE")
    return key, value


def cuped(by_variant, variants, ycol, xcol, alpha):
    """OLS of y on the arm indicators and the centred covariate."""
    ys, xs, arms = [], [], []
    for a, v in enumerate(variants):
        for r in by_variant[v]:
            if not math.isnan(float(r[xcol])):
                ys.append(float(r[ycol]))
                xs.append(float(r[xcol]))
                arms.append(a)
    y, x, arms = np.array(ys), np.array(xs), np.array(arms)
    k = len(variants)
    dummies = [(arms == a).astype(float) for a in range(1, k)]
    design = np.column_stack([np.ones_like(x)] + dummies + [x - x.mean()])
    fit = sm.OLS(y, design).fit()
    plain = sm.OLS(y, np.column_stack([np.ones_like(x)] + dummies)).fit()
    cov = np.asarray(fit.cov_params())
    z = stats.norm.ppf(1 - alpha / 2)
    out = {"units": {v: int((arms == a).sum()) for a, v in enumerate(variants)},
           "theta": fit.params[k],
           "estimate": {variants[0]: fit.params[0]},
           "vs_control": {}}
    for a in range(1, k):
        v = variants[a]
        b, c = fit.params[a], fit.params[0]
        out["estimate"][v] = c + b
        low, high = fit.conf_int(alpha)[a]
        grad = np.zeros(len(fit.params))
        grad[0], grad[a] = -b / c**2, 1 / c
        se_r = math.sqrt(grad @ cov @ grad)
        r = b / c
        out["vs_control"][v] = {
            "absolute": {"estimate": b, "ci_low": low, "ci_high": high,
                         "p_value": fit.pvalues[a], "df": fit.df_resid},
            "relative": {"estimate": r, "ci_low": r - z * se_r,
                         "ci_high": r + z * se_r,
                         "p_value": 2 * stats.norm.sf(abs(r) / se_r)},
            "variance_reduction": 1 - fit.bse[a]**2 / plain.bse[a]**2}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", required=True)
    ap.add_argument("--variants", required=True,
                    help="comma-separated, the control first")
    ap.add_argument("--weights", help="comma-separated, as in the config")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--binomial", action="append", default=[])
    ap.add_argument("--sum", action="append", default=[])
    ap.add_argument("--ratio", action="append", default=[])
    ap.add_argument("--cuped", action="append", default=[],
                    metavar="KEY=Y:X")
    ap.add_argument("--funnel", action="append", default=[])
    ap.add_argument("--lower-is-better", action="append", default=[],
                    metavar="KEY", help="a metric where lower is better")
    args = ap.parse_args()
    lower = set(args.lower_is_better)

    rows = read_csv(args.csv)
    variants = args.variants.split(",")
    for r in rows:
        if r["variant"] not in variants:
            fail(f"unit with unknown variant {r['variant']!r}")
    by_variant = {v: [r for r in rows if r["variant"] == v] for v in variants}
    out = {"units": {v: len(by_variant[v]) for v in variants}, "metrics": {}}

    if args.weights:
        weights = np.array([float(w) for w in args.weights.split(",")])
        observed = np.array([len(by_variant[v]) for v in variants], dtype=float)
        expected = observed.sum() * weights / weights.sum()
        res = stats.chisquare(observed, expected)
        out["srm"] = {"chi2": res.statistic, "p_value": res.pvalue}

    metrics = []  # (key, function(control rows, variant rows))
    for spec in args.binomial:
        key, col = key_value(spec, "=")
        metrics.append((key, lambda c, t, col=col: compare_binomial(
            column(c, col), column(t, col), args.alpha),
            lambda rs, col=col: column(rs, col).mean()))
    for spec in args.sum:
        key, col = key_value(spec, "=")
        metrics.append((key, lambda c, t, col=col, key=key: compare_sum(
            column(c, col), column(t, col), args.alpha, key in lower),
            lambda rs, col=col: column(rs, col).mean()))
    for spec in args.ratio:
        key, cols = key_value(spec, "=")
        num, den = key_value(cols, "/")
        arm = lambda rs, num=num, den=den: ratio_arm(column(rs, num),
                                                     column(rs, den))
        metrics.append((key, lambda c, t, arm=arm, key=key: compare_ratio(
            arm(c), arm(t), args.alpha, key in lower),
                        lambda rs, arm=arm: arm(rs)[0]))

    funnels = {}
    for spec in args.funnel:
        key, window, steps = parse_funnel(spec)
        funnels[key], reached = funnel(by_variant, variants, steps, window,
                                       args.alpha)
        # The metric itself: reached the last step, a 0/1 column per unit.
        for v in variants:
            for r, n in zip(by_variant[v], reached[v]):
                r[key + "/completed"] = 1.0 if n == len(steps) else 0.0
        col = key + "/completed"
        metrics.append((key, lambda c, t, col=col: compare_binomial(
            column(c, col), column(t, col), args.alpha),
            lambda rs, col=col: column(rs, col).mean()))
    if funnels:
        out["funnels"] = funnels

    control = by_variant[variants[0]]
    cells = []  # (absolute, relative) in family order
    for key, compare, estimate in metrics:
        m = {"estimate": {v: estimate(by_variant[v]) for v in variants},
             "vs_control": {}}
        for v in variants[1:]:
            absolute, relative, bayes = compare(control, by_variant[v])
            cell = {"absolute": absolute, "relative": relative}
            if bayes is not None:
                cell["bayes"] = bayes
            m["vs_control"][v] = cell
            cells.append(cell)
        out["metrics"][key] = m

    for side in ("absolute", "relative"):
        family = [c[side] for c in cells if c[side]["p_value"] is not None]
        if family:
            adjusted = multipletests([c["p_value"] for c in family],
                                     method="holm")[1]
            for c, a in zip(family, adjusted):
                c["adjusted_p_value"] = a

    if args.cuped:
        out["cuped"] = {}
    for spec in args.cuped:
        key, cols = key_value(spec, "=")
        ycol, xcol = key_value(cols, ":")
        out["cuped"][key] = cuped(by_variant, variants, ycol, xcol,
                                  args.alpha)

    def clean(x):
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        if isinstance(x, (int, np.integer)):
            return int(x)
        return finite_or_none(x)

    json.dump(clean(out), sys.stdout, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
