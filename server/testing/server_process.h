// Test support for cross-component tests: run abexp-server as a real
// subprocess on loopback, run the `abexp` CLI, and keep temporary files.
//
// ABEXP_SERVER_BIN and ABEXP_CLI_BIN (compile definitions of this library)
// are the paths of the built binaries.
//
// Thread safety: a ServerProcess may be used from several threads at once
// (Stderr(), Signal() and the wait functions are synchronized). RunProcess and
// HealthCheck are thread-safe. A TempDir is not.
#ifndef ABEXP_SERVER_TESTING_SERVER_PROCESS_H_
#define ABEXP_SERVER_TESTING_SERVER_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/security/credentials.h"

namespace abexp::testing {

class TempDir;

// A running abexp-server. The destructor sends SIGTERM and reaps it (SIGKILL
// after 10s if it does not exit).
class ServerProcess {
 public:
  // Starts ABEXP_SERVER_BIN with `--config=config_path --listen=127.0.0.1:0`
  // followed by extra_args (a later flag wins, so extra_args may override
  // --listen), plus `--spool_dir=` a fresh directory of its own, removed by
  // the destructor, unless extra_args set --spool_dir (abexp-server locks its
  // spool, so parallel tests must not share one). Reads stdout until the
  // "abexp-server listening on ADDRESS ..." line, then waits until the gRPC
  // health service reports SERVING.
  //
  // If the server exits first (e.g. the config is invalid) or nothing happens
  // within 30s, returns an error whose message holds the exit status and the
  // captured stderr.
  //
  // `credentials` are what a client needs to reach the server, e.g. TLS ones
  // trusting its CA for a server started with --tls_* flags
  // (server/testing/test_certs.h); the health checks use them. Default:
  // plain text.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(
      const std::string& config_path,
      const std::vector<std::string>& extra_args = {},
      std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);

  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  ~ServerProcess();

  // "127.0.0.1:PORT", as printed by the server.
  std::string address() const { return address_; }
  // The credentials given to Start(): plain text ones when it was given none.
  std::shared_ptr<grpc::ChannelCredentials> credentials() const {
    return credentials_;
  }
  pid_t pid() const { return pid_; }
  // The whole "abexp-server listening on ..." line, without the newline.
  std::string listening_line() const { return listening_line_; }
  // The HTTP listener's port, from the listening line's "http=HOST:PORT"
  // (--http_listen); 0 when the server has none.
  int http_port() const;

  // Sends `sig` to the server. FAILED_PRECONDITION once it has been reaped.
  absl::Status Signal(int sig);

  // SIGKILLs the server and reaps it, like a crash: nothing it had not
  // written out survives. OK if it has already exited.
  absl::Status Kill();

  // Starts the server again with the same command line (so the same config,
  // Redis and spool dir), listening on the same address() so clients
  // reconnect. SIGKILLs it first if it still runs; for a clean stop, send
  // SIGTERM and WaitForExit() before. Returns once it reports SERVING, or an
  // error as Start() does (e.g. when another process took the port
  // meanwhile). Afterwards pid(), Stdout() and Stderr() are those of the new
  // process.
  // REQUIRES: no other method of this object runs concurrently.
  absl::Status Restart();

  // Waits for the server to exit and reaps it. Returns its exit code, or
  // 128 + N when killed by signal N. DEADLINE_EXCEEDED if it is still running
  // after `timeout`. May be called again after the exit: returns the same code.
  absl::StatusOr<int> WaitForExit(absl::Duration timeout);

  // Everything the server wrote to stderr / stdout so far.
  std::string Stderr() const;
  std::string Stdout() const;

  // Waits until `needle` occurs at least `occurrences` times in stderr.
  // DEADLINE_EXCEEDED (with the stderr so far) when it does not in time.
  absl::Status WaitForStderr(absl::string_view needle, absl::Duration timeout,
                             int occurrences = 1) const;

 private:
  ServerProcess() = default;

  // Spawns argv, waits for its listening line and SERVING. On the first
  // launch sets address_; later ones must print the same address.
  absl::Status Launch(const std::vector<std::string>& argv);
  // Spawns argv with its stdout and stderr drained into stdout_/stderr_ by
  // two reader threads.
  absl::Status SpawnWithReaders(const std::vector<std::string>& argv);
  // The address of the listening line, or "" when stdout closed (or 30 s
  // passed) without one.
  std::string AwaitListeningAddress();
  // Polls the health service at address_ until SERVING (OK), the server
  // exits, or 30 s pass; the error says the last health answer.
  absl::Status AwaitServing();
  // UNAVAILABLE: "abexp-server <what> (<exit status>); command: ..." with
  // the server's stderr and stdout, after letting an exiting server finish.
  absl::Status LaunchFailure(absl::string_view what,
                             const std::vector<std::string>& argv);

  // Appends everything read from fd to *out until EOF, then sets *eof.
  void Drain(int fd, std::string* out, bool* eof);
  // REQUIRES: mu_ held. Reaps the child if it has exited.
  void ReapIfExited(bool block) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The command line of Start(); Restart() adds --listen=address_.
  std::vector<std::string> argv_;
  std::shared_ptr<grpc::ChannelCredentials> credentials_;
  // The spool dir Start() made, when the test did not pass --spool_dir.
  std::unique_ptr<TempDir> own_spool_dir_;
  pid_t pid_ = -1;
  std::string address_;
  std::string listening_line_;

  mutable absl::Mutex mu_;
  std::string stdout_ ABSL_GUARDED_BY(mu_);
  std::string stderr_ ABSL_GUARDED_BY(mu_);
  bool stdout_eof_ ABSL_GUARDED_BY(mu_) = false;
  bool stderr_eof_ ABSL_GUARDED_BY(mu_) = false;
  bool reaped_ ABSL_GUARDED_BY(mu_) = false;
  int exit_code_ ABSL_GUARDED_BY(mu_) = -1;

  std::thread stdout_reader_;
  std::thread stderr_reader_;
};

// Runs argv (argv[0] is a path, or a name looked up on PATH) with stdin from
// /dev/null, capturing stdout and stderr (either pointer may be null).
// Returns the exit code, or 128 + N when killed by signal N. Kills the process
// and returns DEADLINE_EXCEEDED after `timeout`.
absl::StatusOr<int> RunProcess(const std::vector<std::string>& argv,
                               std::string* stdout_text,
                               std::string* stderr_text,
                               absl::Duration timeout = absl::Seconds(60));

// Calls grpc.health.v1.Health/Check for `service` ("" = the whole server) and
// returns the serving status as a number (1 = SERVING, 2 = NOT_SERVING,
// 3 = SERVICE_UNKNOWN). RPC errors are returned as they are. `credentials`
// default to plain text.
absl::StatusOr<int> HealthCheck(
    const std::string& address, const std::string& service = "",
    absl::Duration timeout = absl::Seconds(2),
    std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);

// A fresh temporary directory, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();  // aborts the test binary if the directory cannot be created
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();

  const std::string& path() const { return path_; }

  // Writes `contents` to path()/name atomically (write + rename, so a server
  // reloading concurrently never reads half a file) and returns the full path.
  std::string Write(const std::string& name, absl::string_view contents) const;

 private:
  std::string path_;
};

}  // namespace abexp::testing

#endif  // ABEXP_SERVER_TESTING_SERVER_PROCESS_H_
