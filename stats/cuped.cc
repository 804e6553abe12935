#include "stats/cuped.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "stats/compare_internal.h"

namespace abexp {
namespace stats {
namespace {

using internal::CenteredCrossProduct;
using internal::CenteredSquares;
using internal::FillTest;
using internal::NoUnits;
using internal::ValidateOptions;
using internal::ValidateSums;
using internal::ValidateUnits;

// One arm's means and within-arm centred sums.
struct Moments {
  int64_t units = 0;
  long double mean_y = 0;
  long double mean_x = 0;
  long double syy = 0;  // Σ(y - ȳ)²
  long double sxx = 0;  // Σ(x - x̄)²
  long double sxy = 0;  // Σ(x - x̄)(y - ȳ)
};

absl::StatusOr<Moments> MomentsOf(const CupedArm& arm, size_t index) {
  const std::string name = absl::StrCat("arms[", index, "]");
  if (absl::Status s = ValidateUnits(arm.units, name); !s.ok()) return s;
  if (absl::Status s = ValidateSums(name, arm.units,
                                    {{arm.sum_y, "sum_y"},
                                     {arm.sum_y_sq, "sum_y_sq"},
                                     {arm.sum_x, "sum_x"},
                                     {arm.sum_x_sq, "sum_x_sq"},
                                     {arm.sum_xy, "sum_xy"}});
      !s.ok()) {
    return s;
  }
  if (arm.sum_y_sq < 0 || arm.sum_x_sq < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ".sum_y_sq and .sum_x_sq must be at least 0 (sums of squares)"));
  }
  Moments m;
  m.units = arm.units;
  if (arm.units == 0) return m;
  const long double n = arm.units;
  m.mean_y = arm.sum_y / n;
  m.mean_x = arm.sum_x / n;
  absl::StatusOr<long double> syy = CenteredSquares(
      arm.sum_y, arm.sum_y_sq, arm.units, absl::StrCat(name, ".sum_y_sq"));
  if (!syy.ok()) return syy.status();
  absl::StatusOr<long double> sxx = CenteredSquares(
      arm.sum_x, arm.sum_x_sq, arm.units, absl::StrCat(name, ".sum_x_sq"));
  if (!sxx.ok()) return sxx.status();
  m.syy = *syy;
  m.sxx = *sxx;
  m.sxy = CenteredCrossProduct(arm.sum_x, arm.sum_y, arm.sum_xy, n);
  return m;
}

// The regression pooled over every arm with units.
struct Pooled {
  long double units = 0;  // N
  long double arms = 0;   // k
  long double sxx = 0;
  long double sxy = 0;
  long double syy = 0;
  long double mean_x = 0;  // x̄ over all arms
};

Pooled Pool(const std::vector<Moments>& moments) {
  Pooled p;
  long double sum_x = 0;
  for (const Moments& m : moments) {
    if (m.units == 0) continue;
    p.units += m.units;
    p.arms += 1;
    p.sxx += m.sxx;
    p.sxy += m.sxy;
    p.syy += m.syy;
    sum_x += m.mean_x * m.units;
  }
  if (p.units > 0) p.mean_x = sum_x / p.units;
  return p;
}

// The relative lift r = d / C of the adjusted means, by the delta method
// with their covariance: Var(r) ≈ (v_t − 2(T/C)·cov + (T/C)²·v_c) / C².
void FillAdjustedRelative(double t, double c, double v_t, double v_c,
                          double cov, const CompareOptions& options,
                          Comparison& result) {
  const long double ratio = static_cast<long double>(t) / c;
  const long double variance = v_t - 2 * ratio * cov + ratio * ratio * v_c;
  const double se = static_cast<double>(std::sqrt(std::max(0.0L, variance)) /
                                        std::fabs(static_cast<long double>(c)));
  if (!std::isfinite(se)) {
    result.warnings.push_back(absl::StrCat(
        "the adjusted relative lift's standard error overflows a double (the "
        "control's adjusted value is ",
        c, ", nearly 0), so its intervals and p-value are undefined"));
    return;
  }
  FillTest(result.relative, se, std::nullopt, options.alpha,
           "adjusted relative lift", result.warnings);
}

absl::StatusOr<CupedComparison> Cuped(const std::vector<CupedArm>& arms,
                                      size_t control, size_t treatment,
                                      absl::string_view noun,
                                      const CompareOptions& options) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  if (control >= arms.size() || treatment >= arms.size() ||
      control == treatment) {
    return absl::InvalidArgumentError(absl::StrCat(
        "control is arm ", control, " and treatment arm ", treatment, " of ",
        arms.size(), "; pass two different indexes into arms"));
  }
  std::vector<Moments> moments;
  moments.reserve(arms.size());
  for (size_t i = 0; i < arms.size(); ++i) {
    absl::StatusOr<Moments> m = MomentsOf(arms[i], i);
    if (!m.ok()) return m.status();
    moments.push_back(*m);
  }
  CupedComparison out;
  Comparison& result = out.adjusted;
  const Moments& c = moments[control];
  const Moments& t = moments[treatment];
  if (c.units == 0) result.warnings.push_back(NoUnits("control"));
  if (t.units == 0) result.warnings.push_back(NoUnits("treatment"));
  if (c.units == 0 || t.units == 0) return out;

