// What recording costs in Redis when an event fans out to many experiments
// (issue 5, figure R5): the Recorder sends an event to every experiment with
// a metric on it, and RedisEventStore must not run a script, nor store an
// idempotency key, in the experiments that never exposed the unit. Checked
// on a real redis-server through INFO commandstats and the keys it holds.
// Also (issue 12): the scripts apply a chunk whole or not at all whatever
// arguments reach them, checked with DEBUG DIGEST.
#include "server/storage/redis/redis_event_store.h"

#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/config_parser.h"
#include "server/core/event_store_internal.h"
#include "server/core/recorder.h"
#include "server/storage/redis/redis_connection.h"
#include "server/storage/redis/redis_scripts.h"
#include "server/testing/redis_process.h"

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

// A redis-server of the test's own, a pool on it and a store.
class WithRedis : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<testing::RedisProcess>> redis =
        testing::RedisProcess::Start();
    ASSERT_TRUE(redis.ok()) << redis.status();
    redis_ = std::move(*redis);
    RedisOptions options;
    options.port = redis_->port();
    options.key_prefix = kPrefix;
    absl::StatusOr<std::unique_ptr<RedisPool>> pool =
        RedisPool::Create(options);
    ASSERT_TRUE(pool.ok()) << pool.status();
    pool_ = std::move(*pool);
    absl::StatusOr<std::unique_ptr<RedisEventStore>> store =
        RedisEventStore::Create(pool_.get());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  RedisReply Command(RedisCommand command) {
    absl::StatusOr<std::vector<RedisReply>> r = pool_->Pipeline({command});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? (*r)[0] : RedisReply{};
  }

  std::unique_ptr<testing::RedisProcess> redis_;
  std::unique_ptr<RedisPool> pool_;
  std::unique_ptr<RedisEventStore> store_;
};

class RedisEventStoreFanOut : public WithRedis {
 protected:
  void SetUp() override {
    WithRedis::SetUp();
    if (HasFatalFailure()) return;
    recorder_ = std::make_unique<Recorder>(store_.get());
    ParseResult parsed = ParseConfig(TwentyExperimentsConfig(), "fan_out.yaml");
    ASSERT_TRUE(parsed.ok()) << parsed.FormatDiagnostics();
    config_ = parsed.config;
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
    EXPECT_TRUE(
        absl::SimpleAtoi(info.substr(at, info.find(',', at) - at), &calls))
        << info;
    return calls;
  }

  // Every key Redis holds for the experiment's phase 1.
  std::vector<std::string> KeysOf(const std::string& experiment) {
    RedisReply r =
        Command({"KEYS", absl::StrCat(kPrefix, ":{e:", experiment, ":1}:*")});
    std::vector<std::string> keys;
    for (const RedisReply& k : r.elements) keys.push_back(k.str);
    return keys;
  }

  static Unit User(const std::string& id) {
    Unit unit;
    unit.ids["user_id"] = id;
    return unit;
  }

  std::unique_ptr<Recorder> recorder_;
  std::shared_ptr<const IndexedConfig> config_;
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
  // The idempotency check (HEXISTS of the previous generation's hash, then
  // HSETNX into the current one) ran once, for exp07, not 20 times.
  EXPECT_EQ(Calls("hexists"), 1);
  EXPECT_EQ(Calls("hsetnx"), 1);

  // The other 19 experiments hold nothing: no idempotency entries, no meta.
  for (int i = 0; i < kExperiments; ++i) {
    const std::string key = absl::StrFormat("exp%02d", i);
    if (key == "exp07") continue;
    EXPECT_TRUE(KeysOf(key).empty()) << key << " holds " << KeysOf(key)[0];
  }
  // exp07 remembers two idempotency keys: the exposure's and the event's.
  int64_t remembered = 0;
  for (const std::string& k : KeysOf("exp07")) {
    if (k.find("}:g:") == std::string::npos) continue;
    remembered += Command({"HLEN", k}).integer;
  }
  EXPECT_EQ(remembered, 2);

