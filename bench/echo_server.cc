// abexp-echo-server: the gRPC ceiling for abexp's Assign. It serves
// abexp.v1.AssignmentService with the server setup abexp-server uses
// (server/server_setup.h: callback API, gRPC's default callback threads, the
// same channel options, health and reflection), but its Assign does no work:
// it answers every request at once with a canned AssignResponse of about the
// size and shape abexp-server sends for bench/experiments-50.yaml, kept
// ready in gRPC's message allocator so no call even copies it. Benchmarks
// compare abexp-server's Assign QPS and latency with this server's under
// the same load (docs/PERFORMANCE.md). The other methods are UNIMPLEMENTED.
// With --auth_tokens_file, each Assign checks its bearer token for the role
// assign with abexp-server's code (server/service/call_auth.h), and
// reflection needs admin, as on abexp-server.
//
//   abexp-echo-server [--listen=127.0.0.1:50052] [--response_assignments=2]
//                     [--response_features=27] [--auth_tokens_file=PATH]
//                     [--tls_cert_file=F --tls_key_file=F
//                      [--tls_client_ca_file=F]]
//
// The --tls_* flags are abexp-server's (server/server_tls.h), so Assign over
// TLS can be compared with echo over TLS; the echo server does not reload
// them (it has no SIGHUP).
//
// On start it prints one line to stdout:
//   abexp-echo-server listening on HOST:PORT response_bytes=N
// SIGTERM and SIGINT stop it (exit 0). Exits 1 when the address cannot be
// bound, when the --tls_* files are unusable, or when the token file is
// invalid.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "abexp/v1/assignment.grpc.pb.h"
#include "abexp/v1/assignment.pb.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "server/core/token_store.h"
#include "server/core/token_table.h"
#include "server/server_setup.h"
#include "server/server_tls.h"
#include "server/service/call_auth.h"
#include "server/service/unary_call.h"

// The defaults match what abexp-server answers for bench/experiments-50.yaml
// with abexp-loadgen's units. Its 50 experiments sit in 5 layers, so a unit
// is in at most 5; targeting, partial traffic and layer slices leave 1.6 on
// average (2,000 sampled units: 0 to 5, mostly 1 or 2). With no
// feature_keys filter all 27 features come back, most of them defaults.
// abexp-loadgen's response_bytes: 1,146 bytes on average from abexp-server
// (1,002 to 1,500), 1,145 from this server, which prints its size on start.
ABSL_FLAG(std::string, listen, "127.0.0.1:50052",
          "HOST:PORT to listen on. Port 0 picks a free port; the chosen one is "
          "printed on stdout.");
ABSL_FLAG(int, response_assignments, 2,
          "Experiment assignments in the canned AssignResponse.");
ABSL_FLAG(int, response_features, 27,
          "Resolved features in the canned AssignResponse.");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate chain to serve TLS with, as abexp-server's flag; "
          "needs --tls_key_file. Default: none, plain text.");
ABSL_FLAG(std::string, tls_key_file, "",
          "PEM private key of --tls_cert_file, unencrypted.");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA certificate(s) that client certificates must be signed by "
          "(mTLS); needs --tls_cert_file and --tls_key_file.");
ABSL_FLAG(std::string, auth_tokens_file, "",
          "abexp-server's token file (NAME ROLES sha256:HEX per line): when "
          "set, Assign needs a bearer token with the role assign, checked as "
          "abexp-server checks it, and reflection the role admin. Default: "
          "none, every call is allowed.");