  const Pooled pooled = Pool(moments);
  if (!(pooled.sxx > 0)) {
    result.warnings.push_back(
        "the covariate has the same value for every unit of each arm, so "
        "CUPED cannot adjust anything; read the unadjusted figures");
    return out;
  }
  const long double theta = pooled.sxy / pooled.sxx;
  out.theta = static_cast<double>(theta);
  const long double adj_c = c.mean_y - theta * (c.mean_x - pooled.mean_x);
  const long double adj_t = t.mean_y - theta * (t.mean_x - pooled.mean_x);
  const long double d_exact =
      (t.mean_y - c.mean_y) - theta * (t.mean_x - c.mean_x);
  const double d = static_cast<double>(d_exact);
  if (!std::isfinite(d) || !std::isfinite(static_cast<double>(adj_c)) ||
      !std::isfinite(static_cast<double>(adj_t))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the adjusted ", noun,
        "s overflow a double; rescale the metric or the covariate"));
  }
  result.control = static_cast<double>(adj_c);
  result.treatment = static_cast<double>(adj_t);
  result.absolute.estimate = d;
  bool has_relative = false;
  if (adj_c == 0) {
    result.warnings.push_back(absl::StrCat(
        "the adjusted relative lift is undefined: the control's adjusted ",
        noun, " is 0"));
  } else if (const double r = static_cast<double>(d_exact / adj_c);
             std::isfinite(r)) {
    result.relative.estimate = r;
    has_relative = true;
  } else {
    result.warnings.push_back(absl::StrCat(
        "the adjusted relative lift is undefined: it overflows a double (the "
        "control's adjusted ",
        noun, " is nearly 0)"));
  }

  // OLS of y on k arm indicators and the centred covariate: k + 1
  // parameters.
  const long double df = pooled.units - pooled.arms - 1;
  if (df < 1) {
    result.warnings.push_back(absl::StrCat(
        "CUPED's regression needs at least ",
        static_cast<int64_t>(pooled.arms) + 2,
        " units with a covariate (the arms, the covariate and one more), so "
        "its standard errors, intervals and p-values are undefined"));
    return out;
  }
  const long double residual =
      std::max(0.0L, pooled.syy - theta * pooled.sxy) / df;
  const long double dc = c.mean_x - pooled.mean_x;
  const long double dt = t.mean_x - pooled.mean_x;
  const long double nc = c.units;
  const long double nt = t.units;
  const long double v_c = residual * (1 / nc + dc * dc / pooled.sxx);
  const long double v_t = residual * (1 / nt + dt * dt / pooled.sxx);
  const long double cov = residual * dc * dt / pooled.sxx;
  const long double gap = t.mean_x - c.mean_x;
  const long double v_d = residual * (1 / nc + 1 / nt + gap * gap / pooled.sxx);
  result.control_variance = static_cast<double>(v_c);
  result.treatment_variance = static_cast<double>(v_t);
  const double se = static_cast<double>(std::sqrt(v_d));
  FillTest(result.absolute, se, static_cast<double>(df), options.alpha,
           "adjusted absolute difference", result.warnings);
  if (se > 0 && std::isfinite(se)) {
    absl::StatusOr<SequentialInterval> sequential =
        ConfidenceSequence(d, se, static_cast<double>(nc + nt), options);
    if (!sequential.ok()) return sequential.status();
    result.sequential = *sequential;
  }
  if (has_relative) {
    FillAdjustedRelative(static_cast<double>(adj_t), static_cast<double>(adj_c),
                         static_cast<double>(v_t), static_cast<double>(v_c),
                         static_cast<double>(cov), options, result);
  }
  // Without the covariate: residual Σ S_yy / (N − k), Var(d) = s²(1/n_c +
  // 1/n_t).
  const long double raw =
      pooled.syy / (pooled.units - pooled.arms) * (1 / nc + 1 / nt);
  if (raw > 0) {
    out.variance_reduction = static_cast<double>(1 - v_d / raw);
  } else {
    result.warnings.push_back(
        "the metric has the same value for every unit of each arm, so the "
        "variance reduction is undefined");
  }
  return out;
}

// Boost.Math reports what it cannot compute by throwing; the inputs are
// validated first, so that is a bug, and it becomes INTERNAL.
absl::StatusOr<CupedComparison> Guarded(const std::vector<CupedArm>& arms,
                                        size_t control, size_t treatment,
                                        absl::string_view noun,
                                        const CompareOptions& options) {
  try {
    return Cuped(arms, control, treatment, noun, options);
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("the CUPED comparison failed in Boost.Math: ", e.what()));
  }
}

}  // namespace

absl::StatusOr<CupedComparison> CompareCupedMeans(
    const std::vector<CupedArm>& arms, size_t control, size_t treatment,
    const CompareOptions& options) {
  return Guarded(arms, control, treatment, "mean", options);
}

absl::StatusOr<CupedComparison> CompareCupedProportions(
    const std::vector<CupedBinomialArm>& arms, size_t control, size_t treatment,
    const CompareOptions& options) {
  std::vector<CupedArm> sums;
  sums.reserve(arms.size());
  for (size_t i = 0; i < arms.size(); ++i) {
    const CupedBinomialArm& arm = arms[i];
    if (arm.conversions < 0 || arm.conversions > arm.units) {
      return absl::InvalidArgumentError(absl::StrCat(
          "arms[", i, "].conversions is ", arm.conversions, " with units ",
          arm.units, "; conversions count converted units, from 0 to units"));
    }
    // y is 0 or 1, so Σy² = Σy.
    sums.push_back({arm.units, static_cast<long double>(arm.conversions),
                    static_cast<long double>(arm.conversions), arm.sum_x,
                    arm.sum_x_sq, arm.sum_xy});
  }
  return Guarded(sums, control, treatment, "rate", options);
}

}  // namespace stats
}  // namespace abexp
