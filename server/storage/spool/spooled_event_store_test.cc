// SpooledEventStore over a MemoryEventStore that fails on command, with a
// real Spool in a temporary directory. Expected aggregates come from writing
// the same inputs straight into a fresh MemoryEventStore.
#include "server/storage/spool/spooled_event_store.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/civil_time.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/storage/spool/spool.h"
#include "server/testing/memory_event_store.h"

namespace abexp {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

constexpr absl::Duration kDay = absl::Hours(24);
// Generous: the replay thread only needs to be scheduled.
constexpr absl::Duration kWait = absl::Seconds(30);

// Monday 2026-03-02 10:00:00 UTC.
const absl::Time kT0 = absl::FromCivil(absl::CivilSecond(2026, 3, 2, 10, 0, 0),
                                       absl::UTCTimeZone());

ExperimentLayout CheckoutLayout() {
  ExperimentLayout layout;
  layout.key = "checkout";
  layout.phase = 2;
  layout.variant_keys = {"control", "treatment"};
  Metric conversion;
  conversion.key = "order_conversion";
  conversion.type = MetricType::kBinomial;
  conversion.source.event = "order_completed";
  conversion.window = 7 * kDay;
  Metric revenue;
  revenue.key = "revenue";
  revenue.type = MetricType::kSum;
  revenue.source = {"order_completed", EventAggregation::kValue};
  Metric aov;
  aov.key = "aov";
  aov.type = MetricType::kRatio;
  aov.numerator = {"order_completed", EventAggregation::kValue};
  aov.denominator = {"order_completed", EventAggregation::kCount};
  aov.guardrail = true;
  aov.higher_is_better = false;
  aov.description = "average order value";
  Metric retention;
  retention.key = "retention_d1";
  retention.type = MetricType::kRetention;
  retention.source.event = "app_open";
  retention.retention_day = 1;
  layout.metrics = {conversion, revenue, aov, retention};
  return layout;
}

Exposure Expose(const std::string& unit, int variant, absl::Time t,
                const std::string& key = "") {
  Exposure x;
  x.unit_id = unit;
  x.variant_index = variant;
  x.time = t;
  x.config_version = "cfg-1";
  x.idempotency_key =
      key.empty() ? absl::StrCat("x:", unit, ":", variant) : key;
  return x;
}

Event Order(const std::string& unit, double value, absl::Time t,
            const std::string& key) {
  Event e;
  e.unit_id = unit;
  e.name = "order_completed";
  e.value = value;
  e.time = t;
  e.idempotency_key = key;
  return e;
}

// A MemoryEventStore whose writes fail with `code` while failing() is set,
// optionally after applying the first `apply_before_failing` items of the
// batch (a connection lost mid-pipeline), and whose next write can be held
// at a gate.
class FlakyStore final : public EventStore {
 public:
  void Fail(absl::StatusCode code, size_t apply_before_failing = 0) {
    absl::MutexLock lock(&mu_);
    fail_code_ = code;
    apply_before_failing_ = apply_before_failing;
  }
  void Heal() { Fail(absl::StatusCode::kOk); }
  // Fail() then applies only to writes of this experiment ("" for all).
  void OnlyExperiment(const std::string& key) {
    absl::MutexLock lock(&mu_);
    only_key_ = key;
  }

  // The next write waits, once it has started, until Release().
  void HoldNextWrite() {
    absl::MutexLock lock(&mu_);
    hold_next_ = true;
  }
  void AwaitHeldWrite() { held_.WaitForNotification(); }
  void Release() { release_.Notify(); }

  int writes() const {
    absl::MutexLock lock(&mu_);
    return writes_;
  }
  MemoryEventStore& memory() { return memory_; }

  absl::StatusOr<std::vector<WriteOutcome>> WriteExposures(
      const ExperimentLayout& layout,
      absl::Span<const Exposure> exposures) override {
    return Write<Exposure>(layout, exposures,
                           [&](absl::Span<const Exposure> some) {
                             return memory_.WriteExposures(layout, some);
                           });
  }
  absl::StatusOr<std::vector<WriteOutcome>> WriteEvents(
      const ExperimentLayout& layout, absl::Span<const Event> events) override {
    return Write<Event>(layout, events, [&](absl::Span<const Event> some) {
      return memory_.WriteEvents(layout, some);
    });
  }
  absl::StatusOr<ExperimentAggregates> ReadAggregates(
      const ExperimentLayout& layout) override {
    return memory_.ReadAggregates(layout);
  }
  absl::StatusOr<std::optional<int>> RecordedVariant(
      const ExperimentLayout& layout, absl::string_view unit_id) override {
    return memory_.RecordedVariant(layout, unit_id);
  }

 private:
  template <typename T, typename F>
  absl::StatusOr<std::vector<WriteOutcome>> Write(
      const ExperimentLayout& layout, absl::Span<const T> items,
      const F& write) {
    bool hold = false;
    absl::StatusCode code;
    size_t apply = 0;
    {
      absl::MutexLock lock(&mu_);
      ++writes_;
      std::swap(hold, hold_next_);
      code = only_key_.empty() || only_key_ == layout.key
                 ? fail_code_
                 : absl::StatusCode::kOk;
      apply = apply_before_failing_;
    }
    if (hold) {
      held_.Notify();
      release_.WaitForNotification();
    }
    if (code == absl::StatusCode::kOk) return write(items);
    if (apply > 0) (void)write(items.subspan(0, std::min(apply, items.size())));
    return absl::Status(code, "injected backend failure");
  }

