// Test support: a real redis-server child process on a free loopback port,
// with its own temporary directory, AOF persistence and no RDB snapshots.
//
// Thread safety: port(), address() and dir() may be called from any thread
// at any time. Kill(), Restart(), Signal() and the destructor must not run
// concurrently with each other.
#ifndef ABEXP_SERVER_TESTING_REDIS_PROCESS_H_
#define ABEXP_SERVER_TESTING_REDIS_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace abexp::testing {

// The path of the executable `name` (e.g. "redis-cli") on PATH, else in
// /usr/bin; "" when neither has it.
std::string FindRedisBinary(absl::string_view name);

// A port the kernel just handed out on 127.0.0.1; free unless someone races
// for it.
absl::StatusOr<int> PickFreeLoopbackPort();

// Runs one command on the Redis at 127.0.0.1:`port` over a new connection
// and returns its status or string reply, an integer reply in decimal (""
// for other types). UNAVAILABLE
// when Redis cannot be reached or answers with an error (its text).
absl::StatusOr<std::string> RedisCommandText(
    int port, const std::vector<std::string>& argv,
    absl::Duration timeout = absl::Seconds(5));

struct RedisProcessOptions {
  // Redis's appendfsync: "everysec", or "always" for tests that kill Redis
  // and expect every acknowledged write back. Default: "everysec".
  std::string appendfsync = "everysec";
  // Passed as --requirepass when non-empty. Default: none.
  std::string password;
  // Extra redis-server arguments, e.g. {"--databases", "4"}. Default: none.
  std::vector<std::string> extra_args;
  // How long Start()/Restart() wait for Redis to answer PING and finish
  // loading its AOF. Default: 30s.
  absl::Duration startup_timeout = absl::Seconds(30);
};

class RedisProcess {
 public:
  // Starts redis-server (from PATH, else /usr/bin/redis-server) with
  // --appendonly yes, --save "", --daemonize no and DEBUG enabled for local
  // clients, on 127.0.0.1 and a free port, in a fresh temp dir. Returns once
  // it answers PING. FAILED_PRECONDITION when redis-server is not installed;
  // UNAVAILABLE (with the Redis log) when it does not come up.
  static absl::StatusOr<std::unique_ptr<RedisProcess>> Start(
      RedisProcessOptions options = {});

  RedisProcess(const RedisProcess&) = delete;
  RedisProcess& operator=(const RedisProcess&) = delete;
  // Stops Redis (SIGTERM, SIGKILL after 10s), reaps it and removes the dir.
  ~RedisProcess();

  int port() const { return port_; }
  std::string address() const;  // "127.0.0.1:PORT"
  const std::string& dir() const { return dir_; }
  // PID of the running redis-server, or -1 after Kill().
  pid_t pid() const { return pid_; }

  // SIGKILLs Redis and reaps it: only what is in the AOF survives.
  // OK if it is not running.
  absl::Status Kill();

  // Starts Redis again on the same port and dir (stopping it first with
  // SIGTERM if it runs), so it replays its AOF. Returns once it answers PING
  // and has finished loading.
  absl::Status Restart();

  // Sends `sig` (e.g. SIGSTOP/SIGCONT to simulate a hung Redis).
  // FAILED_PRECONDITION when it is not running.
  absl::Status Signal(int sig);

  // The Redis log so far (for failure messages).
  std::string Log() const;

 private:
  RedisProcess() = default;
  absl::Status Launch();          // starts redis-server and waits until ready
  absl::Status Stop(int sig);     // signals and reaps; SIGKILL after 10s
  absl::Status WaitUntilReady();  // PING answers PONG and loading:0

  RedisProcessOptions options_;
  std::string binary_;
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace abexp::testing

#endif  // ABEXP_SERVER_TESTING_REDIS_PROCESS_H_
