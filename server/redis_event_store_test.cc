// What recording costs in Redis when an event fans out to many experiments
// (issue 5, figure R5): the Recorder sends an event to every experiment with
// a metric on it, and RedisEventStore must not run a script, nor store an
// idempotency key, in the experiments that never exposed the unit. Checked
// on a real redis-server through INFO commandstats and the keys it holds.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/config_parser.h"
#include "server/recorder.h"
#include "server/redis_connection.h"
#include "server/redis_event_store.h"
#include "tests/redis_process.h"

namespace abexp {
namespace {

constexpr int kExperiments = 20;
constexpr char kPrefix[] = "abexp-test";

// kExperiments running experiments, exp00 to exp19, each with a metric on
// order_completed; no holdout, so every unit is recorded.
std::string TwentyExperimentsConfig() {
  std::string yaml = R"(
metrics:
  - key: revenue
    type: sum
    event: order_completed
    aggregate: value
  - key: order_conversion
    type: binomial
    event: order_completed
experiments:
)";
  for (int i = 0; i < kExperiments; ++i) {
    absl::StrAppendFormat(&yaml, R"(
  - key: exp%02d
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [revenue, order_conversion]
    primary_metric: revenue
)",
                          i);
  }
  return yaml;
}

class RedisEventStoreFanOut : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<testing::RedisProcess>> redis =
        testing::RedisProcess::Start();
    ASSERT_TRUE(redis.ok()) << redis.status();
    redis_ = std::move(*redis);
    RedisOptions options;
    options.port = redis_->port();
    options.key_prefix = kPrefix;
    absl::StatusOr<std::unique_ptr<RedisPool>> pool = RedisPool::Create(options);
    ASSERT_TRUE(pool.ok()) << pool.status();
    pool_ = std::move(*pool);
    absl::StatusOr<std::unique_ptr<RedisEventStore>> store =
        RedisEventStore::Create(pool_.get());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    recorder_ = std::make_unique<Recorder>(store_.get());
    ParseResult parsed = ParseConfig(TwentyExperimentsConfig(), "fan_out.yaml");
    ASSERT_TRUE(parsed.ok()) << parsed.FormatDiagnostics();
    config_ = parsed.config;
  }

  RedisReply Command(RedisCommand command) {
    absl::StatusOr<std::vector<RedisReply>> r = pool_->Pipeline({command});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? (*r)[0] : RedisReply{};
  }

  // calls= of `command` in INFO commandstats (0 when it never ran). Redis
  // counts commands that scripts run too.
  int64_t Calls(const std::string& command) {
    const std::string info = Command({"INFO", "commandstats"}).str;
    const std::string tag = absl::StrCat("cmdstat_", command, ":calls=");
    size_t at = info.find(tag);
    if (at == std::string::npos) return 0;
    at += tag.size();
    int64_t calls = 0;
    EXPECT_TRUE(absl::SimpleAtoi(
        info.substr(at, info.find(',', at) - at), &calls))
        << info;
    return calls;
  }

  // Every key Redis holds for the experiment's phase 1.
  std::vector<std::string> KeysOf(const std::string& experiment) {
    RedisReply r = Command(
        {"KEYS", absl::StrCat(kPrefix, ":{e:", experiment, ":1}:*")});
    std::vector<std::string> keys;
    for (const RedisReply& k : r.elements) keys.push_back(k.str);
    return keys;
  }

  static Unit User(const std::string& id) {
    Unit unit;
    unit.ids["user_id"] = id;
    return unit;
  }

  std::unique_ptr<testing::RedisProcess> redis_;
  std::unique_ptr<RedisPool> pool_;
  std::unique_ptr<RedisEventStore> store_;
  std::unique_ptr<Recorder> recorder_;
  std::shared_ptr<const Config> config_;
  const absl::Time now_ = absl::Now();
};

