// AssignmentServiceImpl serves abexp.v1.AssignmentService (gRPC callback
// API) over a ConfigStore and the core assigner. It only adapts: protos to
// core types, core results to protos, absl::Status to grpc::Status.
//
// Each call takes one ConfigStore::Snapshot() and uses it throughout, so a
// reload never tears a response; every response carries that snapshot's
// config_version. Schedules (start/end) are checked against absl::Now().
//
// Thread-safe: calls may run concurrently on gRPC's callback threads.
#ifndef ABEXP_SERVER_ASSIGNMENT_SERVICE_H_
#define ABEXP_SERVER_ASSIGNMENT_SERVICE_H_

#include <atomic>

#include "abexp/v1/assignment.grpc.pb.h"
#include "abexp/v1/assignment.pb.h"
#include "absl/status/status.h"
#include "grpcpp/grpcpp.h"
#include "server/config_store.h"

namespace abexp {

// Limits on requests, beyond the per-unit limits in assigner.h.
inline constexpr int kMaxBatchUnits = 1000;

// The one place an absl::Status becomes a grpc::Status: same canonical code,
// same message.
grpc::Status ToGrpcStatus(const absl::Status& status);

class AssignmentServiceImpl final
    : public v1::AssignmentService::CallbackService {
 public:
  // REQUIRES: store outlives this service.
  explicit AssignmentServiceImpl(const ConfigStore* store);

  AssignmentServiceImpl(const AssignmentServiceImpl&) = delete;
  AssignmentServiceImpl& operator=(const AssignmentServiceImpl&) = delete;

  grpc::ServerUnaryReactor* Assign(grpc::CallbackServerContext* context,
                                   const v1::AssignRequest* request,
                                   v1::AssignResponse* response) override;
  grpc::ServerUnaryReactor* BatchAssign(
      grpc::CallbackServerContext* context,
      const v1::BatchAssignRequest* request,
      v1::BatchAssignResponse* response) override;
  grpc::ServerUnaryReactor* ExplainAssignment(
      grpc::CallbackServerContext* context,
      const v1::ExplainAssignmentRequest* request,
      v1::ExplainAssignmentResponse* response) override;
  grpc::ServerUnaryReactor* ListExperiments(
      grpc::CallbackServerContext* context,
      const v1::ListExperimentsRequest* request,
      v1::ListExperimentsResponse* response) override;
  grpc::ServerUnaryReactor* GetExperiment(
      grpc::CallbackServerContext* context,
      const v1::GetExperimentRequest* request,
      v1::Experiment* response) override;

  // Calls started and not yet done (their status not yet sent). Lets a
  // shutdown tell draining calls apart from idle client connections.
  int in_flight_calls() const { return in_flight_.load(); }

 private:
  // Runs one call, finishes it and counts it until gRPC reports it done.
  template <typename Fn>
  grpc::ServerUnaryReactor* Run(Fn&& fn);

  const ConfigStore* const store_;  // not owned
  std::atomic<int> in_flight_{0};
};

}  // namespace abexp

#endif  // ABEXP_SERVER_ASSIGNMENT_SERVICE_H_
