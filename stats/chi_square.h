// Pearson chi-square tests: goodness of fit of observed counts to expected
// proportions, and independence of the two factors of a contingency table.
// P-values are upper tails of the chi-square distribution (Boost.Math).
//
// Used for sample-ratio checks (did each variant get its share of units?) and
// for the bucketing statistics tests.
//
// Thread-safe: pure functions.
#ifndef ABEXP_STATS_CHI_SQUARE_H_
#define ABEXP_STATS_CHI_SQUARE_H_

#include <vector>

#include "absl/status/statusor.h"

namespace abexp {
namespace stats {

struct ChiSquareResult {
  double statistic = 0;        // Pearson's X^2 = sum (O - E)^2 / E
  int degrees_of_freedom = 0;  // k - 1, or (r - 1)(c - 1)
  double p_value = 1;          // P(X^2 >= statistic) under the null
};

// Goodness of fit: are `observed` counts consistent with categories drawn
// with the given `expected` proportions? The proportions are normalized by
// their sum, so weights such as {20, 30, 50} can be passed as they are.
//
// Returns INVALID_ARGUMENT when there are fewer than 2 categories, the sizes
// differ, a count is negative or not finite, the total count is zero or
// overflows a double (as does the sum of the proportions), or an
// expected proportion is not positive and finite (drop categories that
// cannot occur before calling).
absl::StatusOr<ChiSquareResult> ChiSquareGoodnessOfFit(
    const std::vector<double>& observed, const std::vector<double>& expected);

// Independence in an r x c contingency table of counts (table[row][col]):
// are the row and column factors independent? No continuity correction is
// applied, including for 2 x 2 tables.
//
// Returns INVALID_ARGUMENT when the table has fewer than 2 rows or columns,
// rows of different lengths, a negative or non-finite count, or a row or
// column whose total is zero (its expected counts would be zero; remove it),
// or counts whose sum overflows a double.
absl::StatusOr<ChiSquareResult> ChiSquareIndependence(
    const std::vector<std::vector<double>>& table);

}  // namespace stats
}  // namespace abexp

#endif  // ABEXP_STATS_CHI_SQUARE_H_
