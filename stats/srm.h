// Sample-ratio mismatch (SRM) check: did each variant receive the share of
// exposed units its configured weight promises? A mismatch means units were
// lost or added unevenly (a bug in assignment, exposure logging, redirects or
// filtering), and then every comparison between the arms is suspect.
//
// The test is Pearson's chi-square goodness of fit (stats/chi_square.h) with
// df = (arms with a positive weight) - 1. Conventions are in
// docs/statistics.md, "Sample-ratio mismatch".
//
// Thread-safe: pure functions.
#ifndef ABEXP_STATS_SRM_H_
#define ABEXP_STATS_SRM_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace abexp {
namespace stats {

struct SrmOptions {
  // A mismatch is flagged when p_value < threshold. A strict threshold,
  // because the check runs on every look at every experiment and a false
  // alarm discards an experiment. Must be in (0, 1). Default: 0.001.
  double threshold = 0.001;
};

struct SrmResult {
  // Pearson's X^2. Null when the test is undefined (no units yet, fewer
  // than 2 arms with a positive weight) or infinite (units in an arm whose
  // weight is 0, or so small that its expected count is a denormal).
  std::optional<double> chi2;
  // P(X^2 >= chi2) under the configured weights. 0 when units reached an arm
  // whose weight is 0 (impossible under the configuration); null when the
  // test is undefined.
  std::optional<double> p_value;
  int degrees_of_freedom = 0;  // arms with a positive weight - 1
  // p_value < threshold. False when the test is undefined.
  bool mismatch = false;
  // Why a figure is null, small-count caveats, and, on a mismatch, a loud
  // "do not trust" message meant to be shown to the analyst as it is.
  std::vector<std::string> warnings;
};

// Checks `exposed` units per variant against the configured `weights` (any
// non-negative scale: {50, 50}, {0.95, 0.05} and {1, 1} all work; they are
// normalized by their sum).
//
// An arm with weight 0 and no units is left out of the test. An arm with
// weight 0 that has units is a mismatch with p = 0.
//
// Returns INVALID_ARGUMENT when the sizes differ or are zero, a count is
// negative, a weight is negative or not finite, all weights are 0, or the
// threshold is not in (0, 1).
absl::StatusOr<SrmResult> CheckSampleRatio(const std::vector<int64_t>& exposed,
                                           const std::vector<double>& weights,
                                           const SrmOptions& options = {});

}  // namespace stats
}  // namespace abexp

#endif  // ABEXP_STATS_SRM_H_
