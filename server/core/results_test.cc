#include "server/core/results.h"

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/config.h"
#include "server/core/config_parser.h"
#include "server/core/event_store.h"
#include "stats/testing/golden.h"

// The expected figures below were computed once with Debian's Python
// (SciPy 1.10, statsmodels 0.13), not with this code:
//  - a difference of rates, its p-value and 95% interval:
//    statsmodels.stats.proportion.test_proportions_2indep(x_t, n_t, x_c, n_c,
//    method="wald", compare="diff") and confint_proportions_2indep(...,
//    method="wald", compare="diff");
//  - adjusted p-values: statsmodels.stats.multitest.multipletests(family,
//    method="holm" / "fdr_bh");
//  - the sample-ratio check: scipy.stats.chisquare(exposed) (equal weights);
//  - the units per variant to detect +5% at a 10% rate (alpha 0.05, power
//    0.8): Fleiss' formula with scipy.stats.norm quantiles, 57762.65 ->
//    57763 (statsmodels' NormalIndPower on Cohen's h, a close approximation,
//    gives 57755.6); and to detect -5% at a 96% rate, 406.96 -> 407
//    (NormalIndPower: 393.8).
// The Bayesian figures come from stats/testdata/bayes.golden (gen_bayes.py).

namespace abexp {
namespace {

using stats::testing::ExpectClose;

constexpr char kConfig[] = R"yaml(
attributes: {platform: string}
metrics:
  - key: conversion
    type: binomial
    event: order_completed
  - key: signup
    type: binomial
    event: signed_up
  - key: errors
    type: binomial
    event: error_shown
    guardrail: true
    higher_is_better: false
  - key: abandonment
    type: binomial
    event: cart_abandoned
    higher_is_better: false

experiments:
  - key: checkout
    status: running
    variants:
      - {key: control, weight: 1}
      - {key: a, weight: 1}
      - {key: b, weight: 1}
    metrics: [conversion, signup, errors]
    primary_metric: conversion
    dimensions: [platform]
  - key: cart
    status: running
    variants:
      - {key: control, weight: 1}
      - {key: a, weight: 1}
    metrics: [abandonment]
    primary_metric: abandonment
)yaml";

constexpr int64_t kUnits = 10000;

// Statsmodels' figures for conversions of kUnits units against a control
// with `control` conversions of kUnits.
struct RateDifference {
  double estimate, p_value, ci_low, ci_high;
};
// 1150 vs 1000: a winner.
constexpr RateDifference kConversionA = {
    0.015, 0.0006141806486937244, 0.006416901693801845, 0.023583098306198154};
// 880 vs 1000: a loser.
constexpr RateDifference kConversionB = {
    -0.01200000000000001, 0.003634709118830882, -0.020087220863659536,
    -0.003912779136340484};
// 520 vs 500: inconclusive.
constexpr RateDifference kSignupA = {0.001999999999999995, 0.5203294641590712,
                                     -0.00409785083458024, 0.00809785083458023};
// 490 vs 500.
constexpr double kSignupBP = 0.7444300935306625;
// Errors 205 and 260 vs 200.
constexpr double kErrorsAP = 0.8018088278520673;
constexpr RateDifference kErrorsWorse = {
    0.005999999999999998, 0.00464290442991212, 0.001845800966962908,
    0.01015419903303709};

class ResultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ParseResult parsed = ParseConfig(kConfig, "results_test.yaml");
    ASSERT_TRUE(parsed.ok()) << parsed.FormatDiagnostics();
    config_ = parsed.config;
    experiment_ = config_->FindExperiment("checkout");
    ASSERT_NE(experiment_, nullptr);
  }

  // A variant of `exposed` units, with the converted units of each binomial
  // metric (x is 0 or 1 per unit, so Σx = Σx² = conversions).
  static VariantAggregate Arm(int64_t exposed,
                              const std::map<std::string, int64_t>& converted) {
    VariantAggregate arm;
    arm.exposed = exposed;
    for (const auto& [key, x] : converted) {
      MetricAggregate& m = arm.metrics[key];
      m.units = x;
      m.sum = x;
      m.sum_sq = x;
    }
    return arm;
  }

  // Control; a wins on conversion; b loses on it. Nothing else differs
  // significantly; errors in b is `errors_b`.
  static ExperimentAggregates WinnerAndLoser(int64_t errors_b = 210) {
    ExperimentAggregates agg;
    agg.variants = {
        Arm(kUnits, {{"conversion", 1000}, {"signup", 500}, {"errors", 200}}),
        Arm(kUnits, {{"conversion", 1150}, {"signup", 520}, {"errors", 205}}),
        Arm(kUnits,
            {{"conversion", 880}, {"signup", 490}, {"errors", errors_b}}),
    };
    return agg;
  }

  ExperimentResults Compute(ExperimentAggregates agg,
                            ResultsOptions options = {},
                            absl::Time now = absl::UnixEpoch()) {
    absl::StatusOr<ExperimentResults> results =
        ComputeResults(*config_, *experiment_, std::move(agg), options, now);
    EXPECT_TRUE(results.ok()) << results.status();
    return results.ok() ? *std::move(results) : ExperimentResults();
  }

  static const MetricResult& Cell(const ExperimentResults& results,
                                  const std::string& variant,
                                  const std::string& metric) {
    for (const VariantResults& v : results.variants) {
      if (v.key != variant) continue;
      for (const MetricResult& m : v.metrics) {
        if (m.metric_key == metric) return m;
      }
    }
    ADD_FAILURE() << "no cell " << variant << "/" << metric;
    static const MetricResult* const kNone = new MetricResult();
    return *kNone;
  }

  static void ExpectDifference(const MetricResult& cell,
                               const RateDifference& want) {
    ASSERT_TRUE(cell.comparison.has_value()) << cell.metric_key;
    const stats::Lift& got = cell.comparison->absolute;
    ASSERT_TRUE(got.estimate && got.p_value && got.ci_low && got.ci_high);
    ExpectClose(*got.estimate, want.estimate, "estimate");
    ExpectClose(*got.p_value, want.p_value, "p_value");
    ExpectClose(*got.ci_low, want.ci_low, "ci_low");
    ExpectClose(*got.ci_high, want.ci_high, "ci_high");
  }

  std::shared_ptr<const Config> config_;
  const Experiment* experiment_ = nullptr;
};

