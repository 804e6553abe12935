// The gRPC server setup every abexp server binary shares: abexp-server and
// the benchmark echo server (bench/echo_server.cc) build their grpc::Server
// the same way, so the echo server measures the same gRPC configuration
// (callback API, gRPC's default callback threads, the same channel options,
// health and reflection services, the same token checks) and the benchmark
// ratio compares like with like.
//
// Thread safety: EnableServerPlugins and ConfigureServerBuilder are meant to
// be called from main() before the server starts; ShutdownServer may be
// called from any thread.
#ifndef ABEXP_SERVER_SERVER_SETUP_H_
#define ABEXP_SERVER_SERVER_SETUP_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "server/service/call_auth.h"
#include "server/service/reflection_service.h"

namespace abexp {

struct ServerSetup {
  // HOST:PORT to listen on; port 0 picks a free port. Default:
  // 127.0.0.1:50051.
  std::string listen_address = "127.0.0.1:50051";
  // Large enough for a full BatchAssign (1000 units with 100 attributes
  // each) and a recording batch of 50,000 items. Default: 64 MiB.
  int max_receive_message_bytes = 64 << 20;
  // The listening port's credentials, e.g. ServerTls::credentials()
  // (server/server_tls.h). Default: null, plain text.
  std::shared_ptr<grpc::ServerCredentials> credentials;
};

// Turns on gRPC's health service (grpc.health.v1) for every server built
// afterwards, and turns off absl's mutex deadlock detection for the whole
// process (Debian's absl has it on; it costs CPU on every lock). Server
// reflection is a service of our own (MakeReflectionService).
// REQUIRES: called before the grpc::ServerBuilder is constructed.
void EnableServerPlugins();

// Adds the listening port and the shared server options to `builder`. Once
// the server is built, *selected_port holds the bound port, or 0 when the
// address could not be bound.
void ConfigureServerBuilder(const ServerSetup& setup,
                            grpc::ServerBuilder* builder, int* selected_port);

// The server reflection service (server/service/reflection_service.h) of a
// server whose own services are `services` (full names, e.g.
// "abexp.v1.AssignmentService"); it lists them, the health service and
// itself. When `authorizer` checks tokens, only admin tokens may use it.
// Register it on the builder; it must outlive the server.
std::unique_ptr<ReflectionService> MakeReflectionService(
    std::vector<std::string> services, const CallAuthorizer* authorizer);

// "HOST:PORT" with the port replaced by `port`: what a server prints once it
// knows the port it bound.
std::string WithPort(const std::string& address, int port);

// Stops accepting calls and lets in-flight ones finish, for up to `grace`;
// then cancels what is left. `in_flight_calls` returns how many calls of the
// server's services have started and not finished.
//
// grpc::Server::Shutdown also waits for clients to close their connections,
// which an idle client only does seconds after the GOAWAY, so once no call
// has been running for 100ms the remaining connections are closed.
void ShutdownServer(grpc::Server* server,
                    const std::function<int()>& in_flight_calls,
                    absl::Duration grace);

}  // namespace abexp

#endif  // ABEXP_SERVER_SERVER_SETUP_H_
