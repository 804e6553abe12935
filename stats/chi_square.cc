#include "stats/chi_square.h"

#include <boost/math/distributions/chi_squared.hpp>
#include <cmath>
#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace abexp {
namespace stats {
namespace {

// Upper tail P(X >= statistic) for X ~ chi-square(df). The complement form
// keeps precision for tiny p-values, where 1 - cdf would round to 0.
double UpperTail(double statistic, int df) {
  if (statistic <= 0) return 1.0;
  if (!std::isfinite(statistic)) return 0.0;  // Boost refuses infinity
  const boost::math::chi_squared_distribution<double> dist(df);
  return boost::math::cdf(boost::math::complement(dist, statistic));
}

absl::Status CheckCount(double count, absl::string_view what) {
  if (!std::isfinite(count) || count < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " is ", count, "; counts must be finite and non-negative"));
  }
  return absl::OkStatus();
}

// One cell's (observed - expected)^2 / expected. An expected count that
// underflowed to 0 contributes nothing when nothing was observed there and
// makes the statistic infinite otherwise, rather than 0/0 = NaN.
double CellTerm(double observed, double expected) {
  if (expected <= 0) return observed == 0 ? 0.0 : HUGE_VAL;
  const double d = observed - expected;
  return d * d / expected;
}

}  // namespace

absl::StatusOr<ChiSquareResult> ChiSquareGoodnessOfFit(
    const std::vector<double>& observed, const std::vector<double>& expected) {
  if (observed.size() != expected.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "observed has ", observed.size(), " categories but expected has ",
        expected.size(), "; pass one expected proportion per observed count"));
  }
  if (observed.size() < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("a goodness-of-fit test needs at least 2 categories, got ",
                     observed.size()));
  }
  double total = 0;
  double expected_sum = 0;
  for (size_t i = 0; i < observed.size(); ++i) {
    if (absl::Status s =
            CheckCount(observed[i], absl::StrCat("observed[", i, "]"));
        !s.ok()) {
      return s;
    }
    if (!std::isfinite(expected[i]) || expected[i] <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "expected[", i, "] is ", expected[i],
          "; expected proportions must be positive and finite (drop "
          "categories that cannot occur)"));
    }
    total += observed[i];
    expected_sum += expected[i];
  }
  if (total <= 0) {
    return absl::InvalidArgumentError(
        "the observed counts sum to zero; there is nothing to test yet");
  }
  if (!std::isfinite(total) || !std::isfinite(expected_sum)) {
    return absl::InvalidArgumentError(
        "the observed counts or expected proportions sum to more than a double "
        "holds; scale them down");
  }

  ChiSquareResult result;
  for (size_t i = 0; i < observed.size(); ++i) {
    // The share first: total * expected[i] alone can overflow.
    result.statistic +=
        CellTerm(observed[i], total * (expected[i] / expected_sum));
  }
  result.degrees_of_freedom = static_cast<int>(observed.size()) - 1;
  result.p_value = UpperTail(result.statistic, result.degrees_of_freedom);
  return result;
}

absl::StatusOr<ChiSquareResult> ChiSquareIndependence(
    const std::vector<std::vector<double>>& table) {
  const size_t rows = table.size();
  if (rows < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("a contingency table needs at least 2 rows, got ", rows));
  }
  const size_t cols = table[0].size();
  if (cols < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a contingency table needs at least 2 columns, got ", cols));
  }
  std::vector<double> row_sums(rows, 0.0);
  std::vector<double> col_sums(cols, 0.0);
  double total = 0;
  for (size_t r = 0; r < rows; ++r) {
    if (table[r].size() != cols) {
      return absl::InvalidArgumentError(absl::StrCat(
          "row ", r, " has ", table[r].size(), " columns but row 0 has ", cols,
          "; every row needs one count per column"));
    }
    for (size_t c = 0; c < cols; ++c) {
      if (absl::Status s =
              CheckCount(table[r][c], absl::StrCat("table[", r, "][", c, "]"));
          !s.ok()) {
        return s;
      }
      row_sums[r] += table[r][c];
      col_sums[c] += table[r][c];
      total += table[r][c];
    }
  }
  if (!std::isfinite(total)) {
    return absl::InvalidArgumentError(
        "the table's counts sum to more than a double holds; scale them down");
  }
  for (size_t r = 0; r < rows; ++r) {
    if (row_sums[r] <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "row ", r, " sums to zero; remove empty rows before testing"));
    }
  }
  for (size_t c = 0; c < cols; ++c) {
    if (col_sums[c] <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "column ", c, " sums to zero; remove empty columns before testing"));
    }
  }

  ChiSquareResult result;
  for (size_t r = 0; r < rows; ++r) {
    for (size_t c = 0; c < cols; ++c) {
      // The column's share first: row_sums[r] * col_sums[c] can overflow.
      result.statistic +=
          CellTerm(table[r][c], row_sums[r] * (col_sums[c] / total));
    }
  }
  result.degrees_of_freedom = static_cast<int>((rows - 1) * (cols - 1));
  result.p_value = UpperTail(result.statistic, result.degrees_of_freedom);
  return result;
}

}  // namespace stats
}  // namespace abexp
