#include "server/service/results_service.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/core/error_text.h"
#include "server/service/rpc_handlers.h"
#include "server/service/unary_call.h"
#include "stats/adjust.h"
#include "stats/bayes.h"
#include "stats/compare.h"
#include "stats/power.h"
#include "stats/srm.h"

namespace abexp {
namespace {

// One treatment-vs-control comparison of one metric.
struct Cell {
  std::optional<stats::Comparison> comparison;
  std::optional<stats::BayesResult> bayes;
  std::vector<std::string> warnings;
  std::optional<double> adjusted_abs_p;
  std::optional<double> adjusted_rel_p;
};

const MetricAggregate& MetricIn(const VariantAggregate& variant,
                                const std::string& key) {
  static const MetricAggregate* const kZero = new MetricAggregate();
  auto it = variant.metrics.find(key);
  return it == variant.metrics.end() ? *kZero : it->second;
}

bool IsBinomialLike(MetricType type) {
  return type == MetricType::kBinomial || type == MetricType::kRetention;
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
  return static_cast<double>(m.sum / variant.exposed);
}

Cell Compare(const Metric& metric, const VariantAggregate& control,
             const VariantAggregate& treatment,
             const stats::CompareOptions& options) {
  Cell cell;
  const MetricAggregate& c = MetricIn(control, metric.key);
  const MetricAggregate& t = MetricIn(treatment, metric.key);
  absl::StatusOr<stats::Comparison> comparison;
  if (IsBinomialLike(metric.type)) {
    // For binomial and retention metrics `sum` is the number of converted
    // (or active) units, and every exposed unit is a trial.
    const stats::BinomialArm ca{control.exposed,
                                static_cast<int64_t>(std::llround(c.sum))};
    const stats::BinomialArm ta{treatment.exposed,
                                static_cast<int64_t>(std::llround(t.sum))};
    comparison = stats::CompareProportions(ca, ta, options);
    if (comparison.ok()) {
      absl::StatusOr<stats::BayesResult> bayes =
          stats::BayesProportions(ca, ta);
      if (bayes.ok()) {
        cell.bayes = *std::move(bayes);
      } else {
        cell.warnings.push_back(std::string(bayes.status().message()));
      }
    }
  } else {
    if (metric.type == MetricType::kSum) {
      // Units without events have x = 0, so n is every exposed unit.
      comparison =
          stats::CompareMeans({control.exposed, c.sum, c.sum_sq},
                              {treatment.exposed, t.sum, t.sum_sq}, options);
    } else {
      comparison =
          stats::CompareRatios({control.exposed, c.sum_num, c.sum_den,
                                c.sum_num_sq, c.sum_den_sq, c.sum_num_den},
                               {treatment.exposed, t.sum_num, t.sum_den,
                                t.sum_num_sq, t.sum_den_sq, t.sum_num_den},
                               options);
    }
    if (comparison.ok() && comparison->absolute.estimate.has_value() &&
        comparison->absolute.standard_error.has_value()) {
      absl::StatusOr<stats::BayesResult> bayes = stats::BayesGaussian(
          *comparison->absolute.estimate, *comparison->absolute.standard_error);
      if (bayes.ok()) {
        cell.bayes = *std::move(bayes);
      } else {
        cell.warnings.push_back(std::string(bayes.status().message()));
      }
    }
  }
  if (comparison.ok()) {
    cell.comparison = *std::move(comparison);
  } else {
    // Aggregates no real data produce; report rather than fail the call.
    cell.warnings.push_back(
        absl::StrCat("cannot compare: ", comparison.status().message()));
  }
  return cell;
}

void FillEffect(const stats::Lift& lift, std::optional<double> adjusted,
                v1::Effect* out) {
  if (lift.estimate) out->set_estimate(*lift.estimate);
  if (lift.ci_low) out->set_ci_low(*lift.ci_low);
  if (lift.ci_high) out->set_ci_high(*lift.ci_high);
  if (lift.p_value) out->set_p_value(*lift.p_value);
  if (adjusted) out->set_adjusted_p_value(*adjusted);
  if (lift.df) out->set_df(*lift.df);
}

// Whether `estimate` points the good way for `metric`.
bool IsBetter(const Metric& metric, double estimate) {
  return metric.higher_is_better ? estimate > 0 : estimate < 0;
}
bool IsWorse(const Metric& metric, double estimate) {
  return metric.higher_is_better ? estimate < 0 : estimate > 0;
}

// Exposed units per day per variant: the exposures over the days from the
// first cohort day to today (UTC), both included, so a stalled experiment
// shows its lower traffic.
std::vector<double> UnitsPerDay(const ExperimentAggregates& aggregates) {
  std::vector<double> per_day(aggregates.variants.size(), 0);
  if (aggregates.daily.empty()) return per_day;
  absl::Time first;
  std::string err;
  int64_t days = 1;
  if (absl::ParseTime("%Y-%m-%d", aggregates.daily.begin()->first,
                      absl::UTCTimeZone(), &first, &err)) {
    days =
        std::max<int64_t>(1, absl::ToInt64Hours(absl::Now() - first) / 24 + 1);
  }
  for (size_t i = 0; i < per_day.size(); ++i) {
    per_day[i] = static_cast<double>(aggregates.variants[i].exposed) /
                 static_cast<double>(days);
  }
  return per_day;
}

}  // namespace

absl::Status ComputeResults(const Config& config,
                            const v1::GetResultsRequest& request,
                            EventStore* store,
                            v1::GetResultsResponse* response) {
  if (request.experiment_key().empty()) {
    return absl::InvalidArgumentError(
        "experiment_key is required; pass the key of the experiment to report "
        "on (ListExperiments shows them)");
  }
  const Experiment* experiment =
      config.FindExperiment(request.experiment_key());
  if (experiment == nullptr) {
    std::vector<std::string> keys;
    for (const Experiment& e : config.experiments) keys.push_back(e.key);
    return absl::NotFoundError(
        absl::StrCat("no experiment \"", ClipForMessage(request.experiment_key()),
                     "\" in config ", config.version, "; known experiments: ",
                     keys.empty() ? "(none)" : absl::StrJoin(keys, ", ")));
  }
  double alpha = 0.05;
  if (request.has_alpha()) {
    alpha = request.alpha();
    // Below the smallest normal double, alpha / 2 is 0 and the statistics
    // refuse it (stats/compare.h); refuse it here, once, for the call.
    if (!std::isfinite(alpha) || alpha < std::numeric_limits<double>::min() ||
        alpha >= 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "alpha is ", alpha,
          "; it must be in (0, 1) and at least 2.2e-308, e.g. 0.05"));
    }
  }
  stats::AdjustMethod method = stats::AdjustMethod::kHolm;
  if (request.has_adjust_method()) {
    absl::StatusOr<stats::AdjustMethod> parsed =
        stats::ParseAdjustMethod(request.adjust_method());
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("adjust_method \"", ClipForMessage(request.adjust_method()),
                       "\" is not known; use \"holm\" or \"bh\""));
    }
    method = *parsed;
  }
  for (const std::string& key : request.metric_keys()) {
    bool found = false;
    for (const std::string& m : experiment->metrics) found |= m == key;
    if (!found) {
      return absl::InvalidArgumentError(absl::StrCat(
          "metric_keys has \"", ClipForMessage(key), "\", which is not a metric of experiment ",
          experiment->key, "; its metrics: ",
          experiment->metrics.empty()
              ? "(none)"
              : absl::StrJoin(experiment->metrics, ", ")));
    }
  }

  const ExperimentLayout layout = LayoutOf(config, *experiment);
  absl::StatusOr<ExperimentAggregates> read = store->ReadAggregates(layout);
  if (!read.ok()) {
    if (absl::IsUnavailable(read.status()) ||
        absl::IsDeadlineExceeded(read.status())) {
      return absl::UnavailableError(
          absl::StrCat("cannot read the results of ", experiment->key,
                       ": Redis is unavailable (", read.status().message(),
                       "); retry when Redis is back"));
    }
    return read.status();
  }
  ExperimentAggregates& agg = *read;
  const size_t n_variants = layout.variant_keys.size();
  agg.variants.resize(n_variants);

  response->set_experiment_key(experiment->key);
  response->set_phase(experiment->phase);
  response->set_config_version(config.version);
  response->set_alpha(alpha);
  response->set_adjust_method(std::string(stats::AdjustMethodName(method)));
  response->set_multi_exposed_units(agg.multi_exposed);
  for (const auto& [version, exposures] : agg.config_versions) {
    v1::ConfigVersionSeen* seen = response->add_config_versions();
    seen->set_version(version);
    seen->set_exposures(exposures);
  }

  // Sample-ratio mismatch against the configured weights.
  std::vector<int64_t> exposed;
  std::vector<double> weights;
  for (size_t i = 0; i < n_variants; ++i) {
    exposed.push_back(agg.variants[i].exposed);
    weights.push_back(static_cast<double>(experiment->variants[i].weight));
  }
  bool srm_mismatch = false;
  absl::StatusOr<stats::SrmResult> srm =
      stats::CheckSampleRatio(exposed, weights);
  if (srm.ok()) {
    v1::SampleRatio* out = response->mutable_srm();
    if (srm->chi2) out->set_chi2(*srm->chi2);
    if (srm->p_value) out->set_p_value(*srm->p_value);
    out->set_mismatch(srm->mismatch);
    for (const std::string& w : srm->warnings) out->add_warnings(w);
    srm_mismatch = srm->mismatch;
  } else {
    response->mutable_srm()->add_warnings(
        absl::StrCat("SRM check not possible: ", srm.status().message()));
  }

  // cells[m][v]: metric m (layout order), variant v (index 0 = control,
  // left empty).
  stats::CompareOptions options;
  options.alpha = alpha;
  std::vector<std::vector<Cell>> cells(layout.metrics.size());
  std::vector<std::optional<double>> abs_family, rel_family;
  for (size_t m = 0; m < layout.metrics.size(); ++m) {
    cells[m].resize(n_variants);
    for (size_t v = 1; v < n_variants; ++v) {
      cells[m][v] =
          Compare(layout.metrics[m], agg.variants[0], agg.variants[v], options);
      if (layout.metrics[m].guardrail) continue;
      const Cell& cell = cells[m][v];
      abs_family.push_back(cell.comparison ? cell.comparison->absolute.p_value
                                           : std::nullopt);
      rel_family.push_back(cell.comparison ? cell.comparison->relative.p_value
                                           : std::nullopt);
    }
  }
  // Multiple comparisons: one family of absolute p-values (and one of
  // relative ones) over non-control variants x non-guardrail metrics.
  absl::StatusOr<stats::AdjustResult> abs_adj =
      stats::AdjustPValues(abs_family, method);
  absl::StatusOr<stats::AdjustResult> rel_adj =
      stats::AdjustPValues(rel_family, method);
  if (!abs_adj.ok()) return abs_adj.status();
  if (!rel_adj.ok()) return rel_adj.status();
  size_t k = 0;
  for (size_t m = 0; m < layout.metrics.size(); ++m) {
    for (size_t v = 1; v < n_variants; ++v) {
      Cell& cell = cells[m][v];
      if (layout.metrics[m].guardrail) {
        // Guardrails are protective: tested unadjusted.
        if (cell.comparison) {
          cell.adjusted_abs_p = cell.comparison->absolute.p_value;
          cell.adjusted_rel_p = cell.comparison->relative.p_value;
        }
      } else {
        cell.adjusted_abs_p = abs_adj->adjusted[k];
        cell.adjusted_rel_p = rel_adj->adjusted[k];
        ++k;
      }
    }
  }

  // Per-variant output, filtered.
  for (size_t v = 0; v < n_variants; ++v) {
    v1::VariantResult* out = response->add_variants();
    out->set_key(layout.variant_keys[v]);
    out->set_exposed_units(agg.variants[v].exposed);
    out->set_is_control(v == 0);
    for (size_t m = 0; m < layout.metrics.size(); ++m) {
      const Metric& metric = layout.metrics[m];
      if (!request.metric_keys().empty()) {
        bool wanted = false;
        for (const std::string& key : request.metric_keys()) {
          wanted |= key == metric.key;
        }
        if (!wanted) continue;
      }
      v1::MetricResult* mr = out->add_metrics();
      mr->set_metric_key(metric.key);
      mr->set_type(MetricTypeName(metric.type));
      mr->set_guardrail(metric.guardrail);
      mr->set_primary(metric.key == experiment->primary_metric);
      mr->set_higher_is_better(metric.higher_is_better);
      if (std::optional<double> e = ArmEstimate(metric, agg.variants[v])) {
        mr->set_estimate(*e);
      }
      if (v == 0) continue;
      const Cell& cell = cells[m][v];
      for (const std::string& w : cell.warnings) mr->add_warnings(w);
      if (cell.comparison) {
        FillEffect(cell.comparison->absolute, cell.adjusted_abs_p,
                   mr->mutable_absolute());
        FillEffect(cell.comparison->relative, cell.adjusted_rel_p,
                   mr->mutable_relative());
        const stats::SequentialInterval& s = cell.comparison->sequential;
        if (s.ci_low) mr->mutable_sequential()->set_ci_low(*s.ci_low);
        if (s.ci_high) mr->mutable_sequential()->set_ci_high(*s.ci_high);
        if (s.p_value) mr->mutable_sequential()->set_p_value(*s.p_value);
        for (const std::string& w : cell.comparison->warnings) {
          mr->add_warnings(w);
        }
      }
      if (cell.bayes) {
        const stats::BayesResult& b = *cell.bayes;
        v1::BayesFigures* bo = mr->mutable_bayes();
        if (b.chance_to_beat_control) {
          bo->set_chance_to_beat_control(*b.chance_to_beat_control);
        }
        if (b.expected_loss_ship)
          bo->set_expected_loss_ship(*b.expected_loss_ship);
        if (b.expected_loss_keep)
          bo->set_expected_loss_keep(*b.expected_loss_keep);
        for (const std::string& w : b.warnings) mr->add_warnings(w);
      }
    }
  }

  // Guardrail verdicts.
  std::optional<std::pair<std::string, std::string>> worse_guardrail;
  for (size_t m = 0; m < layout.metrics.size(); ++m) {
    const Metric& metric = layout.metrics[m];
    if (!metric.guardrail) continue;
    for (size_t v = 1; v < n_variants; ++v) {
      const Cell& cell = cells[m][v];
      v1::GuardrailVerdict* g = response->add_guardrails();
      g->set_metric_key(metric.key);
      g->set_variant_key(layout.variant_keys[v]);
      bool worse = false;
      if (cell.comparison && cell.comparison->absolute.p_value) {
        g->set_p_value(*cell.comparison->absolute.p_value);
        worse = *cell.comparison->absolute.p_value < alpha &&
                cell.comparison->absolute.estimate &&
                IsWorse(metric, *cell.comparison->absolute.estimate);
      }
      g->set_worse(worse);
      if (worse && !worse_guardrail) {
        worse_guardrail.emplace(metric.key, layout.variant_keys[v]);
      }
    }
  }

  // The decision (docs/statistics.md, "Results RPC").
  v1::Decision* decision = response->mutable_decision();
  if (srm_mismatch) {
    decision->set_kind(v1::DECISION_KIND_DO_NOT_TRUST);
    decision->set_text("do not trust: sample ratio mismatch");
    return absl::OkStatus();
  }
  if (worse_guardrail) {
    decision->set_kind(v1::DECISION_KIND_GUARDRAIL_WORSE);
    decision->set_metric(worse_guardrail->first);
    decision->set_variant(worse_guardrail->second);
    decision->set_text(
        absl::StrCat("guardrail ", worse_guardrail->first, " worse"));
    return absl::OkStatus();
  }
  int primary = -1;
  for (size_t m = 0; m < layout.metrics.size(); ++m) {
    if (layout.metrics[m].key == experiment->primary_metric) primary = m;
  }
  if (primary >= 0) {
    const Metric& metric = layout.metrics[primary];
    int best = -1;
    double best_estimate = 0;
    for (size_t v = 1; v < n_variants; ++v) {
      const Cell& cell = cells[primary][v];
      if (!cell.comparison || !cell.adjusted_abs_p ||
          !cell.comparison->absolute.estimate) {
        continue;
      }
      const double e = *cell.comparison->absolute.estimate;
      if (*cell.adjusted_abs_p < alpha && IsBetter(metric, e) &&
          (best < 0 || IsBetter(metric, e - best_estimate))) {
        best = v;
        best_estimate = e;
      }
    }
    if (best >= 0) {
      decision->set_kind(v1::DECISION_KIND_SHIP);
      decision->set_variant(layout.variant_keys[best]);
      decision->set_metric(metric.key);
      decision->set_text(absl::StrCat("ship ", layout.variant_keys[best]));
      return absl::OkStatus();
    }
  }
  // Power at the control's observed figures: a conversion rate for
  // binomial-like metrics; a mean or ratio and its per-unit SD otherwise.
  // Without them (no conversions, fewer than 2 units, no traffic) the
  // experiment keeps running without a day count.
  decision->set_kind(v1::DECISION_KIND_KEEP_RUNNING);
  decision->set_text("keep running");
  std::optional<stats::TrafficSnapshot> traffic;
  if (primary >= 0 && n_variants >= 2) {
    const Metric& metric = layout.metrics[primary];
    const std::optional<double> baseline =
        ArmEstimate(metric, agg.variants[0]);
    if (IsBinomialLike(metric.type)) {
      traffic.emplace();
      traffic->baseline = baseline.value_or(0);
    } else {
      // The variance of the control's estimate times its units is the
      // per-unit variance (of the linearized unit, for a ratio). Any
      // treatment arm's comparison carries the same control figures.
      const Cell& cell = cells[primary][1];
      if (baseline && cell.comparison &&
          cell.comparison->control_variance.has_value()) {
        traffic.emplace();
        traffic->baseline = *baseline;
        traffic->unit_sd =
            std::sqrt(*cell.comparison->control_variance *
                      static_cast<double>(agg.variants[0].exposed));
      }
    }
  }
  if (traffic) {
    traffic->exposed = exposed;
    traffic->units_per_day = UnitsPerDay(agg);
    stats::PowerOptions power;
    power.alpha = alpha;
    absl::StatusOr<stats::DaysToPowerResult> days =
        stats::DaysToPower(*traffic, kResultsRelativeMde, power);
    if (days.ok() && days->more_days.has_value()) {
      if (*days->more_days == 0) {
        decision->set_kind(v1::DECISION_KIND_NO_DETECTABLE_EFFECT);
        decision->set_text("no detectable effect");
      } else {
        decision->set_more_days(*days->more_days);
        decision->set_text(absl::StrCat("keep running (about ",
                                        *days->more_days,
                                        " more days to reach 80% power)"));
      }
    }
  }
  return absl::OkStatus();
}

ResultsServiceImpl::ResultsServiceImpl(const ConfigStore* config_store,
                                       EventStore* event_store)
    : config_store_(config_store), event_store_(event_store) {}

absl::Status HandleGetResults(const ConfigStore& store, EventStore* events,
                              const v1::GetResultsRequest& request,
                              v1::GetResultsResponse* response) {
  std::shared_ptr<const Config> config = store.Snapshot();
  return ComputeResults(*config, request, events, response);
}

grpc::ServerUnaryReactor* ResultsServiceImpl::GetResults(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return ServeInline<v1::GetResultsRequest, v1::GetResultsResponse>(
      &in_flight_, request, response,
      [&](const v1::GetResultsRequest& req, v1::GetResultsResponse* resp) {
        return HandleGetResults(*config_store_, event_store_, req, resp);
      });
}

}  // namespace abexp
