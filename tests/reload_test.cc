// Reloading the config with SIGHUP on a real abexp-server while clients keep
// calling it over gRPC: no call fails, and no response mixes two configs.
#include <signal.h>
#include <xxhash.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "abexp/v1/assignment.grpc.pb.h"
#include "abexp/v1/assignment.pb.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/testing/server_process.h"

namespace abexp {
namespace {

using ::abexp::testing::ServerProcess;
using ::abexp::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;

// Config A: experiment exp_a sets color to red for everyone.
constexpr char kConfigA[] = R"yaml(
features:
  - key: color
    type: string
    default: gray
experiments:
  - key: exp_a
    status: running
    variants:
      - key: only
        weight: 1
        features: {color: red}
)yaml";

// Config B: experiment exp_b sets color to blue for everyone.
constexpr char kConfigB[] = R"yaml(
features:
  - key: color
    type: string
    default: gray
experiments:
  - key: exp_b
    status: running
    variants:
      - key: only
        weight: 1
        features: {color: blue}
)yaml";

std::string VersionOf(const std::string& text) {
  return absl::StrFormat("%016x", XXH3_64bits(text.data(), text.size()));
}

// What a response from each config must look like, whole.
std::string ExpectedColor(const std::string& version) {
  if (version == VersionOf(kConfigA)) return "red";
  if (version == VersionOf(kConfigB)) return "blue";
  return "<unknown version " + version + ">";
}
std::string ExpectedExperiment(const std::string& version) {
  return version == VersionOf(kConfigA) ? "exp_a" : "exp_b";
}

std::unique_ptr<v1::AssignmentService::Stub> NewStub(
    const std::string& address) {
  return v1::AssignmentService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
}

absl::StatusOr<std::string> ServedVersion(v1::AssignmentService::Stub* stub) {
  v1::ListExperimentsRequest request;
  v1::ListExperimentsResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(10));
  grpc::Status s = stub->ListExperiments(&context, request, &response);
  if (!s.ok()) return absl::UnavailableError(s.error_message());
  return response.config_version();
}

// Assigns user u1; the call's error as a status.
absl::StatusOr<v1::AssignResponse> AssignU1(v1::AssignmentService::Stub* stub) {
  v1::AssignRequest request;
  (*request.mutable_unit()->mutable_ids())["user_id"] = "u1";
  v1::AssignResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(10));
  grpc::Status s = stub->Assign(&context, request, &response);
  if (!s.ok()) return absl::UnavailableError(s.error_message());
  return response;
}

// Sends SIGHUP to a server whose file is now invalid and waits until it
// has logged `failures` failed reloads in all; then checks that the log
// says it keeps `version` and that it still serves it.
void ExpectReloadKeeps(ServerProcess* server, v1::AssignmentService::Stub* stub,
                       const std::string& version, int failures = 1) {
  ASSERT_TRUE(server->Signal(SIGHUP).ok());
  ASSERT_TRUE(
      server->WaitForStderr("keeping version=", absl::Seconds(20), failures)
          .ok())
      << server->Stderr();
  EXPECT_THAT(server->Stderr(),
              HasSubstr(absl::StrCat("keeping version=", version)));
  absl::StatusOr<std::string> served = ServedVersion(stub);
  ASSERT_TRUE(served.ok()) << served.status();
  EXPECT_EQ(*served, version);
}