  absl::StatusOr<ExperimentAggregates> a = store_->ReadAggregates(
      LayoutOf(*config_, *config_->FindExperiment("exp07")));
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

// The recorder hands all experiments' batches to the store at once, and the
// store shares its round trips between them: the bucket counts of the
// phases it has not cached, the units' records, the scripts. Before, each
// of the 20 experiments cost at least one round trip of its own.
TEST_F(RedisEventStoreFanOut,
       AnEventFannedOutToTwentyExperimentsTakesThreeRoundTrips) {
  for (const auto& [experiment, unit] :
       {std::pair<std::string, std::string>{"exp07", "u1"}, {"exp11", "u2"}}) {
    ExposureInput exposure;
    exposure.experiment_key = experiment;
    exposure.unit = User(unit);
    exposure.variant_key = "control";
    absl::StatusOr<RecordBatchResult> exposed =
        recorder_->RecordExposures(*config_, {exposure}, now_);
    ASSERT_TRUE(exposed.ok()) << exposed.status();
    ASSERT_EQ(exposed->recorded, 1);
  }
  std::vector<EventInput> orders;
  for (const std::string unit : {"u1", "u2", "stranger"}) {
    EventInput order;
    order.unit = User(unit);
    order.name = "order_completed";
    order.value = 10.0;
    order.time = now_ + absl::Minutes(1);
    orders.push_back(order);
  }
  for (int call = 0; call < 2; ++call) {
    SCOPED_TRACE(absl::StrCat("call ", call));
    const int64_t trips = pool_->round_trips();
    absl::StatusOr<RecordBatchResult> recorded =
        recorder_->RecordEvents(*config_, orders, now_);
    ASSERT_TRUE(recorded.ok()) << recorded.status();
    // The 18 phases never written, the records, the two scripts.
    EXPECT_EQ(pool_->round_trips() - trips, 3);
    ASSERT_EQ(recorded->results.size(), 3u);
    const WriteOutcome want =
        call == 0 ? WriteOutcome::kRecorded : WriteOutcome::kDuplicate;
    EXPECT_EQ(recorded->results[0].outcome, want);
    EXPECT_EQ(recorded->results[1].outcome, want);
    EXPECT_EQ(recorded->results[2].outcome, WriteOutcome::kIgnored);
  }
  for (const std::string experiment : {"exp07", "exp11"}) {
    absl::StatusOr<ExperimentAggregates> a = store_->ReadAggregates(
        LayoutOf(*config_, *config_->FindExperiment(experiment)));
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(a->variants[0].metrics["revenue"].sum, 10) << experiment;
  }
}

TEST_F(RedisEventStoreFanOut,
       EventsOfUnitsExposedNowhereRunNoScriptAndStoreNothing) {
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

// Idempotency keys live in one hash per generation (one TTL long) and a
// write checks the current and the previous generation: a retry within the
// TTL is a duplicate wherever the boundary falls, a key is forgotten after
// at most twice the TTL, and each generation's hashes expire then.
TEST_F(RedisEventStoreFanOut, IdempotencyKeyLastsAtLeastTheTtlAndAtMostTwice) {
  const absl::Duration ttl = absl::Hours(1);
  const int64_t ttl_s = 3600;
  // The start of a generation in the future, so the hashes' expiry times
  // are ahead of Redis's clock.
  const int64_t gen = absl::ToUnixSeconds(now_) / ttl_s + 2;
  const absl::Time start = absl::FromUnixSeconds(gen * ttl_s);
  absl::Time now = start + absl::Minutes(59);  // late in generation `gen`
  RedisEventStoreOptions options;
  options.idempotency_ttl = ttl;
  options.clock = [&now] { return now; };
  absl::StatusOr<std::unique_ptr<RedisEventStore>> store =
      RedisEventStore::Create(pool_.get(), options);
  ASSERT_TRUE(store.ok()) << store.status();
  const ExperimentLayout layout =
      LayoutOf(*config_, *config_->FindExperiment("exp03"));

  const Exposure exposure{"u1", 1, start, "cfg", "exposure-1"};
  const Event order{"u1", "order_completed", 5.0, start + absl::Minutes(1),
                    "order-1"};
  auto expose = [&] {
    absl::StatusOr<std::vector<WriteOutcome>> r =
        (*store)->WriteExposures(layout, {exposure});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? (*r)[0] : WriteOutcome::kSpooled;
  };
  auto send = [&] {
    absl::StatusOr<std::vector<WriteOutcome>> r =
        (*store)->WriteEvents(layout, {order});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? (*r)[0] : WriteOutcome::kSpooled;
  };
  auto revenue = [&] {
    absl::StatusOr<ExperimentAggregates> a = (*store)->ReadAggregates(layout);
    EXPECT_TRUE(a.ok()) << a.status();
    return a.ok() ? a->variants[1].metrics["revenue"].sum : -1;
  };

  EXPECT_EQ(expose(), WriteOutcome::kRecorded);
  EXPECT_EQ(send(), WriteOutcome::kRecorded);
  EXPECT_EQ(Command({"CONFIG", "RESETSTAT"}).type, RedisReply::Type::kStatus);

  // 59 minutes later, in the next generation: still remembered.
  now = start + absl::Minutes(118);
  EXPECT_EQ(send(), WriteOutcome::kDuplicate);
  EXPECT_EQ(expose(), WriteOutcome::kDuplicate);
  EXPECT_EQ(revenue(), 5);
  // Found in the previous generation: one lookup each, nothing written.
  EXPECT_EQ(Calls("hexists"), 2);
  EXPECT_EQ(Calls("hsetnx"), 0);

  // Every hash of generation `gen` expires at the end of generation gen + 1.
  int hashes = 0;
  for (const std::string& k : KeysOf("exp03")) {
    if (k.find(absl::StrCat("}:g:", gen, ":")) == std::string::npos) continue;
    ++hashes;
    EXPECT_EQ(Command({"EXPIRETIME", k}).integer, (gen + 2) * ttl_s) << k;
  }
  EXPECT_EQ(hashes, 2);  // the exposure's key and the event's

  // Two generations on (62 minutes after the write, more than the TTL):
  // forgotten, so the retry counts again.
  now = start + absl::Hours(2) + absl::Minutes(1);
  EXPECT_EQ(send(), WriteOutcome::kRecorded);
  EXPECT_EQ(revenue(), 10);
}

// Hashes written by the first layout kept every figure in `agg` as well as
// in the cohort days, and binomial sums as fields of their own. They must
// read the same as before: the days are summed once, `agg` supplies only its
// counters.
TEST_F(RedisEventStoreFanOut, FiguresOfTheFirstLayoutReadTheSame) {
  const Experiment& experiment = *config_->FindExperiment("exp05");
  const ExperimentLayout layout = LayoutOf(*config_, experiment);
  std::string conversion, revenue;
  for (const Metric& m : layout.metrics) {
    (m.key == "order_conversion" ? conversion : revenue) =
        internal::MetricSignature(m);
  }
  const std::string base = store_->KeyBase(layout);
  const int64_t day = internal::DayOfMillis(absl::ToUnixMillis(now_));
  const std::vector<std::string> figures = {
      "exposed|1",
      "40",
      absl::StrCat("1|", conversion, "|units"),
      "6",
      absl::StrCat("1|", conversion, "|sum"),
      "6",
      absl::StrCat("1|", conversion, "|sum_sq"),
      "6",
      absl::StrCat("1|", revenue, "|units"),
      "6",
      absl::StrCat("1|", revenue, "|sum"),
      "150.5",
      absl::StrCat("1|", revenue, "|sum_sq"),
      "4000.25"};
  RedisCommand day_hash = {"HSET", absl::StrCat(base, "d:", day)};
  RedisCommand agg_hash = {"HSET", base + "agg", "multi", "2", "cv|v7", "42"};
  day_hash.insert(day_hash.end(), figures.begin(), figures.end());
  agg_hash.insert(agg_hash.end(), figures.begin(), figures.end());
  ASSERT_EQ(Command(day_hash).type, RedisReply::Type::kInteger);
  ASSERT_EQ(Command(agg_hash).type, RedisReply::Type::kInteger);
  ASSERT_EQ(Command({"SADD", base + "days", absl::StrCat(day)}).integer, 1);

  absl::StatusOr<ExperimentAggregates> a = store_->ReadAggregates(layout);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->variants[1].exposed, 40);
  EXPECT_EQ(a->variants[1].metrics["order_conversion"].units, 6);
  EXPECT_EQ(a->variants[1].metrics["order_conversion"].sum, 6);
  EXPECT_EQ(a->variants[1].metrics["order_conversion"].sum_sq, 6);
  EXPECT_EQ(a->variants[1].metrics["revenue"].units, 6);
  EXPECT_EQ(a->variants[1].metrics["revenue"].sum, 150.5L);
  EXPECT_EQ(a->variants[1].metrics["revenue"].sum_sq, 4000.25L);
  EXPECT_EQ(a->multi_exposed, 2);
  EXPECT_EQ(a->config_versions["v7"], 42);
  ASSERT_EQ(a->daily.size(), 1u);
  EXPECT_EQ(a->daily.begin()->second[1].exposed, 40);
}

// A phase written before versions were limited (no cvn in meta) may hold
// more than the limit: all of them still read, those keep counting apart,
// and a new version is counted as "other".
TEST_F(RedisEventStoreFanOut, VersionsRecordedBeforeTheLimitStayReadable) {
  const ExperimentLayout layout =
      LayoutOf(*config_, *config_->FindExperiment("exp03"));
  const std::string base = store_->KeyBase(layout);
  RedisCommand agg = {"HSET", base + "agg", "multi", "0"};
  std::map<std::string, int64_t> want;
  for (int i = 0; i < 40; ++i) {
    const std::string version = absl::StrFormat("%016x", i);
    agg.push_back("cv|" + version);
    agg.push_back("3");
    want[version] = 3;
  }
  ASSERT_EQ(Command(agg).integer, 41);

  auto expose = [&](const std::string& unit, const std::string& version) {
    const Exposure x{unit, 0, now_, version, "key-" + unit};
    absl::StatusOr<std::vector<WriteOutcome>> r =
        store_->WriteExposures(layout, {x});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(*r, std::vector<WriteOutcome>{WriteOutcome::kRecorded});
  };
  expose("u1", absl::StrFormat("%016x", 39));
  expose("u2", "00000000000000ff");
  want[absl::StrFormat("%016x", 39)] = 4;
  want["other"] = 1;

  absl::StatusOr<ExperimentAggregates> a = store_->ReadAggregates(layout);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->config_versions, want);
  // The count was taken once and kept with the phase.
  EXPECT_EQ(Command({"HGET", base + "meta", "cvn"}).str, "40");
}

