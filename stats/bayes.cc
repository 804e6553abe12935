#include "stats/bayes.h"

#include <algorithm>
#include <boost/math/distributions/beta.hpp>
#include <boost/math/distributions/complement.hpp>
#include <boost/math/distributions/normal.hpp>
#include <boost/math/quadrature/gauss_kronrod.hpp>
#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace abexp {
namespace stats {
namespace {

// Boost's incomplete beta costs O(sqrt(n)) near the posterior mean and
// loses accuracy beyond ~1e10 (1e-8 relative at 1e12); 1e10 units per arm,
// more than there are people, keeps every figure to ~1e-12 in ~0.1 s.
constexpr int64_t kMaxUnits = 10'000'000'000;

// The integrands below are products of two factors, each a Beta posterior's
// density, CDF or survival function (1 - CDF).
enum class Part { kDensity, kCdf, kSurvival };

struct Factor {
  boost::math::beta_distribution<double> dist;
  Part part;

  double Value(double u) const {
    switch (part) {
      case Part::kDensity:
        return boost::math::pdf(dist, u);
      case Part::kCdf:
        return boost::math::cdf(dist, u);
      case Part::kSurvival:
        return boost::math::cdf(boost::math::complement(dist, u));
    }
    return 0;
  }

  // The first and second derivatives of log Value at u, 0 < u < 1.
  void LogDerivatives(double u, double* d1, double* d2) const {
    const double a = dist.alpha();
    const double b = dist.beta();
    // log density = (a-1) log u + (b-1) log(1-u) + const; a or b may be 1,
    // which makes its term vanish (and must not become 0 * inf at an end).
    const double ta = a == 1 ? 0 : (a - 1) / u;
    const double tb = b == 1 ? 0 : (b - 1) / (1 - u);
    const double dlog_density = ta - tb;
    const double d2log_density =
        -(a == 1 ? 0 : ta / u) - (b == 1 ? 0 : tb / (1 - u));
    if (part == Part::kDensity) {
      *d1 = dlog_density;
      *d2 = d2log_density;
      return;
    }
    // (log F)' = f/F and (log F)'' = r (log f)' - r^2 with r = f/F; for the
    // survival function S, (log S)' = -f/S and (log S)'' = -r (log f)' - r^2
    // with r = f/S. An underflowed F (or S) means u is deep in the tail on
    // the side where log F climbs (log S falls) without bound.
    const double tail = Value(u);
    const double sign = part == Part::kCdf ? 1 : -1;
    if (tail == 0) {
      *d1 = sign * std::numeric_limits<double>::infinity();
      *d2 = -std::numeric_limits<double>::infinity();
      return;
    }
    const double r = boost::math::pdf(dist, u) / tail;
    *d1 = sign * r;
    *d2 = sign * r * dlog_density - r * r;
  }
};

// ∫_0^1 f(u) g(u) du for two factors whose product is log-concave, which
// every factor here is for parameters >= 1 (the Beta(1,1) prior guarantees
// that). Log-concavity gives the method and its error bound:
//  1. The product has one mode u*: the root of (log h)' found by bisection.
//  2. Its width there, w = 1/sqrt((log h)'^2 - (log h)''), is the standard
//     deviation of a Gaussian bump (or, at an end of [0, 1], the decay length
//     of an exponential one); at most the narrower posterior's SD.
//  3. Break points at u* ± w·{1/2, 1, 2, 4, ...} stop on each side at 0 or 1,
//     or once h has fallen below 1e-40 h(u*). Concavity of log h bounds what
//     lies beyond a point k widths out by h(point)·k·w / ln(1e40), about
//     1e-42·k of the peak's mass: nothing.
//  4. Adaptive Gauss-Kronrod (31 points) on each piece.
// The cost does not grow with the counts: about a thousand evaluations of
// Boost's beta functions, whether n is 10 or 10^10.
class LogConcaveProduct {
 public:
  LogConcaveProduct(Factor f, Factor g) : f_(std::move(f)), g_(std::move(g)) {}

  double Integrate() const {
    // 1. Bisection on the sign of (log h)'. Stops once the bracket is small
    // against the local width; the mode need not be exact, only central.
    double lo = 0;
    double hi = 1;
    double mode = 0.5;
    for (int i = 0; i < 200; ++i) {
      mode = lo + (hi - lo) / 2;
      if (mode <= lo || mode >= hi) break;
      double d1 = 0;
      double d2 = 0;
      LogDerivatives(mode, &d1, &d2);
      // +inf + -inf: both factors' tails have underflowed at one point, so
      // h < 1e-308 everywhere (to its left the one factor is smaller still,
      // to its right the other).
      if (std::isnan(d1)) return 0;
      if (hi - lo < 1e-3 * Width(d1, d2)) break;
      if (d1 > 0) {
        lo = mode;
      } else {
        hi = mode;
      }
    }
    const double peak = Value(mode);
    if (!(peak > 0)) return 0;  // h underflows at its own maximum
    double d1 = 0;
    double d2 = 0;
    LogDerivatives(mode, &d1, &d2);
    // On a plateau (the larger loss: both tails near 1 between the
    // posteriors) the derivatives are ~0 and say nothing; the posteriors'
    // own widths bound the features that the pieces must resolve.
    double width = Width(d1, d2);
    if (!(width > 0) || !std::isfinite(width)) width = 1;
    width = std::min({width, FallbackWidth(), 1.0});

    // 2-4. Pieces outward from the mode on each side.
    double total = 0;
    for (double side : {-1.0, 1.0}) {
      double from = mode;
      for (double k = 0.5; k < 1e300; k *= 2) {
        double to = mode + side * k * width;
        const bool last = to <= 0 || to >= 1;
        to = std::clamp(to, 0.0, 1.0);
        total += Piece(std::min(from, to), std::max(from, to));
        if (last || Value(to) < 1e-40 * peak) break;
        from = to;
      }
    }
    return total;
  }

