#include "server/core/recorder.h"

#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/assigner.h"
#include "server/core/config_parser.h"
#include "server/testing/memory_event_store.h"

namespace abexp {
namespace {

using ::testing::HasSubstr;

constexpr char kConfig[] = R"(
holdout:
  fraction: 0.2
metrics:
  - key: order_conversion
    type: binomial
    event: order_completed
  - key: revenue
    type: sum
    event: order_completed
    aggregate: value
  - key: device_opens
    type: sum
    event: app_open
    aggregate: count
experiments:
  - key: checkout
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    qa_overrides:
      treatment: [qa-user]
    metrics: [order_conversion, revenue]
    primary_metric: order_conversion
  - key: pricing
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: cheap, weight: 50}
    metrics: [revenue]
    primary_metric: revenue
  - key: onboarding
    status: running
    unit: device_id
    variants:
      - {key: control, weight: 50}
      - {key: tour, weight: 50}
    metrics: [device_opens]
    primary_metric: device_opens
  - key: later
    status: running
    start: 2030-01-01T00:00:00Z
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [order_conversion]
    primary_metric: order_conversion
  - key: drafted
    status: draft
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [order_conversion]
    primary_metric: order_conversion
  - key: paused_one
    status: paused
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [revenue]
    primary_metric: revenue
)";

const absl::Time kNow = absl::FromUnixSeconds(1795000000);  // 2026-11-19

class RecorderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ParseResult parsed = ParseConfig(kConfig, "recorder_test.yaml");
    ASSERT_TRUE(parsed.ok()) << parsed.diagnostics.front().ToString();
    config_ = parsed.config;
    // Units in and out of the holdout, as the assigner decides.
    for (int i = 0; held_out_.empty() || counted_.size() < 20; ++i) {
      const std::string id = absl::StrCat("u-", i);
      absl::StatusOr<AssignResult> r = Assign(*config_, UserUnit(id), {});
      ASSERT_TRUE(r.ok()) << r.status();
      (r->in_holdout ? held_out_ : counted_).push_back(id);
    }
  }

  static Unit UserUnit(const std::string& id) {
    Unit unit;
    unit.ids["user_id"] = id;
    return unit;
  }

  ExposureInput Expose(const std::string& experiment, const std::string& user,
                       const std::string& variant) const {
    ExposureInput x;
    x.experiment_key = experiment;
    x.unit = UserUnit(user);
    x.variant_key = variant;
    x.time = kNow - absl::Hours(1);
    return x;
  }

  EventInput Track(const std::string& user, const std::string& name,
                   std::optional<double> value) const {
    EventInput e;
    e.unit = UserUnit(user);
    e.name = name;
    e.value = value;
    e.time = kNow;
    return e;
  }

  ExperimentAggregates Aggregates(const std::string& experiment) {
    const Experiment* e = config_->FindExperiment(experiment);
    EXPECT_NE(e, nullptr);
    absl::StatusOr<ExperimentAggregates> a =
        store_.ReadAggregates(LayoutOf(*config_, *e));
    EXPECT_TRUE(a.ok()) << a.status();
    return a.ok() ? *a : ExperimentAggregates();
  }

  int64_t Exposed(const std::string& experiment) {
    int64_t n = 0;
    for (const VariantAggregate& v : Aggregates(experiment).variants) {
      n += v.exposed;
    }
    return n;
  }

  std::shared_ptr<const IndexedConfig> config_;
  std::vector<std::string> held_out_;
  std::vector<std::string> counted_;
  MemoryEventStore store_;
  Recorder recorder_{&store_};
};