  MemoryEventStore memory_;
  mutable absl::Mutex mu_;
  absl::StatusCode fail_code_ ABSL_GUARDED_BY(mu_) = absl::StatusCode::kOk;
  size_t apply_before_failing_ ABSL_GUARDED_BY(mu_) = 0;
  std::string only_key_ ABSL_GUARDED_BY(mu_);
  bool hold_next_ ABSL_GUARDED_BY(mu_) = false;
  int writes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Notification held_;
  absl::Notification release_;
};

void ExpectSameFigures(const VariantAggregate& got,
                       const VariantAggregate& want) {
  EXPECT_EQ(got.exposed, want.exposed);
  ASSERT_EQ(got.metrics.size(), want.metrics.size());
  for (const auto& [key, w] : want.metrics) {
    SCOPED_TRACE(key);
    ASSERT_TRUE(got.metrics.count(key));
    const MetricAggregate& g = got.metrics.at(key);
    EXPECT_EQ(g.units, w.units);
    EXPECT_EQ(g.sum, w.sum);
    EXPECT_EQ(g.sum_sq, w.sum_sq);
    EXPECT_EQ(g.sum_num, w.sum_num);
    EXPECT_EQ(g.sum_den, w.sum_den);
    EXPECT_EQ(g.sum_num_sq, w.sum_num_sq);
    EXPECT_EQ(g.sum_den_sq, w.sum_den_sq);
    EXPECT_EQ(g.sum_num_den, w.sum_num_den);
  }
}

void ExpectSameAggregates(const ExperimentAggregates& got,
                          const ExperimentAggregates& want) {
  EXPECT_EQ(got.multi_exposed, want.multi_exposed);
  EXPECT_EQ(got.config_versions, want.config_versions);
  ASSERT_EQ(got.variants.size(), want.variants.size());
  for (size_t v = 0; v < want.variants.size(); ++v) {
    SCOPED_TRACE(absl::StrCat("variant ", v));
    ExpectSameFigures(got.variants[v], want.variants[v]);
  }
  ASSERT_EQ(got.daily.size(), want.daily.size());
  for (const auto& [day, variants] : want.daily) {
    SCOPED_TRACE(day);
    ASSERT_TRUE(got.daily.count(day));
    ASSERT_EQ(got.daily.at(day).size(), variants.size());
    for (size_t v = 0; v < variants.size(); ++v) {
      ExpectSameFigures(got.daily.at(day)[v], variants[v]);
    }
  }
}

class SpooledEventStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl =
        (fs::temp_directory_path() / "spooled_event_store_test.XXXXXX")
            .string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    store_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Fast options: no fsync, no group-commit wait, short backoff.
  static SpoolOptions FastSpool() {
    SpoolOptions o;
    o.sync = false;
    o.group_commit_window = absl::ZeroDuration();
    return o;
  }

  void Open(SpoolOptions spool_options = FastSpool()) {
    absl::StatusOr<std::unique_ptr<Spool>> spool =
        Spool::Open(dir_, spool_options);
    ASSERT_TRUE(spool.ok()) << spool.status();
    spool_ = spool->get();
    SpooledEventStoreOptions options;
    options.backend_name = "the flaky store";
    options.initial_backoff = absl::Milliseconds(1);
    options.max_backoff = absl::Milliseconds(20);
    options.rejected_spool = FastSpool();
    options.notify = [this](const std::string& message) {
      absl::MutexLock lock(&notices_mu_);
      notices_.push_back(message);
    };
    store_ = std::make_unique<SpooledEventStore>(&backend_, *std::move(spool),
                                                 options);
  }

  // Waits until the replay thread has emptied the spool and writes go
  // straight to the backend again.
  void AwaitDrained() {
    const absl::Time deadline = absl::Now() + kWait;
    SpooledEventStoreStats stats = store_->stats();
    while ((stats.spooling || stats.pending_records > 0) &&
           absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(2));
      stats = store_->stats();
    }
    ASSERT_FALSE(stats.spooling) << stats.last_replay_error;
    ASSERT_EQ(stats.pending_records, 0);
  }

  // What the backend holds for `layout`: `revenue` summed to `sum` in
  // variant 1.
  void ExpectRevenueInVariant1(const ExperimentLayout& layout, double sum) {
    SCOPED_TRACE(layout.key);
    absl::StatusOr<ExperimentAggregates> a =
        backend_.memory().ReadAggregates(layout);
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(a->variants[1].metrics["revenue"].sum, sum);
  }

  std::vector<std::string> Notices() {
    absl::MutexLock lock(&notices_mu_);
    return notices_;
  }

  std::string dir_;
  FlakyStore backend_;
  std::unique_ptr<SpooledEventStore> store_;
  Spool* spool_ = nullptr;  // owned by store_
  absl::Mutex notices_mu_;
  std::vector<std::string> notices_ ABSL_GUARDED_BY(notices_mu_);
};

TEST_F(SpooledEventStoreTest, WritesGoStraightToAHealthyBackend) {
  Open();
  const ExperimentLayout layout = CheckoutLayout();
  absl::StatusOr<std::vector<WriteOutcome>> exposed = store_->WriteExposures(
      layout, {Expose("u1", 0, kT0), Expose("u1", 0, kT0, "retry-key")});
  ASSERT_TRUE(exposed.ok()) << exposed.status();
  EXPECT_THAT(*exposed,
              ElementsAre(WriteOutcome::kRecorded, WriteOutcome::kDuplicate));
  absl::StatusOr<std::vector<WriteOutcome>> ordered = store_->WriteEvents(
      layout, {Order("u1", 20, kT0 + absl::Hours(1), "o1")});
  ASSERT_TRUE(ordered.ok()) << ordered.status();
  EXPECT_THAT(*ordered, ElementsAre(WriteOutcome::kRecorded));

  const SpooledEventStoreStats stats = store_->stats();
  EXPECT_EQ(stats.spooled_writes, 0);
  EXPECT_EQ(stats.pending_records, 0);
  EXPECT_FALSE(stats.spooling);
  absl::StatusOr<ExperimentAggregates> a = store_->ReadAggregates(layout);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->variants[0].exposed, 1);
  EXPECT_EQ(a->variants[0].metrics["revenue"].sum, 20);
}

TEST_F(SpooledEventStoreTest, TransientFailuresAreSpooledAndReportedSpooled) {
  Open();
  const ExperimentLayout layout = CheckoutLayout();
  int64_t batches = 0;
  for (absl::StatusCode code :
       {absl::StatusCode::kUnavailable, absl::StatusCode::kDeadlineExceeded,
        absl::StatusCode::kResourceExhausted, absl::StatusCode::kAborted}) {
    SCOPED_TRACE(absl::StatusCodeToString(code));
    backend_.Fail(code);
    const std::string unit = absl::StrCat("u-", batches);
    absl::StatusOr<std::vector<WriteOutcome>> out = store_->WriteExposures(
        layout, {Expose(unit, 0, kT0), Expose(unit + "b", 1, kT0)});
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_THAT(*out,
                ElementsAre(WriteOutcome::kSpooled, WriteOutcome::kSpooled));
    ++batches;
    SpooledEventStoreStats stats = store_->stats();
    EXPECT_EQ(stats.spooled_writes, batches);
    EXPECT_EQ(stats.spooled_items, 2 * batches);
    EXPECT_TRUE(stats.spooling);
    absl::StatusOr<std::optional<int>> v =
        backend_.memory().RecordedVariant(layout, unit);
    ASSERT_TRUE(v.ok());
    EXPECT_FALSE(v->has_value()) << "reached the backend while it failed";

    backend_.Heal();
    AwaitDrained();
    v = backend_.memory().RecordedVariant(layout, unit);
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(*v, std::optional<int>(0));
  }
  absl::StatusOr<ExperimentAggregates> a =
      backend_.memory().ReadAggregates(layout);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->variants[0].exposed, batches);
  EXPECT_EQ(a->variants[1].exposed, batches);
  EXPECT_EQ(store_->stats().replayed_items, 2 * batches);
  EXPECT_THAT(Notices(), Contains(HasSubstr("the flaky store failed")));
}

