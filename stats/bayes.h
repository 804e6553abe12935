// Bayesian summaries of a treatment arm against control: the posterior
// chance that the treatment is better, and the expected loss of each
// decision (what shipping the treatment costs if it is in fact worse, and
// what keeping control forgoes if the treatment is in fact better). "Better"
// follows the metric's direction: higher, or lower for a metric such as a
// refund or bounce rate (Direction::kLowerIsBetter).
//
// Two models:
//  - proportions: each arm's rate has a Beta(1,1) (uniform) prior, so the
//    posterior after x conversions of n units is Beta(1 + x, 1 + n - x).
//    The chance and the losses are integrals over the two posteriors,
//    computed by adaptive Gauss-Kronrod quadrature (no Monte Carlo), to
//    about 1e-12 relative accuracy up to 10^10 units per arm.
//  - means and ratios: a Gaussian approximation. The difference of the two
//    arms' estimates is normal with the summed variances, i.e. the
//    frequentist estimate and standard error of the difference.
// docs/statistics.md ("Bayesian chance to beat control and expected loss")
// gives every formula and convention.
//
// A figure the data cannot define is std::nullopt, never NaN, and
// BayesResult::warnings says why. Bad input is INVALID_ARGUMENT.
//
// Thread-safe: pure functions.
#ifndef ABEXP_STATS_BAYES_H_
#define ABEXP_STATS_BAYES_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "stats/compare.h"

namespace abexp {
namespace stats {

// Which way of a metric is good. It decides what "beat control" and "loss"
// mean; the model and the posterior do not depend on it.
enum class Direction {
  kHigherIsBetter,  // conversion, revenue
  kLowerIsBetter,   // refund rate, bounce rate, load time
};

// The CLI prints these under "bayes" with the same names. The formulas are
// for kHigherIsBetter; for kLowerIsBetter read treatment - control as
// control - treatment throughout.
struct BayesResult {
  // P(treatment better than control) under the posterior, in [0, 1]:
  // P(treatment > control), or P(treatment < control) when lower is better.
  std::optional<double> chance_to_beat_control;
  // E[max(control - treatment, 0)]: the expected loss of shipping the
  // treatment, in the metric's units (a rate for proportions), counted in
  // the metric's bad direction. Never negative.
  std::optional<double> expected_loss_ship;
  // E[max(treatment - control, 0)]: the expected loss of keeping control.
  // expected_loss_keep - expected_loss_ship is the posterior mean of
  // treatment - control (of control - treatment when lower is better).
  std::optional<double> expected_loss_keep;
  // Why each nullopt above is undefined; empty when all are defined.
  std::vector<std::string> warnings;
};

// Beta(1,1)-prior posteriors for two binomial arms. An arm with no units
// makes every figure nullopt (there is nothing but the prior to compare).
// Arms with identical counts give a chance of exactly 0.5.
//
// Returns INVALID_ARGUMENT when an arm has negative units, conversions
// outside [0, units], or more than 10^10 units (beyond which Boost's
// incomplete beta function grows slow and inexact); INTERNAL if Boost
// reports a failure, which the tests have not seen happen.
absl::StatusOr<BayesResult> BayesProportions(
    const BinomialArm& control, const BinomialArm& treatment,
    Direction direction = Direction::kHigherIsBetter);

// The Gaussian approximation, for means and ratios: treatment - control is
// normal with mean `difference` and standard deviation `standard_error`
// (`difference` is always treatment - control, whatever `direction`).
// Pass Comparison::absolute's estimate and standard_error (stats/compare.h)
// when both are set; when they are not, the comparison's warnings already say
// why, and there is nothing to call this with.
//
// standard_error == 0 makes every figure nullopt, with a warning. A loss
// larger than the largest double (|difference| or standard_error near
// 1.8e308) is nullopt, with a warning; the other figures stay defined.
// Returns INVALID_ARGUMENT when `difference` is not finite or
// `standard_error` is negative or not finite.
absl::StatusOr<BayesResult> BayesGaussian(
    double difference, double standard_error,
    Direction direction = Direction::kHigherIsBetter);

}  // namespace stats
}  // namespace abexp

#endif  // ABEXP_STATS_BAYES_H_
