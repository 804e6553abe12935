#include "stats/compare.h"

#include <algorithm>
#include <boost/math/distributions/complement.hpp>
#include <boost/math/distributions/normal.hpp>
#include <boost/math/distributions/students_t.hpp>
#include <cmath>
#include <exception>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "stats/compare_internal.h"

namespace abexp {
namespace stats {
namespace {

// What the comparison needs from one arm.
struct ArmFigures {
  // Rate, mean or ratio, as the unevaluated sum estimate + estimate_low of
  // two long doubles (see Quotient), so that the difference of two means
  // near 10^5 that agree to 1e-10 keeps all its digits.
  std::optional<long double> estimate;
  long double estimate_low = 0;
  std::optional<double> variance;  // of the estimate (not of a unit)
  int64_t units = 0;
};

// a / b as hi + lo: hi is the rounded quotient and lo the rounding error,
// from the exact remainder a - hi·b (fma).
struct Quotient {
  long double hi;
  long double lo;
};
Quotient Divide(long double a, long double b) {
  const long double hi = a / b;
  return {hi, std::fma(-hi, b, a) / b};
}

}  // namespace

namespace internal {

absl::Status ValidateOptions(const CompareOptions& options) {
  // Below the smallest normal double, alpha / 2 rounds to 0 and has no
  // quantile.
  if (!(options.alpha >= std::numeric_limits<double>::min() &&
        options.alpha < 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "alpha is ", options.alpha,
        "; pass a two-sided significance level in (0, 1), e.g. 0.05, not "
        "below ",
        std::numeric_limits<double>::min(), " (the smallest normal double)"));
  }
  if (!(options.sequential_tuning > 0) ||
      !std::isfinite(options.sequential_tuning)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sequential_tuning is ", options.sequential_tuning,
                     "; pass N*, a positive number of units (default 5000)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateUnits(int64_t units, absl::string_view arm) {
  if (units < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        arm, ".units is ", units, "; a number of units cannot be negative"));
  }
  return absl::OkStatus();
}

absl::Status ValidateFinite(long double value, absl::string_view what) {
  if (!std::isfinite(value)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is not a finite number; pass finite sums"));
  }
  return absl::OkStatus();
}

absl::Status ValidateSums(
    absl::string_view arm, int64_t units,
    std::initializer_list<std::pair<long double, const char*>> sums) {
  for (const auto& [value, field] : sums) {
    if (absl::Status s = ValidateFinite(value, absl::StrCat(arm, ".", field));
        !s.ok()) {
      return s;
    }
    if (units == 0 && value != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(arm, " has 0 units but ", field,
                       " is not 0; pass the number of units"));
    }
  }
  return absl::OkStatus();
}

// `value` as a double, or INVALID_ARGUMENT when it does not fit in one.
absl::StatusOr<double> ToDouble(long double value, absl::string_view what) {
  const double d = static_cast<double>(value);
  if (!std::isfinite(d)) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " overflows a double; rescale the metric (e.g. to thousands)"));
  }
  return d;
}

std::string NoUnits(absl::string_view arm) {
  return absl::StrCat("the ", arm,
                      " arm has no units yet, so nothing can be compared "
                      "until both arms have some");
}

// Σ(a_i - ā)(b_i - b̄) = Σab - Σa·Σb/n. The product Σa·Σb and its quotient
// by n are carried as unevaluated sums of two long doubles (the rounding
// errors recovered exactly with fma), so the subtraction loses nothing even
// when Σab and Σa·Σb/n agree in most of their digits (a billion units with a
// mean of 54321 and an SD of 0.1: Σx² ≈ 3e18, Σ(x - x̄)² ≈ 1e7).
long double CenteredCrossProduct(long double sum_a, long double sum_b,
                                 long double sum_ab, long double n) {
  const long double product = sum_a * sum_b;
  const long double product_error = std::fma(sum_a, sum_b, -product);
  const long double quotient = product / n;
  const long double quotient_error = std::fma(-quotient, n, product);
  return (sum_ab - quotient) - (quotient_error + product_error) / n;
}