// One event carries a user id and a device id; experiments bucketed by each
// must see the event under their own id (the recorder builds one Event per
// id type and shares it between the experiments of that type).
// shards 0 (the server's default) on one Redis is one shard: the
// single-node layout, every key under the phase's own hash tag.
TEST_F(WithRedis, DefaultShardsOnOneRedisKeepTheSingleNodeLayout) {
  RedisEventStoreOptions options;
  options.shards = 0;
  absl::StatusOr<std::unique_ptr<RedisEventStore>> store =
      RedisEventStore::Create(pool_.get(), options);
  ASSERT_TRUE(store.ok()) << store.status();
  ExperimentLayout layout;
  layout.key = "exp00";
  layout.phase = 1;
  layout.variant_keys = {"control", "treatment"};
  std::vector<Exposure> exposures;
  for (int i = 0; i < 200; ++i) {
    exposures.push_back({absl::StrCat("u", i), i % 2, absl::Now(), "cfg",
                         absl::StrCat("x", i)});
  }
  absl::StatusOr<std::vector<WriteOutcome>> r =
      (*store)->WriteExposures(layout, exposures);
  ASSERT_TRUE(r.ok()) << r.status();
  const std::string base = (*store)->KeyBase(layout);
  EXPECT_EQ(Command({"HGET", base + "meta", "shards"}).str, "1");
  RedisReply keys = Command({"KEYS", absl::StrCat(kPrefix, ":*")});
  ASSERT_FALSE(keys.elements.empty());
  for (const RedisReply& key : keys.elements) {
    EXPECT_TRUE(absl::StartsWith(key.str, base)) << key.str;
  }
}