namespace abexp {
namespace {

// The layers and feature value kinds the canned response cycles through,
// named like bench/experiments-50.yaml's so strings have realistic lengths.
constexpr const char* kLayers[] = {"checkout", "search", "home_feed", "pricing",
                                   "landing"};

// A response shaped like a real one: assignments in layers, and features of
// every value type, from experiments and from defaults.
v1::AssignResponse CannedResponse(int assignments, int features) {
  v1::AssignResponse response;
  response.set_config_version("3f9c2a41d07e85b6");  // 16 hex digits, as real
  for (int i = 0; i < assignments; ++i) {
    const std::string layer = kLayers[i % 5];
    v1::Assignment* a = response.add_assignments();
    a->set_experiment_key(absl::StrFormat("%s_exp%02d", layer, i / 5 + 1));
    a->set_variant_key(i % 2 == 0 ? "treatment_1" : "control");
    a->set_reason(v1::ASSIGNMENT_REASON_BUCKETED);
    a->set_layer(layer);
    a->set_phase(1);
    a->set_unit_id_type(layer == "landing" ? "device_id" : "user_id");
  }
  // Value kinds in the config's proportions (strings, bools, numbers, JSON
  // about 9:7:6:5), with values as long as its defaults.
  for (int i = 0; i < features; ++i) {
    v1::ResolvedFeature& f = *response.add_features();
    f.set_key(absl::StrFormat("%s_feature%d", kLayers[i % 5], i / 5 + 1));
    switch (i % 4) {
      case 0:
        f.mutable_value()->set_string_value("hero_default.jpg");
        break;
      case 1:
        f.mutable_value()->set_bool_value(false);
        break;
      case 2:
        f.mutable_value()->set_number_value(49);
        break;
      case 3:
        f.mutable_value()->set_json_value("[\"card\",\"paypal\"]");
        break;
    }
    if (i < assignments) {
      f.set_source(v1::FEATURE_SOURCE_EXPERIMENT);
      f.set_experiment_key(response.assignments(i).experiment_key());
      f.set_variant_key(response.assignments(i).variant_key());
    } else {
      f.set_source(v1::FEATURE_SOURCE_DEFAULT);
    }
  }
  return response;
}

// Hands gRPC request/response pairs whose response is already the canned
// one, and takes them back after the call without clearing them, so that no
// call builds or copies a response: what is left per call is gRPC's own
// work, serializing the response included. Thread-safe.
class CannedResponseAllocator final
    : public grpc::MessageAllocator<v1::AssignRequest, v1::AssignResponse> {
 public:
  explicit CannedResponseAllocator(v1::AssignResponse canned)
      : canned_(std::move(canned)) {}
  ~CannedResponseAllocator() override {
    absl::MutexLock lock(&mu_);
    for (Holder* h : free_) delete h;
  }

  grpc::MessageHolder<v1::AssignRequest, v1::AssignResponse>* AllocateMessages()
      override {
    {
      absl::MutexLock lock(&mu_);
      if (!free_.empty()) {
        Holder* h = free_.back();
        free_.pop_back();
        return h;
      }
    }
    return new Holder(this, canned_);
  }

 private:
  class Holder final
      : public grpc::MessageHolder<v1::AssignRequest, v1::AssignResponse> {
   public:
    Holder(CannedResponseAllocator* owner, const v1::AssignResponse& canned)
        : owner_(owner), response_(canned) {
      set_request(&request_);
      set_response(&response_);
    }
    void Release() override {
      absl::MutexLock lock(&owner_->mu_);
      owner_->free_.push_back(this);
    }

   private:
    CannedResponseAllocator* const owner_;
    v1::AssignRequest request_;    // gRPC parses into it (clearing it first)
    v1::AssignResponse response_;  // the canned response, never changed
  };

  const v1::AssignResponse canned_;
  absl::Mutex mu_;
  // Pairs not in a call; as many exist as calls ever ran at once.
  std::vector<Holder*> free_ ABSL_GUARDED_BY(mu_);
};

class EchoAssignmentService final
    : public v1::AssignmentService::CallbackService {
 public:
  // REQUIRES: `allocator` and `authorizer` outlive the server.
  EchoAssignmentService(CannedResponseAllocator* allocator,
                        const CallAuthorizer* authorizer)
      : authorizer_(authorizer) {
    SetMessageAllocatorFor_Assign(allocator);
  }

  // The response is already filled in (see CannedResponseAllocator).
  grpc::ServerUnaryReactor* Assign(grpc::CallbackServerContext* context,
                                   const v1::AssignRequest* request,
                                   v1::AssignResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    absl::Status admitted = authorizer_->Check(
        *context, kRoleAssign, "abexp.v1.AssignmentService/Assign");
    reactor->Finish(ToGrpcStatus(admitted));
    return reactor;
  }

 private:
  const CallAuthorizer* const authorizer_;
};

int Run(ServerSetup setup, const TlsFiles& tls_files, int assignments,
        int features, const std::string& auth_tokens_file) {
  // Block the signals before gRPC starts threads, so only sigwait sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::unique_ptr<TokenStore> tokens;
  if (!auth_tokens_file.empty()) {
    absl::StatusOr<std::unique_ptr<TokenStore>> opened =
        TokenStore::Open(auth_tokens_file);
    if (!opened.ok()) {
      std::fprintf(stderr, "abexp-echo-server: %s\n",
                   std::string(opened.status().message()).c_str());
      return 1;
    }
    tokens = *std::move(opened);
  }
  const CallAuthorizer authorizer(tokens.get());

  v1::AssignResponse canned = CannedResponse(assignments, features);
  const size_t response_bytes = canned.ByteSizeLong();
  CannedResponseAllocator allocator(std::move(canned));
  EchoAssignmentService service(&allocator, &authorizer);
  std::unique_ptr<ReflectionService> reflection = MakeReflectionService(
      {v1::AssignmentService::service_full_name()}, &authorizer);
  // Outlives the server, which reads the files it serves.
  std::unique_ptr<ServerTls> tls;
  if (tls_files.enabled()) {
    absl::StatusOr<std::unique_ptr<ServerTls>> created =
        ServerTls::Create(tls_files);
    if (!created.ok()) {
      std::fprintf(stderr, "abexp-echo-server: %s\n",
                   std::string(created.status().message()).c_str());
      return 1;
    }
    tls = *std::move(created);
    setup.credentials = tls->credentials();
  } else if (!IsLoopbackListenAddress(setup.listen_address)) {
    std::fprintf(stderr,
                 "abexp-echo-server: warning: listening on %s in plain text; "
                 "pass --tls_cert_file and --tls_key_file for TLS\n",
                 setup.listen_address.c_str());
  }
  EnableServerPlugins();
  grpc::ServerBuilder builder;
  int port = 0;
  ConfigureServerBuilder(setup, &builder, &port);
  builder.RegisterService(&service);
  builder.RegisterService(reflection.get());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr,
                 "abexp-echo-server: cannot listen on %s: the address is "
                 "invalid or already in use; pass --listen=HOST:PORT with a "
                 "free port (port 0 picks one)\n",
                 setup.listen_address.c_str());
    return 1;
  }
  std::printf("abexp-echo-server listening on %s response_bytes=%zu\n",
              WithPort(setup.listen_address, port).c_str(), response_bytes);
  std::fflush(stdout);

