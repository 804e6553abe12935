#include "server/testing/server_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/byte_buffer.h"

extern char** environ;

namespace abexp::testing {
namespace {

constexpr char kListeningPrefix[] = "abexp-server listening on ";

absl::Status ErrnoError(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

// Owns a file descriptor.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    reset(o.release());
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

struct Pipe {
  Fd read;
  Fd write;
};

absl::StatusOr<Pipe> MakePipe() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return ErrnoError("pipe2");
  Pipe p;
  p.read.reset(fds[0]);
  p.write.reset(fds[1]);
  return p;
}

// Spawns argv with stdin from /dev/null and stdout/stderr to the given fds.
// The child starts with an empty signal mask and default dispositions, so it
// does not inherit whatever the test process blocked.
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, int stdout_fd,
                            int stderr_fd) {
  if (argv.empty()) return absl::InvalidArgumentError("argv is empty");
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, stdout_fd, 1);
  posix_spawn_file_actions_adddup2(&actions, stderr_fd, 2);

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty, all;
  sigemptyset(&empty);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  pid_t pid = -1;
  int rc = posix_spawnp(&pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("cannot start ", argv[0], ": ", std::strerror(rc)));
  }
  return pid;
}

int DecodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

size_t CountOccurrences(absl::string_view haystack, absl::string_view needle) {
  size_t n = 0;
  for (size_t pos = haystack.find(needle); pos != absl::string_view::npos;
       pos = haystack.find(needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

// Reads a varint at *p; false on truncation.
bool ReadVarint(const std::string& s, size_t* p, uint64_t* value) {
  *value = 0;
  for (int shift = 0; shift < 64 && *p < s.size(); shift += 7) {
    uint8_t byte = static_cast<uint8_t>(s[(*p)++]);
    *value |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if (!(byte & 0x80)) return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(
    const std::string& config_path, const std::vector<std::string>& extra_args,
    std::shared_ptr<grpc::ChannelCredentials> credentials) {
  std::vector<std::string> argv = {ABEXP_SERVER_BIN,
                                   absl::StrCat("--config=", config_path),
                                   "--listen=127.0.0.1:0"};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());

  std::unique_ptr<ServerProcess> server(new ServerProcess());
  server->credentials_ = credentials != nullptr
                             ? std::move(credentials)
                             : grpc::InsecureChannelCredentials();
  const bool has_spool_dir =
      std::any_of(extra_args.begin(), extra_args.end(), [](const auto& a) {
        return a == "--spool_dir" || absl::StartsWith(a, "--spool_dir=");
      });
  if (!has_spool_dir) {
    server->own_spool_dir_ = std::make_unique<TempDir>();
    argv.push_back(
        absl::StrCat("--spool_dir=", server->own_spool_dir_->path(), "/spool"));
  }
  server->argv_ = argv;
  // On failure the destructor stops whatever was started.
  if (absl::Status s = server->Launch(argv); !s.ok()) return s;
  return server;
}

absl::Status ServerProcess::Launch(const std::vector<std::string>& argv) {
  if (absl::Status s = SpawnWithReaders(argv); !s.ok()) return s;
  const std::string address = AwaitListeningAddress();
  if (address.empty()) {
    return LaunchFailure("did not print its listening line", argv);
  }
  if (address_.empty()) {
    address_ = address;
  } else if (address != address_) {
    return LaunchFailure(absl::StrCat("listens on ", address, " instead of ",
                                      address_, " after a restart"),
                         argv);
  }
  if (absl::Status s = AwaitServing(); !s.ok()) {
    return LaunchFailure(s.message(), argv);
  }
  return absl::OkStatus();
}

absl::Status ServerProcess::SpawnWithReaders(
    const std::vector<std::string>& argv) {
  absl::StatusOr<Pipe> out = MakePipe();
  if (!out.ok()) return out.status();
  absl::StatusOr<Pipe> err = MakePipe();
  if (!err.ok()) return err.status();
  absl::StatusOr<pid_t> pid = Spawn(argv, out->write.get(), err->write.get());
  if (!pid.ok()) return pid.status();
  out->write.reset();
  err->write.reset();

  {
    absl::MutexLock lock(&mu_);
    pid_ = *pid;
    stdout_.clear();
    stderr_.clear();
    stdout_eof_ = false;
    stderr_eof_ = false;
    reaped_ = false;
    exit_code_ = -1;
  }
  int out_fd = out->read.release();
  int err_fd = err->read.release();
  stdout_reader_ =
      std::thread([this, out_fd] { Drain(out_fd, &stdout_, &stdout_eof_); });
  stderr_reader_ =
      std::thread([this, err_fd] { Drain(err_fd, &stderr_, &stderr_eof_); });
  return absl::OkStatus();
}

std::string ServerProcess::AwaitListeningAddress() {
  // Wait for the listening line, or for stdout to close (the server exited).
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (stdout_eof_) return true;
    size_t pos = stdout_.find(kListeningPrefix);
    return pos != std::string::npos &&
           stdout_.find('\n', pos) != std::string::npos;
  };
  mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Seconds(30));
  size_t pos = stdout_.find(kListeningPrefix);
  size_t eol = pos == std::string::npos ? pos : stdout_.find('\n', pos);
  if (eol == std::string::npos) return "";
  listening_line_ = stdout_.substr(pos, eol - pos);
  absl::string_view rest =
      absl::string_view(listening_line_).substr(std::strlen(kListeningPrefix));
  return std::string(rest.substr(0, rest.find(' ')));
}

int ServerProcess::http_port() const {
  const size_t at = listening_line_.find(" http=");
  if (at == std::string::npos) return 0;
  const std::string address = listening_line_.substr(at + 6);
  int port = 0;
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port)) {
    return 0;
  }
  return port;
}

