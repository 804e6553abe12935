// The results of one experiment: from the aggregates an EventStore returns,
// every non-control variant is compared with the control on every metric
// (stats/compare.h, stats/bayes.h), the exposures are checked against the
// configured weights (stats/srm.h), the p-values of the non-guardrail
// metrics are adjusted as one family (stats/adjust.h), and the decision
// rules pick what to do, sizing the primary metric when the answer is to
// keep running (stats/power.h). docs/statistics.md ("Results RPC") gives the
// mapping from aggregates to comparisons and the decision rules.
//
//   absl::StatusOr<ExperimentResults> results = ComputeResults(
//       config, *experiment, std::move(aggregates), options, absl::Now());
//
// ResultsServiceImpl (server/service/results_service.h) is the RPC over it.
//
// Thread-safe: pure functions.
#ifndef ABEXP_SERVER_CORE_RESULTS_H_
#define ABEXP_SERVER_CORE_RESULTS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/core/config.h"
#include "server/core/event_store.h"
#include "stats/adjust.h"
#include "stats/bayes.h"
#include "stats/compare.h"
#include "stats/cuped.h"
#include "stats/power.h"
#include "stats/srm.h"

namespace abexp {

// The relative change the "keep running" rule sizes the primary metric
// for: 80% power to detect a 5% improvement (+5%, or -5% for a metric where
// lower is better).
inline constexpr double kResultsRelativeMde = 0.05;

struct ResultsOptions {
  // Two-sided significance level of every test, interval and decision rule.
  // REQUIRES: CheckResultsAlpha(alpha) is OK. Default: 0.05.
  double alpha = 0.05;
  // How the family of p-values is adjusted. Default: Holm.
  stats::AdjustMethod adjust_method = stats::AdjustMethod::kHolm;
  // Also compute ExperimentResults::daily. Default: false.
  bool daily = false;
  // One of the experiment's dimensions (Dimension::attribute): also compute
  // ExperimentResults::segments for it. Empty: none. Default: empty.
  std::string dimension;
  // With `dimension`: adjust the p-values of every segment value as one
  // family per dimension (values x non-control variants x non-guardrail
  // metrics) with adjust_method. Default: false, each value's p-values are
  // adjusted as the totals' are, within the value only.
  bool adjust_segments = false;
};

// A segment with fewer exposed units than this in some variant gets a
// warning that it is too small to say anything.
inline constexpr int64_t kMinSegmentUnits = 100;

// OK when `alpha` is in (0, 1) and not below the smallest normal double
// (below it alpha / 2 is 0, which the statistics refuse); INVALID_ARGUMENT
// saying so otherwise.
absl::Status CheckResultsAlpha(double alpha);

// The CUPED-adjusted figures of a metric with a covariate
// (Metric::covariate, stats/cuped.h) in one variant, over its units whose
// first exposure carried the covariate.
struct CupedResult {
  int64_t units = 0;          // exposed units with the covariate
  int64_t units_without = 0;  // exposed units without it: raw figures only
  // The variant's adjusted rate or mean per unit, ȳ − θ·(x̄_v − x̄); null
  // when θ is undefined.
  std::optional<double> estimate;
  // Non-control variants: the adjusted comparison with the control, θ (pooled
  // over every variant) and the variance reduction. Null when the sums
  // could not be compared (`warnings` says why).
  std::optional<stats::CupedComparison> comparison;
  std::vector<std::string> warnings;
};

// One step of a funnel metric (Metric::steps) in one variant.
struct FunnelStepResult {
  std::string event;
  int64_t units = 0;  // units that reached the step
  // units / the variant's exposed units; null without exposed units.
  std::optional<double> rate_from_exposure;
  // units / the units that reached the previous step (for step 1 the
  // previous step is the exposure, so it equals rate_from_exposure); null
  // when none reached it.
  std::optional<double> rate_from_previous;
  // Non-control variants: the two rates compared with the control's
  // (stats::CompareProportions); null when they could not be compared
  // (`warnings` says why).
  std::optional<stats::Comparison> from_exposure;
  std::optional<stats::Comparison> from_previous;
  std::vector<std::string> warnings;
};

// One metric in one variant.
struct MetricResult {
  // The metric's definition, as the config gives it.
  std::string metric_key;
  MetricType type = MetricType::kBinomial;
  bool guardrail = false;
  bool primary = false;  // the experiment's primary metric
  bool higher_is_better = true;

  // The variant's own estimate: its rate, its mean per exposed unit, or
  // Σnum / Σden. Null without exposed units (or, for a ratio, with a zero
  // denominator).
  std::optional<double> estimate;

  // The rest is set only for a non-control variant.

  // The comparison with the control; null when the aggregates could not be
  // compared (`warnings` says why).
  std::optional<stats::Comparison> comparison;
  // The Bayesian figures, in the metric's direction (stats::Direction: the
  // chance that the variant is better, lower when !higher_is_better); null
  // when there is no comparison, or when the comparison leaves no
  // difference or standard error to base them on.
  std::optional<stats::BayesResult> bayes;
  // The p-values of `comparison` after the multiple-comparison adjustment.
  // A guardrail's are its raw p-values: guardrails are tested unadjusted.
  // Null where the raw p-value is null, or without a comparison.
  std::optional<double> adjusted_absolute_p_value;
  std::optional<double> adjusted_relative_p_value;
  // Every warning about this cell, in the order to show them: why a
  // comparison or Bayes figure could not be computed at all, then the
  // warnings of `comparison`, then those of `bayes`.
  std::vector<std::string> warnings;