TEST_F(ResultsTest, ShipsTheVariantWhosePrimaryMetricIsSignificantlyBetter) {
  const ExperimentResults r = Compute(WinnerAndLoser());

  EXPECT_EQ(r.experiment_key, "checkout");
  EXPECT_EQ(r.config_version, config_->version);
  ASSERT_EQ(r.variants.size(), 3u);
  EXPECT_TRUE(r.variants[0].is_control);
  EXPECT_EQ(r.variants[1].exposed_units, kUnits);
  const MetricResult& control = Cell(r, "control", "conversion");
  ASSERT_TRUE(control.estimate.has_value());
  EXPECT_DOUBLE_EQ(*control.estimate, 0.1);
  EXPECT_TRUE(control.primary);
  EXPECT_FALSE(control.comparison.has_value());

  const MetricResult& a = Cell(r, "a", "conversion");
  ASSERT_TRUE(a.estimate.has_value());
  EXPECT_DOUBLE_EQ(*a.estimate, 0.115);
  ExpectDifference(a, kConversionA);
  ASSERT_TRUE(a.bayes && a.bayes->chance_to_beat_control);
  EXPECT_GT(*a.bayes->chance_to_beat_control, 0.99);

  EXPECT_EQ(r.decision.kind, DecisionKind::kShip);
  EXPECT_EQ(r.decision.variant, "a");
  EXPECT_EQ(r.decision.metric, "conversion");
  EXPECT_EQ(r.decision.text, "ship a");
  // Equal exposures under equal weights: chi2 = 0, p = 1.
  ASSERT_TRUE(r.srm.chi2 && r.srm.p_value);
  EXPECT_EQ(*r.srm.chi2, 0);
  ExpectClose(*r.srm.p_value, 1, "srm p");
  EXPECT_FALSE(r.srm.mismatch);
}

TEST_F(ResultsTest, ASignificantlyWorseVariantIsReportedButNeverShipped) {
  const ExperimentResults r = Compute(WinnerAndLoser());
  const MetricResult& b = Cell(r, "b", "conversion");
  ExpectDifference(b, kConversionB);
  EXPECT_EQ(r.decision.variant, "a");

  // With only the loser significant, nothing ships.
  ExperimentAggregates agg = WinnerAndLoser();
  agg.variants[1].metrics["conversion"] = agg.variants[0].metrics["conversion"];
  const ExperimentResults loser_only = Compute(std::move(agg));
  ExpectDifference(Cell(loser_only, "b", "conversion"), kConversionB);
  EXPECT_EQ(loser_only.decision.kind, DecisionKind::kKeepRunning);
  // No cohort days, so no traffic to count days with.
  EXPECT_EQ(loser_only.decision.text, "keep running");
  EXPECT_FALSE(loser_only.decision.more_days.has_value());
}

