// abexp-server: serves abexp.v1.AssignmentService for one config file.
//
//   abexp-server --config=experiments.yaml [--listen=127.0.0.1:50051]
//
// On start it prints one line to stdout:
//   abexp-server listening on HOST:PORT config=PATH version=VERSION
// Logs go to stderr. SIGHUP reloads the config (an invalid file keeps the
// last good one); SIGTERM and SIGINT drain in-flight calls and exit 0.
// Exits 1 when the config is invalid or the address cannot be bound.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpc/grpc.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "server/assignment_service.h"
#include "server/config_store.h"

ABSL_FLAG(std::string, config, "",
          "Path of the experiments YAML file to serve (required; see "
          "docs/config.md).");
ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "HOST:PORT to listen on. Port 0 picks a free port; the chosen one is "
          "printed on stdout.");
ABSL_FLAG(
    absl::Duration, shutdown_grace, absl::Seconds(10),
    "On SIGTERM/SIGINT, how long in-flight calls may take to finish before "
    "they are cancelled.");

namespace abexp {
namespace {

struct ServerOptions {
  std::string config_path;
  // Default: 127.0.0.1:50051.
  std::string listen_address = "127.0.0.1:50051";
  // Default: 10s.
  absl::Duration shutdown_grace = absl::Seconds(10);
  // Large enough for a full BatchAssign (1000 units with 100 attributes each).
  // Default: 32 MiB.
  int max_receive_message_bytes = 32 << 20;
};

// One log line per message line, each prefixed with a UTC timestamp, written
// with one call so lines from different threads do not interleave.
void Log(absl::string_view message) {
  std::string prefix =
      absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                                    absl::UTCTimeZone()),
                   " abexp-server: ");
  std::string out;
  for (absl::string_view line :
       absl::StrSplit(message, '\n', absl::SkipEmpty())) {
    absl::StrAppend(&out, prefix, line, "\n");
  }
  std::fputs(out.c_str(), stderr);
  std::fflush(stderr);
}

void LogWarnings(const std::vector<std::string>& warnings) {
  for (const std::string& w : warnings) Log(w);
}

// "HOST:PORT" with the port replaced by `port`.
std::string WithPort(const std::string& address, int port) {
  size_t colon = address.rfind(':');
  std::string host =
      colon == std::string::npos ? address : address.substr(0, colon);
  return absl::StrCat(host, ":", port);
}

// Stops accepting calls and lets in-flight ones finish, for up to `grace`.
//
// grpc::Server::Shutdown also waits for clients to close their connections,
// which an idle client only does seconds after the GOAWAY. So once no call of
// ours has been running for a while, close the remaining connections.
void ShutdownServer(grpc::Server* server, const AssignmentServiceImpl* service,
                    absl::Duration grace) {
  absl::Time deadline = absl::Now() + grace;
  std::atomic<bool> done{false};
  std::thread closer([&] {
    constexpr absl::Duration kQuiet = absl::Milliseconds(100);
    absl::Time quiet_since = absl::Now();  // also gives Shutdown time to start
    while (!done.load() && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(10));
      if (service->in_flight_calls() > 0) {
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

// Handles SIGHUP (reload) and SIGTERM/SIGINT (shutdown) until a shutdown.
// REQUIRES: the signals are blocked in every thread.
void HandleSignals(const sigset_t& signals, ConfigStore* store,
                   grpc::Server* server, const AssignmentServiceImpl* service,
                   absl::Duration grace) {
  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      std::string old_version = store->Snapshot()->version;
      absl::StatusOr<LoadResult> result = store->Reload();
      if (!result.ok()) {
        Log(result.status().message());
        Log(absl::StrCat("config reload failed; keeping version=",
                         old_version));
        continue;
      }
      LogWarnings(result->warnings);
      Log(absl::StrCat("config reloaded version=", result->config->version,
                       result->changed
                           ? absl::StrCat(" (was ", old_version, ")")
                           : std::string(" (unchanged)")));
      continue;
    }
    Log(absl::StrCat("received ", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                     "; finishing in-flight calls (up to ",
                     absl::FormatDuration(grace), ") and shutting down"));
    if (grpc::HealthCheckServiceInterface* health =
            server->GetHealthCheckService()) {
      health->Shutdown();  // report NOT_SERVING while draining
    }
    ShutdownServer(server, service, grace);
    return;
  }
}

int RunServer(const ServerOptions& options) {
  // Block the signals before gRPC starts threads, so all of them inherit the
  // mask and only the sigwait thread sees the signals.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  LoadResult loaded;
  absl::StatusOr<std::unique_ptr<ConfigStore>> store =
      ConfigStore::Open(options.config_path, &loaded);
  if (!store.ok()) {
    Log(store.status().message());
    Log("not starting: fix the config and start again");
    return 1;
  }
  LogWarnings(loaded.warnings);

  AssignmentServiceImpl service(store->get());
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen_address,
                           grpc::InsecureServerCredentials(), &port);
  // Without this, gRPC sets SO_REUSEPORT and a second server would silently
  // share a port that is already in use.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    Log(absl::StrCat("cannot listen on ", options.listen_address,
                     ": the address is invalid or already in use; pass "
                     "--listen=HOST:PORT with a free port (port 0 picks one)"));
    return 1;
  }

  std::string version = loaded.config->version;
  std::printf("abexp-server listening on %s config=%s version=%s\n",
              WithPort(options.listen_address, port).c_str(),
              options.config_path.c_str(), version.c_str());
  std::fflush(stdout);
  Log(absl::StrCat("serving ", options.config_path, " version=", version,
                   " with ", loaded.config->experiments.size(),
                   " experiments and ", loaded.config->features.size(),
                   " features"));

  std::thread signal_thread(HandleSignals, signals, store->get(), server.get(),
                            &service, options.shutdown_grace);
  server->Wait();
  signal_thread.join();
  Log("shut down");
  return 0;
}

}  // namespace
}  // namespace abexp

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Serves abexp experiment assignments over gRPC.\n"
      "Usage: abexp-server --config=experiments.yaml "
      "[--listen=127.0.0.1:50051]");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() > 1) {
    std::fprintf(stderr,
                 "abexp-server: unexpected argument '%s'; flags are written "
                 "--name=value (see --help)\n",
                 args[1]);
    return 1;
  }
  abexp::ServerOptions options;
  options.config_path = absl::GetFlag(FLAGS_config);
  options.listen_address = absl::GetFlag(FLAGS_listen);
  options.shutdown_grace = absl::GetFlag(FLAGS_shutdown_grace);
  if (options.config_path.empty()) {
    std::fprintf(
        stderr,
        "abexp-server: --config is required; pass --config=PATH of the "
        "experiments YAML file (see docs/config.md)\n");
    return 1;
  }
  return abexp::RunServer(options);
}
