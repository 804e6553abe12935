#include "stats/power.h"

#include <algorithm>
#include <boost/math/distributions/normal.hpp>
#include <cmath>
#include <cstddef>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace abexp {
namespace stats {
namespace {

// Largest count a double holds exactly; sizes and day counts above it are
// not meaningful answers.
constexpr double kMaxExactCount = 9007199254740992.0;  // 2^53

absl::Status CheckDesign(double relative_mde, const PowerOptions& options) {
  if (!std::isfinite(relative_mde) || relative_mde == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "relative_mde is ", relative_mde,
        "; pass the relative lift to detect as a non-zero fraction, e.g. 0.10 "
        "for +10%"));
  }
  // Below the smallest normal double, alpha / 2 rounds to 0 and has no
  // quantile.
  if (!(options.alpha >= std::numeric_limits<double>::min() &&
        options.alpha < 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "alpha is ", options.alpha,
        "; the significance level must be in (0, 1), e.g. 0.05, and not below ",
        std::numeric_limits<double>::min(), " (the smallest normal double)"));
  }
  if (!(options.power >= 0.5 && options.power < 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "power is ", options.power,
        "; power must be in [0.5, 1), e.g. 0.8 (below 0.5 the test would miss "
        "the effect more often than find it)"));
  }
  return absl::OkStatus();
}

struct Quantiles {
  double alpha;  // z_{1-alpha/2}
  double beta;   // z_{power}
};

Quantiles QuantilesOf(const PowerOptions& options) {
  const boost::math::normal_distribution<double> standard_normal;
  // Upper quantile as a complement, so a tiny alpha stays accurate.
  return {boost::math::quantile(
              boost::math::complement(standard_normal, options.alpha / 2)),
          boost::math::quantile(standard_normal, options.power)};
}

// The result for an unrounded size `n`, or INVALID_ARGUMENT when n is
// beyond any experiment.
absl::StatusOr<SampleSizeResult> Rounded(double n, double baseline,
                                         double relative_mde) {
  if (!(n <= kMaxExactCount)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "detecting a relative MDE of ", relative_mde, " on baseline ", baseline,
        " needs ", n,
        " units per variant, beyond any experiment; pick a larger MDE"));
  }
  SampleSizeResult result;
  result.per_variant_exact = n;
  // At least one unit: a tiny n can underflow to 0.
  result.per_variant = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(n)));
  result.baseline = baseline;
  result.treatment = baseline * (1 + relative_mde);
  return result;
}

// BinomialSampleSize once alpha, power and the MDE are known to be valid:
// what can still fail depends only on the baseline.
absl::StatusOr<SampleSizeResult> SampleSizeForBaseline(
    double baseline, double relative_mde, const PowerOptions& options) {
  if (!(baseline > 0 && baseline < 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "baseline is ", baseline,
        "; the baseline conversion rate must be in (0, 1), e.g. 0.02 for 2%"));
  }
  const double p1 = baseline;
  const double p2 = p1 * (1 + relative_mde);
  if (!(p2 > 0 && p2 < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("a relative MDE of ", relative_mde, " on baseline ", p1,
                     " gives a treatment rate of ", p2,
                     ", outside (0, 1); pick an MDE between -1 and ",
                     1 / p1 - 1, " (exclusive)"));
  }
  const Quantiles z = QuantilesOf(options);
  const double p_bar = (p1 + p2) / 2;
  // p2 - p1 written as p1 * mde: exact where the subtraction would cancel.
  const double delta = p1 * relative_mde;
  const double root = z.alpha * std::sqrt(2 * p_bar * (1 - p_bar)) +
                      z.beta * std::sqrt(p1 * (1 - p1) + p2 * (1 - p2));
  return Rounded(root * root / (delta * delta), p1, relative_mde);
}

// MeanSampleSize once alpha, power and the MDE are known to be valid.
absl::StatusOr<SampleSizeResult> SampleSizeForMean(
    double baseline, double unit_sd, double relative_mde,
    const PowerOptions& options) {
  if (!std::isfinite(baseline) || baseline == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("baseline is ", baseline,
                     "; a relative MDE needs a finite, non-zero control mean"));
  }
  if (!std::isfinite(unit_sd) || unit_sd <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("unit_sd is ", unit_sd,
                     "; pass the per-unit standard deviation, above 0"));
  }
  const Quantiles z = QuantilesOf(options);
  const double delta = baseline * relative_mde;
  if (!std::isfinite(delta) || !std::isfinite(baseline + delta)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "baseline ", baseline, " times relative_mde ", relative_mde,
        " overflows a double; pass the baseline in larger units (e.g. "
        "thousands) so that the treatment mean is finite"));
  }
  // (z_a + z_b) sd / delta first, so that sd² and delta² cannot overflow
  // or underflow on their own.
  const double root = (z.alpha + z.beta) * (unit_sd / std::fabs(delta));
  return Rounded(2 * root * root, baseline, relative_mde);
}

}  // namespace

absl::StatusOr<SampleSizeResult> BinomialSampleSize(
    double baseline, double relative_mde, const PowerOptions& options) {
  if (absl::Status s = CheckDesign(relative_mde, options); !s.ok()) return s;
  return SampleSizeForBaseline(baseline, relative_mde, options);
}