TEST_F(SpooledEventStoreTest, OtherBackendErrorsAreReturnedNotSpooled) {
  Open();
  for (absl::StatusCode code :
       {absl::StatusCode::kFailedPrecondition, absl::StatusCode::kInternal,
        absl::StatusCode::kPermissionDenied,
        absl::StatusCode::kInvalidArgument}) {
    SCOPED_TRACE(absl::StatusCodeToString(code));
    backend_.Fail(code);
    absl::StatusOr<std::vector<WriteOutcome>> out =
        store_->WriteExposures(CheckoutLayout(), {Expose("u1", 0, kT0)});
    EXPECT_EQ(out.status().code(), code);
  }
  EXPECT_EQ(store_->stats().spooled_writes, 0);
  EXPECT_EQ(store_->stats().pending_records, 0);
  EXPECT_FALSE(store_->stats().spooling);
}

TEST_F(SpooledEventStoreTest, ReplayKeepsArrivalOrderSoTheEventIsAttributed) {
  Open();
  const ExperimentLayout layout = CheckoutLayout();
  backend_.Fail(absl::StatusCode::kUnavailable);
  ASSERT_TRUE(store_->WriteExposures(layout, {Expose("u1", 1, kT0)}).ok());
  absl::StatusOr<std::vector<WriteOutcome>> ordered = store_->WriteEvents(
      layout, {Order("u1", 12.5, kT0 + absl::Minutes(5), "o1")});
  ASSERT_TRUE(ordered.ok()) << ordered.status();
  EXPECT_THAT(*ordered, ElementsAre(WriteOutcome::kSpooled));

  backend_.Heal();
  AwaitDrained();
  absl::StatusOr<ExperimentAggregates> a = store_->ReadAggregates(layout);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->variants[1].exposed, 1);
  // Applied before its exposure, the order would have been ignored.
  EXPECT_EQ(a->variants[1].metrics["order_conversion"].units, 1);
  EXPECT_EQ(a->variants[1].metrics["revenue"].sum, 12.5);
}

TEST_F(SpooledEventStoreTest, WhileTheSpoolHoldsWritesNewOnesQueueBehindThem) {
  Open();
  const ExperimentLayout layout = CheckoutLayout();
  backend_.Fail(absl::StatusCode::kUnavailable);
  ASSERT_TRUE(store_->WriteExposures(layout, {Expose("u1", 0, kT0)}).ok());
  // The backend is back, but the replay of the exposure is held inside it.
  backend_.HoldNextWrite();
  backend_.Heal();
  backend_.AwaitHeldWrite();

  // Sent straight to the backend this event would be ignored (its unit is
  // not exposed there yet); it must wait in the spool instead.
  absl::StatusOr<std::vector<WriteOutcome>> ordered = store_->WriteEvents(
      layout, {Order("u1", 8, kT0 + absl::Minutes(1), "o1")});
  ASSERT_TRUE(ordered.ok()) << ordered.status();
  EXPECT_THAT(*ordered, ElementsAre(WriteOutcome::kSpooled));
  backend_.Release();
  AwaitDrained();

  absl::StatusOr<ExperimentAggregates> a = store_->ReadAggregates(layout);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->variants[0].metrics["revenue"].sum, 8);
  // And once drained, writes go straight to the backend again.
  ordered = store_->WriteEvents(layout,
                                {Order("u1", 2, kT0 + absl::Minutes(2), "o2")});
  ASSERT_TRUE(ordered.ok());
  EXPECT_THAT(*ordered, ElementsAre(WriteOutcome::kRecorded));
  EXPECT_THAT(Notices(), Contains(HasSubstr("drained into the flaky store")));
}

TEST_F(SpooledEventStoreTest, ARestartReplaysWhatTheLastRunSpooled) {
  const ExperimentLayout layout = CheckoutLayout();
  backend_.Fail(absl::StatusCode::kUnavailable);
  Open();
  ASSERT_TRUE(
      store_
          ->WriteExposures(layout, {Expose("u1", 0, kT0), Expose("u2", 1, kT0)})
          .ok());
  ASSERT_TRUE(
      store_->WriteEvents(layout, {Order("u2", 30, kT0 + absl::Hours(2), "o1")})
          .ok());
  EXPECT_EQ(store_->stats().pending_records, 2);
  store_.reset();  // "shutdown" with the backend still down

  backend_.Heal();
  Open();  // same directory
  AwaitDrained();
  absl::StatusOr<ExperimentAggregates> a = store_->ReadAggregates(layout);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->variants[0].exposed, 1);
  EXPECT_EQ(a->variants[1].exposed, 1);
  EXPECT_EQ(a->variants[1].metrics["revenue"].sum, 30);
  EXPECT_EQ(store_->stats().replayed_writes, 2);
}

TEST_F(SpooledEventStoreTest,
       RecordsOfAnEarlierRunGoFirstEvenIfTheBackendIsUp) {
  const ExperimentLayout layout = CheckoutLayout();
  backend_.Fail(absl::StatusCode::kUnavailable);
  Open();
  ASSERT_TRUE(store_->WriteExposures(layout, {Expose("u1", 0, kT0)}).ok());
  store_.reset();

  backend_.HoldNextWrite();  // the replay of the exposure
  backend_.Heal();
  Open();
  backend_.AwaitHeldWrite();
  EXPECT_TRUE(store_->stats().spooling);
  absl::StatusOr<std::vector<WriteOutcome>> ordered = store_->WriteEvents(
      layout, {Order("u1", 5, kT0 + absl::Minutes(1), "o1")});
  ASSERT_TRUE(ordered.ok());
  EXPECT_THAT(*ordered, ElementsAre(WriteOutcome::kSpooled));
  backend_.Release();
  AwaitDrained();
  absl::StatusOr<ExperimentAggregates> a = store_->ReadAggregates(layout);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->variants[0].metrics["revenue"].sum, 5);
}

