// Building blocks that compare.cc and cuped.cc share: input checks, the
// compensated centred sums and the test/interval of one lift. Not part of
// the stats API; see compare.h and cuped.h.
//
// Thread-safe: pure functions.
#ifndef ABEXP_STATS_COMPARE_INTERNAL_H_
#define ABEXP_STATS_COMPARE_INTERNAL_H_

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "stats/compare.h"

namespace abexp {
namespace stats {
namespace internal {

// INVALID_ARGUMENT for alpha outside (0, 1) or N* not positive and finite.
absl::Status ValidateOptions(const CompareOptions& options);
// INVALID_ARGUMENT, naming `arm`, for negative units.
absl::Status ValidateUnits(int64_t units, absl::string_view arm);
// INVALID_ARGUMENT, naming `what`, for NaN or ±inf.
absl::Status ValidateFinite(long double value, absl::string_view what);
// INVALID_ARGUMENT, naming `arm`.<field>, for a sum that is not finite, or
// not 0 in an arm of 0 units.
absl::Status ValidateSums(
    absl::string_view arm, int64_t units,
    std::initializer_list<std::pair<long double, const char*>> sums);
// `value` as a double, or INVALID_ARGUMENT when it does not fit in one.
absl::StatusOr<double> ToDouble(long double value, absl::string_view what);
// The warning for an arm without units.
std::string NoUnits(absl::string_view arm);

// Σ(a_i - ā)(b_i - b̄) = Σab - Σa·Σb/n, without cancellation error beyond
// that of the sums themselves.
long double CenteredCrossProduct(long double sum_a, long double sum_b,
                                 long double sum_ab, long double n);
// Σ(x_i - x̄)², or INVALID_ARGUMENT (naming `what`) when Σx² < (Σx)²/n by
// more than rounding.
absl::StatusOr<long double> CenteredSquares(long double sum, long double sum_sq,
                                            int64_t units,
                                            absl::string_view what);

// Fills the interval and p-value of `lift` (whose estimate is set) from its
// standard error: a t reference distribution with `df` degrees of freedom,
// or the normal one. A standard error of 0 or an unrepresentable interval
// leaves fields null and says why in `warnings`; `what` names the lift.
void FillTest(Lift& lift, double standard_error, std::optional<double> df,
              double alpha, absl::string_view what,
              std::vector<std::string>& warnings);

}  // namespace internal
}  // namespace stats
}  // namespace abexp

#endif  // ABEXP_STATS_COMPARE_INTERNAL_H_