TEST_F(RecorderTest, MalformedItemFailsTheBatchNamingTheFieldAndWritesNothing) {
  struct Case {
    std::function<void(EventInput*)> mutate;
    std::string field;
    std::string fix;
  };
  const std::vector<Case> cases = {
      {[](EventInput* e) { e->value = std::nan(""); }, "events[1].value is NaN",
       "send a finite number or leave value unset"},
      {[](EventInput* e) {
         e->value = std::numeric_limits<double>::infinity();
       },
       "events[1].value is infinite", "finite"},
      {[](EventInput* e) { e->time = kNow + absl::Hours(25); },
       "events[1].time", "more than 24h after"},
      {[](EventInput* e) { e->time = absl::FromUnixSeconds(0); },
       "events[1].time", "before 2000"},
      {[](EventInput* e) { e->name.clear(); }, "events[1].name is empty",
       "order_completed"},
      {[](EventInput* e) {
         e->name = std::string(kMaxEventNameBytes + 1, 'x');
       },
       "events[1].name is", "at most"},
      {[](EventInput* e) {
         e->idempotency_key = std::string(kMaxIdempotencyKeyBytes + 1, 'k');
       },
       "events[1].idempotency_key", "at most"},
      {[](EventInput* e) { e->unit.ids.clear(); },
       "events[1].unit.ids is empty", "user_id"},
  };
  ASSERT_TRUE(recorder_
                  .RecordExposures(*config_,
                                   {Expose("checkout", counted_[0], "control")},
                                   kNow)
                  .ok());
  for (const Case& c : cases) {
    std::vector<EventInput> batch = {Track(counted_[0], "order_completed", 10),
                                     Track(counted_[0], "order_completed", 20)};
    c.mutate(&batch[1]);
    absl::StatusOr<RecordBatchResult> r =
        recorder_.RecordEvents(*config_, batch, kNow);
    ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(r.status().message(), HasSubstr(c.field));
    EXPECT_THAT(r.status().message(), HasSubstr(c.fix));
  }
  // Item 0 was valid, but the batch failed as a whole.
  EXPECT_EQ(Aggregates("checkout").variants[0].metrics["revenue"].units, 0);
}

TEST_F(RecorderTest, ExposureToAVariantTheExperimentLacksIsInvalid) {
  absl::StatusOr<RecordBatchResult> r =
      recorder_.RecordExposures(*config_,
                                {Expose("checkout", counted_[0], "control"),
                                 Expose("checkout", counted_[1], "treatmnet")},
                                kNow);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(),
              HasSubstr("exposures[1].variant_key 'treatmnet' is not a variant "
                        "of 'checkout'"));
  EXPECT_THAT(r.status().message(), HasSubstr("control, treatment"));
  EXPECT_EQ(Exposed("checkout"), 0);
}

TEST_F(RecorderTest, ConfigVersionMustBeOneTheServerEmits) {
  // Exposures are counted per config version, so invented ones are refused
  // whole, with the value quoted escaped and the form expected.
  const struct {
    std::string version;
    std::string quoted;
  } cases[] = {
      {"v1", "\"v1\""},
      {"2D06800538D394C2", "\"2D06800538D394C2\""},  // upper case
      {"2d06800538d394c", "\"2d06800538d394c\""},    // 15 digits
      {"2d06800538d394c2a", "\"2d06800538d394c2a\""},
      {"2d0680\n538d394c2", "\"2d0680\\n538d394c2\""},
      {std::string(5000, 'a'), "(5000 bytes)"},
  };
  for (const auto& c : cases) {
    ExposureInput x = Expose("checkout", counted_[0], "control");
    x.config_version = c.version;
    absl::StatusOr<RecordBatchResult> r = recorder_.RecordExposures(
        *config_, {Expose("checkout", counted_[1], "control"), x}, kNow);
    ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
        << c.quoted;
    EXPECT_THAT(r.status().message(),
                HasSubstr("exposures[1].config_version is "));
    EXPECT_THAT(r.status().message(), HasSubstr(c.quoted));
    EXPECT_THAT(r.status().message(), HasSubstr("16 lowercase hex digits"));
    EXPECT_LT(r.status().message().size(), 400u);
  }
  EXPECT_EQ(Exposed("checkout"), 0);

  // The server's form is counted under that version, and unset means the
  // version served now.
  ExposureInput older = Expose("checkout", counted_[0], "control");
  older.config_version = "0123456789abcdef";
  ASSERT_TRUE(recorder_
                  .RecordExposures(
                      *config_,
                      {older, Expose("checkout", counted_[1], "treatment")},
                      kNow)
                  .ok());
  EXPECT_EQ(Aggregates("checkout").config_versions,
            (std::map<std::string, int64_t>{{"0123456789abcdef", 1},
                                            {config_->version, 1}}));
}

