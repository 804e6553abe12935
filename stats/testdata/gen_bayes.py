#!/usr/bin/python3
"""Golden values for stats/bayes.{h,cc}; writes stats/testdata/bayes.golden.

Run with Debian's Python (SciPy 1.10), from anywhere:
    /usr/bin/python3 stats/testdata/gen_bayes.py

Nothing here calls abexp or Boost. Each figure is computed one of two
independent ways, and every case small enough for both is computed both ways
and the two must agree:

* Binomial, exact: with a Beta(1,1) prior the posteriors have integer
  parameters, so P(p_t > p_c) is a finite sum of rationals (Evan Miller's
  formula, https://www.evanmiller.org/bayesian-ab-testing.html), summed here
  in exact rational arithmetic (fractions.Fraction) and rounded once. The
  expected losses follow from the same sum by size-biasing:
  E[(T - C)+] = m_t P(T' > C) - m_c P(T > C'), where T' ~ Beta(a_t + 1, b_t),
  C' ~ Beta(a_c + 1, b_c) and m are the posterior means.
* Binomial, numerical (for counts too large for exact sums): nested
  scipy.integrate.quad (QUADPACK) over the posterior densities, written
  relative to each mode in extended precision and normalised numerically,
  so no incomplete-beta or log-gamma routine is involved:
  P(T > C) = int f_c(c) P(T > c) dc and E[(T - C)+] = int f_c(c) E[(T - c)+] dc.
  (SciPy's special.betainc is Cephes, which loses up to 6 digits at these
  sizes; stats.beta is Boost, which the code under test uses.)
* Gaussian: D = treatment - control ~ N(d, s^2); the chance is
  special.ndtr(d / s) (Cephes) and each loss E[max(+-D, 0)] is the integral
  of the normal survival function, int_0^inf P(+-D > t) dt, checked against
  the closed form s phi(mu/s) + mu Phi(mu/s).

Lower-is-better cases (better=lower: a refund or bounce rate) are computed
from their definitions, not from the higher-is-better figures: the chance is
P(control > treatment) and the losses E[(treatment - control)+] (shipping)
and E[(control - treatment)+] (keeping), which are the routines above with
the two arms' roles exchanged (an exact sum or nested integral of its own),
and for the Gaussian P(D < 0), E[max(D, 0)] and E[max(-D, 0)].

Fields: kind=binomial|gaussian, the inputs, better=lower on lower-is-better
cases (absent: higher is better), then chance_to_beat_control,
expected_loss_ship, expected_loss_keep (`null` when undefined).
"""

import math
import os
import sys
from fractions import Fraction

import numpy as np
from scipy import integrate, special

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bayes.golden")
LD = np.longdouble


def num(x):
    return "null" if x is None else repr(float(x))


# ---------------------------------------------------------------------------
# Exact sums (integer posterior parameters).


def _greater_sum(a1, b1, a2, b2):
    """P(X2 > X1), X1 ~ Beta(a1, b1), X2 ~ Beta(a2, b2); a2 terms."""
    # term_0 = B(a1, b1 + b2) / B(a1, b1); the ratio of successive terms is
    # (b2 + i)(a1 + i) / ((i + 1)(a1 + b1 + b2 + i)).
    f = math.factorial
    term = Fraction(f(b1 + b2 - 1) * f(a1 + b1 - 1),
                    f(a1 + b1 + b2 - 1) * f(b1 - 1))
    total = Fraction(0)
    for i in range(a2):
        total += term
        term *= Fraction((b2 + i) * (a1 + i), (i + 1) * (a1 + b1 + b2 + i))
    return total


def greater_exact(a1, b1, a2, b2):
    """P(X2 > X1) exactly, summing over the smallest parameter."""
    # Symmetries: X -> 1 - X swaps a and b and the direction; and
    # P(X2 > X1) = 1 - P(X1 > X2) (ties have probability 0).
    options = [
        (a2, lambda: _greater_sum(a1, b1, a2, b2)),
        (b1, lambda: _greater_sum(b2, a2, b1, a1)),
        (a1, lambda: 1 - _greater_sum(a2, b2, a1, b1)),
        (b2, lambda: 1 - _greater_sum(b1, a1, b2, a2)),
    ]
    return min(options, key=lambda o: o[0])[1]()