// Collects failures from client threads.
class Failures {
 public:
  void Add(std::string what) {
    absl::MutexLock lock(&mu_);
    if (list_.size() < 20) list_.push_back(std::move(what));
    ++count_;
  }
  int count() const {
    absl::MutexLock lock(&mu_);
    return count_;
  }
  std::string Describe() const {
    absl::MutexLock lock(&mu_);
    std::string out;
    for (const std::string& f : list_) absl::StrAppend(&out, f, "\n");
    return out;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> list_ ABSL_GUARDED_BY(mu_);
  int count_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST(Reload, EveryCallSucceedsWithOneWholeConfigWhileReloading20Times) {
  TempDir dir;
  std::string path = dir.Write("experiments.yaml", kConfigA);
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(path);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string version_a = VersionOf(kConfigA);
  const std::string version_b = VersionOf(kConfigB);
  ASSERT_NE(version_a, version_b);

  std::atomic<bool> stop{false};
  std::atomic<int> calls{0}, saw_a{0}, saw_b{0};
  Failures failures;
  auto check = [&](const std::string& version, const std::string& experiment,
                   const std::string& color, const std::string& call) {
    if (version == version_a) {
      saw_a.fetch_add(1);
    } else if (version == version_b) {
      saw_b.fetch_add(1);
    }
    if (color != ExpectedColor(version) ||
        experiment != ExpectedExperiment(version)) {
      failures.Add(absl::StrCat(call, ": version ", version,
                                " answered experiment '", experiment,
                                "' color '", color, "'"));
    }
  };

  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t) {
    clients.emplace_back([&, t] {
      std::unique_ptr<v1::AssignmentService::Stub> stub =
          NewStub((*server)->address());
      for (int i = 0; !stop.load(); ++i) {
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() +
                             std::chrono::seconds(10));
        std::string id = absl::StrCat("user-", t, "-", i);
        if (i % 3 == 2) {
          // A batch answers every unit from one config.
          v1::BatchAssignRequest request;
          for (int u = 0; u < 20; ++u) {
            (*request.add_units()->mutable_ids())["user_id"] =
                absl::StrCat(id, "-", u);
          }
          v1::BatchAssignResponse response;
          grpc::Status s = stub->BatchAssign(&context, request, &response);
          calls.fetch_add(1);
          if (!s.ok()) {
            failures.Add(absl::StrCat("BatchAssign: ", s.error_message()));
            continue;
          }
          for (const v1::AssignResponse& r : response.results()) {
            const v1::ResolvedFeature* color = FindFeature(r, "color");
            if (r.config_version() != response.config_version() ||
                r.assignments_size() != 1 || color == nullptr) {
              failures.Add(absl::StrCat("BatchAssign result mixes configs: ",
                                        r.ShortDebugString()));
              break;
            }
            check(response.config_version(), r.assignments(0).experiment_key(),
                  color->value().string_value(), "BatchAssign");
          }
          continue;
        }
        v1::AssignRequest request;
        (*request.mutable_unit()->mutable_ids())["user_id"] = id;
        v1::AssignResponse response;
        grpc::Status s = stub->Assign(&context, request, &response);
        calls.fetch_add(1);
        if (!s.ok()) {
          failures.Add(absl::StrCat("Assign: ", s.error_message()));
          continue;
        }
        const v1::ResolvedFeature* color = FindFeature(response, "color");
        if (response.assignments_size() != 1 || color == nullptr) {
          failures.Add(absl::StrCat("Assign: ", response.ShortDebugString()));
          continue;
        }
        check(response.config_version(),
              response.assignments(0).experiment_key(),
              color->value().string_value(), "Assign");
      }
    });
  }

  std::unique_ptr<v1::AssignmentService::Stub> stub =
      NewStub((*server)->address());
  for (int i = 1; i <= 20; ++i) {
    bool to_b = i % 2 == 1;
    dir.Write("experiments.yaml", to_b ? kConfigB : kConfigA);
    ASSERT_TRUE((*server)->Signal(SIGHUP).ok());
    ASSERT_TRUE(
        (*server)
            ->WaitForStderr("config reloaded version=", absl::Seconds(20), i)
            .ok())
        << (*server)->Stderr();
    // Once the reload is logged, new calls see the new version.
    absl::StatusOr<std::string> served = ServedVersion(stub.get());
    ASSERT_TRUE(served.ok()) << served.status();
    EXPECT_EQ(*served, to_b ? version_b : version_a) << "after reload " << i;
    // Let the clients run against this config for a moment.
    absl::SleepFor(absl::Milliseconds(25));
  }
  stop.store(true);
  for (std::thread& c : clients) c.join();

  EXPECT_EQ(failures.count(), 0) << failures.Describe();
  EXPECT_GT(calls.load(), 100);
  EXPECT_GT(saw_a.load(), 0);
  EXPECT_GT(saw_b.load(), 0);
  std::string log = (*server)->Stderr();
  EXPECT_THAT(log,
              HasSubstr(absl::StrCat("config reloaded version=", version_b)));
  EXPECT_THAT(log,
              HasSubstr(absl::StrCat("config reloaded version=", version_a)));
  EXPECT_THAT(log, ::testing::Not(HasSubstr("reload failed")));

  ASSERT_TRUE((*server)->Signal(SIGTERM).ok());
  absl::StatusOr<int> code = (*server)->WaitForExit(absl::Seconds(20));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
}