// Σ(x_i - x̄)², or INVALID_ARGUMENT when the sums break Cauchy-Schwarz
// (Σx² >= (Σx)²/n) by more than the rounding of a long sum of squares.
absl::StatusOr<long double> CenteredSquares(long double sum, long double sum_sq,
                                            int64_t units,
                                            absl::string_view what) {
  const long double centered =
      CenteredCrossProduct(sum, sum, sum_sq, static_cast<long double>(units));
  if (centered >= 0) return centered;
  if (centered < -1e-9L * sum_sq) {
    return absl::InvalidArgumentError(absl::StrCat(
        what,
        " is smaller than its sum squared / units, which no data can "
        "give; pass the sum of squares Σx², not (Σx)²"));
  }
  return 0.0L;
}

// Fills the interval and p-value of `lift` (whose estimate is set) from its
// standard error: a t reference distribution with `df` degrees of freedom,
// or the normal one.
void FillTest(Lift& lift, double standard_error, std::optional<double> df,
              double alpha, absl::string_view what,
              std::vector<std::string>& warnings) {
  const double estimate = *lift.estimate;
  lift.standard_error = standard_error;
  if (standard_error == 0) {
    if (estimate == 0) {
      // Both arms are constant and equal: no evidence of any difference,
      // but a zero-width interval would claim certainty.
      lift.p_value = 1.0;
      warnings.push_back(absl::StrCat(
          "the ", what,
          " is 0 with a standard error of 0 (no unit differs from the "
          "others), so its p-value is 1 and its intervals are undefined"));
    } else {
      warnings.push_back(absl::StrCat(
          "the ", what,
          " has a standard error of 0 (the arms show no variation to test "
          "against), so its intervals and p-value are undefined; wait for "
          "more units"));
    }
    return;
  }
  const double z = estimate / standard_error;
  double quantile = 0;
  double tail = 0;
  if (df.has_value()) {
    lift.df = df;
    const boost::math::students_t_distribution<double> dist(*df);
    quantile = boost::math::quantile(boost::math::complement(dist, alpha / 2));
    if (std::isfinite(z)) {
      tail = boost::math::cdf(boost::math::complement(dist, std::fabs(z)));
    }
  } else {
    const boost::math::normal_distribution<double> dist;
    quantile = boost::math::quantile(boost::math::complement(dist, alpha / 2));
    if (std::isfinite(z)) {
      tail = boost::math::cdf(boost::math::complement(dist, std::fabs(z)));
    }
  }
  lift.p_value = std::min(1.0, 2 * tail);
  // A standard error near the largest double can push a bound past it:
  // leave the interval out rather than present infinity.
  const double low = estimate - quantile * standard_error;
  const double high = estimate + quantile * standard_error;
  if (std::isfinite(low) && std::isfinite(high)) {
    lift.ci_low = low;
    lift.ci_high = high;
  } else {
    warnings.push_back(absl::StrCat(
        "the ", what,
        "'s interval is too wide to represent as a double, so it is left "
        "out; record the values in larger units"));
  }
}

}  // namespace internal