def binomial_exact(n_c, x_c, n_t, x_t):
    ac, bc, at, bt = 1 + x_c, 1 + n_c - x_c, 1 + x_t, 1 + n_t - x_t
    mc, mt = Fraction(ac, ac + bc), Fraction(at, at + bt)
    chance = greater_exact(ac, bc, at, bt)
    keep = mt * greater_exact(ac, bc, at + 1, bt) - mc * greater_exact(
        ac + 1, bc, at, bt)
    ship = keep + mc - mt
    assert keep >= 0 and ship >= 0 and 0 <= chance <= 1
    return float(chance), float(ship), float(keep)


# ---------------------------------------------------------------------------
# Nested quadrature over the densities (any size).


class Posterior:
    """Beta(a, b), a, b >= 1, as an unnormalised density around its mode."""

    def __init__(self, a, b):
        self.a, self.b = LD(a), LD(b)
        self.mode = (self.a - 1) / (self.a + self.b - 2) if a + b > 2 else LD(
            0.5)
        self.sd = float(np.sqrt(self.a * self.b / ((self.a + self.b)**2 *
                                                   (self.a + self.b + 1))))
        lo = max(0.0, float(self.mode) - 200 * self.sd)
        hi = min(1.0, float(self.mode) + 200 * self.sd)
        self.norm = self._integral(lambda x: 1.0, lo, hi)

    def density(self, x):
        """f(x) / f(mode), computed from x - mode so that the huge exponents
        multiply a small, accurately known number."""
        d = LD(x) - self.mode
        log = LD(0)
        if self.a != 1:
            log += (self.a - 1) * np.log1p(d / self.mode)
        if self.b != 1:
            log += (self.b - 1) * np.log1p(-d / (1 - self.mode))
        return float(np.exp(log))

    def points(self, lo, hi):
        ks = [0, 0.5, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128]
        pts = {float(self.mode) + s * k * self.sd for k in ks for s in (1, -1)}
        return sorted(p for p in pts if lo < p < hi)

    def _integral(self, g, lo, hi, extra=()):
        """int_lo^hi g(x) f(x) / f(mode) dx, to full relative precision."""
        if hi <= lo:
            return 0.0
        pts = sorted(set(self.points(lo, hi)) |
                     {p for p in extra if lo < p < hi})
        value, err = integrate.quad(lambda x: g(x) * self.density(x), lo, hi,
                                    points=pts or None, epsabs=0,
                                    epsrel=1e-13, limit=1000)
        assert err <= 1e-10 * abs(value) or value == 0, (value, err)
        return value

    def upper(self, c, weight):
        """E[weight(X - c); X > c] for X ~ this posterior."""
        hi = min(1.0, max(c, float(self.mode)) + 200 * self.sd)
        return self._integral(lambda x: weight(x - c), c, hi) / self.norm


