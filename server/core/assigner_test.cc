#include "server/core/assigner.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/config_parser.h"
#include "server/core/error_text.h"

namespace abexp {
namespace {

using ::testing::HasSubstr;

constexpr char kConfig[] = R"yaml(
attributes:
  country: string
  days_since_signup: number
  days_since_last_active: number
  app_version: semver
  is_vip: bool
segments:
  new_users: {attribute: days_since_signup, lt: 7}
  churned: {attribute: days_since_last_active, gt: 30}
layers:
  checkout:
    unit: user_id
features:
  - key: headline
    type: string
    default: "Shop now"
  - key: checkout_flow
    type: string
    default: multi_step
  - key: payment_methods
    type: json
    default: [card]
  - key: new_search
    type: bool
    default: false
    rules:
      - when: {attribute: country, eq: XX}
        value: true
      - rollout: 0.10
        value: true
  - key: recall_copy
    type: string
    default: none
experiments:
  - key: landing_headline
    status: running
    variants:
      - {key: control, weight: 50, features: {headline: "Shop now"}}
      - {key: benefit, weight: 50, features: {headline: "Free shipping today"}}
    qa_overrides:
      benefit: [qa-1]
  - key: one_page_checkout
    status: running
    layer: checkout
    layer_range: [0, 0.5]
    variants:
      - {key: control, weight: 1, features: {checkout_flow: multi_step}}
      - {key: one_page, weight: 1, features: {checkout_flow: one_page}}
  - key: payment_options
    status: running
    layer: checkout
    layer_range: [0.5, 1]
    variants:
      - {key: control, weight: 1}
      - {key: wallets, weight: 1, features: {payment_methods: [card, apple_pay, alipay]}}
  - key: recall_push
    status: running
    unit: user_id
    targeting: {segment: churned}
    variants:
      - {key: control, weight: 1, features: {recall_copy: plain}}
      - {key: discount, weight: 1, features: {recall_copy: "20% off"}}
  - key: onboarding_v1
    status: stopped
    rollout_variant: guided
    targeting: {segment: new_users}
    variants:
      - {key: control, weight: 1}
      - {key: guided, weight: 1}
  - key: paused_test
    status: paused
    variants:
      - {key: a, weight: 1, features: {recall_copy: paused}}
  - key: scheduled
    status: running
    start: 2030-01-01T00:00:00Z
    variants:
      - {key: a, weight: 1}
)yaml";

std::shared_ptr<const IndexedConfig> Load(const std::string& yaml) {
  ParseResult r = ParseConfig(yaml, "test.yaml");
  EXPECT_TRUE(r.ok()) << r.FormatDiagnostics();
  return r.config;
}

Unit User(const std::string& id, Attributes attributes = {}) {
  Unit u;
  u.ids["user_id"] = id;
  u.attributes = std::move(attributes);
  return u;
}

const ExperimentAssignment* Find(const AssignResult& r,
                                 const std::string& key) {
  for (const auto& a : r.assignments) {
    if (a.experiment->key == key) return &a;
  }
  return nullptr;
}

const ResolvedFeature* FindFeature(const AssignResult& r,
                                   const std::string& key) {
  for (const auto& f : r.features) {
    if (f.feature->key == key) return &f;
  }
  return nullptr;
}

class AssignerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = Load(kConfig);
    ASSERT_NE(config_, nullptr);
  }
  AssignResult MustAssign(const Unit& unit, AssignOptions options = {}) {
    absl::StatusOr<AssignResult> r = Assign(*config_, unit, options);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : AssignResult{};
  }
  std::shared_ptr<const IndexedConfig> config_;
};

TEST_F(AssignerTest, VariantIsTheRangeHoldingTheSpecBucket) {
  const Experiment* e = config_->FindExperiment("landing_headline");
  for (int i = 0; i < 2000; ++i) {
    const std::string id = absl::StrCat("user-", i);
    const uint32_t bucket =
        Bucket(HashPurpose::kVariant, "landing_headline", id);
    const std::string expected = bucket < 5000 ? "control" : "benefit";
    const AssignResult r = MustAssign(User(id));
    const ExperimentAssignment* a = Find(r, "landing_headline");
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(e->variants[a->variant_index].key, expected) << id;
    EXPECT_EQ(a->reason, AssignmentReason::kBucketed);
    // The variant's feature value is what the unit gets.
    EXPECT_EQ(FindFeature(r, "headline")->value->text,
              expected == "control" ? "Shop now" : "Free shipping today");
    EXPECT_EQ(FindFeature(r, "headline")->source, FeatureSource::kExperiment);
  }
}