namespace {

using internal::CenteredCrossProduct;
using internal::CenteredSquares;
using internal::FillTest;
using internal::NoUnits;
using internal::ToDouble;
using internal::ValidateFinite;
using internal::ValidateOptions;
using internal::ValidateSums;
using internal::ValidateUnits;

// Welch-Satterthwaite degrees of freedom, scaled by the larger variance so
// that neither the squares nor their sum can overflow or underflow.
double WelchDf(const ArmFigures& control, const ArmFigures& treatment) {
  const double scale = std::max(*control.variance, *treatment.variance);
  const double c = *control.variance / scale;
  const double t = *treatment.variance / scale;
  return (c + t) * (c + t) /
         (c * c / static_cast<double>(control.units - 1) +
          t * t / static_cast<double>(treatment.units - 1));
}

// The always-valid interval and p-value of the difference d with standard
// error se over `units` units in all, into result->sequential.
void FillSequential(double d, double se, double units,
                    const CompareOptions& options, Comparison* result) {
  if (se > 0) {
    // Inputs are validated and se > 0, so this cannot fail.
    result->sequential = *ConfidenceSequence(d, se, units, options);
    if (!result->sequential.ci_low) {
      result->warnings.push_back(
          "the always-valid interval is too wide to represent as a double; the "
          "values are too large, so record them in larger units");
    }
  } else if (d == 0) {
    // The sequential p-value tends to 1 as z -> 0.
    result->sequential.p_value = 1.0;
  }
}

// The relative lift's test from the arm estimates t and c (c != 0) and
// their variances, into result->relative, or a warning when its standard
// error overflows.
void FillRelative(double t, double c, double v_t, double v_c,
                  absl::string_view noun, const CompareOptions& options,
                  Comparison* result) {
  // Delta method for t / c with independent arms:
  // Var ≈ v_t / c² + t² v_c / c⁴ = (v_t + (t / c)² v_c) / c².
  const double ratio = t / c;
  double se_relative = std::sqrt(v_t + ratio * ratio * v_c) / std::fabs(c);
  if (!std::isfinite(se_relative)) {
    // With c near 0, (t / c)² overflows (and times v_c = 0 is NaN); long
    // double's range holds every such product, so redo it there.
    const long double r = static_cast<long double>(t) / c;
    se_relative = static_cast<double>(std::sqrt(v_t + r * r * v_c) /
                                      std::fabs(static_cast<long double>(c)));
  }
  if (std::isfinite(se_relative)) {
    FillTest(result->relative, se_relative, std::nullopt, options.alpha,
             "relative lift", result->warnings);
  } else {
    result->warnings.push_back(absl::StrCat(
        "the relative lift's standard error overflows a double (the "
        "control ",
        noun, " is ", c,
        ", nearly 0), so its intervals and p-value are undefined"));
  }
}

// Everything after the per-arm figures; the same for every kind of metric.
// `noun` names the arm estimate in warnings ("rate", "mean", "ratio").
// INVALID_ARGUMENT when the difference of the estimates overflows a double.
absl::StatusOr<Comparison> Compare(const ArmFigures& control,
                                   const ArmFigures& treatment, bool welch,
                                   absl::string_view noun,
                                   const CompareOptions& options,
                                   std::vector<std::string> warnings) {
  Comparison result;
  if (control.estimate) result.control = *control.estimate;
  if (treatment.estimate) result.treatment = *treatment.estimate;
  result.control_variance = control.variance;
  result.treatment_variance = treatment.variance;
  result.warnings = std::move(warnings);
  if (!control.estimate || !treatment.estimate) return result;

  const long double c_exact = *control.estimate;
  const long double d_exact = (*treatment.estimate - c_exact) +
                              (treatment.estimate_low - control.estimate_low);
  const double c = static_cast<double>(c_exact);
  const double t = static_cast<double>(*treatment.estimate);
  const double d = static_cast<double>(d_exact);
  if (!std::isfinite(d)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the difference treatment - control overflows a double (control ", noun,
        " ", c, ", treatment ", noun, " ", t,
        "); rescale the metric (e.g. to thousands)"));
  }
  result.absolute.estimate = d;
  bool has_relative = false;
  if (c_exact == 0) {
    result.warnings.push_back(absl::StrCat(
        "relative lift is undefined: the control ", noun, " is 0"));
  } else {
    // d / c, not t / c - 1, which would lose the digits that t and c share.
    const double relative = static_cast<double>(d_exact / c_exact);
    if (std::isfinite(relative)) {
      result.relative.estimate = relative;
      has_relative = true;
    } else {
      result.warnings.push_back(absl::StrCat(
          "relative lift is undefined: it overflows a double (the control ",
          noun, " is ", c, ", nearly 0, against a difference of ", d, ")"));
    }
  }
  if (!control.variance || !treatment.variance) return result;

