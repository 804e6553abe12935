#include "stats/compare.h"

#include <cmath>
#include <cstdint>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "stats/testing/golden.h"

// Most expected values come from stats/testdata/compare.golden, written by
// stats/testdata/gen_compare.py from SciPy and statsmodels (see the script
// for how each value is computed and cross-checked).

namespace abexp {
namespace stats {
namespace {

using ::abexp::stats::testing::ExpectClose;
using ::abexp::stats::testing::GoldenCase;
using ::testing::HasSubstr;

const std::vector<GoldenCase>& Golden() {
  static const std::vector<GoldenCase>* const cases = [] {
    auto loaded = testing::LoadGolden("stats/testdata/compare.golden");
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    return new std::vector<GoldenCase>(loaded.ok() ? *std::move(loaded)
                                                   : std::vector<GoldenCase>{});
  }();
  return *cases;
}

std::vector<const GoldenCase*> GoldenOfKind(const std::string& kind) {
  std::vector<const GoldenCase*> out;
  for (const GoldenCase& c : Golden()) {
    if (c.Str("kind") == kind) out.push_back(&c);
  }
  return out;
}

CompareOptions OptionsOf(const GoldenCase& c) {
  CompareOptions options;
  options.alpha = c.Num("alpha");
  options.sequential_tuning = c.Num("tuning");
  return options;
}

int64_t Units(const GoldenCase& c, const std::string& key) {
  return static_cast<int64_t>(c.Num(key));
}

// Checks one optional output against the golden field `key`: both null, or
// both numbers within 1e-9 relative. P-values and the huge-count cases
// (strict=true, estimates ~1e-5) get no absolute floor.
void Check(const std::optional<double>& got, const GoldenCase& c,
           const std::string& key) {
  const std::string what = absl::StrCat(c.name, " ", key);
  if (c.IsNull(key)) {
    EXPECT_FALSE(got.has_value()) << what << " should be null, got " << *got;
    return;
  }
  ASSERT_TRUE(got.has_value()) << what << " is null, want " << c.Num(key);
  EXPECT_TRUE(std::isfinite(*got)) << what;
  const bool strict = c.Bool("strict") || key.find("_p") != std::string::npos;
  ExpectClose(*got, c.Num(key), what, 1e-9, strict ? 0 : 1e-12);
}

void CheckComparison(const Comparison& r, const GoldenCase& c) {
  SCOPED_TRACE(c.name);
  Check(r.control, c, "control");
  Check(r.treatment, c, "treatment");
  Check(r.absolute.estimate, c, "abs_estimate");
  Check(r.absolute.standard_error, c, "abs_se");
  Check(r.absolute.df, c, "abs_df");
  Check(r.absolute.ci_low, c, "abs_ci_low");
  Check(r.absolute.ci_high, c, "abs_ci_high");
  Check(r.absolute.p_value, c, "abs_p");
  Check(r.relative.estimate, c, "rel_estimate");
  Check(r.relative.standard_error, c, "rel_se");
  EXPECT_FALSE(r.relative.df.has_value()) << "the relative lift is normal";
  Check(r.relative.ci_low, c, "rel_ci_low");
  Check(r.relative.ci_high, c, "rel_ci_high");
  Check(r.relative.p_value, c, "rel_p");
  Check(r.sequential.ci_low, c, "seq_ci_low");
  Check(r.sequential.ci_high, c, "seq_ci_high");
  Check(r.sequential.p_value, c, "seq_p");

  // Every null is explained; a fully defined result has nothing to explain.
  bool any_null = false;
  for (const auto& [key, value] : c.fields) {
    if (key != "abs_df" && value == "null") any_null = true;
  }
  if (any_null) {
    EXPECT_FALSE(r.warnings.empty()) << c.name << ": nulls without a warning";
  } else {
    EXPECT_TRUE(r.warnings.empty())
        << c.name << ": " << absl::StrJoin(r.warnings, " | ");
  }
}

TEST(CompareGolden, FileCoversEveryKind) {
  for (const char* kind :
       {"proportions", "summaries", "means", "ratios", "sequential"}) {
    EXPECT_GE(GoldenOfKind(kind).size(), 8u) << kind;
  }
}

TEST(CompareGolden, ProportionsMatchScipyAndStatsmodels) {
  for (const GoldenCase* c : GoldenOfKind("proportions")) {
    auto r = CompareProportions(
        {Units(*c, "c_units"), Units(*c, "c_conversions")},
        {Units(*c, "t_units"), Units(*c, "t_conversions")}, OptionsOf(*c));
    ASSERT_TRUE(r.ok()) << c->name << ": " << r.status();
    CheckComparison(*r, *c);
  }
}

TEST(CompareGolden, MeanSummariesMatchScipy) {
  for (const GoldenCase* c : GoldenOfKind("summaries")) {
    auto r = CompareMeanSummaries(
        {Units(*c, "c_units"), c->Num("c_mean"), c->Num("c_sd")},
        {Units(*c, "t_units"), c->Num("t_mean"), c->Num("t_sd")},
        OptionsOf(*c));
    ASSERT_TRUE(r.ok()) << c->name << ": " << r.status();
    CheckComparison(*r, *c);
  }
}

TEST(CompareGolden, MeansFromSumsMatchStatsmodelsWelch) {
  for (const GoldenCase* c : GoldenOfKind("means")) {
    auto r = CompareMeans(
        {Units(*c, "c_units"), c->Num("c_sum"), c->Num("c_sum_sq")},
        {Units(*c, "t_units"), c->Num("t_sum"), c->Num("t_sum_sq")},
        OptionsOf(*c));
    ASSERT_TRUE(r.ok()) << c->name << ": " << r.status();
    CheckComparison(*r, *c);
  }
}

RatioArm RatioOf(const GoldenCase& c, const std::string& prefix) {
  return {Units(c, prefix + "units"),   c.Num(prefix + "sum_num"),
          c.Num(prefix + "sum_den"),    c.Num(prefix + "sum_num_sq"),
          c.Num(prefix + "sum_den_sq"), c.Num(prefix + "sum_num_den")};
}

TEST(CompareGolden, RatiosMatchTheDeltaMethod) {
  for (const GoldenCase* c : GoldenOfKind("ratios")) {
    auto r = CompareRatios(RatioOf(*c, "c_"), RatioOf(*c, "t_"), OptionsOf(*c));
    ASSERT_TRUE(r.ok()) << c->name << ": " << r.status();
    CheckComparison(*r, *c);
  }
}

TEST(CompareGolden, ConfidenceSequenceMatchesTheFormula) {
  for (const GoldenCase* c : GoldenOfKind("sequential")) {
    SCOPED_TRACE(c->name);
    auto r = ConfidenceSequence(c->Num("estimate"), c->Num("se"),
                                c->Num("total_units"), OptionsOf(*c));
    ASSERT_TRUE(r.ok()) << r.status();
    Check(r->ci_low, *c, "seq_ci_low");
    Check(r->ci_high, *c, "seq_ci_high");
    Check(r->p_value, *c, "seq_p");
  }
}

// Reference values published in issue 4.
TEST(CompareMeanSummaries, MatchesThePublishedWelchExample) {
  auto r = CompareMeanSummaries({5000, 12.5, 30}, {5100, 13.4, 31});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NEAR(*r->absolute.df, 10096.2984, 5e-5);
  EXPECT_NEAR(*r->absolute.p_value, 0.138175437242, 1e-12);
  EXPECT_NEAR(*r->absolute.estimate, 0.9, 1e-12);
}

TEST(CompareMeans, SumsAndSummariesAgree) {
  // 4 units 1, 2, 3, 4 (mean 2.5, SD sqrt(5/3)) vs 3 units 2, 4, 9.
  auto from_sums = CompareMeans({4, 10, 30}, {3, 15, 101});
  auto from_summaries = CompareMeanSummaries({4, 2.5, std::sqrt(5.0 / 3)},
                                             {3, 5, std::sqrt(13.0)});
  ASSERT_TRUE(from_sums.ok()) << from_sums.status();
  ASSERT_TRUE(from_summaries.ok()) << from_summaries.status();
  EXPECT_DOUBLE_EQ(*from_sums->absolute.estimate, 2.5);
  EXPECT_DOUBLE_EQ(*from_sums->absolute.df, *from_summaries->absolute.df);
  EXPECT_DOUBLE_EQ(*from_sums->absolute.p_value,
                   *from_summaries->absolute.p_value);
  EXPECT_DOUBLE_EQ(*from_sums->relative.ci_low,
                   *from_summaries->relative.ci_low);
}

TEST(CompareProportions, IdenticalArmsHavePValueExactlyOne) {
  auto r = CompareProportions({4000, 480}, {4000, 480});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r->absolute.estimate, 0.0);
  EXPECT_EQ(*r->absolute.p_value, 1.0);
  EXPECT_EQ(*r->relative.p_value, 1.0);
  EXPECT_EQ(*r->sequential.p_value, 1.0);
  EXPECT_EQ(*r->absolute.ci_low, -*r->absolute.ci_high);
  EXPECT_TRUE(r->warnings.empty());
}

TEST(CompareProportions, TinyPValuesDoNotRoundToZero) {
  // z ≈ 20: 1 - cdf would give exactly 0.
  auto r = CompareProportions({10000, 1000}, {10000, 2000});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(*r->absolute.p_value, 0.0);
  EXPECT_LT(*r->absolute.p_value, 1e-80);
  EXPECT_GT(*r->sequential.p_value, 0.0);
}

TEST(CompareProportions, ZeroBaselineLeavesRelativeLiftNullWithAReason) {
  auto r = CompareProportions({1000, 0}, {1000, 5});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->relative.estimate.has_value());
  EXPECT_FALSE(r->relative.p_value.has_value());
  EXPECT_TRUE(r->absolute.p_value.has_value());
  EXPECT_THAT(r->warnings, ::testing::ElementsAre(
                               "relative lift is undefined: the control rate "
                               "is 0"));
}

TEST(CompareProportions, NoConversionsAnywhereIsNoEvidenceOfADifference) {
  auto r = CompareProportions({1000, 0}, {1200, 0});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r->absolute.estimate, 0.0);
  EXPECT_EQ(*r->absolute.standard_error, 0.0);
  EXPECT_EQ(*r->absolute.p_value, 1.0);
  EXPECT_FALSE(r->absolute.ci_low.has_value());
  EXPECT_FALSE(r->sequential.ci_low.has_value());
  EXPECT_THAT(absl::StrJoin(r->warnings, "\n"),
              HasSubstr("standard error of 0"));
}