TEST_F(RecorderTest, ExposureWithoutTheExperimentsIdTypeIsInvalid) {
  ExposureInput x = Expose("onboarding", counted_[0], "tour");
  absl::StatusOr<RecordBatchResult> r =
      recorder_.RecordExposures(*config_, {x}, kNow);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(),
              HasSubstr("exposures[0].unit.ids has no 'device_id'"));
}

TEST_F(RecorderTest, UnknownExperimentsAndEventsAreAcceptedAndIgnored) {
  absl::StatusOr<RecordBatchResult> x = recorder_.RecordExposures(
      *config_, {Expose("no_such_experiment", counted_[0], "anything")}, kNow);
  ASSERT_TRUE(x.ok()) << x.status();
  EXPECT_EQ(x->results[0].outcome, WriteOutcome::kIgnored);
  EXPECT_EQ(x->results[0].ignore_reason, IgnoreReason::kUnknownExperiment);
  EXPECT_EQ(x->ignored, 1);

  ASSERT_TRUE(recorder_
                  .RecordExposures(*config_,
                                   {Expose("checkout", counted_[0], "control")},
                                   kNow)
                  .ok());
  absl::StatusOr<RecordBatchResult> e = recorder_.RecordEvents(
      *config_, {Track(counted_[0], "page_scrolled", 3)}, kNow);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->results[0].outcome, WriteOutcome::kIgnored);
  EXPECT_EQ(e->results[0].ignore_reason, IgnoreReason::kNoMetric);
  EXPECT_EQ(e->config_version, config_->version);
}

TEST_F(RecorderTest, ExposuresOutsideARunningScheduleAreIgnored) {
  absl::StatusOr<RecordBatchResult> r =
      recorder_.RecordExposures(*config_,
                                {Expose("later", counted_[0], "control"),
                                 Expose("drafted", counted_[0], "control"),
                                 Expose("paused_one", counted_[0], "control")},
                                kNow);
  ASSERT_TRUE(r.ok()) << r.status();
  for (const RecordResult& result : r->results) {
    EXPECT_EQ(result.outcome, WriteOutcome::kIgnored);
    EXPECT_EQ(result.ignore_reason, IgnoreReason::kNotRunning);
  }
  EXPECT_EQ(Exposed("later"), 0);
  EXPECT_EQ(Exposed("paused_one"), 0);
}

TEST_F(RecorderTest, QaOverrideAndHoldoutUnitsAreExcluded) {
  absl::StatusOr<RecordBatchResult> r =
      recorder_.RecordExposures(*config_,
                                {Expose("checkout", "qa-user", "treatment"),
                                 Expose("checkout", held_out_[0], "control"),
                                 Expose("checkout", counted_[0], "control")},
                                kNow);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->results[0].ignore_reason, IgnoreReason::kQaOverride);
  EXPECT_EQ(r->results[1].ignore_reason, IgnoreReason::kHoldout);
  EXPECT_EQ(r->results[2].outcome, WriteOutcome::kRecorded);
  EXPECT_EQ(r->recorded, 1);
  EXPECT_EQ(r->ignored, 2);
  EXPECT_EQ(Exposed("checkout"), 1);

  // qa-user is forced only in checkout; in pricing it counts as usual.
  ASSERT_TRUE(recorder_
                  .RecordExposures(
                      *config_, {Expose("pricing", "qa-user", "cheap")}, kNow)
                  .ok());
  absl::StatusOr<RecordBatchResult> e =
      recorder_.RecordEvents(*config_,
                             {Track("qa-user", "order_completed", 5),
                              Track(held_out_[0], "order_completed", 5)},
                             kNow);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->results[0].outcome, WriteOutcome::kRecorded);
  EXPECT_EQ(e->results[0].experiments_recorded, 1);
  EXPECT_EQ(e->results[1].outcome, WriteOutcome::kIgnored);
  EXPECT_EQ(e->results[1].ignore_reason, IgnoreReason::kHoldout);
  for (const VariantAggregate& v : Aggregates("checkout").variants) {
    EXPECT_EQ(v.metrics.at("revenue").sum, 0);
  }
  EXPECT_EQ(Aggregates("pricing").variants[1].metrics["revenue"].sum, 5);
}