TEST_F(AssignerTest, SameUnitAlwaysGetsTheSameAnswer) {
  const AssignResult a = MustAssign(User("u-42"));
  const AssignResult b = MustAssign(User("u-42"));
  ASSERT_EQ(a.assignments.size(), b.assignments.size());
  for (size_t i = 0; i < a.assignments.size(); ++i) {
    EXPECT_EQ(a.assignments[i].experiment, b.assignments[i].experiment);
    EXPECT_EQ(a.assignments[i].variant_index, b.assignments[i].variant_index);
  }
}

TEST_F(AssignerTest, ExperimentsInOneLayerNeverShareAUnit) {
  int in_first = 0, in_second = 0;
  for (int i = 0; i < 20000; ++i) {
    const AssignResult r = MustAssign(User(absl::StrCat("layer-user-", i)));
    const bool first = Find(r, "one_page_checkout") != nullptr;
    const bool second = Find(r, "payment_options") != nullptr;
    ASSERT_FALSE(first && second) << "unit layer-user-" << i << " is in both";
    in_first += first;
    in_second += second;
    // Every unit falls in exactly one half of the layer (traffic is 100%).
    EXPECT_TRUE(first || second);
  }
  // Each owns half the layer: 10000 +- 5 sigma (sigma ~ 71).
  EXPECT_NEAR(in_first, 10000, 360);
  EXPECT_NEAR(in_second, 10000, 360);
}

TEST_F(AssignerTest, LayerMembershipFollowsTheLayerHash) {
  for (int i = 0; i < 500; ++i) {
    const std::string id = absl::StrCat("u", i);
    const bool expect_first =
        Bucket(HashPurpose::kLayer, "checkout", id) < 5000;
    const AssignResult r = MustAssign(User(id));
    EXPECT_EQ(Find(r, "one_page_checkout") != nullptr, expect_first) << id;
  }
}

TEST_F(AssignerTest, TargetingFailureMeansNoVariant) {
  const AssignResult active =
      MustAssign(User("u-1", {{"days_since_last_active", 3.0}}));
  EXPECT_EQ(Find(active, "recall_push"), nullptr);
  EXPECT_EQ(FindFeature(active, "recall_copy")->source,
            FeatureSource::kDefault);
  const AssignResult churned =
      MustAssign(User("u-1", {{"days_since_last_active", 45.0}}));
  ASSERT_NE(Find(churned, "recall_push"), nullptr);
  EXPECT_EQ(FindFeature(churned, "recall_copy")->source,
            FeatureSource::kExperiment);
}

TEST_F(AssignerTest, MissingAttributeFailsTargeting) {
  EXPECT_EQ(Find(MustAssign(User("u-1")), "recall_push"), nullptr);
}

TEST_F(AssignerTest, QaOverrideForcesTheVariantAndSaysSo) {
  const AssignResult r = MustAssign(User("qa-1"));
  const ExperimentAssignment* a = Find(r, "landing_headline");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->experiment->variants[a->variant_index].key, "benefit");
  EXPECT_EQ(a->reason, AssignmentReason::kQaOverride);
}

TEST_F(AssignerTest, StoppedExperimentServesItsRolloutVariantToEligibleUnits) {
  const AssignResult new_user =
      MustAssign(User("u-7", {{"days_since_signup", 2.0}}));
  const ExperimentAssignment* a = Find(new_user, "onboarding_v1");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->reason, AssignmentReason::kRollout);
  EXPECT_EQ(a->experiment->variants[a->variant_index].key, "guided");
  const AssignResult old_user =
      MustAssign(User("u-7", {{"days_since_signup", 200.0}}));
  EXPECT_EQ(Find(old_user, "onboarding_v1"), nullptr);
}

