#include "server/core/config_diff.h"

#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "server/core/bucketing.h"
#include "server/core/config.h"

namespace abexp {
namespace {

// Expected shares below are worked out by hand from the range rule in
// bucketing.h: variant i owns [floor(10000*W_<i/W), floor(10000*W_<=i/W)),
// and at traffic t serves its first floor(len * t / 10000) buckets.

struct VariantSpec {
  std::string key;
  uint64_t weight;
};

Experiment MakeExperiment(const std::string& key,
                          const std::vector<VariantSpec>& variants,
                          uint32_t traffic_bp = kNumBuckets) {
  Experiment e;
  e.key = key;
  e.salt = key;
  e.status = ExperimentStatus::kRunning;
  e.traffic_bp = traffic_bp;
  std::vector<uint64_t> weights;
  for (const VariantSpec& v : variants) {
    Variant variant;
    variant.key = v.key;
    variant.weight = v.weight * kWeightScale;
    variant.weight_text = std::to_string(v.weight);
    e.variants.push_back(variant);
    weights.push_back(variant.weight);
  }
  const VariantRanges ranges = ComputeVariantRanges(weights, traffic_bp);
  for (size_t i = 0; i < e.variants.size(); ++i) {
    e.variants[i].full_range = ranges.full[i];
    e.variants[i].active_range = ranges.active[i];
  }
  return e;
}

Config MakeConfig(std::vector<Experiment> experiments) {
  Config c;
  c.version = "0000000000000000";
  Layer layer;
  layer.key = "checkout";
  layer.salt = "checkout";
  c.layers["checkout"] = layer;
  c.experiments = std::move(experiments);
  return c;
}

const ExperimentDiff& Find(const ConfigDiff& diff, const std::string& key) {
  for (const ExperimentDiff& e : diff.experiments) {
    if (e.key == key) return e;
  }
  ADD_FAILURE() << "no diff for " << key;
  static const ExperimentDiff kNone;
  return kNone;
}

const Share kZero = Share{0, 1};

TEST(ConfigDiff, IdenticalConfigsProduceAllZeros) {
  const Config c = MakeConfig({MakeExperiment("exp", {{"a", 50}, {"b", 50}}),
                               MakeExperiment("exp2", {{"x", 1}}, 2500)});
  const ConfigDiff diff = DiffConfigs(c, c);
  ASSERT_EQ(diff.experiments.size(), 2u);
  for (const ExperimentDiff& e : diff.experiments) {
    EXPECT_EQ(e.change, DiffChange::kUnchanged) << e.key;
    EXPECT_EQ(e.moved, kZero) << e.key;
    EXPECT_EQ(e.added, kZero) << e.key;
    EXPECT_EQ(e.removed, kZero) << e.key;
    EXPECT_FALSE(e.breaking) << e.key;
    EXPECT_TRUE(e.notes.empty()) << e.key;
  }
  EXPECT_TRUE(diff.features.empty());
  EXPECT_TRUE(diff.ok());
}

TEST(ConfigDiff, RaisingTrafficMovesNobodyAndAddsTheExactShare) {
  const Config old_config =
      MakeConfig({MakeExperiment("exp", {{"a", 50}, {"b", 50}}, 2500)});
  const Config new_config =
      MakeConfig({MakeExperiment("exp", {{"a", 50}, {"b", 50}}, 5000)});
  const ConfigDiff diff = DiffConfigs(old_config, new_config);
  const ExperimentDiff& e = Find(diff, "exp");
  // a: [0,1250) -> [0,2500); b: [5000,6250) -> [5000,7500).
  EXPECT_EQ(e.moved, kZero);
  EXPECT_EQ(e.added, Share::Of(1250 + 1250, 10000));
  EXPECT_EQ(e.removed, kZero);
  EXPECT_FALSE(e.breaking);
  EXPECT_TRUE(diff.ok());
  ASSERT_FALSE(e.notes.empty());
  EXPECT_EQ(e.notes[0], "traffic 0.25 -> 0.5");
}

TEST(ConfigDiff, LoweringTrafficRemovesUnitsWithoutMovingAny) {
  const Config old_config =
      MakeConfig({MakeExperiment("exp", {{"a", 50}, {"b", 50}})});
  const Config new_config =
      MakeConfig({MakeExperiment("exp", {{"a", 50}, {"b", 50}}, 1000)});
  const ExperimentDiff e = Find(DiffConfigs(old_config, new_config), "exp");
  // Each variant keeps its first 500 of 5000 buckets.
  EXPECT_EQ(e.moved, kZero);
  EXPECT_EQ(e.added, kZero);
  EXPECT_EQ(e.removed, Share::Of(2 * 4500, 10000));
  EXPECT_FALSE(e.breaking);
}

TEST(ConfigDiff, WeightChangeFrom50_50To40_60MovesExactlyTenPercent) {
  const Config old_config =
      MakeConfig({MakeExperiment("exp", {{"a", 50}, {"b", 50}})});
  const Config new_config =
      MakeConfig({MakeExperiment("exp", {{"a", 40}, {"b", 60}})});
  const ConfigDiff diff = DiffConfigs(old_config, new_config);
  const ExperimentDiff& e = Find(diff, "exp");
  // Buckets [4000,5000) go from a to b.
  EXPECT_EQ(e.moved, Share::Of(1, 10));
  EXPECT_EQ(e.added, kZero);
  EXPECT_EQ(e.removed, kZero);
  EXPECT_TRUE(e.breaking);
  EXPECT_FALSE(diff.ok());
}

TEST(ConfigDiff, AWeightChangeAtPartialTrafficStillFails) {
  // At traffic 0.5, a = [0,2500) and b = [5000,7500). With 40/60 weights a
  // serves [0,2000) and b [4000,7000): [4000,5000) is newly assigned to b,
  // [7000,7500) leaves, and no bucket assigned in both changes variant.
  const Config old_config =
      MakeConfig({MakeExperiment("exp", {{"a", 50}, {"b", 50}}, 5000)});
  const Config new_config =
      MakeConfig({MakeExperiment("exp", {{"a", 40}, {"b", 60}}, 5000)});
  const ExperimentDiff e = Find(DiffConfigs(old_config, new_config), "exp");
  EXPECT_EQ(e.moved, kZero);
  EXPECT_EQ(e.added, Share::Of(1000, 10000));
  EXPECT_EQ(e.removed, Share::Of(500 + 500, 10000));
  // Units still leave a and join b: the split changed, so it fails.
  EXPECT_TRUE(e.allocation_changed);
  EXPECT_TRUE(e.breaking);
}

TEST(ConfigDiff, InsertingAVariantInTheMiddleMovesUnits) {
  const Config old_config =
      MakeConfig({MakeExperiment("exp", {{"a", 1}, {"b", 1}})});
  const Config new_config =
      MakeConfig({MakeExperiment("exp", {{"a", 1}, {"c", 1}, {"b", 1}})});
  const ConfigDiff diff = DiffConfigs(old_config, new_config);
  const ExperimentDiff& e = Find(diff, "exp");
  // Old: a [0,5000), b [5000,10000). New: a [0,3333), c [3333,6666),
  // b [6666,10000). Moved: [3333,5000) a->c and [5000,6666) b->c.
  EXPECT_EQ(e.moved, Share::Of((5000 - 3333) + (6666 - 5000), 10000));
  EXPECT_TRUE(e.breaking);
  EXPECT_FALSE(diff.ok());
}

TEST(ConfigDiff, AppendingAZeroWeightVariantMovesNobody) {
  const Config old_config =
      MakeConfig({MakeExperiment("exp", {{"a", 1}, {"b", 1}})});
  const Config new_config =
      MakeConfig({MakeExperiment("exp", {{"a", 1}, {"b", 1}, {"c", 0}})});
  const ExperimentDiff e = Find(DiffConfigs(old_config, new_config), "exp");
  EXPECT_EQ(e.moved, kZero);
  EXPECT_FALSE(e.allocation_changed);
  EXPECT_FALSE(e.breaking);
}

TEST(ConfigDiff, AppendingAWeightedVariantMovesTheUnitsItTakesOver) {
  const Config old_config =
      MakeConfig({MakeExperiment("exp", {{"a", 1}, {"b", 1}})});
  const Config new_config =
      MakeConfig({MakeExperiment("exp", {{"a", 1}, {"b", 1}, {"c", 1}})});
  const ExperimentDiff e = Find(DiffConfigs(old_config, new_config), "exp");
  // New: a [0,3333), b [3333,6666), c [6666,10000).
  // Moved: [3333,5000) a->b and [6666,10000) b->c.
  EXPECT_EQ(e.moved, Share::Of((5000 - 3333) + (10000 - 6666), 10000));
  EXPECT_TRUE(e.breaking);
}

TEST(ConfigDiff, RenamingAVariantMovesItsUnits) {
  const Config old_config =
      MakeConfig({MakeExperiment("exp", {{"a", 1}, {"b", 3}})});
  const Config new_config =
      MakeConfig({MakeExperiment("exp", {{"a", 1}, {"treatment", 3}})});
  const ExperimentDiff e = Find(DiffConfigs(old_config, new_config), "exp");
  EXPECT_EQ(e.moved, Share::Of(3, 4));
  EXPECT_TRUE(e.breaking);
}

TEST(ConfigDiff, SaltChangeWithoutANewPhaseFails) {
  const Config old_config =
      MakeConfig({MakeExperiment("exp", {{"a", 50}, {"b", 50}})});
  Experiment changed = MakeExperiment("exp", {{"a", 50}, {"b", 50}});
  changed.salt = "exp-v2";
  const Config new_config = MakeConfig({changed});
  const ConfigDiff diff = DiffConfigs(old_config, new_config);
  const ExperimentDiff& e = Find(diff, "exp");
  // Independent buckets: P(a then b) + P(b then a) = 1/4 + 1/4.
  EXPECT_TRUE(e.rehashed);
  EXPECT_EQ(e.moved, Share::Of(1, 2));
  EXPECT_FALSE(e.new_phase_declared);
  EXPECT_TRUE(e.breaking);
  EXPECT_FALSE(diff.ok());
}

TEST(ConfigDiff, SaltChangeWithAPhaseBumpIsANewPhase) {
  const Config old_config =
      MakeConfig({MakeExperiment("exp", {{"a", 20}, {"b", 80}})});
  Experiment changed = MakeExperiment("exp", {{"a", 20}, {"b", 80}});
  changed.salt = "exp-phase2";
  changed.phase = 2;
  const Config new_config = MakeConfig({changed});
  const ConfigDiff diff = DiffConfigs(old_config, new_config);
  const ExperimentDiff& e = Find(diff, "exp");
  // 0.2 * 0.8 + 0.8 * 0.2.
  EXPECT_EQ(e.moved, Share::Of(32, 100));
  EXPECT_TRUE(e.rehashed);
  EXPECT_TRUE(e.new_phase_declared);
  EXPECT_FALSE(e.breaking);
  EXPECT_TRUE(diff.ok());
}

TEST(ConfigDiff, ChangingTheUnitIdTypeRerandomizes) {
  const Config old_config =
      MakeConfig({MakeExperiment("exp", {{"a", 50}, {"b", 50}})});
  Experiment changed = MakeExperiment("exp", {{"a", 50}, {"b", 50}});
  changed.unit_id_type = "device_id";
  const ExperimentDiff e =
      Find(DiffConfigs(old_config, MakeConfig({changed})), "exp");
  EXPECT_TRUE(e.rehashed);
  EXPECT_EQ(e.moved, Share::Of(1, 2));
  EXPECT_TRUE(e.breaking);
}

TEST(ConfigDiff, WideningALayerRangeOnlyAddsUnits) {
  Experiment before = MakeExperiment("exp", {{"a", 50}, {"b", 50}});
  before.layer = "checkout";
  before.layer_range = {0, 5000};
  Experiment after = before;
  after.layer_range = {0, 6000};
  const ExperimentDiff e =
      Find(DiffConfigs(MakeConfig({before}), MakeConfig({after})), "exp");
  EXPECT_EQ(e.moved, kZero);
  EXPECT_EQ(e.added, Share::Of(1000, 10000));
  EXPECT_EQ(e.removed, kZero);
  EXPECT_FALSE(e.breaking);
}

TEST(ConfigDiff, ShiftingALayerRangeSwapsUnitsWithoutMovingAny) {
  Experiment before = MakeExperiment("exp", {{"a", 50}, {"b", 50}}, 5000);
  before.layer = "checkout";
  before.layer_range = {0, 5000};
  Experiment after = before;
  after.layer_range = {2500, 7500};
  const ExperimentDiff e =
      Find(DiffConfigs(MakeConfig({before}), MakeConfig({after})), "exp");
  // Layer buckets [0,2500) leave and [5000,7500) join; half of each is
  // assigned at traffic 0.5.
  EXPECT_EQ(e.moved, kZero);
  EXPECT_EQ(e.added, Share::Of(2500 * 5000, 10000 * 10000));
  EXPECT_EQ(e.removed, Share::Of(2500 * 5000, 10000 * 10000));
  EXPECT_FALSE(e.breaking);
}

TEST(ConfigDiff, ChangingTheLayerSaltReshufflesLayerMembership) {
  Experiment exp = MakeExperiment("exp", {{"a", 50}, {"b", 50}});
  exp.layer = "checkout";
  exp.layer_range = {0, 5000};
  const Config old_config = MakeConfig({exp});
  Config new_config = MakeConfig({exp});
  new_config.layers["checkout"].salt = "checkout-2";
  const ConfigDiff diff = DiffConfigs(old_config, new_config);
  const ExperimentDiff& e = Find(diff, "exp");
  // Independent halves: 1/4 in old only, 1/4 in new only.
  EXPECT_EQ(e.moved, kZero);
  EXPECT_EQ(e.added, Share::Of(1, 4));
  EXPECT_EQ(e.removed, Share::Of(1, 4));
  EXPECT_FALSE(e.rehashed);
}

TEST(ConfigDiff, NewAndRemovedExperimentsAddAndRemoveTheirTraffic) {
  const Config old_config = MakeConfig({MakeExperiment("gone", {{"a", 1}})});
  const Config new_config =
      MakeConfig({MakeExperiment("fresh", {{"a", 1}, {"b", 1}}, 3000)});
  const ConfigDiff diff = DiffConfigs(old_config, new_config);
  const ExperimentDiff& fresh = Find(diff, "fresh");
  EXPECT_EQ(fresh.change, DiffChange::kAdded);
  EXPECT_EQ(fresh.added, Share::Of(3, 10));
  EXPECT_FALSE(fresh.breaking);
  const ExperimentDiff& gone = Find(diff, "gone");
  EXPECT_EQ(gone.change, DiffChange::kRemoved);
  EXPECT_EQ(gone.removed, Share::Of(1, 1));
  EXPECT_TRUE(diff.ok());
}

TEST(ConfigDiff, PausingAnExperimentRemovesItsUnitsAndIsNotAFailure) {
  Experiment paused = MakeExperiment("exp", {{"a", 40}, {"b", 60}});
  paused.status = ExperimentStatus::kPaused;
  const ConfigDiff diff =
      DiffConfigs(MakeConfig({MakeExperiment("exp", {{"a", 1}, {"b", 1}})}),
                  MakeConfig({paused}));
  const ExperimentDiff& e = Find(diff, "exp");
  EXPECT_EQ(e.moved, kZero);
  EXPECT_EQ(e.removed, Share::Of(1, 1));
  EXPECT_FALSE(e.breaking);
  EXPECT_TRUE(diff.ok());
}

// Checks the exact model against real hashing: bucket many unit ids with
// both configs, the way the assigner does, and compare the observed shares.
TEST(ConfigDiff, ExactSharesMatchRealBucketingOfManyUnits) {
  Experiment before = MakeExperiment("exp", {{"a", 50}, {"b", 50}}, 8000);
  before.layer = "checkout";
  before.layer_range = {0, 6000};
  Experiment after = MakeExperiment("exp", {{"a", 30}, {"b", 70}}, 8000);
  after.salt = "exp-2";
  after.layer = "checkout";
  after.layer_range = {2000, 8000};
  const ExperimentDiff e =
      Find(DiffConfigs(MakeConfig({before}), MakeConfig({after})), "exp");

  auto variant_of = [](const Experiment& x, const std::string& id) -> int {
    if (!x.layer_range.Contains(Bucket(HashPurpose::kLayer, "checkout", id))) {
      return -1;
    }
    const uint32_t b = Bucket(HashPurpose::kVariant, x.salt, id);
    for (size_t i = 0; i < x.variants.size(); ++i) {
      if (x.variants[i].active_range.Contains(b)) return static_cast<int>(i);
    }
    return -1;
  };
  constexpr int kUnits = 200000;
  int both = 0, moved = 0, added = 0, removed = 0;
  for (int i = 0; i < kUnits; ++i) {
    const std::string id = "unit-" + std::to_string(i);
    const int o = variant_of(before, id);
    const int n = variant_of(after, id);
    if (o >= 0 && n >= 0) {
      ++both;
      if (before.variants[o].key != after.variants[n].key) ++moved;
    } else if (n >= 0) {
      ++added;
    } else if (o >= 0) {
      ++removed;
    }
  }
  // Binomial standard errors are about 0.002 here; allow 4 of them.
  EXPECT_NEAR(static_cast<double>(moved) / both, e.moved.value(), 0.01);
  EXPECT_NEAR(static_cast<double>(added) / kUnits, e.added.value(), 0.005);
  EXPECT_NEAR(static_cast<double>(removed) / kUnits, e.removed.value(), 0.005);
}

TEST(ConfigDiff, ReportsFeatureDefaultChangesAsNotes) {
  Config old_config = MakeConfig({});
  Feature f;
  f.key = "new_search";
  f.type = ValueType::kBool;
  f.default_value.type = ValueType::kBool;
  old_config.features.push_back(f);
  Config new_config = old_config;
  new_config.features[0].default_value.bool_value = true;
  const ConfigDiff diff = DiffConfigs(old_config, new_config);
  ASSERT_EQ(diff.features.size(), 1u);
  EXPECT_EQ(diff.features[0].key, "new_search");
  EXPECT_EQ(diff.features[0].change, DiffChange::kChanged);
  ASSERT_EQ(diff.features[0].notes.size(), 1u);
  EXPECT_EQ(diff.features[0].notes[0], "default false -> true");
  EXPECT_TRUE(diff.ok());
}

}  // namespace
}  // namespace abexp
