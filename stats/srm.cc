#include "stats/srm.h"

#include <cmath>
#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "stats/chi_square.h"

namespace abexp {
namespace stats {
namespace {

// Below this expected count per arm, Pearson's chi-square approximation to
// the multinomial is rough (the usual rule of thumb, e.g. Cochran 1954).
constexpr double kMinExpectedCount = 5;

std::string MismatchWarning(const std::vector<int64_t>& exposed,
                            const std::vector<double>& expected, double p_value,
                            double threshold) {
  return absl::StrCat(
      "SAMPLE RATIO MISMATCH: the variants got ", absl::StrJoin(exposed, ", "),
      " exposed units where the weights expect ", absl::StrJoin(expected, ", "),
      " (chi-square p = ", p_value, " < ", threshold,
      "); do not trust this experiment's results: find the cause (assignment, "
      "exposure logging, filtering, redirects) before reading any metric");
}

// The sum of the weights, or INVALID_ARGUMENT saying what is wrong with the
// inputs and how to fix it.
absl::StatusOr<double> CheckInputs(const std::vector<int64_t>& exposed,
                                   const std::vector<double>& weights,
                                   const SrmOptions& options) {
  if (!(options.threshold > 0 && options.threshold < 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "threshold is ", options.threshold,
        "; the mismatch threshold must be a p-value in (0, 1), e.g. 0.001"));
  }
  if (exposed.size() != weights.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "exposed has ", exposed.size(), " variants but weights has ",
        weights.size(), "; pass one weight per variant, in the same order"));
  }
  if (exposed.empty()) {
    return absl::InvalidArgumentError(
        "exposed and weights are empty; pass one count and one weight per "
        "variant");
  }
  double weight_sum = 0;
  for (size_t i = 0; i < exposed.size(); ++i) {
    if (exposed[i] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("exposed[", i, "] is ", exposed[i],
                       "; unit counts must be non-negative"));
    }
    if (!std::isfinite(weights[i]) || weights[i] < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "weights[", i, "] is ", weights[i],
          "; weights must be finite and non-negative (0 for a variant that "
          "gets no traffic)"));
    }
    weight_sum += weights[i];
  }
  if (weight_sum <= 0) {
    return absl::InvalidArgumentError(
        "all weights are 0; at least one variant must get traffic");
  }
  return weight_sum;
}

// The arms the test compares: those with a positive weight. An arm with
// weight 0 cannot receive units, so any unit there is a mismatch by itself
// (a warning in *result).
struct TestedArms {
  std::vector<double> observed;
  std::vector<double> weights;
  std::vector<int64_t> exposed;
  // All exposed units, tested or not. A double: six counts near INT64_MAX
  // would overflow an int64_t, and the test works in doubles anyway (exact
  // below 2^53 units).
  double total = 0;
};

TestedArms SplitArms(const std::vector<int64_t>& exposed,
                     const std::vector<double>& weights, SrmResult* result) {
  TestedArms arms;
  for (size_t i = 0; i < exposed.size(); ++i) {
    arms.total += static_cast<double>(exposed[i]);
    if (weights[i] > 0) {
      arms.observed.push_back(static_cast<double>(exposed[i]));
      arms.weights.push_back(weights[i]);
      arms.exposed.push_back(exposed[i]);
    } else if (exposed[i] > 0) {
      result->warnings.push_back(absl::StrCat(
          "variant ", i, " has ", exposed[i],
          " exposed units but its weight is 0, so it should have none"));
    }
  }
  return arms;
}

// Units reached a variant whose weight is 0: X^2 is infinite (an expected
// count of 0 with an observed count above 0) and the configuration cannot
// produce the data, so p = 0.
void ReportImpossibleArms(const std::vector<int64_t>& exposed,
                          const std::vector<double>& weights, double weight_sum,
                          double total, const SrmOptions& options,
                          SrmResult* result) {
  result->p_value = 0.0;
  result->mismatch = true;
  std::vector<double> expected;
  for (double w : weights) {
    expected.push_back(total * w / weight_sum);
  }
  result->warnings.push_back(
      "chi2 is null: it is infinite, because units reached a "
      "variant whose weight is 0");
  result->warnings.push_back(
      MismatchWarning(exposed, expected, 0.0, options.threshold));
}

// The expected count of each tested arm, warning about those too small for
// the chi-square approximation.
std::vector<double> ExpectedCounts(const std::vector<double>& weights,
                                   const TestedArms& arms, SrmResult* result) {
  double tested_weight_sum = 0;
  for (double w : arms.weights) tested_weight_sum += w;
  std::vector<double> expected;
  for (size_t i = 0, arm = 0; i < weights.size(); ++i) {
    if (weights[i] <= 0) continue;
    const double e = arms.total * arms.weights[arm++] / tested_weight_sum;
    expected.push_back(e);
    if (e < kMinExpectedCount) {
      result->warnings.push_back(absl::StrCat(
          "variant ", i, " expects only ", e, " units; below ",
          kMinExpectedCount,
          " expected units the chi-square p-value is only approximate"));
    }
  }
  return expected;
}

}  // namespace

absl::StatusOr<SrmResult> CheckSampleRatio(const std::vector<int64_t>& exposed,
                                           const std::vector<double>& weights,
                                           const SrmOptions& options) {
  absl::StatusOr<double> weight_sum = CheckInputs(exposed, weights, options);
  if (!weight_sum.ok()) return weight_sum.status();

  SrmResult result;
  const TestedArms arms = SplitArms(exposed, weights, &result);
  result.degrees_of_freedom =
      arms.observed.empty() ? 0 : static_cast<int>(arms.observed.size()) - 1;
  if (!result.warnings.empty()) {
    ReportImpossibleArms(exposed, weights, *weight_sum, arms.total, options,
                         &result);
    return result;
  }
  if (arms.observed.size() < 2) {
    result.warnings.push_back(
        "the sample-ratio check is undefined: it needs at least 2 variants "
        "with a positive weight, and there is 1");
    return result;
  }
  if (arms.total == 0) {
    result.warnings.push_back(
        "the sample-ratio check is undefined: no units have been exposed yet");
    return result;
  }

  absl::StatusOr<ChiSquareResult> fit =
      ChiSquareGoodnessOfFit(arms.observed, arms.weights);
  if (!fit.ok()) return fit.status();  // inputs were validated above
  if (std::isinf(fit->statistic)) {
    // A weight so small that its arm's expected count is a denormal: any
    // unit there is too many for a double to say by how much.
    result.warnings.push_back(
        "chi2 is null: it is infinite, because units reached a variant whose "
        "weight is too small for its expected count to be told from 0");
  } else {
    result.chi2 = fit->statistic;
  }
  result.p_value = fit->p_value;
  result.mismatch = fit->p_value < options.threshold;

  const std::vector<double> expected = ExpectedCounts(weights, arms, &result);
  if (result.mismatch) {
    result.warnings.push_back(MismatchWarning(arms.exposed, expected,
                                              fit->p_value, options.threshold));
  }
  return result;
}

}  // namespace stats
}  // namespace abexp