TEST_F(ResultsTest, AnInconclusiveMetricHasAnIntervalAcrossZero) {
  const ExperimentResults r = Compute(WinnerAndLoser());
  const MetricResult& signup = Cell(r, "a", "signup");
  ExpectDifference(signup, kSignupA);
  EXPECT_LT(signup.comparison->absolute.ci_low.value(), 0);
  EXPECT_GT(signup.comparison->absolute.ci_high.value(), 0);
  ASSERT_TRUE(signup.adjusted_absolute_p_value.has_value());
  EXPECT_GT(*signup.adjusted_absolute_p_value, r.alpha);
  EXPECT_FALSE(signup.primary);
}

TEST_F(ResultsTest, AGuardrailSignificantlyWorseOutranksAWinner) {
  const ExperimentResults r = Compute(WinnerAndLoser(/*errors_b=*/260));

  ASSERT_EQ(r.guardrails.size(), 2u);
  EXPECT_EQ(r.guardrails[0].metric_key, "errors");
  EXPECT_EQ(r.guardrails[0].variant_key, "a");
  EXPECT_FALSE(r.guardrails[0].worse);
  ExpectClose(r.guardrails[0].p_value.value(), kErrorsAP, "errors a p");
  EXPECT_EQ(r.guardrails[1].variant_key, "b");
  EXPECT_TRUE(r.guardrails[1].worse);
  ExpectClose(r.guardrails[1].p_value.value(), kErrorsWorse.p_value,
              "errors b p");

  // Tested unadjusted: adding metrics never makes a guardrail harder to trip.
  const MetricResult& errors = Cell(r, "b", "errors");
  ExpectDifference(errors, kErrorsWorse);
  EXPECT_TRUE(errors.guardrail);
  EXPECT_FALSE(errors.higher_is_better);
  ExpectClose(errors.adjusted_absolute_p_value.value(), kErrorsWorse.p_value,
              "errors b adjusted p");

  EXPECT_EQ(r.decision.kind, DecisionKind::kGuardrailWorse);
  EXPECT_EQ(r.decision.metric, "errors");
  EXPECT_EQ(r.decision.variant, "b");
  EXPECT_EQ(r.decision.text, "guardrail errors worse");
}

// Errors are lower-is-better: b's 2.6% against control's 2% is worse, so its
// chance to beat control is small and shipping it is what costs.
TEST_F(ResultsTest, BayesFiguresOfALowerIsBetterMetricFollowItsDirection) {
  const ExperimentResults r = Compute(WinnerAndLoser(/*errors_b=*/260));
  const MetricResult& errors = Cell(r, "b", "errors");
  ASSERT_TRUE(errors.bayes.has_value());
  const stats::BayesResult& b = *errors.bayes;
  ASSERT_TRUE(b.chance_to_beat_control && b.expected_loss_ship &&
              b.expected_loss_keep);
  EXPECT_LT(*b.chance_to_beat_control, 0.01);
  EXPECT_GT(*b.expected_loss_ship, *b.expected_loss_keep);

  // 200 vs 260 errors of 10000 units is the golden case lower_worse_refunds.
  const std::vector<stats::testing::GoldenCase> golden =
      stats::testing::GoldenCasesOfKind("stats/testdata/bayes.golden",
                                        "binomial");
  const stats::testing::GoldenCase* want = nullptr;
  for (const stats::testing::GoldenCase& c : golden) {
    if (c.name == "lower_worse_refunds") want = &c;
  }
  ASSERT_NE(want, nullptr);
  ASSERT_EQ(want->Num("x_t"), 260);
  ExpectClose(*b.chance_to_beat_control, want->Num("chance_to_beat_control"),
              "chance", 1e-9, 0);
  ExpectClose(*b.expected_loss_ship, want->Num("expected_loss_ship"), "ship",
              1e-9, 0);
  ExpectClose(*b.expected_loss_keep, want->Num("expected_loss_keep"), "keep",
              1e-9, 0);

  // Higher-is-better metrics keep P(treatment > control): a's conversion
  // (1150 vs 1000) is the winner.
  EXPECT_GT(Cell(r, "a", "conversion").bayes->chance_to_beat_control.value(),
            0.99);
}

TEST_F(ResultsTest, ASampleRatioMismatchMeansDoNotTrust) {
  ExperimentAggregates agg = WinnerAndLoser();
  agg.variants[2].exposed = 9500;
  const ExperimentResults r = Compute(std::move(agg));

  ASSERT_TRUE(r.srm.chi2 && r.srm.p_value);
  ExpectClose(*r.srm.chi2, 16.94915254237288, "chi2");
  ExpectClose(*r.srm.p_value, 0.00020870761199019385, "srm p");
  EXPECT_TRUE(r.srm.mismatch);
  EXPECT_EQ(r.decision.kind, DecisionKind::kDoNotTrust);
  EXPECT_EQ(r.decision.text, "do not trust: sample ratio mismatch");
}