def binomial_quad(n_c, x_c, n_t, x_t):
    ac, bc, at, bt = 1 + x_c, 1 + n_c - x_c, 1 + x_t, 1 + n_t - x_t
    # p -> 1 - p keeps both posteriors' mass near 0, where doubles are
    # densest: swap a and b, and "treatment higher" becomes "lower".
    flip = (ac + at) / (ac + bc + at + bt) > 0.5
    if flip:
        ac, bc, at, bt = bc, ac, bt, at
    c, t = Posterior(ac, bc), Posterior(at, bt)
    # The product of f_c with T's tail has its mass between the two modes
    # (near the precision-weighted mean when the arms are far apart).
    w = 1 / c.sd**2 + 1 / t.sd**2
    meet = (float(c.mode) / c.sd**2 + float(t.mode) / t.sd**2) / w
    meet_sd = 1 / math.sqrt(w)
    extra = [meet + k * meet_sd for k in range(-40, 41, 2)]
    extra += t.points(0, 1)
    lo = max(0.0, min(float(c.mode), meet) - 200 * c.sd)
    hi = min(1.0, max(float(c.mode), meet) + 200 * c.sd)

    def outer(weight):
        return c._integral(lambda x: t.upper(x, weight), lo, hi,
                           extra) / c.norm

    def lower_outer(weight):
        # E over C of E[weight(c - T); T < c] = E[...] with roles swapped.
        lo2 = max(0.0, min(float(t.mode), meet) - 200 * t.sd)
        hi2 = min(1.0, max(float(t.mode), meet) + 200 * t.sd)
        extra2 = [meet + k * meet_sd for k in range(-40, 41, 2)] + c.points(
            0, 1)
        return t._integral(lambda y: c.upper(y, weight), lo2, hi2,
                           extra2) / t.norm

    one = lambda d: 1.0
    excess = lambda d: d
    p_t_above = outer(one)  # P(T > C) in the (possibly flipped) space
    t_above = outer(excess)  # E[(T - C)+]
    c_above = lower_outer(excess)  # E[(C - T)+]
    if flip:
        # Flipped T above flipped C means the real T is below the real C.
        # 1 - p keeps its relative accuracy only when it is not tiny.
        assert p_t_above < 0.999, "add the direct integral for this case"
        return 1 - p_t_above, t_above, c_above
    return p_t_above, c_above, t_above


# ---------------------------------------------------------------------------
# Gaussian approximation.


def gaussian(d, s, lower_is_better=False):
    """Chance and losses when treatment - control = D ~ N(d, s^2): P(D > 0),
    E[max(-D, 0)] and E[max(D, 0)]; when lower is better, P(D < 0),
    E[max(D, 0)] and E[max(-D, 0)]."""
    if s == 0:
        return None, None, None

    def loss(mu):  # E[max(X, 0)], X ~ N(mu, s^2)
        sf = lambda t: special.ndtr((mu - t) / s)
        # P(X > t) < 1e-300 beyond mu + 40 s.
        hi = max(mu, 0) + 40 * s
        value, err = integrate.quad(sf, 0, hi, points=[mu] if 0 < mu else None,
                                    epsabs=0, epsrel=1e-13, limit=1000)
        closed = s * math.exp(-(mu / s)**2 / 2) / math.sqrt(
            2 * math.pi) + mu * special.ndtr(mu / s)
        assert abs(closed - value) <= 1e-10 * value + 1e-300, (mu, s, value,
                                                                closed)
        return value

    if lower_is_better:
        return special.ndtr(-d / s), loss(d), loss(-d)
    return special.ndtr(d / s), loss(-d), loss(d)


def binomial_case(n_c, x_c, n_t, x_t):
    """(chance, ship, keep, method) for higher is better, exact where cheap
    and cross-checked against the nested integrals there."""
    quad = binomial_quad(n_c, x_c, n_t, x_t)
    if n_c + n_t > EXACT_LIMIT:
        return quad, "quad"
    exact = binomial_exact(n_c, x_c, n_t, x_t)
    for e, q, what in zip(exact, quad, ("chance", "ship", "keep")):
        assert abs(e - q) <= CROSS_CHECK_RTOL * abs(e), (n_c, x_c, n_t, x_t,
                                                        what, e, q)
    return exact, "exact"


# ---------------------------------------------------------------------------