TEST_F(SpooledEventStoreTest, AFullSpoolRefusesWithUnavailableAndLosesNothing) {
  SpoolOptions small = FastSpool();
  small.max_bytes = 4096;
  small.segment_bytes = 1024;
  Open(small);
  const ExperimentLayout layout = CheckoutLayout();
  backend_.Fail(absl::StatusCode::kUnavailable);
  std::vector<std::string> acknowledged;
  absl::Status refused;
  for (int i = 0; i < 1000 && refused.ok(); ++i) {
    const std::string unit = absl::StrCat("unit-", i);
    absl::StatusOr<std::vector<WriteOutcome>> out =
        store_->WriteExposures(layout, {Expose(unit, i % 2, kT0)});
    if (out.ok()) {
      EXPECT_THAT(*out, Each(WriteOutcome::kSpooled));
      acknowledged.push_back(unit);
    } else {
      refused = out.status();
    }
  }
  ASSERT_FALSE(refused.ok()) << "a 4 KiB spool never filled up";
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(refused.message(), HasSubstr(dir_));
  EXPECT_THAT(refused.message(), HasSubstr("full"));
  EXPECT_THAT(refused.message(), HasSubstr("the flaky store has been failing"));
  EXPECT_THAT(refused.message(), HasSubstr("injected backend failure"));
  ASSERT_GT(acknowledged.size(), 5u);

  backend_.Heal();
  AwaitDrained();
  absl::StatusOr<ExperimentAggregates> a = store_->ReadAggregates(layout);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->variants[0].exposed + a->variants[1].exposed,
            static_cast<int64_t>(acknowledged.size()));
  for (const std::string& unit : acknowledged) {
    absl::StatusOr<std::optional<int>> v =
        store_->RecordedVariant(layout, unit);
    ASSERT_TRUE(v.ok());
    EXPECT_TRUE(v->has_value()) << unit << " was acknowledged but is missing";
  }
  // The refused write was not acknowledged; the client's retry now lands.
  absl::StatusOr<std::vector<WriteOutcome>> retry = store_->WriteExposures(
      layout, {Expose(absl::StrCat("unit-", acknowledged.size()), 0, kT0)});
  ASSERT_TRUE(retry.ok());
  EXPECT_THAT(*retry, ElementsAre(WriteOutcome::kRecorded));
}

// A mixed history written through the spooled store while the backend
// keeps failing (sometimes after applying part of a batch) must end with
// exactly the aggregates of writing it directly.
TEST_F(SpooledEventStoreTest, FinalAggregatesEqualThoseOfDirectWrites) {
  Open();
  const ExperimentLayout layout = CheckoutLayout();
  struct Step {
    std::vector<Exposure> exposures;
    std::vector<Event> events;
  };
  std::vector<Step> steps;
  for (int u = 0; u < 40; ++u) {
    const std::string unit = absl::StrCat("u", u);
    const absl::Time first = kT0 + absl::Minutes(u) + (u % 3) * kDay;
    Step expose;
    expose.exposures = {Expose(unit, u % 2, first)};
    if (u % 7 == 0)
      expose.exposures.push_back(
          Expose(unit, 1 - u % 2, first, "conflict-" + unit));
    if (u % 5 == 0) expose.exposures.push_back(expose.exposures[0]);  // retry
    steps.push_back(expose);
    Step orders;
    for (int k = 0; k < u % 4; ++k) {
      orders.events.push_back(Order(unit, 10 + 0.25 * k,
                                    first + absl::Hours(k * 30),
                                    absl::StrCat("o", u, "-", k)));
    }
    Event open;
    open.unit_id = unit;
    open.name = "app_open";
    open.time = first + absl::Hours(30);
    open.idempotency_key = absl::StrCat("open-", u);
    orders.events.push_back(open);
    if (u % 6 == 0) orders.events.push_back(orders.events[0]);  // retry
    steps.push_back(orders);
  }

  MemoryEventStore direct;
  for (size_t i = 0; i < steps.size(); ++i) {
    const Step& step = steps[i];
    ASSERT_TRUE(direct.WriteExposures(layout, step.exposures).ok());
    ASSERT_TRUE(direct.WriteEvents(layout, step.events).ok());
    // The backend fails and recovers in a pattern; some failures come after
    // part of the batch was applied.
    if (i % 9 == 3) backend_.Fail(absl::StatusCode::kUnavailable, 1);
    if (i % 9 == 5) backend_.Fail(absl::StatusCode::kDeadlineExceeded);
    if (i % 9 == 7) backend_.Heal();
    ASSERT_TRUE(store_->WriteExposures(layout, step.exposures).ok());
    ASSERT_TRUE(store_->WriteEvents(layout, step.events).ok());
  }
  EXPECT_GT(store_->stats().spooled_writes, 0);
  backend_.Heal();
  AwaitDrained();

  absl::StatusOr<ExperimentAggregates> want = direct.ReadAggregates(layout);
  absl::StatusOr<ExperimentAggregates> got = store_->ReadAggregates(layout);
  ASSERT_TRUE(want.ok());
  ASSERT_TRUE(got.ok());
  EXPECT_GT(want->multi_exposed, 0);
  ExpectSameAggregates(*got, *want);
}

// Writers that each expose their units and then send their events, while the
// backend fails and recovers underneath them: every event must find its
// exposure, whichever way the spooling and the switch back interleave.
TEST_F(SpooledEventStoreTest, ConcurrentWritersNeverOvertakeTheSpool) {
  Open();
  const ExperimentLayout layout = CheckoutLayout();
  constexpr int kThreads = 4;
  constexpr int kUnitsPerThread = 150;
  std::atomic<bool> done{false};
  std::thread flapper([&] {
    for (int i = 0; !done.load(); ++i) {
      if (i % 2 == 0) {
        backend_.Fail(absl::StatusCode::kUnavailable);
      } else {
        backend_.Heal();
      }
      absl::SleepFor(absl::Milliseconds(3));
    }
    backend_.Heal();
  });
  std::vector<std::thread> writers;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int u = 0; u < kUnitsPerThread; ++u) {
        const std::string unit = absl::StrCat("t", t, "-u", u);
        if (!store_->WriteExposures(layout, {Expose(unit, u % 2, kT0)}).ok()) {
          ++failures;
        }
        if (!store_
                 ->WriteEvents(layout, {Order(unit, 1, kT0 + absl::Seconds(1),
                                              "o-" + unit)})
                 .ok()) {
          ++failures;
        }
      }
    });
  }
  for (std::thread& w : writers) w.join();
  done.store(true);
  flapper.join();
  EXPECT_EQ(failures.load(), 0);
  AwaitDrained();

  absl::StatusOr<ExperimentAggregates> a = store_->ReadAggregates(layout);
  ASSERT_TRUE(a.ok());
  const int64_t units = kThreads * kUnitsPerThread;
  EXPECT_EQ(a->variants[0].exposed + a->variants[1].exposed, units);
  EXPECT_EQ(a->variants[0].metrics["order_conversion"].units +
                a->variants[1].metrics["order_conversion"].units,
            units)
      << "some event was applied before its unit's exposure";
}

