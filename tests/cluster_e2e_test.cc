// abexp-server on a real 3-master Redis Cluster (--redis_cluster), beside
// one on a single redis-server (--redis): the same records sent to both
// give the same results, one experiment's keys spread over every master,
// and the flags refuse what they cannot serve.
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "abexp/v1/recording.grpc.pb.h"
#include "abexp/v1/results.grpc.pb.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/testing/recording_test_util.h"
#include "server/testing/redis_cluster_process.h"
#include "server/testing/redis_process.h"
#include "server/testing/server_process.h"

namespace abexp {
namespace {

using ::abexp::testing::RedisClusterProcess;
using ::abexp::testing::RedisCommandText;
using ::abexp::testing::RedisProcess;
using ::abexp::testing::RunProcess;
using ::abexp::testing::ServerProcess;
using ::abexp::testing::SetDeadline;
using ::abexp::testing::TempDir;
using ::abexp::testing::ToProto;
using ::abexp::testing::User;
using ::testing::HasSubstr;

constexpr char kConfig[] = R"yaml(
metrics:
  - key: order_conversion
    type: binomial
    event: order_completed
  - key: revenue
    type: sum
    event: order_completed
    aggregate: value

experiments:
  - key: checkout
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: one_page, weight: 50}
    metrics: [order_conversion, revenue]
    primary_metric: order_conversion
)yaml";

