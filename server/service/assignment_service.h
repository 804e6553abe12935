// AssignmentServiceImpl serves abexp.v1.AssignmentService (gRPC callback
// API, raw methods: UnaryCall parses the requests) over a ConfigStore and
// the core assigner. The work of each RPC is in rpc_handlers.h.
//
// Each call takes one ConfigStore::Snapshot() and uses it throughout, so a
// reload never tears a response; every response carries that snapshot's
// config_version. Schedules (start/end) are checked against absl::Now().
//
// Sticky experiments (sticky: true) are the only ones that read storage:
// each call reads the units' recorded variants through one StickyReader
// (server/core/sticky.h: one EventStore::RecordedVariants call, however many
// experiments and units) and serves them with reason STICKY. A store
// failure never fails a call: the variants are then computed from the
// config and served with reason STICKY_UNREAD, the failure is logged
// (rate-limited) and ExplainAssignment shows it in its "sticky" step. Which
// assignments record_exposure records is ExposuresToRecord
// (server/core/exposure_policy.h).
//
// Thread-safe: calls may run concurrently on gRPC's callback threads.
#ifndef ABEXP_SERVER_SERVICE_ASSIGNMENT_SERVICE_H_
#define ABEXP_SERVER_SERVICE_ASSIGNMENT_SERVICE_H_

#include <atomic>
#include <memory>

#include "abexp/v1/assignment.grpc.pb.h"
#include "abexp/v1/assignment.pb.h"
#include "absl/status/status.h"
#include "grpcpp/grpcpp.h"
#include "server/core/config_store.h"
#include "server/core/recorder.h"
#include "server/core/sticky.h"
#include "server/core/token_table.h"
#include "server/service/call_auth.h"
#include "server/service/rpc_handlers.h"
#include "server/service/storage_executor.h"
#include "server/service/unary_call.h"

namespace abexp {

// Every method raw, so that UnaryCall parses the requests.
using RawAssignmentService =
    v1::AssignmentService::WithRawCallbackMethod_Assign<
        v1::AssignmentService::WithRawCallbackMethod_BatchAssign<
            v1::AssignmentService::WithRawCallbackMethod_ExplainAssignment<
                v1::AssignmentService::WithRawCallbackMethod_ListExperiments<
                    v1::AssignmentService::WithRawCallbackMethod_GetExperiment<
                        v1::AssignmentService::Service>>>>>;

class AssignmentServiceImpl final : public RawAssignmentService {
 public:
  // `recorder` records the exposures of Assign calls that ask for it
  // (record_exposure); null means this server does not record, and such
  // calls report it in exposure_error. `sticky` says where recorded variants
  // of sticky experiments are read, and within what budget. An Assign that
  // records its exposure runs on `executor` (storage_executor.h), so that
  // no gRPC thread waits for the store; null: inline. Assign, BatchAssign
  // and ExplainAssignment calls that read recorded variants run on
  // `sticky_executor`; when it is full, or a call waited sticky.budget for
  // it, the call does not read and answers at once, each sticky experiment
  // it would have read with reason STICKY_UNREAD. Null: they read inline.
  // Every call needs the role assign, and an Assign with record_exposure
  // record too, from `authorizer` (call_auth.h); null: every call is
  // allowed. Assign and BatchAssign count the variants they serve, and the
  // exposures they record, in `counters` (rpc_handlers.h).
  // REQUIRES: store, recorder, sticky.store, the executors, authorizer and
  // the counters outlive this service.
  explicit AssignmentServiceImpl(const ConfigStore* store,
                                 const Recorder* recorder = nullptr,
                                 StickyOptions sticky = {},
                                 StorageExecutor* executor = nullptr,
                                 StorageExecutor* sticky_executor = nullptr,
                                 const CallAuthorizer* authorizer = nullptr,
                                 ServingCounters counters = {});
  ~AssignmentServiceImpl() override;

  AssignmentServiceImpl(const AssignmentServiceImpl&) = delete;
  AssignmentServiceImpl& operator=(const AssignmentServiceImpl&) = delete;

  grpc::ServerUnaryReactor* Assign(grpc::CallbackServerContext* context,
                                   const grpc::ByteBuffer* request,
                                   grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* BatchAssign(grpc::CallbackServerContext* context,
                                        const grpc::ByteBuffer* request,
                                        grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ExplainAssignment(
      grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
      grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ListExperiments(
      grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
      grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetExperiment(grpc::CallbackServerContext* context,
                                          const grpc::ByteBuffer* request,
                                          grpc::ByteBuffer* response) override;

  // Calls started and not yet done (their status not yet sent). Lets a
  // shutdown tell draining calls apart from idle client connections.
  int in_flight_calls() const { return in_flight_.load(); }

 private:
  // Serves one call: handle(config, StickyRead, request, response) ->
  // absl::Status on one config snapshot. On this thread when it can read no
  // store (no sticky reads possible: StickyReader::WouldRead) and
  // records(request) is false; on executor_ when records(request); else on
  // sticky_executor_ within the sticky budget, or on this thread without
  // reading when that is full.
  template <typename Request, typename Response, typename Handle,
            typename Records>
  grpc::ServerUnaryReactor* Serve(grpc::CallbackServerContext* context,
                                  const RpcAccess<Request>& access,
                                  const grpc::ByteBuffer* request_bytes,
                                  grpc::ByteBuffer* response_bytes,
                                  Handle handle, Records records);
  // Serve's part for a call that is not served on this thread (its caller
  // already admitted): it is parsed again into a UnaryCall and run on an
  // executor.
  template <typename Request, typename Response, typename Handle,
            typename Records>
  grpc::ServerUnaryReactor* ServeWaiting(
      grpc::CallbackServerContext* context,
      std::shared_ptr<const IndexedConfig> config,
      const grpc::ByteBuffer* request_bytes, grpc::ByteBuffer* response_bytes,
      Handle handle, Records records);
  // Whether calls on `config` may read the store for recorded variants
  // (then they run on sticky_executor_).
  bool MayReadStore(const IndexedConfig& config) const;
  // Who may call `rpc` ("Assign"): the role assign.
  template <typename Request>
  RpcAccess<Request> AccessTo(const char* rpc) const {
    return RpcAccess<Request>{authorizer_, rpc, kRoleAssign, nullptr};
  }

  const ConfigStore* const store_;  // not owned
  const Recorder* const recorder_;  // not owned; may be null
  const std::unique_ptr<StickyReader> sticky_;
  StorageExecutor* const executor_;         // not owned; may be null
  StorageExecutor* const sticky_executor_;  // not owned; may be null
  const CallAuthorizer* const authorizer_;  // not owned; may be null
  const ServingCounters counters_;          // members not owned; may be null
  std::atomic<int> in_flight_{0};
};

}  // namespace abexp

#endif  // ABEXP_SERVER_SERVICE_ASSIGNMENT_SERVICE_H_
