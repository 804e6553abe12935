#include "server/service/results_service.h"

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "server/core/config.h"
#include "server/core/error_text.h"
#include "server/core/results.h"
#include "server/service/rpc_handlers.h"
#include "server/service/unary_call.h"
#include "stats/adjust.h"

namespace abexp {
namespace {

// A request that passed every check.
struct ResultsQuery {
  const Experiment* experiment = nullptr;  // in the config snapshot
  ResultsOptions options;
};

absl::StatusOr<const Experiment*> FindExperimentOf(
    const Config& config, const v1::GetResultsRequest& request) {
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
    return absl::NotFoundError(absl::StrCat(
        "no experiment \"", ClipForMessage(request.experiment_key()),
        "\" in config ", config.version, "; known experiments: ",
        keys.empty() ? "(none)" : absl::StrJoin(keys, ", ")));
  }
  return experiment;
}

absl::Status CheckMetricKeys(const Experiment& experiment,
                             const v1::GetResultsRequest& request) {
  for (const std::string& key : request.metric_keys()) {
    bool found = false;
    for (const std::string& m : experiment.metrics) found |= m == key;
    if (!found) {
      return absl::InvalidArgumentError(
          absl::StrCat("metric_keys has \"", ClipForMessage(key),
                       "\", which is not a metric of experiment ",
                       experiment.key, "; its metrics: ",
                       experiment.metrics.empty()
                           ? "(none)"
                           : absl::StrJoin(experiment.metrics, ", ")));
    }
  }
  return absl::OkStatus();
}

// Checks the request against `config`, in the order the errors are
// documented: the experiment, alpha, the adjust method, the metric keys.
absl::StatusOr<ResultsQuery> ParseRequest(
    const Config& config, const v1::GetResultsRequest& request) {
  ResultsQuery query;
  absl::StatusOr<const Experiment*> experiment =
      FindExperimentOf(config, request);
  if (!experiment.ok()) return experiment.status();
  query.experiment = *experiment;
  if (request.has_alpha()) {
    query.options.alpha = request.alpha();
    if (absl::Status s = CheckResultsAlpha(query.options.alpha); !s.ok()) {
      return s;
    }
  }
  if (request.has_adjust_method()) {
    absl::StatusOr<stats::AdjustMethod> parsed =
        stats::ParseAdjustMethod(request.adjust_method());
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "adjust_method \"", ClipForMessage(request.adjust_method()),
          "\" is not known; use \"holm\" or \"bh\""));
    }
    query.options.adjust_method = *parsed;
  }
  if (absl::Status s = CheckMetricKeys(**experiment, request); !s.ok()) {
    return s;
  }
  query.options.daily = request.include_daily();
  query.options.dimension = request.dimension();
  query.options.adjust_segments = request.adjust_segments();
  return query;
}

// Reads the experiment's aggregates with the segments of `dimension` only
// (none when it is empty): each dimension costs a read per value and shard,
// which a request that does not show it must not pay.
absl::StatusOr<ExperimentAggregates> ReadAggregatesOf(
    const Config& config, const Experiment& experiment,
    const std::string& dimension, EventStore* store) {
  ExperimentLayout layout = LayoutOf(config, experiment);
  std::vector<Dimension> asked;
  for (Dimension& d : layout.dimensions) {
    if (d.attribute == dimension) asked.push_back(std::move(d));
  }
  layout.dimensions = std::move(asked);
  absl::StatusOr<ExperimentAggregates> read = store->ReadAggregates(layout);
  if (!read.ok() && (absl::IsUnavailable(read.status()) ||
                     absl::IsDeadlineExceeded(read.status()))) {
    return absl::UnavailableError(
        absl::StrCat("cannot read the results of ", experiment.key,
                     ": Redis is unavailable (", read.status().message(),
                     "); retry when Redis is back"));
  }
  return read;
}

// --- ExperimentResults to the response ---

