// Redis outages with a real abexp-server and a real redis-server: recording
// calls are acknowledged from the server's spool while Redis is down, and
// the spool is replayed into Redis when it is back, also across a server
// restart. Expected aggregates are computed here from the inputs and read
// back from Redis with RedisEventStore.
#include <signal.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "abexp/v1/assignment.grpc.pb.h"
#include "abexp/v1/recording.grpc.pb.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/config_parser.h"
#include "server/event_store.h"
#include "server/redis_connection.h"
#include "server/redis_event_store.h"
#include "tests/redis_process.h"
#include "tests/server_process.h"

namespace abexp {
namespace {

using ::abexp::testing::RedisProcess;
using ::abexp::testing::RunProcess;
using ::abexp::testing::ServerProcess;
using ::abexp::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::StartsWith;

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
      - {key: treatment, weight: 50}
    metrics: [order_conversion, revenue]
    primary_metric: order_conversion
)yaml";

constexpr char kPrefix[] = "spool-e2e";
// Replay backs off up to 5s and the Redis pool reconnects within 2s; on a
// loaded machine give it much longer.
constexpr absl::Duration kReplayWait = absl::Seconds(90);

google::protobuf::Timestamp ToProto(absl::Time t) {
  google::protobuf::Timestamp p;
  const int64_t nanos = absl::ToUnixNanos(t);
  p.set_seconds(nanos / 1000000000);
  p.set_nanos(static_cast<int32_t>(nanos % 1000000000));
  return p;
}

v1::Unit User(const std::string& id) {
  v1::Unit unit;
  (*unit.mutable_ids())["user_id"] = id;
  return unit;
}

// Per-variant figures implied by the inputs.
struct Expected {
  int64_t exposed = 0;
  int64_t converted = 0;
  double revenue = 0;
};

class SpoolE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<RedisProcess>> redis = RedisProcess::Start();
    ASSERT_TRUE(redis.ok()) << redis.status();
    redis_ = *std::move(redis);
    config_path_ = dir_.Write("experiments.yaml", kConfig);
    ParseResult parsed = ParseConfig(kConfig, "experiments.yaml");
    ASSERT_TRUE(parsed.ok());
    config_ = parsed.config;
    start_ = absl::Now() - absl::Hours(1);
  }

  std::vector<std::string> ServerArgs(
      std::vector<std::string> extra = {}) const {
    std::vector<std::string> args = {"--redis=" + redis_->address(),
                                     absl::StrCat("--redis_prefix=", kPrefix)};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  void StartServer(std::vector<std::string> extra = {}) {
    absl::StatusOr<std::unique_ptr<ServerProcess>> server =
        ServerProcess::Start(config_path_, ServerArgs(std::move(extra)));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(server_->address(),
                                   grpc::InsecureChannelCredentials());
    assign_ = v1::AssignmentService::NewStub(channel_);
    record_ = v1::RecordingService::NewStub(channel_);
  }

  grpc::Status RecordExposures(const v1::RecordExposuresRequest& request,
                               v1::RecordExposuresResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    return record_->RecordExposures(&context, request, response);
  }

  grpc::Status RecordEvents(const v1::RecordEventsRequest& request,
                            v1::RecordEventsResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    return record_->RecordEvents(&context, request, response);
  }

  // Exposes `unit` to `variant` at start_ + `minute` minutes.
  void AddExposure(v1::RecordExposuresRequest* request, const std::string& unit,
                   int variant, int minute) {
    v1::ExposureRecord* x = request->add_exposures();
    x->set_experiment_key("checkout");
    *x->mutable_unit() = User(unit);
    x->set_variant_key(variant == 0 ? "control" : "treatment");
    *x->mutable_time() = ToProto(start_ + absl::Minutes(minute));
    Expected& e = expected_[variant];
    ++e.exposed;
  }

  // An order of `value` by `unit` (exposed to `variant`) at start_ +
  // `minute` minutes; `first` when it is the unit's first order.
  void AddOrder(v1::RecordEventsRequest* request, const std::string& unit,
                int variant, double value, int minute, bool first) {
    v1::EventRecord* ev = request->add_events();
    *ev->mutable_unit() = User(unit);
    ev->set_name("order_completed");
    ev->set_value(value);
    *ev->mutable_time() = ToProto(start_ + absl::Minutes(minute));
    Expected& e = expected_[variant];
    if (first) ++e.converted;
    e.revenue += value;
  }

  // The checkout aggregates in Redis, or an error while Redis is down.
  absl::StatusOr<ExperimentAggregates> ReadCheckout() {
    RedisOptions options;
    if (absl::Status s = ParseRedisAddress(redis_->address(), &options);
        !s.ok()) {
      return s;
    }
    options.key_prefix = kPrefix;
    absl::StatusOr<std::unique_ptr<RedisPool>> pool =
        RedisPool::Create(options);
    if (!pool.ok()) return pool.status();
    absl::StatusOr<std::unique_ptr<RedisEventStore>> store =
        RedisEventStore::Create(pool->get());
    if (!store.ok()) return store.status();
    return (*store)->ReadAggregates(
        LayoutOf(*config_, *config_->FindExperiment("checkout")));
  }

  bool MatchesExpected(const ExperimentAggregates& a) {
    if (a.variants.size() != 2) return false;
    for (int v = 0; v < 2; ++v) {
      const VariantAggregate& got = a.variants[v];
      const Expected& want = expected_[v];
      auto metric = [&](const char* key) {
        auto it = got.metrics.find(key);
        return it == got.metrics.end() ? MetricAggregate() : it->second;
      };
      if (got.exposed != want.exposed ||
          metric("order_conversion").units != want.converted ||
          static_cast<double>(metric("revenue").sum) != want.revenue) {
        return false;
      }
    }
    return a.multi_exposed == 0;
  }

  // Waits until Redis holds exactly the expected aggregates; the replay runs
  // in the background.
  void ExpectAggregatesReached() {
    const absl::Time deadline = absl::Now() + kReplayWait;
    absl::StatusOr<ExperimentAggregates> a = ReadCheckout();
    while (!(a.ok() && MatchesExpected(*a)) && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(200));
      a = ReadCheckout();
    }
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_EQ(a->variants.size(), 2u) << server_->Stderr();
    for (int v = 0; v < 2; ++v) {
      SCOPED_TRACE(absl::StrCat("variant ", v));
      EXPECT_EQ(a->variants[v].exposed, expected_[v].exposed);
      EXPECT_EQ(a->variants[v].metrics["order_conversion"].units,
                expected_[v].converted);
      EXPECT_EQ(static_cast<double>(a->variants[v].metrics["revenue"].sum),
                expected_[v].revenue);
    }
    EXPECT_EQ(a->multi_exposed, 0);
    if (HasFailure()) ADD_FAILURE() << "server stderr:\n" << server_->Stderr();
  }

  TempDir dir_;
  std::string config_path_;
  std::shared_ptr<const Config> config_;
  absl::Time start_;
  std::map<int, Expected> expected_;  // by variant index
  std::unique_ptr<RedisProcess> redis_;
  std::unique_ptr<ServerProcess> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AssignmentService::Stub> assign_;
  std::unique_ptr<v1::RecordingService::Stub> record_;
};

