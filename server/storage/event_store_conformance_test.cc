// The EventStore contract (docs/attribution.md), checked against both
// implementations: MemoryEventStore and RedisEventStore on a real
// redis-server started for this test. Built a second time with
// ABEXP_CONFORMANCE_ON_CLUSTER as event_store_cluster_conformance_test, it
// checks RedisEventStore on a real 3-master Redis Cluster (16 shards per
// experiment phase), one cluster for the whole binary. Expected figures are
// worked out by hand, or by a brute-force recomputation over per-unit totals
// (Oracle).
//
// Values used are multiples of 1/4, so every sum is exact in double and long
// double and the stores must agree bit for bit.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/event_store.h"
#include "server/core/event_store_internal.h"
#include "server/storage/redis/redis_cluster.h"
#include "server/storage/redis/redis_connection.h"
#include "server/storage/redis/redis_event_store.h"
#include "server/testing/memory_event_store.h"
#include "server/testing/redis_cluster_process.h"
#include "server/testing/redis_process.h"

namespace abexp {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// --- Layout ------------------------------------------------------------------

Metric Binomial(const std::string& key, const std::string& event,
                absl::Duration window) {
  Metric m;
  m.key = key;
  m.type = MetricType::kBinomial;
  m.source.event = event;
  m.window = window;
  return m;
}

Metric Sum(const std::string& key, const std::string& event,
           EventAggregation aggregation, absl::Duration window) {
  Metric m;
  m.key = key;
  m.type = MetricType::kSum;
  m.source = {event, aggregation};
  m.window = window;
  return m;
}

Metric Ratio(const std::string& key, MetricSource numerator,
             MetricSource denominator, absl::Duration window) {
  Metric m;
  m.key = key;
  m.type = MetricType::kRatio;
  m.numerator = numerator;
  m.denominator = denominator;
  m.window = window;
  return m;
}

Metric Retention(const std::string& key, const std::string& event, int day) {
  Metric m;
  m.key = key;
  m.type = MetricType::kRetention;
  m.source.event = event;
  m.retention_day = day;
  return m;
}

// A funnel of `steps`, each with its own window when it is not zero.
Metric Funnel(const std::string& key,
              std::vector<std::pair<std::string, absl::Duration>> steps,
              absl::Duration window) {
  Metric m;
  m.key = key;
  m.type = MetricType::kFunnel;
  m.window = window;
  for (auto& [event, step_window] : steps) {
    FunnelStep& step = m.steps.emplace_back();
    step.event = event;
    if (step_window != absl::ZeroDuration()) step.window = step_window;
  }
  return m;
}

constexpr absl::Duration kDay = absl::Hours(24);

// The checkout experiment of the product brief, with one metric of each kind.
ExperimentLayout CheckoutLayout() {
  ExperimentLayout layout;
  layout.key = "checkout_redesign";
  layout.phase = 1;
  layout.variant_keys = {"control", "treatment"};
  layout.metrics = {
      Binomial("order_conversion", "order_completed", 7 * kDay),
      Sum("revenue", "order_completed", EventAggregation::kValue, 14 * kDay),
      Sum("orders", "order_completed", EventAggregation::kCount, 14 * kDay),
      Ratio("aov", {"order_completed", EventAggregation::kValue},
            {"order_completed", EventAggregation::kCount}, 14 * kDay),
      Ratio("ctr", {"click", EventAggregation::kCount},
            {"impression", EventAggregation::kCount}, 14 * kDay),
      Retention("retention_d1", "app_open", 1),
      Retention("retention_d7", "app_open", 7),
      // Payment must follow the checkout view within 30 minutes.
      Funnel("checkout_funnel",
             {{"view_checkout", absl::ZeroDuration()},
              {"submit_payment", absl::Minutes(30)},
              {"order_completed", absl::ZeroDuration()}},
             7 * kDay),
  };
  return layout;
}

// Monday 2026-03-02 10:00:00 UTC.
const absl::Time kT0 = absl::FromCivil(absl::CivilSecond(2026, 3, 2, 10, 0, 0),
                                       absl::UTCTimeZone());

// --- Brute-force oracle ------------------------------------------------------

// Applies the attribution rules the plainest way: per-unit totals kept as
// they are, aggregates recomputed from them at the end.
class Oracle {
 public:
  explicit Oracle(ExperimentLayout layout) : layout_(std::move(layout)) {}

  WriteOutcome Expose(const Exposure& e) {
    // Every exposure written claims its values' segments, first come first
    // served, whatever its outcome.
    std::map<std::string, std::string> segments;
    for (const Dimension& d : layout_.dimensions) {
      auto it = e.dimensions.find(d.attribute);
      std::string value = it == e.dimensions.end() ? "" : it->second;
      std::vector<std::string>& claimed = claimed_[d.attribute];
      if (value.empty()) {
        value = kNoneSegment;
      } else if (value.size() > kMaxDimensionValueBytes ||
                 value == kOtherSegment) {
        value = kOtherSegment;
      } else if (std::find(claimed.begin(), claimed.end(), value) ==
                 claimed.end()) {
        if (claimed.size() < static_cast<size_t>(d.max_values)) {
          claimed.push_back(value);
        } else {
          value = kOtherSegment;
        }
      }
      segments[d.attribute] = value;
    }
    if (!exposure_keys_.insert(e.idempotency_key).second)
      return WriteOutcome::kDuplicate;
    internal::CountConfigVersion(e.config_version, kDefaultMaxConfigVersions,
                                 &config_versions_);
    int64_t t = absl::ToUnixMillis(e.time);
    auto it = units_.find(e.unit_id);
    if (it == units_.end()) {
      Unit& u = units_[e.unit_id] =
          Unit{e.variant_index, false, t, {}, {}, segments};
      for (const Metric& m : layout_.metrics) {
        auto x = e.covariates.find(m.covariate);
        if (!m.covariate.empty() && x != e.covariates.end()) {
          u.covariates[m.key] = x->second;
        }
      }
      return WriteOutcome::kRecorded;
    }
    Unit& u = it->second;
    if (u.multi) return WriteOutcome::kIgnored;
    if (u.variant == e.variant_index) {
      u.first_ms = std::min(u.first_ms, t);
      return WriteOutcome::kDuplicate;
    }
    u.multi = true;
    return WriteOutcome::kConflict;
  }

  WriteOutcome Record(const Event& e) {
    // An event that cannot count is ignored before its key is looked at, and
    // its key is not remembered.
    int64_t t = absl::ToUnixMillis(e.time);
    auto it = units_.find(e.unit_id);
    if (it == units_.end() || it->second.multi || t < it->second.first_ms) {
      return WriteOutcome::kIgnored;
    }
    if (!event_keys_.insert(e.idempotency_key).second)
      return WriteOutcome::kDuplicate;
    Unit& u = it->second;
    bool changed = false;
    for (const Metric& m : layout_.metrics) {
      Totals& tot = u.metrics[m.key];
      bool in_window = t < u.first_ms + absl::ToInt64Milliseconds(m.window);
      auto delta = [&](const MetricSource& s) -> std::optional<double> {
        if (s.event != e.name) return std::nullopt;
        if (s.aggregation == EventAggregation::kCount) return 1.0;
        return e.value;
      };
      switch (m.type) {
        case MetricType::kBinomial:
          if (m.source.event == e.name && in_window && !tot.counted) {
            tot.counted = changed = true;
          }
          break;
        case MetricType::kRetention: {
          int64_t from = u.first_ms + m.retention_day * internal::kMillisPerDay;
          if (m.source.event == e.name && t >= from &&
              t < from + internal::kMillisPerDay && !tot.counted) {
            tot.counted = changed = true;
          }
          break;
        }
        case MetricType::kSum:
          if (auto d = delta(m.source); d && in_window) {
            changed = changed || !tot.counted || *d != 0;
            tot.counted = true;
            tot.x += *d;
          }
          break;
        case MetricType::kRatio: {
          auto dn = delta(m.numerator);
          auto dd = delta(m.denominator);
          if ((dn || dd) && in_window) {
            changed = changed || !tot.counted || dn.value_or(0) != 0 ||
                      dd.value_or(0) != 0;
            tot.counted = true;
            tot.n += dn.value_or(0);
            tot.d += dd.value_or(0);
          }
          break;
        }
        case MetricType::kFunnel: {
          // In arrival order: the event of the step after the furthest one
          // reached, no earlier than that step, inside both windows.
          if (tot.step == static_cast<int>(m.steps.size())) break;
          const FunnelStep& next = m.steps[tot.step];
          const int64_t from = tot.step == 0 ? u.first_ms : tot.step_ms;
          const bool in_step_window =
              !next.window ||
              t < from + absl::ToInt64Milliseconds(*next.window);
          if (next.event == e.name && in_window && t >= from &&
              in_step_window) {
            tot.counted = changed = true;
            tot.step += 1;
            tot.step_ms = t;
          }
          break;
        }
      }
    }
    return changed ? WriteOutcome::kRecorded : WriteOutcome::kIgnored;
  }

  ExperimentAggregates Aggregates() const {
    ExperimentAggregates out;
    size_t n = layout_.variant_keys.size();
    out.variants.resize(n);
    out.config_versions = config_versions_;
    for (const auto& [id, u] : units_) {
      if (u.multi) {
        ++out.multi_exposed;
        continue;
      }
      std::vector<VariantAggregate>& day =
          out.daily[internal::FormatDay(internal::DayOfMillis(u.first_ms))];
      day.resize(n);
      std::vector<VariantAggregate*> targets = {&out.variants[u.variant],
                                                &day[u.variant]};
      for (const auto& [attribute, segment] : u.segments) {
        std::vector<VariantAggregate>& vs = out.segments[attribute][segment];
        vs.resize(n);
        targets.push_back(&vs[u.variant]);
      }
      for (VariantAggregate* va : targets) {
        va->exposed += 1;
        // CUPED: every unit with a covariate, y = 0 without events.
        for (const auto& [key, x] : u.covariates) {
          MetricAggregate& a = va->metrics[key];
          auto tot = u.metrics.find(key);
          long double y = 0;
          if (tot != u.metrics.end() && tot->second.counted) {
            y = Of(key).type == MetricType::kSum ? tot->second.x : 1;
          }
          a.cuped_units += 1;
          a.cuped_sum_x += x;
          a.cuped_sum_x_sq += static_cast<long double>(x) * x;
          a.cuped_sum_y += y;
          a.cuped_sum_y_sq += y * y;
          a.cuped_sum_xy += x * y;
        }
        for (const auto& [key, tot] : u.metrics) {
          if (!tot.counted) continue;
          const Metric& m = Of(key);
          MetricAggregate& a = va->metrics[key];
          a.units += 1;
          long double x = tot.x, nn = tot.n, dd = tot.d;
          switch (m.type) {
            case MetricType::kBinomial:
            case MetricType::kRetention:
              a.sum += 1;
              a.sum_sq += 1;
              break;
            case MetricType::kSum:
              a.sum += x;
              a.sum_sq += x * x;
              break;
            case MetricType::kRatio:
              a.sum_num += nn;
              a.sum_den += dd;
              a.sum_num_sq += nn * nn;
              a.sum_den_sq += dd * dd;
              a.sum_num_den += nn * dd;
              break;
            case MetricType::kFunnel:
              a.steps.resize(m.steps.size());
              for (int k = 0; k < tot.step; ++k) a.steps[k] += 1;
              break;
          }
        }
      }
    }
    internal::DropEmptySegments(&out.segments);
    return out;
  }