TEST(RedisEventStoreIdTypes,
     AnEventReachesUserAndDeviceExperimentsUnderTheirOwnIds) {
  absl::StatusOr<std::unique_ptr<testing::RedisProcess>> redis =
      testing::RedisProcess::Start();
  ASSERT_TRUE(redis.ok()) << redis.status();
  RedisOptions options;
  options.port = (*redis)->port();
  options.key_prefix = kPrefix;
  absl::StatusOr<std::unique_ptr<RedisPool>> pool = RedisPool::Create(options);
  ASSERT_TRUE(pool.ok()) << pool.status();
  absl::StatusOr<std::unique_ptr<RedisEventStore>> store =
      RedisEventStore::Create(pool->get());
  ASSERT_TRUE(store.ok()) << store.status();
  Recorder recorder(store->get());
  ParseResult parsed = ParseConfig(R"(
metrics:
  - {key: revenue, type: sum, event: order_completed, aggregate: value}
experiments:
  - key: by_user
    status: running
    variants: [{key: control, weight: 50}, {key: treatment, weight: 50}]
    metrics: [revenue]
    primary_metric: revenue
  - key: by_device
    status: running
    unit: device_id
    variants: [{key: control, weight: 50}, {key: treatment, weight: 50}]
    metrics: [revenue]
    primary_metric: revenue
  - key: by_user_too
    status: running
    variants: [{key: control, weight: 50}, {key: treatment, weight: 50}]
    metrics: [revenue]
    primary_metric: revenue
)",
                                   "id_types.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.FormatDiagnostics();
  const IndexedConfig& config = *parsed.config;
  const absl::Time now = absl::Now();

  std::vector<ExposureInput> exposures(3);
  exposures[0].experiment_key = "by_user";
  exposures[0].unit.ids["user_id"] = "u1";
  exposures[1].experiment_key = "by_device";
  exposures[1].unit.ids["device_id"] = "d1";
  exposures[2].experiment_key = "by_user_too";
  exposures[2].unit.ids["user_id"] = "u1";
  for (ExposureInput& x : exposures) x.variant_key = "treatment";
  absl::StatusOr<RecordBatchResult> exposed =
      recorder.RecordExposures(config, exposures, now);
  ASSERT_TRUE(exposed.ok()) << exposed.status();
  ASSERT_EQ(exposed->recorded, 3);

  std::vector<EventInput> orders(2);
  orders[0].unit.ids = {{"user_id", "u1"}, {"device_id", "d1"}};
  orders[0].value = 7.0;
  orders[1].unit.ids = {{"device_id", "d1"}};
  orders[1].value = 3.0;
  for (EventInput& e : orders) {
    e.name = "order_completed";
    e.time = now + absl::Minutes(1);
  }
  absl::StatusOr<RecordBatchResult> recorded =
      recorder.RecordEvents(config, orders, now);
  ASSERT_TRUE(recorded.ok()) << recorded.status();
  EXPECT_EQ(recorded->results[0].experiments_recorded, 3);
  EXPECT_EQ(recorded->results[1].experiments_recorded, 1);

  auto revenue = [&](const std::string& experiment) {
    absl::StatusOr<ExperimentAggregates> a = (*store)->ReadAggregates(
        LayoutOf(config, *config.FindExperiment(experiment)));
    EXPECT_TRUE(a.ok()) << a.status();
    return a.ok() ? a->variants[1].metrics["revenue"].sum : -1;
  };
  EXPECT_EQ(revenue("by_user"), 7);
  EXPECT_EQ(revenue("by_device"), 10);
  EXPECT_EQ(revenue("by_user_too"), 7);
}