TEST_F(SpoolE2eTest, RedisDownCallsAreSpooledAndAppliedExactlyWhenItIsBack) {
  StartServer();
  // Redis up: a direct write.
  v1::RecordExposuresRequest before;
  for (int u = 0; u < 10; ++u)
    AddExposure(&before, absl::StrCat("u", u), u % 2, u);
  v1::RecordExposuresResponse exposed;
  ASSERT_TRUE(RecordExposures(before, &exposed).ok());
  EXPECT_EQ(exposed.counts().recorded(), 10);

  ASSERT_TRUE(redis_->Kill().ok());
  // More units exposed, and orders of old and new units, while Redis is
  // down: acknowledged from the spool. The order of u10 comes after its
  // exposure only in the spool, so replay order matters.
  v1::RecordExposuresRequest during;
  for (int u = 10; u < 20; ++u)
    AddExposure(&during, absl::StrCat("u", u), u % 2, u);
  grpc::Status status = RecordExposures(during, &exposed);
  ASSERT_TRUE(status.ok()) << status.error_message() << server_->Stderr();
  EXPECT_EQ(exposed.counts().spooled(), 10);
  EXPECT_EQ(exposed.counts().recorded(), 0);
  for (const v1::RecordResult& r : exposed.results()) {
    EXPECT_EQ(r.outcome(), v1::RECORD_OUTCOME_SPOOLED);
  }
  v1::RecordEventsRequest orders;
  for (int u = 0; u < 20; u += 3) {
    AddOrder(&orders, absl::StrCat("u", u), u % 2, 10 + 0.25 * u, 30 + u, true);
  }
  AddOrder(&orders, "u3", 1, 7.5, 59, false);  // a second order
  v1::RecordEventsResponse tracked;
  status = RecordEvents(orders, &tracked);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(tracked.counts().spooled(), orders.events_size());
  // A retry of the same batch counts once after the replay.
  status = RecordEvents(orders, &tracked);
  ASSERT_TRUE(status.ok()) << status.error_message();

  // Assign with record_exposure is acknowledged the same way.
  v1::AssignRequest assign;
  *assign.mutable_unit() = User("assigned-user");
  assign.set_record_exposure(true);
  v1::AssignResponse assigned;
  {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    ASSERT_TRUE(assign_->Assign(&context, assign, &assigned).ok());
  }
  EXPECT_EQ(assigned.exposure_error(), "");
  ASSERT_EQ(assigned.assignments_size(), 1);
  ++expected_[assigned.assignments(0).variant_key() == "control" ? 0 : 1]
        .exposed;

  // The CLI says so.
  std::string out, err;
  absl::StatusOr<int> code = RunProcess(
      {ABEXP_CLI_BIN, "expose", "--server", server_->address(), "--experiment",
       "checkout", "--variant", "treatment", "--id", "user_id=cli-user"},
      &out, &err);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << err;
  EXPECT_THAT(out, StartsWith("spooled"));
  ++expected_[1].exposed;
  code = RunProcess(
      {ABEXP_CLI_BIN, "track", "--server", server_->address(), "--id",
       "user_id=cli-user", "--event", "order_completed", "--value", "2.5"},
      &out, &err);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << err;
  EXPECT_THAT(out, StartsWith("spooled"));
  ++expected_[1].converted;
  expected_[1].revenue += 2.5;

  ASSERT_TRUE(redis_->Restart().ok());
  ExpectAggregatesReached();
  EXPECT_TRUE(
      server_->WaitForStderr("drained into Redis", absl::Seconds(30)).ok());

  // Drained: writes go straight to Redis again.
  v1::RecordExposuresRequest after;
  AddExposure(&after, "late-user", 0, 70);
  status = RecordExposures(after, &exposed);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(exposed.counts().recorded(), 1);
  ExpectAggregatesReached();
}

