// Counts every gRPC call the server ends into ServerMetrics
// (server/metrics/metrics.h): abexp_rpc_requests_total by service, method
// and status code, and abexp_rpc_duration_seconds, from the call's arrival
// to its status being sent (unary calls; a stream's duration is not a
// latency). A gRPC server interceptor, so every method is counted the same
// way, the calls refused before a handler ran (authentication, a request
// that does not parse) included.
//
// Methods the server does not serve (a caller can send any name) count as
// method "other", so callers cannot add series.
//
// Thread-safe.
#ifndef ABEXP_SERVER_SERVICE_RPC_METRICS_H_
#define ABEXP_SERVER_SERVICE_RPC_METRICS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "grpcpp/support/server_interceptor.h"
#include "server/metrics/metrics.h"

namespace abexp {

class RpcMetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // Counts the methods of the services named (full names, e.g.
  // "abexp.v1.AssignmentService", found in the linked protos' descriptors)
  // and of grpc.health.v1.Health.
  // REQUIRES: metrics outlives the factory and the server.
  RpcMetricsInterceptorFactory(ServerMetrics* metrics,
                               const std::vector<std::string>& services);

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  // By "/service/method".
  absl::flat_hash_map<std::string, RpcMethodMetrics*> methods_;
  RpcMethodMetrics* other_;
};

// The factory, in the vector ServerBuilder's SetInterceptorCreators takes.
std::vector<
    std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
RpcMetricsInterceptors(ServerMetrics* metrics,
                       const std::vector<std::string>& services);

}  // namespace abexp

#endif  // ABEXP_SERVER_SERVICE_RPC_METRICS_H_