// The scripts are the last line of defence for "a chunk is applied whole or
// not at all" (docs/storage.md): whatever arguments reach them, a call
// either applies as valid input would or fails with the dataset unchanged.
// Each case below breaks one argument of a valid call, most of them in the
// last item, after items that would have been written.
ExperimentLayout CheckoutLayout() {
  ExperimentLayout layout;
  layout.key = "checkout";
  layout.variant_keys = {"control", "treatment"};
  Metric revenue;
  revenue.key = "revenue";
  revenue.type = MetricType::kSum;
  revenue.source = {"order_completed", EventAggregation::kValue};
  Metric aov;
  aov.key = "aov";
  aov.type = MetricType::kRatio;
  aov.numerator = {"order_completed", EventAggregation::kValue};
  aov.denominator = {"order_completed", EventAggregation::kCount};
  Metric conversion;
  conversion.key = "conversion";
  conversion.type = MetricType::kBinomial;
  conversion.source.event = "order_completed";
  layout.metrics = {revenue, aov, conversion};
  return layout;
}

// A script's argument vector (ARGV) and how to break it.
using Args = std::vector<std::string>;
struct HostileCase {
  std::string name;
  std::function<void(Args&)> mutate;
};

class RedisScriptsHostileArgs : public WithRedis {
 protected:
  static constexpr int kItems = 3;

  void SetUp() override {
    WithRedis::SetUp();
    if (HasFatalFailure()) return;
    base_ = store_->KeyBase(layout_);
    // Units 0..2 exposed and with an order each, so the scripts meet
    // existing records, idempotency keys and aggregates.
    RedisReply exposed = Eval(redis_scripts::WriteExposures(), Exposures(0));
    ASSERT_EQ(exposed.type, RedisReply::Type::kArray) << exposed.str;
    RedisReply ordered = Eval(redis_scripts::WriteEvents(), Events(0, "7.5"));
    ASSERT_EQ(ordered.type, RedisReply::Type::kArray) << ordered.str;
  }

  RedisReply Eval(const std::string& script, const Args& args) {
    RedisCommand eval = {"EVAL", script, "1", base_ + "meta"};
    eval.insert(eval.end(), args.begin(), args.end());
    return Command(eval);
  }

  // A digest of every key, value and expiry in Redis.
  std::string Digest() { return Command({"DEBUG", "DIGEST"}).str; }

  static std::string Field(char kind, int i) {
    return absl::StrFormat("%c%07d", kind, i);  // 8 bytes, as the store sends
  }

  Args Head() const {
    const int64_t ttl_s = 7 * 86400;
    const int64_t gen = absl::ToUnixSeconds(now_) / ttl_s;
    return {base_, absl::StrCat(gen), absl::StrCat((gen + 2) * ttl_s)};
  }

