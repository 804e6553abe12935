// abexp::Client against a real abexp-server subprocess on loopback, and
// against no server at all.
#include "client/client.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/core/bucketing.h"
#include "server/testing/server_process.h"

namespace abexp {
namespace {

using ::abexp::testing::ServerProcess;
using ::abexp::testing::TempDir;

constexpr char kConfig[] = R"(attributes:
  country: string
  days_since_signup: number
  is_vip: bool

features:
  - key: flag
    type: bool
    default: false
  - key: limit
    type: number
    default: 10
  - key: headline
    type: string
    default: hello
  - key: payload
    type: json
    default: {a: 1}

experiments:
  - key: everyone
    status: running
    variants:
      - key: only
        weight: 1
        features: {flag: true, limit: 25, headline: big, payload: {a: 2}}
  - key: cn_only
    status: running
    targeting: {attribute: country, eq: CN}
    variants:
      - key: cn
        weight: 1
  - key: split
    status: running
    salt: split-salt
    variants:
      - key: control
        weight: 50
      - key: treatment
        weight: 50
)";

// A loopback port nothing listens on: bind, read the port, close.
int ClosedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path = dir_.Write("experiments.yaml", kConfig);
    absl::StatusOr<std::unique_ptr<ServerProcess>> server =
        ServerProcess::Start(path);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ClientOptions options;
    options.target = server_->address();
    // Generous for a loaded CI machine; the fallback tests use 50ms.
    options.deadline = absl::Seconds(5);
    absl::StatusOr<std::unique_ptr<Client>> client =
        Client::Create(std::move(options));
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
  }

  TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<Client> client_;
};

TEST_F(ClientTest, TypedGettersReturnTheVariantsFeatureValues) {
  absl::StatusOr<Assignment> a =
      client_->Assign(UnitBuilder().Id("user_id", "u-1").Build());
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_FALSE(a->degraded());
  EXPECT_TRUE(a->error().ok());
  EXPECT_EQ(a->config_version().size(), 16u);
  EXPECT_FALSE(a->in_holdout());
  EXPECT_EQ(a->variant("everyone"), "only");
  EXPECT_TRUE(a->GetBool("flag", false));
  EXPECT_EQ(a->GetNumber("limit", 0), 25);
  EXPECT_EQ(a->GetString("headline", "fallback"), "big");
  EXPECT_EQ(a->GetJson("payload", "{}"), R"({"a":2})");
}

TEST_F(ClientTest, GettersReturnTheFallbackForMissingFeaturesAndWrongTypes) {
  absl::StatusOr<Assignment> a =
      client_->Assign(UnitBuilder().Id("user_id", "u-1").Build());
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->GetNumber("no_such_feature", 7), 7);
  EXPECT_EQ(a->GetString("no_such_feature", "fb"), "fb");
  // headline is a string; asking for another type gets the fallback.
  EXPECT_TRUE(a->GetBool("headline", true));
  EXPECT_EQ(a->GetNumber("flag", -1), -1);
  EXPECT_EQ(a->GetJson("headline", "null"), "null");
  EXPECT_EQ(a->variant("no_such_experiment"), std::nullopt);
}

TEST_F(ClientTest, TargetingDecidesWhichExperimentsAUnitIsIn) {
  absl::StatusOr<Assignment> cn = client_->Assign(
      UnitBuilder().Id("user_id", "u-1").String("country", "CN").Build());
  ASSERT_TRUE(cn.ok()) << cn.status();
  EXPECT_EQ(cn->variant("cn_only"), "cn");
  absl::StatusOr<Assignment> us = client_->Assign(
      UnitBuilder().Id("user_id", "u-1").String("country", "US").Build());
  ASSERT_TRUE(us.ok()) << us.status();
  EXPECT_EQ(us->variant("cn_only"), std::nullopt);
  EXPECT_EQ(us->variant("everyone"), "only");
}

TEST_F(ClientTest, VariantFollowsTheBucketOfTheUnitId) {
  for (int i = 0; i < 20; ++i) {
    const std::string id = absl::StrCat("user-", i);
    absl::StatusOr<Assignment> a =
        client_->Assign(UnitBuilder().Id("user_id", id).Build());
    ASSERT_TRUE(a.ok()) << a.status();
    // 50/50: control owns buckets [0, 5000).
    const bool control = Bucket(HashPurpose::kVariant, "split-salt", id) < 5000;
    EXPECT_EQ(a->variant("split"), control ? "control" : "treatment") << id;
  }
}

TEST_F(ClientTest, FiltersLimitExperimentsAndFeatures) {
  absl::StatusOr<Assignment> a = client_->Assign(
      UnitBuilder().Id("user_id", "u-1").String("country", "CN").Build(),
      {"cn_only"}, {"limit"});
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(a->response().assignments_size(), 1);
  EXPECT_EQ(a->variant("cn_only"), "cn");
  EXPECT_EQ(a->variant("everyone"), std::nullopt);
  EXPECT_EQ(a->response().features_size(), 1);
  EXPECT_EQ(a->GetNumber("limit", 0), 25);
  EXPECT_EQ(a->GetString("headline", "not requested"), "not requested");
}

TEST_F(ClientTest, UnknownKeysAreNotFoundErrorsNotDegraded) {
  absl::StatusOr<Assignment> a = client_->Assign(
      UnitBuilder().Id("user_id", "u-1").Build(), {"no_such_experiment"});
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kNotFound) << a.status();
  EXPECT_NE(a.status().message().find("no_such_experiment"),
            absl::string_view::npos)
      << a.status();
}

TEST_F(ClientTest, AttributeOfTheWrongTypeIsAnInvalidArgumentError) {
  absl::StatusOr<Assignment> a = client_->Assign(
      UnitBuilder().Id("user_id", "u-1").Number("country", 86).Build());
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument)
      << a.status();
}