TEST_F(ResultsTest, HolmAdjustsOneFamilyOfTheNonGuardrailComparisons) {
  const ExperimentResults r = Compute(WinnerAndLoser());
  // The family, in (metric, variant) order: conversion a, conversion b,
  // signup a, signup b. multipletests(method="holm"):
  EXPECT_EQ(r.adjust_method, stats::AdjustMethod::kHolm);
  ExpectClose(Cell(r, "a", "conversion").adjusted_absolute_p_value.value(),
              0.0024567225947748975, "conversion a");
  ExpectClose(Cell(r, "b", "conversion").adjusted_absolute_p_value.value(),
              0.010904127356492646, "conversion b");
  ExpectClose(Cell(r, "a", "signup").adjusted_absolute_p_value.value(), 1.0,
              "signup a");
  ExpectClose(Cell(r, "b", "signup").adjusted_absolute_p_value.value(), 1.0,
              "signup b");
  // The guardrail keeps its raw p-value.
  ExpectClose(Cell(r, "a", "errors").adjusted_absolute_p_value.value(),
              kErrorsAP, "errors a");
  // The control is compared with nothing.
  EXPECT_FALSE(
      Cell(r, "control", "conversion").adjusted_absolute_p_value.has_value());
}

// Segments: ios has the figures of WinnerAndLoser, web the same but with a
// sample ratio mismatch (b lost 500 exposures), (other) a handful of units.
ExperimentAggregates WithSegments(ExperimentAggregates agg) {
  auto& platform = agg.segments["platform"];
  platform["ios"] = agg.variants;
  platform["web"] = agg.variants;
  platform["web"][2].exposed = 9500;
  platform[kOtherSegment] = agg.variants;
  for (VariantAggregate& v : platform[kOtherSegment]) v.exposed = 60;
  platform[kOtherSegment][0].exposed = 120;
  return agg;
}

const SegmentResults* SegmentOf(const ExperimentResults& r,
                                const std::string& value) {
  for (const SegmentResults& s : r.segments) {
    if (s.value == value) return &s;
  }
  ADD_FAILURE() << "no segment " << value;
  return nullptr;
}

TEST_F(ResultsTest, EachSegmentValueGetsTheFullComparisonAndItsOwnSrmCheck) {
  ResultsOptions options;
  options.dimension = "platform";
  const ExperimentResults r = Compute(WithSegments(WinnerAndLoser()), options);
  EXPECT_EQ(r.dimension, "platform");
  EXPECT_FALSE(r.segments_adjusted);
  ASSERT_EQ(r.segments.size(), 3u);
  const SegmentResults* ios = SegmentOf(r, "ios");
  ASSERT_NE(ios, nullptr);
  ExperimentResults as_totals;
  as_totals.variants = ios->variants;
  ExpectDifference(Cell(as_totals, "a", "conversion"), kConversionA);
  ExpectDifference(Cell(as_totals, "b", "conversion"), kConversionB);
  // Not adjusted across values: within the value, as the totals are.
  ExpectClose(
      Cell(as_totals, "a", "conversion").adjusted_absolute_p_value.value(),
      0.0024567225947748975, "ios conversion a");
  EXPECT_FALSE(ios->srm.mismatch);
  EXPECT_TRUE(ios->warnings.empty());
  // The mismatch planted in web is found there (scipy.stats.chisquare).
  const SegmentResults* web = SegmentOf(r, "web");
  ASSERT_NE(web, nullptr);
  ASSERT_TRUE(web->srm.chi2.has_value());
  ExpectClose(*web->srm.chi2, 16.94915254237288, "web chi2");
  EXPECT_TRUE(web->srm.mismatch);
  EXPECT_FALSE(r.srm.mismatch);
  // A segment with under 100 units in a variant is flagged as too small.
  const SegmentResults* other = SegmentOf(r, kOtherSegment);
  ASSERT_NE(other, nullptr);
  ASSERT_EQ(other->warnings.size(), 1u);
  EXPECT_THAT(other->warnings[0],
              ::testing::HasSubstr("fewer than 100 exposed units in a variant "
                                   "(a has 60, b has 60)"));
  // Without a dimension asked for, there are none.
  EXPECT_TRUE(Compute(WithSegments(WinnerAndLoser())).segments.empty());
}