 private:
  double Value(double u) const { return f_.Value(u) * g_.Value(u); }

  void LogDerivatives(double u, double* d1, double* d2) const {
    double f1 = 0, f2 = 0, g1 = 0, g2 = 0;
    f_.LogDerivatives(u, &f1, &f2);
    g_.LogDerivatives(u, &g1, &g2);
    *d1 = f1 + g1;
    *d2 = f2 + g2;
  }

  // The local width of h, from the derivatives of log h (step 2 above).
  static double Width(double d1, double d2) {
    return 1 / std::sqrt(d1 * d1 - d2);
  }

  // The narrower posterior's standard deviation.
  double FallbackWidth() const {
    return std::min(boost::math::standard_deviation(f_.dist),
                    boost::math::standard_deviation(g_.dist));
  }

  double Piece(double a, double b) const {
    if (!(b > a)) return 0;
    // Integrated over [-1, 1] and rescaled: Boost 1.74 compares the error
    // estimate of [-1, 1] with the tolerance times the integral over [a, b],
    // so a piece narrower than ~1e-4 would never converge and be split down
    // to max_depth. The relative tolerance applies to |Kronrod - Gauss|,
    // which overstates the Kronrod error by orders of magnitude on smooth
    // pieces.
    const double half = (b - a) / 2;
    const double mid = a + half;
    return half *
           boost::math::quadrature::gauss_kronrod<double, 31>::integrate(
               [this, half, mid](double x) { return Value(mid + half * x); },
               -1.0, 1.0, /*max_depth=*/8, /*tolerance=*/1e-10);
  }

  Factor f_;
  Factor g_;
};

double Integral(const boost::math::beta_distribution<double>& p, Part pp,
                const boost::math::beta_distribution<double>& q, Part qp) {
  return LogConcaveProduct({p, pp}, {q, qp}).Integrate();
}

absl::Status ValidateArm(const BinomialArm& arm, absl::string_view name) {
  if (arm.units < 0 || arm.units > kMaxUnits) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ".units is ", arm.units,
        "; the Bayesian figures support 0 to 10^10 units per arm"));
  }
  if (arm.conversions < 0 || arm.conversions > arm.units) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ".conversions is ", arm.conversions, " of ", arm.units,
        " units; conversions count converted units, so 0 <= conversions <= "
        "units"));
  }
  return absl::OkStatus();
}

constexpr absl::string_view kUndefined =
    "the chance to beat control and the expected losses are undefined: ";

}  // namespace

