// Multiple-comparison adjustment of p-values: when an experiment compares
// several variants on several metrics, some comparison looks significant by
// chance; adjusted p-values keep that in check across the whole family.
//
// Holm (the default) controls the family-wise error rate: the chance of even
// one false positive stays at most alpha. Benjamini-Hochberg controls the
// false discovery rate: the expected share of false positives among the
// significant results stays at most alpha (for independent or positively
// dependent tests). Conventions are in docs/statistics.md, "Multiple
// comparisons".
//
// Thread-safe: pure functions.
#ifndef ABEXP_STATS_ADJUST_H_
#define ABEXP_STATS_ADJUST_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace abexp {
namespace stats {

enum class AdjustMethod {
  kHolm,               // Holm (1979) step-down
  kBenjaminiHochberg,  // Benjamini & Hochberg (1995) step-up
};

// "holm" or "bh" (the CLI's --method names). INVALID_ARGUMENT otherwise.
absl::StatusOr<AdjustMethod> ParseAdjustMethod(absl::string_view name);

// The CLI name of `method`: "holm" or "bh".
absl::string_view AdjustMethodName(AdjustMethod method);

struct AdjustResult {
  // One adjusted p-value per input, in input order; each is >= its raw
  // p-value and <= 1, and the order of the raw p-values is preserved. Null
  // where the raw p-value was null.
  std::vector<std::optional<double>> adjusted;
  std::vector<std::string> warnings;  // e.g. why some entries are null
};

// Adjusts a family of p-values. A null p-value (a comparison whose test is
// undefined) is not part of the family: the family size m is the number of
// non-null p-values, and its adjusted value is null, as with R's p.adjust.
// An empty family gives an empty result.
//
// Returns INVALID_ARGUMENT when a p-value is not in [0, 1].
absl::StatusOr<AdjustResult> AdjustPValues(
    const std::vector<std::optional<double>>& p_values,
    AdjustMethod method = AdjustMethod::kHolm);

}  // namespace stats
}  // namespace abexp

#endif  // ABEXP_STATS_ADJUST_H_