TEST_F(ResultsTest, AdjustSegmentsMakesTheValuesOneFamily) {
  ExperimentAggregates agg = WinnerAndLoser();
  agg.segments["platform"]["ios"] = agg.variants;
  agg.segments["platform"]["web"] = agg.variants;
  ResultsOptions options;
  options.dimension = "platform";
  options.adjust_segments = true;
  const ExperimentResults r = Compute(agg, options);
  EXPECT_TRUE(r.segments_adjusted);
  ASSERT_EQ(r.segments.size(), 2u);
  // multipletests(method="holm") over both values' four p-values.
  for (const SegmentResults& segment : r.segments) {
    ExperimentResults as_totals;
    as_totals.variants = segment.variants;
    ExpectClose(
        Cell(as_totals, "a", "conversion").adjusted_absolute_p_value.value(),
        0.004913445189549795, "conversion a");
    ExpectClose(
        Cell(as_totals, "b", "conversion").adjusted_absolute_p_value.value(),
        0.02180825471298529, "conversion b");
    ExpectClose(
        Cell(as_totals, "a", "signup").adjusted_absolute_p_value.value(), 1.0,
        "signup a");
  }
  // The totals are adjusted as always.
  ExpectClose(Cell(r, "a", "conversion").adjusted_absolute_p_value.value(),
              0.0024567225947748975, "totals conversion a");
}

TEST_F(ResultsTest, AnUnknownDimensionIsRefusedNamingTheExperimentsOwn) {
  ResultsOptions options;
  options.dimension = "country";
  absl::StatusOr<ExperimentResults> r = ComputeResults(
      *config_, *experiment_, WinnerAndLoser(), options, absl::UnixEpoch());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(),
              ::testing::HasSubstr("experiment 'checkout' has no dimension "
                                   "'country'; its dimensions are: platform"));
  r = ComputeResults(*config_, *config_->FindExperiment("cart"),
                     ExperimentAggregates(), options, absl::UnixEpoch());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), ::testing::HasSubstr("has no dimensions"));
}

TEST_F(ResultsTest, BenjaminiHochbergAdjustsTheSameFamily) {
  ResultsOptions options;
  options.adjust_method = stats::AdjustMethod::kBenjaminiHochberg;
  const ExperimentResults r = Compute(WinnerAndLoser(), options);
  // multipletests(method="fdr_bh") over the same four p-values.
  EXPECT_EQ(r.adjust_method, stats::AdjustMethod::kBenjaminiHochberg);
  ExpectClose(Cell(r, "a", "conversion").adjusted_absolute_p_value.value(),
              0.0024567225947748975, "conversion a");
  ExpectClose(Cell(r, "b", "conversion").adjusted_absolute_p_value.value(),
              0.007269418237661764, "conversion b");
  ExpectClose(Cell(r, "a", "signup").adjusted_absolute_p_value.value(),
              0.6937726188787616, "signup a");
  ExpectClose(Cell(r, "b", "signup").adjusted_absolute_p_value.value(),
              kSignupBP, "signup b");
}

TEST_F(ResultsTest, AStricterAlphaWithholdsTheShipDecision) {
  ResultsOptions options;
  options.alpha = 0.001;  // below a's adjusted p of 0.0025
  const ExperimentResults r = Compute(WinnerAndLoser(), options);
  EXPECT_EQ(r.alpha, 0.001);
  EXPECT_EQ(r.decision.kind, DecisionKind::kKeepRunning);
}

// Equal arms with no difference, so the sizing rules decide: at a 10% rate,
// +5% needs 57763 units per variant.
ExperimentAggregates NoDifference(int64_t units) {
  ExperimentAggregates agg;
  for (int v = 0; v < 3; ++v) {
    VariantAggregate& arm = agg.variants.emplace_back();
    arm.exposed = units;
    MetricAggregate& m = arm.metrics["conversion"];
    m.units = units / 10;
    m.sum = m.units;
    m.sum_sq = m.units;
  }
  agg.daily["2026-11-01"] = agg.variants;
  return agg;
}

TEST_F(ResultsTest, KeepRunningCountsTheDaysToPowerAtTheObservedTraffic) {
  // Ten days (Nov 1 to Nov 10, both included) of 1000 units per variant.
  const absl::Time now = absl::FromCivil(
      absl::CivilSecond(2026, 11, 10, 12, 0, 0), absl::UTCTimeZone());
  const ExperimentResults r = Compute(NoDifference(kUnits), {}, now);
  ASSERT_TRUE(r.power.has_value());
  EXPECT_EQ(r.power->per_variant, 57763);
  // ceil((57763 - 10000) / 1000)
  EXPECT_EQ(r.decision.kind, DecisionKind::kKeepRunning);
  EXPECT_EQ(r.decision.more_days, 48);
  EXPECT_EQ(r.decision.text,
            "keep running (about 48 more days to reach 80% power)");
}

