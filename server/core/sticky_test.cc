// The read side of sticky experiments without gRPC: which lookups a call
// needs, the recorded variant winning over the hash, and the circuit
// breaker around the store. Expected behaviour is from docs/config.md
// ("Sticky experiments": only sticky experiments read storage; a store
// failure serves computed variants, logs a warning at most every 10
// seconds and skips lookups for the next second) and docs/attribution.md.
#include "server/core/sticky.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/assigner.h"
#include "server/core/config_parser.h"
#include "server/core/recorder.h"
#include "server/testing/memory_event_store.h"

namespace abexp {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// paint is sticky with traffic 0: by hash nobody is in it, so a unit that
// gets a variant of it can only have its recorded one. Units with a
// device_id are all in the holdout (fraction 1).
constexpr char kConfig[] = R"(
holdout:
  fraction: 1
  unit: device_id
experiments:
  - key: paint
    status: running
    sticky: true
    traffic: 0
    variants:
      - {key: red, weight: 50}
      - {key: blue, weight: 50}
    qa_overrides:
      red: [qa-user]
  - key: font
    status: running
    variants:
      - {key: serif, weight: 50}
      - {key: sans, weight: 50}
  - key: frozen
    status: paused
    sticky: true
    variants:
      - {key: off, weight: 50}
      - {key: on, weight: 50}
)";

constexpr char kNothingSticky[] = R"(
experiments:
  - key: font
    status: running
    variants:
      - {key: serif, weight: 50}
      - {key: sans, weight: 50}
)";

const absl::Time kStart = absl::FromUnixSeconds(1795000000);  // 2026-11-19

std::shared_ptr<const IndexedConfig> Parse(const char* yaml) {
  ParseResult parsed = ParseConfig(yaml, "sticky_test.yaml");
  EXPECT_TRUE(parsed.ok()) << parsed.FormatDiagnostics();
  return parsed.config;
}

Unit User(const std::string& id) {
  Unit unit;
  unit.ids["user_id"] = id;
  return unit;
}

// A MemoryEventStore whose sticky reads can fail the way an unreachable
// Redis does, or break the one-answer-per-query contract. Counts the reads.
class FlakyStore final : public EventStore {
 public:
  void Fail(absl::Status status) { failure_ = std::move(status); }
  void AnswerFewer() { answer_fewer_ = true; }
  int read_calls() const { return read_calls_; }

  absl::StatusOr<std::vector<WriteOutcome>> WriteExposures(
      const ExperimentLayout& layout,
      absl::Span<const Exposure> exposures) override {
    return memory_.WriteExposures(layout, exposures);
  }
  absl::StatusOr<std::vector<WriteOutcome>> WriteEvents(
      const ExperimentLayout& layout, absl::Span<const Event> events) override {
    return memory_.WriteEvents(layout, events);
  }
  absl::StatusOr<ExperimentAggregates> ReadAggregates(
      const ExperimentLayout& layout) override {
    return memory_.ReadAggregates(layout);
  }
  absl::StatusOr<std::optional<int>> RecordedVariant(
      const ExperimentLayout& layout, absl::string_view unit_id) override {
    return memory_.RecordedVariant(layout, unit_id);
  }
  std::vector<RecordedVariantResult> RecordedVariants(
      absl::Span<const RecordedVariantQuery> queries) override {
    ++read_calls_;
    if (!failure_.ok()) {
      return std::vector<RecordedVariantResult>(queries.size(), failure_);
    }
    std::vector<RecordedVariantResult> results =
        memory_.RecordedVariants(queries);
    if (answer_fewer_ && !results.empty()) results.pop_back();
    return results;
  }

 private:
  MemoryEventStore memory_;
  absl::Status failure_;
  bool answer_fewer_ = false;
  int read_calls_ = 0;
};

class StickyReadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = Parse(kConfig);
    ASSERT_NE(config_, nullptr);
    paint_ = config_->FindExperiment("paint");
    ASSERT_NE(paint_, nullptr);
  }

  // Options over store_, logging into log_ and reading now_; the documented
  // defaults for the pause and the log interval.
  StickyOptions Options() {
    StickyOptions options;
    options.store = &store_;
    options.log = [this](absl::string_view line) { log_.emplace_back(line); };
    options.clock = [this] { return now_; };
    return options;
  }

  // Records that `user` was shown `variant` of `experiment`, as
  // RecordExposures does.
  void Expose(const std::string& experiment, const std::string& user,
              const std::string& variant) {
    ExposureInput x;
    x.experiment_key = experiment;
    x.unit = User(user);
    x.variant_key = variant;
    Recorder recorder(&store_);
    absl::StatusOr<RecordBatchResult> r =
        recorder.RecordExposures(*config_, {x}, now_);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->recorded, 1);
  }

  AssignOptions AssignAt(absl::Time now) {
    AssignOptions options;
    options.now = now;
    return options;
  }

  // The lookup of paint for `user`, as a call would make it.
  std::vector<StickyLookup> PaintLookup(const std::string& user) {
    return {StickyLookup{paint_, user}};
  }

  std::shared_ptr<const IndexedConfig> config_;
  const Experiment* paint_ = nullptr;
  FlakyStore store_;
  std::vector<std::string> log_;
  absl::Time now_ = kStart;
};

// ---- which lookups a call needs ----

TEST_F(StickyReadTest, OnlyRunningStickyExperimentsAreLookedUp) {
  const std::vector<Unit> units = {User("u1"), User("u2")};
  absl::StatusOr<UnitStickyLookups> lookups =
      StickyLookupsForUnits(*config_, units, AssignAt(kStart));
  ASSERT_TRUE(lookups.ok()) << lookups.status();
  // font is not sticky and frozen is paused: only paint, once per unit.
  ASSERT_EQ(lookups->lookups.size(), 2u);
  EXPECT_EQ(lookups->lookups[0].experiment->key, "paint");
  EXPECT_EQ(lookups->lookups[0].unit_id, "u1");
  EXPECT_EQ(lookups->lookups[1].experiment->key, "paint");
  EXPECT_EQ(lookups->lookups[1].unit_id, "u2");
  EXPECT_THAT(lookups->unit_of, ElementsAre(0u, 1u));
}

TEST_F(StickyReadTest, QaOverrideHoldoutAndMissingIdNeedNoLookup) {
  Unit held_out = User("u-held");
  held_out.ids["device_id"] = "d-1";
  Unit no_user_id;
  no_user_id.ids["account_id"] = "a-1";
  const std::vector<Unit> units = {User("qa-user"), held_out, no_user_id,
                                   User("u1")};
  absl::StatusOr<UnitStickyLookups> lookups =
      StickyLookupsForUnits(*config_, units, AssignAt(kStart));
  ASSERT_TRUE(lookups.ok()) << lookups.status();
  ASSERT_EQ(lookups->lookups.size(), 1u);
  EXPECT_EQ(lookups->lookups[0].unit_id, "u1");
  EXPECT_THAT(lookups->unit_of, ElementsAre(3u));
}

TEST_F(StickyReadTest, AConfigWithoutStickyExperimentsNeverReadsTheStore) {
  std::shared_ptr<const IndexedConfig> plain = Parse(kNothingSticky);
  ASSERT_NE(plain, nullptr);
  StickyReader reader(Options());
  absl::StatusOr<std::vector<RecordedVariants>> recorded =
      reader.ReadForUnits(*plain, {User("u1"), User("u2")}, AssignAt(kStart));
  ASSERT_TRUE(recorded.ok()) << recorded.status();
  ASSERT_EQ(recorded->size(), 2u);
  EXPECT_THAT((*recorded)[0], IsEmpty());
  EXPECT_THAT((*recorded)[1], IsEmpty());
  EXPECT_EQ(store_.read_calls(), 0);
}