TEST_F(SpoolE2eTest, SigtermKeepsTheSpoolAndTheNextStartReplaysIt) {
  const std::string spool_dir = dir_.path() + "/spool";
  ASSERT_TRUE(redis_->Kill().ok());
  StartServer({"--spool_dir=" + spool_dir, "--shutdown_grace=1s"});

  v1::RecordExposuresRequest exposures;
  for (int u = 0; u < 6; ++u)
    AddExposure(&exposures, absl::StrCat("u", u), u % 2, u);
  v1::RecordExposuresResponse exposed;
  grpc::Status status = RecordExposures(exposures, &exposed);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(exposed.counts().spooled(), 6);
  v1::RecordEventsRequest orders;
  AddOrder(&orders, "u1", 1, 19.75, 20, true);
  AddOrder(&orders, "u2", 0, 4, 21, true);
  v1::RecordEventsResponse tracked;
  status = RecordEvents(orders, &tracked);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(tracked.counts().spooled(), 2);

  ASSERT_TRUE(server_->Signal(SIGTERM).ok());
  absl::StatusOr<int> code = server_->WaitForExit(absl::Seconds(60));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << server_->Stderr();
  // Two writes: the exposures (one experiment) and the events.
  EXPECT_THAT(server_->Stderr(), HasSubstr("2 spooled writes"));
  EXPECT_THAT(server_->Stderr(), HasSubstr("2 pending"));
  EXPECT_THAT(server_->Stderr(), HasSubstr("shut down"));

  ASSERT_TRUE(redis_->Restart().ok());
  StartServer({"--spool_dir=" + spool_dir});
  EXPECT_TRUE(
      server_
          ->WaitForStderr("from an earlier run are pending", absl::Seconds(10))
          .ok());
  ExpectAggregatesReached();
}

TEST_F(SpoolE2eTest,
       AFullSpoolMakesCallsUnavailableAndKeepsWhatItAcknowledged) {
  ASSERT_TRUE(redis_->Kill().ok());
  StartServer({"--spool_max_bytes=2048", "--shutdown_grace=1s"});
  grpc::Status refused;
  int acknowledged = 0;
  for (int u = 0; u < 200 && refused.ok(); ++u) {
    v1::RecordExposuresRequest request;
    v1::ExposureRecord* x = request.add_exposures();
    x->set_experiment_key("checkout");
    *x->mutable_unit() = User(absl::StrCat("u", u));
    x->set_variant_key("control");
    *x->mutable_time() = ToProto(start_);
    v1::RecordExposuresResponse response;
    grpc::Status s = RecordExposures(request, &response);
    if (s.ok()) {
      EXPECT_EQ(response.counts().spooled(), 1);
      ++acknowledged;
    } else {
      refused = s;
    }
  }
  ASSERT_FALSE(refused.ok()) << "a 2 KiB spool never filled up";
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(refused.error_message(), HasSubstr("is full"));
  EXPECT_THAT(refused.error_message(),
              HasSubstr("Redis at " + redis_->address()));
  ASSERT_GT(acknowledged, 0);
  expected_[0].exposed = acknowledged;

  ASSERT_TRUE(redis_->Restart().ok());
  ExpectAggregatesReached();
}

TEST_F(SpoolE2eTest, TwoServersCannotShareASpool) {
  const std::string spool_dir = dir_.path() + "/shared-spool";
  StartServer({"--spool_dir=" + spool_dir});
  std::string out, err;
  absl::StatusOr<int> code = RunProcess(
      {ABEXP_SERVER_BIN, "--config=" + config_path_, "--listen=127.0.0.1:0",
       "--redis=" + redis_->address(), "--spool_dir=" + spool_dir},
      &out, &err);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 1);
  EXPECT_THAT(err, HasSubstr(spool_dir));
  EXPECT_THAT(err, HasSubstr("give this one its own --spool_dir"));
  EXPECT_THAT(out, ::testing::IsEmpty());
}

}  // namespace
}  // namespace abexp