# (name, n_c, x_c, n_t, x_t); exact sums are used up to EXACT_LIMIT units in
# all (their factorials grow with the counts).
BINOMIAL = [
    ("reference_140_vs_120", 1000, 120, 1000, 140),
    ("reference_reversed", 1000, 140, 1000, 120),
    ("small_unequal_n", 20, 5, 10, 5),
    ("one_unit_each_t_converted", 1, 0, 1, 1),
    ("one_unit_each_c_converted", 1, 1, 1, 0),
    ("identical_arms", 500, 50, 500, 50),
    ("identical_rates_unequal_n", 400, 40, 800, 80),
    ("no_conversions_both", 1000, 0, 1000, 0),
    ("no_conversions_control", 100, 0, 100, 3),
    ("all_conversions_both", 200, 200, 300, 300),
    ("all_conversions_control", 100, 100, 100, 97),
    ("high_rates", 2000, 1900, 2000, 1930),
    ("low_rate_large_n", 20000, 30, 20000, 45),
    ("moderate", 10000, 1000, 10000, 1100),
    ("tiny_chance", 1000, 500, 1000, 100),
    ("chance_near_one", 1000, 100, 1000, 300),
    ("huge_1e7", 10_000_000, 1_000_000, 10_000_000, 1_001_000),
    ("huge_1e9", 1_000_000_000, 100_000_000, 1_000_000_000, 100_010_000),
    ("huge_1e9_identical", 1_000_000_000, 123_456_789, 1_000_000_000,
     123_456_789),
    ("huge_1e9_unequal_n", 500_000_000, 50_000_000, 1_000_000_000,
     99_990_000),
    ("huge_1e9_tiny_rates", 1_000_000_000, 1000, 1_000_000_000, 1100),
    ("huge_1e9_high_rates", 1_000_000_000, 999_999_000, 1_000_000_000,
     999_999_100),
    ("huge_1e9_tiny_chance", 1_000_000_000, 100_000_000, 1_000_000_000,
     99_900_000),
    # The most units per arm that stats/bayes.h accepts.
    ("huge_1e10", 10_000_000_000, 1_000_000_000, 10_000_000_000,
     1_000_030_000),
    ("huge_1e10_low_rates", 10_000_000_000, 2_000_000, 10_000_000_000,
     1_990_000),
]
# Lower-is-better metrics (refunds, bounces): (name, n_c, x_c, n_t, x_t).
BINOMIAL_LOWER = [
    # A refund-rate guardrail significantly worse in treatment (2.6% vs 2%):
    # its chance to beat control is small, and shipping it costs ~0.6 pp.
    ("lower_worse_refunds", 10000, 200, 10000, 260),
    ("lower_better_refunds", 10000, 260, 10000, 200),
    ("lower_small_unequal_n", 20, 5, 10, 5),
    ("lower_identical_arms", 500, 50, 500, 50),
    ("lower_no_conversions_control", 100, 0, 100, 3),
    ("lower_high_rates", 2000, 1900, 2000, 1930),
    ("lower_tiny_chance", 1000, 100, 1000, 500),
    ("lower_huge_1e9", 1_000_000_000, 100_010_000, 1_000_000_000,
     100_000_000),
]
EXACT_LIMIT = 60_000
# Both methods must agree this closely wherever both run.
CROSS_CHECK_RTOL = 1e-11

# Zero-unit arms: nothing to compare, every figure is null.
BINOMIAL_NULL = [
    ("zero_unit_control", 0, 0, 100, 10),
    ("zero_unit_treatment", 100, 10, 0, 0),
    ("zero_unit_both", 0, 0, 0, 0),
]

# Gaussian cases from two arms' estimates and standard errors:
# (name, est_c, se_c, est_t, se_t); the difference is est_t - est_c and its
# standard error sqrt(se_c^2 + se_t^2), as stats/compare.h computes them.
GAUSSIAN = [
    ("treatment_better", 0.10, 0.01, 0.12, 0.012),
    ("treatment_worse", 5.0, 0.2, 4.7, 0.25),
    ("identical", 3.0, 0.5, 3.0, 0.5),
    ("one_arm_exact", 1.0, 0.0, 1.1, 0.05),
    ("far_apart", 0.0, 0.01, 0.3, 0.01),
    ("far_apart_reversed", 0.3, 0.01, 0.0, 0.01),
    ("beyond_underflow", 0.0, 0.001, 0.3, 0.001),
    ("huge_scale", 1.0e9, 2.0e3, 1.0e9 + 5.0e3, 2.5e3),
    ("tiny_scale", 1.0e-7, 1.0e-9, 1.02e-7, 1.1e-9),
    ("zero_se", 2.0, 0.0, 2.5, 0.0),
    ("zero_se_identical", 2.0, 0.0, 2.0, 0.0),
]
# The same, for lower-is-better metrics (load time in seconds, refunds per
# order).
GAUSSIAN_LOWER = [
    ("lower_treatment_slower", 1.20, 0.01, 1.25, 0.012),
    ("lower_treatment_faster", 1.25, 0.012, 1.20, 0.01),
    ("lower_far_apart", 0.3, 0.01, 0.0, 0.01),
    ("lower_identical", 3.0, 0.5, 3.0, 0.5),
]