TEST_F(StickyReadTest, LookupsOfManyUnitsAreOneStoreCall) {
  StickyReader reader(Options());
  std::vector<Unit> units;
  for (int i = 0; i < 20; ++i) units.push_back(User(absl::StrCat("u", i)));
  ASSERT_TRUE(reader.ReadForUnits(*config_, units, AssignAt(kStart)).ok());
  EXPECT_EQ(store_.read_calls(), 1);
}

TEST_F(StickyReadTest, UnknownExperimentKeyIsNotFoundAsInAssign) {
  AssignOptions options = AssignAt(kStart);
  options.experiment_keys = {"no_such_experiment"};
  absl::StatusOr<UnitStickyLookups> lookups =
      StickyLookupsForUnits(*config_, {User("u1")}, options);
  EXPECT_EQ(lookups.status().code(), absl::StatusCode::kNotFound);
}

// ---- applying recorded variants ----

TEST_F(StickyReadTest, RecordedVariantWinsOverTheHash) {
  Expose("paint", "u1", "blue");
  StickyReader reader(Options());
  const std::vector<Unit> units = {User("u1"), User("u2")};
  absl::StatusOr<std::vector<RecordedVariants>> recorded =
      reader.ReadForUnits(*config_, units, AssignAt(kStart));
  ASSERT_TRUE(recorded.ok()) << recorded.status();

  // Traffic 0 puts nobody in paint by hash; u1 keeps its recorded variant
  // (traffic cuts do not drop an exposed unit), u2 was never exposed.
  AssignOptions options = AssignAt(kStart);
  options.recorded_variants = (*recorded)[0];
  absl::StatusOr<AssignResult> u1 = Assign(*config_, units[0], options);
  ASSERT_TRUE(u1.ok()) << u1.status();
  const ExperimentAssignment* paint = nullptr;
  for (const ExperimentAssignment& a : u1->assignments) {
    if (a.experiment->key == "paint") paint = &a;
  }
  ASSERT_NE(paint, nullptr);
  EXPECT_EQ(paint_->variants[paint->variant_index].key, "blue");
  EXPECT_EQ(paint->reason, AssignmentReason::kSticky);

  options.recorded_variants = (*recorded)[1];
  absl::StatusOr<AssignResult> u2 = Assign(*config_, units[1], options);
  ASSERT_TRUE(u2.ok()) << u2.status();
  for (const ExperimentAssignment& a : u2->assignments) {
    EXPECT_NE(a.experiment->key, "paint");
  }
}

TEST_F(StickyReadTest, FailedRecordsAreMarkedUnreadAndMissingOnesAddNothing) {
  UnitStickyLookups lookups;
  lookups.lookups = {{paint_, "u0"}, {paint_, "u1"}, {paint_, "u2"}};
  lookups.unit_of = {0, 1, 2};
  const std::vector<RecordedVariantResult> results = {
      std::optional<int>(1), std::optional<int>(),
      absl::UnavailableError("down")};
  const std::vector<RecordedVariants> recorded =
      ApplyRecordedVariants(lookups, results, 4);
  ASSERT_EQ(recorded.size(), 4u);
  ASSERT_EQ(recorded[0].size(), 1u);
  EXPECT_EQ(recorded[0].at(paint_), 1);
  EXPECT_THAT(recorded[1], IsEmpty());  // never exposed
  ASSERT_EQ(recorded[2].size(), 1u);    // the store failed
  EXPECT_EQ(recorded[2].at(paint_), kUnreadVariant);
  EXPECT_THAT(recorded[3], IsEmpty());  // no lookup
}