TEST_F(SpooledEventStoreTest, SteadyWritersDoNotKeepTheSpoolFromDraining) {
  Open();
  const ExperimentLayout layout = CheckoutLayout();
  backend_.Fail(absl::StatusCode::kUnavailable);
  ASSERT_TRUE(store_->WriteExposures(layout, {Expose("first", 0, kT0)}).ok());
  ASSERT_TRUE(store_->stats().spooling);
  backend_.Heal();
  // Writers that never pause: while the replay empties the spool, more
  // always arrives behind it. The spool must still drain, with them
  // writing, and then writes go straight to the backend.
  constexpr int kThreads = 4;
  std::atomic<bool> drained{false};
  std::atomic<int64_t> written{1};
  std::atomic<int> failures{0};
  const absl::Time give_up = absl::Now() + kWait;
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int u = 0; !drained.load() && absl::Now() < give_up; ++u) {
        const std::string unit = absl::StrCat("t", t, "-u", u);
        if (store_->WriteExposures(layout, {Expose(unit, u % 2, kT0)}).ok()) {
          ++written;
        } else {
          ++failures;
        }
        if (!store_->stats().spooling) drained.store(true);
      }
    });
  }
  for (std::thread& w : writers) w.join();
  EXPECT_TRUE(drained.load())
      << "the spool never drained while writers kept writing; "
      << store_->stats().pending_records << " writes still pending";
  EXPECT_EQ(failures.load(), 0);
  AwaitDrained();
  absl::StatusOr<ExperimentAggregates> a = store_->ReadAggregates(layout);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->variants[0].exposed + a->variants[1].exposed, written.load());
}

TEST_F(SpooledEventStoreTest, DrainReplaysOrSaysWhatRemains) {
  Open();
  const ExperimentLayout layout = CheckoutLayout();
  backend_.Fail(absl::StatusCode::kUnavailable);
  ASSERT_TRUE(store_->WriteExposures(layout, {Expose("u1", 0, kT0)}).ok());
  ASSERT_TRUE(store_->WriteExposures(layout, {Expose("u2", 0, kT0)}).ok());

  absl::Status drained = store_->Drain(absl::Milliseconds(200));
  EXPECT_EQ(drained.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(drained.message(), HasSubstr("2 spooled writes"));
  EXPECT_THAT(drained.message(), HasSubstr(dir_));
  EXPECT_THAT(drained.message(), HasSubstr("injected backend failure"));
  EXPECT_EQ(store_->stats().pending_records, 2);

  backend_.Heal();
  EXPECT_TRUE(store_->Drain(kWait).ok());
  EXPECT_EQ(store_->stats().pending_records, 0);
  EXPECT_FALSE(store_->stats().spooling);
  absl::StatusOr<ExperimentAggregates> a = store_->ReadAggregates(layout);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->variants[0].exposed, 2);
}

TEST_F(SpooledEventStoreTest, AWriteThatCanNeverApplyIsSetAsideNotDropped) {
  Open();
  ExperimentLayout layout = CheckoutLayout();
  ExperimentLayout reordered = layout;  // a config edit without a phase bump
  std::swap(reordered.variant_keys[0], reordered.variant_keys[1]);
  backend_.Fail(absl::StatusCode::kUnavailable);
  ASSERT_TRUE(store_->WriteExposures(layout, {Expose("u1", 0, kT0)}).ok());
  ASSERT_TRUE(store_->WriteExposures(reordered, {Expose("u2", 0, kT0)}).ok());
  ASSERT_TRUE(store_->WriteExposures(layout, {Expose("u3", 1, kT0)}).ok());

  backend_.Heal();
  AwaitDrained();
  const SpooledEventStoreStats stats = store_->stats();
  EXPECT_EQ(stats.rejected_writes, 1);
  EXPECT_EQ(stats.replayed_writes, 2);
  absl::StatusOr<ExperimentAggregates> a = store_->ReadAggregates(layout);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->variants[0].exposed, 1);
  EXPECT_EQ(a->variants[1].exposed, 1);  // the write behind it went on
  EXPECT_THAT(Notices(), Contains(HasSubstr("set aside")));

  store_.reset();  // releases the rejected spool's lock
  absl::StatusOr<std::unique_ptr<Spool>> rejected =
      Spool::Open(dir_ + "/rejected", FastSpool());
  ASSERT_TRUE(rejected.ok()) << rejected.status();
  std::vector<SpooledWrite> kept;
  ASSERT_TRUE((*rejected)
                  ->Replay(
                      [&](absl::Span<const std::string> records) {
                        for (const std::string& r : records) {
                          absl::StatusOr<SpooledWrite> w =
                              DecodeSpooledWrite(r);
                          if (!w.ok()) return w.status();
                          kept.push_back(*std::move(w));
                        }
                        return absl::OkStatus();
                      },
                      16)
                  .ok());
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_EQ(kept[0].layout.variant_keys, reordered.variant_keys);
  ASSERT_EQ(kept[0].exposures.size(), 1u);
  EXPECT_EQ(kept[0].exposures[0].unit_id, "u2");
}

// Spooled exposures keep their config versions, and the replay counts them
// under the store's limit like direct writes: 40 versions spooled while the
// backend was down are 32 versions and "other" once replayed.
TEST_F(SpooledEventStoreTest, ReplayedConfigVersionsStayWithinTheLimit) {
  Open();
  const ExperimentLayout layout = CheckoutLayout();
  backend_.Fail(absl::StatusCode::kUnavailable);
  std::map<std::string, int64_t> want;
  for (int i = 0; i < 40; ++i) {
    Exposure x = Expose(absl::StrCat("u", i), i % 2, kT0);
    x.config_version = absl::StrFormat("%016x", i);
    absl::StatusOr<std::vector<WriteOutcome>> out =
        store_->WriteExposures(layout, {x});
    ASSERT_TRUE(out.ok()) << out.status();
    ASSERT_THAT(*out, ElementsAre(WriteOutcome::kSpooled));
    if (i < kDefaultMaxConfigVersions) want[x.config_version] = 1;
  }
  want["other"] = 40 - kDefaultMaxConfigVersions;
  backend_.Heal();
  AwaitDrained();
  absl::StatusOr<ExperimentAggregates> a =
      backend_.memory().ReadAggregates(layout);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->config_versions, want);
}