  const double v_c = *control.variance;
  const double v_t = *treatment.variance;
  // v_c + v_t can overflow when both are near the largest double; halved,
  // the sum cannot, and only then is it used (ordinary inputs round alike).
  const double se = std::isfinite(v_c + v_t)
                        ? std::sqrt(v_c + v_t)
                        : std::sqrt(v_c / 2 + v_t / 2) * std::sqrt(2.0);
  std::optional<double> df;
  if (welch && se > 0) df = WelchDf(control, treatment);
  FillTest(result.absolute, se, df, options.alpha, "absolute difference",
           result.warnings);

  FillSequential(
      d, se,
      static_cast<double>(control.units) + static_cast<double>(treatment.units),
      options, &result);
  if (has_relative) FillRelative(t, c, v_t, v_c, noun, options, &result);
  return result;
}

absl::StatusOr<ArmFigures> BinomialFigures(const BinomialArm& arm,
                                           absl::string_view name,
                                           std::vector<std::string>& warnings) {
  if (absl::Status s = ValidateUnits(arm.units, name); !s.ok()) return s;
  if (arm.conversions < 0 || arm.conversions > arm.units) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ".conversions is ", arm.conversions, " with ", name, ".units ",
        arm.units, "; conversions count converted units, from 0 to units"));
  }
  ArmFigures figures;
  figures.units = arm.units;
  if (arm.units == 0) {
    warnings.push_back(NoUnits(name));
    return figures;
  }
  const long double n = arm.units;
  const Quotient p = Divide(arm.conversions, n);
  figures.estimate = p.hi;
  figures.estimate_low = p.lo;
  figures.variance =
      static_cast<double>(p.hi * ((arm.units - arm.conversions) / n) / n);
  return figures;
}

absl::StatusOr<ArmFigures> MeanFigures(const MeanArm& arm,
                                       absl::string_view name,
                                       std::vector<std::string>& warnings) {
  if (absl::Status s = ValidateUnits(arm.units, name); !s.ok()) return s;
  const std::string sum_name = absl::StrCat(name, ".sum");
  const std::string sum_sq_name = absl::StrCat(name, ".sum_sq");
  if (absl::Status s = ValidateFinite(arm.sum, sum_name); !s.ok()) return s;
  if (absl::Status s = ValidateFinite(arm.sum_sq, sum_sq_name); !s.ok()) {
    return s;
  }
  if (arm.sum_sq < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        sum_sq_name, " is negative; a sum of squares is at least 0"));
  }
  ArmFigures figures;
  figures.units = arm.units;
  if (arm.units == 0) {
    if (arm.sum != 0 || arm.sum_sq != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, " has 0 units but non-zero sums; pass the number of units"));
    }
    warnings.push_back(NoUnits(name));
    return figures;
  }
  const long double n = arm.units;
  const Quotient mean = Divide(arm.sum, n);
  if (absl::StatusOr<double> fits = ToDouble(mean.hi, sum_name); !fits.ok()) {
    return fits.status();
  }
  figures.estimate = mean.hi;
  figures.estimate_low = mean.lo;
  if (arm.units < 2) {
    warnings.push_back(absl::StrCat(
        "the ", name,
        " arm has 1 unit and a variance needs at least 2, so the standard "
        "error, intervals and p-values are undefined"));
    return figures;
  }
  absl::StatusOr<long double> centered =
      CenteredSquares(arm.sum, arm.sum_sq, arm.units, sum_sq_name);
  if (!centered.ok()) return centered.status();
  absl::StatusOr<double> variance =
      ToDouble(*centered / (n - 1) / n, sum_sq_name);
  if (!variance.ok()) return variance.status();
  figures.variance = *variance;
  return figures;
}