TEST_F(StickyReadTest, ExplainReadsWhatAssignWouldRead) {
  Expose("paint", "u1", "blue");
  StickyReader reader(Options());
  std::optional<RecordedVariantResult> read =
      reader.ReadForExplain(*config_, User("u1"), *paint_, kStart);
  ASSERT_TRUE(read.has_value());
  ASSERT_TRUE(read->ok()) << read->status();
  EXPECT_EQ(**read, std::optional<int>(1));
  // No lookup for a QA override, nor for an experiment that is not sticky.
  EXPECT_FALSE(reader.ReadForExplain(*config_, User("qa-user"), *paint_, kStart)
                   .has_value());
  EXPECT_FALSE(reader
                   .ReadForExplain(*config_, User("u1"),
                                   *config_->FindExperiment("font"), kStart)
                   .has_value());
}

TEST_F(StickyReadTest, SkippingMarksEveryLookupUnreadWithoutTheStore) {
  Expose("paint", "u1", "blue");
  StickyReader reader(Options());
  const absl::Status why =
      absl::ResourceExhaustedError("no sticky-read thread was free");
  const std::vector<Unit> units = {User("u1"), User("u2")};
  absl::StatusOr<std::vector<RecordedVariants>> skipped =
      reader.SkipForUnits(*config_, units, AssignAt(kStart), why);
  ASSERT_TRUE(skipped.ok()) << skipped.status();
  ASSERT_EQ(skipped->size(), 2u);
  for (const RecordedVariants& unit : *skipped) {
    ASSERT_EQ(unit.size(), 1u);
    EXPECT_EQ(unit.at(paint_), kUnreadVariant);
  }
  std::optional<RecordedVariantResult> explained =
      reader.ReadForExplain(*config_, User("u1"), *paint_, kStart, why);
  ASSERT_TRUE(explained.has_value());
  EXPECT_EQ(explained->status(), why);
  EXPECT_EQ(store_.read_calls(), 0);
  // Logged like a store failure, but a full thread pool is no reason to
  // stop reading: the next read goes to the store.
  ASSERT_EQ(log_.size(), 1u);
  EXPECT_THAT(log_[0], HasSubstr("no sticky-read thread was free"));
  EXPECT_TRUE(reader.WouldRead(*config_));
  ASSERT_TRUE(reader.ReadForUnits(*config_, units, AssignAt(kStart)).ok());
  EXPECT_EQ(store_.read_calls(), 1);
}

// ---- the circuit breaker ----

TEST_F(StickyReadTest, WouldReadIsFalseWhilePausedAndWithoutStickyOrStore) {
  StickyReader reader(Options());
  EXPECT_TRUE(reader.WouldRead(*config_));
  store_.Fail(absl::DeadlineExceededError("Redis did not answer in 5ms"));
  reader.Read(*config_, PaintLookup("u1"));
  EXPECT_FALSE(reader.WouldRead(*config_));
  now_ += absl::Seconds(1);
  EXPECT_TRUE(reader.WouldRead(*config_));

  StickyOptions no_store = Options();
  no_store.store = nullptr;
  EXPECT_FALSE(StickyReader(no_store).WouldRead(*config_));
}

TEST_F(StickyReadTest, StoreDownOpensTheBreakerForOneSecondThenItCloses) {
  Expose("paint", "u1", "blue");
  StickyReader reader(Options());
  store_.Fail(absl::UnavailableError("Redis at 127.0.0.1:9 is unreachable"));
  std::vector<RecordedVariantResult> r =
      reader.Read(*config_, PaintLookup("u1"));
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(store_.read_calls(), 1);

  // Open: for the next second no call reaches the store.
  store_.Fail(absl::OkStatus());
  for (absl::Duration later : {absl::Milliseconds(1), absl::Milliseconds(500),
                               absl::Milliseconds(999)}) {
    now_ = kStart + later;
    r = reader.Read(*config_, PaintLookup("u1"));
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(r[0].status().message(), HasSubstr("paused"));
    EXPECT_THAT(r[0].status().message(),
                HasSubstr("Redis at 127.0.0.1:9 is unreachable"));
  }
  EXPECT_EQ(store_.read_calls(), 1);

  // Closed again: the recorded variant is served.
  now_ = kStart + absl::Seconds(1);
  r = reader.Read(*config_, PaintLookup("u1"));
  ASSERT_EQ(r.size(), 1u);
  ASSERT_TRUE(r[0].ok()) << r[0].status();
  EXPECT_EQ(*r[0], std::optional<int>(1));
  EXPECT_EQ(store_.read_calls(), 2);
}