// A lower-is-better primary metric is sized for a 5% fall, the improvement
// it is run for. At a 96% abandonment rate a 5% rise is above 100%, so
// sizing for a rise would never give a day count.
TEST_F(ResultsTest, KeepRunningSizesALowerIsBetterMetricForAFall) {
  const Experiment* cart = config_->FindExperiment("cart");
  ASSERT_NE(cart, nullptr);
  // Ten days (Nov 1 to Nov 10) of 20 units per variant, 96% abandoning.
  ExperimentAggregates agg;
  for (int v = 0; v < 2; ++v) {
    VariantAggregate& arm = agg.variants.emplace_back();
    arm.exposed = 200;
    MetricAggregate& m = arm.metrics["abandonment"];
    m.units = 192;
    m.sum = m.units;
    m.sum_sq = m.units;
  }
  agg.daily["2026-11-01"] = agg.variants;
  const absl::Time now = absl::FromCivil(
      absl::CivilSecond(2026, 11, 10, 12, 0, 0), absl::UTCTimeZone());
  absl::StatusOr<ExperimentResults> r =
      ComputeResults(*config_, *cart, std::move(agg), {}, now);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->power.has_value());
  EXPECT_EQ(r->power->per_variant, 407);
  // ceil((407 - 200) / 20)
  EXPECT_EQ(r->decision.kind, DecisionKind::kKeepRunning);
  EXPECT_EQ(r->decision.more_days, 11);
  EXPECT_EQ(r->decision.text,
            "keep running (about 11 more days to reach 80% power)");
}

TEST_F(ResultsTest, NoDetectableEffectOnceEveryVariantHasTheUnits) {
  const ExperimentResults r = Compute(NoDifference(60000));
  EXPECT_EQ(r.decision.kind, DecisionKind::kNoDetectableEffect);
  EXPECT_EQ(r.decision.text, "no detectable effect");
  EXPECT_FALSE(r.decision.more_days.has_value());
}

TEST_F(ResultsTest, VariantsMissingFromTheAggregatesCountAsEmpty) {
  ExperimentAggregates agg = WinnerAndLoser();
  agg.variants.resize(1);
  const ExperimentResults r = Compute(std::move(agg));
  ASSERT_EQ(r.variants.size(), 3u);
  EXPECT_EQ(r.variants[2].exposed_units, 0);
  EXPECT_FALSE(Cell(r, "b", "conversion").estimate.has_value());
}

TEST_F(ResultsTest, DailyComparesTheCohortDaysUpToEachDay) {
  // Day 1 has half of WinnerAndLoser's units at the same conversion rates;
  // day 2 the rest.
  const std::vector<VariantAggregate> day1 = {
      Arm(kUnits / 2, {{"conversion", 500}, {"signup", 250}, {"errors", 100}}),
      Arm(kUnits / 2, {{"conversion", 575}, {"signup", 260}, {"errors", 102}}),
      Arm(kUnits / 2, {{"conversion", 440}, {"signup", 245}, {"errors", 105}}),
  };
  ExperimentAggregates agg = WinnerAndLoser();
  std::vector<VariantAggregate> day2 = agg.variants;
  for (size_t v = 0; v < day2.size(); ++v) {
    day2[v].exposed -= day1[v].exposed;
    for (auto& [key, m] : day2[v].metrics) {
      const MetricAggregate& first = day1[v].metrics.at(key);
      m.units -= first.units;
      m.sum -= first.sum;
      m.sum_sq -= first.sum_sq;
    }
  }
  agg.daily["2026-11-02"] = day2;
  agg.daily["2026-11-01"] = day1;
  EXPECT_TRUE(Compute(agg).daily.empty()) << "only when asked";

  ResultsOptions options;
  options.daily = true;
  const ExperimentResults r = Compute(agg, options);
  ASSERT_EQ(r.daily.size(), 2u);
  EXPECT_EQ(r.daily[0].day, "2026-11-01");
  EXPECT_EQ(r.daily[1].day, "2026-11-02");
  EXPECT_EQ(r.daily[0].exposed_on_day,
            (std::vector<int64_t>{5000, 5000, 5000}));
  auto conversion_a = [](const std::vector<VariantResults>& variants) {
    return variants.at(1).metrics.at(0);  // a, conversion (the first metric)
  };
  const MetricResult first = conversion_a(r.daily[0].variants);
  const MetricResult last = conversion_a(r.daily[1].variants);
  const MetricResult total = Cell(r, "a", "conversion");
  ASSERT_EQ(first.metric_key, "conversion");
  ASSERT_TRUE(first.comparison && last.comparison && total.comparison);
  // The last day is the whole experiment.
  EXPECT_EQ(r.daily[1].variants.at(1).exposed_units, kUnits);
  EXPECT_EQ(last.comparison->absolute.ci_low,
            total.comparison->absolute.ci_low);
  EXPECT_EQ(last.comparison->absolute.ci_high,
            total.comparison->absolute.ci_high);
  EXPECT_EQ(last.adjusted_absolute_p_value, total.adjusted_absolute_p_value);
  // The first day alone: the same rates over half the units, so the same
  // difference and a Wald interval sqrt(2) times as wide.
  ExpectClose(*first.estimate, 0.115, "day 1 rate");
  ExpectClose(*first.comparison->absolute.estimate, 0.015, "day 1 lift");
  const auto width = [](const stats::Lift& lift) {
    return *lift.ci_high - *lift.ci_low;
  };
  ExpectClose(
      width(first.comparison->absolute) / width(total.comparison->absolute),
      std::sqrt(2.0), "width ratio");
}