TEST_F(ClientTest, BatchExplainListAndGetReturnTheServersAnswers) {
  v1::BatchAssignRequest batch;
  *batch.add_units() = UnitBuilder().Id("user_id", "a").Build();
  *batch.add_units() = UnitBuilder().Id("user_id", "b").Build();
  absl::StatusOr<v1::BatchAssignResponse> b = client_->BatchAssign(batch);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->results_size(), 2);

  absl::StatusOr<v1::ExplainAssignmentResponse> x =
      client_->Explain(UnitBuilder().Id("user_id", "a").Build(), "split");
  ASSERT_TRUE(x.ok()) << x.status();
  EXPECT_EQ(x->experiment_key(), "split");
  EXPECT_EQ(x->variant_hash().bucket(),
            Bucket(HashPurpose::kVariant, "split-salt", "a"));

  absl::StatusOr<v1::ListExperimentsResponse> list = client_->ListExperiments();
  ASSERT_TRUE(list.ok()) << list.status();
  std::vector<std::string> keys;
  for (const v1::Experiment& e : list->experiments()) keys.push_back(e.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"everyone", "cn_only", "split"}));

  absl::StatusOr<v1::Experiment> e = client_->GetExperiment("split");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->salt(), "split-salt");
  absl::StatusOr<v1::Experiment> missing = client_->GetExperiment("nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ClientTest, OneClientServesManyThreads) {
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        absl::StatusOr<Assignment> a = client_->Assign(
            UnitBuilder().Id("user_id", absl::StrCat(t, "-", i)).Build());
        if (a.ok() && !a->degraded() && a->variant("everyone") == "only") {
          ++ok;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(ok.load(), 8 * 25);
}

TEST_F(ClientTest, AServerKilledMidwayDegradesInsteadOfFailing) {
  const v1::Unit unit = UnitBuilder().Id("user_id", "u-1").Build();
  ASSERT_TRUE(client_->Assign(unit).ok());
  ASSERT_TRUE(server_->Signal(SIGKILL).ok());
  ASSERT_TRUE(server_->WaitForExit(absl::Seconds(10)).ok());

  ClientOptions options;
  options.target = server_->address();
  options.deadline = absl::Milliseconds(50);
  absl::StatusOr<std::unique_ptr<Client>> fast = Client::Create(options);
  ASSERT_TRUE(fast.ok());
  for (const Client* client : {client_.get(), fast->get()}) {
    const absl::Time start = absl::Now();
    absl::StatusOr<Assignment> a = client->Assign(unit);
    const absl::Duration elapsed = absl::Now() - start;
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_TRUE(a->degraded());
    EXPECT_FALSE(a->error().ok());
    EXPECT_EQ(a->variant("everyone"), std::nullopt);
    EXPECT_FALSE(a->GetBool("flag", false));
    EXPECT_EQ(a->GetNumber("limit", 10), 10);
    EXPECT_LT(elapsed, client->options().deadline + absl::Milliseconds(500));
  }
}

TEST(ClientFallback, NoServerListeningDegradesWithinTheDeadline) {
  ClientOptions options;
  options.target = absl::StrCat("127.0.0.1:", ClosedPort());
  ASSERT_EQ(options.deadline, absl::Milliseconds(50));  // the default
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();
  for (int i = 0; i < 3; ++i) {
    const absl::Time start = absl::Now();
    absl::StatusOr<Assignment> a =
        (*client)->Assign(UnitBuilder().Id("user_id", "u-1").Build());
    const absl::Duration elapsed = absl::Now() - start;
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_TRUE(a->degraded());
    EXPECT_TRUE(a->error().code() == absl::StatusCode::kUnavailable ||
                a->error().code() == absl::StatusCode::kDeadlineExceeded)
        << a->error();
    EXPECT_EQ(a->config_version(), "");
    EXPECT_EQ(a->GetString("headline", "fallback"), "fallback");
    EXPECT_TRUE(a->GetBool("flag", true));
    EXPECT_LT(elapsed, absl::Milliseconds(50 + 200));
  }
}

TEST(ClientFallback, AServerThatNeverAnswersDegradesAtTheDeadline) {
  // A socket that listens but never accepts: TCP connects, gRPC never hears
  // back.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 16), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);

  ClientOptions options;
  options.target = absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));
  options.deadline = absl::Milliseconds(100);
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();
  const absl::Time start = absl::Now();
  absl::StatusOr<Assignment> a =
      (*client)->Assign(UnitBuilder().Id("user_id", "u-1").Build());
  const absl::Duration elapsed = absl::Now() - start;
  close(fd);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->degraded());
  EXPECT_EQ(a->GetNumber("limit", 3), 3);
  EXPECT_LT(elapsed, absl::Milliseconds(100 + 200));
}

TEST(ClientOptions, OutOfRangeOptionsAreRejected) {
  ClientOptions no_attempts;
  no_attempts.max_attempts = 0;
  EXPECT_EQ(Client::Create(no_attempts).status().code(),
            absl::StatusCode::kInvalidArgument);
  ClientOptions no_deadline;
  no_deadline.deadline = absl::ZeroDuration();
  EXPECT_EQ(Client::Create(no_deadline).status().code(),
            absl::StatusCode::kInvalidArgument);
  ClientOptions no_target;
  no_target.target = "";
  EXPECT_EQ(Client::Create(no_target).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(FromGrpcStatus, KeepsTheCodeAndMessage) {
  const absl::Status s =
      FromGrpcStatus(grpc::Status(grpc::StatusCode::NOT_FOUND, "no such key"));
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "no such key");
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
}

}  // namespace
}  // namespace abexp