 private:
  struct Totals {
    bool counted = false;
    double x = 0, n = 0, d = 0;
    int step = 0;         // a funnel's furthest step reached
    int64_t step_ms = 0;  // and when
  };
  struct Unit {
    int variant;
    bool multi;
    int64_t first_ms;
    std::map<std::string, Totals> metrics;
    // Metric key -> covariate, from the first exposure.
    std::map<std::string, double> covariates;
    // Dimension attribute -> segment, from the first exposure.
    std::map<std::string, std::string> segments;
  };
  const Metric& Of(const std::string& key) const {
    return *std::find_if(layout_.metrics.begin(), layout_.metrics.end(),
                         [&key](const Metric& m) { return m.key == key; });
  }
  ExperimentLayout layout_;
  std::set<std::string> exposure_keys_, event_keys_;
  std::map<std::string, Unit> units_;
  std::map<std::string, int64_t> config_versions_;
  // Dimension attribute -> the values with figures of their own.
  std::map<std::string, std::vector<std::string>> claimed_;
};

// Every non-zero figure, named by path, so two results compare in one
// EXPECT_EQ that prints the differences.
std::map<std::string, long double> Flatten(const ExperimentAggregates& a) {
  std::map<std::string, long double> out;
  auto put = [&](const std::string& name, long double v) {
    if (v != 0) out[name] = v;
  };
  auto variants = [&](const std::string& prefix,
                      const std::vector<VariantAggregate>& vs) {
    for (size_t v = 0; v < vs.size(); ++v) {
      std::string p = absl::StrCat(prefix, v, "/");
      put(p + "exposed", vs[v].exposed);
      for (const auto& [key, m] : vs[v].metrics) {
        std::string q = p + key + "/";
        put(q + "units", m.units);
        put(q + "sum", m.sum);
        put(q + "sum_sq", m.sum_sq);
        put(q + "sum_num", m.sum_num);
        put(q + "sum_den", m.sum_den);
        put(q + "sum_num_sq", m.sum_num_sq);
        put(q + "sum_den_sq", m.sum_den_sq);
        put(q + "sum_num_den", m.sum_num_den);
        put(q + "cuped_units", m.cuped_units);
        put(q + "cuped_sum_x", m.cuped_sum_x);
        put(q + "cuped_sum_x_sq", m.cuped_sum_x_sq);
        put(q + "cuped_sum_y", m.cuped_sum_y);
        put(q + "cuped_sum_y_sq", m.cuped_sum_y_sq);
        put(q + "cuped_sum_xy", m.cuped_sum_xy);
        for (size_t k = 0; k < m.steps.size(); ++k) {
          put(absl::StrCat(q, "step", k + 1), m.steps[k]);
        }
      }
    }
  };
  variants("total/", a.variants);
  put("multi_exposed", a.multi_exposed);
  for (const auto& [cv, n] : a.config_versions) put("config_version/" + cv, n);
  for (const auto& [day, vs] : a.daily) variants("day/" + day + "/", vs);
  for (const auto& [attribute, values] : a.segments) {
    for (const auto& [value, vs] : values) {
      variants(absl::StrCat("segment/", attribute, "/", value, "/"), vs);
    }
  }
  return out;
}

// --- Stores ------------------------------------------------------------------

// One redis-server for the whole test binary, flushed before each test.
struct SharedRedis {
  std::unique_ptr<testing::RedisProcess> process;
  std::unique_ptr<RedisPool> pool;
};

absl::StatusOr<SharedRedis*> GetSharedRedis() {
  // Destroyed at exit, which stops redis-server.
  static std::unique_ptr<SharedRedis> shared;
  if (shared != nullptr) return shared.get();
  absl::StatusOr<std::unique_ptr<testing::RedisProcess>> process =
      testing::RedisProcess::Start();
  if (!process.ok()) return process.status();
  RedisOptions options;
  options.port = (*process)->port();
  options.key_prefix = "abexp-test";
  absl::StatusOr<std::unique_ptr<RedisPool>> pool = RedisPool::Create(options);
  if (!pool.ok()) return pool.status();
  shared.reset(new SharedRedis{std::move(*process), std::move(*pool)});
  return shared.get();
}

// One 3-master Redis Cluster for the whole test binary, flushed before
// each test.
struct SharedCluster {
  std::unique_ptr<testing::RedisClusterProcess> process;
  std::unique_ptr<RedisCluster> client;
};

// Shards per experiment phase on the cluster: a typical deployment's.
constexpr int kClusterShards = 16;

absl::StatusOr<SharedCluster*> GetSharedCluster() {
  // Destroyed at exit, which stops the cluster.
  static std::unique_ptr<SharedCluster> shared;
  if (shared != nullptr) return shared.get();
  absl::StatusOr<std::unique_ptr<testing::RedisClusterProcess>> process =
      testing::RedisClusterProcess::Start();
  if (!process.ok()) return process.status();
  RedisClusterOptions options;
  options.seeds = (*process)->addresses();
  options.node.key_prefix = "abexp-test";
  options.node.pool_size = 4;
  absl::StatusOr<std::unique_ptr<RedisCluster>> client =
      RedisCluster::Create(options);
  if (!client.ok()) return client.status();
  shared.reset(new SharedCluster{std::move(*process), std::move(*client)});
  return shared.get();
}

// The store on the shared cluster, emptied first.
absl::StatusOr<std::unique_ptr<RedisEventStore>> MakeClusterStore(
    SharedCluster** cluster_out = nullptr) {
  absl::StatusOr<SharedCluster*> cluster = GetSharedCluster();
  if (!cluster.ok()) return cluster.status();
  for (int i = 0; i < (*cluster)->process->size(); ++i) {
    absl::StatusOr<std::string> flushed = testing::RedisCommandText(
        (*cluster)->process->node(i).port(), {"FLUSHALL"});
    if (!flushed.ok()) return flushed.status();
  }
  if (cluster_out != nullptr) *cluster_out = *cluster;
  RedisEventStoreOptions options;
  options.shards = kClusterShards;
  return RedisEventStore::Create((*cluster)->client.get(), options);
}

absl::StatusOr<std::unique_ptr<EventStore>> MakeStore(
    const std::string& kind, RedisPool** pool_out = nullptr) {
  if (kind == "memory")
    return std::unique_ptr<EventStore>(new MemoryEventStore());
  if (kind == "redis_cluster") {
    absl::StatusOr<std::unique_ptr<RedisEventStore>> store = MakeClusterStore();
    if (!store.ok()) return store.status();
    return std::unique_ptr<EventStore>(std::move(*store));
  }
  absl::StatusOr<SharedRedis*> redis = GetSharedRedis();
  if (!redis.ok()) return redis.status();
  std::vector<RedisCommand> flush = {{"FLUSHALL"}};
  absl::StatusOr<std::vector<RedisReply>> r = (*redis)->pool->Pipeline(flush);
  if (!r.ok()) return r.status();
  if (pool_out != nullptr) *pool_out = (*redis)->pool.get();
  absl::StatusOr<std::unique_ptr<RedisEventStore>> store =
      RedisEventStore::Create((*redis)->pool.get());
  if (!store.ok()) return store.status();
  return std::unique_ptr<EventStore>(std::move(*store));
}

class EventStoreConformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<EventStore>> store = MakeStore(GetParam());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  Exposure X(const std::string& unit, int variant, absl::Time t,
             std::string key = "", std::string config_version = "cfg-a") {
    if (key.empty()) key = absl::StrCat("auto-x-", next_key_++);
    return Exposure{unit, variant, t, config_version, key};
  }
  Event E(const std::string& unit, const std::string& name, absl::Time t,
          std::optional<double> value = std::nullopt, std::string key = "") {
    if (key.empty()) key = absl::StrCat("auto-e-", next_key_++);
    return Event{unit, name, value, t, key};
  }

  WriteOutcome Expose(const Exposure& e) { return Expose(layout_, e); }
  WriteOutcome Expose(const ExperimentLayout& layout, const Exposure& e) {
    oracle_.Expose(e);
    absl::StatusOr<std::vector<WriteOutcome>> r =
        store_->WriteExposures(layout, {e});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && r->size() == 1 ? (*r)[0] : static_cast<WriteOutcome>(-1);
  }
  WriteOutcome Record(const Event& e) { return Record(layout_, e); }
  WriteOutcome Record(const ExperimentLayout& layout, const Event& e) {
    oracle_.Record(e);
    absl::StatusOr<std::vector<WriteOutcome>> r =
        store_->WriteEvents(layout, {e});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && r->size() == 1 ? (*r)[0] : static_cast<WriteOutcome>(-1);
  }
  ExperimentAggregates Read() { return Read(layout_); }
  ExperimentAggregates Read(const ExperimentLayout& layout) {
    absl::StatusOr<ExperimentAggregates> r = store_->ReadAggregates(layout);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : ExperimentAggregates{};
  }
  const MetricAggregate& M(const ExperimentAggregates& a, int variant,
                           const std::string& key) {
    static const MetricAggregate kNone;
    if (variant >= static_cast<int>(a.variants.size())) return kNone;
    auto it = a.variants[variant].metrics.find(key);
    return it == a.variants[variant].metrics.end() ? kNone : it->second;
  }
  // The store's figures equal the brute-force recomputation of everything
  // written through Expose/Record.
  void ExpectMatchesOracle() {
    EXPECT_EQ(Flatten(Read()), Flatten(oracle_.Aggregates()));
  }

  ExperimentLayout layout_ = CheckoutLayout();
  Oracle oracle_{CheckoutLayout()};
  std::unique_ptr<EventStore> store_;
  int next_key_ = 0;
};

#ifdef ABEXP_CONFORMANCE_ON_CLUSTER
INSTANTIATE_TEST_SUITE_P(Stores, EventStoreConformance,
                         ::testing::Values("redis_cluster"),
                         [](const auto& info) { return info.param; });
#else
INSTANTIATE_TEST_SUITE_P(Stores, EventStoreConformance,
                         ::testing::Values("memory", "redis"),
                         [](const auto& info) { return info.param; });
#endif

// --- Exposures ---------------------------------------------------------------

TEST_P(EventStoreConformance, FirstExposureIsRecordedAndCountedInItsVariant) {
  EXPECT_EQ(Expose(X("u1", 1, kT0)), WriteOutcome::kRecorded);
  EXPECT_EQ(Expose(X("u2", 0, kT0)), WriteOutcome::kRecorded);
  EXPECT_EQ(Expose(X("u3", 1, kT0)), WriteOutcome::kRecorded);
  ExperimentAggregates a = Read();
  ASSERT_EQ(a.variants.size(), 2u);
  EXPECT_EQ(a.variants[0].exposed, 1);
  EXPECT_EQ(a.variants[1].exposed, 2);
  EXPECT_EQ(a.multi_exposed, 0);
  // Every metric of the layout is listed, at zero.
  EXPECT_EQ(a.variants[0].metrics.size(), layout_.metrics.size());
  EXPECT_EQ(M(a, 0, "revenue").units, 0);
}

TEST_P(EventStoreConformance,
       RetriedExposureWithSameIdempotencyKeyIsAppliedOnce) {
  EXPECT_EQ(Expose(X("u1", 0, kT0, "k1")), WriteOutcome::kRecorded);
  EXPECT_EQ(Expose(X("u1", 0, kT0, "k1")), WriteOutcome::kDuplicate);
  // Even a different payload under a seen key is a retry, not news.
  EXPECT_EQ(Expose(X("u1", 1, kT0, "k1")), WriteOutcome::kDuplicate);
  ExperimentAggregates a = Read();
  EXPECT_EQ(a.variants[0].exposed, 1);
  EXPECT_EQ(a.multi_exposed, 0);
  EXPECT_EQ(a.config_versions, (std::map<std::string, int64_t>{{"cfg-a", 1}}));
}

TEST_P(EventStoreConformance,
       RepeatExposureToSameVariantIsDuplicateButCountsItsConfigVersion) {
  EXPECT_EQ(Expose(X("u1", 1, kT0, "", "cfg-a")), WriteOutcome::kRecorded);
  EXPECT_EQ(Expose(X("u1", 1, kT0 + absl::Hours(1), "", "cfg-b")),
            WriteOutcome::kDuplicate);
  EXPECT_EQ(Expose(X("u1", 1, kT0 + absl::Hours(2), "", "cfg-b")),
            WriteOutcome::kDuplicate);
  ExperimentAggregates a = Read();
  EXPECT_EQ(a.variants[1].exposed, 1);
  EXPECT_EQ(a.config_versions,
            (std::map<std::string, int64_t>{{"cfg-a", 1}, {"cfg-b", 2}}));
}

// 16 hex digits, as the server's config versions.
std::string Version(int i) { return absl::StrFormat("%016x", i); }