// Set-aside writes hold unit ids too: rejected/ is owner-only whatever the
// umask.
TEST_F(SpooledEventStoreTest, SetAsideWritesAreOwnerOnlyWhateverTheUmask) {
  const mode_t old_umask = ::umask(0);
  Open();
  ExperimentLayout reordered = CheckoutLayout();
  std::swap(reordered.variant_keys[0], reordered.variant_keys[1]);
  backend_.Fail(absl::StatusCode::kUnavailable);
  ASSERT_TRUE(
      store_->WriteExposures(CheckoutLayout(), {Expose("u1", 0, kT0)}).ok());
  ASSERT_TRUE(store_->WriteExposures(reordered, {Expose("u2", 0, kT0)}).ok());
  backend_.Heal();
  AwaitDrained();
  ASSERT_EQ(store_->stats().rejected_writes, 1);
  store_.reset();
  ::umask(old_umask);

  auto mode_of = [](const fs::path& p) {
    return fs::status(p).permissions() & fs::perms::all;
  };
  const fs::path rejected = fs::path(dir_) / "rejected";
  EXPECT_EQ(mode_of(dir_), fs::perms::owner_all);
  EXPECT_EQ(mode_of(rejected), fs::perms::owner_all);
  int files = 0;
  for (const auto& e : fs::directory_iterator(rejected)) {
    EXPECT_EQ(mode_of(e.path()), fs::perms::owner_read | fs::perms::owner_write)
        << e.path();
    ++files;
  }
  EXPECT_GE(files, 2);  // LOCK and a segment
}

// The recorder hands every experiment's events to WriteEventBatches at once.
// A batch the backend fails transiently is spooled (and from then on every
// write is, until replayed); the others keep the outcome the backend gave.
// CheckoutLayout() under another experiment key.
ExperimentLayout SearchLayout() {
  ExperimentLayout layout = CheckoutLayout();
  layout.key = "search";
  return layout;
}

TEST_F(SpooledEventStoreTest, OnlyTheFailedBatchOfSeveralIsSpooled) {
  Open();
  const ExperimentLayout checkout = CheckoutLayout();
  const ExperimentLayout search = SearchLayout();
  for (const ExperimentLayout* layout : {&checkout, &search}) {
    absl::StatusOr<std::vector<WriteOutcome>> exposed =
        store_->WriteExposures(*layout, {Expose("u1", 1, kT0)});
    ASSERT_TRUE(exposed.ok()) << exposed.status();
  }
  backend_.OnlyExperiment("search");
  backend_.Fail(absl::StatusCode::kUnavailable);

  const Event order = Order("u1", 20, kT0 + absl::Hours(1), "o1");
  const std::vector<const Event*> orders = {&order};  // shared by both
  const std::vector<EventBatch> batches = {{&checkout, orders},
                                           {&search, orders}};
  std::vector<WriteResult> results = store_->WriteEventBatches(batches);
  ASSERT_EQ(results.size(), 2u);
  ASSERT_TRUE(results[0].ok()) << results[0].status();
  ASSERT_TRUE(results[1].ok()) << results[1].status();
  EXPECT_THAT(*results[0], ElementsAre(WriteOutcome::kRecorded));
  EXPECT_THAT(*results[1], ElementsAre(WriteOutcome::kSpooled));
  EXPECT_EQ(store_->stats().spooled_writes, 1);
  EXPECT_TRUE(store_->stats().spooling);

  backend_.Heal();
  AwaitDrained();
  ExpectRevenueInVariant1(checkout, 20);
  ExpectRevenueInVariant1(search, 20);
}

// One event fans out to every experiment with a metric on it. While the
// backend fails, all of a call's batches go to the spool in one append:
// acknowledged together or not at all, so a nearly full spool never keeps
// part of a call, and the call costs one group-commit turn, not one per
// experiment.
TEST_F(SpooledEventStoreTest, AFanOutIsSpooledWholeOrNotAtAll) {
  const ExperimentLayout checkout = CheckoutLayout();
  const ExperimentLayout search = SearchLayout();
  const Event order = Order("u1", 20, kT0 + absl::Hours(1), "o1");
  const std::vector<const Event*> orders = {&order};
  const std::vector<EventBatch> batches = {{&checkout, orders},
                                           {&search, orders}};
  // Each record is framed by an 8-byte header (spool.h).
  const int64_t both =
      16 +
      static_cast<int64_t>(EncodeSpooledWrite({checkout, {}, {order}}).size() +
                           EncodeSpooledWrite({search, {}, {order}}).size());

  // A spool holding one exposure write, with room left for one of the
  // two event records but not both.
  const Exposure earlier = Expose("u0", 0, kT0);
  const int64_t first =
      8 + static_cast<int64_t>(
              EncodeSpooledWrite({checkout, {earlier}, {}}).size());
  SpoolOptions room_for_one = FastSpool();
  room_for_one.max_bytes = first + both - 1;
  Open(room_for_one);
  backend_.Fail(absl::StatusCode::kUnavailable);
  absl::StatusOr<std::vector<WriteOutcome>> kept =
      store_->WriteExposures(checkout, {earlier});
  ASSERT_TRUE(kept.ok()) << kept.status();
  std::vector<WriteResult> refused = store_->WriteEventBatches(batches);
  ASSERT_EQ(refused.size(), 2u);
  for (const WriteResult& r : refused) {
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(r.status().message(),
                HasSubstr("cannot accept 2 items for experiments 'checkout' "
                          "and 'search'"));
    EXPECT_THAT(r.status().message(), HasSubstr("full"));
  }
  EXPECT_EQ(store_->stats().spooled_writes, 1);
  EXPECT_EQ(spool_->pending_records(), 1);
  store_.reset();
  std::error_code ec;
  fs::remove_all(dir_, ec);
  backend_.Heal();

  SpoolOptions room_for_both = FastSpool();
  room_for_both.max_bytes = both;
  Open(room_for_both);
  for (const ExperimentLayout* layout : {&checkout, &search}) {
    ASSERT_TRUE(store_->WriteExposures(*layout, {Expose("u1", 1, kT0)}).ok());
  }
  backend_.Fail(absl::StatusCode::kUnavailable);
  std::vector<WriteResult> spooled = store_->WriteEventBatches(batches);
  ASSERT_EQ(spooled.size(), 2u);
  for (const WriteResult& r : spooled) {
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_THAT(*r, ElementsAre(WriteOutcome::kSpooled));
  }
  EXPECT_EQ(store_->stats().spooled_writes, 2);
  EXPECT_EQ(spool_->stats().appends, 1u);
  EXPECT_EQ(spool_->stats().records, 2u);

  backend_.Heal();
  AwaitDrained();
  ExpectRevenueInVariant1(checkout, 20);
  ExpectRevenueInVariant1(search, 20);
}