absl::StatusOr<ArmFigures> SummaryFigures(const MeanSummary& arm,
                                          absl::string_view name,
                                          std::vector<std::string>& warnings) {
  if (absl::Status s = ValidateUnits(arm.units, name); !s.ok()) return s;
  if (!std::isfinite(arm.mean)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ".mean is not a finite number"));
  }
  if (!std::isfinite(arm.sd) || arm.sd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ".sd is ", arm.sd,
                     "; pass the sample standard deviation, 0 or more"));
  }
  ArmFigures figures;
  figures.units = arm.units;
  if (arm.units == 0) {
    warnings.push_back(NoUnits(name));
    return figures;
  }
  figures.estimate = arm.mean;
  if (arm.units < 2) {
    warnings.push_back(absl::StrCat(
        "the ", name,
        " arm has 1 unit and a sample SD needs at least 2, so the standard "
        "error, intervals and p-values are undefined"));
    return figures;
  }
  absl::StatusOr<double> variance =
      ToDouble(static_cast<long double>(arm.sd) * arm.sd / arm.units,
               absl::StrCat(name, ".sd squared"));
  if (!variance.ok()) return variance.status();
  figures.variance = *variance;
  return figures;
}

absl::StatusOr<ArmFigures> RatioFigures(const RatioArm& arm,
                                        absl::string_view name,
                                        std::vector<std::string>& warnings) {
  if (absl::Status s = ValidateUnits(arm.units, name); !s.ok()) return s;
  if (absl::Status s = ValidateSums(name, arm.units,
                                    {{arm.sum_num, "sum_num"},
                                     {arm.sum_den, "sum_den"},
                                     {arm.sum_num_sq, "sum_num_sq"},
                                     {arm.sum_den_sq, "sum_den_sq"},
                                     {arm.sum_num_den, "sum_num_den"}});
      !s.ok()) {
    return s;
  }
  if (arm.sum_num_sq < 0 || arm.sum_den_sq < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name,
                     ".sum_num_sq and .sum_den_sq must be at least 0 (sums of "
                     "squares)"));
  }
  ArmFigures figures;
  figures.units = arm.units;
  if (arm.units == 0) {
    warnings.push_back(NoUnits(name));
    return figures;
  }
  if (arm.sum_den == 0) {
    warnings.push_back(absl::StrCat("the ", name,
                                    " ratio is undefined: its denominators "
                                    "sum to 0"));
    return figures;
  }
  const Quotient quotient = Divide(arm.sum_num, arm.sum_den);
  const long double ratio = quotient.hi;
  if (absl::StatusOr<double> fits =
          ToDouble(ratio, absl::StrCat(name, ".sum_num / ", name, ".sum_den"));
      !fits.ok()) {
    return fits.status();
  }
  figures.estimate = ratio;
  figures.estimate_low = quotient.lo;
  if (arm.units < 2) {
    warnings.push_back(absl::StrCat(
        "the ", name,
        " arm has 1 unit and a variance needs at least 2, so the standard "
        "error, intervals and p-values are undefined"));
    return figures;
  }
  absl::StatusOr<long double> num =
      CenteredSquares(arm.sum_num, arm.sum_num_sq, arm.units,
                      absl::StrCat(name, ".sum_num_sq"));
  if (!num.ok()) return num.status();
  absl::StatusOr<long double> den =
      CenteredSquares(arm.sum_den, arm.sum_den_sq, arm.units,
                      absl::StrCat(name, ".sum_den_sq"));
  if (!den.ok()) return den.status();
  const long double n = arm.units;
  const long double cross =
      CenteredCrossProduct(arm.sum_num, arm.sum_den, arm.sum_num_den, n);
  // Σ(num_i - R·den_i)², the residual the delta method's variance is
  // built on (Deng et al. 2018): Var(R) ≈ (s²_num - 2R·s_num,den +
  // R²·s²_den) / (n·mean_den²), with divisor n - 1 in the sample moments.
  const long double residual =
      std::max(0.0L, *num - 2 * ratio * cross + ratio * ratio * *den);
  absl::StatusOr<double> variance =
      ToDouble(residual * n / (n - 1) / (arm.sum_den * arm.sum_den),
               absl::StrCat("the variance of the ", name, " ratio"));
  if (!variance.ok()) return variance.status();
  figures.variance = *variance;
  return figures;
}