TEST(CompareProportions, NoneVersusAllHasNoIntervalAndSaysWhy) {
  auto r = CompareProportions({100, 0}, {100, 100});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r->absolute.estimate, 1.0);
  EXPECT_FALSE(r->absolute.p_value.has_value());
  EXPECT_FALSE(r->absolute.ci_low.has_value());
  EXPECT_FALSE(r->sequential.p_value.has_value());
  EXPECT_THAT(absl::StrJoin(r->warnings, "\n"), HasSubstr("wait for more"));
}

TEST(CompareProportions, ArmWithoutUnitsLeavesEverythingButItsPartnerNull) {
  auto r = CompareProportions({0, 0}, {1000, 100});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->control.has_value());
  EXPECT_DOUBLE_EQ(*r->treatment, 0.1);
  EXPECT_FALSE(r->absolute.estimate.has_value());
  EXPECT_FALSE(r->relative.estimate.has_value());
  EXPECT_FALSE(r->sequential.ci_low.has_value());
  ASSERT_EQ(r->warnings.size(), 1u);
  EXPECT_THAT(r->warnings[0], HasSubstr("the control arm has no units"));
}

TEST(CompareProportions, ReportsEachArmsVarianceForPowerAnalysis) {
  // p(1 - p) / n per arm: 0.1 * 0.9 / 1000 and 0.12 * 0.88 / 2000; the
  // absolute difference's SE is the root of their sum.
  auto r = CompareProportions({1000, 100}, {2000, 240});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->control_variance.has_value());
  ASSERT_TRUE(r->treatment_variance.has_value());
  EXPECT_NEAR(*r->control_variance, 9e-5, 1e-18);
  EXPECT_NEAR(*r->treatment_variance, 5.28e-5, 1e-18);
  EXPECT_NEAR(*r->absolute.standard_error, std::sqrt(9e-5 + 5.28e-5), 1e-15);
}