TEST_P(EventStoreConformance, ConfigVersionsPastTheLimitAreCountedAsOther) {
  ASSERT_EQ(kDefaultMaxConfigVersions, 32);
  // Units 0..34 each under a version of their own: the first 32 versions
  // are counted apart, the last 3 under "other".
  for (int i = 0; i < 35; ++i) {
    ASSERT_EQ(Expose(X(absl::StrCat("u", i), i % 2, kT0, "", Version(i))),
              WriteOutcome::kRecorded);
  }
  // A version already counted keeps counting apart; a further one does not.
  ASSERT_EQ(Expose(X("u35", 0, kT0, "", Version(0))), WriteOutcome::kRecorded);
  ASSERT_EQ(Expose(X("u36", 0, kT0, "", Version(34))), WriteOutcome::kRecorded);
  ASSERT_EQ(Expose(X("u37", 0, kT0, "k37", Version(99))),
            WriteOutcome::kRecorded);
  // A retry counts nowhere.
  ASSERT_EQ(Expose(X("u37", 0, kT0, "k37", Version(99))),
            WriteOutcome::kDuplicate);

  std::map<std::string, int64_t> want;
  for (int i = 0; i < 32; ++i) want[Version(i)] = 1;
  want[Version(0)] = 2;
  want["other"] = 5;  // versions 32, 33, 34 (twice) and 99
  ExperimentAggregates a = Read();
  EXPECT_EQ(a.config_versions, want);
  EXPECT_EQ(a.variants[0].exposed + a.variants[1].exposed, 38);
  ExpectMatchesOracle();

  // Another phase has its own limit.
  ExperimentLayout phase2 = layout_;
  phase2.phase = 2;
  ASSERT_EQ(Expose(phase2, X("u1", 0, kT0, "", Version(77))),
            WriteOutcome::kRecorded);
  EXPECT_EQ(Read(phase2).config_versions,
            (std::map<std::string, int64_t>{{Version(77), 1}}));
}

TEST_P(EventStoreConformance,
       ConcurrentWritersNeverCountMoreVersionsThanTheLimit) {
  // 8 writers, each with 20 versions of its own, one exposure per call, all
  // at once: whoever comes first gets the 32 places, and nothing is lost.
  constexpr int kWriters = 8;
  constexpr int kPerWriter = 20;
  std::vector<std::thread> writers;
  std::atomic<int> failures{0};
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < kPerWriter; ++i) {
        const int n = w * kPerWriter + i;
        const Exposure x{absl::StrCat("unit-", n), n % 2, kT0,
                         Version(1000 + n), absl::StrCat("key-", n)};
        absl::StatusOr<std::vector<WriteOutcome>> r =
            store_->WriteExposures(layout_, {x});
        if (!r.ok() || *r != std::vector<WriteOutcome>{WriteOutcome::kRecorded})
          failures.fetch_add(1);
      }
    });
  }
  for (std::thread& t : writers) t.join();
  ASSERT_EQ(failures.load(), 0);

  const ExperimentAggregates a = Read();
  int64_t apart = 0;
  int64_t total = 0;
  for (const auto& [version, n] : a.config_versions) {
    total += n;
    if (version == "other") continue;
    ++apart;
    EXPECT_EQ(n, 1) << version;
  }
  EXPECT_EQ(apart, kDefaultMaxConfigVersions);
  EXPECT_EQ(a.config_versions.at("other"),
            kWriters * kPerWriter - kDefaultMaxConfigVersions);
  EXPECT_EQ(total, kWriters * kPerWriter);
}

TEST_P(EventStoreConformance,
       SecondVariantMakesUnitMultiExposedAndRemovesAllItsFigures) {
  const absl::Time day2 = kT0 + kDay;
  ASSERT_EQ(Expose(X("u1", 0, kT0)), WriteOutcome::kRecorded);
  ASSERT_EQ(Expose(X("u2", 0, day2)), WriteOutcome::kRecorded);
  // u1 orders twice, clicks, and comes back on day 1.
  ASSERT_EQ(Record(E("u1", "order_completed", kT0 + absl::Hours(1), 20.0)),
            WriteOutcome::kRecorded);
  ASSERT_EQ(Record(E("u1", "order_completed", kT0 + absl::Hours(2), 30.0)),
            WriteOutcome::kRecorded);
  ASSERT_EQ(Record(E("u1", "click", kT0 + absl::Hours(2))),
            WriteOutcome::kRecorded);
  ASSERT_EQ(Record(E("u1", "app_open", kT0 + kDay + absl::Hours(1))),
            WriteOutcome::kRecorded);
  // u2 orders once.
  ASSERT_EQ(Record(E("u2", "order_completed", day2 + absl::Hours(1), 8.0)),
            WriteOutcome::kRecorded);

  EXPECT_EQ(Expose(X("u1", 1, kT0 + absl::Hours(3))), WriteOutcome::kConflict);
  EXPECT_EQ(Expose(X("u1", 0, kT0 + absl::Hours(4))), WriteOutcome::kIgnored);
  EXPECT_EQ(Expose(X("u1", 1, kT0 + absl::Hours(5))), WriteOutcome::kIgnored);
  // Its later events count nowhere.
  EXPECT_EQ(Record(E("u1", "order_completed", kT0 + absl::Hours(6), 5.0)),
            WriteOutcome::kIgnored);

  ExperimentAggregates a = Read();
  EXPECT_EQ(a.multi_exposed, 1);
  EXPECT_EQ(a.variants[0].exposed, 1);
  EXPECT_EQ(a.variants[1].exposed, 0);
  // Only u2 is left.
  EXPECT_EQ(M(a, 0, "order_conversion").units, 1);
  EXPECT_EQ(M(a, 0, "revenue").sum, 8);
  EXPECT_EQ(M(a, 0, "revenue").sum_sq, 64);
  EXPECT_EQ(M(a, 0, "orders").sum, 1);
  EXPECT_EQ(M(a, 0, "aov").sum_num, 8);
  EXPECT_EQ(M(a, 0, "aov").sum_den, 1);
  EXPECT_EQ(M(a, 0, "ctr").units, 0);
  EXPECT_EQ(M(a, 0, "ctr").sum_num, 0);
  EXPECT_EQ(M(a, 0, "retention_d1").units, 0);
  EXPECT_EQ(M(a, 1, "revenue").units, 0);
  // u1's cohort day is emptied too; u2's is untouched.
  const std::string d1 =
      internal::FormatDay(internal::DayOfMillis(absl::ToUnixMillis(kT0)));
  const std::string d2 =
      internal::FormatDay(internal::DayOfMillis(absl::ToUnixMillis(day2)));
  ASSERT_TRUE(a.daily.count(d2));
  EXPECT_EQ(a.daily[d2][0].exposed, 1);
  EXPECT_EQ(a.daily[d2][0].metrics["revenue"].sum, 8);
  if (a.daily.count(d1)) {
    EXPECT_EQ(a.daily[d1][0].exposed, 0);
    EXPECT_EQ(a.daily[d1][0].metrics["revenue"].sum, 0);
    EXPECT_EQ(a.daily[d1][0].metrics["revenue"].sum_sq, 0);
    EXPECT_EQ(a.daily[d1][0].metrics["ctr"].sum_num, 0);
    EXPECT_EQ(a.daily[d1][0].metrics["retention_d1"].units, 0);
  }
  ExpectMatchesOracle();
}

TEST_P(EventStoreConformance, LateEarlierExposureMovesTheUnitToItsFirstDay) {
  ASSERT_EQ(Expose(X("u1", 0, kT0 + kDay)), WriteOutcome::kRecorded);
  ASSERT_EQ(
      Record(E("u1", "order_completed", kT0 + kDay + absl::Hours(1), 4.0)),
      WriteOutcome::kRecorded);
  EXPECT_EQ(Expose(X("u1", 0, kT0)), WriteOutcome::kDuplicate);
  ExperimentAggregates a = Read();
  const std::string d1 =
      internal::FormatDay(internal::DayOfMillis(absl::ToUnixMillis(kT0)));
  ASSERT_TRUE(a.daily.count(d1));
  EXPECT_EQ(a.daily[d1][0].exposed, 1);
  EXPECT_EQ(a.daily[d1][0].metrics["revenue"].sum, 4);
  // Windows now run from the earlier exposure: kT0 + 1d + 2h is on day 1.
  EXPECT_EQ(Record(E("u1", "app_open", kT0 + kDay + absl::Hours(2))),
            WriteOutcome::kRecorded);
  EXPECT_EQ(M(Read(), 0, "retention_d1").units, 1);
  ExpectMatchesOracle();
}

TEST_P(EventStoreConformance,
       ExposureWithVariantIndexOutsideLayoutIsInvalidArgument) {
  absl::StatusOr<std::vector<WriteOutcome>> r =
      store_->WriteExposures(layout_, {X("u1", 2, kT0)});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("variant_index"));
}

// --- Variant keys and phases
// ---------------------------------------------------

TEST_P(EventStoreConformance,
       ReorderedVariantsAreRefusedWithAdviceToBumpPhase) {
  ASSERT_EQ(Expose(X("u1", 1, kT0)), WriteOutcome::kRecorded);
  ExperimentLayout swapped = layout_;
  swapped.variant_keys = {"treatment", "control"};
  absl::StatusOr<std::vector<WriteOutcome>> r =
      store_->WriteExposures(swapped, {X("u2", 0, kT0)});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("bump the experiment's `phase`"));
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("[control, treatment]"));

  ExperimentLayout renamed = layout_;
  renamed.variant_keys = {"control", "new_checkout"};
  r = store_->WriteExposures(renamed, {X("u2", 0, kT0)});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  // Nothing of the refused writes was applied.
  EXPECT_EQ(Read().variants[0].exposed, 0);
}

TEST_P(EventStoreConformance, AppendingAVariantKeepsRecordedUnitsInPlace) {
  ASSERT_EQ(Expose(X("u1", 1, kT0)), WriteOutcome::kRecorded);
  ExperimentLayout three = layout_;
  three.variant_keys.push_back("treatment_b");
  EXPECT_EQ(Expose(three, X("u2", 2, kT0)), WriteOutcome::kRecorded);
  ExperimentAggregates a = Read(three);
  ASSERT_EQ(a.variants.size(), 3u);
  EXPECT_EQ(a.variants[1].exposed, 1);
  EXPECT_EQ(a.variants[2].exposed, 1);
  // The old two-variant layout is still accepted (indices mean the same).
  EXPECT_EQ(Expose(X("u3", 0, kT0)), WriteOutcome::kRecorded);
}

TEST_P(EventStoreConformance, NewPhaseStartsFromZero) {
  ASSERT_EQ(Expose(X("u1", 1, kT0, "k1")), WriteOutcome::kRecorded);
  ExperimentLayout phase2 = layout_;
  phase2.phase = 2;
  phase2.variant_keys = {"treatment", "control"};  // allowed in a new phase
  EXPECT_EQ(Read(phase2).variants[0].exposed, 0);
  EXPECT_EQ(Read(phase2).variants[1].exposed, 0);
  // Same idempotency key, new phase: a new exposure.
  EXPECT_EQ(Expose(phase2, X("u1", 0, kT0, "k1")), WriteOutcome::kRecorded);
  absl::StatusOr<std::optional<int>> v = store_->RecordedVariant(phase2, "u1");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, 0);
  EXPECT_EQ(Read().variants[1].exposed, 1);
}

TEST_P(EventStoreConformance, RecordedVariantIsTheFirstExposedVariant) {
  absl::StatusOr<std::optional<int>> v = store_->RecordedVariant(layout_, "u1");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, std::nullopt);
  ASSERT_EQ(Expose(X("u1", 1, kT0)), WriteOutcome::kRecorded);
  ASSERT_EQ(Expose(X("u1", 0, kT0)), WriteOutcome::kConflict);
  v = store_->RecordedVariant(layout_, "u1");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, 1);
  v = store_->RecordedVariant(layout_, "u2");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, std::nullopt);
}