v1::DecisionKind ToProto(DecisionKind kind) {
  switch (kind) {
    case DecisionKind::kDoNotTrust:
      return v1::DECISION_KIND_DO_NOT_TRUST;
    case DecisionKind::kGuardrailWorse:
      return v1::DECISION_KIND_GUARDRAIL_WORSE;
    case DecisionKind::kShip:
      return v1::DECISION_KIND_SHIP;
    case DecisionKind::kKeepRunning:
      return v1::DECISION_KIND_KEEP_RUNNING;
    case DecisionKind::kNoDetectableEffect:
      return v1::DECISION_KIND_NO_DETECTABLE_EFFECT;
  }
  return v1::DECISION_KIND_UNSPECIFIED;
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

void FillComparison(const MetricResult& cell, v1::MetricResult* out) {
  const stats::Comparison& c = *cell.comparison;
  FillEffect(c.absolute, cell.adjusted_absolute_p_value,
             out->mutable_absolute());
  FillEffect(c.relative, cell.adjusted_relative_p_value,
             out->mutable_relative());
  const stats::SequentialInterval& s = c.sequential;
  if (s.ci_low) out->mutable_sequential()->set_ci_low(*s.ci_low);
  if (s.ci_high) out->mutable_sequential()->set_ci_high(*s.ci_high);
  if (s.p_value) out->mutable_sequential()->set_p_value(*s.p_value);
}

void FillCuped(const CupedResult& cuped, v1::CupedFigures* out) {
  out->set_units_with_covariate(cuped.units);
  out->set_units_without_covariate(cuped.units_without);
  if (cuped.estimate) out->set_estimate(*cuped.estimate);
  for (const std::string& w : cuped.warnings) out->add_warnings(w);
  if (!cuped.comparison) return;
  const stats::CupedComparison& c = *cuped.comparison;
  FillEffect(c.adjusted.absolute, std::nullopt, out->mutable_absolute());
  FillEffect(c.adjusted.relative, std::nullopt, out->mutable_relative());
  const stats::SequentialInterval& s = c.adjusted.sequential;
  if (s.ci_low) out->mutable_sequential()->set_ci_low(*s.ci_low);
  if (s.ci_high) out->mutable_sequential()->set_ci_high(*s.ci_high);
  if (s.p_value) out->mutable_sequential()->set_p_value(*s.p_value);
  if (c.theta) out->set_theta(*c.theta);
  if (c.variance_reduction) out->set_variance_reduction(*c.variance_reduction);
}

void FillStepComparison(const std::optional<stats::Comparison>& c,
                        v1::StepComparison* out) {
  if (!c) return;
  FillEffect(c->absolute, std::nullopt, out->mutable_absolute());
  FillEffect(c->relative, std::nullopt, out->mutable_relative());
}

void FillFunnelStep(const FunnelStepResult& step, v1::FunnelStepFigures* out) {
  out->set_event(step.event);
  out->set_units(step.units);
  if (step.rate_from_exposure) {
    out->set_rate_from_exposure(*step.rate_from_exposure);
  }
  if (step.rate_from_previous) {
    out->set_rate_from_previous(*step.rate_from_previous);
  }
  if (step.from_exposure) {
    FillStepComparison(step.from_exposure, out->mutable_from_exposure());
  }
  if (step.from_previous) {
    FillStepComparison(step.from_previous, out->mutable_from_previous());
  }
  for (const std::string& w : step.warnings) out->add_warnings(w);
}

void FillBayes(const stats::BayesResult& b, v1::BayesFigures* out) {
  if (b.chance_to_beat_control) {
    out->set_chance_to_beat_control(*b.chance_to_beat_control);
  }
  if (b.expected_loss_ship) out->set_expected_loss_ship(*b.expected_loss_ship);
  if (b.expected_loss_keep) out->set_expected_loss_keep(*b.expected_loss_keep);
}

void FillMetric(const MetricResult& cell, v1::MetricResult* out) {
  out->set_metric_key(cell.metric_key);
  out->set_type(MetricTypeName(cell.type));
  out->set_guardrail(cell.guardrail);
  out->set_primary(cell.primary);
  out->set_higher_is_better(cell.higher_is_better);
  if (cell.estimate) out->set_estimate(*cell.estimate);
  for (const std::string& w : cell.warnings) out->add_warnings(w);
  if (cell.comparison) FillComparison(cell, out);
  if (cell.bayes) FillBayes(*cell.bayes, out->mutable_bayes());
  if (cell.cuped) FillCuped(*cell.cuped, out->mutable_cuped());
  for (const FunnelStepResult& step : cell.funnel) {
    FillFunnelStep(step, out->add_funnel_steps());
  }
}

// Metrics not in a non-empty `metric_keys` are left out of the variants.
void FillVariants(
    const std::vector<VariantResults>& variants,
    const v1::GetResultsRequest& request,
    google::protobuf::RepeatedPtrField<v1::VariantResult>* response) {
  for (const VariantResults& variant : variants) {
    v1::VariantResult* out = response->Add();
    out->set_key(variant.key);
    out->set_exposed_units(variant.exposed_units);
    out->set_is_control(variant.is_control);
    for (const MetricResult& cell : variant.metrics) {
      if (!request.metric_keys().empty()) {
        bool wanted = false;
        for (const std::string& key : request.metric_keys()) {
          wanted |= key == cell.metric_key;
        }
        if (!wanted) continue;
      }
      FillMetric(cell, out->add_metrics());
    }
  }
}

void FillSampleRatio(const stats::SrmResult& result, v1::SampleRatio* srm) {
  if (result.chi2) srm->set_chi2(*result.chi2);
  if (result.p_value) srm->set_p_value(*result.p_value);
  srm->set_mismatch(result.mismatch);
  for (const std::string& w : result.warnings) srm->add_warnings(w);
}

void FillResponse(const ExperimentResults& results,
                  const v1::GetResultsRequest& request,
                  v1::GetResultsResponse* response) {
  response->set_experiment_key(results.experiment_key);
  response->set_phase(results.phase);
  response->set_config_version(results.config_version);
  response->set_alpha(results.alpha);
  response->set_adjust_method(
      std::string(stats::AdjustMethodName(results.adjust_method)));
  response->set_multi_exposed_units(results.multi_exposed_units);
  for (const auto& [version, exposures] : results.config_versions) {
    v1::ConfigVersionSeen* seen = response->add_config_versions();
    seen->set_version(version);
    seen->set_exposures(exposures);
  }
  FillSampleRatio(results.srm, response->mutable_srm());
  FillVariants(results.variants, request, response->mutable_variants());
  response->set_dimension(results.dimension);
  response->set_segments_adjusted(results.segments_adjusted);
  for (const SegmentResults& segment : results.segments) {
    v1::SegmentResult* out = response->add_segments();
    out->set_value(segment.value);
    FillSampleRatio(segment.srm, out->mutable_srm());
    FillVariants(segment.variants, request, out->mutable_variants());
    for (const std::string& w : segment.warnings) out->add_warnings(w);
  }
  for (const DayResults& day : results.daily) {
    v1::DayResult* out = response->add_daily();
    out->set_day(day.day);
    for (int64_t n : day.exposed_on_day) out->add_exposed_on_day(n);
    FillVariants(day.variants, request, out->mutable_variants());
  }
  for (const GuardrailVerdict& verdict : results.guardrails) {
    v1::GuardrailVerdict* g = response->add_guardrails();
    g->set_metric_key(verdict.metric_key);
    g->set_variant_key(verdict.variant_key);
    if (verdict.p_value) g->set_p_value(*verdict.p_value);
    g->set_worse(verdict.worse);
  }
  v1::Decision* decision = response->mutable_decision();
  decision->set_kind(ToProto(results.decision.kind));
  decision->set_variant(results.decision.variant);
  decision->set_metric(results.decision.metric);
  if (results.decision.more_days) {
    decision->set_more_days(*results.decision.more_days);
  }
  decision->set_text(results.decision.text);
}

}  // namespace