absl::Status ServerProcess::AwaitServing() {
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  absl::Status last;
  while (absl::Now() < deadline) {
    absl::StatusOr<int> health =
        HealthCheck(address_, "", absl::Seconds(2), credentials_);
    if (health.ok() && *health == 1) return absl::OkStatus();
    last = health.ok()
               ? absl::UnavailableError(absl::StrCat("health status ", *health))
               : health.status();
    {
      absl::MutexLock lock(&mu_);
      ReapIfExited(/*block=*/false);
      if (reaped_) break;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::UnavailableError(
      absl::StrCat("never reported SERVING on ", address_,
                   " (last health check: ", last.ToString(), ")"));
}

absl::Status ServerProcess::LaunchFailure(
    absl::string_view what, const std::vector<std::string>& argv) {
  // A server that closed stdout is exiting: let it finish, so the message
  // has its exit status and all of its stderr. (The destructor stops it
  // otherwise.)
  bool exiting;
  {
    absl::MutexLock lock(&mu_);
    exiting = stdout_eof_;
  }
  if (exiting) (void)WaitForExit(absl::Seconds(5));
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stderr_eof_),
                       exiting ? absl::Seconds(5) : absl::ZeroDuration());
  ReapIfExited(/*block=*/false);
  std::string status = reaped_ ? absl::StrCat("exited with status ", exit_code_)
                               : std::string("still running");
  return absl::UnavailableError(
      absl::StrCat("abexp-server ", what, " (", status,
                   "); command: ", absl::StrJoin(argv, " "),
                   "\n--- stderr ---\n", stderr_, "--- stdout ---\n", stdout_));
}

absl::Status ServerProcess::Kill() {
  {
    absl::MutexLock lock(&mu_);
    ReapIfExited(/*block=*/false);
    if (reaped_) return absl::OkStatus();
    if (kill(pid_, SIGKILL) != 0) return ErrnoError("kill");
  }
  // A process blocked in the kernel (e.g. in fsync) dies when that returns.
  return WaitForExit(absl::Seconds(30)).status();
}

absl::Status ServerProcess::Restart() {
  if (absl::Status s = Kill(); !s.ok()) return s;
  // The dead server's pipes are closed, so the readers reach EOF.
  if (stdout_reader_.joinable()) stdout_reader_.join();
  if (stderr_reader_.joinable()) stderr_reader_.join();
  std::vector<std::string> argv = argv_;
  argv.push_back(absl::StrCat("--listen=", address_));
  return Launch(argv);
}

ServerProcess::~ServerProcess() {
  bool running;
  {
    absl::MutexLock lock(&mu_);
    ReapIfExited(/*block=*/false);
    running = !reaped_;
  }
  if (running && pid_ > 0) {
    kill(pid_, SIGTERM);
    if (!WaitForExit(absl::Seconds(10)).ok()) {
      kill(pid_, SIGKILL);
      (void)WaitForExit(absl::InfiniteDuration());
    }
  }
  if (stdout_reader_.joinable()) stdout_reader_.join();
  if (stderr_reader_.joinable()) stderr_reader_.join();
}

void ServerProcess::Drain(int fd, std::string* out, bool* eof) {
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    absl::MutexLock lock(&mu_);
    out->append(buf, static_cast<size_t>(n));
  }
  close(fd);
  absl::MutexLock lock(&mu_);
  *eof = true;
}

void ServerProcess::ReapIfExited(bool block) {
  if (reaped_ || pid_ <= 0) return;
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid_, &status, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) {
    reaped_ = true;
    exit_code_ = DecodeWaitStatus(status);
  }
}

absl::Status ServerProcess::Signal(int sig) {
  absl::MutexLock lock(&mu_);
  ReapIfExited(/*block=*/false);
  if (reaped_) {
    return absl::FailedPreconditionError(
        absl::StrCat("abexp-server already exited with status ", exit_code_));
  }
  if (kill(pid_, sig) != 0) return ErrnoError("kill");
  return absl::OkStatus();
}

absl::StatusOr<int> ServerProcess::WaitForExit(absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      ReapIfExited(/*block=*/false);
      if (reaped_) return exit_code_;
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("abexp-server (pid ", pid_, ") still running after ",
                       absl::FormatDuration(timeout)));
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
}

std::string ServerProcess::Stderr() const {
  absl::MutexLock lock(&mu_);
  return stderr_;
}

std::string ServerProcess::Stdout() const {
  absl::MutexLock lock(&mu_);
  return stdout_;
}

