#include "server/core/results.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace abexp {
namespace {

const MetricAggregate& MetricIn(const VariantAggregate& variant,
                                const std::string& key) {
  static const MetricAggregate* const kZero = new MetricAggregate();
  auto it = variant.metrics.find(key);
  return it == variant.metrics.end() ? *kZero : it->second;
}

// A funnel compares like a binomial metric: on the units that completed it.
bool IsBinomialLike(MetricType type) {
  return type == MetricType::kBinomial || type == MetricType::kRetention ||
         type == MetricType::kFunnel;
}

// The units that count as converted: `sum` for binomial and retention
// metrics, the last step's units for a funnel.
int64_t ConvertedUnits(const Metric& metric, const MetricAggregate& m) {
  if (metric.type == MetricType::kFunnel) {
    return m.steps.empty() ? 0 : m.steps.back();
  }
  return static_cast<int64_t>(std::llround(m.sum));
}

// The arm's estimate: a rate, a mean per exposed unit, or Σnum / Σden.
std::optional<double> ArmEstimate(const Metric& metric,
                                  const VariantAggregate& variant) {
  const MetricAggregate& m = MetricIn(variant, metric.key);
  if (metric.type == MetricType::kRatio) {
    if (m.sum_den == 0) return std::nullopt;
    return static_cast<double>(m.sum_num / m.sum_den);
  }
  if (variant.exposed == 0) return std::nullopt;
  if (metric.type == MetricType::kFunnel) {
    return static_cast<double>(ConvertedUnits(metric, m)) /
           static_cast<double>(variant.exposed);
  }
  return static_cast<double>(m.sum / variant.exposed);
}

// For binomial-like metrics every exposed unit is a trial.
stats::BinomialArm BinomialArmOf(const Metric& metric,
                                 const VariantAggregate& variant,
                                 const MetricAggregate& m) {
  return {variant.exposed, ConvertedUnits(metric, m)};
}

// The frequentist comparison of `metric` between the arms.
absl::StatusOr<stats::Comparison> CompareArms(
    const Metric& metric, const VariantAggregate& control,
    const VariantAggregate& treatment, const stats::CompareOptions& options) {
  const MetricAggregate& c = MetricIn(control, metric.key);
  const MetricAggregate& t = MetricIn(treatment, metric.key);
  if (IsBinomialLike(metric.type)) {
    return stats::CompareProportions(BinomialArmOf(metric, control, c),
                                     BinomialArmOf(metric, treatment, t),
                                     options);
  }
  if (metric.type == MetricType::kSum) {
    // Units without events have x = 0, so n is every exposed unit.
    return stats::CompareMeans({control.exposed, c.sum, c.sum_sq},
                               {treatment.exposed, t.sum, t.sum_sq}, options);
  }
  return stats::CompareRatios({control.exposed, c.sum_num, c.sum_den,
                               c.sum_num_sq, c.sum_den_sq, c.sum_num_den},
                              {treatment.exposed, t.sum_num, t.sum_den,
                               t.sum_num_sq, t.sum_den_sq, t.sum_num_den},
                              options);
}

// The Bayesian figures beside `comparison`: Beta posteriors for
// binomial-like metrics, the Gaussian approximation otherwise, the chance
// and losses in the metric's direction. Null when the comparison leaves
// nothing to base the approximation on.
std::optional<absl::StatusOr<stats::BayesResult>> BayesOf(
    const Metric& metric, const VariantAggregate& control,
    const VariantAggregate& treatment, const stats::Comparison& comparison) {
  const stats::Direction direction = metric.higher_is_better
                                         ? stats::Direction::kHigherIsBetter
                                         : stats::Direction::kLowerIsBetter;
  if (IsBinomialLike(metric.type)) {
    return stats::BayesProportions(
        BinomialArmOf(metric, control, MetricIn(control, metric.key)),
        BinomialArmOf(metric, treatment, MetricIn(treatment, metric.key)),
        direction);
  }
  if (!comparison.absolute.estimate.has_value() ||
      !comparison.absolute.standard_error.has_value()) {
    return std::nullopt;
  }
  return stats::BayesGaussian(*comparison.absolute.estimate,
                              *comparison.absolute.standard_error, direction);
}

// Fills the comparison, Bayes figures and warnings of `cell`, a non-control
// variant's metric.
void CompareWithControl(const Metric& metric, const VariantAggregate& control,
                        const VariantAggregate& treatment,
                        const stats::CompareOptions& options,
                        MetricResult* cell) {
  absl::StatusOr<stats::Comparison> comparison =
      CompareArms(metric, control, treatment, options);
  if (!comparison.ok()) {
    // Aggregates no real data produce; report rather than fail the call.
    cell->warnings.push_back(
        absl::StrCat("cannot compare: ", comparison.status().message()));
    return;
  }
  std::optional<absl::StatusOr<stats::BayesResult>> bayes =
      BayesOf(metric, control, treatment, *comparison);
  if (bayes.has_value()) {
    if (bayes->ok()) {
      cell->bayes = **std::move(bayes);
    } else {
      cell->warnings.push_back(std::string(bayes->status().message()));
    }
  }
  cell->comparison = *std::move(comparison);
  cell->warnings.insert(cell->warnings.end(),
                        cell->comparison->warnings.begin(),
                        cell->comparison->warnings.end());
  if (cell->bayes) {
    cell->warnings.insert(cell->warnings.end(), cell->bayes->warnings.begin(),
                          cell->bayes->warnings.end());
  }
}

// Every variant's CUPED sums of `metric`, as stats/cuped.h takes them.
std::vector<stats::CupedArm> CupedArmsOf(const Metric& metric,
                                         const ExperimentAggregates& a) {
  std::vector<stats::CupedArm> arms;
  for (const VariantAggregate& v : a.variants) {
    const MetricAggregate& m = MetricIn(v, metric.key);
    arms.push_back({m.cuped_units, m.cuped_sum_y, m.cuped_sum_y_sq,
                    m.cuped_sum_x, m.cuped_sum_x_sq, m.cuped_sum_xy});
  }
  return arms;
}

// The CUPED comparison of variant `v` with the control.
absl::StatusOr<stats::CupedComparison> CompareCuped(
    const Metric& metric, const std::vector<stats::CupedArm>& arms, size_t v,
    const stats::CompareOptions& options) {
  if (metric.type == MetricType::kBinomial) {
    std::vector<stats::CupedBinomialArm> binomial;
    for (const stats::CupedArm& a : arms) {
      binomial.push_back({a.units, static_cast<int64_t>(std::llround(a.sum_y)),
                          a.sum_x, a.sum_x_sq, a.sum_xy});
    }
    return stats::CompareCupedProportions(binomial, 0, v, options);
  }
  return stats::CompareCupedMeans(arms, 0, v, options);
}

// The CUPED figures of `metric` in variant `v`; null when the metric has no
// covariate or no variant has units with one.
std::optional<CupedResult> CupedOf(const Metric& metric,
                                   const ExperimentAggregates& a, size_t v,
                                   const stats::CompareOptions& options) {
  if (metric.covariate.empty()) return std::nullopt;
  const std::vector<stats::CupedArm> arms = CupedArmsOf(metric, a);
  if (std::all_of(arms.begin(), arms.end(),
                  [](const stats::CupedArm& arm) { return arm.units == 0; })) {
    return std::nullopt;
  }
  CupedResult out;
  out.units = arms[v].units;
  out.units_without = a.variants[v].exposed - arms[v].units;
  if (arms.size() < 2) return out;
  // The control's adjusted mean is the same in every comparison (θ is
  // pooled); take it from the comparison with the first treatment.
  absl::StatusOr<stats::CupedComparison> c =
      CompareCuped(metric, arms, v == 0 ? 1 : v, options);
  if (!c.ok()) {
    out.warnings.push_back(
        absl::StrCat("cannot compute CUPED: ", c.status().message()));
    return out;
  }
  if (v == 0) {
    out.estimate = c->adjusted.control;
    return out;
  }
  out.estimate = c->adjusted.treatment;
  out.warnings = c->adjusted.warnings;
  out.comparison = *std::move(c);
  return out;
}

// Step k's trials and successes in one arm: from the exposed units
// (`from_previous` false) or from the units that reached step k-1.
stats::BinomialArm StepArm(const VariantAggregate& variant,
                           const MetricAggregate& m, size_t k,
                           bool from_previous) {
  auto units_at = [&](size_t i) -> int64_t {
    return i < m.steps.size() ? m.steps[i] : 0;
  };
  if (!from_previous || k == 0) return {variant.exposed, units_at(k)};
  return {units_at(k - 1), units_at(k)};
}

std::optional<double> Rate(const stats::BinomialArm& arm) {
  if (arm.units <= 0) return std::nullopt;
  return static_cast<double>(arm.conversions) / static_cast<double>(arm.units);
}

// Compares step arms; a failure becomes a warning of `step`.
std::optional<stats::Comparison> CompareStep(
    const stats::BinomialArm& control, const stats::BinomialArm& treatment,
    const stats::CompareOptions& options, const char* what,
    FunnelStepResult* step) {
  absl::StatusOr<stats::Comparison> c =
      stats::CompareProportions(control, treatment, options);
  if (!c.ok()) {
    step->warnings.push_back(
        absl::StrCat("cannot compare ", what, ": ", c.status().message()));
    return std::nullopt;
  }
  for (const std::string& w : c->warnings) {
    step->warnings.push_back(absl::StrCat(what, ": ", w));
  }
  return *std::move(c);
}

// The steps of funnel `metric` in variant `v`, compared with the control
// (variant 0) unless v is the control.
std::vector<FunnelStepResult> FunnelOf(const Metric& metric,
                                       const ExperimentAggregates& a, size_t v,
                                       const stats::CompareOptions& options) {
  std::vector<FunnelStepResult> out;
  if (metric.type != MetricType::kFunnel) return out;
  const VariantAggregate& control = a.variants[0];
  const VariantAggregate& variant = a.variants[v];
  const MetricAggregate& c = MetricIn(control, metric.key);
  const MetricAggregate& m = MetricIn(variant, metric.key);
  for (size_t k = 0; k < metric.steps.size(); ++k) {
    FunnelStepResult& step = out.emplace_back();
    step.event = metric.steps[k].event;
    step.units = k < m.steps.size() ? m.steps[k] : 0;
    step.rate_from_exposure = Rate(StepArm(variant, m, k, false));
    step.rate_from_previous = Rate(StepArm(variant, m, k, true));
    if (v == 0) continue;
    step.from_exposure = CompareStep(StepArm(control, c, k, false),
                                     StepArm(variant, m, k, false), options,
                                     "from exposure", &step);
    step.from_previous =
        CompareStep(StepArm(control, c, k, true), StepArm(variant, m, k, true),
                    options, "from the previous step", &step);
  }
  return out;
}

// Whether `estimate` points the good way for `metric`.
bool IsBetter(const Metric& metric, double estimate) {
  return metric.higher_is_better ? estimate > 0 : estimate < 0;
}
bool IsWorse(const Metric& metric, double estimate) {
  return metric.higher_is_better ? estimate < 0 : estimate > 0;
}

// Exposed units per day per variant: the exposures over the days from the
// first cohort day to `now` (UTC), both included, so a stalled experiment
// shows its lower traffic.
std::vector<double> UnitsPerDay(const ExperimentAggregates& aggregates,
                                absl::Time now) {
  std::vector<double> per_day(aggregates.variants.size(), 0);
  if (aggregates.daily.empty()) return per_day;
  absl::Time first;
  std::string err;
  int64_t days = 1;
  if (absl::ParseTime("%Y-%m-%d", aggregates.daily.begin()->first,
                      absl::UTCTimeZone(), &first, &err)) {
    days = std::max<int64_t>(1, absl::ToInt64Hours(now - first) / 24 + 1);
  }
  for (size_t i = 0; i < per_day.size(); ++i) {
    per_day[i] = static_cast<double>(aggregates.variants[i].exposed) /
                 static_cast<double>(days);
  }
  return per_day;
}

std::vector<int64_t> ExposedUnits(const ExperimentAggregates& aggregates) {
  std::vector<int64_t> exposed;
  for (const VariantAggregate& v : aggregates.variants) {
    exposed.push_back(v.exposed);
  }
  return exposed;
}

// The sample-ratio check against the configured weights.
stats::SrmResult CheckSampleRatioOf(const Experiment& experiment,
                                    const ExperimentAggregates& aggregates) {
  std::vector<double> weights;
  for (const Variant& v : experiment.variants) {
    weights.push_back(static_cast<double>(v.weight));
  }
  absl::StatusOr<stats::SrmResult> srm =
      stats::CheckSampleRatio(ExposedUnits(aggregates), weights);
  if (srm.ok()) return *std::move(srm);
  stats::SrmResult impossible;
  impossible.warnings.push_back(
      absl::StrCat("SRM check not possible: ", srm.status().message()));
  return impossible;
}

// Multiple comparisons: one family of absolute p-values (and one of
// relative ones) over non-control variants x non-guardrail metrics.
// Guardrails are protective, so they keep their raw p-values.
// With several `groups` (segment values adjusted together) the family is
// every group's cells.
absl::Status AdjustFamilies(
    const std::vector<Metric>& metrics, stats::AdjustMethod method,
    const std::vector<std::vector<VariantResults>*>& groups) {
  std::vector<std::optional<double>> abs_family, rel_family;
  for (const std::vector<VariantResults>* variants : groups) {
    for (size_t m = 0; m < metrics.size(); ++m) {
      if (metrics[m].guardrail) continue;
      for (size_t v = 1; v < variants->size(); ++v) {
        const MetricResult& cell = (*variants)[v].metrics[m];
        abs_family.push_back(cell.comparison ? cell.comparison->absolute.p_value
                                             : std::nullopt);
        rel_family.push_back(cell.comparison ? cell.comparison->relative.p_value
                                             : std::nullopt);
      }
    }
  }
  absl::StatusOr<stats::AdjustResult> abs_adj =
      stats::AdjustPValues(abs_family, method);
  absl::StatusOr<stats::AdjustResult> rel_adj =
      stats::AdjustPValues(rel_family, method);
  if (!abs_adj.ok()) return abs_adj.status();
  if (!rel_adj.ok()) return rel_adj.status();
  size_t k = 0;
  for (std::vector<VariantResults>* variants : groups) {
    for (size_t m = 0; m < metrics.size(); ++m) {
      for (size_t v = 1; v < variants->size(); ++v) {
        MetricResult& cell = (*variants)[v].metrics[m];
        if (metrics[m].guardrail) {
          if (cell.comparison) {
            cell.adjusted_absolute_p_value = cell.comparison->absolute.p_value;
            cell.adjusted_relative_p_value = cell.comparison->relative.p_value;
          }
        } else {
          cell.adjusted_absolute_p_value = abs_adj->adjusted[k];
          cell.adjusted_relative_p_value = rel_adj->adjusted[k];
          ++k;
        }
      }
    }
  }
  return absl::OkStatus();
}

// Every variant's figures, compared with the control, before the
// adjustment.
std::vector<VariantResults> CompareVariants(
    const Experiment& experiment, const ExperimentLayout& layout,
    const ExperimentAggregates& aggregates, double alpha) {
  stats::CompareOptions options;
  options.alpha = alpha;
  std::vector<VariantResults> variants(layout.variant_keys.size());
  for (size_t v = 0; v < variants.size(); ++v) {
    VariantResults& out = variants[v];
    out.key = layout.variant_keys[v];
    out.exposed_units = aggregates.variants[v].exposed;
    out.is_control = v == 0;
    for (const Metric& metric : layout.metrics) {
      MetricResult& cell = out.metrics.emplace_back();
      cell.metric_key = metric.key;
      cell.type = metric.type;
      cell.guardrail = metric.guardrail;
      cell.primary = metric.key == experiment.primary_metric;
      cell.higher_is_better = metric.higher_is_better;
      cell.estimate = ArmEstimate(metric, aggregates.variants[v]);
      cell.cuped = CupedOf(metric, aggregates, v, options);
      cell.funnel = FunnelOf(metric, aggregates, v, options);
      if (v == 0) continue;
      CompareWithControl(metric, aggregates.variants[0], aggregates.variants[v],
                         options, &cell);
    }
  }
  return variants;
}

std::vector<GuardrailVerdict> GuardrailVerdicts(
    const std::vector<Metric>& metrics,
    const std::vector<VariantResults>& variants, double alpha) {
  std::vector<GuardrailVerdict> verdicts;
  for (size_t m = 0; m < metrics.size(); ++m) {
    const Metric& metric = metrics[m];
    if (!metric.guardrail) continue;
    for (size_t v = 1; v < variants.size(); ++v) {
      const MetricResult& cell = variants[v].metrics[m];
      GuardrailVerdict& g = verdicts.emplace_back();
      g.metric_key = metric.key;
      g.variant_key = variants[v].key;
      if (cell.comparison && cell.comparison->absolute.p_value) {
        const stats::Lift& absolute = cell.comparison->absolute;
        g.p_value = absolute.p_value;
        g.worse = *absolute.p_value < alpha && absolute.estimate &&
                  IsWorse(metric, *absolute.estimate);
      }
    }
  }
  return verdicts;
}

// The index in layout.metrics of the primary metric, or -1.
int PrimaryIndex(const Experiment& experiment, const ExperimentLayout& layout) {
  int primary = -1;
  for (size_t m = 0; m < layout.metrics.size(); ++m) {
    if (layout.metrics[m].key == experiment.primary_metric) primary = m;
  }
  return primary;
}

// The variant whose primary-metric difference is significant (adjusted)
// and best in the good direction, or -1.
int BestSignificantVariant(const Metric& metric, int primary,
                           const std::vector<VariantResults>& variants,
                           double alpha) {
  int best = -1;
  double best_estimate = 0;
  for (size_t v = 1; v < variants.size(); ++v) {
    const MetricResult& cell = variants[v].metrics[primary];
    if (!cell.comparison || !cell.adjusted_absolute_p_value ||
        !cell.comparison->absolute.estimate) {
      continue;
    }
    const double e = *cell.comparison->absolute.estimate;
    if (*cell.adjusted_absolute_p_value < alpha && IsBetter(metric, e) &&
        (best < 0 || IsBetter(metric, e - best_estimate))) {
      best = v;
      best_estimate = e;
    }
  }
  return best;
}

// The traffic DaysToPower sizes the primary metric on: the control's
// observed conversion rate for binomial-like metrics; its mean or ratio and
// per-unit SD otherwise. Null without them (fewer than 2 units, no spread,
// no traffic for a continuous metric).
std::optional<stats::TrafficSnapshot> PrimaryTraffic(
    const Metric& metric, const MetricResult& first_treatment_cell,
    const ExperimentAggregates& aggregates, absl::Time now) {
  std::optional<stats::TrafficSnapshot> traffic;
  const std::optional<double> baseline =
      ArmEstimate(metric, aggregates.variants[0]);
  if (IsBinomialLike(metric.type)) {
    traffic.emplace();
    traffic->baseline = baseline.value_or(0);
  } else {
    // The variance of the control's estimate times its units is the
    // per-unit variance (of the linearized unit, for a ratio). Any
    // treatment arm's comparison carries the same control figures.
    const std::optional<stats::Comparison>& comparison =
        first_treatment_cell.comparison;
    if (baseline && comparison && comparison->control_variance.has_value()) {
      traffic.emplace();
      traffic->baseline = *baseline;
      traffic->unit_sd =
          std::sqrt(*comparison->control_variance *
                    static_cast<double>(aggregates.variants[0].exposed));
    }
  }
  if (traffic) {
    traffic->exposed = ExposedUnits(aggregates);
    traffic->units_per_day = UnitsPerDay(aggregates, now);
  }
  return traffic;
}

// The decision rules, in order (docs/statistics.md, "Decision rules"). Sets
// results->decision, and results->power when the last rules size the
// experiment.
void Decide(const Experiment& experiment, const ExperimentLayout& layout,
            const ExperimentAggregates& aggregates, double alpha,
            absl::Time now, ExperimentResults* results) {
  Decision& decision = results->decision;
  if (results->srm.mismatch) {
    decision.kind = DecisionKind::kDoNotTrust;
    decision.text = "do not trust: sample ratio mismatch";
    return;
  }
  for (const GuardrailVerdict& g : results->guardrails) {
    if (!g.worse) continue;
    decision.kind = DecisionKind::kGuardrailWorse;
    decision.metric = g.metric_key;
    decision.variant = g.variant_key;
    decision.text = absl::StrCat("guardrail ", g.metric_key, " worse");
    return;
  }
  const int primary = PrimaryIndex(experiment, layout);
  if (primary >= 0) {
    const Metric& metric = layout.metrics[primary];
    const int best =
        BestSignificantVariant(metric, primary, results->variants, alpha);
    if (best >= 0) {
      decision.kind = DecisionKind::kShip;
      decision.variant = layout.variant_keys[best];
      decision.metric = metric.key;
      decision.text = absl::StrCat("ship ", layout.variant_keys[best]);
      return;
    }
  }
  // Without the control's figures the experiment keeps running without a
  // day count.
  decision.kind = DecisionKind::kKeepRunning;
  decision.text = "keep running";
  if (primary < 0 || results->variants.size() < 2) return;
  std::optional<stats::TrafficSnapshot> traffic =
      PrimaryTraffic(layout.metrics[primary],
                     results->variants[1].metrics[primary], aggregates, now);
  if (!traffic) return;
  stats::PowerOptions power;
  power.alpha = alpha;
  // Sized for an improvement: a 5% fall when lower is better. For a rate
  // the two sizes differ, and a rising one may not exist (+5% of an
  // abandonment rate of 96% is above 100%).
  const double mde = layout.metrics[primary].higher_is_better
                         ? kResultsRelativeMde
                         : -kResultsRelativeMde;
  absl::StatusOr<stats::DaysToPowerResult> days =
      stats::DaysToPower(*traffic, mde, power);
  if (!days.ok()) return;
  results->power = *days;
  if (!days->more_days.has_value()) return;
  if (*days->more_days == 0) {
    decision.kind = DecisionKind::kNoDetectableEffect;
    decision.text = "no detectable effect";
  } else {
    decision.more_days = *days->more_days;
    decision.text = absl::StrCat("keep running (about ", *days->more_days,
                                 " more days to reach 80% power)");
  }
}

}  // namespace