  // WriteExposures of kItems new units from `first`, alternating variants,
  // each with covariate i for one metric.
  Args Exposures(int first) const {
    Args args = Head();
    args.insert(args.end(), {"control\ntreatment", "131072", "65536", "32",
                             "orders@covariate", absl::StrCat(kItems)});
    for (int i = first; i < first + kItems; ++i) {
      const double x = i;
      std::string packed(8, '\0');
      std::memcpy(packed.data(), &x, 8);  // little-endian hosts only
      args.insert(args.end(),
                  {absl::StrCat(i % 5), Field('x', i), absl::StrCat(i % 7),
                   Field('u', i), absl::StrCat(i % 2),
                   absl::StrCat(absl::ToUnixMillis(now_)), "cfg-1", packed,
                   std::string("\x01\x02\x02\xff", 4)});
    }
    return args;
  }

  // WriteEvents: one order_completed of `value` for each of units 0..2,
  // under idempotency fields from `first`.
  Args Events(int first, const std::string& value) const {
    Args args = Head();
    args.push_back("1");  // metric groups
    args.push_back(absl::StrCat(layout_.metrics.size()));
    for (const Metric& m : layout_.metrics) {
      const char* type = m.type == MetricType::kSum     ? "s"
                         : m.type == MetricType::kRatio ? "r"
                                                        : "b";
      args.insert(args.end(),
                  {internal::MetricSignature(m), type,
                   m.type == MetricType::kBinomial ? "1" : "2",
                   m.type == MetricType::kRatio ? "1" : "0",
                   absl::StrCat(absl::ToInt64Milliseconds(m.window)),
                   absl::StrCat(m.retention_day)});
    }
    args.push_back(absl::StrCat(kItems));
    for (int i = 0; i < kItems; ++i) {
      args.insert(
          args.end(),
          {"1", absl::StrCat((first + i) % 5), Field('e', first + i),
           absl::StrCat(i % 7), Field('u', i),
           absl::StrCat(absl::ToUnixMillis(now_ + absl::Minutes(1))), value});
    }
    return args;
  }

  // Every case must fail and leave every key as it was; then the unbroken
  // call must still apply, so each case was one argument away from valid.
  void ExpectEachRefusedWholly(const std::string& script, const Args& valid,
                               const std::vector<HostileCase>& cases) {
    const std::string initial = Digest();
    for (const HostileCase& c : cases) {
      SCOPED_TRACE(c.name);
      const std::string before = Digest();
      Args args = valid;
      c.mutate(args);
      RedisReply reply = Eval(script, args);
      EXPECT_EQ(reply.type, RedisReply::Type::kError);
      // Refused by the argument checks, not by an accident of the code.
      EXPECT_THAT(reply.str, ::testing::StartsWith("ABEXP_ARGS "));
      EXPECT_LT(reply.str.size(), 400u) << "the error echoes its input";
      EXPECT_EQ(Digest(), before) << "applied in part: " << reply.str;
    }
    RedisReply reply = Eval(script, valid);
    ASSERT_EQ(reply.type, RedisReply::Type::kArray) << reply.str;
    EXPECT_EQ(reply.elements.size(), static_cast<size_t>(kItems));
    EXPECT_NE(Digest(), initial);
  }

  const ExperimentLayout layout_ = CheckoutLayout();
  std::string base_;
  const absl::Time now_ = absl::Now();
};

// Sets argument `i` (0-based) of the vector.
std::function<void(Args&)> Set(size_t i, std::string s) {
  return [i, s](Args& a) { a[i] = s; };
}

// Sets argument k of the last item, for items of `width` arguments that end
// the vector.
std::function<void(Args&)> SetLast(int width, int k, std::string s) {
  return [width, k, s](Args& a) { a[a.size() - width + k] = s; };
}

