#include "server/testing/redis_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

extern char** environ;

namespace abexp::testing {
namespace {

struct ContextDeleter {
  void operator()(redisContext* c) const {
    if (c != nullptr) redisFree(c);
  }
};
struct ReplyDeleter {
  void operator()(redisReply* r) const {
    if (r != nullptr) freeReplyObject(r);
  }
};
using ContextPtr = std::unique_ptr<redisContext, ContextDeleter>;
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

}  // namespace

std::string FindRedisBinary(absl::string_view name) {
  const char* path = std::getenv("PATH");
  if (path != nullptr) {
    for (absl::string_view d : absl::StrSplit(path, ':', absl::SkipEmpty())) {
      std::string candidate = absl::StrCat(d, "/", name);
      if (access(candidate.c_str(), X_OK) == 0) return candidate;
    }
  }
  std::string fallback = absl::StrCat("/usr/bin/", name);
  if (access(fallback.c_str(), X_OK) == 0) return fallback;
  return "";
}

absl::StatusOr<int> PickFreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int err = errno;
    close(fd);
    return absl::InternalError(
        absl::StrCat("picking a free port: ", std::strerror(err)));
  }
  close(fd);
  return ntohs(addr.sin_port);
}

namespace {

// Sends one command; returns the reply's text (status, string, integer in
// decimal; "" for others), or an error reply as UNAVAILABLE.
absl::StatusOr<std::string> Command(redisContext* c,
                                    const std::vector<std::string>& cmd) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const std::string& a : cmd) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  ReplyPtr reply(static_cast<redisReply*>(redisCommandArgv(
      c, static_cast<int>(argv.size()), argv.data(), lens.data())));
  if (reply == nullptr) return absl::UnavailableError(c->errstr);
  if (reply->type == REDIS_REPLY_ERROR)
    return absl::UnavailableError(std::string(reply->str, reply->len));
  if (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS) {
    return std::string(reply->str, reply->len);
  }
  if (reply->type == REDIS_REPLY_INTEGER) return absl::StrCat(reply->integer);
  return std::string();
}

}  // namespace

absl::StatusOr<std::string> RedisCommandText(
    int port, const std::vector<std::string>& argv, absl::Duration timeout) {
  const timeval tv = absl::ToTimeval(timeout);
  ContextPtr c(redisConnectWithTimeout("127.0.0.1", port, tv));
  if (c == nullptr) return absl::ResourceExhaustedError("redisConnect: OOM");
  if (c->err != 0 || redisSetTimeout(c.get(), tv) != REDIS_OK) {
    return absl::UnavailableError(
        absl::StrCat("cannot reach Redis on port ", port, ": ", c->errstr));
  }
  return Command(c.get(), argv);
}

absl::StatusOr<std::unique_ptr<RedisProcess>> RedisProcess::Start(
    RedisProcessOptions options) {
  std::unique_ptr<RedisProcess> p(new RedisProcess());
  p->options_ = std::move(options);
  p->binary_ = FindRedisBinary("redis-server");
  if (p->binary_.empty()) {
    return absl::FailedPreconditionError(
        "redis-server is not on PATH or at /usr/bin/redis-server; install "
        "redis-server "
        "(scripts/install-deps.sh does)");
  }
  const char* base = std::getenv("TEST_TMPDIR");
  std::string templ = absl::StrCat(base != nullptr && *base ? base : "/tmp",
                                   "/abexp-redis-XXXXXX");
  if (mkdtemp(templ.data()) == nullptr) {
    return absl::InternalError(
        absl::StrCat("mkdtemp(", templ, "): ", std::strerror(errno)));
  }
  p->dir_ = templ;
  // Another process may grab the picked port before Redis binds it: retry.
  absl::Status last;
  for (int attempt = 0; attempt < 5; ++attempt) {
    absl::StatusOr<int> port = PickFreeLoopbackPort();
    if (!port.ok()) return port.status();
    p->port_ = *port;
    last = p->Launch();
    if (last.ok()) return p;
    if (!absl::StrContains(p->Log(), "Address already in use")) break;
  }
  return last;
}