absl::Status CheckResultsAlpha(double alpha) {
  if (!std::isfinite(alpha) || alpha < std::numeric_limits<double>::min() ||
      alpha >= 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "alpha is ", alpha,
        "; it must be in (0, 1) and at least 2.2e-308, e.g. 0.05"));
  }
  return absl::OkStatus();
}

namespace {

// Every variant compared with the control, p-values adjusted, into
// *variants.
absl::Status CompareAndAdjust(const Experiment& experiment,
                              const ExperimentLayout& layout,
                              const ExperimentAggregates& aggregates,
                              const ResultsOptions& options,
                              std::vector<VariantResults>* variants) {
  *variants = CompareVariants(experiment, layout, aggregates, options.alpha);
  return AdjustFamilies(layout.metrics, options.adjust_method, {variants});
}

// The segments of options.dimension, into *results.
absl::Status CompareSegments(const Experiment& experiment,
                             const ExperimentLayout& layout,
                             const ExperimentAggregates& aggregates,
                             const ResultsOptions& options,
                             ExperimentResults* results) {
  results->dimension = options.dimension;
  results->segments_adjusted = options.adjust_segments;
  auto values = aggregates.segments.find(options.dimension);
  if (values == aggregates.segments.end()) return absl::OkStatus();
  std::vector<std::vector<VariantResults>*> groups;
  for (const auto& [value, variants] : values->second) {
    ExperimentAggregates segment;
    segment.variants = variants;
    segment.variants.resize(layout.variant_keys.size());
    SegmentResults& out = results->segments.emplace_back();
    out.value = value;
    out.srm = CheckSampleRatioOf(experiment, segment);
    out.variants = CompareVariants(experiment, layout, segment, options.alpha);
    std::vector<std::string> small;
    for (size_t v = 0; v < segment.variants.size(); ++v) {
      if (segment.variants[v].exposed < kMinSegmentUnits) {
        small.push_back(absl::StrCat(layout.variant_keys[v], " has ",
                                     segment.variants[v].exposed));
      }
    }
    if (!small.empty()) {
      out.warnings.push_back(absl::StrCat(
          "too small to say anything: fewer than ", kMinSegmentUnits,
          " exposed units in a variant (", absl::StrJoin(small, ", "), ")"));
    }
  }
  for (SegmentResults& segment : results->segments) {
    if (!options.adjust_segments) {
      if (absl::Status s = AdjustFamilies(layout.metrics, options.adjust_method,
                                          {&segment.variants});
          !s.ok()) {
        return s;
      }
    } else {
      groups.push_back(&segment.variants);
    }
  }
  if (groups.empty()) return absl::OkStatus();
  return AdjustFamilies(layout.metrics, options.adjust_method, groups);
}

// OK when `dimension` is empty or one of the experiment's.
absl::Status CheckDimension(const Experiment& experiment,
                            const std::string& dimension) {
  if (dimension.empty()) return absl::OkStatus();
  std::vector<std::string> names;
  for (const Dimension& d : experiment.dimensions) {
    if (d.attribute == dimension) return absl::OkStatus();
    names.push_back(d.attribute);
  }
  if (names.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "experiment '", experiment.key,
        "' has no dimensions, so results "
        "cannot be broken down by '",
        dimension,
        "'; declare it under the experiment's dimensions: in the config"));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "experiment '", experiment.key, "' has no dimension '", dimension,
      "'; its dimensions are: ", absl::StrJoin(names, ", ")));
}

}  // namespace