TEST(Reload, AnInvalidFileKeepsServingTheOldConfigAndLogsWhy) {
  TempDir dir;
  std::string path = dir.Write("experiments.yaml", kConfigA);
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(path);
  ASSERT_TRUE(server.ok()) << server.status();
  std::unique_ptr<v1::AssignmentService::Stub> stub =
      NewStub((*server)->address());
  const std::string version_a = VersionOf(kConfigA);

  // Line 6 names a status that does not exist.
  dir.Write("experiments.yaml", R"yaml(
features:
  - key: color
    type: string
    default: gray
experiments: [{key: exp_c, status: runing, variants: [{key: only, weight: 1}]}]
)yaml");
  ASSERT_NO_FATAL_FAILURE(
      ExpectReloadKeeps(server->get(), stub.get(), version_a));
  std::string log = (*server)->Stderr();
  EXPECT_THAT(log, HasSubstr(path + ":6:"));
  EXPECT_THAT(log, HasSubstr("runing"));
  EXPECT_EQ(testing::HealthCheck((*server)->address()).value_or(-1), 1);

  // A missing file is also survived.
  ASSERT_EQ(std::remove(path.c_str()), 0);
  ASSERT_NO_FATAL_FAILURE(
      ExpectReloadKeeps(server->get(), stub.get(), version_a, 2));

  // Fixing the file and reloading again serves the fix.
  dir.Write("experiments.yaml", kConfigB);
  ASSERT_TRUE((*server)->Signal(SIGHUP).ok());
  ASSERT_TRUE((*server)
                  ->WaitForStderr("config reloaded version=", absl::Seconds(20))
                  .ok())
      << (*server)->Stderr();
  absl::StatusOr<std::string> served = ServedVersion(stub.get());
  ASSERT_TRUE(served.ok()) << served.status();
  EXPECT_EQ(*served, VersionOf(kConfigB));
}

// Files that crashed the server (an alias inside its own anchor) or took
// gigabytes to reject (a huge file): each reload fails, is logged, and the
// server keeps serving the last good config.
TEST(Reload, AHostileFileKeepsTheServerAliveAndServingTheLastGoodConfig) {
  TempDir dir;
  std::string path = dir.Write("experiments.yaml", kConfigA);
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(path);
  ASSERT_TRUE(server.ok()) << server.status();
  std::unique_ptr<v1::AssignmentService::Stub> stub =
      NewStub((*server)->address());
  const std::string version_a = VersionOf(kConfigA);

  const std::string oversized = "# padding\n" + std::string(17 << 20, '#');
  const std::pair<std::string, std::string> kHostile[] = {
      {"zzz: &x [*x]\n",
       path + ":1:6: this node contains itself through an alias"},
      {"segments:\n  s: &x {not: *x}\n",
       path + ":2:6: this node contains itself"},
      {oversized, "the config is 17825802 bytes"},
  };
  int reloads = 0;
  for (const auto& [text, logged] : kHostile) {
    SCOPED_TRACE(logged);
    dir.Write("experiments.yaml", text);
    ASSERT_NO_FATAL_FAILURE(
        ExpectReloadKeeps(server->get(), stub.get(), version_a, ++reloads));
    EXPECT_THAT((*server)->Stderr(), HasSubstr(logged));
  }
  EXPECT_EQ(testing::HealthCheck((*server)->address()).value_or(-1), 1);

  ASSERT_TRUE((*server)->Signal(SIGTERM).ok());
  absl::StatusOr<int> code = (*server)->WaitForExit(absl::Seconds(20));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
}

TEST(Reload, StartingOnAFileWhoseAliasContainsItselfIsRefusedNotACrash) {
  TempDir dir;
  std::string path = dir.Write("experiments.yaml", "zzz: &x [*x]\n");
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(path);
  ASSERT_FALSE(server.ok());
  // Start's error holds the exit status (128 + the signal for a crash) and
  // stderr.
  EXPECT_THAT(server.status().message(), HasSubstr("(exited with status 1)"));
  EXPECT_THAT(
      server.status().message(),
      HasSubstr(path + ":1:6: this node contains itself through an alias"));
  EXPECT_THAT(server.status().message(),
              HasSubstr("not starting: fix the config"));
}