// Assign skips the experiments of a layer whose slice does not hold the
// unit's layer bucket; a QA override and a stopped experiment's rollout
// must still reach a unit outside the slice.
TEST(Assigner, QaOverridesAndRolloutsIgnoreTheLayerSlice) {
  std::shared_ptr<const IndexedConfig> config = Load(R"yaml(
layers:
  l: {}
experiments:
  - key: narrow
    status: running
    layer: l
    layer_range: [0, 0.01]
    variants:
      - {key: a, weight: 1}
      - {key: b, weight: 1}
    qa_overrides:
      b: [qa-0, qa-1, qa-2, qa-3, qa-4]
  - key: done
    status: stopped
    rollout_variant: y
    layer: l
    layer_range: [0, 0.01]
    variants:
      - {key: x, weight: 1}
      - {key: y, weight: 1}
)yaml");
  ASSERT_NE(config, nullptr);
  int outside = 0;
  for (int i = 0; i < 5; ++i) {
    const std::string id = "qa-" + std::to_string(i);
    // Buckets of 100 and up are outside [0, 0.01) of the layer (spec, section
    // 5).
    if (Bucket(HashPurpose::kLayer, "l", id) < 100) continue;
    ++outside;
    absl::StatusOr<AssignResult> r = Assign(*config, User(id), {});
    ASSERT_TRUE(r.ok()) << r.status();
    const ExperimentAssignment* forced = Find(*r, "narrow");
    ASSERT_NE(forced, nullptr) << id;
    EXPECT_EQ(forced->reason, AssignmentReason::kQaOverride);
    EXPECT_EQ(forced->variant_index, 1);
    const ExperimentAssignment* rollout = Find(*r, "done");
    ASSERT_NE(rollout, nullptr) << id;
    EXPECT_EQ(rollout->reason, AssignmentReason::kRollout);
    EXPECT_EQ(rollout->variant_index, 1);
  }
  EXPECT_GT(outside, 0);  // 1% slice: nearly every id is outside
}

TEST(Assigner, AConfigAssembledInCodeAssignsOnceIndexed) {
  std::shared_ptr<const IndexedConfig> parsed = Load(kConfig);
  ASSERT_NE(parsed, nullptr);
  Config assembled;
  assembled.experiments = parsed->experiments;
  assembled.features = parsed->features;
  std::shared_ptr<const IndexedConfig> indexed =
      IndexedConfig::Build(std::move(assembled));
  EXPECT_TRUE(Assign(*indexed, User("u-1"), {}).ok());
}

TEST_F(AssignerTest, PausedAndNotYetStartedExperimentsAssignNobody) {
  const AssignResult r = MustAssign(User("u-9"));
  EXPECT_EQ(Find(r, "paused_test"), nullptr);
  EXPECT_EQ(Find(r, "scheduled"), nullptr);
  EXPECT_NE(FindFeature(r, "recall_copy")->value->text, "paused");
  AssignOptions later;
  later.now = absl::FromUnixSeconds(1893456000 + 1);  // 2030-01-01T00:00:01Z
  EXPECT_NE(Find(MustAssign(User("u-9"), later), "scheduled"), nullptr);
}

TEST_F(AssignerTest, FeatureRulesApplyInOrderAfterExperiments) {
  const AssignResult forced =
      MustAssign(User("u-1", {{"country", std::string("XX")}}));
  EXPECT_EQ(FindFeature(forced, "new_search")->source, FeatureSource::kRule);
  EXPECT_EQ(FindFeature(forced, "new_search")->rule_index, 0);
  EXPECT_TRUE(FindFeature(forced, "new_search")->value->bool_value);

  int on = 0;
  for (int i = 0; i < 20000; ++i) {
    const std::string id = absl::StrCat("flag-user-", i);
    const AssignResult r = MustAssign(User(id));
    const ResolvedFeature* f = FindFeature(r, "new_search");
    const bool expected =
        Bucket(HashPurpose::kRollout, "new_search.rule1", id) < 1000;
    ASSERT_EQ(f->value->bool_value, expected) << id;
    EXPECT_EQ(f->source,
              expected ? FeatureSource::kRule : FeatureSource::kDefault);
    on += expected;
  }
  EXPECT_NEAR(on, 2000, 5 * 42);  // 10% +- 5 sigma
}