absl::StatusOr<ExperimentResults> ComputeResults(
    const Config& config, const Experiment& experiment,
    ExperimentAggregates aggregates, const ResultsOptions& options,
    absl::Time now) {
  if (absl::Status alpha = CheckResultsAlpha(options.alpha); !alpha.ok()) {
    return alpha;
  }
  if (absl::Status s = CheckDimension(experiment, options.dimension); !s.ok()) {
    return s;
  }
  const ExperimentLayout layout = LayoutOf(config, experiment);
  aggregates.variants.resize(layout.variant_keys.size());

  ExperimentResults results;
  results.experiment_key = experiment.key;
  results.phase = experiment.phase;
  results.config_version = config.version;
  results.alpha = options.alpha;
  results.adjust_method = options.adjust_method;
  results.multi_exposed_units = aggregates.multi_exposed;
  results.config_versions = aggregates.config_versions;
  results.srm = CheckSampleRatioOf(experiment, aggregates);
  if (absl::Status s = CompareAndAdjust(experiment, layout, aggregates, options,
                                        &results.variants);
      !s.ok()) {
    return s;
  }
  results.guardrails =
      GuardrailVerdicts(layout.metrics, results.variants, options.alpha);
  Decide(experiment, layout, aggregates, options.alpha, now, &results);
  if (!options.dimension.empty()) {
    if (absl::Status s =
            CompareSegments(experiment, layout, aggregates, options, &results);
        !s.ok()) {
      return s;
    }
  }
  if (options.daily) {
    ExperimentAggregates through_day;
    through_day.variants.resize(layout.variant_keys.size());
    // Keys are "YYYY-MM-DD": the map's order is the calendar's.
    for (const auto& [day, cohort] : aggregates.daily) {
      AddVariantAggregates(cohort, &through_day.variants);
      DayResults& out = results.daily.emplace_back();
      out.day = day;
      out.exposed_on_day.assign(layout.variant_keys.size(), 0);
      for (size_t v = 0; v < cohort.size() && v < out.exposed_on_day.size();
           ++v) {
        out.exposed_on_day[v] = cohort[v].exposed;
      }
      if (absl::Status s = CompareAndAdjust(experiment, layout, through_day,
                                            options, &out.variants);
          !s.ok()) {
        return s;
      }
    }
  }
  return results;
}

}  // namespace abexp