TEST_F(RecorderTest, AnEventCountsInEveryExperimentWhoseMetricsUseIt) {
  const std::string& user = counted_[0];
  ASSERT_TRUE(recorder_
                  .RecordExposures(*config_,
                                   {Expose("checkout", user, "treatment"),
                                    Expose("pricing", user, "cheap")},
                                   kNow)
                  .ok());
  absl::StatusOr<RecordBatchResult> r = recorder_.RecordEvents(
      *config_, {Track(user, "order_completed", 59.9)}, kNow);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->results[0].outcome, WriteOutcome::kRecorded);
  EXPECT_EQ(r->results[0].experiments_recorded, 2);

  ExperimentAggregates checkout = Aggregates("checkout");
  EXPECT_EQ(checkout.variants[1].exposed, 1);
  EXPECT_EQ(checkout.variants[1].metrics["order_conversion"].units, 1);
  EXPECT_DOUBLE_EQ(
      static_cast<double>(checkout.variants[1].metrics["revenue"].sum), 59.9);
  ExperimentAggregates pricing = Aggregates("pricing");
  EXPECT_DOUBLE_EQ(
      static_cast<double>(pricing.variants[1].metrics["revenue"].sum), 59.9);
  EXPECT_EQ(pricing.variants[0].metrics["revenue"].units, 0);
}

TEST_F(RecorderTest, EventsFollowTheUnitIdTypeOfEachExperiment) {
  ExposureInput x = Expose("onboarding", counted_[0], "tour");
  x.unit.ids = {{"device_id", "d-1"}};
  ASSERT_TRUE(recorder_.RecordExposures(*config_, {x}, kNow).ok());

  EventInput by_user = Track(counted_[0], "app_open", std::nullopt);
  EventInput by_device = by_user;
  by_device.unit.ids = {{"device_id", "d-1"}, {"user_id", counted_[0]}};
  absl::StatusOr<RecordBatchResult> r =
      recorder_.RecordEvents(*config_, {by_user, by_device}, kNow);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->results[0].outcome, WriteOutcome::kIgnored);
  EXPECT_EQ(r->results[0].ignore_reason, IgnoreReason::kMissingUnitId);
  EXPECT_EQ(r->results[1].outcome, WriteOutcome::kRecorded);
  EXPECT_DOUBLE_EQ(
      static_cast<double>(
          Aggregates("onboarding").variants[1].metrics["device_opens"].sum),
      1);
}

TEST_F(RecorderTest, AnAssignmentAloneIsNotAnExposure) {
  const std::string& user = counted_[0];
  absl::StatusOr<AssignResult> assigned = Assign(*config_, UserUnit(user), {});
  ASSERT_TRUE(assigned.ok());
  ASSERT_FALSE(assigned->assignments.empty());
  absl::StatusOr<RecordBatchResult> r = recorder_.RecordEvents(
      *config_, {Track(user, "order_completed", 10)}, kNow);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->results[0].outcome, WriteOutcome::kIgnored);
  EXPECT_EQ(r->results[0].ignore_reason, IgnoreReason::kNotAttributed);
  EXPECT_EQ(Exposed("checkout"), 0);
  EXPECT_EQ(Aggregates("checkout").variants[0].metrics["revenue"].units, 0);
}