// Runs the per-arm step for both arms, then the comparison. Boost.Math
// reports what it cannot compute by throwing; inputs are validated first, so
// that is a bug, and it becomes INTERNAL rather than a crash.
template <typename Arm, typename Figures>
absl::StatusOr<Comparison> Run(const Arm& control, const Arm& treatment,
                               const CompareOptions& options, Figures figures,
                               bool welch, absl::string_view noun) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  std::vector<std::string> warnings;
  absl::StatusOr<ArmFigures> c = figures(control, "control", warnings);
  if (!c.ok()) return c.status();
  absl::StatusOr<ArmFigures> t = figures(treatment, "treatment", warnings);
  if (!t.ok()) return t.status();
  try {
    return Compare(*c, *t, welch, noun, options, std::move(warnings));
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("the comparison failed in Boost.Math: ", e.what()));
  }
}

}  // namespace

absl::StatusOr<SequentialInterval> ConfidenceSequence(
    double estimate, double standard_error, double total_units,
    const CompareOptions& options) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  if (!std::isfinite(estimate)) {
    return absl::InvalidArgumentError("estimate is not a finite number");
  }
  if (!(standard_error > 0) || !std::isfinite(standard_error)) {
    return absl::InvalidArgumentError(
        absl::StrCat("standard_error is ", standard_error,
                     "; the confidence sequence needs a positive one"));
  }
  if (!(total_units > 0) || !std::isfinite(total_units)) {
    return absl::InvalidArgumentError(
        absl::StrCat("total_units is ", total_units,
                     "; pass the units of both arms together, at least 1"));
  }
  const double n = total_units;
  const double log_alpha = std::log(options.alpha);
  const double rho2 = (-2 * log_alpha + std::log(-2 * log_alpha + 1)) /
                      options.sequential_tuning;
  const double a = n * rho2 + 1;  // N·ρ² + 1
  // sqrt(s²) = SE·sqrt(N); ln(sqrt(a) / alpha) = ln(a) / 2 - ln(alpha).
  const double half_width =
      standard_error * std::sqrt(n) *
      std::sqrt(2 * a / (n * n * rho2) * (0.5 * std::log(a) - log_alpha));
  const double z = estimate / standard_error;
  // sqrt(a)·exp(-ρ²N z² / (2a)) in log space, so a large z underflows to 0
  // instead of multiplying inf by 0.
  const double log_p = 0.5 * std::log(a) - rho2 * n * z * z / (2 * a);
  SequentialInterval result;
  // A huge standard error on few units can overflow the bounds: leave them
  // out rather than present infinity (the p-value is still defined).
  if (std::isfinite(estimate - half_width) &&
      std::isfinite(estimate + half_width)) {
    result.ci_low = estimate - half_width;
    result.ci_high = estimate + half_width;
  }
  result.p_value = std::isfinite(log_p) ? std::min(1.0, std::exp(log_p)) : 0.0;
  return result;
}

absl::StatusOr<Comparison> CompareProportions(const BinomialArm& control,
                                              const BinomialArm& treatment,
                                              const CompareOptions& options) {
  return Run(control, treatment, options, BinomialFigures, /*welch=*/false,
             "rate");
}

absl::StatusOr<Comparison> CompareMeans(const MeanArm& control,
                                        const MeanArm& treatment,
                                        const CompareOptions& options) {
  return Run(control, treatment, options, MeanFigures, /*welch=*/true, "mean");
}

absl::StatusOr<Comparison> CompareMeanSummaries(const MeanSummary& control,
                                                const MeanSummary& treatment,
                                                const CompareOptions& options) {
  return Run(control, treatment, options, SummaryFigures, /*welch=*/true,
             "mean");
}

absl::StatusOr<Comparison> CompareRatios(const RatioArm& control,
                                         const RatioArm& treatment,
                                         const CompareOptions& options) {
  return Run(control, treatment, options, RatioFigures, /*welch=*/false,
             "ratio");
}

}  // namespace stats
}  // namespace abexp