TEST_P(EventStoreConformance, RecordedVariantsAnswersEveryQueryInOrder) {
  ExperimentLayout other = layout_;
  other.key = "other_experiment";
  ExperimentLayout never = layout_;
  never.key = "never_written";
  ASSERT_EQ(Expose(X("u1", 1, kT0)), WriteOutcome::kRecorded);
  ASSERT_EQ(Expose(other, X("u1", 0, kT0)), WriteOutcome::kRecorded);
  ASSERT_EQ(Expose(X("u2", 0, kT0)), WriteOutcome::kRecorded);
  const std::vector<RecordedVariantQuery> queries = {
      {&layout_, "u1"}, {&other, "u1"}, {&layout_, "u2"},
      {&layout_, "u3"}, {&never, "u1"}, {&other, "u2"}};
  const std::vector<std::optional<int>> expected = {
      1, 0, 0, std::nullopt, std::nullopt, std::nullopt};
  std::vector<RecordedVariantResult> got = store_->RecordedVariants(queries);
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(got[i].ok()) << i << ": " << got[i].status();
    EXPECT_EQ(*got[i], expected[i]) << i;
  }
  EXPECT_TRUE(store_->RecordedVariants({}).empty());
}

TEST_P(EventStoreConformance,
       RecordedVariantsRefusesReorderedVariantsPerQuery) {
  ExperimentLayout other = layout_;
  other.key = "other_experiment";
  ASSERT_EQ(Expose(X("u1", 1, kT0)), WriteOutcome::kRecorded);
  ASSERT_EQ(Expose(other, X("u1", 0, kT0)), WriteOutcome::kRecorded);
  // Index 1 was "treatment"; in the reordered layout it would be "control".
  ExperimentLayout reordered = layout_;
  reordered.variant_keys = {"treatment", "control"};
  ExperimentLayout appended = layout_;
  appended.variant_keys.push_back("treatment_b");
  std::vector<RecordedVariantResult> got = store_->RecordedVariants(
      {{&reordered, "u1"}, {&appended, "u1"}, {&other, "u1"}});
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(got[0].status().message(), HasSubstr("phase"));
  ASSERT_TRUE(got[1].ok()) << got[1].status();
  EXPECT_EQ(*got[1], 1);
  ASSERT_TRUE(got[2].ok()) << got[2].status();
  EXPECT_EQ(*got[2], 0);
  EXPECT_EQ(store_->RecordedVariant(reordered, "u1").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// --- Events ------------------------------------------------------------------

TEST_P(EventStoreConformance, RetriedEventWithSameIdempotencyKeyIsAppliedOnce) {
  ASSERT_EQ(Expose(X("u1", 0, kT0)), WriteOutcome::kRecorded);
  EXPECT_EQ(
      Record(E("u1", "order_completed", kT0 + absl::Hours(1), 10.0, "o1")),
      WriteOutcome::kRecorded);
  EXPECT_EQ(
      Record(E("u1", "order_completed", kT0 + absl::Hours(1), 10.0, "o1")),
      WriteOutcome::kDuplicate);
  EXPECT_EQ(
      Record(E("u1", "order_completed", kT0 + absl::Hours(1), 10.0, "o2")),
      WriteOutcome::kRecorded);
  ExperimentAggregates a = Read();
  EXPECT_EQ(M(a, 0, "revenue").sum, 20);
  EXPECT_EQ(M(a, 0, "orders").sum, 2);
  // Exposure and event keys are separate namespaces.
  EXPECT_EQ(Expose(X("u2", 0, kT0, "o1")), WriteOutcome::kRecorded);
}

TEST_P(EventStoreConformance,
       EventsOfUnexposedUnitsOrBeforeFirstExposureAreIgnored) {
  EXPECT_EQ(Record(E("u1", "order_completed", kT0, 5.0)),
            WriteOutcome::kIgnored);
  ASSERT_EQ(Expose(X("u1", 0, kT0)), WriteOutcome::kRecorded);
  EXPECT_EQ(
      Record(E("u1", "order_completed", kT0 - absl::Milliseconds(1), 5.0)),
      WriteOutcome::kIgnored);
  // At the very exposure instant it counts.
  EXPECT_EQ(Record(E("u1", "order_completed", kT0, 7.0)),
            WriteOutcome::kRecorded);
  // Events no metric uses change nothing.
  EXPECT_EQ(Record(E("u1", "page_view", kT0 + absl::Hours(1))),
            WriteOutcome::kIgnored);
  ExperimentAggregates a = Read();
  EXPECT_EQ(M(a, 0, "revenue").sum, 7);
  EXPECT_EQ(M(a, 0, "orders").sum, 1);
}

TEST_P(EventStoreConformance,
       EventIgnoredBeforeItsUnitWasExposedIsNotRememberedSoItsRetryCounts) {
  // The order arrives before the exposure that preceded it (clients buffer
  // exposures): ignored, and its key is not remembered.
  const Event order =
      E("u1", "order_completed", kT0 + absl::Hours(1), 6.0, "o1");
  EXPECT_EQ(Record(order), WriteOutcome::kIgnored);
  ASSERT_EQ(Expose(X("u1", 0, kT0)), WriteOutcome::kRecorded);
  // The client's retry, after the exposure: the order is after the first
  // exposure, so it counts, once.
  EXPECT_EQ(Record(order), WriteOutcome::kRecorded);
  EXPECT_EQ(Record(order), WriteOutcome::kDuplicate);
  ExperimentAggregates a = Read();
  EXPECT_EQ(M(a, 0, "revenue").sum, 6);
  EXPECT_EQ(M(a, 0, "orders").sum, 1);
  ExpectMatchesOracle();
}

TEST_P(EventStoreConformance,
       EventBeforeFirstExposureCountsOnRetryOnceAnEarlierExposureArrived) {
  ASSERT_EQ(Expose(X("u1", 0, kT0 + absl::Hours(2))), WriteOutcome::kRecorded);
  const Event order =
      E("u1", "order_completed", kT0 + absl::Hours(1), 3.0, "o1");
  EXPECT_EQ(Record(order), WriteOutcome::kIgnored);
  // The unit's real first exposure arrives late; the retried order is now
  // after it.
  ASSERT_EQ(Expose(X("u1", 0, kT0)), WriteOutcome::kDuplicate);
  EXPECT_EQ(Record(order), WriteOutcome::kRecorded);
  EXPECT_EQ(M(Read(), 0, "revenue").sum, 3);
  ExpectMatchesOracle();
}

TEST_P(EventStoreConformance,
       RetryOfACountedEventAfterTheUnitBecameMultiExposedIsIgnored) {
  ASSERT_EQ(Expose(X("u1", 0, kT0)), WriteOutcome::kRecorded);
  const Event order =
      E("u1", "order_completed", kT0 + absl::Hours(1), 9.0, "o1");
  ASSERT_EQ(Record(order), WriteOutcome::kRecorded);
  ASSERT_EQ(Expose(X("u1", 1, kT0 + absl::Hours(2))), WriteOutcome::kConflict);
  // The unit is out of the experiment, which is checked before the key.
  EXPECT_EQ(Record(order), WriteOutcome::kIgnored);
  ExperimentAggregates a = Read();
  EXPECT_EQ(a.multi_exposed, 1);
  EXPECT_EQ(M(a, 0, "revenue").units, 0);
  EXPECT_EQ(M(a, 0, "revenue").sum, 0);
  ExpectMatchesOracle();
}

TEST_P(EventStoreConformance, WindowEndIsExclusive) {
  ASSERT_EQ(Expose(X("late", 0, kT0)), WriteOutcome::kRecorded);
  ASSERT_EQ(Expose(X("edge", 0, kT0)), WriteOutcome::kRecorded);
  // order_conversion has a 7-day window: [kT0, kT0 + 7d).
  EXPECT_EQ(Record(E("late", "order_completed", kT0 + 7 * kDay, 3.0)),
            WriteOutcome::kRecorded);
  EXPECT_EQ(Record(E("edge", "order_completed",
                     kT0 + 7 * kDay - absl::Milliseconds(1), 3.0)),
            WriteOutcome::kRecorded);
  ExperimentAggregates a = Read();
  EXPECT_EQ(M(a, 0, "order_conversion").units, 1);  // only "edge"
  EXPECT_EQ(M(a, 0, "revenue").units, 2);           // 14-day window: both
  // At exactly 14 days nothing counts any more.
  EXPECT_EQ(Record(E("edge", "order_completed", kT0 + 14 * kDay, 3.0)),
            WriteOutcome::kIgnored);
  EXPECT_EQ(M(Read(), 0, "revenue").sum, 6);
}

TEST_P(EventStoreConformance, BinomialConvertsOnce) {
  ASSERT_EQ(Expose(X("u1", 1, kT0)), WriteOutcome::kRecorded);
  Record(E("u1", "order_completed", kT0 + absl::Hours(1), 1.0));
  Record(E("u1", "order_completed", kT0 + absl::Hours(2), 1.0));
  Record(E("u1", "order_completed", kT0 + absl::Hours(3), 1.0));
  const MetricAggregate m = M(Read(), 1, "order_conversion");
  EXPECT_EQ(m.units, 1);
  EXPECT_EQ(m.sum, 1);
  EXPECT_EQ(m.sum_sq, 1);
}

TEST_P(EventStoreConformance, SumKeepsSumAndSumOfSquaresOfPerUnitTotals) {
  // ARPU: per-unit revenue totals 10+20.5 = 30.5, 4, -2.25+2.25 = 0 (refund).
  for (const char* u : {"a", "b", "c", "d"})
    ASSERT_EQ(Expose(X(u, 0, kT0)), WriteOutcome::kRecorded);
  Record(E("a", "order_completed", kT0 + absl::Hours(1), 10.0));
  Record(E("a", "order_completed", kT0 + absl::Hours(2), 20.5));
  Record(E("b", "order_completed", kT0 + absl::Hours(1), 4.0));
  Record(E("c", "order_completed", kT0 + absl::Hours(1), -2.25));
  Record(E("c", "order_completed", kT0 + absl::Hours(2), 2.25));
  // No value: nothing for revenue, one for orders.
  Record(E("d", "order_completed", kT0 + absl::Hours(1)));
  ExperimentAggregates a = Read();
  const MetricAggregate& revenue = M(a, 0, "revenue");
  EXPECT_EQ(revenue.units, 3);
  EXPECT_EQ(revenue.sum, 30.5L + 4);
  EXPECT_EQ(revenue.sum_sq, 30.5L * 30.5L + 16);
  const MetricAggregate& orders = M(a, 0, "orders");
  EXPECT_EQ(orders.units, 4);
  EXPECT_EQ(orders.sum, 2 + 1 + 2 + 1);
  EXPECT_EQ(orders.sum_sq, 4 + 1 + 4 + 1);
  ExpectMatchesOracle();
}

TEST_P(EventStoreConformance, RatioKeepsAllFiveSumsExact) {
  // AOV = revenue / orders, both fed by one event; CTR = clicks / impressions.
  for (const char* u : {"a", "b"})
    ASSERT_EQ(Expose(X(u, 1, kT0)), WriteOutcome::kRecorded);
  Record(E("a", "order_completed", kT0 + absl::Hours(1), 12.0));
  Record(E("a", "order_completed", kT0 + absl::Hours(2), 6.0));
  Record(E("b", "order_completed", kT0 + absl::Hours(1), 5.0));
  for (int i = 0; i < 3; ++i)
    Record(E("a", "impression", kT0 + absl::Minutes(i)));
  Record(E("a", "click", kT0 + absl::Minutes(5)));
  Record(E("b", "impression", kT0 + absl::Minutes(1)));
  ExperimentAggregates a = Read();
  // a: n=18, d=2; b: n=5, d=1.
  const MetricAggregate& aov = M(a, 1, "aov");
  EXPECT_EQ(aov.units, 2);
  EXPECT_EQ(aov.sum_num, 23);
  EXPECT_EQ(aov.sum_den, 3);
  EXPECT_EQ(aov.sum_num_sq, 18 * 18 + 5 * 5);
  EXPECT_EQ(aov.sum_den_sq, 4 + 1);
  EXPECT_EQ(aov.sum_num_den, 18 * 2 + 5 * 1);
  // a: 1 click / 3 impressions; b: 0 / 1.
  const MetricAggregate& ctr = M(a, 1, "ctr");
  EXPECT_EQ(ctr.units, 2);
  EXPECT_EQ(ctr.sum_num, 1);
  EXPECT_EQ(ctr.sum_den, 4);
  EXPECT_EQ(ctr.sum_num_sq, 1);
  EXPECT_EQ(ctr.sum_den_sq, 9 + 1);
  EXPECT_EQ(ctr.sum_num_den, 3);
  ExpectMatchesOracle();
}

TEST_P(EventStoreConformance, RetentionCountsActivityOnlyOnItsDay) {
  // Day 1 is [first + 24h, first + 48h); day 7 is [first + 7d, first + 8d).
  const std::vector<std::pair<absl::Duration, std::pair<bool, bool>>> cases = {
      {kDay - absl::Milliseconds(1), {false, false}},
      {kDay, {true, false}},
      {2 * kDay - absl::Milliseconds(1), {true, false}},
      {2 * kDay, {false, false}},
      {7 * kDay - absl::Milliseconds(1), {false, false}},
      {7 * kDay, {false, true}},
      {8 * kDay - absl::Milliseconds(1), {false, true}},
      {8 * kDay, {false, false}},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    std::string unit = absl::StrCat("u", i);
    ASSERT_EQ(Expose(X(unit, 0, kT0)), WriteOutcome::kRecorded);
    bool counts = cases[i].second.first || cases[i].second.second;
    EXPECT_EQ(Record(E(unit, "app_open", kT0 + cases[i].first)),
              counts ? WriteOutcome::kRecorded : WriteOutcome::kIgnored)
        << "app_open at first exposure + "
        << absl::FormatDuration(cases[i].first);
  }
  ExperimentAggregates a = Read();
  EXPECT_EQ(M(a, 0, "retention_d1").units, 2);
  EXPECT_EQ(M(a, 0, "retention_d1").sum, 2);
  EXPECT_EQ(M(a, 0, "retention_d7").units, 2);
  // Active once, however often the unit comes back that day.
  EXPECT_EQ(Record(E("u1", "app_open", kT0 + kDay + absl::Hours(3))),
            WriteOutcome::kIgnored);
  EXPECT_EQ(M(Read(), 0, "retention_d1").units, 2);
  ExpectMatchesOracle();
}

// --- Funnels ----------------------------------------------------------------

// checkout_funnel: view_checkout -> submit_payment (within 30 minutes of the
// view) -> order_completed, all within 7 days of the first exposure.
TEST_P(EventStoreConformance, FunnelStepsCountInOrderInsideTheWindows) {
  for (const char* u : {"all", "gap", "early", "slow", "late", "pre"})
    ASSERT_EQ(Expose(X(u, 1, kT0)), WriteOutcome::kRecorded);
  const absl::Duration m = absl::Minutes(1);
  // Every step, in order; a retry of the payment counts once.
  EXPECT_EQ(Record(E("all", "view_checkout", kT0 + 1 * m)),
            WriteOutcome::kRecorded);
  Event pay = E("all", "submit_payment", kT0 + 10 * m);
  EXPECT_EQ(Record(pay), WriteOutcome::kRecorded);
  EXPECT_EQ(Record(pay), WriteOutcome::kDuplicate);
  EXPECT_EQ(Record(E("all", "order_completed", kT0 + 11 * m, 5.0)),
            WriteOutcome::kRecorded);
  // A step skipped: the order does not count until payment, and the
  // funnel continues from payment.
  Record(E("gap", "view_checkout", kT0 + 1 * m));
  Record(E("gap", "order_completed", kT0 + 2 * m, 5.0));
  Record(E("gap", "submit_payment", kT0 + 3 * m));
  // Payment before the view (in time and in arrival): only the view.
  Record(E("early", "submit_payment", kT0 + 1 * m));
  EXPECT_EQ(Record(E("early", "view_checkout", kT0 + 2 * m)),
            WriteOutcome::kRecorded);
  // Payment 30 minutes after the view: the step window is half-open.
  Record(E("slow", "view_checkout", kT0 + 1 * m));
  EXPECT_EQ(Record(E("slow", "submit_payment", kT0 + 31 * m)),
            WriteOutcome::kIgnored);
  // A view at the end of the 7-day window: outside.
  EXPECT_EQ(Record(E("late", "view_checkout", kT0 + 7 * kDay)),
            WriteOutcome::kIgnored);
  // Before the first exposure: nothing.
  EXPECT_EQ(Record(E("pre", "view_checkout", kT0 - m)), WriteOutcome::kIgnored);

  const MetricAggregate f = M(Read(), 1, "checkout_funnel");
  EXPECT_EQ(f.units, 4);  // all, gap, early, slow reached the view
  EXPECT_THAT(f.steps, ElementsAre(4, 2, 1));
  EXPECT_THAT(M(Read(), 0, "checkout_funnel").steps, ElementsAre(0, 0, 0));
  ExpectMatchesOracle();
}

TEST_P(EventStoreConformance,
       FunnelStepArrivingBeforeThePreviousStepIsNotReordered) {
  // A client that sends the payment before the view, although the view
  // happened first: events are applied in arrival order, so the payment is
  // not counted, not even once the view arrives, and its retry is a
  // duplicate. Documented in docs/attribution.md ("Funnels").
  ASSERT_EQ(Expose(X("u1", 0, kT0)), WriteOutcome::kRecorded);
  Event pay = E("u1", "submit_payment", kT0 + absl::Minutes(5));
  EXPECT_EQ(Record(pay), WriteOutcome::kIgnored);
  EXPECT_EQ(Record(E("u1", "view_checkout", kT0 + absl::Minutes(1))),
            WriteOutcome::kRecorded);
  EXPECT_EQ(Record(pay), WriteOutcome::kDuplicate);
  // A step's event earlier than the previous step was reached never counts.
  ASSERT_EQ(Expose(X("u2", 0, kT0)), WriteOutcome::kRecorded);
  Record(E("u2", "view_checkout", kT0 + absl::Minutes(10)));
  EXPECT_EQ(Record(E("u2", "submit_payment", kT0 + absl::Minutes(9))),
            WriteOutcome::kIgnored);
  EXPECT_THAT(M(Read(), 0, "checkout_funnel").steps, ElementsAre(2, 0, 0));
  ExpectMatchesOracle();
}

TEST_P(EventStoreConformance,
       FunnelFollowsItsUnitAcrossCohortDaysAndConflicts) {
  // A late earlier exposure moves the unit's steps to the earlier cohort
  // day; a conflicting exposure removes them everywhere.
  ASSERT_EQ(Expose(X("u1", 0, kT0 + kDay)), WriteOutcome::kRecorded);
  ASSERT_EQ(Expose(X("u2", 1, kT0)), WriteOutcome::kRecorded);
  for (const char* u : {"u1", "u2"}) {
    Record(E(u, "view_checkout", kT0 + kDay + absl::Minutes(1)));
    Record(E(u, "submit_payment", kT0 + kDay + absl::Minutes(2)));
  }
  EXPECT_EQ(Expose(X("u1", 0, kT0)), WriteOutcome::kDuplicate);
  EXPECT_EQ(Expose(X("u2", 0, kT0)), WriteOutcome::kConflict);
  ExperimentAggregates a = Read();
  const std::string d0 =
      internal::FormatDay(internal::DayOfMillis(absl::ToUnixMillis(kT0)));
  ASSERT_TRUE(a.daily.count(d0));
  EXPECT_THAT(a.daily[d0][0].metrics["checkout_funnel"].steps,
              ElementsAre(1, 1, 0));
  EXPECT_THAT(M(a, 0, "checkout_funnel").steps, ElementsAre(1, 1, 0));
  EXPECT_THAT(M(a, 1, "checkout_funnel").steps, ElementsAre(0, 0, 0));
  ExpectMatchesOracle();
}

TEST_P(EventStoreConformance, DailyBucketsAreCohortsOfTheFirstExposureDay) {
  // Unit a: exposed day 0 (10:00), orders on day 1. Unit b: exposed day 1.
  ASSERT_EQ(Expose(X("a", 0, kT0)), WriteOutcome::kRecorded);
  ASSERT_EQ(Expose(X("b", 0, kT0 + kDay)), WriteOutcome::kRecorded);
  Record(E("a", "order_completed", kT0 + kDay + absl::Hours(1), 3.0));
  Record(E("a", "order_completed", kT0 + kDay + absl::Hours(2), 5.0));
  Record(E("b", "order_completed", kT0 + kDay + absl::Hours(3), 2.0));
  ExperimentAggregates a = Read();
  const std::string d0 = "2026-03-02", d1 = "2026-03-03";
  ASSERT_TRUE(a.daily.count(d0)) << "days: " << a.daily.size();
  ASSERT_TRUE(a.daily.count(d1));
  EXPECT_EQ(a.daily.size(), 2u);
  EXPECT_EQ(a.daily[d0][0].exposed, 1);
  EXPECT_EQ(a.daily[d0][0].metrics["revenue"].sum,
            8);  // a's orders, though on day 1
  EXPECT_EQ(a.daily[d0][0].metrics["revenue"].sum_sq, 64);
  EXPECT_EQ(a.daily[d1][0].exposed, 1);
  EXPECT_EQ(a.daily[d1][0].metrics["revenue"].sum, 2);
  EXPECT_EQ(a.daily[d1][0].metrics["revenue"].sum_sq, 4);
  // The days add up to the total.
  EXPECT_EQ(M(a, 0, "revenue").sum_sq, 68);
  ExpectMatchesOracle();
}

TEST_P(EventStoreConformance,
       CupedSumsCoverTheUnitsWhoseFirstExposureCarriedTheCovariate) {
  layout_.metrics.push_back(Sum("orders_cuped", "order_completed",
                                EventAggregation::kCount, 14 * kDay));
  layout_.metrics.back().covariate = "orders_90d";
  layout_.metrics.push_back(
      Binomial("conversion_cuped", "order_completed", 7 * kDay));
  layout_.metrics.back().covariate = "orders_90d";
  oracle_ = Oracle(layout_);
  auto with = [](Exposure e, double x) {
    e.covariates["orders_90d"] = x;
    return e;
  };
  ASSERT_EQ(Expose(with(X("a", 0, kT0), 2)), WriteOutcome::kRecorded);
  ASSERT_EQ(Expose(with(X("b", 0, kT0), 4)), WriteOutcome::kRecorded);
  ASSERT_EQ(Expose(X("c", 0, kT0)), WriteOutcome::kRecorded);  // none
  ASSERT_EQ(Expose(with(X("d", 1, kT0), 3)), WriteOutcome::kRecorded);
  ASSERT_EQ(Expose(with(X("e", 1, kT0), 1)), WriteOutcome::kRecorded);
  Record(E("a", "order_completed", kT0 + absl::Hours(1)));
  Record(E("a", "order_completed", kT0 + absl::Hours(2)));
  Record(E("c", "order_completed", kT0 + absl::Hours(1)));
  Record(E("d", "order_completed", kT0 + absl::Hours(1)));
  Record(E("e", "order_completed", kT0 + absl::Hours(1)));
  // d goes multi-exposed: out of every figure, CUPED ones included.
  EXPECT_EQ(Expose(with(X("d", 0, kT0 + absl::Hours(3)), 3)),
            WriteOutcome::kConflict);
  // e's later exposure carries another value: the first one stays.
  EXPECT_EQ(Expose(with(X("e", 1, kT0 + absl::Hours(4)), 100)),
            WriteOutcome::kDuplicate);
  // a's earlier exposure arrives late: a moves to the previous cohort day
  // with its covariate and its orders.
  EXPECT_EQ(Expose(with(X("a", 0, kT0 - kDay), 9)), WriteOutcome::kDuplicate);

  ExperimentAggregates a = Read();
  const MetricAggregate& orders = M(a, 0, "orders_cuped");
  EXPECT_EQ(orders.units, 2);  // a and c: the raw figures keep c
  EXPECT_EQ(orders.sum, 3);
  EXPECT_EQ(orders.cuped_units, 2);  // a and b: b's y is 0
  EXPECT_EQ(orders.cuped_sum_x, 6);
  EXPECT_EQ(orders.cuped_sum_x_sq, 20);
  EXPECT_EQ(orders.cuped_sum_y, 2);
  EXPECT_EQ(orders.cuped_sum_y_sq, 4);
  EXPECT_EQ(orders.cuped_sum_xy, 4);
  const MetricAggregate& conversion = M(a, 0, "conversion_cuped");
  EXPECT_EQ(conversion.cuped_units, 2);
  EXPECT_EQ(conversion.cuped_sum_y, 1);
  EXPECT_EQ(conversion.cuped_sum_y_sq, 1);
  EXPECT_EQ(conversion.cuped_sum_xy, 2);
  const MetricAggregate& treated = M(a, 1, "orders_cuped");
  EXPECT_EQ(treated.cuped_units, 1);  // e only
  EXPECT_EQ(treated.cuped_sum_x, 1);
  EXPECT_EQ(treated.cuped_sum_xy, 1);
  // Metrics without a covariate have no CUPED figures.
  EXPECT_EQ(M(a, 0, "orders").cuped_units, 0);
  EXPECT_EQ(M(a, 0, "orders").cuped_sum_y, 0);
  const std::string day_before = internal::FormatDay(
      internal::DayOfMillis(absl::ToUnixMillis(kT0 - kDay)));
  ASSERT_EQ(a.daily.count(day_before), 1u);
  EXPECT_EQ(a.daily[day_before][0].metrics["orders_cuped"].cuped_sum_xy, 4);
  ExpectMatchesOracle();
}

// --- Segments ----------------------------------------------------------------

// For every dimension, the segments' figures add up to the totals.
void ExpectSegmentsAddUpToTotals(const ExperimentAggregates& a) {
  for (const auto& [attribute, values] : a.segments) {
    std::vector<VariantAggregate> sum;
    for (const auto& [value, vs] : values) AddVariantAggregates(vs, &sum);
    ExperimentAggregates totals, added;
    totals.variants = a.variants;
    added.variants = sum;
    EXPECT_EQ(Flatten(added), Flatten(totals)) << "dimension " << attribute;
  }
}

Exposure WithDims(Exposure e, std::map<std::string, std::string> values) {
  e.dimensions = std::move(values);
  return e;
}

TEST_P(EventStoreConformance, SegmentsSplitTheTotalsByTheFirstExposuresValue) {
  layout_.dimensions = {{"platform", 20, {}}, {"plan", 20, {}}};
  oracle_ = Oracle(layout_);
  ASSERT_EQ(
      Expose(WithDims(X("a", 0, kT0), {{"platform", "ios"}, {"plan", "pro"}})),
      WriteOutcome::kRecorded);
  ASSERT_EQ(Expose(WithDims(X("b", 1, kT0), {{"platform", "ios"}})),
            WriteOutcome::kRecorded);
  ASSERT_EQ(
      Expose(WithDims(X("c", 1, kT0), {{"platform", "android"}, {"plan", ""}})),
      WriteOutcome::kRecorded);
  Record(E("a", "order_completed", kT0 + absl::Hours(1), 10.0));
  Record(E("b", "order_completed", kT0 + absl::Hours(1), 4.0));
  Record(E("c", "order_completed", kT0 + absl::Hours(1), 6.0));
  Record(E("c", "view_checkout", kT0 + absl::Hours(1)));
  // A later exposure's value is not the unit's: b stays on ios.
  EXPECT_EQ(
      Expose(WithDims(X("b", 1, kT0 + absl::Hours(2)), {{"platform", "web"}})),
      WriteOutcome::kDuplicate);

  ExperimentAggregates a = Read();
  ASSERT_EQ(a.segments.count("platform"), 1u);
  const auto& platform = a.segments["platform"];
  // web was claimed by b's later exposure but has no unit: not listed.
  EXPECT_EQ(platform.size(), 2u);
  ASSERT_EQ(platform.count("ios"), 1u);
  const std::vector<VariantAggregate>& ios = platform.at("ios");
  EXPECT_EQ(ios[0].exposed, 1);
  EXPECT_EQ(ios[1].exposed, 1);
  EXPECT_EQ(ios[0].metrics.at("revenue").sum, 10);
  EXPECT_EQ(ios[1].metrics.at("revenue").sum, 4);
  const std::vector<VariantAggregate>& android = platform.at("android");
  EXPECT_EQ(android[0].exposed, 0);
  EXPECT_EQ(android[1].exposed, 1);
  EXPECT_EQ(android[1].metrics.at("revenue").sum_sq, 36);
  EXPECT_EQ(android[1].metrics.at("checkout_funnel").steps[0], 1);
  // Units without the attribute (or with it empty) are "(none)".
  const auto& plan = a.segments["plan"];
  ASSERT_EQ(plan.count(kNoneSegment), 1u);
  EXPECT_EQ(plan.at(kNoneSegment)[1].exposed, 2);
  EXPECT_EQ(plan.at("pro")[0].exposed, 1);
  ExpectSegmentsAddUpToTotals(a);
  ExpectMatchesOracle();
}

TEST_P(EventStoreConformance,
       ValuesPastMaxValuesCountAsOtherFirstComeFirstServed) {
  layout_.dimensions = {{"country", 2, {}}};
  oracle_ = Oracle(layout_);
  auto country = [](const std::string& c) {
    return std::map<std::string, std::string>{{"country", c}};
  };
  ASSERT_EQ(Expose(WithDims(X("a", 0, kT0, "ka"), country("de"))),
            WriteOutcome::kRecorded);
  // A retry (same key, even with another value) claims nothing new.
  ASSERT_EQ(Expose(WithDims(X("a", 0, kT0, "ka"), country("de"))),
            WriteOutcome::kDuplicate);
  // An earlier exposure of b arriving after a's: served in arrival order.
  ASSERT_EQ(Expose(WithDims(X("b", 1, kT0 - kDay), country("fr"))),
            WriteOutcome::kRecorded);
  // The third distinct value and later ones are "(other)".
  ASSERT_EQ(Expose(WithDims(X("c", 1, kT0), country("it"))),
            WriteOutcome::kRecorded);
  ASSERT_EQ(Expose(WithDims(X("d", 0, kT0), country("es"))),
            WriteOutcome::kRecorded);
  ASSERT_EQ(Expose(WithDims(X("e", 0, kT0), country("de"))),
            WriteOutcome::kRecorded);
  // A value spelled "(other)" counts there too.
  ASSERT_EQ(Expose(WithDims(X("f", 0, kT0), country(kOtherSegment))),
            WriteOutcome::kRecorded);
  Record(E("d", "order_completed", kT0 + absl::Hours(1), 2.5));
  Record(E("e", "order_completed", kT0 + absl::Hours(1), 1.25));

  ExperimentAggregates a = Read();
  const auto& c = a.segments["country"];
  EXPECT_EQ(c.size(), 3u);
  EXPECT_EQ(c.at("de")[0].exposed, 2);
  EXPECT_EQ(c.at("de")[0].metrics.at("revenue").sum, 1.25);
  EXPECT_EQ(c.at("fr")[1].exposed, 1);
  EXPECT_EQ(c.at(kOtherSegment)[0].exposed, 2);  // d, f
  EXPECT_EQ(c.at(kOtherSegment)[1].exposed, 1);  // c
  EXPECT_EQ(c.at(kOtherSegment)[0].metrics.at("revenue").sum, 2.5);
  ExpectSegmentsAddUpToTotals(a);
  ExpectMatchesOracle();
}

TEST_P(EventStoreConformance,
       CohortMovesAndMultiExposedUnitsKeepSegmentsConsistentWithTotals) {
  layout_.dimensions = {{"platform", 20, {}}};
  oracle_ = Oracle(layout_);
  auto platform = [](const std::string& p) {
    return std::map<std::string, std::string>{{"platform", p}};
  };
  ASSERT_EQ(Expose(WithDims(X("a", 0, kT0), platform("ios"))),
            WriteOutcome::kRecorded);
  ASSERT_EQ(Expose(WithDims(X("b", 0, kT0), platform("ios"))),
            WriteOutcome::kRecorded);
  ASSERT_EQ(Expose(WithDims(X("c", 1, kT0), platform("web"))),
            WriteOutcome::kRecorded);
  Record(E("a", "order_completed", kT0 + absl::Hours(1), 8.0));
  Record(E("b", "order_completed", kT0 + absl::Hours(1), 3.0));
  Record(E("c", "order_completed", kT0 + absl::Hours(1), 5.0));
  // a's earlier exposure (another platform) arrives late: a moves cohort
  // day but stays in ios with its revenue.
  EXPECT_EQ(Expose(WithDims(X("a", 0, kT0 - kDay), platform("web"))),
            WriteOutcome::kDuplicate);
  // b is exposed to the other variant: out of its segment as of the totals.
  EXPECT_EQ(Expose(WithDims(X("b", 1, kT0 + absl::Hours(2)), platform("ios"))),
            WriteOutcome::kConflict);
  // c's whole segment goes multi-exposed: web is no longer listed.
  EXPECT_EQ(Expose(WithDims(X("c", 0, kT0 + absl::Hours(2)), platform("web"))),
            WriteOutcome::kConflict);
  Record(E("a", "order_completed", kT0 + absl::Hours(3), 1.0));

  ExperimentAggregates a = Read();
  const auto& p = a.segments["platform"];
  EXPECT_EQ(p.size(), 1u);
  ASSERT_EQ(p.count("ios"), 1u);
  EXPECT_EQ(p.at("ios")[0].exposed, 1);
  EXPECT_EQ(p.at("ios")[0].metrics.at("revenue").sum, 9);
  EXPECT_EQ(a.multi_exposed, 2);
  ExpectSegmentsAddUpToTotals(a);
  ExpectMatchesOracle();
}

// Many units over every shard, with more values than max_values, in
// batches: the store agrees with the oracle exactly.
TEST_P(EventStoreConformance, SegmentsOfManyUnitsInBatchesMatchTheOracle) {
  layout_.dimensions = {{"country", 20, {}}, {"plan", 3, {}}};
  oracle_ = Oracle(layout_);
  std::mt19937 rng(18);
  std::vector<Exposure> exposures;
  std::vector<Event> events;
  for (int i = 0; i < 3000; ++i) {
    const std::string unit = absl::StrCat("u", i % 2500);
    std::map<std::string, std::string> values;
    values["country"] = absl::StrCat("c", rng() % 30);
    if (rng() % 5 != 0) values["plan"] = absl::StrCat("p", rng() % 5);
    exposures.push_back(WithDims(
        X(unit, static_cast<int>(rng() % 2), kT0 + absl::Minutes(rng() % 3000)),
        values));
    events.push_back(
        E(unit, "order_completed", kT0 + absl::Hours(60), 0.25 * (rng() % 40)));
  }
  for (size_t start = 0; start < exposures.size(); start += 700) {
    const size_t end = std::min(exposures.size(), start + 700);
    for (size_t i = start; i < end; ++i) oracle_.Expose(exposures[i]);
    absl::StatusOr<std::vector<WriteOutcome>> r = store_->WriteExposures(
        layout_, absl::MakeConstSpan(exposures).subspan(start, end - start));
    ASSERT_TRUE(r.ok()) << r.status();
  }
  for (const Event& e : events) oracle_.Record(e);
  ASSERT_TRUE(store_->WriteEvents(layout_, events).ok());
  ExperimentAggregates a = Read();
  EXPECT_EQ(a.segments["country"].size(), 21u);  // 20 values and (other)
  EXPECT_EQ(a.segments["plan"].size(), 5u);      // 3, (other), (none)
  ExpectSegmentsAddUpToTotals(a);
  ExpectMatchesOracle();
}

// GetResults reads the segments of the dimension it is asked for only, by
// passing a layout narrowed to it: the other figures stay the same.
TEST_P(EventStoreConformance, ReadGivesTheSegmentsOfTheLayoutsDimensionsOnly) {
  layout_.dimensions = {{"platform", 20, {}}, {"plan", 20, {}}};
  oracle_ = Oracle(layout_);
  ASSERT_EQ(
      Expose(WithDims(X("a", 0, kT0), {{"platform", "ios"}, {"plan", "pro"}})),
      WriteOutcome::kRecorded);
  ASSERT_EQ(
      Expose(WithDims(X("b", 1, kT0), {{"platform", "web"}, {"plan", "free"}})),
      WriteOutcome::kRecorded);
  Record(E("a", "order_completed", kT0 + absl::Hours(1), 10.0));
  const ExperimentAggregates all = Read();
  ASSERT_EQ(all.segments.size(), 2u);

  ExperimentLayout plan_only = layout_;
  plan_only.dimensions = {layout_.dimensions[1]};
  ExperimentAggregates plan = Read(plan_only);
  ASSERT_EQ(plan.segments.size(), 1u);
  ASSERT_EQ(plan.segments.count("plan"), 1u);
  EXPECT_EQ(plan.segments.at("plan").at("pro")[0].exposed, 1);
  EXPECT_EQ(plan.segments.at("plan").at("free")[1].exposed, 1);
  EXPECT_EQ(plan.segments.at("plan").at("pro")[0].metrics.at("revenue").sum,
            10);

  ExperimentLayout none = layout_;
  none.dimensions.clear();
  ExperimentAggregates totals = Read(none);
  EXPECT_TRUE(totals.segments.empty());
  // Without segments, the rest reads as with them.
  ExperimentAggregates all_but_segments = all;
  all_but_segments.segments.clear();
  EXPECT_EQ(Flatten(totals), Flatten(all_but_segments));
}

TEST_P(EventStoreConformance, ChangedMetricDefinitionStartsItsFiguresAfresh) {
  ASSERT_EQ(Expose(X("u1", 0, kT0)), WriteOutcome::kRecorded);
  Record(E("u1", "order_completed", kT0 + absl::Hours(1), 10.0));
  ExperimentLayout changed = layout_;
  changed.metrics[1].window = 2 * kDay;  // revenue
  changed.metrics[1].guardrail = true;
  EXPECT_EQ(M(Read(changed), 0, "revenue").sum, 0);
  EXPECT_EQ(M(Read(changed), 0, "orders").sum,
            1);  // unchanged metric keeps its figures
  Record(changed, E("u1", "order_completed", kT0 + absl::Hours(2), 4.0));
  EXPECT_EQ(M(Read(changed), 0, "revenue").sum, 4);
  EXPECT_EQ(M(Read(), 0, "revenue").sum, 10);
  // Only a guardrail flag changed: same figures.
  ExperimentLayout flagged = layout_;
  flagged.metrics[2].guardrail = true;
  EXPECT_EQ(M(Read(flagged), 0, "orders").sum, 2);
}

// --- Batches -----------------------------------------------------------------

TEST_P(EventStoreConformance, BatchOfTenThousandIsAppliedInOneCall) {
  std::vector<Exposure> exposures;
  std::vector<Event> events;
  for (int i = 0; i < 10000; ++i) {
    std::string unit = absl::StrCat("unit-", i);
    exposures.push_back(X(unit, i % 2, kT0 + absl::Seconds(i)));
    events.push_back(E(unit, "order_completed",
                       kT0 + absl::Seconds(i) + absl::Minutes(1),
                       0.25 * (i % 100)));
  }
  absl::StatusOr<std::vector<WriteOutcome>> x =
      store_->WriteExposures(layout_, exposures);
  ASSERT_TRUE(x.ok()) << x.status();
  ASSERT_EQ(x->size(), 10000u);
  EXPECT_EQ(std::count(x->begin(), x->end(), WriteOutcome::kRecorded), 10000);
  absl::StatusOr<std::vector<WriteOutcome>> e =
      store_->WriteEvents(layout_, events);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(std::count(e->begin(), e->end(), WriteOutcome::kRecorded), 10000);
  // The same batch again: all duplicates.
  e = store_->WriteEvents(layout_, events);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(std::count(e->begin(), e->end(), WriteOutcome::kDuplicate), 10000);

  for (const Exposure& ex : exposures) oracle_.Expose(ex);
  for (const Event& ev : events) oracle_.Record(ev);
  ExperimentAggregates a = Read();
  EXPECT_EQ(a.variants[0].exposed + a.variants[1].exposed, 10000);
  EXPECT_EQ(M(a, 0, "orders").sum + M(a, 1, "orders").sum, 10000);
  ExpectMatchesOracle();
}

// --- Randomized: Redis == memory == brute force ------------------------------

TEST(EventStoreEquivalence,
     RandomMixedWritesGiveIdenticalFiguresInRedisMemoryAndBruteForce) {
  absl::StatusOr<std::unique_ptr<EventStore>> redis = MakeStore("redis");
  ASSERT_TRUE(redis.ok()) << redis.status();
  MemoryEventStore memory;
  ExperimentLayout layout = CheckoutLayout();
  layout.variant_keys = {"control", "treatment", "treatment_b"};
  // CUPED: two metrics on one covariate, one on another.
  layout.metrics.push_back(
      Binomial("order_conversion_cuped", "order_completed", 7 * kDay));
  layout.metrics.back().covariate = "orders_90d";
  layout.metrics.push_back(Sum("revenue_cuped", "order_completed",
                               EventAggregation::kValue, 14 * kDay));
  layout.metrics.back().covariate = "orders_90d";
  layout.metrics.push_back(Sum("revenue_by_spend", "order_completed",
                               EventAggregation::kValue, 14 * kDay));
  layout.metrics.back().covariate = "spend_90d";
  Oracle oracle(layout);

  std::mt19937_64 rng(20260302);
  auto uniform = [&](int lo, int hi) {
    return std::uniform_int_distribution<int>(lo, hi)(rng);
  };
  const char* kNames[] = {"order_completed", "order_completed", "app_open",
                          "click",           "impression",      "impression",
                          "page_view",       "view_checkout",   "view_checkout",
                          "submit_payment",  "submit_payment"};
  std::vector<std::string> used_keys;
  auto key_for = [&](const std::string& fresh) {
    if (!used_keys.empty() && uniform(0, 99) < 4)
      return used_keys[uniform(0, used_keys.size() - 1)];
    used_keys.push_back(fresh);
    return fresh;
  };

  int writes = 0;
  int batch_no = 0;
  std::map<WriteOutcome, int> seen;
  while (writes < 5000) {
    bool exposures = uniform(0, 99) < 35;
    // Some batches span several script calls of RedisEventStore (256 items
    // each), with the same units on both sides of a boundary.
    int size = uniform(0, 9) == 0 ? uniform(257, 700) : uniform(1, 120);
    ++batch_no;
    if (exposures) {
      std::vector<Exposure> batch;
      for (int i = 0; i < size; ++i) {
        int u = uniform(0, 399);
        int variant =
            uniform(0, 99) < 3 ? uniform(0, 2) : u % 3;  // 3% not ramp-safe
        absl::Time t =
            kT0 + absl::Milliseconds(uniform(0, 10 * 86400) * 1000LL +
                                     uniform(0, 999));
        batch.push_back(Exposure{absl::StrCat("user-", u), variant, t,
                                 absl::StrCat("cfg-", uniform(0, 2)),
                                 key_for(absl::StrCat("x", batch_no, "-", i))});
        // Most units carry each covariate; a repeat exposure may carry
        // another value, which must not replace the first.
        if (uniform(0, 9) < 8)
          batch.back().covariates["orders_90d"] = uniform(0, 12);
        if (uniform(0, 9) < 6)
          batch.back().covariates["spend_90d"] = 0.25 * uniform(-8, 2000);
      }
      std::vector<WriteOutcome> expected;
      for (const Exposure& e : batch) expected.push_back(oracle.Expose(e));
      absl::StatusOr<std::vector<WriteOutcome>> r =
          (*redis)->WriteExposures(layout, batch);
      absl::StatusOr<std::vector<WriteOutcome>> m =
          memory.WriteExposures(layout, batch);
      ASSERT_TRUE(r.ok()) << r.status();
      ASSERT_TRUE(m.ok()) << m.status();
      ASSERT_EQ(*r, expected) << "exposure batch " << batch_no;
      ASSERT_EQ(*m, expected) << "exposure batch " << batch_no;
      for (WriteOutcome o : expected) seen[o]++;
    } else {
      std::vector<Event> batch;
      for (int i = 0; i < size; ++i) {
        int u = uniform(0, 449);  // some units are never exposed
        const char* name = kNames[uniform(0, 6)];
        std::optional<double> value;
        if (uniform(0, 9) < 8) value = 0.25 * uniform(-40, 800);
        absl::Time t =
            kT0 + absl::Milliseconds(uniform(0, 20 * 86400) * 1000LL +
                                     uniform(0, 999));
        batch.push_back(Event{absl::StrCat("user-", u), name, value, t,
                              key_for(absl::StrCat("e", batch_no, "-", i))});
      }
      std::vector<WriteOutcome> expected;
      for (const Event& e : batch) expected.push_back(oracle.Record(e));
      absl::StatusOr<std::vector<WriteOutcome>> r =
          (*redis)->WriteEvents(layout, batch);
      absl::StatusOr<std::vector<WriteOutcome>> m =
          memory.WriteEvents(layout, batch);
      ASSERT_TRUE(r.ok()) << r.status();
      ASSERT_TRUE(m.ok()) << m.status();
      ASSERT_EQ(*r, expected) << "event batch " << batch_no;
      ASSERT_EQ(*m, expected) << "event batch " << batch_no;
      for (WriteOutcome o : expected) seen[o]++;
    }
    writes += size;
  }
  // The mix exercised every outcome.
  EXPECT_GT(seen[WriteOutcome::kRecorded], 1000);
  EXPECT_GT(seen[WriteOutcome::kDuplicate], 50);
  EXPECT_GT(seen[WriteOutcome::kIgnored], 500);
  EXPECT_GT(seen[WriteOutcome::kConflict], 5);

  absl::StatusOr<ExperimentAggregates> from_redis =
      (*redis)->ReadAggregates(layout);
  absl::StatusOr<ExperimentAggregates> from_memory =
      memory.ReadAggregates(layout);
  ASSERT_TRUE(from_redis.ok()) << from_redis.status();
  ASSERT_TRUE(from_memory.ok()) << from_memory.status();
  std::map<std::string, long double> expected = Flatten(oracle.Aggregates());
  EXPECT_GT(expected.size(), 300u);
  EXPECT_EQ(Flatten(*from_redis), expected);
  EXPECT_EQ(Flatten(*from_memory), expected);
}

// --- Redis: reading costs the same however many units there are -------------

TEST(RedisEventStoreCost, ReadAggregatesCommandCountDoesNotGrowWithUnits) {
  RedisPool* pool = nullptr;
  absl::StatusOr<std::unique_ptr<EventStore>> store = MakeStore("redis", &pool);
  ASSERT_TRUE(store.ok()) << store.status();

  auto populate = [&](const std::string& experiment, int units) {
    ExperimentLayout layout = CheckoutLayout();
    layout.key = experiment;
    for (int start = 0; start < units; start += 10000) {
      std::vector<Exposure> exposures;
      std::vector<Event> events;
      for (int i = start; i < std::min(units, start + 10000); ++i) {
        std::string unit = absl::StrCat("u", i);
        // Two cohort days in both experiments.
        absl::Time t = kT0 + (i % 2) * kDay;
        exposures.push_back({unit, i % 2, t, "cfg", absl::StrCat("x", i)});
        events.push_back({unit, "order_completed", 2.5, t + absl::Hours(1),
                          absl::StrCat("e", i)});
      }
      absl::StatusOr<std::vector<WriteOutcome>> x =
          (*store)->WriteExposures(layout, exposures);
      EXPECT_TRUE(x.ok()) << x.status();
      absl::StatusOr<std::vector<WriteOutcome>> e =
          (*store)->WriteEvents(layout, events);
      EXPECT_TRUE(e.ok()) << e.status();
    }
    return layout;
  };
  auto read_cost = [&](const ExperimentLayout& layout, int64_t* round_trips) {
    int64_t commands = pool->commands_sent();
    int64_t trips = pool->round_trips();
    absl::StatusOr<ExperimentAggregates> a = (*store)->ReadAggregates(layout);
    EXPECT_TRUE(a.ok()) << a.status();
    *round_trips = pool->round_trips() - trips;
    return pool->commands_sent() - commands;
  };

  ExperimentLayout small = populate("small", 10);
  ExperimentLayout large = populate("large", 20000);
  int64_t small_trips = 0, large_trips = 0;
  int64_t small_cost = read_cost(small, &small_trips);
  int64_t large_cost = read_cost(large, &large_trips);
  EXPECT_EQ(small_cost, large_cost);
  EXPECT_EQ(small_trips, large_trips);
  EXPECT_LE(large_cost, 4);  // agg, days, and one per cohort day
  absl::StatusOr<ExperimentAggregates> a = (*store)->ReadAggregates(large);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->variants[0].exposed + a->variants[1].exposed, 20000);
}

TEST(RedisEventStoreCost, BatchIsOneRoundTripForExposuresAndTwoForEvents) {
  RedisPool* pool = nullptr;
  absl::StatusOr<std::unique_ptr<EventStore>> store = MakeStore("redis", &pool);
  ASSERT_TRUE(store.ok()) << store.status();
  ExperimentLayout layout = CheckoutLayout();
  // Warm up: bucket counts and script loading.
  ASSERT_TRUE(
      (*store)->WriteExposures(layout, {{"w", 0, kT0, "cfg", "w"}}).ok());
  ASSERT_TRUE(
      (*store)
          ->WriteEvents(layout, {{"w", "click", std::nullopt, kT0, "w"}})
          .ok());
  std::vector<Event> events;
  for (int i = 0; i < 10000; ++i) {
    events.push_back({"w", "impression", std::nullopt, kT0 + absl::Seconds(i),
                      absl::StrCat(i)});
  }
  std::vector<Exposure> exposures;
  for (int i = 0; i < 10000; ++i) {
    exposures.push_back(
        {absl::StrCat("x", i), i % 2, kT0, "cfg", absl::StrCat("x", i)});
  }
  int64_t trips = pool->round_trips();
  ASSERT_TRUE((*store)->WriteExposures(layout, exposures).ok());
  EXPECT_EQ(pool->round_trips() - trips, 1);

  // Events: one round trip reads the units' records, one runs the scripts.
  trips = pool->round_trips();
  absl::StatusOr<std::vector<WriteOutcome>> r =
      (*store)->WriteEvents(layout, events);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(pool->round_trips() - trips, 2);
  EXPECT_EQ(std::count(r->begin(), r->end(), WriteOutcome::kRecorded), 10000);

  // When no event's unit is exposed, the read is all there is.
  for (Event& e : events) e.unit_id = "never_exposed";
  trips = pool->round_trips();
  r = (*store)->WriteEvents(layout, events);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(pool->round_trips() - trips, 1);
  EXPECT_EQ(std::count(r->begin(), r->end(), WriteOutcome::kIgnored), 10000);
}

TEST(RedisEventStoreCost,
     RecordedVariantsOfManyUnitsAndExperimentsIsOneRoundTrip) {
  RedisPool* pool = nullptr;
  absl::StatusOr<std::unique_ptr<EventStore>> store = MakeStore("redis", &pool);
  ASSERT_TRUE(store.ok()) << store.status();
  std::vector<ExperimentLayout> layouts(3, CheckoutLayout());
  for (int e = 0; e < 3; ++e) {
    layouts[e].key = absl::StrCat("sticky_", e);
    std::vector<Exposure> exposures;
    // Units 0..99 exposed to variant (unit + experiment) % 2; 100..199 not.
    for (int u = 0; u < 100; ++u) {
      exposures.push_back({absl::StrCat("u", u), (u + e) % 2, kT0, "cfg",
                           absl::StrCat("x", e, "-", u)});
    }
    ASSERT_TRUE((*store)->WriteExposures(layouts[e], exposures).ok());
  }
  std::vector<RecordedVariantQuery> queries;
  for (int u = 0; u < 200; ++u) {
    for (int e = 0; e < 3; ++e) {
      queries.push_back({&layouts[e], absl::StrCat("u", u)});
    }
  }
  int64_t trips = pool->round_trips();
  std::vector<RecordedVariantResult> got = (*store)->RecordedVariants(queries);
  EXPECT_EQ(pool->round_trips() - trips, 1);
  ASSERT_EQ(got.size(), queries.size());
  for (size_t i = 0; i < got.size(); ++i) {
    const int u = static_cast<int>(i / 3), e = static_cast<int>(i % 3);
    ASSERT_TRUE(got[i].ok()) << got[i].status();
    EXPECT_EQ(*got[i],
              u < 100 ? std::optional<int>((u + e) % 2) : std::optional<int>())
        << "unit " << u << " experiment " << e;
  }
  // A phase never written adds one read of its (missing) bucket counts.
  ExperimentLayout fresh = CheckoutLayout();
  fresh.key = "never_written";
  queries.push_back({&fresh, "u1"});
  trips = pool->round_trips();
  got = (*store)->RecordedVariants(queries);
  EXPECT_EQ(pool->round_trips() - trips, 2);
  ASSERT_TRUE(got.back().ok()) << got.back().status();
  EXPECT_EQ(*got.back(), std::nullopt);
}

// A Redis at maxmemory answers writes with OOM. That must be UNAVAILABLE, so
// the server spools the batch and the client retries, instead of INTERNAL,
// which would fail the call for good.
TEST(RedisEventStoreErrors, FullRedisIsUnavailableAndTheRetryCountsOnce) {
  RedisPool* pool = nullptr;
  absl::StatusOr<std::unique_ptr<EventStore>> store = MakeStore("redis", &pool);
  ASSERT_TRUE(store.ok()) << store.status();
  ExperimentLayout layout = CheckoutLayout();
  ASSERT_TRUE(
      (*store)->WriteExposures(layout, {{"a", 0, kT0, "cfg", "a"}}).ok());

  std::vector<RedisCommand> full = {{"CONFIG", "SET", "maxmemory", "1"}};
  ASSERT_TRUE(pool->Pipeline(full).ok());
  absl::StatusOr<std::vector<WriteOutcome>> refused =
      (*store)->WriteExposures(layout, {{"b", 1, kT0, "cfg", "b"}});
  std::vector<RedisCommand> unlimited = {{"CONFIG", "SET", "maxmemory", "0"}};
  ASSERT_TRUE(pool->Pipeline(unlimited).ok());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable)
      << refused.status();
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("OOM"));

  absl::StatusOr<std::vector<WriteOutcome>> retried =
      (*store)->WriteExposures(layout, {{"b", 1, kT0, "cfg", "b"}});
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_THAT(*retried, ElementsAre(WriteOutcome::kRecorded));
  absl::StatusOr<ExperimentAggregates> agg = (*store)->ReadAggregates(layout);
  ASSERT_TRUE(agg.ok()) << agg.status();
  EXPECT_EQ(agg->variants[0].exposed, 1);
  EXPECT_EQ(agg->variants[1].exposed, 1);
}