TEST_F(RecorderTest, RetriedBatchesWithoutKeysCountOnce) {
  std::vector<ExposureInput> exposures;
  std::vector<EventInput> events;
  for (int i = 0; i < 10; ++i) {
    exposures.push_back(Expose("checkout", counted_[i], "control"));
    exposures.back().time.reset();  // the server's time: differs per attempt
    events.push_back(Track(counted_[i], "order_completed", i + 0.5));
  }
  for (int attempt = 0; attempt < 3; ++attempt) {
    absl::StatusOr<RecordBatchResult> x = recorder_.RecordExposures(
        *config_, exposures, kNow + absl::Seconds(attempt));
    ASSERT_TRUE(x.ok()) << x.status();
    EXPECT_EQ(x->recorded, attempt == 0 ? 10 : 0);
    EXPECT_EQ(x->duplicate, attempt == 0 ? 0 : 10);
    absl::StatusOr<RecordBatchResult> e =
        recorder_.RecordEvents(*config_, events, kNow + absl::Seconds(attempt));
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_EQ(e->recorded, attempt == 0 ? 10 : 0);
    EXPECT_EQ(e->duplicate, attempt == 0 ? 0 : 10);
  }
  ExperimentAggregates a = Aggregates("checkout");
  EXPECT_EQ(a.variants[0].exposed, 10);
  EXPECT_EQ(a.config_versions[config_->version], 10);
  double expected_sum = 0;
  for (int i = 0; i < 10; ++i) expected_sum += i + 0.5;
  EXPECT_DOUBLE_EQ(static_cast<double>(a.variants[0].metrics["revenue"].sum),
                   expected_sum);
  EXPECT_EQ(a.variants[0].metrics["order_conversion"].units, 10);
}

TEST_F(RecorderTest, DistinctEventsAtTheSameInstantNeedTheirOwnKeys) {
  ASSERT_TRUE(recorder_
                  .RecordExposures(*config_,
                                   {Expose("checkout", counted_[0], "control")},
                                   kNow)
                  .ok());
  EventInput a = Track(counted_[0], "order_completed", 10);
  EventInput b = a;
  a.idempotency_key = "order-1";
  b.idempotency_key = "order-2";
  absl::StatusOr<RecordBatchResult> r =
      recorder_.RecordEvents(*config_, {a, b, a}, kNow);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->recorded, 2);
  EXPECT_EQ(r->duplicate, 1);
  EXPECT_DOUBLE_EQ(
      static_cast<double>(
          Aggregates("checkout").variants[0].metrics["revenue"].sum),
      20);
}

TEST_F(RecorderTest, AnExposureToASecondVariantIsAConflict) {
  ExposureInput again = Expose("checkout", counted_[0], "control");
  again.time = *again.time + absl::Minutes(1);  // not a retry of the first
  absl::StatusOr<RecordBatchResult> r = recorder_.RecordExposures(
      *config_,
      {Expose("checkout", counted_[0], "control"),
       Expose("checkout", counted_[0], "treatment"), again},
      kNow);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->results[0].outcome, WriteOutcome::kRecorded);
  EXPECT_EQ(r->results[1].outcome, WriteOutcome::kConflict);
  EXPECT_EQ(r->results[2].outcome, WriteOutcome::kIgnored);
  EXPECT_EQ(r->results[2].ignore_reason, IgnoreReason::kMultiExposed);
  EXPECT_EQ(Aggregates("checkout").multi_exposed, 1);
}