TEST_F(AssignerTest, ExperimentFilterReturnsThoseExperimentsAndTheirFeatures) {
  AssignOptions options;
  options.experiment_keys = {"landing_headline"};
  const AssignResult r = MustAssign(User("u-3"), options);
  ASSERT_EQ(r.assignments.size(), 1u);
  EXPECT_EQ(r.assignments[0].experiment->key, "landing_headline");
  ASSERT_EQ(r.features.size(), 1u);
  EXPECT_EQ(r.features[0].feature->key, "headline");
}

TEST_F(AssignerTest, FeatureFilterStillResolvesFromEveryExperiment) {
  AssignOptions options;
  options.feature_keys = {"checkout_flow"};
  for (int i = 0; i < 200; ++i) {
    const std::string id = absl::StrCat("u", i);
    const AssignResult full = MustAssign(User(id));
    const AssignResult filtered = MustAssign(User(id), options);
    ASSERT_EQ(filtered.features.size(), 1u);
    EXPECT_EQ(*filtered.features[0].value,
              *FindFeature(full, "checkout_flow")->value);
  }
}

TEST_F(AssignerTest, UnknownFilterKeysAreNotFound) {
  AssignOptions options;
  options.experiment_keys = {"no_such_experiment"};
  absl::StatusOr<AssignResult> r = Assign(*config_, User("u"), options);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("no_such_experiment"));
  AssignOptions features;
  features.feature_keys = {"nope"};
  EXPECT_EQ(Assign(*config_, User("u"), features).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(AssignerTest, UnitWithoutTheHashedIdTypeIsInNoExperiment) {
  Unit device;
  device.ids["device_id"] = "d-1";
  const AssignResult r = MustAssign(device);
  EXPECT_TRUE(r.assignments.empty());
  EXPECT_EQ(FindFeature(r, "headline")->source, FeatureSource::kDefault);
}

TEST(Assigner, HoldoutUnitsGetNoExperimentAndDefaults) {
  std::shared_ptr<const IndexedConfig> config = Load(R"yaml(
holdout: {fraction: 0.05, salt: hold}
features:
  - {key: color, type: string, default: grey}
experiments:
  - key: colors
    status: running
    variants:
      - {key: red, weight: 1, features: {color: red}}
      - {key: blue, weight: 1, features: {color: blue}}
)yaml");
  ASSERT_NE(config, nullptr);
  int held = 0;
  for (int i = 0; i < 20000; ++i) {
    const std::string id = absl::StrCat("h", i);
    absl::StatusOr<AssignResult> r = Assign(*config, User(id), {});
    ASSERT_TRUE(r.ok());
    const bool expected = Bucket(HashPurpose::kHoldout, "hold", id) < 500;
    ASSERT_EQ(r->in_holdout, expected);
    if (r->in_holdout) {
      ++held;
      EXPECT_TRUE(r->assignments.empty());
      EXPECT_EQ(r->features[0].value->text, "grey");
      EXPECT_EQ(r->features[0].source, FeatureSource::kDefault);
    } else {
      EXPECT_EQ(r->assignments.size(), 1u);
    }
  }
  EXPECT_NEAR(held, 1000, 5 * 31);
}

TEST(Assigner, RaisingTrafficNeverMovesAnAssignedUnit) {
  auto config_at = [](const char* traffic) {
    return Load(absl::StrCat(R"yaml(
experiments:
  - key: ramp
    status: running
    traffic: )yaml",
                             traffic, R"yaml(
    variants:
      - {key: a, weight: 1}
      - {key: b, weight: 2}
      - {key: c, weight: 1}
)yaml"));
  };
  const std::vector<std::shared_ptr<const IndexedConfig>> ramps = {
      config_at("0.05"), config_at("0.2"), config_at("0.5"), config_at("1")};
  for (int i = 0; i < 20000; ++i) {
    const Unit unit = User(absl::StrCat("ramp-", i));
    int previous = -1;
    for (const auto& config : ramps) {
      ASSERT_NE(config, nullptr);
      absl::StatusOr<AssignResult> r = Assign(*config, unit, {});
      ASSERT_TRUE(r.ok());
      const int now =
          r->assignments.empty() ? -1 : r->assignments[0].variant_index;
      if (previous >= 0) {
        ASSERT_EQ(now, previous) << "unit ramp-" << i << " moved";
      }
      previous = now;
    }
    EXPECT_GE(previous, 0);  // at 100% everyone is in
  }
}

TEST_F(AssignerTest, InvalidUnitsAreRejectedNamingTheField) {
  struct Case {
    Unit unit;
    std::string field;
  };
  Unit no_ids;
  Unit empty_id = User("");
  Unit long_id = User(std::string(257, 'x'));
  Unit many_attributes = User("u");
  for (int i = 0; i < 101; ++i)
    many_attributes.attributes[absl::StrCat("a", i)] = 1.0;
  Unit wrong_type = User("u", {{"days_since_signup", std::string("three")}});
  Unit bad_version = User("u", {{"app_version", std::string("latest")}});
  Unit not_finite = User("u", {{"days_since_signup", std::nan("")}});
  const std::vector<Case> cases = {
      {no_ids, "unit.ids"},
      {empty_id, "unit.ids[user_id]"},
      {long_id, "unit.ids[user_id]"},
      {many_attributes, "unit.attributes"},
      {wrong_type, "unit.attributes[days_since_signup]"},
      {bad_version, "unit.attributes[app_version]"},
      {not_finite, "unit.attributes[days_since_signup]"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<AssignResult> r = Assign(*config_, c.unit, {});
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(r.status().message(), HasSubstr(c.field));
  }
  // Exactly at the limits is fine, and undeclared attributes are ignored.
  Unit at_limit =
      User(std::string(256, 'x'), {{"undeclared", std::string("anything")}});
  EXPECT_TRUE(Assign(*config_, at_limit, {}).ok());
}

TEST_F(AssignerTest, ExplainShowsHashInputBucketAndMatchedRange) {
  absl::StatusOr<ExplainResult> x =
      Explain(*config_, User("u-123"), "one_page_checkout", absl::Now());
  ASSERT_TRUE(x.ok()) << x.status();
  ASSERT_TRUE(x->has_variant_hash);
  EXPECT_EQ(x->variant_hash.input,
            HashInput(HashPurpose::kVariant, "one_page_checkout", "u-123"));
  EXPECT_EQ(x->variant_hash.bucket,
            Bucket(HashPurpose::kVariant, "one_page_checkout", "u-123"));
  ASSERT_TRUE(x->has_layer);
  EXPECT_EQ(x->layer_hash.bucket,
            Bucket(HashPurpose::kLayer, "checkout", "u-123"));
  // Explain and Assign agree.
  const AssignResult r = MustAssign(User("u-123"));
  const ExperimentAssignment* a = Find(r, "one_page_checkout");
  EXPECT_EQ(x->variant_index, a ? a->variant_index : -1);
  if (x->variant_index >= 0) {
    EXPECT_TRUE(x->experiment->variants[x->variant_index].active_range.Contains(
        x->variant_hash.bucket));
  } else {
    EXPECT_THAT(x->summary, HasSubstr("layer"));
  }
  ASSERT_FALSE(x->steps.empty());
  EXPECT_EQ(x->steps.front().check, "status");
}

TEST_F(AssignerTest, ExplainReportsTheRuleThatFailed) {
  absl::StatusOr<ExplainResult> x =
      Explain(*config_, User("u-1", {{"days_since_last_active", 2.0}}),
              "recall_push", absl::Now());
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(x->variant_index, -1);
  EXPECT_EQ(x->steps.back().check, "targeting");
  EXPECT_FALSE(x->steps.back().passed);
  ASSERT_GE(x->targeting.size(), 2u);  // the segment and its definition
  EXPECT_EQ(x->targeting[1].actual, "2");
  EXPECT_FALSE(x->targeting[1].matched);
}

TEST_F(AssignerTest, ExplainOfUnknownExperimentIsNotFound) {
  EXPECT_EQ(Explain(*config_, User("u"), "nope", absl::Now()).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(AssignerTest, ExplainAgreesWithAssignForManyUnits) {
  for (int i = 0; i < 3000; ++i) {
    const Unit unit = User(absl::StrCat("x", i),
                           {{"days_since_last_active", double(i % 60)}});
    const AssignResult r = MustAssign(unit);
    for (const Experiment& e : config_->experiments) {
      absl::StatusOr<ExplainResult> x =
          Explain(*config_, unit, e.key, absl::Now());
      ASSERT_TRUE(x.ok());
      const ExperimentAssignment* a = Find(r, e.key);
      ASSERT_EQ(x->variant_index, a ? a->variant_index : -1)
          << e.key << " x" << i;
    }
  }
}

// --- Sticky experiments ------------------------------------------------------

constexpr char kStickyConfig[] = R"yaml(
attributes:
  country: string
holdout: {fraction: 0.2, salt: hold}
layers:
  shelf: {unit: user_id}
features:
  - {key: color, type: string, default: grey}
  - {key: size, type: number, default: 0}
experiments:
  - key: paint
    status: running
    sticky: true
    traffic: 0.3
    targeting: {attribute: country, eq: NL}
    layer: shelf
    layer_range: [0, 0.5]
    variants:
      - {key: red, weight: 9, features: {color: red}}
      - {key: blue, weight: 1, features: {color: blue}}
    qa_overrides:
      red: [qa-1]
  - key: sizing
    status: running
    variants:
      - {key: small, weight: 1, features: {size: 1}}
      - {key: large, weight: 1, features: {size: 2}}
  - key: paused_paint
    status: paused
    sticky: true
    variants:
      - {key: a, weight: 1, features: {color: paused}}
)yaml";

class StickyAssignerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = Load(kStickyConfig);
    ASSERT_NE(config_, nullptr);
    paint_ = config_->FindExperiment("paint");
    sizing_ = config_->FindExperiment("sizing");
  }
  // Whether a Dutch unit passes every check of `paint` before traffic, from
  // the spec's hashes: not held out (holdout bucket >= 2000) and in the first
  // half of layer `shelf`.
  static bool Eligible(const std::string& id) {
    return Bucket(HashPurpose::kHoldout, "hold", id) >= 2000 &&
           Bucket(HashPurpose::kLayer, "shelf", id) < 5000;
  }
  static Unit Dutch(const std::string& id) {
    return User(id, {{"country", std::string("NL")}});
  }
  std::vector<StickyLookup> Lookups(const Unit& unit,
                                    AssignOptions options = {}) {
    absl::StatusOr<std::vector<StickyLookup>> l =
        StickyLookups(*config_, unit, options);
    EXPECT_TRUE(l.ok()) << l.status();
    return l.ok() ? *l : std::vector<StickyLookup>{};
  }
  AssignResult MustAssign(const Unit& unit, AssignOptions options = {}) {
    absl::StatusOr<AssignResult> r = Assign(*config_, unit, options);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : AssignResult{};
  }
  std::shared_ptr<const IndexedConfig> config_;
  const Experiment* paint_ = nullptr;
  const Experiment* sizing_ = nullptr;
};

TEST_F(StickyAssignerTest,
       RecordedVariantWinsOverWeightsAndTrafficWithItsFeatures) {
  int eligible = 0, outside_traffic = 0;
  for (int i = 0; i < 3000; ++i) {
    const std::string id = absl::StrCat("s", i);
    AssignOptions options;
    // Blue has 10% of 30% traffic, so the hash alone would rarely give it.
    options.recorded_variants[paint_] = 1;
    const AssignResult r = MustAssign(Dutch(id), options);
    const ExperimentAssignment* a = Find(r, "paint");
    if (!Eligible(id)) {
      EXPECT_EQ(a, nullptr)
          << id << ": the record must not bypass holdout or layer";
      continue;
    }
    ++eligible;
    if (Bucket(HashPurpose::kVariant, "paint", id) >= 3000) ++outside_traffic;
    ASSERT_NE(a, nullptr) << id;
    EXPECT_EQ(a->variant_index, 1) << id;
    EXPECT_EQ(a->reason, AssignmentReason::kSticky) << id;
    const ResolvedFeature* color = FindFeature(r, "color");
    EXPECT_EQ(color->value->text, "blue") << id;
    EXPECT_EQ(color->source, FeatureSource::kExperiment) << id;
    EXPECT_EQ(color->variant_index, 1) << id;
  }
  // The sample covers units the traffic cut would have dropped.
  EXPECT_GT(eligible, 500);
  EXPECT_GT(outside_traffic, 200);
}

TEST_F(StickyAssignerTest,
       RecordsOfNonStickyExperimentsAndUnknownIndexesAreIgnored) {
  for (int i = 0; i < 500; ++i) {
    const std::string id = absl::StrCat("n", i);
    const AssignResult plain = MustAssign(Dutch(id));
    const ExperimentAssignment* sizing =
        Find(plain, "sizing");  // null if held out
    for (int bad : {-2, 2, 7}) {
      AssignOptions options;
      options.recorded_variants[paint_] = bad;
      options.recorded_variants[sizing_] =
          sizing ? 1 - sizing->variant_index : 0;
      const AssignResult r = MustAssign(Dutch(id), options);
      ASSERT_EQ(r.assignments.size(), plain.assignments.size()) << id;
      for (size_t k = 0; k < r.assignments.size(); ++k) {
        EXPECT_EQ(r.assignments[k].variant_index,
                  plain.assignments[k].variant_index)
            << id;
        EXPECT_EQ(r.assignments[k].reason, AssignmentReason::kBucketed) << id;
      }
    }
  }
}

TEST_F(StickyAssignerTest, AnUnreadRecordServesTheHashedVariantAndSaysSo) {
  int in_paint = 0;
  for (int i = 0; i < 500; ++i) {
    const std::string id = absl::StrCat("n", i);
    const AssignResult plain = MustAssign(Dutch(id));
    AssignOptions options;
    options.recorded_variants[paint_] = kUnreadVariant;
    const AssignResult r = MustAssign(Dutch(id), options);
    ASSERT_EQ(r.assignments.size(), plain.assignments.size()) << id;
    for (size_t k = 0; k < r.assignments.size(); ++k) {
      EXPECT_EQ(r.assignments[k].variant_index,
                plain.assignments[k].variant_index)
          << id;
      // Only the sticky experiment whose read failed says so.
      const bool paint = r.assignments[k].experiment == paint_;
      in_paint += paint ? 1 : 0;
      EXPECT_EQ(r.assignments[k].reason, paint ? AssignmentReason::kStickyUnread
                                               : AssignmentReason::kBucketed)
          << id;
    }
  }
  EXPECT_GT(in_paint, 30);  // the sample reaches the sticky experiment
}

TEST_F(StickyAssignerTest, QaOverrideStillBeatsTheRecord) {
  AssignOptions options;
  options.recorded_variants[paint_] = 1;
  const AssignResult r = MustAssign(Dutch("qa-1"), options);
  const ExperimentAssignment* a = Find(r, "paint");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->variant_index, 0);
  EXPECT_EQ(a->reason, AssignmentReason::kQaOverride);
  EXPECT_TRUE(Lookups(Dutch("qa-1")).empty());
}