// A deploy that truncates the file before writing it, then signals too
// early: the empty file must not end every experiment.
TEST(Reload, AnEmptiedFileKeepsServingTheOldConfigAndLogsWhy) {
  TempDir dir;
  std::string path = dir.Write("experiments.yaml", kConfigA);
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(path);
  ASSERT_TRUE(server.ok()) << server.status();
  std::unique_ptr<v1::AssignmentService::Stub> stub =
      NewStub((*server)->address());

  { std::ofstream truncate(path, std::ios::trunc); }
  ASSERT_NO_FATAL_FAILURE(
      ExpectReloadKeeps(server->get(), stub.get(), VersionOf(kConfigA)));
  const std::string log = (*server)->Stderr();
  EXPECT_THAT(log, HasSubstr(path + ": the file is empty; write "
                                    "'experiments: []' to serve nothing on "
                                    "purpose"));
  EXPECT_THAT(log, Not(HasSubstr("config reloaded")));
  absl::StatusOr<v1::AssignResponse> assigned = AssignU1(stub.get());
  ASSERT_TRUE(assigned.ok()) << assigned.status();
  ASSERT_EQ(assigned->assignments_size(), 1);
  EXPECT_EQ(assigned->assignments(0).experiment_key(), "exp_a");
}

TEST(Reload, StartingOnAnEmptyFileIsRefused) {
  TempDir dir;
  std::string path = dir.Write("experiments.yaml", "");
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(path);
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(server.status().message(), HasSubstr("(exited with status 1)"));
  EXPECT_THAT(server.status().message(),
              HasSubstr(path + ": the file is empty; write 'experiments: []' "
                               "to serve nothing on purpose"));
}

// A valid file that leaves out experiments that were running is served (it
// may be meant), but the log says loudly which ones stopped.
TEST(Reload, DroppingARunningExperimentIsLoggedAsAWarningNamingIt) {
  constexpr char kTwo[] = R"yaml(
experiments:
  - key: exp_gone
    status: running
    variants: [{key: only, weight: 1}]
  - key: exp_kept
    status: running
    variants: [{key: only, weight: 1}]
  - key: exp_draft
    status: draft
    variants: [{key: only, weight: 1}]
)yaml";
  constexpr char kOne[] = R"yaml(
experiments:
  - key: exp_kept
    status: running
    variants: [{key: only, weight: 1}]
)yaml";
  TempDir dir;
  std::string path = dir.Write("experiments.yaml", kTwo);
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(path);
  ASSERT_TRUE(server.ok()) << server.status();

  const size_t logged_before = (*server)->Stderr().size();
  dir.Write("experiments.yaml", kOne);
  ASSERT_TRUE((*server)->Signal(SIGHUP).ok());
  ASSERT_TRUE((*server)
                  ->WaitForStderr("config reloaded version=", absl::Seconds(20))
                  .ok())
      << (*server)->Stderr();
  // The warnings of the reload (not, say, the start's about Redis).
  std::vector<std::string> warnings;
  for (absl::string_view line :
       absl::StrSplit((*server)->Stderr().substr(logged_before), '\n')) {
    if (absl::StrContains(line, "warning:")) warnings.emplace_back(line);
  }
  ASSERT_EQ(warnings.size(), 1u) << (*server)->Stderr();
  EXPECT_THAT(warnings[0], HasSubstr("running experiment"));
  EXPECT_THAT(warnings[0], HasSubstr("exp_gone"));
  EXPECT_THAT(warnings[0], Not(HasSubstr("exp_kept")));
  EXPECT_THAT(warnings[0], Not(HasSubstr("exp_draft")));  // never served

  std::unique_ptr<v1::AssignmentService::Stub> stub =
      NewStub((*server)->address());
  absl::StatusOr<std::string> served = ServedVersion(stub.get());
  ASSERT_TRUE(served.ok()) << served.status();
  EXPECT_EQ(*served, VersionOf(kOne));
}

TEST(Reload, AnUnchangedFileKeepsTheSameVersion) {
  TempDir dir;
  std::string path = dir.Write("experiments.yaml", kConfigA);
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(path);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE((*server)->Signal(SIGHUP).ok());
  ASSERT_TRUE((*server)
                  ->WaitForStderr("config reloaded version=", absl::Seconds(20))
                  .ok())
      << (*server)->Stderr();
  EXPECT_THAT((*server)->Stderr(),
              HasSubstr(absl::StrCat("config reloaded version=",
                                     VersionOf(kConfigA), " (unchanged)")));
  std::unique_ptr<v1::AssignmentService::Stub> stub =
      NewStub((*server)->address());
  absl::StatusOr<std::string> served = ServedVersion(stub.get());
  ASSERT_TRUE(served.ok()) << served.status();
  EXPECT_EQ(*served, VersionOf(kConfigA));
}

}  // namespace
}  // namespace abexp