TEST_F(StickyReadTest, ATimeoutOpensTheBreakerToo) {
  StickyReader reader(Options());
  store_.Fail(absl::DeadlineExceededError("Redis did not answer in 2s"));
  reader.Read(*config_, PaintLookup("u1"));
  now_ += absl::Milliseconds(100);
  reader.Read(*config_, PaintLookup("u1"));
  EXPECT_EQ(store_.read_calls(), 1);
}

TEST_F(StickyReadTest, ARefusedRecordDoesNotOpenTheBreaker) {
  // What the store answers when the variant keys were renamed within a
  // phase: only that experiment's record is ignored, the store is fine.
  StickyReader reader(Options());
  store_.Fail(absl::FailedPreconditionError("variant keys changed"));
  for (int i = 0; i < 3; ++i) {
    std::vector<RecordedVariantResult> r =
        reader.Read(*config_, PaintLookup("u1"));
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].status().code(), absl::StatusCode::kFailedPrecondition);
  }
  EXPECT_EQ(store_.read_calls(), 3);
  EXPECT_EQ(log_.size(), 1u);  // logged, the server says why
}

TEST_F(StickyReadTest, FailuresAreLoggedAtMostOnceInTenSecondsWithACount) {
  StickyReader reader(Options());
  store_.Fail(absl::UnavailableError("Redis at 127.0.0.1:9 is unreachable"));
  reader.Read(*config_, PaintLookup("u1"));
  ASSERT_EQ(log_.size(), 1u);
  EXPECT_EQ(log_[0],
            "warning: sticky assignment could not read the recorded variants "
            "of experiment(s) paint: UNAVAILABLE: Redis at 127.0.0.1:9 is "
            "unreachable; serving the variants computed from the config "
            "instead (an exposed unit may see another variant than before); "
            "retrying in 1s");

  // Three more failed lookups inside the ten seconds: one while paused,
  // two that reached the store. None is logged on its own.
  for (absl::Duration later :
       {absl::Milliseconds(500), absl::Seconds(2), absl::Seconds(9)}) {
    now_ = kStart + later;
    reader.Read(*config_, PaintLookup("u1"));
  }
  EXPECT_EQ(store_.read_calls(), 3);
  EXPECT_EQ(log_.size(), 1u);

  now_ = kStart + absl::Seconds(10);
  reader.Read(*config_, PaintLookup("u1"));
  ASSERT_EQ(log_.size(), 2u);
  EXPECT_THAT(log_[1], HasSubstr("paint: UNAVAILABLE"));
  EXPECT_THAT(log_[1], HasSubstr(" (3 more lookups were not served from the "
                                 "record since the last such line)"));
}

TEST_F(StickyReadTest, WithoutAStoreLookupsFailQuietly) {
  StickyOptions options = Options();
  options.store = nullptr;
  StickyReader reader(options);
  std::vector<RecordedVariantResult> r =
      reader.Read(*config_, PaintLookup("u1"));
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r[0].status().message(), HasSubstr("no event store"));
  EXPECT_THAT(log_, IsEmpty());
}

TEST_F(StickyReadTest,
       AStoreAnsweringTooFewLookupsFailsThemAllWithoutFailingTheCall) {
  Expose("paint", "u1", "blue");
  store_.AnswerFewer();
  StickyReader reader(Options());
  const std::vector<StickyLookup> lookups = {{paint_, "u1"}, {paint_, "u2"}};
  std::vector<RecordedVariantResult> r = reader.Read(*config_, lookups);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(r[1].status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(log_, Not(IsEmpty()));
}

}  // namespace
}  // namespace abexp
