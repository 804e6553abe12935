// bench/experiments-50.yaml is what issue 5's R1 and R4 are measured on:
// 50 running experiments in 5 layers, with targeting and a holdout. These
// tests load it with the real parser so the benchmarks never silently run
// on a config that is invalid or smaller than the one the goals name.
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "server/core/config.h"
#include "server/core/config_parser.h"

namespace abexp {
namespace {

constexpr char kBenchConfig[] = ABEXP_SOURCE_DIR "/bench/experiments-50.yaml";

class BenchConfig : public testing::Test {
 protected:
  void SetUp() override {
    ParseResult r = ParseConfigFile(kBenchConfig);
    ASSERT_TRUE(r.ok()) << r.FormatDiagnostics();
    // Warnings would print on every server start under benchmark.
    EXPECT_TRUE(r.diagnostics.empty()) << r.FormatDiagnostics();
    config_ = r.config;
  }

  std::shared_ptr<const Config> config_;
};

TEST_F(BenchConfig, HasFiftyExperimentsAllRunningNow) {
  ASSERT_EQ(config_->experiments.size(), 50u);
  const absl::Time now = absl::Now();
  for (const Experiment& e : config_->experiments) {
    EXPECT_EQ(e.status, ExperimentStatus::kRunning) << e.key;
    // A start in the future or an end in the past would make the experiment
    // assign nobody, and the benchmark would measure less than it claims.
    if (e.start_time) {
      EXPECT_LT(*e.start_time, now) << e.key;
    }
    if (e.end_time) {
      EXPECT_GT(*e.end_time, now) << e.key;
    }
  }
}

TEST_F(BenchConfig, SpreadsTheExperimentsOverFiveLayers) {
  ASSERT_EQ(config_->layers.size(), 5u);
  std::map<std::string, int> per_layer;
  for (const Experiment& e : config_->experiments) {
    EXPECT_FALSE(e.layer.empty()) << e.key << " is in no layer";
    ++per_layer[e.layer];
  }
  EXPECT_EQ(per_layer.size(), 5u);
  for (const auto& [layer, count] : per_layer) EXPECT_GE(count, 5) << layer;
}

TEST_F(BenchConfig, TargetsLikeTheExampleConfig) {
  ASSERT_TRUE(config_->holdout.has_value());
  EXPECT_GT(config_->holdout->bp, 0u);
  int targeted = 0;
  std::set<std::string> unit_types;
  std::set<std::string> features_set;
  bool qa_overrides = false;
  bool partial_traffic = false;
  for (const Experiment& e : config_->experiments) {
    if (e.targeting) ++targeted;
    unit_types.insert(e.unit_id_type);
    qa_overrides = qa_overrides || !e.qa_overrides.empty();
    partial_traffic = partial_traffic || e.traffic_bp < kNumBuckets;
    for (const Variant& v : e.variants) {
      for (const auto& [key, value] : v.features) features_set.insert(key);
    }
  }
  // Most experiments target a segment or an attribute; a few target everyone.
  EXPECT_GE(targeted, 30);
  EXPECT_LT(targeted, 50);
  EXPECT_GE(config_->segments.size(), 5u);
  // Logged-in and logged-out experiments, as in examples/experiments.yaml.
  EXPECT_EQ(unit_types, (std::set<std::string>{"user_id", "device_id"}));
  EXPECT_TRUE(qa_overrides);
  EXPECT_TRUE(partial_traffic);
  EXPECT_GE(features_set.size(), 20u);
  int features_with_rules = 0;
  for (const Feature& f : config_->features)
    features_with_rules += !f.rules.empty();
  EXPECT_GT(features_with_rules, 0);
}

}  // namespace
}  // namespace abexp
