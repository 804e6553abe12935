// CUPED (Deng, Xu, Kohavi & Walker 2013): the comparison of compare.h with
// each unit's value y adjusted by a covariate x measured before exposure,
// which removes the part of y's spread that x predicts and narrows the
// interval by about the squared correlation of x and y.
//
// The estimate is the regression of y on the variant and the centred
// covariate (ANCOVA, ordinary least squares) computed from per-arm
// sufficient statistics: θ is pooled across every arm of the experiment,
// θ = Σ_g S_xy,g / Σ_g S_xx,g (within-arm centred sums), the adjusted mean
// of arm g is ȳ_g − θ·(x̄_g − x̄) with x̄ the mean of x over all arms, and
// the standard errors are OLS's (one residual variance for all arms, t with
// N − k − 1 degrees of freedom for k arms). docs/statistics.md ("CUPED")
// states every formula.
//
// The covariate must be measured before the unit's exposure and must not be
// affected by the variant; only then is the adjusted difference unbiased.
//
// Thread-safe: pure functions.
#ifndef ABEXP_STATS_CUPED_H_
#define ABEXP_STATS_CUPED_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "stats/compare.h"

namespace abexp {
namespace stats {

// One arm's sums over its units that carry the covariate: y the metric's
// per-unit value (0 for a unit without events), x the covariate.
struct CupedArm {
  int64_t units = 0;
  long double sum_y = 0;     // Σy
  long double sum_y_sq = 0;  // Σy²
  long double sum_x = 0;     // Σx
  long double sum_x_sq = 0;  // Σx²
  long double sum_xy = 0;    // Σx·y
};

// The same for a binomial metric: y is 1 for a converted unit, else 0, so
// Σy = Σy² = conversions and Σxy sums x over the converted units.
struct CupedBinomialArm {
  int64_t units = 0;
  int64_t conversions = 0;
  long double sum_x = 0;
  long double sum_x_sq = 0;
  long double sum_xy = 0;
};

struct CupedComparison {
  // The adjusted figures: control and treatment are the adjusted means (or
  // rates), absolute the adjusted difference with its OLS standard error,
  // t interval and p-value (df = N − k − 1), relative the adjusted
  // difference over the control's adjusted mean (delta method with the two
  // adjusted means' covariance, normal), sequential the always-valid
  // interval around the adjusted difference. control_variance and
  // treatment_variance are the variances of the adjusted means.
  Comparison adjusted;
  // The pooled regression coefficient of y on x; nullopt when x does not
  // vary within the arms.
  std::optional<double> theta;
  // 1 − Var(adjusted difference) ÷ Var(unadjusted difference), both from
  // OLS with one residual variance (without the covariate: y on the variant
  // alone). About the within-arm squared correlation of x and y; negative
  // when x predicts nothing and costs a degree of freedom.
  std::optional<double> variance_reduction;
};

// Compares arms[treatment] with arms[control], θ and the residual variance
// pooled over all `arms` (every variant of the experiment; arms without
// units are left out). INVALID_ARGUMENT for an index out of range, control
// == treatment, negative units, non-finite sums, or sums no data can give
// (Σy² < (Σy)²/n, Σx² < (Σx)²/n). Undefined figures are nullopt with a
// warning, as in compare.h: an arm without units, a covariate constant
// within arms, fewer units than the regression's k + 2 parameters and one.
absl::StatusOr<CupedComparison> CompareCupedMeans(
    const std::vector<CupedArm>& arms, size_t control, size_t treatment,
    const CompareOptions& options = {});

// As CompareCupedMeans, for a binomial metric (the linear probability
// model). INVALID_ARGUMENT also for conversions outside [0, units].
absl::StatusOr<CupedComparison> CompareCupedProportions(
    const std::vector<CupedBinomialArm>& arms, size_t control, size_t treatment,
    const CompareOptions& options = {});

}  // namespace stats
}  // namespace abexp

#endif  // ABEXP_STATS_CUPED_H_
