// abexp-server on a real Redis Cluster under the events an operator lives
// through: one big experiment spread over every master, a master killed
// (kill -9) while records stream, and slots moved between masters while
// records stream. Each test starts its own cluster and server, so ctest
// runs them side by side.

#include <atomic>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "abexp/v1/recording.grpc.pb.h"
#include "abexp/v1/results.grpc.pb.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/storage/redis/redis_connection.h"
#include "server/testing/recording_test_util.h"
#include "server/testing/redis_cluster_process.h"
#include "server/testing/server_process.h"

namespace abexp {
namespace {

using ::abexp::testing::Eventually;
using ::abexp::testing::FindRedisBinary;
using ::abexp::testing::RedisClusterProcess;
using ::abexp::testing::RedisClusterProcessOptions;
using ::abexp::testing::RedisCommandText;
using ::abexp::testing::RunProcess;
using ::abexp::testing::ServerProcess;
using ::abexp::testing::SetDeadline;
using ::abexp::testing::TempDir;
using ::abexp::testing::ToProto;
using ::abexp::testing::User;

constexpr char kConfig[] = R"yaml(
metrics:
  - key: orders
    type: sum
    event: order_completed
    aggregate: value

experiments:
  - key: checkout
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: one_page, weight: 50}
    metrics: [orders]
    primary_metric: orders
)yaml";

// Units exposed before events stream; each event is of one of them.
constexpr int kUnits = 5000;
// Events of one RecordEvents call.
constexpr int kBatch = 500;

// A cluster, abexp-server on it (with /metrics), and a client.
class ClusterResilienceTest : public ::testing::Test {
 protected:
  void Start(RedisClusterProcessOptions cluster_options,
             std::vector<std::string> server_flags) {
    const std::string config = dir_.path() + "/experiments.yaml";
    std::ofstream(config) << kConfig;
    absl::StatusOr<std::unique_ptr<RedisClusterProcess>> cluster =
        RedisClusterProcess::Start(std::move(cluster_options));
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = *std::move(cluster);
    std::string nodes;
    for (const std::string& address : cluster_->addresses())
      absl::StrAppend(&nodes, nodes.empty() ? "" : ",", address);
    server_flags.push_back("--redis_cluster=" + nodes);
    server_flags.push_back("--spool_dir=" + dir_.path() + "/spool");
    server_flags.push_back("--http_listen=127.0.0.1:0");
    absl::StatusOr<std::unique_ptr<ServerProcess>> server =
        ServerProcess::Start(config, server_flags);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    http_port_ = server_->http_port();
    ASSERT_NE(http_port_, 0) << server_->listening_line();
    channel_ = grpc::CreateChannel(server_->address(),
                                   grpc::InsecureChannelCredentials());
  }

  // Sends `exposures`, each of a new unit "unit-<i>", in calls of 1,000,
  // each retried until the server acknowledges it.
  void Expose(int exposures) {
    auto stub = v1::RecordingService::NewStub(channel_);
    const absl::Time t0 = absl::Now() - absl::Hours(2);
    for (int start = 0; start < exposures; start += 1000) {
      v1::RecordExposuresRequest request;
      for (int u = start; u < std::min(exposures, start + 1000); ++u) {
        v1::ExposureRecord* e = request.add_exposures();
        e->set_experiment_key("checkout");
        *e->mutable_unit() = User(absl::StrCat("unit-", u));
        e->set_variant_key(u % 2 == 0 ? "control" : "one_page");
        *e->mutable_time() = ToProto(t0);
        e->set_idempotency_key(absl::StrCat("exp-", u));
      }
      grpc::Status status;
      ASSERT_TRUE(Eventually(
          [&] {
            grpc::ClientContext context;
            SetDeadline(&context, absl::Seconds(30));
            v1::RecordExposuresResponse response;
            status = stub->RecordExposures(&context, request, &response);
            return status.ok();
          },
          absl::Seconds(60), absl::Milliseconds(20)))
          << status.error_message();
    }
  }

  // Streams order_completed events of value 1, each with its own
  // idempotency key, kBatch per call, until `stop` is set and at least
  // `at_least` were acknowledged; a call that fails is sent again (same
  // keys), as a client does. Returns how many were acknowledged, or -1 when
  // a call did not succeed within a minute of retries.
  int64_t StreamEvents(int64_t at_least, const std::atomic<bool>& stop,
                       std::atomic<int64_t>* acked, std::string* error) {
    auto stub = v1::RecordingService::NewStub(channel_);
    const absl::Time t = absl::Now() - absl::Hours(1);
    int64_t next = 0;
    while (next < at_least || !stop.load()) {
      v1::RecordEventsRequest request;
      for (int i = 0; i < kBatch; ++i, ++next) {
        v1::EventRecord* ev = request.add_events();
        *ev->mutable_unit() = User(absl::StrCat("unit-", next % kUnits));
        ev->set_name("order_completed");
        ev->set_value(1);
        *ev->mutable_time() = ToProto(t);
        ev->set_idempotency_key(absl::StrCat("order-", next));
      }
      const bool sent = Eventually(
          [&] {
            grpc::ClientContext context;
            SetDeadline(&context, absl::Seconds(30));
            v1::RecordEventsResponse response;
            grpc::Status status =
                stub->RecordEvents(&context, request, &response);
            if (!status.ok()) *error = status.error_message();
            return status.ok();
          },
          absl::Seconds(60), absl::Milliseconds(20));
      if (!sent) return -1;
      acked->store(next);
    }
    return next;
  }

