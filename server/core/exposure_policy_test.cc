// Which assignments record_exposure records, without gRPC. Expected
// behaviour is from the docs: BUCKETED and STICKY assignments are exposures,
// QA overrides and rollouts never count (proto/abexp/v1/assignment.proto,
// docs/attribution.md "QA-forced units and holdout units are never
// recorded"), a unit that is not in an experiment was not shown it, and a
// repeat of the same variant is a duplicate (docs/attribution.md).
#include "server/core/exposure_policy.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
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
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

// Every running experiment takes every unit (traffic 1, no layer) unless
// its targeting says otherwise; units with a device_id are all held out.
constexpr char kConfig[] = R"(
attributes:
  country: string
  orders_90d: number
holdout:
  fraction: 1
  unit: device_id
metrics:
  - {key: orders, type: sum, event: order, aggregate: count, covariate: orders_90d}
experiments:
  - key: checkout
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    qa_overrides:
      treatment: [qa-user]
    metrics: [orders]
    primary_metric: orders
  - key: paint
    status: running
    sticky: true
    traffic: 0
    variants:
      - {key: red, weight: 50}
      - {key: blue, weight: 50}
  - key: banner
    status: stopped
    rollout_variant: shown
    variants:
      - {key: hidden, weight: 50}
      - {key: shown, weight: 50}
  - key: drafted
    status: draft
    variants:
      - {key: a, weight: 50}
      - {key: b, weight: 50}
  - key: paused_one
    status: paused
    variants:
      - {key: a, weight: 50}
      - {key: b, weight: 50}
  - key: later
    status: running
    start: 2030-01-01T00:00:00Z
    variants:
      - {key: a, weight: 50}
      - {key: b, weight: 50}
  - key: nl_only
    status: running
    targeting: {attribute: country, eq: NL}
    variants:
      - {key: a, weight: 50}
      - {key: b, weight: 50}
)";

const absl::Time kNow = absl::FromUnixSeconds(1795000000);  // 2026-11-19

class ExposurePolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ParseResult parsed = ParseConfig(kConfig, "exposure_policy_test.yaml");
    ASSERT_TRUE(parsed.ok()) << parsed.FormatDiagnostics();
    config_ = parsed.config;
  }

  static Unit User(const std::string& id) {
    Unit unit;
    unit.ids["user_id"] = id;
    return unit;
  }

  AssignResult AssignNow(
      const Unit& unit,
      absl::flat_hash_map<const Experiment*, int> recorded = {}) const {
    AssignOptions options;
    options.now = kNow;
    options.recorded_variants = std::move(recorded);
    absl::StatusOr<AssignResult> result = Assign(*config_, unit, options);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : AssignResult();
  }

  // The variant `result` gives in `experiment`, or "" for none.
  static std::string VariantIn(const AssignResult& result,
                               const std::string& experiment) {
    for (const ExperimentAssignment& a : result.assignments) {
      if (a.experiment->key == experiment) {
        return a.experiment->variants[a.variant_index].key;
      }
    }
    return "";
  }

  static std::vector<std::string> Experiments(
      const std::vector<ExposureInput>& exposures) {
    std::vector<std::string> keys;
    for (const ExposureInput& x : exposures) keys.push_back(x.experiment_key);
    return keys;
  }

  std::shared_ptr<const IndexedConfig> config_;
};

TEST_F(ExposurePolicyTest, ABucketedAssignmentIsOneExposureOfTheServedVariant) {
  const Unit unit = User("u-1");
  const AssignResult result = AssignNow(unit);
  const std::vector<ExposureInput> exposures =
      ExposuresToRecord(*config_, unit, result);
  ASSERT_THAT(Experiments(exposures), ElementsAre("checkout"));
  const ExposureInput& x = exposures[0];
  EXPECT_EQ(x.variant_key, VariantIn(result, "checkout"));
  EXPECT_THAT(x.variant_key, ::testing::AnyOf("control", "treatment"));
  EXPECT_EQ(x.unit.ids, unit.ids);
  EXPECT_EQ(x.config_version, config_->version);
  // Stamped with the recording call's time; the key is derived.
  EXPECT_FALSE(x.time.has_value());
  EXPECT_TRUE(x.idempotency_key.empty());
}