TEST_F(RedisScriptsHostileArgs, WriteExposuresAppliesAChunkWholeOrNotAtAll) {
  const int w = redis_scripts::kExposureItemArgs;
  const std::string huge(1 << 20, 'z');
  const std::vector<HostileCase> cases = {
      {"count not a number", Set(8, "three")},
      {"count negative", Set(8, "-1")},
      {"count huge", Set(8, "1000000000")},
      {"count fractional", Set(8, "2.5")},
      {"count one short of the items", Set(8, "2")},
      {"count one more than the items", Set(8, "4")},
      {"more covariate metrics than a record holds",
       Set(7, absl::StrJoin(std::vector<std::string>(29, "m"), "\n"))},
      {"last covariates one byte short", SetLast(w, 7, "1234567")},
      {"last covariates for two metrics, one listed",
       SetLast(w, 7, std::string(16, '\0'))},
      {"last segments an odd number of bytes", SetLast(w, 8, "\x01")},
      {"last segments of more dimensions than a config may have",
       SetLast(w, 8, std::string(18, '\x01'))},
      {"one argument missing", [](Args& a) { a.pop_back(); }},
      {"one argument extra", [](Args& a) { a.push_back("x"); }},
      {"empty base", Set(0, "")},
      {"generation not a number", Set(1, "soon")},
      {"expiry not a number", Set(2, "1e9x")},
      {"empty variant keys", Set(3, "")},
      {"unit buckets zero", Set(4, "0")},
      {"idempotency buckets not a number", Set(5, "many")},
      {"config versions zero", Set(6, "0")},
      {"config versions not a number", Set(6, "all")},
      {"last idempotency bucket negative", SetLast(w, 0, "-5")},
      {"last idempotency bucket not a number", SetLast(w, 0, "b")},
      {"last idempotency field empty", SetLast(w, 1, "")},
      {"last idempotency field huge", SetLast(w, 1, huge)},
      {"last unit bucket huge", SetLast(w, 2, "99999999999999999999999")},
      {"last unit field huge", SetLast(w, 3, huge)},
      {"last variant index beyond the variants", SetLast(w, 4, "2")},
      {"last variant index negative", SetLast(w, 4, "-1")},
      {"last variant index not a number", SetLast(w, 4, "treatment")},
      {"last time not a number", SetLast(w, 5, "now")},
      {"last time infinite", SetLast(w, 5, "inf")},
      {"last time beyond what a record holds",
       SetLast(w, 5, "999999999999999999")},
      {"last time fractional", SetLast(w, 5, "1.5")},
      {"last config version empty", SetLast(w, 6, "")},
      {"last config version huge", SetLast(w, 6, huge)},
  };
  ExpectEachRefusedWholly(redis_scripts::WriteExposures(), Exposures(10),
                          cases);
}

TEST_F(RedisScriptsHostileArgs, WriteEventsAppliesAChunkWholeOrNotAtAll) {
  const int w = redis_scripts::kEventItemArgs;
  // The first metric's arguments start at index 5; the item count follows
  // the three metrics.
  const size_t metric = 5;
  const size_t count = metric + 3 * redis_scripts::kMetricArgs;
  const std::string huge(1 << 20, 'z');
  const std::vector<HostileCase> cases = {
      {"last value 1e308, whose square overflows", SetLast(w, 6, "1e308")},
      {"last value beyond 1e15", SetLast(w, 6, "1.5e15")},
      {"last value infinite", SetLast(w, 6, "inf")},
      {"last value minus infinity", SetLast(w, 6, "-inf")},
      {"last value NaN", SetLast(w, 6, "nan")},
      {"last value not a number", SetLast(w, 6, "twelve")},
      {"last value huge text", SetLast(w, 6, huge)},
      {"last group zero", SetLast(w, 0, "0")},
      {"last group beyond the groups", SetLast(w, 0, "2")},
      {"last group not a number", SetLast(w, 0, "first")},
      {"last idempotency bucket negative", SetLast(w, 1, "-1")},
      {"last idempotency field empty", SetLast(w, 2, "")},
      {"last idempotency field huge", SetLast(w, 2, huge)},
      {"last unit bucket not a number", SetLast(w, 3, "7a")},
      {"last unit field huge", SetLast(w, 4, huge)},
      {"last time not a number", SetLast(w, 5, "later")},
      {"last time NaN", SetLast(w, 5, "nan")},
      {"item count not a number", Set(count, "three")},
      {"item count negative", Set(count, "-3")},
      {"item count huge", Set(count, "4294967296")},
      {"item count one short", Set(count, "2")},
      {"one argument missing", [](Args& a) { a.pop_back(); }},
      {"one argument extra", [](Args& a) { a.push_back("1"); }},
      {"group count huge", Set(3, "1000000")},
      {"group count negative", Set(3, "-1")},
      {"metric count huge", Set(4, "1000000")},
      {"metric count one more", Set(4, "4")},
      {"empty metric signature", Set(metric, "")},
      {"unknown metric type", Set(metric + 1, "x")},
      {"source aggregation 3", Set(metric + 2, "3")},
      {"denominator aggregation not a number", Set(metric + 3, "count")},
      {"window negative", Set(metric + 4, "-1")},
      {"window not a number", Set(metric + 4, "14d")},
      {"retention day not a number", Set(metric + 5, "one")},
      {"generation empty", Set(1, "")},
  };
  ExpectEachRefusedWholly(redis_scripts::WriteEvents(), Events(100, "12.25"),
                          cases);
}