  // The orders the server's results count: Σ over variants of the mean per
  // exposed unit × exposed units; -1 when the results cannot be read.
  int64_t CountedOrders() {
    auto stub = v1::ResultsService::NewStub(channel_);
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(30));
    v1::GetResultsRequest request;
    request.set_experiment_key("checkout");
    v1::GetResultsResponse response;
    if (!stub->GetResults(&context, request, &response).ok()) return -1;
    double total = 0;
    for (const v1::VariantResult& variant : response.variants()) {
      if (variant.metrics_size() == 0 || !variant.metrics(0).has_estimate())
        continue;
      total += variant.metrics(0).estimate() *
               static_cast<double>(variant.exposed_units());
    }
    return static_cast<int64_t>(total + 0.5);
  }

  double MetricValue(const std::string& name,
                     const std::vector<std::string>& labels) {
    return abexp::testing::MetricValue(http_port_, name, labels);
  }

  // Waits until the spool has replayed everything into the cluster, then
  // expects the results to count exactly `acked` orders.
  void ExpectCountedExactly(int64_t acked) {
    ASSERT_TRUE(Eventually(
        [&] {
          return MetricValue("abexp_spool_pending_records", {}) == 0 &&
                 CountedOrders() >= acked;
        },
        absl::Seconds(90), absl::Milliseconds(100)))
        << "pending in the spool: "
        << MetricValue("abexp_spool_pending_records", {})
        << ", counted: " << CountedOrders() << " of " << acked;
    EXPECT_EQ(CountedOrders(), acked);
  }

  // StreamEvents of at least 100,000 events on a thread of its own.
  struct EventStream {
    explicit EventStream(ClusterResilienceTest* test)
        : sender([this, test] {
            sent = test->StreamEvents(100000, stop, &acked, &error);
          }) {}
    ~EventStream() { Stop(); }
    // Ends the stream (once 100,000 were sent) and returns how many events
    // were acknowledged, -1 when a call failed for good.
    int64_t Stop() {
      stop = true;
      if (sender.joinable()) sender.join();
      return sent;
    }

    std::atomic<bool> stop{false};
    std::atomic<int64_t> acked{0};
    std::string error;  // the last failed call's, read after Stop()
    int64_t sent = 0;
    std::thread sender;  // last: starts once the others are made
  };

  TempDir dir_;
  std::unique_ptr<RedisClusterProcess> cluster_;
  std::unique_ptr<ServerProcess> server_;
  std::shared_ptr<grpc::Channel> channel_;
  int http_port_ = 0;
};

TEST_F(ClusterResilienceTest, OneExperimentsUnitsSpreadOverEveryMaster) {
  ASSERT_NO_FATAL_FAILURE(Start({}, {}));
  constexpr int kExposed = 100000;
  ASSERT_NO_FATAL_FAILURE(Expose(kExposed));
  // Count the unit records each master really holds: the fields of the
  // phase's unit bucket hashes (u:<n>) found by SCAN on that node.
  int64_t total = 0;
  for (int i = 0; i < cluster_->size(); ++i) {
    RedisOptions node;
    ASSERT_TRUE(ParseRedisAddress(cluster_->node(i).address(), &node).ok());
    absl::StatusOr<std::unique_ptr<RedisPool>> pool = RedisPool::Create(node);
    ASSERT_TRUE(pool.ok()) << pool.status();
    int64_t units = 0;
    std::string cursor = "0";
    do {
      absl::StatusOr<std::vector<RedisReply>> scan =
          (*pool)->Pipeline({{"SCAN", cursor, "MATCH",
                              "abexp:{e:checkout:*}:u:*", "COUNT", "5000"}});
      ASSERT_TRUE(scan.ok()) << scan.status();
      const RedisReply& reply = (*scan)[0];
      ASSERT_EQ(reply.type, RedisReply::Type::kArray) << reply.str;
      cursor = reply.elements[0].str;
      std::vector<RedisCommand> lengths;
      for (const RedisReply& key : reply.elements[1].elements)
        lengths.push_back({"HLEN", key.str});
      absl::StatusOr<std::vector<RedisReply>> got = (*pool)->Pipeline(lengths);
      ASSERT_TRUE(got.ok()) << got.status();
      for (const RedisReply& n : *got) units += n.integer;
    } while (cursor != "0");
    EXPECT_GE(units, kExposed / 5)
        << "master " << cluster_->node(i).address() << " holds " << units
        << " of " << kExposed << " units, under 20%";
    total += units;
  }
  EXPECT_EQ(total, kExposed);
}

