// RecordingServiceImpl serves abexp.v1.RecordingService (gRPC callback API,
// raw methods: UnaryCall parses the requests) over a ConfigStore and a
// Recorder. The work of each RPC is in rpc_handlers.h.
//
// Each call takes one ConfigStore::Snapshot() and one clock reading and uses
// them for the whole batch.
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
  // null: every call is allowed. Each record's outcome is counted in
  // `records` (null: not counted).
  // REQUIRES: authorizer and records outlive this service.
  RecordingServiceImpl(const ConfigStore* store, const Recorder* recorder,
                       StorageExecutor* executor,
                       const CallAuthorizer* authorizer = nullptr,
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
  const ConfigStore* const store_;          // not owned
  const Recorder* const recorder_;          // not owned
  StorageExecutor* const executor_;         // not owned
  const CallAuthorizer* const authorizer_;  // not owned; may be null
  RecordCounters* const records_;           // not owned; may be null
  std::atomic<int> in_flight_{0};
};

}  // namespace abexp

#endif  // ABEXP_SERVER_SERVICE_RECORDING_SERVICE_H_
