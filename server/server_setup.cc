#include "server/server_setup.h"

#include <atomic>
#include <memory>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpc/grpc.h"
#include "grpcpp/health_check_service_interface.h"

namespace abexp {

void EnableServerPlugins() {
  // Debian builds absl with mutex deadlock detection on: every lock then
  // also updates a process-wide lock-order graph, a few percent of a
  // server's CPU under load (perf, cpu-clock). It is a debugging aid whose
  // reports no release server acts on, so both servers built here (abexp
  // and the benchmark echo server) turn it off.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  grpc::EnableDefaultHealthCheckService(true);
}

std::unique_ptr<ReflectionService> MakeReflectionService(
    std::vector<std::string> services, const CallAuthorizer* authorizer) {
  services.push_back("grpc.health.v1.Health");
  services.push_back(
      grpc::reflection::v1alpha::ServerReflection::service_full_name());
  return std::make_unique<ReflectionService>(std::move(services), authorizer);
}

void ConfigureServerBuilder(const ServerSetup& setup,
                            grpc::ServerBuilder* builder, int* selected_port) {
  builder->AddListeningPort(setup.listen_address,
                            setup.credentials != nullptr
                                ? setup.credentials
                                : grpc::InsecureServerCredentials(),
                            selected_port);
  // Without this, gRPC sets SO_REUSEPORT and a second server would silently
  // share a port that is already in use.
  builder->AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder->SetMaxReceiveMessageSize(setup.max_receive_message_bytes);
}

std::string WithPort(const std::string& address, int port) {
  size_t colon = address.rfind(':');
  std::string host =
      colon == std::string::npos ? address : address.substr(0, colon);
  return absl::StrCat(host, ":", port);
}

void ShutdownServer(grpc::Server* server,
                    const std::function<int()>& in_flight_calls,
                    absl::Duration grace) {
  absl::Time deadline = absl::Now() + grace;
  std::atomic<bool> done{false};
  std::thread closer([&] {
    constexpr absl::Duration kQuiet = absl::Milliseconds(100);
    absl::Time quiet_since = absl::Now();  // also gives Shutdown time to start
    while (!done.load() && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(10));
      if (in_flight_calls() > 0) {
        quiet_since = absl::Now();
      } else if (absl::Now() - quiet_since >= kQuiet) {
        grpc_server_cancel_all_calls(server->c_server());
        return;
      }
    }
  });
  server->Shutdown(absl::ToChronoTime(deadline));
  done.store(true);
  closer.join();
}

}  // namespace abexp