  // Set for a metric with a covariate when some variant has units with it
  // (data recorded before covariates existed has none).
  std::optional<CupedResult> cuped;

  // A funnel: every step, in order. The metric's own estimate and
  // comparison are those of the last step from exposure (the share of
  // exposed units that completed the funnel).
  std::vector<FunnelStepResult> funnel;
};

struct VariantResults {
  std::string key;
  int64_t exposed_units = 0;
  bool is_control = false;            // the first variant of the config
  std::vector<MetricResult> metrics;  // every metric, in the experiment's order
};

// Whether one guardrail is significantly worse in one non-control variant:
// its raw absolute-difference p-value below alpha, the difference in the bad
// direction.
struct GuardrailVerdict {
  std::string metric_key;
  std::string variant_key;
  bool worse = false;
  std::optional<double> p_value;  // raw; null without one
};

enum class DecisionKind {
  kDoNotTrust,          // sample ratio mismatch
  kGuardrailWorse,      // some guardrail significantly worse
  kShip,                // the primary metric significantly better
  kKeepRunning,         // not enough units yet, or they cannot be counted
  kNoDetectableEffect,  // enough units, and nothing significant
};

struct Decision {
  DecisionKind kind = DecisionKind::kKeepRunning;
  std::string variant;  // kShip, kGuardrailWorse: the variant
  std::string metric;   // kGuardrailWorse: the guardrail; kShip: the primary
  // kKeepRunning: the whole days until every variant has the units to
  // detect kResultsRelativeMde, when they can be computed.
  std::optional<int64_t> more_days;
  std::string text;  // the sentence for the analyst, e.g. "ship treatment"
};

// The comparison over the units first exposed on or before one day: the
// cohort days up to it, with all their units' events so far (not the
// figures as they stood that day). Over the days it shows the estimate
// settling as units accumulate, and a lift that changes from one cohort to
// the next (a novelty effect fading) as a drift.
struct DayResults {
  std::string day;                       // "2026-11-23", UTC
  std::vector<int64_t> exposed_on_day;   // per variant: first exposed that day
  std::vector<VariantResults> variants;  // cumulative, as in ExperimentResults
};

// The comparison over the units of one value of a dimension (segments,
// ExperimentAggregates::segments): exploratory, like every breakdown.
struct SegmentResults {
  std::string value;  // a value, kOtherSegment or kNoneSegment
  // The sample-ratio check of the segment's exposed units: a mismatch in
  // one segment is a classic sign of a client that drops exposures.
  stats::SrmResult srm;
  std::vector<VariantResults> variants;  // as ExperimentResults::variants
  // Why the segment's figures say little (too few units).
  std::vector<std::string> warnings;
};

struct ExperimentResults {
  std::string experiment_key;
  int phase = 1;
  std::string config_version;  // of the config the results were computed on
  double alpha = 0.05;         // the alpha used
  stats::AdjustMethod adjust_method = stats::AdjustMethod::kHolm;
  // Units exposed to more than one variant, kept out of every figure.
  int64_t multi_exposed_units = 0;
  // Config version -> exposures recorded under it.
  std::map<std::string, int64_t> config_versions;
  // The sample-ratio check of the exposed units against the weights. When
  // the check is not possible, only its warnings are set, saying why.
  stats::SrmResult srm;
  std::vector<VariantResults> variants;  // in config order; control first
  // One per (guardrail metric, non-control variant), metric-major, in
  // config order.
  std::vector<GuardrailVerdict> guardrails;
  Decision decision;
  // The sizing behind a kKeepRunning or kNoDetectableEffect decision: set
  // when the rules reached it and the control's figures allowed it.
  std::optional<stats::DaysToPowerResult> power;
  // With ResultsOptions::daily: one entry per cohort day that has exposed
  // units, oldest first (days without any are absent); the last one's
  // variants equal `variants`. The p-values of each day are adjusted like
  // the totals'; an interval that excludes 0 on some day is not a decision
  // (looking every day inflates the error rate: use `sequential`).
  std::vector<DayResults> daily;
  // With ResultsOptions::dimension: that dimension, and one entry per
  // value with exposed units, in byte order of the values. Their exposed
  // units add up to the totals'.
  std::string dimension;
  bool segments_adjusted = false;  // ResultsOptions::adjust_segments
  std::vector<SegmentResults> segments;
};

// Computes the results of `experiment` (a member of `config`) from its
// aggregates as EventStore::ReadAggregates returned them for
// LayoutOf(config, experiment); variants the aggregates lack count as empty.
// `now` is the end of the traffic window of the keep-running rule: traffic
// per day is the exposed units over the days from the first cohort day to
// `now` (UTC), both included.
//
// Data that cannot be compared is reported in warnings, not as an error.
// Returns INVALID_ARGUMENT when options.alpha fails CheckResultsAlpha, when
// options.dimension is not one of the experiment's dimensions (the message
// names them), or when the aggregates give p-values outside [0, 1] (no real
// data does).
absl::StatusOr<ExperimentResults> ComputeResults(
    const Config& config, const Experiment& experiment,
    ExperimentAggregates aggregates, const ResultsOptions& options,
    absl::Time now);

}  // namespace abexp

#endif  // ABEXP_SERVER_CORE_RESULTS_H_