#ifdef ABEXP_CONFORMANCE_ON_CLUSTER
// --- Redis Cluster: one experiment over every master ------------------------

// The unit records one cluster node holds (HLEN of its unit hashes, read
// on the node itself).
absl::StatusOr<int64_t> UnitsOnNode(const RedisOptions& node) {
  absl::StatusOr<std::unique_ptr<RedisPool>> pool = RedisPool::Create(node);
  if (!pool.ok()) return pool.status();
  std::vector<RedisCommand> list = {{"KEYS", "abexp-test:*:u:*"}};
  absl::StatusOr<std::vector<RedisReply>> keys = (*pool)->Pipeline(list);
  if (!keys.ok()) return keys.status();
  std::vector<RedisCommand> lengths;
  for (const RedisReply& key : (*keys)[0].elements) {
    lengths.push_back({"HLEN", key.str});
  }
  int64_t units = 0;
  if (lengths.empty()) return units;
  absl::StatusOr<std::vector<RedisReply>> got = (*pool)->Pipeline(lengths);
  if (!got.ok()) return got.status();
  for (const RedisReply& n : *got) units += n.integer;
  return units;
}

// Units of one experiment recorded on the cluster: the unit records each
// master holds (HLEN of its unit hashes, read on the node itself).
TEST(RedisClusterEventStore, OneExperimentsUnitsAreOnEveryMaster) {
  SharedCluster* cluster = nullptr;
  absl::StatusOr<std::unique_ptr<RedisEventStore>> store =
      MakeClusterStore(&cluster);
  ASSERT_TRUE(store.ok()) << store.status();
  const ExperimentLayout layout = CheckoutLayout();
  constexpr int kUnits = 30000;
  for (int start = 0; start < kUnits; start += 5000) {
    std::vector<Exposure> exposures;
    for (int i = start; i < start + 5000; ++i) {
      exposures.push_back(
          {absl::StrCat("unit-", i), i % 2, kT0, "cfg", absl::StrCat("x", i)});
    }
    absl::StatusOr<std::vector<WriteOutcome>> r =
        (*store)->WriteExposures(layout, exposures);
    ASSERT_TRUE(r.ok()) << r.status();
  }
  int64_t total = 0;
  for (int i = 0; i < cluster->process->size(); ++i) {
    RedisOptions node;
    node.port = cluster->process->node(i).port();
    absl::StatusOr<int64_t> units = UnitsOnNode(node);
    ASSERT_TRUE(units.ok()) << units.status();
    // A master holds whole shards (16 tags, placed by their slots), so its
    // share is about a multiple of 1/16: here at least 2 of them. (The
    // issue's 20% per master is not met by every key: one master holds 3
    // of the 16 tags of this experiment, 18.75%.)
    EXPECT_GE(*units, kUnits / 8) << "master " << node.port << " holds only "
                                  << *units << " of " << kUnits << " units";
    total += *units;
  }
  EXPECT_EQ(total, kUnits);
  absl::StatusOr<ExperimentAggregates> a = (*store)->ReadAggregates(layout);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->variants[0].exposed + a->variants[1].exposed, kUnits);
}

