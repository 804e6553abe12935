#include "server/service/assignment_service.h"

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "server/core/assigner.h"
#include "server/core/config.h"
#include "server/core/error_text.h"
#include "server/core/exposure_policy.h"
#include "server/core/sticky.h"
#include "server/service/assign_response.h"

namespace abexp {

namespace {

// ---- proto -> core ----

// ConvertUnit, then ValidateUnit with its messages naming `field`.
absl::StatusOr<Unit> UnitFromProto(const IndexedConfig& config,
                                   const v1::Unit& proto,
                                   const std::string& field) {
  absl::StatusOr<Unit> converted = ConvertUnit(proto, field);
  if (!converted.ok()) return converted.status();
  if (absl::Status s = ValidateUnit(config, *converted, field); !s.ok()) {
    return s;
  }
  return converted;
}

absl::Status CheckHasUnit(bool has_unit) {
  if (has_unit) return absl::OkStatus();
  return absl::InvalidArgumentError(
      "unit is required; set unit.ids with the id your experiments hash on, "
      "e.g. {\"user_id\": \"u-123\"}");
}

absl::StatusOr<Unit> RequiredUnit(const IndexedConfig& config, bool has_unit,
                                  const v1::Unit& proto) {
  if (absl::Status s = CheckHasUnit(has_unit); !s.ok()) return s;
  return UnitFromProto(config, proto, "unit");
}

// ---- core -> proto ----

v1::ExperimentStatus StatusToProto(ExperimentStatus status) {
  switch (status) {
    case ExperimentStatus::kDraft:
      return v1::EXPERIMENT_STATUS_DRAFT;
    case ExperimentStatus::kRunning:
      return v1::EXPERIMENT_STATUS_RUNNING;
    case ExperimentStatus::kPaused:
      return v1::EXPERIMENT_STATUS_PAUSED;
    case ExperimentStatus::kStopped:
      return v1::EXPERIMENT_STATUS_STOPPED;
  }
  return v1::EXPERIMENT_STATUS_UNSPECIFIED;
}

void RangeToProto(const BucketRange& range, v1::BucketRange* proto) {
  proto->set_start(range.start);
  proto->set_end(range.end);
}

void HashToProto(const BucketTrace& trace, const std::string& salt,
                 const std::string& unit_id_type, const std::string& unit_id,
                 v1::HashTrace* proto) {
  proto->set_input_hex(absl::BytesToHexString(trace.input));
  proto->set_hash_hex(absl::StrFormat("%016x", trace.hash));
  proto->set_bucket(trace.bucket);
  proto->set_salt(salt);
  proto->set_unit_id_type(unit_id_type);
  proto->set_unit_id(unit_id);
}

std::string FormatTime(const std::optional<absl::Time>& time) {
  if (!time.has_value()) return "";
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E*SZ", *time, absl::UTCTimeZone());
}

void ExperimentToProto(const Experiment& e, const std::string& version,
                       v1::Experiment* proto) {
  proto->set_key(e.key);
  proto->set_description(e.description);
  proto->set_owner(e.owner);
  proto->set_status(StatusToProto(e.status));
  proto->set_rollout_variant(e.rollout_variant);
  proto->set_unit_id_type(e.unit_id_type);
  proto->set_salt(e.salt);
  proto->set_phase(e.phase);
  proto->set_traffic_bp(e.traffic_bp);
  for (const Variant& v : e.variants) {
    v1::ExperimentVariant* pv = proto->add_variants();
    pv->set_key(v.key);
    pv->set_weight(v.weight_text);
    RangeToProto(v.full_range, pv->mutable_full_range());
    RangeToProto(v.active_range, pv->mutable_active_range());
    for (const auto& [feature, value] : v.features) {
      FeatureValueToProto(value, &(*pv->mutable_features())[feature]);
    }
  }
  proto->set_targeting(e.targeting_text);
  proto->set_layer(e.layer);
  RangeToProto(e.layer_range, proto->mutable_layer_range());
  proto->set_start_time(FormatTime(e.start_time));
  proto->set_end_time(FormatTime(e.end_time));
  for (const std::string& m : e.metrics) proto->add_metrics(m);
  proto->set_qa_override_count(static_cast<int32_t>(e.qa_overrides.size()));
  proto->set_config_version(version);
}

std::string UnitIdOf(const Unit& unit, const std::string& type) {
  auto it = unit.ids.find(type);
  return it == unit.ids.end() ? std::string() : it->second;
}

void ExplainToProto(const Config& config, const Unit& unit,
                    const ExplainResult& r,
                    v1::ExplainAssignmentResponse* proto) {
  const Experiment& e = *r.experiment;
  proto->set_config_version(config.version);
  proto->set_experiment_key(e.key);
  if (r.variant_index >= 0) {
    proto->set_variant_key(e.variants[r.variant_index].key);
    proto->set_reason(ReasonToProto(r.reason));
  }
  proto->set_summary(r.summary);
  for (const ExplainStep& s : r.steps) {
    v1::ExplainStep* ps = proto->add_steps();
    ps->set_check(s.check);
    ps->set_passed(s.passed);
    ps->set_detail(s.detail);
  }
  for (const RuleTraceEntry& t : r.targeting) {
    v1::RuleTrace* pt = proto->add_targeting();
    pt->set_depth(t.depth);
    pt->set_rule(t.rule);
    pt->set_matched(t.matched);
    pt->set_actual(t.actual);
  }
  if (r.has_variant_hash) {
    HashToProto(r.variant_hash, e.salt, e.unit_id_type, r.unit_id,
                proto->mutable_variant_hash());
  }
  if (r.variant_index >= 0 && (r.reason == AssignmentReason::kBucketed ||
                               r.reason == AssignmentReason::kStickyUnread)) {
    RangeToProto(e.variants[r.variant_index].active_range,
                 proto->mutable_matched_range());
  }
  for (const Variant& v : e.variants) {
    v1::VariantRange* pv = proto->add_variant_ranges();
    pv->set_variant_key(v.key);
    RangeToProto(v.active_range, pv->mutable_range());
  }
  if (r.has_layer) {
    v1::LayerTrace* pl = proto->mutable_layer();
    pl->set_layer(e.layer);
    const Layer* layer = config.FindLayer(e.layer);
    std::string salt = layer != nullptr ? layer->salt : e.layer;
    std::string type = layer != nullptr ? layer->unit_id_type : e.unit_id_type;
    HashToProto(r.layer_hash, salt, type, UnitIdOf(unit, type),
                pl->mutable_hash());
    RangeToProto(e.layer_range, pl->mutable_experiment_range());
    pl->set_in_range(r.in_layer_range);
  }
  if (r.has_holdout && config.holdout.has_value()) {
    const Holdout& h = *config.holdout;
    v1::HoldoutTrace* ph = proto->mutable_holdout();
    HashToProto(r.holdout_hash, h.salt, h.unit_id_type,
                UnitIdOf(unit, h.unit_id_type), ph->mutable_hash());
    ph->set_threshold(h.bp);
    ph->set_held_out(r.held_out);
  }
}

std::vector<std::string> ToVector(
    const google::protobuf::RepeatedPtrField<std::string>& keys) {
  return std::vector<std::string>(keys.begin(), keys.end());
}

// ---- the calls ----

// The recorded variants of each unit's sticky lookups, one map per unit;
// none at all without a reader. Errors: those Assign would return.
absl::StatusOr<std::vector<RecordedVariants>> ReadRecordedVariants(
    const IndexedConfig& config, absl::Span<const Unit> units,
    const AssignOptions& options, const StickyRead& sticky) {
  if (sticky.reader == nullptr) {
    return std::vector<RecordedVariants>(units.size());
  }
  if (!sticky.skip.ok()) {
    return sticky.reader->SkipForUnits(config, units, options, sticky.skip);
  }
  return sticky.reader->ReadForUnits(config, units, options);
}

// Records ExposuresToRecord(result). Returns why that failed, as
// "CODE: message", or "".
std::string RecordAssignedExposures(const IndexedConfig& config,
                                    const Unit& unit,
                                    const AssignResult& result, absl::Time now,
                                    const Recorder* recorder,
                                    RecordCounters* records) {
  const std::vector<ExposureInput> exposures =
      ExposuresToRecord(config, unit, result);
  if (exposures.empty()) return "";
  if (recorder == nullptr) {
    return "FAILED_PRECONDITION: this abexp-server does not record exposures; "
           "start it with --redis=HOST:PORT";
  }
  absl::StatusOr<RecordBatchResult> recorded =
      recorder->RecordExposures(config, exposures, now);
  if (recorded.ok()) {
    CountRecords(*recorded, RecordCounters::Kind::kExposure, records);
    return "";
  }
  return absl::StrCat(absl::StatusCodeToString(recorded.status().code()), ": ",
                      recorded.status().message());
}

// NOT_FOUND, as Assign answers it, for the first key of
// options.experiment_keys or options.feature_keys not in the config.
absl::Status CheckFilterKeys(const Config& config,
                             const AssignOptions& options) {
  for (const std::string& key : options.experiment_keys) {
    if (config.FindExperiment(key) == nullptr) {
      return absl::NotFoundError(absl::StrCat(
          "experiment_keys: '", ClipForMessage(key),
          "' is not in config version ", config.version,
          "; check the spelling, or ListExperiments to see the keys"));
    }
  }
  for (const std::string& key : options.feature_keys) {
    if (config.FindFeature(key) == nullptr) {
      return absl::NotFoundError(
          absl::StrCat("feature_keys: '", ClipForMessage(key),
                       "' is not in config version ", config.version,
                       "; check the spelling against the config's features"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

namespace {

// What Assign decided for one request, before it becomes an answer.
struct AssignOutcome {
  AssignResult result;
  std::string exposure_error;  // set when the request asked to record
};

absl::StatusOr<AssignOutcome> ComputeAssign(const IndexedConfig& config,
                                            const Recorder* recorder,
                                            const StickyRead& sticky,
                                            const v1::AssignRequest& request,
                                            ServingCounters counters) {
  if (absl::Status s = CheckHasUnit(request.has_unit()); !s.ok()) return s;
  // Not validated here: StickyLookups and Assign validate the unit before
  // anything else, with the same messages ValidateUnit gives for "unit",
  // so checking it here too would only do the work twice per call.
  absl::StatusOr<Unit> unit = ConvertUnit(request.unit(), "unit");
  if (!unit.ok()) return unit.status();
  AssignOptions options;
  options.experiment_keys = ToVector(request.experiment_keys());
  options.feature_keys = ToVector(request.feature_keys());
  options.now = absl::Now();
  // A span over the unit itself: `{*unit}` would copy all its ids and
  // attributes on every call.
  absl::StatusOr<std::vector<RecordedVariants>> recorded = ReadRecordedVariants(
      config, absl::MakeConstSpan(&*unit, 1), options, sticky);
  if (!recorded.ok()) return recorded.status();
  options.recorded_variants = std::move((*recorded)[0]);
  absl::StatusOr<AssignResult> result = abexp::Assign(config, *unit, options);
  if (!result.ok()) return result.status();
  if (counters.assignments != nullptr) {
    counters.assignments->Count(config, *result);
  }
  AssignOutcome outcome;
  if (request.record_exposure()) {
    outcome.exposure_error = RecordAssignedExposures(
        config, *unit, *result, options.now, recorder, counters.records);
  }
  outcome.result = *std::move(result);
  return outcome;
}

}  // namespace

absl::Status HandleAssign(const IndexedConfig& config, const Recorder* recorder,
                          const StickyRead& sticky,
                          const v1::AssignRequest& request,
                          v1::AssignResponse* response,
                          ServingCounters counters) {
  absl::StatusOr<AssignOutcome> outcome =
      ComputeAssign(config, recorder, sticky, request, counters);
  if (!outcome.ok()) return outcome.status();
  AssignResultToProto(config, outcome->result, response);
  response->set_exposure_error(outcome->exposure_error);
  return absl::OkStatus();
}

absl::Status HandleAssignEncoded(const IndexedConfig& config,
                                 const AssignResponseEncoder& encoder,
                                 const Recorder* recorder,
                                 const StickyRead& sticky,
                                 const v1::AssignRequest& request,
                                 std::string* response_bytes,
                                 ServingCounters counters) {
  absl::StatusOr<AssignOutcome> outcome =
      ComputeAssign(config, recorder, sticky, request, counters);
  if (!outcome.ok()) return outcome.status();
  encoder.Encode(outcome->result, outcome->exposure_error, response_bytes);
  return absl::OkStatus();
}

const AssignResponseEncoder& EncoderFor(
    const std::shared_ptr<const IndexedConfig>& config) {
  // One per thread: building one costs a few milliseconds once per config,
  // and no call waits on another thread's.
  struct Cached {
    const IndexedConfig* config = nullptr;
    std::weak_ptr<const IndexedConfig> alive;  // config, while it lives
    std::unique_ptr<AssignResponseEncoder> encoder;
  };
  thread_local Cached cached;
  // The same address is the same config only while the cached one lives.
  if (cached.config != config.get() || cached.alive.expired()) {
    cached.encoder = std::make_unique<AssignResponseEncoder>(*config);
    cached.config = config.get();
    cached.alive = config;
  }
  return *cached.encoder;
}

absl::Status HandleBatchAssign(const IndexedConfig& config,
                               const StickyRead& sticky,
                               const v1::BatchAssignRequest& request,
                               v1::BatchAssignResponse* response,
                               ServingCounters counters) {
  if (request.units_size() > kMaxBatchUnits) {
    return absl::InvalidArgumentError(absl::StrCat(
        "units has ", request.units_size(), " entries; send at most ",
        kMaxBatchUnits, " per BatchAssign call and split larger batches"));
  }
  AssignOptions options;
  options.experiment_keys = ToVector(request.experiment_keys());
  options.feature_keys = ToVector(request.feature_keys());
  options.now = absl::Now();  // one clock reading: one answer for the batch
  // Validate every unit before assigning any, so an error costs no work.
  std::vector<Unit> units;
  units.reserve(request.units_size());
  for (int i = 0; i < request.units_size(); ++i) {
    absl::StatusOr<Unit> unit =
        UnitFromProto(config, request.units(i), absl::StrCat("units[", i, "]"));
    if (!unit.ok()) return unit.status();
    units.push_back(*std::move(unit));
  }
  if (units.empty()) {
    // Assign checks the filters; with no units, check them here so a typo
    // is NOT_FOUND whatever the batch size.
    if (absl::Status s = CheckFilterKeys(config, options); !s.ok()) return s;
  }
  // Every unit's sticky lookups in one store call.
  absl::StatusOr<std::vector<RecordedVariants>> recorded =
      ReadRecordedVariants(config, units, options, sticky);
  if (!recorded.ok()) return recorded.status();
  response->set_config_version(config.version);
  std::vector<AssignResult> results;
  if (counters.assignments != nullptr) results.reserve(units.size());
  for (size_t i = 0; i < units.size(); ++i) {
    const Unit& unit = units[i];
    options.recorded_variants = std::move((*recorded)[i]);
    absl::StatusOr<AssignResult> result = abexp::Assign(config, unit, options);
    if (!result.ok()) return result.status();
    AssignResultToProto(config, *result, response->add_results());
    // Counted once the whole batch is served: an error ends the call
    // without an answer.
    if (counters.assignments != nullptr) {
      results.push_back(*std::move(result));
    }
  }
  for (const AssignResult& result : results) {
    counters.assignments->Count(config, result);
  }
  return absl::OkStatus();
}

absl::Status HandleExplainAssignment(
    const IndexedConfig& config, const StickyRead& sticky,
    const v1::ExplainAssignmentRequest& request,
    v1::ExplainAssignmentResponse* response) {
  if (request.experiment_key().empty()) {
    return absl::InvalidArgumentError(
        "experiment_key is required; pass the key of the experiment to explain "
        "(ListExperiments shows them)");
  }
  absl::StatusOr<Unit> unit =
      RequiredUnit(config, request.has_unit(), request.unit());
  if (!unit.ok()) return unit.status();
  const absl::Time now = absl::Now();
  // The same lookup Assign would make, so both give the same variant.
  std::optional<RecordedVariantResult> recorded;
  const Experiment* e = config.FindExperiment(request.experiment_key());
  if (e != nullptr && sticky.reader != nullptr) {
    recorded =
        sticky.reader->ReadForExplain(config, *unit, *e, now, sticky.skip);
  }
  absl::StatusOr<ExplainResult> result =
      abexp::Explain(config, *unit, request.experiment_key(), now,
                     recorded.has_value() ? &*recorded : nullptr);
  if (!result.ok()) return result.status();
  ExplainToProto(config, *unit, *result, response);
  return absl::OkStatus();
}

absl::Status HandleListExperiments(const ConfigStore& store,
                                   const v1::ListExperimentsRequest& request,
                                   v1::ListExperimentsResponse* response) {
  bool wanted[5] = {false, false, false, false, false};
  for (int i = 0; i < request.statuses_size(); ++i) {
    int s = request.statuses(i);
    if (s <= v1::EXPERIMENT_STATUS_UNSPECIFIED ||
        s > v1::EXPERIMENT_STATUS_STOPPED) {
      return absl::InvalidArgumentError(absl::StrCat(
          "statuses[", i, "] is ", s,
          ", not a status to filter on; use EXPERIMENT_STATUS_DRAFT, _RUNNING, "
          "_PAUSED or _STOPPED, or leave statuses empty to list all"));
    }
    wanted[s] = true;
  }
  std::shared_ptr<const IndexedConfig> config = store.Snapshot();
  response->set_config_version(config->version);
  for (const Experiment& e : config->experiments) {
    if (request.statuses_size() > 0 && !wanted[StatusToProto(e.status)])
      continue;
    ExperimentToProto(e, config->version, response->add_experiments());
  }
  return absl::OkStatus();
}

absl::Status HandleGetExperiment(const ConfigStore& store,
                                 const v1::GetExperimentRequest& request,
                                 v1::Experiment* response) {
  if (request.experiment_key().empty()) {
    return absl::InvalidArgumentError(
        "experiment_key is required; pass the key of an experiment "
        "(ListExperiments shows them)");
  }
  std::shared_ptr<const IndexedConfig> config = store.Snapshot();
  const Experiment* e = config->FindExperiment(request.experiment_key());
  if (e == nullptr) {
    return absl::NotFoundError(absl::StrCat(
        "experiment_key '", ClipForMessage(request.experiment_key()),
        "' is not in config version ", config->version,
        "; check the spelling, or ListExperiments to see the keys"));
  }
  ExperimentToProto(*e, config->version, response);
  return absl::OkStatus();
}

AssignmentServiceImpl::AssignmentServiceImpl(
    const ConfigStore* store, const Recorder* recorder, StickyOptions sticky,
    StorageExecutor* executor, StorageExecutor* sticky_executor,
    const CallAuthorizer* authorizer, ServingCounters counters)
    : store_(store),
      recorder_(recorder),
      sticky_(std::make_unique<StickyReader>(std::move(sticky))),
      executor_(executor),
      sticky_executor_(sticky_executor),
      authorizer_(authorizer),
      counters_(counters) {}

AssignmentServiceImpl::~AssignmentServiceImpl() = default;

template <typename Request, typename Response, typename Handle,
          typename Records>
grpc::ServerUnaryReactor* AssignmentServiceImpl::Serve(
    grpc::CallbackServerContext* context, const RpcAccess<Request>& access,
    const grpc::ByteBuffer* request_bytes, grpc::ByteBuffer* response_bytes,
    Handle handle, Records records) {
  std::shared_ptr<const IndexedConfig> config = store_->Snapshot();
  StickyReader* const reader = sticky_.get();
  const bool reads = MayReadStore(*config);
  // With a config this call may read no store for, and nothing to record,
  // it is pure computation: this thread serves it.
  auto now = [&](const Request& req, Response* resp) {
    return handle(*config, StickyRead{reader, absl::OkStatus()}, req, resp);
  };
  if (grpc::ServerUnaryReactor* served = ServeNowUnless<Request, Response>(
          context, access, &in_flight_, request_bytes, response_bytes,
          [&](const Request& req) { return reads || records(req); }, now)) {
    return served;
  }
  return ServeWaiting<Request, Response>(context, std::move(config),
                                         request_bytes, response_bytes,
                                         std::move(handle), records);
}

bool AssignmentServiceImpl::MayReadStore(const IndexedConfig& config) const {
  return sticky_executor_ != nullptr && sticky_->WouldRead(config);
}

template <typename Request, typename Response, typename Handle,
          typename Records>
grpc::ServerUnaryReactor* AssignmentServiceImpl::ServeWaiting(
    grpc::CallbackServerContext* context,
    std::shared_ptr<const IndexedConfig> config,
    const grpc::ByteBuffer* request_bytes, grpc::ByteBuffer* response_bytes,
    Handle handle, Records records) {
  StickyReader* const reader = sticky_.get();
  // The call outlives this method: its messages move to an arena of its own
  // (parsed again: a call that waits on storage can afford it).
  auto* call = new UnaryCall<Request, Response>(&in_flight_, response_bytes);
  if (!call->Parse(*request_bytes).ok()) return call;
  if (absl::Status wanted = CheckStillWanted(context); !wanted.ok()) {
    call->Finish(wanted);
    return call;
  }
  if (records(call->request())) {
    // Recording waits on the store: the storage executor.
    auto on_thread = [handle, config, reader](const Request& req,
                                              Response* resp) {
      return handle(*config, StickyRead{reader, absl::OkStatus()}, req, resp);
    };
    if (!TrySubmitCall(executor_, context, call, on_thread)) {
      call->Finish(StorageBusyError(*executor_));
    }
    return call;
  }
  // Reading recorded variants: the sticky-read threads, within the budget,
  // which counts from now (a call that waited it all for a thread does not
  // read).
  const absl::Duration budget = reader->options().budget;
  const absl::Time queued = absl::Now();
  auto on_thread = [handle, config, reader, budget, queued](const Request& req,
                                                            Response* resp) {
    StickyRead read{reader, absl::OkStatus()};
    const absl::Duration waited = absl::Now() - queued;
    if (waited >= budget) {
      read.skip = absl::ResourceExhaustedError(absl::StrCat(
          "the call waited ", absl::FormatDuration(waited),
          " for a sticky-read thread, its whole --sticky_read_budget"));
    }
    return handle(*config, read, req, resp);
  };
  if (TrySubmitCall(sticky_executor_, context, call, on_thread)) return call;
  const StickyRead skip{
      reader, absl::ResourceExhaustedError(absl::StrCat(
                  "all ", sticky_executor_->options().max_calls,
                  " places for calls reading sticky variants are taken "
                  "(--sticky_read_threads)"))};
  auto without_reading = [&](const Request& req, Response* resp) {
    return handle(*config, skip, req, resp);
  };
  call->Finish(RunHandler(without_reading, call->request(), call->response()));
  return call;
}

grpc::ServerUnaryReactor* AssignmentServiceImpl::Assign(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  const Recorder* const recorder = recorder_;
  const ServingCounters counters = counters_;
  const bool can_record = executor_ != nullptr && recorder != nullptr;
  auto handle = [recorder, counters](
                    const IndexedConfig& config, const StickyRead& sticky,
                    const v1::AssignRequest& req, v1::AssignResponse* resp) {
    return HandleAssign(config, recorder, sticky, req, resp, counters);
  };
  auto records = [can_record](const v1::AssignRequest& req) {
    return can_record && req.record_exposure();
  };
  std::shared_ptr<const IndexedConfig> config = store_->Snapshot();
  const bool reads = MayReadStore(*config);
  // The plain Assign every page view makes: served on this thread, its
  // answer written from pieces encoded once per config.
  const AssignResponseEncoder& encoder = EncoderFor(config);
  const StickyRead no_reads{sticky_.get(), absl::OkStatus()};
  auto now = [&](const v1::AssignRequest& req, std::string* bytes) {
    return HandleAssignEncoded(*config, encoder, recorder, no_reads, req, bytes,
                               counters);
  };
  RpcAccess<v1::AssignRequest> access =
      AccessTo<v1::AssignRequest>("abexp.v1.AssignmentService/Assign");
  // Recording the exposures is the recording service's work.
  access.request_roles = [](const v1::AssignRequest& req) -> Roles {
    return req.record_exposure() ? kRoleRecord : 0;
  };
  if (grpc::ServerUnaryReactor* served =
          ServeEncodedNowUnless<v1::AssignRequest>(
              context, access, &in_flight_, request, response,
              [&](const v1::AssignRequest& req) {
                return reads || records(req);
              },
              now)) {
    return served;
  }
  return ServeWaiting<v1::AssignRequest, v1::AssignResponse>(
      context, std::move(config), request, response, handle, records);
}

grpc::ServerUnaryReactor* AssignmentServiceImpl::BatchAssign(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Serve<v1::BatchAssignRequest, v1::BatchAssignResponse>(
      context,
      AccessTo<v1::BatchAssignRequest>(
          "abexp.v1.AssignmentService/BatchAssign"),
      request, response,
      [counters = counters_](
          const IndexedConfig& config, const StickyRead& sticky,
          const v1::BatchAssignRequest& req, v1::BatchAssignResponse* resp) {
        return HandleBatchAssign(config, sticky, req, resp, counters);
      },
      [](const v1::BatchAssignRequest&) { return false; });
}

grpc::ServerUnaryReactor* AssignmentServiceImpl::ExplainAssignment(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Serve<v1::ExplainAssignmentRequest, v1::ExplainAssignmentResponse>(
      context,
      AccessTo<v1::ExplainAssignmentRequest>(
          "abexp.v1.AssignmentService/ExplainAssignment"),
      request, response,
      [](const IndexedConfig& config, const StickyRead& sticky,
         const v1::ExplainAssignmentRequest& req,
         v1::ExplainAssignmentResponse* resp) {
        return HandleExplainAssignment(config, sticky, req, resp);
      },
      [](const v1::ExplainAssignmentRequest&) { return false; });
}

grpc::ServerUnaryReactor* AssignmentServiceImpl::ListExperiments(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return ServeInline<v1::ListExperimentsRequest, v1::ListExperimentsResponse>(
      context,
      AccessTo<v1::ListExperimentsRequest>(
          "abexp.v1.AssignmentService/ListExperiments"),
      &in_flight_, request, response,
      [&](const v1::ListExperimentsRequest& req,
          v1::ListExperimentsResponse* resp) {
        return HandleListExperiments(*store_, req, resp);
      });
}

grpc::ServerUnaryReactor* AssignmentServiceImpl::GetExperiment(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return ServeInline<v1::GetExperimentRequest, v1::Experiment>(
      context,
      AccessTo<v1::GetExperimentRequest>(
          "abexp.v1.AssignmentService/GetExperiment"),
      &in_flight_, request, response,
      [&](const v1::GetExperimentRequest& req, v1::Experiment* resp) {
        return HandleGetExperiment(*store_, req, resp);
      });
}

}  // namespace abexp