ResultsServiceImpl::ResultsServiceImpl(const ConfigStore* config_store,
                                       EventStore* event_store,
                                       StorageExecutor* executor,
                                       const CallAuthorizer* authorizer)
    : config_store_(config_store),
      event_store_(event_store),
      executor_(executor),
      authorizer_(authorizer) {}

absl::Status HandleGetResults(const ConfigStore& store, EventStore* events,
                              const v1::GetResultsRequest& request,
                              v1::GetResultsResponse* response) {
  std::shared_ptr<const Config> config = store.Snapshot();
  absl::StatusOr<ResultsQuery> query = ParseRequest(*config, request);
  if (!query.ok()) return query.status();
  absl::StatusOr<ExperimentAggregates> aggregates = ReadAggregatesOf(
      *config, *query->experiment, query->options.dimension, events);
  if (!aggregates.ok()) return aggregates.status();
  absl::StatusOr<ExperimentResults> results =
      ComputeResults(*config, *query->experiment, *std::move(aggregates),
                     query->options, absl::Now());
  if (!results.ok()) return results.status();
  FillResponse(*results, request, response);
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* ResultsServiceImpl::GetResults(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return ServeOnExecutor<v1::GetResultsRequest, v1::GetResultsResponse>(
      executor_, context,
      RpcAccess<v1::GetResultsRequest>{
          authorizer_, "abexp.v1.ResultsService/GetResults", kRoleResults},
      &in_flight_, request, response,
      [this](const v1::GetResultsRequest& req, v1::GetResultsResponse* resp) {
        return HandleGetResults(*config_store_, event_store_, req, resp);
      });
}

}  // namespace abexp