RedisProcess::~RedisProcess() {
  if (pid_ > 0) Stop(SIGTERM).IgnoreError();
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string RedisProcess::address() const {
  return absl::StrCat("127.0.0.1:", port_);
}

std::string RedisProcess::Log() const {
  std::ifstream in(dir_ + "/redis.log");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status RedisProcess::Launch() {
  std::vector<std::string> args = {
      binary_,
      "--port",
      absl::StrCat(port_),
      "--bind",
      "127.0.0.1",
      "--dir",
      dir_,
      "--appendonly",
      "yes",
      "--appendfsync",
      options_.appendfsync,
      "--save",
      "",
      "--daemonize",
      "no",
      "--enable-debug-command",
      "local",
  };
  if (!options_.password.empty()) {
    args.push_back("--requirepass");
    args.push_back(options_.password);
  }
  args.insert(args.end(), options_.extra_args.begin(),
              options_.extra_args.end());
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  const std::string log = dir_ + "/redis.log";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null",
                                   O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, binary_.c_str(), &actions, nullptr,
                             argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("cannot run ", binary_, ": ", std::strerror(rc)));
  }
  pid_ = pid;
  absl::Status ready = WaitUntilReady();
  if (!ready.ok()) Stop(SIGKILL).IgnoreError();
  return ready;
}

absl::Status RedisProcess::WaitUntilReady() {
  const absl::Time deadline = absl::Now() + options_.startup_timeout;
  std::string last = "no answer yet";
  while (absl::Now() < deadline) {
    int wstatus = 0;
    if (waitpid(pid_, &wstatus, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::UnavailableError(
          absl::StrCat("redis-server exited during startup (status ", wstatus,
                       "); its log:\n", Log()));
    }
    timeval tv = {0, 200 * 1000};
    ContextPtr c(redisConnectWithTimeout("127.0.0.1", port_, tv));
    if (c != nullptr && c->err == 0 &&
        redisSetTimeout(c.get(), tv) == REDIS_OK) {
      absl::Status auth = absl::OkStatus();
      if (!options_.password.empty())
        auth = Command(c.get(), {"AUTH", options_.password}).status();
      absl::StatusOr<std::string> pong =
          auth.ok() ? Command(c.get(), {"PING"})
                    : absl::StatusOr<std::string>(auth);
      if (pong.ok() && *pong == "PONG") {
        absl::StatusOr<std::string> info =
            Command(c.get(), {"INFO", "persistence"});
        if (info.ok() && absl::StrContains(*info, "loading:0") &&
            !absl::StrContains(*info, "async_loading:1")) {
          return absl::OkStatus();
        }
        last =
            info.ok() ? "still loading" : std::string(info.status().message());
      } else {
        last = pong.ok() ? *pong : std::string(pong.status().message());
      }
    } else if (c != nullptr) {
      last = c->errstr;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::UnavailableError(
      absl::StrCat("redis-server on port ", port_, " not ready after ",
                   absl::FormatDuration(options_.startup_timeout),
                   " (last: ", last, "); its log:\n", Log()));
}

absl::Status RedisProcess::Stop(int sig) {
  if (pid_ <= 0) return absl::OkStatus();
  kill(pid_, sig);
  if (sig != SIGKILL)
    kill(pid_, SIGCONT);  // a stopped process would not see SIGTERM
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  int wstatus = 0;
  while (true) {
    pid_t r = waitpid(pid_, &wstatus, WNOHANG);
    if (r == pid_ || (r < 0 && errno != EINTR)) break;
    if (absl::Now() > deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &wstatus, 0);
      break;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  pid_ = -1;
  return absl::OkStatus();
}

absl::Status RedisProcess::Kill() { return Stop(SIGKILL); }

absl::Status RedisProcess::Restart() {
  if (absl::Status s = Stop(SIGTERM); !s.ok()) return s;
  return Launch();
}

absl::Status RedisProcess::Signal(int sig) {
  if (pid_ <= 0)
    return absl::FailedPreconditionError("redis-server is not running");
  if (kill(pid_, sig) != 0) return absl::InternalError(std::strerror(errno));
  return absl::OkStatus();
}

}  // namespace abexp::testing