TEST_F(StickyAssignerTest, TargetingStillDropsARecordedUnit) {
  for (int i = 0; i < 300; ++i) {
    const std::string id = absl::StrCat("t", i);
    AssignOptions options;
    options.recorded_variants[paint_] = 1;
    const Unit german = User(id, {{"country", std::string("DE")}});
    EXPECT_EQ(Find(MustAssign(german, options), "paint"), nullptr) << id;
    EXPECT_TRUE(Lookups(german).empty()) << id;
  }
}

TEST_F(StickyAssignerTest,
       LookupsNameExactlyTheStickyExperimentsAssignWouldConsult) {
  int looked_up = 0;
  for (int i = 0; i < 2000; ++i) {
    const std::string id = absl::StrCat("l", i);
    const std::vector<StickyLookup> all = Lookups(Dutch(id));
    // Never the non-sticky or the paused sticky experiment.
    ASSERT_LE(all.size(), 1u);
    EXPECT_EQ(all.size() == 1, Eligible(id)) << id;
    if (all.size() == 1) {
      ++looked_up;
      EXPECT_EQ(all[0].experiment, paint_);
      EXPECT_EQ(all[0].unit_id, id);
    }
    // Filters: only experiments Assign evaluates are looked up.
    AssignOptions only_sizing;
    only_sizing.experiment_keys = {"sizing"};
    EXPECT_TRUE(Lookups(Dutch(id), only_sizing).empty()) << id;
    AssignOptions color_feature;
    color_feature.feature_keys = {"color"};
    EXPECT_EQ(Lookups(Dutch(id), color_feature).size(), all.size()) << id;
  }
  EXPECT_GT(looked_up, 400);
  // A unit without the id type needs no lookup.
  Unit device;
  device.ids["device_id"] = "d-1";
  device.attributes["country"] = std::string("NL");
  EXPECT_TRUE(Lookups(device).empty());
  // Filter errors are Assign's.
  AssignOptions typo;
  typo.experiment_keys = {"paintt"};
  EXPECT_EQ(StickyLookups(*config_, Dutch("x"), typo).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(StickyAssignerTest, ExplainAgreesWithAssignAndShowsTheRecord) {
  int sticky = 0;
  for (int i = 0; i < 1500; ++i) {
    const std::string id = absl::StrCat("e", i);
    const Unit unit = Dutch(id);
    if (Lookups(unit).empty()) continue;
    // Cycle through: recorded blue, never exposed, a dropped variant, a
    // store error.
    const int kind = i % 4;
    AssignOptions options;
    absl::StatusOr<std::optional<int>> recorded = std::optional<int>();
    if (kind == 0) recorded = std::optional<int>(1);
    if (kind == 2) recorded = std::optional<int>(5);
    if (kind == 3)
      recorded = absl::UnavailableError("Redis at 127.0.0.1:1 is down");
    if (recorded.ok() && recorded->has_value())
      options.recorded_variants[paint_] = **recorded;
    // What ApplyRecordedVariants passes for a failed read.
    if (!recorded.ok()) options.recorded_variants[paint_] = kUnreadVariant;
    const AssignResult r = MustAssign(unit, options);
    const ExperimentAssignment* a = Find(r, "paint");
    absl::StatusOr<ExplainResult> x =
        Explain(*config_, unit, "paint", absl::Now(), &recorded);
    ASSERT_TRUE(x.ok()) << x.status();
    ASSERT_EQ(x->variant_index, a ? a->variant_index : -1) << id;
    if (a != nullptr) {
      EXPECT_EQ(x->reason, a->reason) << id;
    }
    const ExplainStep* step = nullptr;
    for (const ExplainStep& s : x->steps) {
      if (s.check == "sticky") step = &s;
    }
    ASSERT_NE(step, nullptr) << id;
    switch (kind) {
      case 0:
        ++sticky;
        EXPECT_EQ(x->reason, AssignmentReason::kSticky);
        EXPECT_THAT(step->detail, HasSubstr("first exposed to variant 'blue'"));
        EXPECT_EQ(x->steps.back().check, "sticky");
        break;
      case 1:
        EXPECT_TRUE(step->passed);
        EXPECT_THAT(step->detail, HasSubstr("no recorded exposure"));
        break;
      case 2:
        EXPECT_THAT(step->detail,
                    HasSubstr("index 5 is not among the 2 variants"));
        break;
      case 3:
        EXPECT_FALSE(step->passed);
        EXPECT_THAT(step->detail, HasSubstr("Redis at 127.0.0.1:1 is down"));
        if (x->variant_index >= 0) {
          EXPECT_EQ(x->reason, AssignmentReason::kStickyUnread) << id;
        }
        break;
    }
    if (kind != 0) {
      EXPECT_EQ(x->steps.back().check, "traffic") << id;
    }
  }
  EXPECT_GT(sticky, 50);
}

}  // namespace
}  // namespace abexp

namespace abexp {
namespace {

TEST(ClipForMessage, ShortPrintableTextIsQuotedUnchanged) {
  EXPECT_EQ(ClipForMessage("u-123"), "u-123");
  EXPECT_EQ(ClipForMessage(""), "");
}

TEST(ClipForMessage, LongTextKeepsAShortPrefixAndSaysItsLength) {
  const std::string clipped = ClipForMessage(std::string(1 << 20, 'k'));
  EXPECT_EQ(clipped, std::string(kMaxQuotedBytes, 'k') + "... (1048576 bytes)");
}

TEST(ClipForMessage, BytesThatAreNotPrintableAreEscaped) {
  EXPECT_EQ(ClipForMessage(std::string("a\nb\xff\x00", 5)), "a\\nb\\xff\\x00");
  const std::string clipped = ClipForMessage(std::string(100, '\xfe'));
  for (char c : clipped) {
    EXPECT_TRUE(c >= 0x20 && c <= 0x7e) << static_cast<int>(c);
  }
  EXPECT_THAT(clipped, ::testing::EndsWith("... (100 bytes)"));
}

}  // namespace
}  // namespace abexp