TEST_F(ExposurePolicyTest, AnExposureCarriesTheCovariatesOfItsMetricsOnly) {
  Unit unit = User("u-1");
  unit.attributes["country"] = std::string("DE");
  unit.attributes["orders_90d"] = 4.0;
  const std::vector<ExposureInput> exposures =
      ExposuresToRecord(*config_, unit, AssignNow(unit));
  ASSERT_THAT(Experiments(exposures), ElementsAre("checkout"));
  const Attributes& sent = exposures[0].unit.attributes;
  ASSERT_EQ(sent.size(), 1u);  // not country: no metric of checkout uses it
  EXPECT_EQ(std::get<double>(sent.at("orders_90d")), 4.0);
}

TEST_F(ExposurePolicyTest, ARolloutIsServedButNotAnExposure) {
  const Unit unit = User("u-1");
  const AssignResult result = AssignNow(unit);
  ASSERT_EQ(VariantIn(result, "banner"), "shown");
  for (const ExposureInput& x : ExposuresToRecord(*config_, unit, result)) {
    EXPECT_NE(x.experiment_key, "banner");
  }
}

TEST_F(ExposurePolicyTest, AQaOverrideIsServedButNotAnExposure) {
  const Unit unit = User("qa-user");
  const AssignResult result = AssignNow(unit);
  ASSERT_EQ(VariantIn(result, "checkout"), "treatment");
  EXPECT_THAT(ExposuresToRecord(*config_, unit, result), IsEmpty());
}

TEST_F(ExposurePolicyTest, AHoldoutUnitHasNoExposures) {
  Unit unit = User("u-1");
  unit.ids["device_id"] = "d-1";
  const AssignResult result = AssignNow(unit);
  ASSERT_TRUE(result.in_holdout);
  EXPECT_THAT(ExposuresToRecord(*config_, unit, result), IsEmpty());
}

TEST_F(ExposurePolicyTest, ExperimentsNotRunningOrNotTargetedAreNotExposures) {
  // drafted, paused_one and later (not started) are not running; nl_only
  // targets another country; paint has no traffic.
  Unit unit = User("u-1");
  unit.attributes.try_emplace("country", std::string("DE"));
  EXPECT_THAT(Experiments(ExposuresToRecord(*config_, unit, AssignNow(unit))),
              ElementsAre("checkout"));
  unit.attributes.clear();
  unit.attributes.try_emplace("country", std::string("NL"));
  EXPECT_THAT(Experiments(ExposuresToRecord(*config_, unit, AssignNow(unit))),
              UnorderedElementsAre("checkout", "nl_only"));
}

TEST_F(ExposurePolicyTest, AStickyAssignmentIsAnExposureOfTheRecordedVariant) {
  const Experiment* paint = config_->FindExperiment("paint");
  ASSERT_NE(paint, nullptr);
  const Unit unit = User("u-1");
  const AssignResult result = AssignNow(unit, {{paint, 1}});
  ASSERT_EQ(VariantIn(result, "paint"), "blue");
  const std::vector<ExposureInput> exposures =
      ExposuresToRecord(*config_, unit, result);
  ASSERT_THAT(Experiments(exposures), ElementsAre("checkout", "paint"));
  EXPECT_EQ(exposures[1].variant_key, "blue");
}

TEST_F(ExposurePolicyTest, RecordingTheSameAssignmentAgainIsADuplicate) {
  MemoryEventStore store;
  Recorder recorder(&store);
  const Unit unit = User("u-1");
  const std::vector<ExposureInput> exposures =
      ExposuresToRecord(*config_, unit, AssignNow(unit));
  ASSERT_EQ(exposures.size(), 1u);

  absl::StatusOr<RecordBatchResult> first =
      recorder.RecordExposures(*config_, exposures, kNow);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->recorded, 1);
  // The next page view, a minute later, shows the same variant.
  absl::StatusOr<RecordBatchResult> again =
      recorder.RecordExposures(*config_, exposures, kNow + absl::Minutes(1));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->recorded, 0);
  EXPECT_EQ(again->duplicate, 1);

  // And the unit is now exposed in the variant it was served.
  const Experiment* checkout = config_->FindExperiment("checkout");
  absl::StatusOr<std::optional<int>> variant =
      store.RecordedVariant(LayoutOf(*config_, *checkout), "u-1");
  ASSERT_TRUE(variant.ok()) << variant.status();
  ASSERT_TRUE(variant->has_value());
  EXPECT_EQ(checkout->variants[**variant].key, exposures[0].variant_key);
}

}  // namespace
}  // namespace abexp