// A unit total beyond what bounded values can reach (left by an abexp that
// did not bound them) is found before the first write, so the chunk fails
// whole instead of at its last HINCRBYFLOAT.
TEST_F(RedisScriptsHostileArgs, AnOverflowingUnitTotalFailsTheChunkWhole) {
  const std::string revenue = internal::MetricSignature(layout_.metrics[0]);
  RedisReply id = Command({"HGET", base_ + "meta", "mid|" + revenue});
  ASSERT_EQ(id.type, RedisReply::Type::kString);
  // docs/storage.md, "Unit records": variant, flags, first exposure in 6
  // bytes, then per metric its id, the state's length and the state.
  const int64_t first = absl::ToUnixMillis(now_);
  std::string record(2, '\0');
  for (int i = 0; i < 6; ++i) {
    record.push_back(static_cast<char>(first >> (8 * i)));
  }
  record.push_back(static_cast<char>(std::stoi(id.str)));
  record.push_back(8);
  const double total = 1e308;
  char bytes[8];
  std::memcpy(bytes, &total, 8);  // little-endian, as struct '<d'
  record.append(bytes, 8);
  ASSERT_EQ(Command({"HSET", base_ + "u:2", Field('u', 2), record}).type,
            RedisReply::Type::kInteger);

  const std::string before = Digest();
  RedisReply reply = Eval(redis_scripts::WriteEvents(), Events(300, "1"));
  EXPECT_EQ(reply.type, RedisReply::Type::kError);
  EXPECT_THAT(reply.str, ::testing::HasSubstr("ABEXP_STATE"));
  EXPECT_EQ(Digest(), before);
}

// The bound itself is a valid value: ±1e15 applies like any other.
TEST_F(RedisScriptsHostileArgs, ValuesAtTheBoundApply) {
  int first = 200;  // fresh idempotency fields for each call
  for (const char* value : {"1e15", "-1e15", "1000000000000000"}) {
    SCOPED_TRACE(value);
    RedisReply reply = Eval(redis_scripts::WriteEvents(), Events(first, value));
    first += kItems;
    ASSERT_EQ(reply.type, RedisReply::Type::kArray) << reply.str;
    ASSERT_EQ(reply.elements.size(), static_cast<size_t>(kItems));
    for (const RedisReply& outcome : reply.elements) {
      EXPECT_EQ(outcome.integer, 0);  // recorded
    }
  }
}

// A caller that bypasses the recorder's bound must not reach the script:
// the store refuses the whole batch naming the item, writes nothing, and
// remembers no idempotency key, so the batch with a valid value records.
TEST_F(RedisScriptsHostileArgs,
       AnOutOfRangeValueLastOfThreeHundredEventsIsRefusedAndWritesNothing) {
  constexpr int kEvents = 300;  // more than one script call
  std::vector<Exposure> exposures;
  std::vector<Event> events;
  for (int i = 0; i < kEvents; ++i) {
    const std::string unit = absl::StrCat("user-", i);
    exposures.push_back({unit, i % 2, now_, "cfg-1", "exposure-" + unit});
    events.push_back({unit, "order_completed", 2.0, now_ + absl::Minutes(1),
                      "order-" + unit});
  }
  absl::StatusOr<std::vector<WriteOutcome>> exposed =
      store_->WriteExposures(layout_, exposures);
  ASSERT_TRUE(exposed.ok()) << exposed.status();

  const std::string before = Digest();
  for (double bad : {1e308, std::numeric_limits<double>::infinity(),
                     -std::numeric_limits<double>::infinity(),
                     std::numeric_limits<double>::quiet_NaN(), -1.0000001e15}) {
    SCOPED_TRACE(bad);
    events.back().value = bad;
    std::vector<const Event*> pointers;
    for (const Event& e : events) pointers.push_back(&e);
    const EventBatch batch{&layout_, pointers};
    std::vector<WriteResult> results = store_->WriteEventBatches({batch});
    ASSERT_EQ(results.size(), 1u);
    EXPECT_EQ(results[0].status().code(), absl::StatusCode::kInvalidArgument)
        << results[0].status();
    EXPECT_THAT(std::string(results[0].status().message()),
                ::testing::HasSubstr("events[299].value"));
    EXPECT_EQ(Digest(), before);
  }

  events.back().value = 2.0;
  absl::StatusOr<std::vector<WriteOutcome>> recorded =
      store_->WriteEvents(layout_, events);
  ASSERT_TRUE(recorded.ok()) << recorded.status();
  EXPECT_THAT(*recorded, ::testing::Each(WriteOutcome::kRecorded));
  absl::StatusOr<ExperimentAggregates> a = store_->ReadAggregates(layout_);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->variants[0].metrics["revenue"].sum +
                a->variants[1].metrics["revenue"].sum,
            2.0 * kEvents + 7.5 * kItems);
}

}  // namespace
}  // namespace abexp