TEST_F(ClusterResilienceTest,
       KillingAMasterLosesAndDoublesNoAcknowledgedRecord) {
  RedisClusterProcessOptions options;
  options.replicas_per_master = 1;
  options.node_timeout = absl::Milliseconds(1500);
  options.extra_args = {"--appendonly", "yes", "--appendfsync", "always"};
  // WAIT 1: a write is acknowledged only once the master's replica has it,
  // so the replica that takes over holds every acknowledged record.
  ASSERT_NO_FATAL_FAILURE(Start(options, {"--redis_wait_replicas=1"}));
  ASSERT_NO_FATAL_FAILURE(Expose(kUnits));

  EventStream stream(this);
  std::atomic<int64_t>& acked = stream.acked;
  const std::string& error = stream.error;
  // Run the rest even when an assertion fails, so the sender ends.
  [&] {
    ASSERT_TRUE(Eventually([&] { return acked.load() >= 30000; },
                           absl::Seconds(60), absl::Milliseconds(5)))
        << "the stream stalled; see the sender's error after it stops";
    int victim = -1;
    for (int i = 0; i < cluster_->size() && victim < 0; ++i) {
      absl::StatusOr<bool> master = cluster_->IsMaster(i);
      ASSERT_TRUE(master.ok()) << master.status();
      if (*master) victim = i;
    }
    ASSERT_GE(victim, 0);
    ASSERT_TRUE(cluster_->node(victim).Kill().ok());
    // Its replica is promoted: three live masters, the cluster serving.
    ASSERT_TRUE(Eventually(
        [&] {
          int masters = 0;
          for (int i = 0; i < cluster_->size(); ++i) {
            if (i == victim) continue;
            absl::StatusOr<bool> master = cluster_->IsMaster(i);
            if (master.ok() && *master) ++masters;
          }
          return masters == 3;
        },
        absl::Seconds(60), absl::Milliseconds(20)))
        << "no replica took over from the killed master";
    ASSERT_TRUE(cluster_->WaitForState("ok", absl::Seconds(60)).ok());
    // Records keep streaming; the killed node comes back as the new
    // master's replica, so WAIT 1 is met again there.
    const int64_t at_failover = acked.load();
    ASSERT_TRUE(cluster_->node(victim).Restart().ok());
    ASSERT_TRUE(cluster_->WaitForState("ok", absl::Seconds(60)).ok());
    ASSERT_TRUE(
        Eventually([&] { return acked.load() >= at_failover + 5 * kBatch; },
                   absl::Seconds(60), absl::Milliseconds(5)))
        << "the stream stalled; see the sender's error after it stops";
  }();
  const int64_t sent = stream.Stop();
  ASSERT_GE(sent, 100000) << error;
  ExpectCountedExactly(sent);
}

TEST_F(ClusterResilienceTest, MovingSlotsWhileRecordingCountsEveryRecordOnce) {
  ASSERT_NO_FATAL_FAILURE(Start({}, {}));
  ASSERT_NO_FATAL_FAILURE(Expose(kUnits));
  absl::StatusOr<std::string> from = cluster_->NodeId(0);
  absl::StatusOr<std::string> to = cluster_->NodeId(1);
  ASSERT_TRUE(from.ok() && to.ok());

  EventStream stream(this);
  std::atomic<int64_t>& acked = stream.acked;
  const std::string& error = stream.error;
  std::string out, err;
  absl::StatusOr<int> code = absl::UnknownError("not run");
  int64_t before_reshard = 0;
  if (Eventually([&] { return acked.load() >= 10000; }, absl::Seconds(60),
                 absl::Milliseconds(5))) {
    // Every slot of master 0 (which holds shards of the experiment) to
    // master 1, key by key with MIGRATE, while the events stream.
    before_reshard = acked.load();
    code = RunProcess(
        {FindRedisBinary("redis-cli"), "--cluster", "reshard",
         cluster_->node(0).address(), "--cluster-from", *from, "--cluster-to",
         *to, "--cluster-slots", "5461", "--cluster-yes"},
        &out, &err, absl::Seconds(100));
  }
  const int64_t after_reshard = acked.load();
  const int64_t sent = stream.Stop();
  ASSERT_TRUE(code.ok()) << code.status() << stream.error;
  ASSERT_EQ(*code, 0) << out << err;
  EXPECT_GT(after_reshard, before_reshard)
      << "no record was acknowledged while the slots moved";
  ASSERT_GE(sent, 100000) << error;
  absl::StatusOr<std::string> keys =
      RedisCommandText(cluster_->node(0).port(), {"DBSIZE"});
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(*keys, "0") << "master 0 kept keys after its slots moved";
  ExpectCountedExactly(sent);
  // The client followed the cluster's redirects to the slots' new master.
  EXPECT_GT(MetricValue("abexp_redis_cluster_redirects_total",
                        {"pool=\"recording\""}),
            0);
}

}  // namespace
}  // namespace abexp