TEST(RecorderCovariates,
     AFiniteNumberAttributeIsStoredAndAnythingElseIsMissing) {
  ParseResult parsed = ParseConfig(R"(
metrics:
  - {key: orders, type: sum, event: order_completed, aggregate: count, covariate: orders_90d}
experiments:
  - key: cuped
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [orders]
    primary_metric: orders
)",
                                   "covariates.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.FormatDiagnostics();
  MemoryEventStore store;
  Recorder recorder(&store);
  auto expose = [](const std::string& id) {
    ExposureInput x;
    x.experiment_key = "cuped";
    x.unit.ids["user_id"] = id;
    x.variant_key = "control";
    x.time = kNow - absl::Hours(1);
    return x;
  };
  std::vector<ExposureInput> batch = {expose("number"), expose("text"),
                                      expose("too_big"), expose("none")};
  batch[0].unit.attributes["orders_90d"] = 3.0;
  batch[1].unit.attributes["orders_90d"] = std::string("3");
  batch[2].unit.attributes["orders_90d"] = 1e16;  // beyond kMaxEventValue
  absl::StatusOr<RecordBatchResult> r =
      recorder.RecordExposures(*parsed.config, batch, kNow);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->recorded, 4);
  absl::StatusOr<ExperimentAggregates> a = store.ReadAggregates(
      LayoutOf(*parsed.config, *parsed.config->FindExperiment("cuped")));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->variants[0].exposed, 4);
  const MetricAggregate& orders = a->variants[0].metrics.at("orders");
  EXPECT_EQ(orders.cuped_units, 1);  // only "number" has a usable covariate
  EXPECT_EQ(orders.cuped_sum_x, 3);
  EXPECT_EQ(orders.cuped_sum_x_sq, 9);
}

// Spools the writes of one experiment (as SpooledEventStore does while its
// backend fails) and passes the others to a MemoryEventStore.
class SpoolOneExperimentStore final : public EventStore {
 public:
  SpoolOneExperimentStore(EventStore* store, std::string spooled)
      : store_(store), spooled_(std::move(spooled)) {}
  absl::StatusOr<std::vector<WriteOutcome>> WriteExposures(
      const ExperimentLayout& layout,
      absl::Span<const Exposure> exposures) override {
    if (layout.key == spooled_) {
      return std::vector<WriteOutcome>(exposures.size(),
                                       WriteOutcome::kSpooled);
    }
    return store_->WriteExposures(layout, exposures);
  }
  absl::StatusOr<std::vector<WriteOutcome>> WriteEvents(
      const ExperimentLayout& layout, absl::Span<const Event> events) override {
    if (layout.key == spooled_) {
      return std::vector<WriteOutcome>(events.size(), WriteOutcome::kSpooled);
    }
    return store_->WriteEvents(layout, events);
  }
  absl::StatusOr<ExperimentAggregates> ReadAggregates(
      const ExperimentLayout& layout) override {
    return store_->ReadAggregates(layout);
  }
  absl::StatusOr<std::optional<int>> RecordedVariant(
      const ExperimentLayout& layout, absl::string_view unit_id) override {
    return store_->RecordedVariant(layout, unit_id);
  }

 private:
  EventStore* const store_;
  const std::string spooled_;
};

