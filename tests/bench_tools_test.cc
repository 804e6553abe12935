// Smoke tests of the benchmark tools (bench/): abexp-loadgen against a real
// abexp-echo-server, and against a real abexp-server recording into a real
// redis-server, all over gRPC on loopback. They check that the tools measure
// what they claim (separate connections, the open-loop schedule, stalls
// counted from the scheduled send, records that really reach Redis), not how
// fast anything is: the machine may be loaded.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "abexp/v1/assignment.grpc.pb.h"
#include "abexp/v1/recording.grpc.pb.h"
#include "abexp/v1/results.grpc.pb.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/testing/auth_test_util.h"
#include "server/testing/recording_test_util.h"
#include "server/testing/server_process.h"
#include "server/testing/test_certs.h"

extern char** environ;

namespace abexp::testing {
namespace {

// A running abexp-echo-server on a free loopback port; SIGTERMed and reaped
// by the destructor.
class EchoServer {
 public:
  static absl::StatusOr<std::unique_ptr<EchoServer>> Start(
      const std::vector<std::string>& extra_args = {}) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return absl::InternalError("pipe2");
    std::vector<std::string> argv = {ABEXP_ECHO_SERVER_BIN,
                                     "--listen=127.0.0.1:0"};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    std::vector<char*> args;
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    auto server = std::unique_ptr<EchoServer>(new EchoServer());
    int rc = posix_spawn(&server->pid_, args[0], &actions, nullptr, args.data(),
                         environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    if (rc != 0) {
      close(fds[0]);
      server->pid_ = -1;
      return absl::InternalError(absl::StrCat("cannot run ", argv[0]));
    }
    // "abexp-echo-server listening on HOST:PORT response_bytes=N\n"
    std::string line;
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (line.find('\n') == std::string::npos && absl::Now() < deadline) {
      pollfd p = {fds[0], POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      char buf[256];
      ssize_t n = read(fds[0], buf, sizeof(buf));
      if (n <= 0) break;
      line.append(buf, n);
    }
    close(fds[0]);
    std::vector<std::string> words =
        absl::StrSplit(absl::StripSuffix(line, "\n"), ' ');
    if (words.size() != 5 || words[1] != "listening" ||
        !absl::SimpleAtoi(absl::StripPrefix(words[4], "response_bytes="),
                          &server->response_bytes_)) {
      return absl::UnavailableError(absl::StrCat(
          "abexp-echo-server printed '", line, "', not its listening line"));
    }
    server->address_ = words[3];
    server->port_ =
        std::stoi(server->address_.substr(server->address_.rfind(':') + 1));
    return server;
  }

  ~EchoServer() {
    if (pid_ > 0) {
      kill(pid_, SIGCONT);
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
  }

  // Sends SIGTERM and returns the exit code, or 128 + N for signal N.
  int Stop() {
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  pid_t pid() const { return pid_; }
  const std::string& address() const { return address_; }
  int port() const { return port_; }
  int64_t response_bytes() const { return response_bytes_; }

 private:
  EchoServer() = default;
  pid_t pid_ = -1;
  std::string address_;
  int port_ = 0;
  int64_t response_bytes_ = 0;
};

// A finished abexp-loadgen run: its exit code, output and JSON keys.
struct LoadgenRun {
  int exit_code = -1;
  std::string stderr_text;
  std::map<std::string, double> numbers;  // the JSON's numeric keys
  std::map<std::string, double> errors_by_code;
  double operator[](const std::string& key) const {
    auto it = numbers.find(key);
    return it == numbers.end() ? -1 : it->second;
  }
};

// Parses `out`, abexp-loadgen's --json stdout, into *run.
void ParseLoadgenJson(const std::string& out, LoadgenRun* run) {
  google::protobuf::Struct json;
  auto parsed = google::protobuf::util::JsonStringToMessage(out, &json);
  EXPECT_TRUE(parsed.ok()) << "stdout is not one JSON object: " << out
                           << "\nstderr: " << run->stderr_text;
  for (const auto& [key, value] : json.fields()) {
    if (value.kind_case() == google::protobuf::Value::kNumberValue) {
      run->numbers[key] = value.number_value();
    }
  }
  auto codes = json.fields().find("errors_by_code");
  if (codes != json.fields().end()) {
    for (const auto& [code, n] : codes->second.struct_value().fields()) {
      run->errors_by_code[code] = n.number_value();
    }
  }
}

// Runs abexp-loadgen --json with `args` and parses its stdout as JSON.
LoadgenRun RunLoadgen(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {ABEXP_LOADGEN_BIN, "--json"};
  argv.insert(argv.end(), args.begin(), args.end());
  LoadgenRun run;
  std::string out;
  absl::StatusOr<int> code =
      RunProcess(argv, &out, &run.stderr_text, absl::Seconds(60));
  EXPECT_TRUE(code.ok()) << code.status();
  run.exit_code = code.value_or(-1);
  ParseLoadgenJson(out, &run);
  return run;
}

// What every successful run must satisfy: calls made, none failed,
// percentiles in order.
void ExpectSaneRun(const LoadgenRun& run) {
  EXPECT_EQ(run.exit_code, 0) << run.stderr_text;
  EXPECT_GT(run["requests"], 0) << run.stderr_text;
  EXPECT_EQ(run["errors"], 0) << run.stderr_text;
  EXPECT_GT(run["p50_us"], 0);
  EXPECT_LE(run["p50_us"], run["p90_us"]);
  EXPECT_LE(run["p90_us"], run["p99_us"]);
  EXPECT_LE(run["p99_us"], run["p999_us"]);
  EXPECT_LE(run["p999_us"], run["max_us"]);
  EXPECT_GE(run["duration_s"], 1.0);
  EXPECT_NEAR(run["qps"], run["requests"] / run["duration_s"],
              0.01 * run["qps"] + 0.1);
}

// Established TCP connections that the process `pid` accepted on its
// listening port `port`: sockets of that process (by inode, from
// /proc/PID/fd) in /proc/net/tcp and tcp6 (gRPC uses IPv4-mapped IPv6
// sockets) whose local port is `port` and whose state is 01, ESTABLISHED.
// Counting by process matters: the port may be one an earlier server used,
// whose clients in other tests can still hold connections to it.
int ConnectionsAcceptedBy(pid_t pid, int port) {
  std::set<std::string> inodes;
  const std::string fd_dir = absl::StrCat("/proc/", pid, "/fd");
  for (const auto& entry : std::filesystem::directory_iterator(fd_dir)) {
    std::error_code ec;
    const std::string target =
        std::filesystem::read_symlink(entry.path(), ec).string();
    absl::string_view inode = target;
    if (!ec && absl::ConsumePrefix(&inode, "socket:[") &&
        absl::ConsumeSuffix(&inode, "]")) {
      inodes.insert(std::string(inode));
    }
  }
  char want[16];
  std::snprintf(want, sizeof(want), ":%04X", port);
  int n = 0;
  for (const char* file : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(file);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state, queues, timer, retransmits, uid,
          timeout, inode;
      fields >> slot >> local >> remote >> state >> queues >> timer >>
          retransmits >> uid >> timeout >> inode;
      if (state == "01" && absl::EndsWith(local, want) &&
          inodes.count(inode) > 0)
        ++n;
    }
  }
  return n;
}

TEST(BenchTools, LoadgenLoadsTheEchoServerOverSeparateConnections) {
  absl::StatusOr<std::unique_ptr<EchoServer>> echo = EchoServer::Start();
  ASSERT_TRUE(echo.ok()) << echo.status();
  // Watch the connections while the loadgen runs.
  LoadgenRun run;
  std::thread loadgen([&] {
    run = RunLoadgen({"--target=" + (*echo)->address(), "--channels=3",
                      "--inflight=6", "--duration=1s", "--warmup=200ms"});
  });
  int most = 0;
  for (int i = 0; i < 40 && most < 3; ++i) {
    most =
        std::max(most, ConnectionsAcceptedBy((*echo)->pid(), (*echo)->port()));
    absl::SleepFor(absl::Milliseconds(25));
  }
  loadgen.join();
  EXPECT_EQ(most, 3) << "3 channels must be 3 TCP connections";
  ExpectSaneRun(run);
  // Every response is the canned one: the loadgen measures its size.
  EXPECT_EQ(run["response_bytes"], (*echo)->response_bytes());
  EXPECT_EQ(run["items"], run["requests"]);
  EXPECT_EQ((*echo)->Stop(), 0) << "SIGTERM must stop the echo server cleanly";
}

TEST(BenchTools, OpenLoopSendsExactlyTheScheduledCalls) {
  absl::StatusOr<std::unique_ptr<EchoServer>> echo = EchoServer::Start();
  ASSERT_TRUE(echo.ok()) << echo.status();
  LoadgenRun run = RunLoadgen({"--target=" + (*echo)->address(), "--mode=open",
                               "--rate=400", "--channels=2", "--inflight=16",
                               "--duration=1s", "--warmup=200ms"});
  ExpectSaneRun(run);
  // 400 calls/s for 1s: one every 2.5ms, so 400 scheduled sends in the
  // window (one more or less where a send falls on its edge).
  EXPECT_GE(run["requests"], 399);
  EXPECT_LE(run["requests"], 401);
  EXPECT_LE(run["qps"], 401);
  EXPECT_EQ(run["rate"], 400);
}

TEST(BenchTools, OpenLoopCountsAStallFromTheScheduledSendTime) {
  absl::StatusOr<std::unique_ptr<EchoServer>> echo = EchoServer::Start();
  ASSERT_TRUE(echo.ok()) << echo.status();
  LoadgenRun run;
  std::thread loadgen([&] {
    run = RunLoadgen({"--target=" + (*echo)->address(), "--mode=open",
                      "--rate=400", "--channels=1", "--inflight=2",
                      "--duration=1s", "--warmup=200ms"});
  });
  // 300ms into the measured second, the server stops answering for 300ms.
  absl::SleepFor(absl::Milliseconds(500));
  ASSERT_EQ(kill((*echo)->pid(), SIGSTOP), 0);
  absl::SleepFor(absl::Milliseconds(300));
  ASSERT_EQ(kill((*echo)->pid(), SIGCONT), 0);
  loadgen.join();
  ExpectSaneRun(run);
  // About 120 of the 400 sends fall in the stall. Measured from their
  // scheduled times, the ones in its first 250ms (100 calls, 25%) waited
  // more than 50ms, so p90 is above 50ms; a loadgen that timed calls from
  // when it actually sent them would see 2 slow calls and a small p90.
  EXPECT_GT(run["p90_us"], 50000) << run.stderr_text;
  EXPECT_GT(run["max_us"], 250000) << run.stderr_text;
  // With 2 slots, all but 2 of those sends had to wait for a free one.
  EXPECT_GT(run["late_sends"], 80) << run.stderr_text;
  // Timed from the actual send, only the (about) 2 calls sent into the
  // stall are slow: the service percentiles show what the server added,
  // and its p99.9 still shows the stall.
  ASSERT_TRUE(run.numbers.count("service_p99_us")) << run.stderr_text;
  EXPECT_LT(run["service_p99_us"], 50000) << run.stderr_text;
  EXPECT_GT(run["service_p999_us"], 100000) << run.stderr_text;
  EXPECT_LE(run["service_p50_us"], run["p50_us"]) << run.stderr_text;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(BenchTools, SigintEndsARunAfterItsReadyFileAndReportsIt) {
  // bench/run.sh's R9 keeps recorders running this way: an hour-long run in
  // the background, its ready file awaited, then SIGINT.
  absl::StatusOr<std::unique_ptr<EchoServer>> echo = EchoServer::Start();
  ASSERT_TRUE(echo.ok()) << echo.status();
  TempDir dir;
  const std::string ready = dir.path() + "/ready";
  const std::string out = dir.path() + "/out.json";
  const std::string err = dir.path() + "/err.txt";
  std::vector<std::string> argv = {ABEXP_LOADGEN_BIN,
                                   "--json",
                                   "--target=" + (*echo)->address(),
                                   "--channels=1",
                                   "--inflight=2",
                                   "--duration=3600s",
                                   "--warmup=200ms",
                                   "--ready_file=" + ready};
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  const int rc =
      posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ASSERT_EQ(rc, 0);

  // The file appears once the warmup is over (polled: it is the signal).
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  bool exited = false;
  int status = 0;
  while (!std::filesystem::exists(ready) && absl::Now() < give_up) {
    if (waitpid(pid, &status, WNOHANG) == pid) {
      exited = true;
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  if (!exited) {
    EXPECT_TRUE(std::filesystem::exists(ready)) << ReadFile(err);
    ASSERT_EQ(kill(pid, SIGINT), 0);
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
  }
  EXPECT_FALSE(exited) << "the loadgen ended before SIGINT: " << ReadFile(err);
  ASSERT_TRUE(WIFEXITED(status)) << "SIGINT must end the run, not kill it";
  LoadgenRun run;
  run.exit_code = WEXITSTATUS(status);
  run.stderr_text = ReadFile(err);
  ParseLoadgenJson(ReadFile(out), &run);
  EXPECT_EQ(run.exit_code, 0) << run.stderr_text;
  EXPECT_GT(run["requests"], 0) << run.stderr_text;
  EXPECT_EQ(run["errors"], 0) << run.stderr_text;
  EXPECT_LT(run["duration_s"], 600) << "the hour-long run ended at SIGINT";
}

std::string ReadExampleConfig() {
  return ReadFile(std::string(ABEXP_SOURCE_DIR) + "/examples/experiments.yaml");
}

// abexp-server with examples/experiments.yaml, recording into a real Redis.
class BenchToolsServerTest : public RecordingServerTest {
 protected:
  BenchToolsServerTest() : RecordingServerTest(ReadExampleConfig(), "bench") {}
};

TEST_F(BenchToolsServerTest, LoadgenAssignsAgainstAbexpServer) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  LoadgenRun run =
      RunLoadgen({"--target=" + server_->address(), "--channels=2",
                  "--inflight=4", "--duration=1s", "--warmup=200ms"});
  ExpectSaneRun(run);
  EXPECT_EQ(run["items"], run["requests"]);
  EXPECT_GT(run["response_bytes"], 0);
}

TEST_F(BenchToolsServerTest, LoadgenRecordsReachRedis) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  // No warmup: every call is counted, so the loadgen's counts must be
  // exactly what Redis holds.
  LoadgenRun run =
      RunLoadgen({"--target=" + server_->address(), "--call=record",
                  "--batch=20", "--record_experiment=one_page_checkout",
                  "--record_event=order_completed", "--channels=2",
                  "--inflight=2", "--duration=1s", "--warmup=0s"});
  ExpectSaneRun(run);
  EXPECT_EQ(run["items"], 20 * run["requests"]);
  EXPECT_EQ(run["spooled"], 0) << "Redis is up: nothing may be spooled";
  EXPECT_EQ(run["duplicate"], 0) << "every record has a fresh key and unit";
  EXPECT_EQ(run["conflict"], 0);
  ASSERT_GT(run["exposures_recorded"], 0);
  const double events_recorded = run["recorded"] - run["exposures_recorded"];
  EXPECT_GT(events_recorded, 0) << run.stderr_text;

  absl::StatusOr<ExperimentAggregates> aggregates =
      ReadAggregates("one_page_checkout");
  ASSERT_TRUE(aggregates.ok()) << aggregates.status();
  int64_t exposed = 0;
  int64_t converted = 0;
  for (const VariantAggregate& v : aggregates->variants) {
    exposed += v.exposed;
    converted += MetricOf(v, "order_conversion").units;
  }
  // Each exposure is of a new unit. Each recorded event is the first order
  // of a unit exposed to one_page_checkout and to no other experiment, so
  // it converts exactly one unit there.
  EXPECT_EQ(exposed, run["exposures_recorded"]);
  EXPECT_EQ(converted, events_recorded);
}

TEST_F(BenchToolsServerTest, ExposuresOnlyStopAfterMaxCallsAndResultsAreRead) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  // bench/run.sh fills an experiment with exactly N exposed units this way
  // (R6): 7 calls of 30 exposures, no events, then the run ends at once
  // although --duration is an hour.
  LoadgenRun fill =
      RunLoadgen({"--target=" + server_->address(), "--call=record",
                  "--batch=30", "--record_experiment=one_page_checkout",
                  "--record_events=false", "--max_calls=7", "--channels=1",
                  "--inflight=2", "--duration=3600s", "--warmup=0s"});
  EXPECT_EQ(fill.exit_code, 0) << fill.stderr_text;
  EXPECT_EQ(fill["requests"], 7) << fill.stderr_text;
  EXPECT_EQ(fill["items"], 7 * 30);
  EXPECT_LT(fill["duration_s"], 60);
  // Holdout units are accepted and ignored, so a few may be missing.
  EXPECT_GT(fill["exposures_recorded"], 7 * 30 * 0.9);
  EXPECT_EQ(fill["recorded"], fill["exposures_recorded"]) << "no events sent";
  absl::StatusOr<ExperimentAggregates> aggregates =
      ReadAggregates("one_page_checkout");
  ASSERT_TRUE(aggregates.ok()) << aggregates.status();
  int64_t exposed = 0;
  for (const VariantAggregate& v : aggregates->variants) exposed += v.exposed;
  EXPECT_EQ(exposed, fill["exposures_recorded"]);

  // R7 reads the results with --call=results.
  LoadgenRun read = RunLoadgen(
      {"--target=" + server_->address(), "--call=results",
       "--results_experiment=one_page_checkout", "--max_calls=5",
       "--channels=1", "--inflight=1", "--duration=3600s", "--warmup=0s"});
  EXPECT_EQ(read.exit_code, 0) << read.stderr_text;
  EXPECT_EQ(read["requests"], 5) << read.stderr_text;
  EXPECT_EQ(read["errors"], 0);
  EXPECT_GT(read["response_bytes"], 0);
  EXPECT_GT(read["p50_us"], 0);

  // An unknown experiment fails the calls, and the exit status says so.
  LoadgenRun unknown = RunLoadgen(
      {"--target=" + server_->address(), "--call=results",
       "--results_experiment=no_such_experiment", "--max_calls=2",
       "--channels=1", "--inflight=1", "--duration=3600s", "--warmup=0s"});
  EXPECT_EQ(unknown.exit_code, 1) << unknown.stderr_text;
  EXPECT_EQ(unknown["errors"], 2) << unknown.stderr_text;
}

TEST_F(BenchToolsServerTest, AllowedErrorsAreCountedByCodeAndOthersStillFail) {
  // One storage slot, held by a recording call parked on a frozen Redis:
  // every record call of the loadgen is refused RESOURCE_EXHAUSTED at once.
  ASSERT_NO_FATAL_FAILURE(
      StartServer({"--storage_threads=1", "--storage_max_calls=1",
                   "--redis_command_timeout=120s"}));
  ASSERT_TRUE(redis_->Signal(SIGSTOP).ok());
  std::thread parked([&] {
    // Retried while a probe below holds the slot, until it is the holder.
    for (;;) {
      v1::RecordExposuresRequest request;
      v1::ExposureRecord* e = request.add_exposures();
      e->set_experiment_key("one_page_checkout");
      e->set_variant_key("control");
      (*e->mutable_unit()->mutable_ids())["user_id"] = "parked";
      grpc::ClientContext context;
      SetDeadline(&context, absl::Seconds(110));
      v1::RecordExposuresResponse response;
      const grpc::Status s =
          record_->RecordExposures(&context, request, &response);
      if (s.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) return;
    }
  });
  // A results read needs the slot too. One for an experiment the config
  // does not have is answered NOT_FOUND from the slot without reading Redis,
  // and its slot is free before it is answered: so once one is refused, the
  // holder is the parked call, never an earlier probe.
  auto results = v1::ResultsService::NewStub(grpc::CreateChannel(
      server_->address(), grpc::InsecureChannelCredentials()));
  grpc::Status probe;
  EXPECT_TRUE(Eventually(
      [&] {
        v1::GetResultsRequest request;
        request.set_experiment_key("probe_not_in_the_config");
        grpc::ClientContext context;
        SetDeadline(&context, absl::Seconds(10));
        v1::GetResultsResponse response;
        probe = results->GetResults(&context, request, &response);
        return probe.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
      },
      absl::Seconds(60), absl::Milliseconds(10)))
      << probe.error_code() << " " << probe.error_message();
  const std::vector<std::string> record = {
      "--target=" + server_->address(),
      "--call=record",
      "--batch=5",
      "--record_experiment=one_page_checkout",
      "--channels=1",
      "--inflight=2",
      "--timeout=30s",
      "--max_calls=4",
      "--duration=3600s",
      "--warmup=0s"};
  auto with = [&](const std::string& flag) {
    std::vector<std::string> args = record;
    args.push_back(flag);
    return args;
  };

  // The default is strict: any failed call fails the run.
  LoadgenRun strict = RunLoadgen(record);
  EXPECT_EQ(strict.exit_code, 1) << strict.stderr_text;
  EXPECT_EQ(strict["requests"], 4) << strict.stderr_text;
  EXPECT_EQ(strict["errors"], 4);
  EXPECT_EQ(strict["unexpected_errors"], 4);
  EXPECT_EQ(strict.errors_by_code,
            (std::map<std::string, double>{{"RESOURCE_EXHAUSTED", 4}}));

  // Named codes are counted by code, and the run succeeds.
  LoadgenRun allowed =
      RunLoadgen(with("--allowed_errors=DEADLINE_EXCEEDED,RESOURCE_EXHAUSTED,"
                      "UNAVAILABLE"));
  EXPECT_EQ(allowed.exit_code, 0) << allowed.stderr_text;
  EXPECT_EQ(allowed["errors"], 4) << allowed.stderr_text;
  EXPECT_EQ(allowed["unexpected_errors"], 0);
  EXPECT_EQ(allowed.errors_by_code,
            (std::map<std::string, double>{{"RESOURCE_EXHAUSTED", 4}}));

  // A code the list does not name still fails the run.
  LoadgenRun other = RunLoadgen(with("--allowed_errors=UNAVAILABLE"));
  EXPECT_EQ(other.exit_code, 1) << other.stderr_text;
  EXPECT_EQ(other["unexpected_errors"], 4) << other.stderr_text;

  // A name that is not a code is a usage error.
  std::vector<std::string> typo = with("--allowed_errors=TIMEOUT");
  typo.insert(typo.begin(), ABEXP_LOADGEN_BIN);
  std::string out, err;
  absl::StatusOr<int> code = RunProcess(typo, &out, &err, absl::Seconds(60));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 2) << err;
  EXPECT_TRUE(absl::StrContains(err, "DEADLINE_EXCEEDED"))
      << "the message lists the codes: " << err;
  ASSERT_TRUE(redis_->Signal(SIGCONT).ok());
  parked.join();
}

// The echo server takes abexp-server's --tls_* flags, so that Assign over TLS
// can be compared with echo over TLS.
TEST(BenchTools, TheEchoServerServesTlsWithAbexpServersFlags) {
  TempDir dir;
  absl::StatusOr<TestCertificates> certs = TestCertificates::Create(dir);
  ASSERT_TRUE(certs.ok()) << certs.status();
  absl::StatusOr<std::unique_ptr<EchoServer>> echo =
      EchoServer::Start({"--tls_cert_file=" + certs->ca1.server.cert,
                         "--tls_key_file=" + certs->ca1.server.key});
  ASSERT_TRUE(echo.ok()) << echo.status();
  auto assign = [&](std::shared_ptr<grpc::ChannelCredentials> credentials) {
    auto stub = v1::AssignmentService::NewStub(
        NewPrivateChannel((*echo)->address(), credentials));
    v1::AssignRequest request;
    v1::AssignResponse response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    return stub->Assign(&context, request, &response).error_code();
  };
  EXPECT_EQ(assign(TlsCredentials(certs->ca1.cert)), grpc::StatusCode::OK);
  EXPECT_EQ(assign(grpc::InsecureChannelCredentials()),
            grpc::StatusCode::UNAVAILABLE);

  std::string err;
  absl::StatusOr<int> code =
      RunProcess({ABEXP_ECHO_SERVER_BIN, "--listen=127.0.0.1:0",
                  "--tls_cert_file=" + certs->ca1.server.cert},
                 nullptr, &err, absl::Seconds(30));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 1);
  EXPECT_TRUE(absl::StrContains(
      err, "--tls_cert_file is set but --tls_key_file is not"))
      << err;
}

// The echo server takes abexp-server's --auth_tokens_file and checks each
// Assign's token with the same code, so that a benchmark of Assign with a
// token compares with echo with a token; reflection is admin only there too.
TEST(BenchTools, TheEchoServerChecksTokensAsAbexpServerDoes) {
  TempDir dir;
  const std::string assign_token = MakeToken('a', "1");
  const std::string results_token = MakeToken('s', "2");
  const std::string admin_token = MakeToken('d', "3");
  const std::string tokens = dir.Write(
      "tokens.txt", TokenFileLine("frontend", "assign", assign_token) +
                        TokenFileLine("analyst", "results", results_token) +
                        TokenFileLine("ops", "admin", admin_token));
  absl::StatusOr<std::unique_ptr<EchoServer>> echo =
      EchoServer::Start({"--auth_tokens_file=" + tokens});
  ASSERT_TRUE(echo.ok()) << echo.status();
  std::shared_ptr<grpc::Channel> channel = grpc::CreateChannel(
      (*echo)->address(), grpc::InsecureChannelCredentials());
  auto assign = [&](const Authorization& authorization) {
    auto stub = v1::AssignmentService::NewStub(channel);
    v1::AssignResponse response;
    grpc::ClientContext context;
    PrepareContext(authorization, &context);
    return stub->Assign(&context, v1::AssignRequest(), &response).error_code();
  };
  EXPECT_EQ(assign(std::nullopt), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(assign(Bearer(MakeToken('u', "4"))),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(assign(Bearer(results_token)), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(assign(Bearer(assign_token)), grpc::StatusCode::OK);

  std::vector<std::string> services;
  EXPECT_EQ(ListServices(channel, Bearer(assign_token), &services).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  grpc::Status listed = ListServices(channel, Bearer(admin_token), &services);
  ASSERT_TRUE(listed.ok()) << listed.error_message();
  EXPECT_NE(
      std::find(services.begin(), services.end(), "abexp.v1.AssignmentService"),
      services.end());
}

}  // namespace
}  // namespace abexp::testing