# Means given as (n, mean, sample SD) per arm: each arm's standard error is
# SD / sqrt(n). (name, n_c, mean_c, sd_c, n_t, mean_t, sd_t)
MEANS = [
    # The Welch example.
    ("welch_reference", 5000, 12.5, 30.0, 5100, 13.4, 31.0),
    ("small_samples", 2, 1.0, 0.5, 3, 2.0, 1.5),
    ("huge_n", 1_000_000_000, 50.0, 20.0, 1_000_000_000, 50.001, 20.0),
]


def main():
    lines = [
        "# Generated by stats/testdata/gen_bayes.py (/usr/bin/python3, SciPy "
        "1.10); do not edit by hand.",
        "# binomial: n units and x conversions per arm, Beta(1,1) prior. "
        "gaussian: treatment - control ~ N(difference, standard_error^2).",
    ]
    for name, n_c, x_c, n_t, x_t in BINOMIAL:
        values, method = binomial_case(n_c, x_c, n_t, x_t)
        print(f"{name}: {method} {values}", file=sys.stderr)
        lines.append(
            f"case={name} kind=binomial n_c={n_c} x_c={x_c} n_t={n_t} "
            f"x_t={x_t} chance_to_beat_control={num(values[0])} "
            f"expected_loss_ship={num(values[1])} "
            f"expected_loss_keep={num(values[2])}")
    for name, n_c, x_c, n_t, x_t in BINOMIAL_LOWER:
        # The arms' roles exchanged: P(C > T), E[(T - C)+], E[(C - T)+].
        values, method = binomial_case(n_t, x_t, n_c, x_c)
        print(f"{name}: {method} {values}", file=sys.stderr)
        lines.append(
            f"case={name} kind=binomial better=lower n_c={n_c} x_c={x_c} "
            f"n_t={n_t} x_t={x_t} chance_to_beat_control={num(values[0])} "
            f"expected_loss_ship={num(values[1])} "
            f"expected_loss_keep={num(values[2])}")
    for name, n_c, x_c, n_t, x_t in BINOMIAL_NULL:
        lines.append(f"case={name} kind=binomial n_c={n_c} x_c={x_c} "
                     f"n_t={n_t} x_t={x_t} chance_to_beat_control=null "
                     f"expected_loss_ship=null expected_loss_keep=null")
    gaussian_inputs = [(name, est_t - est_c, math.hypot(se_c, se_t))
                       for name, est_c, se_c, est_t, se_t in GAUSSIAN]
    gaussian_inputs += [
        (f"means_{name}", mean_t - mean_c,
         math.hypot(sd_c / math.sqrt(n_c), sd_t / math.sqrt(n_t)))
        for name, n_c, mean_c, sd_c, n_t, mean_t, sd_t in MEANS
    ]
    for name, d, s in gaussian_inputs:
        chance, ship, keep = gaussian(d, s)
        lines.append(
            f"case=gaussian_{name} kind=gaussian difference={num(d)} "
            f"standard_error={num(s)} chance_to_beat_control={num(chance)} "
            f"expected_loss_ship={num(ship)} expected_loss_keep={num(keep)}")
    for name, est_c, se_c, est_t, se_t in GAUSSIAN_LOWER:
        d, s = est_t - est_c, math.hypot(se_c, se_t)
        chance, ship, keep = gaussian(d, s, lower_is_better=True)
        lines.append(
            f"case=gaussian_{name} kind=gaussian better=lower "
            f"difference={num(d)} standard_error={num(s)} "
            f"chance_to_beat_control={num(chance)} "
            f"expected_loss_ship={num(ship)} expected_loss_keep={num(keep)}")
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {len(lines) - 2} cases to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
