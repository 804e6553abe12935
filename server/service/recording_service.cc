#include "server/service/recording_service.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"
#include "server/service/rpc_handlers.h"
#include "server/service/unary_call.h"

namespace abexp {
namespace {

// gRPC's retry hint (the A6 retry design): milliseconds to wait before
// sending the call again.
constexpr char kRetryPushbackMetadata[] = "grpc-retry-pushback-ms";

// Timestamp's valid range: 0001-01-01 to 9999-12-31.
constexpr int64_t kMinTimestampSeconds = -62135596800;
constexpr int64_t kMaxTimestampSeconds = 253402300799;

absl::StatusOr<std::optional<absl::Time>> TimeFromProto(
    bool has_time, const google::protobuf::Timestamp& proto,
    const std::string& field) {
  if (!has_time) return std::optional<absl::Time>();
  if (proto.nanos() < 0 || proto.nanos() > 999999999 ||
      proto.seconds() < kMinTimestampSeconds ||
      proto.seconds() > kMaxTimestampSeconds) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " is not a valid Timestamp (seconds ", proto.seconds(),
        ", nanos ", proto.nanos(),
        "); nanos must be in [0, 999999999] and seconds a date in years "
        "1 to 9999"));
  }
  return std::optional<absl::Time>(absl::FromUnixSeconds(proto.seconds()) +
                                   absl::Nanoseconds(proto.nanos()));
}

v1::RecordOutcome OutcomeToProto(WriteOutcome outcome) {
  switch (outcome) {
    case WriteOutcome::kRecorded:
      return v1::RECORD_OUTCOME_RECORDED;
    case WriteOutcome::kDuplicate:
      return v1::RECORD_OUTCOME_DUPLICATE;
    case WriteOutcome::kIgnored:
      return v1::RECORD_OUTCOME_IGNORED;
    case WriteOutcome::kConflict:
      return v1::RECORD_OUTCOME_CONFLICT;
    case WriteOutcome::kSpooled:
      return v1::RECORD_OUTCOME_SPOOLED;
  }
  return v1::RECORD_OUTCOME_UNSPECIFIED;
}

v1::IgnoreReason ReasonToProto(IgnoreReason reason) {
  switch (reason) {
    case IgnoreReason::kNone:
      return v1::IGNORE_REASON_UNSPECIFIED;
    case IgnoreReason::kUnknownExperiment:
      return v1::IGNORE_REASON_UNKNOWN_EXPERIMENT;
    case IgnoreReason::kNotRunning:
      return v1::IGNORE_REASON_NOT_RUNNING;
    case IgnoreReason::kQaOverride:
      return v1::IGNORE_REASON_QA_OVERRIDE;
    case IgnoreReason::kHoldout:
      return v1::IGNORE_REASON_HOLDOUT;
    case IgnoreReason::kMissingUnitId:
      return v1::IGNORE_REASON_MISSING_UNIT_ID;
    case IgnoreReason::kNoMetric:
      return v1::IGNORE_REASON_NO_METRIC;
    case IgnoreReason::kNotAttributed:
      return v1::IGNORE_REASON_NOT_ATTRIBUTED;
    case IgnoreReason::kMultiExposed:
      return v1::IGNORE_REASON_MULTI_EXPOSED;
  }
  return v1::IGNORE_REASON_UNSPECIFIED;
}

template <typename Response>
void BatchToProto(const RecordBatchResult& batch, Response* response) {
  response->set_config_version(batch.config_version);
  v1::RecordCounts* counts = response->mutable_counts();
  counts->set_recorded(batch.recorded);
  counts->set_duplicate(batch.duplicate);
  counts->set_ignored(batch.ignored);
  counts->set_conflict(batch.conflict);
  counts->set_spooled(batch.spooled);
  response->mutable_results()->Reserve(static_cast<int>(batch.results.size()));
  for (const RecordResult& r : batch.results) {
    v1::RecordResult* p = response->add_results();
    p->set_outcome(OutcomeToProto(r.outcome));
    if (r.outcome == WriteOutcome::kIgnored) {
      p->set_ignore_reason(ReasonToProto(r.ignore_reason));
    }
    p->set_experiments_recorded(r.experiments_recorded);
  }
}

}  // namespace