// A Redis Cluster and a single Redis, each under its own abexp-server on
// the same config; shared by the tests (a cluster takes seconds to form).
class ClusterE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const std::string config = dir_->path() + "/experiments.yaml";
    std::ofstream(config) << kConfig;
    absl::StatusOr<std::unique_ptr<RedisClusterProcess>> cluster =
        RedisClusterProcess::Start({});
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = cluster->release();
    absl::StatusOr<std::unique_ptr<RedisProcess>> single =
        RedisProcess::Start({});
    ASSERT_TRUE(single.ok()) << single.status();
    single_ = single->release();
    const std::vector<std::string> nodes = cluster_->addresses();
    // Two seeds of three: the client finds the third from the slot map.
    absl::StatusOr<std::unique_ptr<ServerProcess>> on_cluster =
        ServerProcess::Start(
            config, {"--redis_cluster=" + nodes[0] + "," + nodes[1],
                     "--spool_dir=" + dir_->path() + "/spool-cluster"});
    ASSERT_TRUE(on_cluster.ok()) << on_cluster.status();
    on_cluster_ = on_cluster->release();
    absl::StatusOr<std::unique_ptr<ServerProcess>> on_single =
        ServerProcess::Start(config,
                             {"--redis=" + single_->address(),
                              "--spool_dir=" + dir_->path() + "/spool-single"});
    ASSERT_TRUE(on_single.ok()) << on_single.status();
    on_single_ = on_single->release();
  }

  static void TearDownTestSuite() {
    delete on_cluster_;
    delete on_single_;
    delete cluster_;
    delete single_;
    delete dir_;
  }

  // Sends `exposures` and `events` to `server`; a test failure when a call
  // fails or anything was spooled (Redis must have taken it all).
  static void Record(ServerProcess* server,
                     const v1::RecordExposuresRequest& exposures,
                     const v1::RecordEventsRequest& events) {
    auto stub = v1::RecordingService::NewStub(grpc::CreateChannel(
        server->address(), grpc::InsecureChannelCredentials()));
    {
      grpc::ClientContext context;
      SetDeadline(&context, absl::Seconds(30));
      v1::RecordExposuresResponse response;
      grpc::Status status =
          stub->RecordExposures(&context, exposures, &response);
      ASSERT_TRUE(status.ok()) << status.error_message();
      EXPECT_EQ(response.counts().spooled(), 0);
    }
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(30));
    v1::RecordEventsResponse response;
    grpc::Status status = stub->RecordEvents(&context, events, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.counts().spooled(), 0);
  }

  static v1::GetResultsResponse Results(ServerProcess* server) {
    auto stub = v1::ResultsService::NewStub(grpc::CreateChannel(
        server->address(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(30));
    v1::GetResultsRequest request;
    request.set_experiment_key("checkout");
    v1::GetResultsResponse response;
    grpc::Status status = stub->GetResults(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  static TempDir* dir_;
  static RedisClusterProcess* cluster_;
  static RedisProcess* single_;
  static ServerProcess* on_cluster_;
  static ServerProcess* on_single_;
};

TempDir* ClusterE2eTest::dir_ = nullptr;
RedisClusterProcess* ClusterE2eTest::cluster_ = nullptr;
RedisProcess* ClusterE2eTest::single_ = nullptr;
ServerProcess* ClusterE2eTest::on_cluster_ = nullptr;
ServerProcess* ClusterE2eTest::on_single_ = nullptr;

TEST_F(ClusterE2eTest, TheSameRecordsGiveTheSameResultsAsOneRedis) {
  // 2,000 units, every fourth of them exposed to both variants
  // (multi-exposed), a third ordering once (some twice, the retry with
  // the same idempotency key), with revenue.
  const absl::Time t0 = absl::Now() - absl::Hours(2);
  v1::RecordExposuresRequest exposures;
  v1::RecordEventsRequest events;
  for (int u = 0; u < 2000; ++u) {
    const std::string id = absl::StrCat("unit-", u);
    const char* variant = u % 2 == 0 ? "control" : "one_page";
    v1::ExposureRecord* e = exposures.add_exposures();
    e->set_experiment_key("checkout");
    *e->mutable_unit() = User(id);
    e->set_variant_key(variant);
    *e->mutable_time() = ToProto(t0);
    e->set_idempotency_key(absl::StrCat("exp-", u));
    if (u % 4 == 3) {
      v1::ExposureRecord* again = exposures.add_exposures();
      *again = *e;
      again->set_variant_key("control");
      again->set_idempotency_key(absl::StrCat("exp2-", u));
    }
    if (u % 3 == 0) {
      for (int copy = 0; copy < (u % 9 == 0 ? 2 : 1); ++copy) {
        v1::EventRecord* ev = events.add_events();
        *ev->mutable_unit() = User(id);
        ev->set_name("order_completed");
        ev->set_value(10 + u % 37);
        *ev->mutable_time() = ToProto(t0 + absl::Minutes(5 + u % 50));
        ev->set_idempotency_key(absl::StrCat("order-", u));
      }
    }
  }
  ASSERT_NO_FATAL_FAILURE(Record(on_cluster_, exposures, events));
  ASSERT_NO_FATAL_FAILURE(Record(on_single_, exposures, events));

  v1::GetResultsResponse from_cluster = Results(on_cluster_);
  v1::GetResultsResponse from_single = Results(on_single_);
  ASSERT_EQ(from_single.variants_size(), 2);
  // 1,500 units exposed to one variant only, 500 to both.
  EXPECT_EQ(from_single.variants(0).exposed_units() +
                from_single.variants(1).exposed_units(),
            1500);
  EXPECT_EQ(from_single.multi_exposed_units(), 500);
  google::protobuf::util::MessageDifferencer differencer;
  std::string differences;
  differencer.ReportDifferencesToString(&differences);
  EXPECT_TRUE(differencer.Compare(from_cluster, from_single)) << differences;

  // The experiment's keys are on every master, not in one slot.
  for (int i = 0; i < cluster_->size(); ++i) {
    absl::StatusOr<std::string> keys =
        RedisCommandText(cluster_->node(i).port(), {"DBSIZE"});
    ASSERT_TRUE(keys.ok()) << keys.status();
    int64_t n = 0;
    ASSERT_TRUE(absl::SimpleAtoi(*keys, &n)) << *keys;
    EXPECT_GT(n, 0) << "master " << cluster_->node(i).address()
                    << " holds none of the experiment's keys";
  }
}

TEST(ClusterFlagsTest, RedisAndRedisClusterTogetherAreRefused) {
  TempDir dir;
  const std::string config = dir.path() + "/experiments.yaml";
  std::ofstream(config) << kConfig;
  std::string out, err;
  absl::StatusOr<int> code = RunProcess(
      {ABEXP_SERVER_BIN, "--config=" + config, "--listen=127.0.0.1:0",
       "--redis=127.0.0.1:6379", "--redis_cluster=127.0.0.1:7000",
       "--spool_dir=" + dir.path() + "/spool"},
      &out, &err);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 1) << err;
  EXPECT_THAT(err, HasSubstr("--redis_cluster"));
  EXPECT_THAT(err, HasSubstr("not both"));
}

}  // namespace
}  // namespace abexp