TEST(CompareMeanSummaries, OneUnitHasAMeanButNoVariance) {
  auto r = CompareMeanSummaries({1, 4.0, 0}, {50, 5.0, 1.0});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->control_variance.has_value());
  EXPECT_DOUBLE_EQ(*r->treatment_variance, 1.0 / 50);
  EXPECT_DOUBLE_EQ(*r->absolute.estimate, 1.0);
  EXPECT_DOUBLE_EQ(*r->relative.estimate, 0.25);
  EXPECT_FALSE(r->absolute.standard_error.has_value());
  EXPECT_FALSE(r->absolute.df.has_value());
  EXPECT_FALSE(r->absolute.p_value.has_value());
  EXPECT_THAT(absl::StrJoin(r->warnings, "\n"),
              HasSubstr("the control arm has 1 unit"));
}

TEST(CompareRatios, ZeroDenominatorMakesTheRatioUndefined) {
  auto r = CompareRatios({50, 0, 0, 0, 0, 0}, {60, 20, 100, 30, 200, 60});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->control.has_value());
  EXPECT_DOUBLE_EQ(*r->treatment, 0.2);
  EXPECT_THAT(absl::StrJoin(r->warnings, "\n"),
              HasSubstr("the control ratio is undefined: its denominators "
                        "sum to 0"));
}

