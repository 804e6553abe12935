// RecordingServiceImpl serves abexp.v1.RecordingService (gRPC callback API,
// raw methods: UnaryCall parses the requests) over a ConfigStore and a
// Recorder. The work of each RPC is in rpc_handlers.h.
//
// Each call takes one ConfigStore::Snapshot() and one clock reading and uses
// them for the whole batch.
//
// While recording calls are answered from the local spool, a SpoolAdmission
// (server/core/spool_admission.h) bounds the records they bring: a call past
// the bound is held, holding no thread, until the bound admits it, when that
// is within --spool_admit_max_hold and half the time its deadline leaves
// (and the storage executor is under half full); otherwise it ends
// RESOURCE_EXHAUSTED on the gRPC thread, nothing of it done, with a message
// saying when to retry and the same delay in the trailing metadata
// grpc-retry-pushback-ms (milliseconds), gRPC's standard retry hint.
//
// Thread-safe: calls may run concurrently on gRPC's callback threads.
#ifndef ABEXP_SERVER_SERVICE_RECORDING_SERVICE_H_
#define ABEXP_SERVER_SERVICE_RECORDING_SERVICE_H_

#include <atomic>

#include "abexp/v1/recording.grpc.pb.h"
#include "abexp/v1/recording.pb.h"
#include "grpcpp/grpcpp.h"
#include "server/core/config_store.h"
#include "server/core/recorder.h"
#include "server/core/spool_admission.h"
#include "server/metrics/metrics.h"
#include "server/service/call_auth.h"
#include "server/service/storage_executor.h"

namespace abexp {

// Every method raw, so that UnaryCall parses the requests.
using RawRecordingService =
    v1::RecordingService::WithRawCallbackMethod_RecordExposures<
        v1::RecordingService::WithRawCallbackMethod_RecordEvents<
            v1::RecordingService::Service>>;

class RecordingServiceImpl final : public RawRecordingService {
 public:
  // REQUIRES: store and recorder outlive this service.
  // Every call runs on `executor` (storage_executor.h): recording waits on
  // the store, which no gRPC thread may do.
  // REQUIRES: executor outlives this service too.
  // Every call needs the role record from `authorizer` (call_auth.h);
  // null: every call is allowed.
  // Every call is first admitted by `admission`, and tells it what it
  // recorded; null: no bound. Each record's outcome is counted in
  // `records` (null: not counted).
  // REQUIRES: authorizer, admission and records outlive this service.
  RecordingServiceImpl(const ConfigStore* store, const Recorder* recorder,
                       StorageExecutor* executor,
                       const CallAuthorizer* authorizer = nullptr,
                       SpoolAdmission* admission = nullptr,
                       RecordCounters* records = nullptr);

  RecordingServiceImpl(const RecordingServiceImpl&) = delete;
  RecordingServiceImpl& operator=(const RecordingServiceImpl&) = delete;

  grpc::ServerUnaryReactor* RecordExposures(
      grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
      grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* RecordEvents(grpc::CallbackServerContext* context,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;

  // Calls started and not yet done, as AssignmentServiceImpl counts them.
  int in_flight_calls() const { return in_flight_.load(); }

 private:
  // How long a call of `records` records is held before it starts (zero:
  // not at all), or its refusal (with its grpc-retry-pushback-ms added to
  // `context`).
  absl::StatusOr<absl::Duration> Admit(grpc::CallbackServerContext* context,
                                       int records);
  // Tells admission_ what a recorded call did.
  template <typename Response>
  void Note(const absl::Status& status, const Response& response);

  const ConfigStore* const store_;          // not owned
  const Recorder* const recorder_;          // not owned
  StorageExecutor* const executor_;         // not owned
  const CallAuthorizer* const authorizer_;  // not owned; may be null
  SpoolAdmission* const admission_;         // not owned; may be null
  RecordCounters* const records_;           // not owned; may be null
  std::atomic<int> in_flight_{0};
};

}  // namespace abexp

#endif  // ABEXP_SERVER_SERVICE_RECORDING_SERVICE_H_