// A batch that fails with an error a replay cannot cure is returned as is;
// the others are still written.
TEST_F(SpooledEventStoreTest, APermanentErrorOfOneBatchLeavesTheOthersWritten) {
  Open();
  const ExperimentLayout checkout = CheckoutLayout();
  const ExperimentLayout search = SearchLayout();
  for (const ExperimentLayout* layout : {&checkout, &search}) {
    ASSERT_TRUE(store_->WriteExposures(*layout, {Expose("u1", 0, kT0)}).ok());
  }
  backend_.OnlyExperiment("checkout");
  backend_.Fail(absl::StatusCode::kFailedPrecondition);
  const Event order = Order("u1", 5, kT0 + absl::Hours(1), "o1");
  const std::vector<const Event*> orders = {&order};
  const std::vector<EventBatch> batches = {{&checkout, orders},
                                           {&search, orders}};
  std::vector<WriteResult> results = store_->WriteEventBatches(batches);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(results[1].ok()) << results[1].status();
  EXPECT_THAT(*results[1], ElementsAre(WriteOutcome::kRecorded));
  EXPECT_FALSE(store_->stats().spooling);
}

// A call larger than the whole spool fits when the backend is up, so while
// it is down that is transient: UNAVAILABLE (clients retry), never
// INVALID_ARGUMENT (clients drop), on both write paths.
TEST_F(SpooledEventStoreTest, ACallLargerThanTheWholeSpoolIsUnavailable) {
  SpoolOptions small = FastSpool();
  small.max_bytes = 2048;
  Open(small);
  const ExperimentLayout checkout = CheckoutLayout();
  const ExperimentLayout search = SearchLayout();
  std::vector<Exposure> exposures;
  std::vector<Event> orders;
  for (int i = 0; i < 100; ++i) {
    exposures.push_back(Expose(absl::StrCat("unit-", i), i % 2, kT0));
    orders.push_back(Order(absl::StrCat("unit-", i), 5, kT0 + absl::Hours(1),
                           absl::StrCat("o", i)));
  }
  std::vector<const Event*> order_ptrs;
  for (const Event& e : orders) order_ptrs.push_back(&e);
  const std::vector<EventBatch> batches = {{&checkout, order_ptrs},
                                           {&search, order_ptrs}};
  backend_.Fail(absl::StatusCode::kUnavailable);

  absl::StatusOr<std::vector<WriteOutcome>> exposed =
      store_->WriteExposures(checkout, exposures);
  ASSERT_FALSE(exposed.ok());
  EXPECT_EQ(exposed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(
      exposed.status().message(),
      AllOf(HasSubstr("cannot accept 100 items"),
            HasSubstr("more than the whole spool can hold"),
            HasSubstr("smaller calls"), HasSubstr("--spool_max_bytes")));
  std::vector<WriteResult> results = store_->WriteEventBatches(batches);
  ASSERT_EQ(results.size(), 2u);
  for (const WriteResult& r : results) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(r.status().message(), HasSubstr("--spool_max_bytes"));
  }
  EXPECT_EQ(store_->stats().spooled_writes, 0);

  // The same calls, retried once the backend is back, are recorded.
  backend_.Heal();
  AwaitDrained();
  exposed = store_->WriteExposures(checkout, exposures);
  ASSERT_TRUE(exposed.ok()) << exposed.status();
  EXPECT_THAT(*exposed, Each(WriteOutcome::kRecorded));
}

// The spool directory deleted under a running store: nothing more is
// acknowledged as spooled, what the spool held is counted as lost, and
// writes go straight to the backend again.
TEST_F(SpooledEventStoreTest, ADeletedSpoolDirectoryAcknowledgesNothingMore) {
  Open();
  const ExperimentLayout layout = CheckoutLayout();
  EXPECT_TRUE(store_->CanAcknowledge());
  backend_.Fail(absl::StatusCode::kUnavailable);
  absl::StatusOr<std::vector<WriteOutcome>> spooled =
      store_->WriteExposures(layout, {Expose("u1", 1, kT0)});
  ASSERT_TRUE(spooled.ok()) << spooled.status();
  EXPECT_THAT(*spooled, ElementsAre(WriteOutcome::kSpooled));

  fs::remove_all(dir_);
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<std::vector<WriteOutcome>> refused = store_->WriteExposures(
        layout, {Expose(absl::StrCat("u", i + 2), 0, kT0)});
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(refused.status().message(),
                AllOf(HasSubstr(dir_), HasSubstr("deleted"),
                      HasSubstr("the flaky store has been failing")));
  }
  EXPECT_FALSE(store_->CanAcknowledge());
  EXPECT_EQ(store_->stats().lost_records, 1);
  EXPECT_EQ(store_->stats().spooled_writes, 1);
  const absl::Time deadline = absl::Now() + kWait;
  auto said_lost = [&] {
    for (const std::string& n : Notices()) {
      if (absl::StrContains(n,
                            "1 writes it had acknowledged and not "
                            "replayed were in it and are lost")) {
        return true;
      }
    }
    return false;
  };
  while (!said_lost() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(2));
  }
  EXPECT_TRUE(said_lost()) << absl::StrJoin(Notices(), "\n");

  // Shutdown says the truth: nothing is left to replay, one write is lost.
  absl::Status drained = store_->Drain(absl::Milliseconds(50));
  EXPECT_EQ(drained.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(drained.message(), HasSubstr("1 writes it had acknowledged"));
  EXPECT_THAT(drained.message(), ::testing::Not(HasSubstr("next start")));

  // With the backend back, writes go straight to it; the spool is not
  // recreated.
  backend_.Heal();
  absl::StatusOr<std::vector<WriteOutcome>> direct =
      store_->WriteExposures(layout, {Expose("u9", 1, kT0)});
  ASSERT_TRUE(direct.ok()) << direct.status();
  EXPECT_THAT(*direct, ElementsAre(WriteOutcome::kRecorded));
  EXPECT_TRUE(store_->CanAcknowledge());
  EXPECT_FALSE(fs::exists(dir_));
}

// A spooled event the store refuses at replay as INVALID_ARGUMENT (a value
// beyond kMaxEventValue, from a caller that bypassed the recorder) is set
// aside with a notice, not retried forever nor reported drained as applied;
// the writes behind it are applied.
TEST_F(SpooledEventStoreTest, AWriteTheStoreRefusesAsInvalidIsSetAside) {
  Open();
  const ExperimentLayout checkout = CheckoutLayout();
  const ExperimentLayout search = SearchLayout();
  for (const ExperimentLayout* layout : {&checkout, &search}) {
    ASSERT_TRUE(store_->WriteExposures(*layout, {Expose("u1", 1, kT0)}).ok());
  }
  backend_.Fail(absl::StatusCode::kUnavailable);
  const absl::Time t = kT0 + absl::Hours(1);
  ASSERT_TRUE(store_->WriteEvents(checkout, {Order("u1", 20, t, "o1")}).ok());
  ASSERT_TRUE(store_->WriteEvents(search, {Order("u1", 1e308, t, "o2")}).ok());
  ASSERT_TRUE(store_->WriteEvents(checkout, {Order("u1", 5, t, "o3")}).ok());

  backend_.OnlyExperiment("search");
  backend_.Fail(absl::StatusCode::kInvalidArgument);
  AwaitDrained();
  const SpooledEventStoreStats stats = store_->stats();
  EXPECT_EQ(stats.rejected_writes, 1);
  EXPECT_EQ(stats.rejected_items, 1);
  EXPECT_EQ(stats.replayed_writes, 2);
  EXPECT_THAT(Notices(), Contains(AllOf(HasSubstr("set aside"),
                                        HasSubstr("INVALID_ARGUMENT"))));
  absl::StatusOr<ExperimentAggregates> a =
      backend_.memory().ReadAggregates(checkout);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->variants[1].metrics["revenue"].sum, 25);
  EXPECT_TRUE(fs::exists(dir_ + "/rejected"));
}

