// The work of each abexp RPC without a running gRPC server: the parse of a
// request's bytes, and for each RPC the request message -> core types,
// validation, the core call and the response (or an absl::Status). The
// service classes (assignment_service.h, recording_service.h,
// results_service.h) call these from their raw callback methods; a fuzzer
// or a test can call them directly.
//
// Every error is an absl::Status with the canonical code the RPC answers
// and a message that names the field; strings the caller sent are quoted
// with ClipForMessage (error_text.h).
//
// Thread-safe: the handlers may run concurrently, as the services run them.
#ifndef ABEXP_SERVER_SERVICE_RPC_HANDLERS_H_
#define ABEXP_SERVER_SERVICE_RPC_HANDLERS_H_

#include <memory>
#include <string>

#include "abexp/v1/assignment.pb.h"
#include "abexp/v1/recording.pb.h"
#include "abexp/v1/results.pb.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "grpcpp/support/byte_buffer.h"
#include "server/core/assigner.h"
#include "server/core/config_store.h"
#include "server/core/event_store.h"
#include "server/core/recorder.h"
#include "server/core/sticky.h"
#include "server/metrics/metrics.h"
#include "server/service/assign_response.h"

namespace abexp {

// Limits on requests, beyond the per-unit limits in assigner.h.
inline constexpr int kMaxBatchUnits = 1000;

// Parses `bytes` into *message (which should be empty). Errors:
// INVALID_ARGUMENT saying the request is not a valid encoding of the
// message, and when a string field is not UTF-8 (proto3 requires it), which
// field. The first call installs the process's protobuf log handler
// (InstallProtobufLogLimiter).
absl::Status ParseRequest(const grpc::ByteBuffer& bytes,
                          google::protobuf::Message* message);

// Makes libprotobuf's log lines (one per unparseable request, among others)
// go to stderr at most one per 10s, with a count of the lines left out.
// Replaces any log handler set before. Idempotent.
void InstallProtobufLogLimiter();

// The unit's ids and attributes, before ValidateUnit. Errors:
// INVALID_ARGUMENT for an attribute with no value. `field` names the unit
// in errors, e.g. "unit" or "events[3].unit".
absl::StatusOr<Unit> ConvertUnit(const v1::Unit& proto,
                                 absl::string_view field);

// Where calls count what they serve, for the operators' metrics
// (server/metrics/metrics.h); a null member is not counted.
struct ServingCounters {
  AssignmentCounts* assignments = nullptr;
  RecordCounters* records = nullptr;
};

// How an assignment call gets the recorded variants of sticky experiments.
struct StickyRead {
  // Null: it does not, and they are bucketed by hash like the others.
  StickyReader* reader = nullptr;
  // Not OK: the store is not called, and each lookup fails with this
  // status (StickyReader::SkipForUnits): the unit is bucketed by hash with
  // reason ASSIGNMENT_REASON_STICKY_UNREAD. For a call that must not wait.
  absl::Status skip;
};

// AssignmentService, on one config snapshot. `recorder` records Assign's
// exposures when asked (null: this server does not record, said in
// exposure_error). Assign and BatchAssign count the variants they serve,
// and Assign the exposures it records, in `counters`.
absl::Status HandleAssign(const IndexedConfig& config, const Recorder* recorder,
                          const StickyRead& sticky,
                          const v1::AssignRequest& request,
                          v1::AssignResponse* response,
                          ServingCounters counters = {});
// HandleAssign, answering with the response's encoding (appended to
// *response_bytes): the bytes HandleAssign's response serializes to, written
// by `encoder`.
// REQUIRES: `encoder` was made for `config`.
absl::Status HandleAssignEncoded(const IndexedConfig& config,
                                 const AssignResponseEncoder& encoder,
                                 const Recorder* recorder,
                                 const StickyRead& sticky,
                                 const v1::AssignRequest& request,
                                 std::string* response_bytes,
                                 ServingCounters counters = {});
// The calling thread's encoder for `config`, made on its first use there.
const AssignResponseEncoder& EncoderFor(
    const std::shared_ptr<const IndexedConfig>& config);
absl::Status HandleBatchAssign(const IndexedConfig& config,
                               const StickyRead& sticky,
                               const v1::BatchAssignRequest& request,
                               v1::BatchAssignResponse* response,
                               ServingCounters counters = {});
absl::Status HandleExplainAssignment(
    const IndexedConfig& config, const StickyRead& sticky,
    const v1::ExplainAssignmentRequest& request,
    v1::ExplainAssignmentResponse* response);
absl::Status HandleListExperiments(const ConfigStore& store,
                                   const v1::ListExperimentsRequest& request,
                                   v1::ListExperimentsResponse* response);
absl::Status HandleGetExperiment(const ConfigStore& store,
                                 const v1::GetExperimentRequest& request,
                                 v1::Experiment* response);

// RecordingService. Each record's outcome is counted in `records` (null:
// not counted).
absl::Status HandleRecordExposures(const ConfigStore& store,
                                   const Recorder& recorder,
                                   const v1::RecordExposuresRequest& request,
                                   v1::RecordExposuresResponse* response,
                                   RecordCounters* records = nullptr);
absl::Status HandleRecordEvents(const ConfigStore& store,
                                const Recorder& recorder,
                                const v1::RecordEventsRequest& request,
                                v1::RecordEventsResponse* response,
                                RecordCounters* records = nullptr);
// Counts each record of `batch` by its outcome in *records (null: nothing).
void CountRecords(const RecordBatchResult& batch, RecordCounters::Kind kind,
                  RecordCounters* records);

// ResultsService: reads the experiment's aggregates from `events`.
absl::Status HandleGetResults(const ConfigStore& store, EventStore* events,
                              const v1::GetResultsRequest& request,
                              v1::GetResultsResponse* response);

}  // namespace abexp

#endif  // ABEXP_SERVER_SERVICE_RPC_HANDLERS_H_