  int sig = 0;
  while (sigwait(&signals, &sig) != 0) {
  }
  if (grpc::HealthCheckServiceInterface* health =
          server->GetHealthCheckService()) {
    health->Shutdown();
  }
  // Every call finishes inside its handler, within microseconds, so there
  // is nothing to count as in flight: the quiet period covers them.
  ShutdownServer(
      server.get(), [] { return 0; }, absl::Seconds(2));
  server->Wait();
  return 0;
}

}  // namespace
}  // namespace abexp

int main(int argc, char** argv) {
  // --help lists this file's flags (absl's default looks for main.cc).
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "bench/echo_server.cc");
  };
  absl::SetFlagsUsageConfig(usage);
  absl::SetProgramUsageMessage(
      "The benchmark ceiling: abexp.v1.AssignmentService/Assign answered at "
      "once with a canned response, on the same gRPC server setup as "
      "abexp-server.\n"
      "Usage: abexp-echo-server [--listen=127.0.0.1:50052] "
      "[--response_assignments=2] [--response_features=27] "
      "[--auth_tokens_file=PATH]\n"
      "       [--tls_cert_file=cert.pem --tls_key_file=key.pem "
      "[--tls_client_ca_file=clients-ca.pem]]\n"
      "Prints 'abexp-echo-server listening on HOST:PORT response_bytes=N' "
      "when ready; SIGTERM or SIGINT stops it.");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() > 1) {
    std::fprintf(stderr,
                 "abexp-echo-server: unexpected argument '%s'; flags are "
                 "written --name=value (see --help)\n",
                 args[1]);
    return 1;
  }
  const int assignments = absl::GetFlag(FLAGS_response_assignments);
  const int features = absl::GetFlag(FLAGS_response_features);
  if (assignments < 0 || features < 0) {
    std::fprintf(stderr,
                 "abexp-echo-server: --response_assignments and "
                 "--response_features must be 0 or more\n");
    return 1;
  }
  abexp::TlsFiles tls;
  tls.cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  tls.key_file = absl::GetFlag(FLAGS_tls_key_file);
  tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file);
  if (absl::Status s = abexp::CheckTlsFlags(tls); !s.ok()) {
    std::fprintf(stderr, "abexp-echo-server: %s\n",
                 std::string(s.message()).c_str());
    return 1;
  }
  abexp::ServerSetup setup;
  setup.listen_address = absl::GetFlag(FLAGS_listen);
  return abexp::Run(std::move(setup), tls, assignments, features,
                    absl::GetFlag(FLAGS_auth_tokens_file));
}