void CountRecords(const RecordBatchResult& batch, RecordCounters::Kind kind,
                  RecordCounters* records) {
  if (records == nullptr) return;
  // Added up first: one counter update per outcome and reason, not per
  // record.
  absl::flat_hash_map<std::pair<int, int>, int64_t> counts;
  for (const RecordResult& r : batch.results) {
    const int reason = r.outcome == WriteOutcome::kIgnored
                           ? static_cast<int>(ReasonToProto(r.ignore_reason))
                           : 0;
    ++counts[{static_cast<int>(OutcomeToProto(r.outcome)), reason}];
  }
  for (const auto& [outcome_reason, n] : counts) {
    records->Add(kind, outcome_reason.first, outcome_reason.second, n);
  }
}

namespace {

absl::Status CheckSize(int n, const char* field) {
  if (static_cast<size_t>(n) > kMaxRecordBatch) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " has ", n, " items; send at most ",
                     kMaxRecordBatch, " per call and split larger batches"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status HandleRecordExposures(const ConfigStore& store,
                                   const Recorder& recorder,
                                   const v1::RecordExposuresRequest& request,
                                   v1::RecordExposuresResponse* response,
                                   RecordCounters* records) {
  if (absl::Status s = CheckSize(request.exposures_size(), "exposures");
      !s.ok()) {
    return s;
  }
  const absl::Time now = absl::Now();
  std::shared_ptr<const IndexedConfig> config = store.Snapshot();
  std::vector<ExposureInput> inputs(request.exposures_size());
  for (int i = 0; i < request.exposures_size(); ++i) {
    const v1::ExposureRecord& p = request.exposures(i);
    ExposureInput& x = inputs[i];
    x.experiment_key = p.experiment_key();
    const std::string field = absl::StrCat("exposures[", i, "]");
    // Recording uses only the ids, but the unit is checked whole (the
    // Recorder runs ValidateUnit), as Assign checks it.
    absl::StatusOr<Unit> unit = ConvertUnit(p.unit(), field + ".unit");
    if (!unit.ok()) return unit.status();
    x.unit = *std::move(unit);
    x.variant_key = p.variant_key();
    absl::StatusOr<std::optional<absl::Time>> time =
        TimeFromProto(p.has_time(), p.time(), field + ".time");
    if (!time.ok()) return time.status();
    x.time = *time;
    x.idempotency_key = p.idempotency_key();
    x.config_version = p.config_version();
  }
  absl::StatusOr<RecordBatchResult> batch =
      recorder.RecordExposures(*config, inputs, now);
  if (!batch.ok()) return batch.status();
  CountRecords(*batch, RecordCounters::Kind::kExposure, records);
  BatchToProto(*batch, response);
  return absl::OkStatus();
}

absl::Status HandleRecordEvents(const ConfigStore& store,
                                const Recorder& recorder,
                                const v1::RecordEventsRequest& request,
                                v1::RecordEventsResponse* response,
                                RecordCounters* records) {
  if (absl::Status s = CheckSize(request.events_size(), "events"); !s.ok()) {
    return s;
  }
  const absl::Time now = absl::Now();
  std::shared_ptr<const IndexedConfig> config = store.Snapshot();
  std::vector<EventInput> inputs(request.events_size());
  for (int i = 0; i < request.events_size(); ++i) {
    const v1::EventRecord& p = request.events(i);
    EventInput& ev = inputs[i];
    const std::string field = absl::StrCat("events[", i, "]");
    absl::StatusOr<Unit> unit = ConvertUnit(p.unit(), field + ".unit");
    if (!unit.ok()) return unit.status();
    ev.unit = *std::move(unit);
    ev.name = p.name();
    if (p.has_value()) ev.value = p.value();
    absl::StatusOr<std::optional<absl::Time>> time =
        TimeFromProto(p.has_time(), p.time(), field + ".time");
    if (!time.ok()) return time.status();
    ev.time = *time;
    ev.idempotency_key = p.idempotency_key();
  }
  absl::StatusOr<RecordBatchResult> batch =
      recorder.RecordEvents(*config, inputs, now);
  if (!batch.ok()) return batch.status();
  CountRecords(*batch, RecordCounters::Kind::kEvent, records);
  BatchToProto(*batch, response);
  return absl::OkStatus();
}

RecordingServiceImpl::RecordingServiceImpl(const ConfigStore* store,
                                           const Recorder* recorder,
                                           StorageExecutor* executor,
                                           const CallAuthorizer* authorizer,
                                           SpoolAdmission* admission,
                                           RecordCounters* records)
    : store_(store),
      recorder_(recorder),
      executor_(executor),
      authorizer_(authorizer),
      admission_(admission),
      records_(records) {}

absl::StatusOr<absl::Duration> RecordingServiceImpl::Admit(
    grpc::CallbackServerContext* context, int records) {
  if (admission_ == nullptr || !admission_->spooling()) {
    return absl::ZeroDuration();
  }
  // A call is held at most half the time its deadline leaves (the rest is
  // for the spool), and only while the executor has room for calls that do
  // not wait their turn.
  absl::Duration max_hold =
      (absl::FromChrono(context->deadline()) - absl::Now()) / 2;
  if (executor_->in_flight() >= executor_->options().max_calls / 2) {
    max_hold = absl::ZeroDuration();
  }
  const SpoolAdmission::Decision decision =
      admission_->Decide(records, max_hold);
  if (decision.kind != SpoolAdmission::Decision::Kind::kRefuse) {
    return decision.wait;
  }
  // Counted in abexp_rpc_requests_total{code="RESOURCE_EXHAUSTED"}.
  const int64_t ms = absl::ToInt64Milliseconds(
      absl::Ceil(decision.wait, absl::Milliseconds(1)));
  context->AddTrailingMetadata(kRetryPushbackMetadata, absl::StrCat(ms));
  return absl::ResourceExhaustedError(absl::StrFormat(
      "storage (Redis) is unavailable and abexp-server is acknowledging "
      "recording calls from its local spool, at most %.0f records/s "
      "(--spool_admit_rate); nothing of this call was done: send it again "
      "in %d ms (trailing metadata %s), with the same records and "
      "idempotency keys",
      admission_->rate(), ms, kRetryPushbackMetadata));
}

template <typename Response>
void RecordingServiceImpl::Note(const absl::Status& status,
                                const Response& response) {
  if (admission_ == nullptr || !status.ok()) return;
  const v1::RecordCounts& counts = response.counts();
  admission_->Note(counts.recorded() + counts.duplicate() + counts.conflict(),
                   counts.spooled());
}

grpc::ServerUnaryReactor* RecordingServiceImpl::RecordExposures(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return ServeOnExecutorIfAdmitted<v1::RecordExposuresRequest,
                                   v1::RecordExposuresResponse>(
      executor_, context,
      RpcAccess<v1::RecordExposuresRequest>{
          authorizer_, "abexp.v1.RecordingService/RecordExposures",
          kRoleRecord},
      &in_flight_, request, response,
      [this, context](const v1::RecordExposuresRequest& req) {
        return Admit(context, req.exposures_size());
      },
      [this](const v1::RecordExposuresRequest& req,
             v1::RecordExposuresResponse* resp) {
        absl::Status status =
            HandleRecordExposures(*store_, *recorder_, req, resp, records_);
        Note(status, *resp);
        return status;
      });
}

grpc::ServerUnaryReactor* RecordingServiceImpl::RecordEvents(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return ServeOnExecutorIfAdmitted<v1::RecordEventsRequest,
                                   v1::RecordEventsResponse>(
      executor_, context,
      RpcAccess<v1::RecordEventsRequest>{
          authorizer_, "abexp.v1.RecordingService/RecordEvents", kRoleRecord},
      &in_flight_, request, response,
      [this, context](const v1::RecordEventsRequest& req) {
        return Admit(context, req.events_size());
      },
      [this](const v1::RecordEventsRequest& req,
             v1::RecordEventsResponse* resp) {
        absl::Status status =
            HandleRecordEvents(*store_, *recorder_, req, resp, records_);
        Note(status, *resp);
        return status;
      });
}

}  // namespace abexp