// The server's default (shards 0): one shard per master, fixed in the
// phase's meta at its first write, each on a master of its own, so every
// master holds about a third of the units and a batch's records go in one
// script call per master.
TEST(RedisClusterEventStore, DefaultShardsAreOnePerMaster) {
  SharedCluster* cluster = nullptr;
  absl::StatusOr<std::unique_ptr<RedisEventStore>> flushed =
      MakeClusterStore(&cluster);
  ASSERT_TRUE(flushed.ok()) << flushed.status();
  RedisEventStoreOptions options;
  options.shards = 0;
  absl::StatusOr<std::unique_ptr<RedisEventStore>> store =
      RedisEventStore::Create(cluster->client.get(), options);
  ASSERT_TRUE(store.ok()) << store.status();
  const ExperimentLayout layout = CheckoutLayout();
  constexpr int kUnits = 9000;
  std::vector<Exposure> exposures;
  for (int i = 0; i < kUnits; ++i) {
    exposures.push_back(
        {absl::StrCat("unit-", i), i % 2, kT0, "cfg", absl::StrCat("x", i)});
  }
  absl::StatusOr<std::vector<WriteOutcome>> r =
      (*store)->WriteExposures(layout, exposures);
  ASSERT_TRUE(r.ok()) << r.status();
  const std::string meta = (*store)->KeyBase(layout) + "meta";
  std::vector<RedisCommand> get = {{"HGET", meta, "shards"}};
  absl::StatusOr<std::vector<RedisReply>> shards =
      cluster->client->Pipeline(get);
  ASSERT_TRUE(shards.ok()) << shards.status();
  EXPECT_EQ((*shards)[0].str, absl::StrCat(cluster->process->size()));
  for (int i = 0; i < cluster->process->size(); ++i) {
    RedisOptions node;
    node.port = cluster->process->node(i).port();
    absl::StatusOr<int64_t> units = UnitsOnNode(node);
    ASSERT_TRUE(units.ok()) << units.status();
    // One shard of three: a third of the units, give or take chance.
    EXPECT_GE(*units, kUnits / 4) << "master " << node.port << " holds only "
                                  << *units << " of " << kUnits << " units";
  }
  // Another server whose flag asks for more shards keeps the stored S.
  options.shards = 16;
  absl::StatusOr<std::unique_ptr<RedisEventStore>> other =
      RedisEventStore::Create(cluster->client.get(), options);
  ASSERT_TRUE(other.ok()) << other.status();
  absl::StatusOr<ExperimentAggregates> a = (*other)->ReadAggregates(layout);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->variants[0].exposed + a->variants[1].exposed, kUnits);
}
#endif  // ABEXP_CONFORMANCE_ON_CLUSTER

}  // namespace
}  // namespace abexp