absl::StatusOr<BayesResult> BayesProportions(const BinomialArm& control,
                                             const BinomialArm& treatment,
                                             Direction direction) {
  if (absl::Status s = ValidateArm(control, "control"); !s.ok()) return s;
  if (absl::Status s = ValidateArm(treatment, "treatment"); !s.ok()) return s;
  BayesResult result;
  if (control.units == 0 || treatment.units == 0) {
    const absl::string_view which =
        control.units == 0 && treatment.units == 0 ? "both arms have"
        : control.units == 0                       ? "the control arm has"
                                                   : "the treatment arm has";
    result.warnings.push_back(absl::StrCat(
        kUndefined, which,
        " no units yet, and the posterior would be the prior alone"));
    return result;
  }

  // Posterior parameters; exact in a double.
  double ac = 1.0 + static_cast<double>(control.conversions);
  double bc = 1.0 + static_cast<double>(control.units - control.conversions);
  double at = 1.0 + static_cast<double>(treatment.conversions);
  double bt =
      1.0 + static_cast<double>(treatment.units - treatment.conversions);
  // Lower is better: count the units that did not convert instead. Their
  // rate 1 - p has the posterior Beta(b, a) under the symmetric prior, and
  // a treatment better than control is one whose 1 - p is higher, so every
  // figure below then follows the metric's direction, with the accuracy of
  // the higher-is-better case.
  if (direction == Direction::kLowerIsBetter) {
    std::swap(ac, bc);
    std::swap(at, bt);
  }
  // Doubles are densest near 0. When the rates are above 1/2, work with
  // 1 - p instead: C' = 1 - C ~ Beta(bc, ac) and T' = 1 - T ~ Beta(bt, at).
  // T > C exactly when C' > T', and (T - C)+ = (C' - T')+, so C' plays the
  // treatment and T' the control, and every result carries over unchanged.
  if (ac / (ac + bc) + at / (at + bt) > 1) {
    std::swap(ac, bt);
    std::swap(bc, at);
  }

  try {
    const boost::math::beta_distribution<double> c(ac, bc);
    const boost::math::beta_distribution<double> t(at, bt);
    // mean_t - mean_c in long double: a billion units per arm need the
    // digits beyond a double's when the two rates nearly agree.
    const long double mc = static_cast<long double>(ac) / (ac + bc);
    const long double mt = static_cast<long double>(at) / (at + bt);
    const double mean_difference = static_cast<double>(mt - mc);

    // Each figure comes from the integral of its smaller side, which has
    // full relative accuracy however small it is; the larger side follows
    // without cancellation: P(T > C) = 1 - P(T < C) (ties have probability
    // 0), and E[(T - C)+] - E[(C - T)+] = E[T - C].
    double chance = 0;
    double ship = 0;
    double keep = 0;
    if (ac == at && bc == bt) {
      chance = 0.5;  // by symmetry, exactly
      ship = keep = Integral(t, Part::kCdf, c, Part::kSurvival);
    } else if (mean_difference >= 0) {
      // P(T < C) = ∫ f_C F_T;  E[(C - T)+] = ∫ P(T < u < C) du = ∫ F_T S_C.
      chance = 1 - Integral(c, Part::kDensity, t, Part::kCdf);
      ship = Integral(t, Part::kCdf, c, Part::kSurvival);
      keep = ship + mean_difference;
    } else {
      // P(T > C) = ∫ f_C S_T;  E[(T - C)+] = ∫ P(C < u < T) du = ∫ F_C S_T.
      chance = Integral(c, Part::kDensity, t, Part::kSurvival);
      keep = Integral(c, Part::kCdf, t, Part::kSurvival);
      ship = keep - mean_difference;
    }
    result.chance_to_beat_control = std::clamp(chance, 0.0, 1.0);
    result.expected_loss_ship = std::max(ship, 0.0);
    result.expected_loss_keep = std::max(keep, 0.0);
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("the Bayesian integrals failed for control ",
                     control.conversions, "/", control.units, " and treatment ",
                     treatment.conversions, "/", treatment.units, ": ",
                     e.what(), "; please report these counts as a bug"));
  }
  return result;
}

absl::StatusOr<BayesResult> BayesGaussian(double difference,
                                          double standard_error,
                                          Direction direction) {
  if (!std::isfinite(difference)) {
    return absl::InvalidArgumentError(
        absl::StrCat("difference is ", difference,
                     "; pass the finite estimate of treatment - control"));
  }
  if (!std::isfinite(standard_error) || standard_error < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "standard_error is ", standard_error,
        "; pass the standard error of treatment - control, finite and >= 0"));
  }
  BayesResult result;
  if (standard_error == 0) {
    result.warnings.push_back(absl::StrCat(
        kUndefined,
        "the standard error of the difference is 0 (no unit's value varies), "
        "so the posterior has no spread to weigh"));
    return result;
  }
  // D ~ N(d, s^2), z = d/s. E[max(D, 0)] = s φ(z) + d Φ(z) and
  // E[max(-D, 0)] = s φ(z) - d Φ(-z). For the smaller loss the two terms
  // nearly cancel when |z| is large; they lose about log10(z^2) digits, at
  // most 3 before φ(z) underflows (|z| > 38), so the result stays good to
  // ~1e-13.
  // The improvement: treatment - control, or its negation when lower is
  // better (exact), so that the formulas below hold for both directions.
  const double gain =
      direction == Direction::kLowerIsBetter ? -difference : difference;
  const boost::math::normal_distribution<double> unit;
  const double z = gain / standard_error;
  const double density = boost::math::pdf(unit, z);
  const double below = boost::math::cdf(unit, z);  // Φ(z)
  const double above =
      boost::math::cdf(boost::math::complement(unit, z));  // Φ(-z)
  result.chance_to_beat_control = below;
  // Each term is finite (s·φ(z) <= 0.4 s, |d|·Φ <= |d|), but the larger
  // loss exceeds |d| and can pass the largest double when |d| or s is near
  // it: then it is null, not infinity.
  const auto loss = [&](double value, absl::string_view which) {
    std::optional<double> out;
    if (std::isfinite(value)) {
      out = std::max(value, 0.0);
    } else {
      result.warnings.push_back(
          absl::StrCat("the expected loss of ", which,
                       " is undefined: it overflows a double (difference ",
                       difference, ", standard_error ", standard_error,
                       "); rescale the metric (e.g. to thousands)"));
    }
    return out;
  };
  result.expected_loss_ship =
      loss(standard_error * density - gain * above, "shipping");
  result.expected_loss_keep =
      loss(standard_error * density + gain * below, "keeping");
  return result;
}

}  // namespace stats
}  // namespace abexp
