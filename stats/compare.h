// Frequentist comparison of a treatment arm with a control arm: the absolute
// difference (treatment - control) and the relative lift (treatment / control
// - 1), each with a two-sided confidence interval and p-value, and beside the
// absolute interval an always-valid confidence sequence that stays valid when
// the results are looked at every day. docs/statistics.md ("Comparisons")
// gives every formula and convention.
//
// Three kinds of metric:
//  - proportions: x converted units of n (unpooled Wald z-test);
//  - means of a per-unit value, from (n, Σx, Σx²) or from (n, mean, sample
//    SD) (Welch's t-test, Welch-Satterthwaite degrees of freedom);
//  - ratios Σnum / Σden of per-unit totals (delta method with the
//    numerator/denominator covariance, z-test).
//
// A quantity that the data cannot define (a relative lift over a zero
// baseline, a variance from fewer than 2 units, an interval when the standard
// error is 0, ...), or that passes the largest double (a relative lift or its
// standard error over a control near 0, an interval bound when the standard
// error is near 1e308), is std::nullopt, never NaN or infinite, and
// Comparison::warnings says why. Bad input (negative counts, more conversions
// than units, alpha outside (0, 1), arm estimates whose difference overflows
// a double, ...) is INVALID_ARGUMENT instead.
//
// Thread-safe: pure functions.
#ifndef ABEXP_STATS_COMPARE_H_
#define ABEXP_STATS_COMPARE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace abexp {
namespace stats {

struct CompareOptions {
  // Two-sided significance level: intervals cover 1 - alpha. Must be in
  // (0, 1) and not below the smallest normal double, 2.2e-308 (alpha / 2
  // must not round to 0). Default: 0.05.
  double alpha = 0.05;
  // N*, the tuning of the always-valid confidence sequence: the total number
  // of units (both arms) at which the sequence is narrowest relative to the
  // fixed-horizon interval. Must be positive. Default: 5000.
  double sequential_tuning = 5000;
};

// A binomial metric in one arm: `conversions` of `units` converted.
// REQUIRES (else INVALID_ARGUMENT): 0 <= conversions <= units.
struct BinomialArm {
  int64_t units = 0;
  int64_t conversions = 0;
};

// A per-unit continuous metric in one arm, as the sums the event store keeps
// (MetricAggregate): `units` counts every unit of the arm, including units
// whose value is 0. Long double, because Σx² of a billion units cancels
// against (Σx)²/n.
struct MeanArm {
  int64_t units = 0;
  long double sum = 0;     // Σx
  long double sum_sq = 0;  // Σx²
};

// The same metric summarized as an online calculator takes it.
struct MeanSummary {
  int64_t units = 0;
  double mean = 0;
  double sd = 0;  // sample standard deviation (divisor n - 1)
};

// A ratio metric in one arm: per unit i a numerator num_i and a denominator
// den_i (e.g. clicks and sessions); the arm's estimate is Σnum / Σden.
struct RatioArm {
  int64_t units = 0;
  long double sum_num = 0;      // Σ num_i
  long double sum_den = 0;      // Σ den_i
  long double sum_num_sq = 0;   // Σ num_i²
  long double sum_den_sq = 0;   // Σ den_i²
  long double sum_num_den = 0;  // Σ num_i·den_i
};

// An estimated effect with its two-sided test. Every field is nullopt when
// the data do not define it (see Comparison::warnings).
struct Lift {
  std::optional<double> estimate;
  std::optional<double> standard_error;
  // Welch-Satterthwaite degrees of freedom of the t reference distribution;
  // set only for the absolute difference of means (the others use the
  // normal distribution).
  std::optional<double> df;
  std::optional<double> ci_low;
  std::optional<double> ci_high;
  std::optional<double> p_value;
};

// The always-valid (asymptotic) confidence sequence for the absolute
// difference: an interval and p-value that may be computed after every new
// unit without inflating the false-positive rate above alpha.
struct SequentialInterval {
  std::optional<double> ci_low;
  std::optional<double> ci_high;
  std::optional<double> p_value;
};

struct Comparison {
  // Each arm's estimate: conversion rate, mean, or ratio. nullopt for an arm
  // with no units (or, for a ratio, a zero denominator).
  std::optional<double> control;
  std::optional<double> treatment;
  // The variance of each arm's estimate (not of one unit): p(1-p)/n, s²/n,
  // or the delta-method variance of the ratio. nullopt where the estimate
  // is, or for an arm of 1 unit. Times the arm's units, it is the per-unit
  // variance a sample-size calculation needs.
  std::optional<double> control_variance;
  std::optional<double> treatment_variance;
  Lift absolute;  // treatment - control
  Lift relative;  // treatment / control - 1
  SequentialInterval sequential;
  // Why each nullopt above is undefined, one sentence each; empty when every
  // quantity is defined.
  std::vector<std::string> warnings;
};

// Unpooled Wald z-test and interval for p_t - p_c; delta-method relative
// lift. INVALID_ARGUMENT names the bad arm or option.
absl::StatusOr<Comparison> CompareProportions(
    const BinomialArm& control, const BinomialArm& treatment,
    const CompareOptions& options = {});

// Welch's t-test and t interval for mean_t - mean_c; delta-method relative
// lift (normal). The variance comes from the sums by a compensated long
// double formula. INVALID_ARGUMENT for negative units, non-finite sums, or
// sums no real data can produce (Σx² < (Σx)²/n) or that overflow a double.
absl::StatusOr<Comparison> CompareMeans(const MeanArm& control,
                                        const MeanArm& treatment,
                                        const CompareOptions& options = {});

// As CompareMeans, from summaries. INVALID_ARGUMENT for negative units, a
// non-finite mean, a negative or non-finite SD, or means whose difference
// overflows a double.
absl::StatusOr<Comparison> CompareMeanSummaries(
    const MeanSummary& control, const MeanSummary& treatment,
    const CompareOptions& options = {});

// Delta-method variance of each arm's ratio (sample covariance of numerator
// and denominator, divisor n - 1), z-test and normal interval for
// ratio_t - ratio_c, and the delta-method relative lift.
absl::StatusOr<Comparison> CompareRatios(const RatioArm& control,
                                         const RatioArm& treatment,
                                         const CompareOptions& options = {});

// The always-valid confidence sequence around `estimate`, a difference with
// fixed-horizon standard error `standard_error` > 0 measured on
// `total_units` > 0 units (both arms together). The Compare* functions call
// it; it is public for simulations and for callers with their own estimates.
// ci_low and ci_high are nullopt when a bound overflows a double.
absl::StatusOr<SequentialInterval> ConfidenceSequence(
    double estimate, double standard_error, double total_units,
    const CompareOptions& options = {});

}  // namespace stats
}  // namespace abexp

#endif  // ABEXP_STATS_COMPARE_H_
