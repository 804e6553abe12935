#include "server/service/rpc_metrics.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"

namespace abexp {
namespace {

class RpcMetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  RpcMetricsInterceptor(RpcMethodMetrics* metrics, bool unary)
      : metrics_(metrics),
        unary_(unary),
        start_(std::chrono::steady_clock::now()) {}

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      const int code = static_cast<int>(methods->GetSendStatus().error_code());
      if (unary_) {
        metrics_->Observe(code, std::chrono::duration<double>(
                                    std::chrono::steady_clock::now() - start_)
                                    .count());
      } else {
        metrics_->Count(code);
      }
    }
    methods->Proceed();
  }

 private:
  RpcMethodMetrics* const metrics_;  // not owned
  const bool unary_;
  const std::chrono::steady_clock::time_point start_;
};

}  // namespace

RpcMetricsInterceptorFactory::RpcMetricsInterceptorFactory(
    ServerMetrics* metrics, const std::vector<std::string>& services)
    : other_(metrics->Rpc("/other/other")) {
  std::vector<std::string> names = {"/grpc.health.v1.Health/Check",
                                    "/grpc.health.v1.Health/Watch"};
  for (const std::string& service : services) {
    const google::protobuf::ServiceDescriptor* descriptor =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
            service);
    if (descriptor == nullptr) continue;
    for (int i = 0; i < descriptor->method_count(); ++i) {
      names.push_back(
          absl::StrCat("/", service, "/", descriptor->method(i)->name()));
    }
  }
  for (const std::string& name : names) methods_[name] = metrics->Rpc(name);
}

grpc::experimental::Interceptor*
RpcMetricsInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  RpcMethodMetrics* metrics = other_;
  if (info->method() != nullptr) {
    auto it = methods_.find(absl::string_view(info->method()));
    if (it != methods_.end()) metrics = it->second;
  }
  return new RpcMetricsInterceptor(
      metrics, info->type() == grpc::experimental::ServerRpcInfo::Type::UNARY);
}

std::vector<
    std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
RpcMetricsInterceptors(ServerMetrics* metrics,
                       const std::vector<std::string>& services) {
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      out;
  out.push_back(
      std::make_unique<RpcMetricsInterceptorFactory>(metrics, services));
  return out;
}

}  // namespace abexp
