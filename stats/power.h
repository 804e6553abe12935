// Power analysis for a binomial (conversion) metric: how many units each
// variant needs to detect a given relative lift, and, for a running
// experiment, how many more days that takes at the observed traffic.
//
// The sample size is Fleiss' formula without continuity correction, the one
// R's power.prop.test solves (two-sided test, equal arms):
//   n = [z_{1-alpha/2} sqrt(2 pbar (1 - pbar))
//        + z_{1-beta} sqrt(p1 (1 - p1) + p2 (1 - p2))]^2 / (p2 - p1)^2
// with p2 = p1 (1 + mde) and pbar = (p1 + p2) / 2, rounded up. Conventions are
// in docs/statistics.md, "Power and sample size".
//
// Thread-safe: pure functions.
#ifndef ABEXP_STATS_POWER_H_
#define ABEXP_STATS_POWER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace abexp {
namespace stats {

struct PowerOptions {
  // Two-sided significance level, in (0, 1) and not below the smallest
  // normal double, 2.2e-308 (alpha / 2 must not round to 0). Default: 0.05.
  double alpha = 0.05;
  // Chance of detecting a true lift of exactly the MDE, in [0.5, 1).
  // Default: 0.8.
  double power = 0.8;
};

struct SampleSizeResult {
  int64_t per_variant = 0;       // units in each variant, rounded up
  double per_variant_exact = 0;  // the formula's value before rounding
  double baseline = 0;           // p1
  double treatment = 0;          // p2 = p1 (1 + mde)
};

// Units needed in EACH variant to detect a relative change `relative_mde`
// (0.10 = +10%, -0.05 = -5%) of a conversion rate `baseline`.
//
// Returns INVALID_ARGUMENT when baseline is not in (0, 1), relative_mde is 0
// or not finite, p2 = baseline (1 + relative_mde) is not in (0, 1), alpha
// is not in (0, 1) or below 2.2e-308, power is not in [0.5, 1), or the answer
// exceeds 2^53 units (the MDE is too small to ever detect).
absl::StatusOr<SampleSizeResult> BinomialSampleSize(
    double baseline, double relative_mde, const PowerOptions& options = {});

// Units needed in EACH variant to detect a relative change `relative_mde` of
// a per-unit mean (revenue per user) or ratio (clicks per session) whose
// control value is `baseline` and whose per-unit standard deviation is
// `unit_sd` (for a ratio, the SD of the linearized unit, i.e. the standard
// error of the ratio times sqrt(units)). The two-sample normal formula with
// equal arms and equal variances:
//   n = 2 (z_{1-alpha/2} + z_{1-beta})^2 unit_sd^2 / (baseline mde)^2
// rounded up. `baseline` and `treatment` of the result are the means.
//
// Returns INVALID_ARGUMENT when baseline is 0 or not finite (a relative
// change of 0 is no change), unit_sd is not finite and positive,
// relative_mde is 0 or not finite, the treatment mean baseline (1 + mde)
// overflows a double, alpha is not in (0, 1) or below 2.2e-308, power is not in
// [0.5, 1), or the answer exceeds 2^53 units. The answer is at least 1 unit.
absl::StatusOr<SampleSizeResult> MeanSampleSize(
    double baseline, double unit_sd, double relative_mde,
    const PowerOptions& options = {});

// A running experiment, for DaysToPower.
struct TrafficSnapshot {
  // The control's value so far: a conversion rate (conversions / units), or,
  // when unit_sd is set, a mean or ratio.
  double baseline = 0;
  // Exposed units so far, per variant (control included).
  std::vector<int64_t> exposed;
  // Recent exposed units per day, per variant, in the order of `exposed`
  // (e.g. the mean of the last full days).
  std::vector<double> units_per_day;
  // Set for a continuous metric (sum or ratio): the control's per-unit
  // standard deviation, and the sample size is MeanSampleSize's. Unset: a
  // binomial metric, BinomialSampleSize's.
  std::optional<double> unit_sd;
};

struct DaysToPowerResult {
  // BinomialSampleSize (or MeanSampleSize) at the observed baseline. Null
  // when it is undefined (a baseline of 0 or 1, p2 outside (0, 1), a mean of
  // 0 or a unit SD of 0); see warnings.
  std::optional<int64_t> per_variant;
  // Whole days until every variant reaches per_variant at its current
  // traffic: 0 when all have, null when some variant short of it has no
  // traffic or per_variant is null.
  std::optional<int64_t> more_days;
  std::vector<std::string> warnings;
};

// How many more days `traffic` needs to give every variant BinomialSampleSize
// units for `relative_mde` at the observed baseline. Requiring the
// equal-arms size in every arm is conservative for unequal splits: the
// larger arms only add power.
//
// What the data can make undefined (a baseline of 0 or 1 early on, a
// continuous metric without variation yet, no traffic) comes out as null
// with a warning. Returns INVALID_ARGUMENT for bad arguments: relative_mde,
// alpha or power as in BinomialSampleSize, a binomial baseline that is not
// in [0, 1] (any finite value for a continuous one), a negative or
// non-finite unit_sd, sizes that differ or are zero, a negative count or a
// negative or non-finite traffic figure.
absl::StatusOr<DaysToPowerResult> DaysToPower(const TrafficSnapshot& traffic,
                                              double relative_mde,
                                              const PowerOptions& options = {});

}  // namespace stats
}  // namespace abexp

#endif  // ABEXP_STATS_POWER_H_