TEST_F(RecorderTest, SpooledWritesAreReportedAsSpooled) {
  SpoolOneExperimentStore spooling(&store_, "pricing");
  Recorder recorder(&spooling);
  const std::string& user = counted_[0];
  absl::StatusOr<RecordBatchResult> exposed = recorder.RecordExposures(
      *config_,
      {Expose("checkout", user, "treatment"), Expose("pricing", user, "cheap"),
       Expose("no_such_experiment", user, "x")},
      kNow);
  ASSERT_TRUE(exposed.ok()) << exposed.status();
  EXPECT_EQ(exposed->results[0].outcome, WriteOutcome::kRecorded);
  EXPECT_EQ(exposed->results[1].outcome, WriteOutcome::kSpooled);
  EXPECT_EQ(exposed->results[1].ignore_reason, IgnoreReason::kNone);
  EXPECT_EQ(exposed->results[2].outcome, WriteOutcome::kIgnored);
  EXPECT_EQ(exposed->recorded, 1);
  EXPECT_EQ(exposed->spooled, 1);
  EXPECT_EQ(exposed->ignored, 1);

  // Counted in checkout, spooled for pricing: its final outcome is not
  // known yet, so the event is spooled, with the direct count kept.
  absl::StatusOr<RecordBatchResult> tracked = recorder.RecordEvents(
      *config_,
      {Track(user, "order_completed", 20), Track(user, "page_scrolled", {})},
      kNow);
  ASSERT_TRUE(tracked.ok()) << tracked.status();
  EXPECT_EQ(tracked->results[0].outcome, WriteOutcome::kSpooled);
  EXPECT_EQ(tracked->results[0].ignore_reason, IgnoreReason::kNone);
  EXPECT_EQ(tracked->results[0].experiments_recorded, 1);
  EXPECT_EQ(tracked->results[1].outcome, WriteOutcome::kIgnored);
  EXPECT_EQ(tracked->spooled, 1);
  EXPECT_EQ(tracked->recorded, 0);
  EXPECT_EQ(tracked->ignored, 1);
}

TEST(RecorderKeys, EventKeysRepeatForTheSameEventAndDifferOtherwise) {
  EventInput e;
  e.unit.ids = {{"user_id", "u-1"}, {"device_id", "d-1"}};
  e.name = "order_completed";
  e.value = 59.9;
  e.time = kNow;
  EventInput same = e;
  same.unit.ids = {{"device_id", "d-1"}, {"user_id", "u-1"}};
  EXPECT_EQ(DeriveEventKey(e), DeriveEventKey(same));
  EventInput other_value = e;
  other_value.value = 59.8;
  EXPECT_NE(DeriveEventKey(e), DeriveEventKey(other_value));
  EventInput no_value = e;
  no_value.value.reset();
  EXPECT_NE(DeriveEventKey(e), DeriveEventKey(no_value));
  EventInput later = e;
  later.time = kNow + absl::Nanoseconds(1);
  EXPECT_NE(DeriveEventKey(e), DeriveEventKey(later));
  EventInput untimed = e;
  untimed.time.reset();
  EXPECT_NE(DeriveEventKey(untimed), DeriveEventKey(untimed));
  EXPECT_NE(ClientKey("x"), "x");
}

TEST(DeferredEventStore, FailsUnavailableUntilTheFactorySucceeds) {
  int attempts = 0;
  bool up = false;
  DeferredEventStore store(
      [&]() -> absl::StatusOr<std::shared_ptr<EventStore>> {
        ++attempts;
        if (!up) return absl::UnavailableError("redis is down");
        return std::make_shared<MemoryEventStore>();
      },
      absl::ZeroDuration());
  ExperimentLayout layout;
  layout.key = "e";
  layout.variant_keys = {"a", "b"};
  EXPECT_EQ(store.Connect().code(), absl::StatusCode::kUnavailable);
  absl::StatusOr<ExperimentAggregates> read = store.ReadAggregates(layout);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(read.status().message(), HasSubstr("redis is down"));
  up = true;
  EXPECT_TRUE(store.ReadAggregates(layout).ok());
  const int made = attempts;
  EXPECT_TRUE(store.ReadAggregates(layout).ok());
  EXPECT_EQ(attempts, made);  // made once, then kept
}

TEST(DeferredEventStore, RetriesTheFactoryAtMostOncePerInterval) {
  int attempts = 0;
  DeferredEventStore store(
      [&]() -> absl::StatusOr<std::shared_ptr<EventStore>> {
        ++attempts;
        return absl::UnavailableError("down");
      },
      absl::Hours(1));
  ExperimentLayout layout;
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(store.ReadAggregates(layout).status().code(),
              absl::StatusCode::kUnavailable);
  }
  EXPECT_EQ(attempts, 1);
}

}  // namespace
}  // namespace abexp