TEST(CompareMeans, LargeMeansWithTinyVarianceKeepTheirPrecision) {
  // 10^6 units at M ± 1 (M = 3000017), with D = 1234 more at M + 1 than at
  // M - 1: Σx = nM + D and Σx² = n(M² + 1) + 2MD ≈ 9e18 are exact in long
  // double, and Σ(x - x̄)² = n - D²/n. Computing (Σx)²/n in plain long
  // double would round it to a multiple of 0.5 and be off by ~2e-7.
  const int64_t n = 1000000;
  const long double m = 3000017;
  const long double d = 1234;
  const long double sum = n * m + d;
  const long double sum_sq = n * (m * m + 1) + 2 * m * d;
  auto r = CompareMeans({n, sum, sum_sq}, {n, sum, sum_sq});
  ASSERT_TRUE(r.ok()) << r.status();
  // Two equal arms: SE² = 2 · s² / n with s² = (n - D²/n) / (n - 1).
  const double variance = static_cast<double>((n - d * d / n) / (n - 1));
  ExpectClose(*r->absolute.standard_error, std::sqrt(2 * variance / n), "se",
              1e-12, 0);
  EXPECT_EQ(*r->absolute.p_value, 1.0);
}

TEST(CompareOptions, AlphaWidensAndNarrowsTheIntervals) {
  CompareOptions loose;
  loose.alpha = 0.2;
  CompareOptions strict;
  strict.alpha = 0.01;
  auto a = CompareProportions({10000, 1000}, {10000, 1090}, loose);
  auto b = CompareProportions({10000, 1000}, {10000, 1090}, strict);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_GT(*a->absolute.ci_low, *b->absolute.ci_low);
  EXPECT_LT(*a->sequential.ci_high, *b->sequential.ci_high);
  EXPECT_EQ(*a->absolute.p_value, *b->absolute.p_value);
}

template <typename T>
void ExpectInvalid(const absl::StatusOr<T>& r, const std::string& mentions) {
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
      << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(mentions));
}