absl::Status ServerProcess::WaitForStderr(absl::string_view needle,
                                          absl::Duration timeout,
                                          int occurrences) const {
  absl::MutexLock lock(&mu_);
  auto found = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stderr_eof_ || CountOccurrences(stderr_, needle) >=
                              static_cast<size_t>(occurrences);
  };
  mu_.AwaitWithTimeout(absl::Condition(&found), timeout);
  size_t n = CountOccurrences(stderr_, needle);
  if (n >= static_cast<size_t>(occurrences)) return absl::OkStatus();
  return absl::DeadlineExceededError(
      absl::StrCat("expected \"", needle, "\" ", occurrences,
                   " time(s) in abexp-server's stderr, saw it ", n, " time(s)",
                   stderr_eof_ ? " before stderr closed" : "",
                   "\n--- stderr ---\n", stderr_));
}

absl::StatusOr<int> RunProcess(const std::vector<std::string>& argv,
                               std::string* stdout_text,
                               std::string* stderr_text,
                               absl::Duration timeout) {
  absl::StatusOr<Pipe> out = MakePipe();
  if (!out.ok()) return out.status();
  absl::StatusOr<Pipe> err = MakePipe();
  if (!err.ok()) return err.status();
  absl::StatusOr<pid_t> pid = Spawn(argv, out->write.get(), err->write.get());
  if (!pid.ok()) return pid.status();
  out->write.reset();
  err->write.reset();

  std::string captured[2];
  pollfd fds[2] = {{out->read.get(), POLLIN, 0}, {err->read.get(), POLLIN, 0}};
  int open_fds = 2;
  absl::Time deadline = absl::Now() + timeout;
  bool timed_out = false;
  while (open_fds > 0) {
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      timed_out = true;
      break;
    }
    int rc =
        poll(fds, 2, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        fds[i].fd = -1;  // poll ignores negative fds
        --open_fds;
      } else {
        captured[i].append(buf, static_cast<size_t>(n));
      }
    }
  }
  if (timed_out) kill(*pid, SIGKILL);
  int status = 0;
  while (waitpid(*pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (stdout_text != nullptr) *stdout_text = captured[0];
  if (stderr_text != nullptr) *stderr_text = captured[1];
  if (timed_out) {
    return absl::DeadlineExceededError(absl::StrCat(
        "`", absl::StrJoin(argv, " "), "` did not finish within ",
        absl::FormatDuration(timeout), "; killed it. stderr:\n", captured[1]));
  }
  return DecodeWaitStatus(status);
}

absl::StatusOr<int> HealthCheck(
    const std::string& address, const std::string& service,
    absl::Duration timeout,
    std::shared_ptr<grpc::ChannelCredentials> credentials) {
  // grpc.health.v1 has no installed C++ stubs, so call it generically.
  // HealthCheckRequest{string service = 1}; HealthCheckResponse{enum status =
  // 1}.
  std::shared_ptr<grpc::Channel> channel = grpc::CreateChannel(
      address, credentials != nullptr ? std::move(credentials)
                                      : grpc::InsecureChannelCredentials());
  grpc::TemplatedGenericStub<grpc::ByteBuffer, grpc::ByteBuffer> stub(channel);
  std::string request_bytes;
  if (!service.empty()) {
    request_bytes.push_back(0x0a);  // field 1, length-delimited
    request_bytes.push_back(static_cast<char>(service.size()));  // < 128 bytes
    request_bytes += service;
  }
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(),
                 &request, &response,
                 [&done](grpc::Status s) { done.set_value(std::move(s)); });
  grpc::Status status = done.get_future().get();
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        absl::StrCat("health check on ", address, ": ",
                                     status.error_message()));
  }
  std::vector<grpc::Slice> slices;
  (void)response.Dump(&slices);
  std::string bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  // Proto3 omits a zero (UNKNOWN) status entirely.
  size_t p = 0;
  uint64_t tag = 0, value = 0;
  while (p < bytes.size()) {
    if (!ReadVarint(bytes, &p, &tag)) break;
    if (tag == 0x08 && ReadVarint(bytes, &p, &value))
      return static_cast<int>(value);
    break;
  }
  return 0;
}

TempDir::TempDir() {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string templ = absl::StrCat(base != nullptr && *base ? base : "/tmp",
                                   "/abexp-test-XXXXXX");
  if (mkdtemp(templ.data()) == nullptr) {
    std::fprintf(stderr, "mkdtemp(%s): %s\n", templ.c_str(),
                 std::strerror(errno));
    std::abort();
  }
  path_ = templ;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::Write(const std::string& name,
                           absl::string_view contents) const {
  std::string path = absl::StrCat(path_, "/", name);
  std::string tmp = absl::StrCat(path, ".tmp");
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f.write(contents.data(), static_cast<std::streamsize>(contents.size()));
    f.flush();
    if (!f) {
      std::fprintf(stderr, "cannot write %s\n", tmp.c_str());
      std::abort();
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::fprintf(stderr, "rename(%s, %s): %s\n", tmp.c_str(), path.c_str(),
                 std::strerror(errno));
    std::abort();
  }
  return path;
}

}  // namespace abexp::testing