TEST(SpooledWriteEncoding, RoundTripsEveryField) {
  SpooledWrite events;
  events.layout = CheckoutLayout();
  events.layout.metrics[1].window = absl::Hours(36) + absl::Nanoseconds(7);
  events.layout.metrics[1].covariate = "orders_90d";
  Metric funnel;
  funnel.key = "checkout_funnel";
  funnel.type = MetricType::kFunnel;
  funnel.steps = {{"view_checkout", std::nullopt},
                  {"submit_payment", absl::Minutes(30)},
                  {"order_completed", std::nullopt}};
  events.layout.metrics.push_back(funnel);
  Event with_value =
      Order("unit-é", -0.1, kT0 + absl::Nanoseconds(123456789), "c:client-key");
  Event without_value = with_value;
  without_value.value.reset();
  without_value.name = "app_open";
  without_value.idempotency_key = "dr:0123456789abcdef";
  Event zero = with_value;
  zero.value = 0.0;  // set, but zero: must stay set
  events.events = {with_value, without_value, zero};

  absl::StatusOr<SpooledWrite> decoded =
      DecodeSpooledWrite(EncodeSpooledWrite(events));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->layout.key, "checkout");
  EXPECT_EQ(decoded->layout.phase, 2);
  EXPECT_EQ(decoded->layout.variant_keys, events.layout.variant_keys);
  ASSERT_EQ(decoded->layout.metrics.size(), events.layout.metrics.size());
  for (size_t i = 0; i < events.layout.metrics.size(); ++i) {
    const Metric& want = events.layout.metrics[i];
    const Metric& got = decoded->layout.metrics[i];
    SCOPED_TRACE(want.key);
    EXPECT_EQ(got.key, want.key);
    EXPECT_EQ(got.description, want.description);
    EXPECT_EQ(got.type, want.type);
    EXPECT_EQ(got.source.event, want.source.event);
    EXPECT_EQ(got.source.aggregation, want.source.aggregation);
    EXPECT_EQ(got.numerator.event, want.numerator.event);
    EXPECT_EQ(got.numerator.aggregation, want.numerator.aggregation);
    EXPECT_EQ(got.denominator.event, want.denominator.event);
    EXPECT_EQ(got.denominator.aggregation, want.denominator.aggregation);
    EXPECT_EQ(got.window, want.window);
    EXPECT_EQ(got.retention_day, want.retention_day);
    EXPECT_EQ(got.guardrail, want.guardrail);
    EXPECT_EQ(got.higher_is_better, want.higher_is_better);
    EXPECT_EQ(got.covariate, want.covariate);
    ASSERT_EQ(got.steps.size(), want.steps.size());
    for (size_t k = 0; k < want.steps.size(); ++k) {
      EXPECT_EQ(got.steps[k].event, want.steps[k].event);
      EXPECT_EQ(got.steps[k].window, want.steps[k].window);
    }
  }
  EXPECT_TRUE(decoded->exposures.empty());
  ASSERT_EQ(decoded->events.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const Event& want = events.events[i];
    const Event& got = decoded->events[i];
    EXPECT_EQ(got.unit_id, want.unit_id);
    EXPECT_EQ(got.name, want.name);
    EXPECT_EQ(got.value, want.value);
    EXPECT_EQ(got.time, want.time);
    EXPECT_EQ(got.idempotency_key, want.idempotency_key);
  }

  SpooledWrite exposures;
  exposures.layout = CheckoutLayout();
  exposures.exposures = {Expose("u1", 1, kT0 + absl::Nanoseconds(1), "dx:k"),
                         Expose("u2", 0, kT0)};
  exposures.exposures[1].config_version = "cfg-2";
  exposures.exposures[0].covariates = {{"orders_90d", 3.5}, {"spend", -0.25}};
  exposures.exposures[1].dimensions = {{"platform", "ios"}, {"plan", "pro"}};
  exposures.layout.dimensions = {{"platform", 20, {}}, {"plan", 3, {}}};
  decoded = DecodeSpooledWrite(EncodeSpooledWrite(exposures));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_TRUE(decoded->events.empty());
  ASSERT_EQ(decoded->exposures.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const Exposure& want = exposures.exposures[i];
    const Exposure& got = decoded->exposures[i];
    EXPECT_EQ(got.unit_id, want.unit_id);
    EXPECT_EQ(got.variant_index, want.variant_index);
    EXPECT_EQ(got.time, want.time);
    EXPECT_EQ(got.config_version, want.config_version);
    EXPECT_EQ(got.idempotency_key, want.idempotency_key);
    EXPECT_EQ(got.covariates, want.covariates);
    // A replayed exposure counts in its segments, as when written directly.
    EXPECT_EQ(got.dimensions, want.dimensions);
  }
  ASSERT_EQ(decoded->layout.dimensions.size(), 2u);
  EXPECT_EQ(decoded->layout.dimensions[1].attribute, "plan");
  EXPECT_EQ(decoded->layout.dimensions[1].max_values, 3);
}

TEST(SpooledWriteEncoding, GarbageAndAmbiguousRecordsAreDataLoss) {
  // Field 1 claims 16 bytes; 3 follow.
  EXPECT_EQ(DecodeSpooledWrite("\x0a\x10"
                               "abc")
                .status()
                .code(),
            absl::StatusCode::kDataLoss);
  SpooledWrite empty;
  empty.layout = CheckoutLayout();
  EXPECT_EQ(DecodeSpooledWrite(EncodeSpooledWrite(empty)).status().code(),
            absl::StatusCode::kDataLoss);
  SpooledWrite both = empty;
  both.exposures = {Expose("u1", 0, kT0)};
  both.events = {Order("u1", 1, kT0, "o")};
  EXPECT_EQ(DecodeSpooledWrite(EncodeSpooledWrite(both)).status().code(),
            absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace abexp