TEST_F(ResultsTest, AlphaOutsideTheOpenUnitIntervalIsRefused) {
  for (double alpha : {0.0, 1.0, -0.1, 1e-309, std::nan("")}) {
    EXPECT_EQ(CheckResultsAlpha(alpha).code(),
              absl::StatusCode::kInvalidArgument)
        << alpha;
    ResultsOptions options;
    options.alpha = alpha;
    EXPECT_EQ(ComputeResults(*config_, *experiment_, WinnerAndLoser(), options,
                             absl::UnixEpoch())
                  .status()
                  .code(),
              absl::StatusCode::kInvalidArgument)
        << alpha;
  }
  EXPECT_TRUE(CheckResultsAlpha(2.3e-308).ok());
  EXPECT_TRUE(CheckResultsAlpha(0.999).ok());
}

}  // namespace
}  // namespace abexp

namespace abexp {
namespace {

// Expected figures from statsmodels 0.13, not from this code:
//   X = [1, treatment, x - mean(x)]; OLS(y, X).fit() over the 9 units with a
//   covariate below: params[1] 1.3333333333333337, bse[1] 0.553040903856227,
//   pvalues[1] 0.05250859178034432, params[2] (θ) 0.6666666666666667,
//   conf_int()[1] [-0.01990901, 2.68657567]; the control's adjusted mean
//   2.3703703703703702; 1 − bse[1]² / bse₀[1]² (OLS without x)
//   0.533555623231637.
// EXPECTs `got` set and within `rel` of `want`.
void Near(std::optional<double> got, double want, const std::string& what,
          double rel) {
  ASSERT_TRUE(got.has_value()) << what;
  ExpectClose(*got, want, what, rel, rel);
}

TEST(ResultsCuped, AMetricWithACovariateGetsTheAdjustedComparison) {
  ParseResult parsed = ParseConfig(R"yaml(
metrics:
  - {key: orders, type: sum, event: order_completed, aggregate: count, covariate: orders_90d}
  - {key: plain, type: sum, event: order_completed, aggregate: count}
experiments:
  - key: cuped
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [orders, plain]
    primary_metric: orders
)yaml",
                                   "cuped.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.FormatDiagnostics();
  const Experiment& experiment = *parsed.config->FindExperiment("cuped");
  // (x, y) per unit with the covariate; control also has 2 units without.
  const std::vector<std::vector<std::pair<double, double>>> units = {
      {{1, 1}, {2, 3}, {3, 2}, {5, 4}},
      {{1, 2}, {2, 4}, {3, 5}, {4, 4}, {2, 3}}};
  ExperimentAggregates agg;
  for (size_t v = 0; v < units.size(); ++v) {
    VariantAggregate& va = agg.variants.emplace_back();
    va.exposed = static_cast<int64_t>(units[v].size()) + (v == 0 ? 2 : 0);
    MetricAggregate& m = va.metrics["orders"];
    for (const auto& [x, y] : units[v]) {
      m.units += y > 0;
      m.sum += y;
      m.sum_sq += y * y;
      m.cuped_units += 1;
      m.cuped_sum_x += x;
      m.cuped_sum_x_sq += x * x;
      m.cuped_sum_y += y;
      m.cuped_sum_y_sq += y * y;
      m.cuped_sum_xy += x * y;
    }
    va.metrics["plain"] = m;
    va.metrics["plain"].cuped_units = 0;
  }
  absl::StatusOr<ExperimentResults> r =
      ComputeResults(*parsed.config, experiment, agg, {}, absl::Now());
  ASSERT_TRUE(r.ok()) << r.status();
  const MetricResult& control = r->variants[0].metrics[0];
  const MetricResult& treated = r->variants[1].metrics[0];
  ASSERT_TRUE(control.cuped.has_value());
  EXPECT_EQ(control.cuped->units, 4);
  EXPECT_EQ(control.cuped->units_without, 2);
  Near(control.cuped->estimate, 2.3703703703703702, "control.cuped->estimate",
       1e-12);
  ASSERT_TRUE(treated.cuped.has_value());
  ASSERT_TRUE(treated.cuped->comparison.has_value());
  const stats::CupedComparison& c = *treated.cuped->comparison;
  Near(c.adjusted.absolute.estimate, 1.3333333333333337,
       "c.adjusted.absolute.estimate", 1e-12);
  Near(c.adjusted.absolute.standard_error, 0.553040903856227,
       "c.adjusted.absolute.standard_error", 1e-12);
  Near(c.adjusted.absolute.p_value, 0.05250859178034432,
       "c.adjusted.absolute.p_value", 1e-9);
  Near(c.adjusted.absolute.ci_low, -0.01990901, "c.adjusted.absolute.ci_low",
       1e-7);
  Near(c.adjusted.absolute.ci_high, 2.68657567, "c.adjusted.absolute.ci_high",
       1e-7);
  Near(c.theta, 0.6666666666666667, "c.theta", 1e-12);
  Near(c.variance_reduction, 0.533555623231637, "c.variance_reduction", 1e-9);
  // The metric without a covariate has no CUPED figures.
  EXPECT_FALSE(r->variants[1].metrics[1].cuped.has_value());
}

TEST(ResultsFunnel, EachStepIsComparedFromExposureAndFromThePreviousStep) {
  ParseResult parsed = ParseConfig(R"yaml(
metrics:
  - key: checkout
    type: funnel
    steps: [view_checkout, submit_payment, order_completed]
experiments:
  - key: funnel
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [checkout]
    primary_metric: checkout
)yaml",
                                   "funnel.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.FormatDiagnostics();
  const Experiment& experiment = *parsed.config->FindExperiment("funnel");
  // 1000 units each; control 400 -> 200 -> 100, treatment 500 -> 300 -> 150.
  const std::vector<std::vector<int64_t>> steps = {{400, 200, 100},
                                                   {500, 300, 150}};
  ExperimentAggregates agg;
  for (const std::vector<int64_t>& s : steps) {
    VariantAggregate& va = agg.variants.emplace_back();
    va.exposed = 1000;
    va.metrics["checkout"].units = s[0];
    va.metrics["checkout"].steps = s;
  }
  absl::StatusOr<ExperimentResults> r =
      ComputeResults(*parsed.config, experiment, agg, {}, absl::Now());
  ASSERT_TRUE(r.ok()) << r.status();
  const MetricResult& control = r->variants[0].metrics[0];
  const MetricResult& treated = r->variants[1].metrics[0];
  // The metric itself is the share that completed the funnel.
  Near(control.estimate, 0.1, "control.estimate", 1e-15);
  Near(treated.estimate, 0.15, "treated.estimate", 1e-15);
  ASSERT_TRUE(treated.comparison.has_value());
  Near(treated.comparison->absolute.estimate, 0.05, "completion lift", 1e-12);

  ASSERT_EQ(control.funnel.size(), 3u);
  ASSERT_EQ(treated.funnel.size(), 3u);
  EXPECT_EQ(control.funnel[1].event, "submit_payment");
  EXPECT_EQ(control.funnel[1].units, 200);
  Near(control.funnel[1].rate_from_exposure, 0.2, "control step 2", 1e-15);
  Near(control.funnel[1].rate_from_previous, 0.5, "control 1->2", 1e-15);
  Near(treated.funnel[2].rate_from_previous, 0.5, "treated 2->3", 1e-15);
  // Step 1's previous step is the exposure.
  Near(treated.funnel[0].rate_from_previous, 0.5, "treated 0->1", 1e-15);
  EXPECT_FALSE(control.funnel[1].from_exposure.has_value());

  // The step comparisons are the two-proportion comparisons of exactly
  // these arms: from exposure (1000 trials each), from the previous step
  // (the previous step's units as trials).
  const FunnelStepResult& pay = treated.funnel[1];
  ASSERT_TRUE(pay.from_exposure.has_value());
  ASSERT_TRUE(pay.from_previous.has_value());
  Near(pay.from_exposure->absolute.estimate, 0.3 - 0.2, "from exposure", 1e-12);
  Near(pay.from_previous->absolute.estimate, 0.6 - 0.5, "from previous", 1e-12);
  absl::StatusOr<stats::Comparison> want_exposure =
      stats::CompareProportions({1000, 200}, {1000, 300});
  absl::StatusOr<stats::Comparison> want_previous =
      stats::CompareProportions({400, 200}, {500, 300});
  ASSERT_TRUE(want_exposure.ok() && want_previous.ok());
  EXPECT_EQ(pay.from_exposure->absolute.p_value,
            want_exposure->absolute.p_value);
  EXPECT_EQ(pay.from_previous->absolute.p_value,
            want_previous->absolute.p_value);
  EXPECT_EQ(pay.from_previous->relative.ci_low, want_previous->relative.ci_low);
  // The last step's rate from the previous step does not move (0.5 both).
  ASSERT_TRUE(treated.funnel[2].from_previous.has_value());
  Near(treated.funnel[2].from_previous->absolute.estimate, 0, "2->3", 1e-12);
}

}  // namespace
}  // namespace abexp