TEST(CompareValidation, RejectsBadOptionsNamingThem) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  // 5e-324: alpha / 2 rounds to 0, and Boost's quantile failed (INTERNAL).
  for (double alpha : {0.0, 1.0, -0.05, 1.5, nan, 5e-324}) {
    CompareOptions o;
    o.alpha = alpha;
    ExpectInvalid(CompareProportions({10, 1}, {10, 2}, o), "alpha");
  }
  CompareOptions smallest;
  smallest.alpha = std::numeric_limits<double>::min();
  auto r = CompareProportions({10, 1}, {10, 2}, smallest);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->absolute.ci_low.has_value());
  for (double tuning :
       {0.0, -1.0, nan, std::numeric_limits<double>::infinity()}) {
    CompareOptions o;
    o.sequential_tuning = tuning;
    ExpectInvalid(CompareMeanSummaries({10, 1, 1}, {10, 2, 1}, o),
                  "sequential_tuning");
  }
}

TEST(CompareValidation, RejectsImpossibleCountsNamingTheArm) {
  ExpectInvalid(CompareProportions({-1, 0}, {10, 2}), "control.units");
  ExpectInvalid(CompareProportions({10, 11}, {10, 2}), "control.conversions");
  ExpectInvalid(CompareProportions({10, 1}, {10, -2}), "treatment.conversions");
  ExpectInvalid(CompareMeans({10, 5, 30}, {-3, 0, 0}), "treatment.units");
  // Σx² < (Σx)²/n: no data give this; the caller passed (Σx)² or garbage.
  ExpectInvalid(CompareMeans({10, 50, 200}, {10, 5, 30}), "control.sum_sq");
  ExpectInvalid(CompareMeans({10, 50, -1}, {10, 5, 30}), "control.sum_sq");
  ExpectInvalid(
      CompareMeans({10, std::numeric_limits<long double>::infinity(), 1},
                   {10, 5, 30}),
      "control.sum");
  ExpectInvalid(CompareMeans({0, 5, 30}, {10, 5, 30}), "control has 0 units");
  ExpectInvalid(CompareMeanSummaries({10, 1, -1}, {10, 2, 1}), "control.sd");
  ExpectInvalid(
      CompareMeanSummaries({10, 1, 1},
                           {10, std::numeric_limits<double>::quiet_NaN(), 1}),
      "treatment.mean");
  ExpectInvalid(CompareRatios({10, 1, 2, 1, -4, 2}, {10, 1, 2, 1, 4, 2}),
                "sum_den_sq");
  ExpectInvalid(CompareRatios({10, 1, 2, 1, 4, 2}, {0, 1, 0, 0, 0, 0}),
                "treatment has 0 units");
}

// Each of 10 control units has 1e-301 over 1: c = 1e-301, Var(control) = 0,
// so the relative lift's delta-method standard error is sqrt(v_t) / c.
const RatioArm kControlNearZero{10, 1e-300L, 10, 1e-601L, 10, 1e-300L};

// Treatment 0.05 over 100 units, with the given Σnum² setting its variance.
RatioArm Treatment(long double sum_num_sq) {
  return {100, 5, 100, sum_num_sq, 100, 5};
}

// Found by stats_fuzz: a control ratio near 0 with no variance made the
// relative lift's standard error NaN ((t/c)² overflowed, then inf·0).
TEST(CompareRatios, RelativeLiftOverAControlNearZeroHasAFiniteStandardError) {
  auto r = CompareRatios(kControlNearZero, Treatment(1));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->control_variance, 0.0);
  ASSERT_TRUE(r->relative.standard_error.has_value());
  EXPECT_NEAR(*r->relative.standard_error / 1e301,
              std::sqrt(*r->treatment_variance), 1e-12);
  ASSERT_TRUE(r->relative.ci_low.has_value());
  EXPECT_LT(*r->relative.ci_low, *r->relative.ci_high);
  EXPECT_TRUE(std::isfinite(*r->relative.ci_high));
}