TEST_F(RedisEventStoreFanOut,
       EventOfUnitExposedInOneOfTwentyExperimentsRunsOneScriptAndStoresOneKey) {
  ExposureInput exposure;
  exposure.experiment_key = "exp07";
  exposure.unit = User("u1");
  exposure.variant_key = "treatment";
  absl::StatusOr<RecordBatchResult> exposed =
      recorder_->RecordExposures(*config_, {exposure}, now_);
  ASSERT_TRUE(exposed.ok()) << exposed.status();
  ASSERT_EQ(exposed->recorded, 1);

  ASSERT_EQ(Command({"CONFIG", "RESETSTAT"}).type, RedisReply::Type::kStatus);
  EventInput order;
  order.unit = User("u1");
  order.name = "order_completed";
  order.value = 25.0;
  order.time = now_ + absl::Minutes(1);
  order.idempotency_key = "order-1";
  absl::StatusOr<RecordBatchResult> recorded =
      recorder_->RecordEvents(*config_, {order}, now_);
  ASSERT_TRUE(recorded.ok()) << recorded.status();
  ASSERT_EQ(recorded->results.size(), 1u);
  EXPECT_EQ(recorded->results[0].outcome, WriteOutcome::kRecorded);
  EXPECT_EQ(recorded->results[0].experiments_recorded, 1);

  // All 20 experiments have a metric on the event, but only exp07 runs the
  // script (the other 19 would each have run one before).
  EXPECT_EQ(Calls("evalsha"), 1);
  // The idempotency check (HEXISTS over the remembered days) ran once, for
  // exp07, not 20 times.
  EXPECT_LE(Calls("hexists"), 8);
  EXPECT_GE(Calls("hexists"), 1);

  // The other 19 experiments hold nothing: no idempotency entries, no meta.
  for (int i = 0; i < kExperiments; ++i) {
    const std::string key = absl::StrFormat("exp%02d", i);
    if (key == "exp07") continue;
    EXPECT_TRUE(KeysOf(key).empty()) << key << " holds " << KeysOf(key)[0];
  }
  // exp07 remembers two idempotency keys: the exposure's and the event's.
  int64_t remembered = 0;
  for (const std::string& k : KeysOf("exp07")) {
    if (k.find("}:i:") == std::string::npos) continue;
    remembered += Command({"HLEN", k}).integer;
  }
  EXPECT_EQ(remembered, 2);

  absl::StatusOr<ExperimentAggregates> a =
      store_->ReadAggregates(LayoutOf(*config_, *config_->FindExperiment("exp07")));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->variants[1].exposed, 1);
  EXPECT_EQ(a->variants[1].metrics["revenue"].sum, 25);
  EXPECT_EQ(a->variants[1].metrics["order_conversion"].units, 1);

  // Retried: a duplicate in exp07, still one script and nothing stored
  // elsewhere.
  ASSERT_EQ(Command({"CONFIG", "RESETSTAT"}).type, RedisReply::Type::kStatus);
  recorded = recorder_->RecordEvents(*config_, {order}, now_);
  ASSERT_TRUE(recorded.ok()) << recorded.status();
  EXPECT_EQ(recorded->results[0].outcome, WriteOutcome::kDuplicate);
  EXPECT_EQ(Calls("evalsha"), 1);
  EXPECT_TRUE(KeysOf("exp00").empty());
}

TEST_F(RedisEventStoreFanOut, EventsOfUnitsExposedNowhereRunNoScriptAndStoreNothing) {
  std::vector<EventInput> orders;
  for (int i = 0; i < 100; ++i) {
    EventInput order;
    order.unit = User(absl::StrCat("stranger-", i));
    order.name = "order_completed";
    order.value = 10.0;
    order.time = now_;
    orders.push_back(order);
  }
  ASSERT_EQ(Command({"CONFIG", "RESETSTAT"}).type, RedisReply::Type::kStatus);
  absl::StatusOr<RecordBatchResult> recorded =
      recorder_->RecordEvents(*config_, orders, now_);
  ASSERT_TRUE(recorded.ok()) << recorded.status();
  EXPECT_EQ(recorded->ignored, 100);
  EXPECT_EQ(Calls("evalsha"), 0);
  EXPECT_EQ(Command({"DBSIZE"}).integer, 0);
}

}  // namespace
}  // namespace abexp
