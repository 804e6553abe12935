// ResultsServiceImpl serves abexp.v1.ResultsService: it checks the request,
// reads one experiment's aggregates from the EventStore, has the core compute
// the figures and the decision (server/core/results.h) and converts them to
// the response. docs/statistics.md ("Results RPC") gives the mapping and the
// decision rules.
//
// HandleGetResults (rpc_handlers.h) is the RPC without a server.
//
// Thread-safe: calls may run concurrently on gRPC's callback threads.
#ifndef ABEXP_SERVER_SERVICE_RESULTS_SERVICE_H_
#define ABEXP_SERVER_SERVICE_RESULTS_SERVICE_H_

#include <atomic>

#include "abexp/v1/results.grpc.pb.h"
#include "abexp/v1/results.pb.h"
#include "grpcpp/grpcpp.h"
#include "server/core/config_store.h"
#include "server/core/event_store.h"
#include "server/service/call_auth.h"
#include "server/service/storage_executor.h"

namespace abexp {

// Raw, so that UnaryCall parses the requests.
using RawResultsService = v1::ResultsService::WithRawCallbackMethod_GetResults<
    v1::ResultsService::Service>;

class ResultsServiceImpl final : public RawResultsService {
 public:
  // Every call runs on `executor` (storage_executor.h): reading the
  // aggregates waits on the store, which no gRPC thread may do.
  // Every call needs the role results from `authorizer` (call_auth.h);
  // null: every call is allowed.
  // REQUIRES: config_store, event_store, executor and authorizer outlive
  // this service.
  ResultsServiceImpl(const ConfigStore* config_store, EventStore* event_store,
                     StorageExecutor* executor,
                     const CallAuthorizer* authorizer = nullptr);

  ResultsServiceImpl(const ResultsServiceImpl&) = delete;
  ResultsServiceImpl& operator=(const ResultsServiceImpl&) = delete;

  grpc::ServerUnaryReactor* GetResults(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;

  // Calls started and not yet done, as AssignmentServiceImpl counts them.
  int in_flight_calls() const { return in_flight_.load(); }

 private:
  const ConfigStore* const config_store_;   // not owned
  EventStore* const event_store_;           // not owned
  StorageExecutor* const executor_;         // not owned
  const CallAuthorizer* const authorizer_;  // not owned; may be null
  std::atomic<int> in_flight_{0};
};

}  // namespace abexp

#endif  // ABEXP_SERVER_SERVICE_RESULTS_SERVICE_H_