// A relative lift beyond the largest double is undefined, not infinite.
TEST(CompareRatios, RelativeLiftThatOverflowsIsNullWithAWarning) {
  // Control 1e-310, treatment 0.05: the lift is 5e308.
  auto r = CompareRatios({10, 1e-309L, 10, 1e-619L, 10, 1e-309L}, Treatment(1));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->relative.estimate.has_value()) << *r->relative.estimate;
  EXPECT_FALSE(r->relative.standard_error.has_value());
  EXPECT_FALSE(r->relative.p_value.has_value());
  EXPECT_TRUE(r->absolute.p_value.has_value());
  EXPECT_THAT(absl::StrJoin(r->warnings, "\n"),
              HasSubstr("relative lift is undefined: it overflows a double"));
}

// sqrt(v_t) / c beyond the largest double: the lift is defined, its
// standard error, intervals and p-value are not.
TEST(CompareRatios, RelativeStandardErrorThatOverflowsIsNullWithAWarning) {
  auto r = CompareRatios(kControlNearZero, Treatment(1e21L));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->relative.estimate.has_value());
  EXPECT_FALSE(r->relative.standard_error || r->relative.ci_low ||
               r->relative.p_value);
  EXPECT_THAT(absl::StrJoin(r->warnings, "\n"),
              HasSubstr("relative lift's standard error overflows a double"));
}

// A standard error near the largest double: the interval bounds would pass
// it, so they are left out; the p-value is still defined.
TEST(CompareRatios, RelativeIntervalThatOverflowsIsNullWithAWarning) {
  // sqrt(v_t) ≈ 1e7 over a control of 1e-301: a standard error of ~1e308.
  auto r = CompareRatios(kControlNearZero, Treatment(1e18L));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->relative.standard_error.has_value());
  EXPECT_TRUE(std::isfinite(*r->relative.standard_error));
  EXPECT_FALSE(r->relative.ci_low.has_value()) << *r->relative.ci_low;
  EXPECT_FALSE(r->relative.ci_high.has_value());
  ASSERT_TRUE(r->relative.p_value.has_value());
  EXPECT_GE(*r->relative.p_value, 0);
  EXPECT_LE(*r->relative.p_value, 1);
  EXPECT_THAT(absl::StrJoin(r->warnings, "\n"),
              HasSubstr("the relative lift's interval is too wide"));
}

// Found by stats_fuzz: means of opposite sign near the largest double have
// a difference beyond it; that is bad input, like a mean that overflows.
TEST(CompareMeanSummaries, ADifferenceThatOverflowsIsRejectedWithAHint) {
  ExpectInvalid(CompareMeanSummaries({10, -1e308, 1}, {10, 1e308, 1}),
                "treatment - control overflows a double");
}

// Two variances near the largest double: their sum overflows, the standard
// error sqrt(v_c + v_t) does not.
TEST(CompareMeanSummaries, HugeVariancesStillHaveAStandardError) {
  auto r = CompareMeanSummaries({2, 0, 1.4e154}, {2, 0, 1.4e154});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->absolute.standard_error.has_value());
  EXPECT_NEAR(*r->absolute.standard_error / 1.4e154, 1.0, 1e-12);
  EXPECT_EQ(r->absolute.p_value, 1.0);
  ASSERT_TRUE(r->absolute.ci_low.has_value());
  EXPECT_TRUE(std::isfinite(*r->absolute.ci_low));
}

// Found by stats_fuzz: a huge standard error on few units made the
// interval's half width overflow, and the bounds came back infinite.
TEST(ConfidenceSequence,
     LeavesOutBoundsThatOverflowInsteadOfReturningInfinity) {
  auto s = ConfidenceSequence(948, 8.8e307, 0.5675);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(s->ci_low.has_value());
  EXPECT_FALSE(s->ci_high.has_value());
  ASSERT_TRUE(s->p_value.has_value());
  EXPECT_GE(*s->p_value, 0);
  EXPECT_LE(*s->p_value, 1);
}

TEST(ConfidenceSequence, RejectsWhatItCannotUse) {
  ExpectInvalid(ConfidenceSequence(0.1, 0, 100), "standard_error");
  ExpectInvalid(ConfidenceSequence(0.1, -1, 100), "standard_error");
  ExpectInvalid(ConfidenceSequence(0.1, 0.01, 0), "total_units");
  ExpectInvalid(
      ConfidenceSequence(std::numeric_limits<double>::infinity(), 0.01, 10),
      "estimate");
}