absl::StatusOr<SampleSizeResult> MeanSampleSize(double baseline, double unit_sd,
                                                double relative_mde,
                                                const PowerOptions& options) {
  if (absl::Status s = CheckDesign(relative_mde, options); !s.ok()) return s;
  return SampleSizeForMean(baseline, unit_sd, relative_mde, options);
}

namespace {

// OK, or INVALID_ARGUMENT saying which observed figure is wrong and why.
absl::Status CheckTraffic(const TrafficSnapshot& traffic) {
  if (traffic.unit_sd.has_value()) {
    if (!std::isfinite(traffic.baseline)) {
      return absl::InvalidArgumentError(
          absl::StrCat("baseline is ", traffic.baseline,
                       "; the observed control mean must be finite"));
    }
    if (!std::isfinite(*traffic.unit_sd) || *traffic.unit_sd < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unit_sd is ", *traffic.unit_sd,
          "; the per-unit standard deviation must be finite and at least 0"));
    }
  } else if (!(traffic.baseline >= 0 && traffic.baseline <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("baseline is ", traffic.baseline,
                     "; the observed conversion rate must be in [0, 1]"));
  }
  if (traffic.exposed.size() != traffic.units_per_day.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("exposed has ", traffic.exposed.size(),
                     " variants but units_per_day "
                     "has ",
                     traffic.units_per_day.size(),
                     "; pass one daily traffic figure per variant"));
  }
  if (traffic.exposed.empty()) {
    return absl::InvalidArgumentError(
        "exposed and units_per_day are empty; pass one entry per variant");
  }
  for (size_t i = 0; i < traffic.exposed.size(); ++i) {
    if (traffic.exposed[i] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("exposed[", i, "] is ", traffic.exposed[i],
                       "; unit counts must be non-negative"));
    }
    const double rate = traffic.units_per_day[i];
    if (!std::isfinite(rate) || rate < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("units_per_day[", i, "] is ", rate,
                       "; daily traffic must be finite and non-negative"));
    }
  }
  return absl::OkStatus();
}

// Why the sample size is undefined for valid inputs: the observed data
// make it so (e.g. no conversions yet). `error` is the sample size's error.
std::string UndefinedSizeWarning(const TrafficSnapshot& traffic,
                                 const absl::Status& error) {
  const bool continuous = traffic.unit_sd.has_value();
  if (continuous && traffic.baseline == 0) {
    return "the sample size is undefined: the control mean is 0 so far, so a "
           "relative MDE is no change at all";
  }
  if (continuous && *traffic.unit_sd == 0) {
    return "the sample size is undefined: every control unit has the same "
           "value so far (standard deviation 0)";
  }
  if (!continuous && traffic.baseline == 0) {
    return "the sample size is undefined: the control has no conversions yet "
           "(observed baseline 0), so a relative MDE is no change at all";
  }
  if (!continuous && traffic.baseline == 1) {
    return "the sample size is undefined: every control unit converted "
           "(observed baseline 1), so the rate has no room to change";
  }
  return absl::StrCat("the sample size is undefined: ", error.message());
}

// The days until every variant has `needed` units at its current daily
// traffic, into result->more_days, or a warning saying why there is no such
// figure.
void FillMoreDays(const TrafficSnapshot& traffic, int64_t needed,
                  DaysToPowerResult* result) {
  double most_days = 0;
  bool stalled = false;
  for (size_t i = 0; i < traffic.exposed.size(); ++i) {
    if (traffic.exposed[i] >= needed) continue;
    const double missing = static_cast<double>(needed - traffic.exposed[i]);
    const double rate = traffic.units_per_day[i];
    if (rate <= 0) {
      stalled = true;
      result->warnings.push_back(absl::StrCat(
          "variant ", i, " has ", traffic.exposed[i], " of the ", needed,
          " units it needs and no new units per day; at this traffic it never "
          "reaches the sample size"));
      continue;
    }
    most_days = std::max(most_days, std::ceil(missing / rate));
  }
  if (stalled) return;
  if (most_days > kMaxExactCount) {
    result->warnings.push_back(
        absl::StrCat("more_days is null: reaching ", needed,
                     " units per variant at the current traffic takes ",
                     most_days, " days, beyond any experiment"));
    return;
  }
  result->more_days = static_cast<int64_t>(most_days);
}

}  // namespace

absl::StatusOr<DaysToPowerResult> DaysToPower(const TrafficSnapshot& traffic,
                                              double relative_mde,
                                              const PowerOptions& options) {
  if (absl::Status s = CheckDesign(relative_mde, options); !s.ok()) return s;
  if (absl::Status s = CheckTraffic(traffic); !s.ok()) return s;

  DaysToPowerResult result;
  absl::StatusOr<SampleSizeResult> size =
      traffic.unit_sd.has_value()
          ? SampleSizeForMean(traffic.baseline, *traffic.unit_sd, relative_mde,
                              options)
          : SampleSizeForBaseline(traffic.baseline, relative_mde, options);
  if (!size.ok()) {
    // The design is valid (checked above), so the observed data are what
    // make the size undefined.
    result.warnings.push_back(UndefinedSizeWarning(traffic, size.status()));
    return result;
  }
  result.per_variant = size->per_variant;
  FillMoreDays(traffic, size->per_variant, &result);
  return result;
}

}  // namespace stats
}  // namespace abexp
