#include "stats/adjust.h"

#include <algorithm>
#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace abexp {
namespace stats {

absl::StatusOr<AdjustMethod> ParseAdjustMethod(absl::string_view name) {
  if (name == "holm") return AdjustMethod::kHolm;
  if (name == "bh") return AdjustMethod::kBenjaminiHochberg;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown adjustment method '", name,
      "'; use 'holm' (family-wise error rate) or 'bh' (false discovery rate, "
      "Benjamini-Hochberg)"));
}

absl::string_view AdjustMethodName(AdjustMethod method) {
  switch (method) {
    case AdjustMethod::kHolm:
      return "holm";
    case AdjustMethod::kBenjaminiHochberg:
      return "bh";
  }
  return "holm";
}

absl::StatusOr<AdjustResult> AdjustPValues(
    const std::vector<std::optional<double>>& p_values, AdjustMethod method) {
  // Positions of the non-null p-values: the family being adjusted.
  std::vector<size_t> family;
  for (size_t i = 0; i < p_values.size(); ++i) {
    if (!p_values[i].has_value()) continue;
    const double p = *p_values[i];
    // The negated test also rejects NaN.
    if (!(p >= 0 && p <= 1)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "p_values[", i, "] is ", p, "; p-values must be in [0, 1]"));
    }
    family.push_back(i);
  }

  AdjustResult result;
  result.adjusted.resize(p_values.size());
  if (family.size() < p_values.size()) {
    result.warnings.push_back(absl::StrCat(
        p_values.size() - family.size(), " of ", p_values.size(),
        " p-values are null (their tests are undefined); they are left out of "
        "the family and their adjusted p-values are null"));
  }
  const size_t m = family.size();
  if (m == 0) return result;

  // Ascending raw p-value; ties get the same adjusted value either way, so
  // the order among them does not matter.
  std::stable_sort(family.begin(), family.end(), [&](size_t a, size_t b) {
    return *p_values[a] < *p_values[b];
  });
  const double dm = static_cast<double>(m);
  switch (method) {
    case AdjustMethod::kHolm: {
      // Step-down: the k-th smallest (k = 1..m) is multiplied by m - k + 1,
      // then a running maximum keeps the adjusted values in the raw order.
      double running_max = 0;
      for (size_t k = 0; k < m; ++k) {
        const double scaled =
            (dm - static_cast<double>(k)) * *p_values[family[k]];
        running_max = std::max(running_max, std::min(1.0, scaled));
        result.adjusted[family[k]] = running_max;
      }
      break;
    }
    case AdjustMethod::kBenjaminiHochberg: {
      // Step-up: the k-th smallest is multiplied by m / k, then a running
      // minimum from the largest down keeps the raw order.
      double running_min = 1;
      for (size_t k = m; k-- > 0;) {
        const double scaled =
            dm / static_cast<double>(k + 1) * *p_values[family[k]];
        running_min = std::min(running_min, scaled);
        result.adjusted[family[k]] = running_min;
      }
      break;
    }
  }
  return result;
}

}  // namespace stats
}  // namespace abexp