// ---------------------------------------------------------------- calibration
// Simulations with fixed seeds: each run is deterministic, so the bounds
// cannot flake; they are several binomial standard deviations wide.

TEST(Calibration, FixedHorizonProportionsAreSignificantInFivePercentOfAA) {
  std::mt19937_64 rng(4);
  std::binomial_distribution<int64_t> arm(5000, 0.1);
  constexpr int kRuns = 2000;
  int significant = 0;
  for (int i = 0; i < kRuns; ++i) {
    auto r = CompareProportions({5000, arm(rng)}, {5000, arm(rng)});
    ASSERT_TRUE(r.ok()) << r.status();
    if (*r->absolute.p_value < 0.05) ++significant;
  }
  const double rate = static_cast<double>(significant) / kRuns;
  std::cout << "fixed-horizon A/A (proportions): " << significant << " of "
            << kRuns << " significant at alpha 0.05\n";
  EXPECT_NEAR(rate, 0.05, 0.015);
}

TEST(Calibration, FixedHorizonWelchIsSignificantInFivePercentOfAA) {
  // Skewed per-unit values (exponential), unequal arm sizes.
  std::mt19937_64 rng(5);
  std::exponential_distribution<double> value(0.2);
  constexpr int kRuns = 2000;
  int significant = 0;
  for (int i = 0; i < kRuns; ++i) {
    MeanArm arms[2] = {{300, 0, 0}, {200, 0, 0}};
    for (MeanArm& a : arms) {
      for (int64_t u = 0; u < a.units; ++u) {
        const double x = value(rng);
        a.sum += x;
        a.sum_sq += static_cast<long double>(x) * x;
      }
    }
    auto r = CompareMeans(arms[0], arms[1]);
    ASSERT_TRUE(r.ok()) << r.status();
    if (*r->absolute.p_value < 0.05) ++significant;
  }
  const double rate = static_cast<double>(significant) / kRuns;
  std::cout << "fixed-horizon A/A (Welch): " << significant << " of " << kRuns
            << " significant at alpha 0.05\n";
  EXPECT_NEAR(rate, 0.05, 0.015);
}

TEST(Calibration, DailyPeeksInflateFixedHorizonButNotTheAlwaysValidPValue) {
  // 1,000 A/A experiments, 10% conversion; look after every 1,000 units per
  // arm up to 50,000 per arm, and count the experiments in which a p-value
  // ever dropped below 0.05.
  std::mt19937_64 rng(6);
  std::binomial_distribution<int64_t> batch(1000, 0.1);
  constexpr int kRuns = 1000;
  int fixed_ever = 0;
  int sequential_ever = 0;
  for (int i = 0; i < kRuns; ++i) {
    BinomialArm control, treatment;
    bool fixed = false;
    bool sequential = false;
    for (int look = 0; look < 50; ++look) {
      control.units += 1000;
      control.conversions += batch(rng);
      treatment.units += 1000;
      treatment.conversions += batch(rng);
      auto r = CompareProportions(control, treatment);
      ASSERT_TRUE(r.ok()) << r.status();
      fixed = fixed || *r->absolute.p_value < 0.05;
      sequential = sequential || *r->sequential.p_value < 0.05;
    }
    fixed_ever += fixed;
    sequential_ever += sequential;
  }
  std::cout << "peeking 50 times over " << kRuns
            << " A/A runs: fixed-horizon p < 0.05 at some look in "
            << fixed_ever << " runs, always-valid p in " << sequential_ever
            << "\n";
  EXPECT_LE(sequential_ever, kRuns * 5 / 100);
  // Peeking is what the sequential interval is for: the fixed-horizon test
  // fails far more often than its nominal 5%.
  EXPECT_GT(fixed_ever, kRuns * 15 / 100);
}

}  // namespace
}  // namespace stats
}  // namespace abexp
