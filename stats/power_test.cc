#include "stats/power.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "stats/testing/golden.h"

// Expected values: stats/testdata/misc.golden, written by
// stats/testdata/gen_misc.py (Fleiss' formula with scipy.stats.norm,
// cross-checked against R's power.prop.test equation solved by brentq).

namespace abexp {
namespace stats {
namespace {

using ::abexp::stats::testing::ExpectClose;
using ::abexp::stats::testing::GoldenCase;
using ::abexp::stats::testing::GoldenCasesOfKind;

PowerOptions OptionsOf(const GoldenCase& c) {
  PowerOptions options;
  options.alpha = c.Num("alpha");
  options.power = c.Num("power");
  return options;
}

bool AnyWarningContains(const DaysToPowerResult& r, const std::string& text) {
  for (const std::string& w : r.warnings) {
    if (w.find(text) != std::string::npos) return true;
  }
  return false;
}

TEST(BinomialSampleSize, MatchesFleissOnEveryGoldenCase) {
  const std::vector<GoldenCase> cases =
      GoldenCasesOfKind("stats/testdata/misc.golden", "sample_size");
  ASSERT_GE(cases.size(), 60u);
  for (const GoldenCase& c : cases) {
    SCOPED_TRACE(c.name);
    auto r = BinomialSampleSize(c.Num("baseline"), c.Num("mde"), OptionsOf(c));
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectClose(r->per_variant_exact, c.Num("per_variant_exact"),
                c.name + " per_variant_exact");
    EXPECT_EQ(r->per_variant, static_cast<int64_t>(c.Num("per_variant")));
    ExpectClose(r->treatment, c.Num("treatment"), c.name + " treatment");
    EXPECT_EQ(r->baseline, c.Num("baseline"));
  }
}

TEST(BinomialSampleSize, MatchesRPowerPropTestDocumentation) {
  // R's ?power.prop.test: power.prop.test(p1 = .50, p2 = .75, power = .90)
  // => n = 76.7 (printed to 3 digits).
  PowerOptions options;
  options.power = 0.9;
  auto r = BinomialSampleSize(0.5, 0.5, options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NEAR(r->per_variant_exact, 76.7, 0.05);
  EXPECT_EQ(r->per_variant, 77);

  // power.prop.test(p1 = .5, p2 = 0.501, sig.level = .001, power = 0.90)
  // => n = 10451937 (printed rounded to an integer).
  options.alpha = 0.001;
  auto small = BinomialSampleSize(0.5, 0.002, options);
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_NEAR(small->per_variant_exact, 10451937, 0.5);
}

TEST(BinomialSampleSize, CliExampleDefaults) {
  // abexp stats sample-size --baseline 0.02 --mde 0.10: alpha 0.05, power
  // 0.8 are the defaults.
  auto r = BinomialSampleSize(0.02, 0.10);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->per_variant, 80682);
}

TEST(BinomialSampleSize, StricterDesignsNeedMoreUnits) {
  auto base = BinomialSampleSize(0.05, 0.10);
  ASSERT_TRUE(base.ok()) << base.status();
  auto bigger_effect = BinomialSampleSize(0.05, 0.20);
  ASSERT_TRUE(bigger_effect.ok()) << bigger_effect.status();
  EXPECT_LT(bigger_effect->per_variant, base->per_variant);
  PowerOptions strict;
  strict.alpha = 0.01;
  auto smaller_alpha = BinomialSampleSize(0.05, 0.10, strict);
  ASSERT_TRUE(smaller_alpha.ok()) << smaller_alpha.status();
  EXPECT_GT(smaller_alpha->per_variant, base->per_variant);
  PowerOptions more_power;
  more_power.power = 0.95;
  auto higher_power = BinomialSampleSize(0.05, 0.10, more_power);
  ASSERT_TRUE(higher_power.ok()) << higher_power.status();
  EXPECT_GT(higher_power->per_variant, base->per_variant);
}

TEST(BinomialSampleSize, AlphaDownToTheSmallestNormalDoubleIsAccepted) {
  PowerOptions options;
  options.alpha = std::numeric_limits<double>::min();
  auto strict = BinomialSampleSize(0.02, 0.1, options);
  ASSERT_TRUE(strict.ok()) << strict.status();
  EXPECT_GT(strict->per_variant, BinomialSampleSize(0.02, 0.1)->per_variant);
}

TEST(BinomialSampleSize, RejectsImpossibleDesignsWithAHint) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  struct Bad {
    double baseline;
    double mde;
    double alpha;
    double power;
    std::string hint;
  };
  const std::vector<Bad> bad = {
      {0, 0.1, 0.05, 0.8, "baseline is 0"},
      {1, -0.1, 0.05, 0.8, "baseline is 1"},
      {-0.2, 0.1, 0.05, 0.8, "baseline"},
      {nan, 0.1, 0.05, 0.8, "baseline"},
      {0.02, 0, 0.05, 0.8, "relative_mde is 0"},
      {0.02, nan, 0.05, 0.8, "relative_mde"},
      {0.02, inf, 0.05, 0.8, "relative_mde"},
      {0.95, 0.10, 0.05, 0.8, "outside (0, 1)"},
      {0.5, 1.0, 0.05, 0.8, "outside (0, 1)"},
      {0.3, -1.0, 0.05, 0.8, "outside (0, 1)"},
      {0.3, -1.5, 0.05, 0.8, "outside (0, 1)"},
      {0.02, 0.1, 0, 0.8, "alpha is 0"},
      {0.02, 0.1, 1, 0.8, "alpha is 1"},
      {0.02, 0.1, nan, 0.8, "alpha"},
      // Found by stats_fuzz: alpha / 2 rounds to 0, and Boost threw.
      {0.02, 0.1, 5e-324, 0.8, "not below 2.22507e-308"},
      {0.02, 0.1, 0.05, 0.4, "power is 0.4"},
      {0.02, 0.1, 0.05, 1, "power is 1"},
      {0.02, 0.1, 0.05, nan, "power"},
      // n would be about 1.6e19: no experiment is that large.
      {0.5, 1e-9, 0.05, 0.8, "pick a larger MDE"},
  };
  for (const Bad& b : bad) {
    SCOPED_TRACE(b.hint);
    PowerOptions options;
    options.alpha = b.alpha;
    options.power = b.power;
    auto r = BinomialSampleSize(b.baseline, b.mde, options);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(b.hint), std::string::npos)
        << r.status();
  }
}

TEST(DaysToPower, MatchesEveryGoldenCase) {
  const std::vector<GoldenCase> cases =
      GoldenCasesOfKind("stats/testdata/misc.golden", "days");
  ASSERT_GE(cases.size(), 20u);
  int continuous = 0;
  for (const GoldenCase& c : cases) {
    SCOPED_TRACE(c.name);
    continuous += c.MaybeNum("unit_sd").has_value();
    TrafficSnapshot traffic;
    traffic.baseline = c.Num("baseline");
    traffic.unit_sd = c.MaybeNum("unit_sd");
    for (double e : c.Nums("exposed")) {
      traffic.exposed.push_back(static_cast<int64_t>(e));
    }
    traffic.units_per_day = c.Nums("units_per_day");
    auto r = DaysToPower(traffic, c.Num("mde"), OptionsOf(c));
    ASSERT_TRUE(r.ok()) << r.status();
    const std::optional<double> per_variant = c.MaybeNum("per_variant");
    ASSERT_EQ(r->per_variant.has_value(), per_variant.has_value());
    if (per_variant) {
      EXPECT_EQ(*r->per_variant, *per_variant);
    }
    const std::optional<double> more_days = c.MaybeNum("more_days");
    ASSERT_EQ(r->more_days.has_value(), more_days.has_value());
    if (more_days) {
      EXPECT_EQ(*r->more_days, *more_days);
    }
    // A null answer always says why.
    if (!r->more_days) {
      EXPECT_FALSE(r->warnings.empty());
    }
  }
  EXPECT_GE(continuous, 6);
}

TEST(MeanSampleSize, MatchesTheNormalFormulaOnEveryGoldenCase) {
  const std::vector<GoldenCase> cases =
      GoldenCasesOfKind("stats/testdata/misc.golden", "mean_sample_size");
  ASSERT_GE(cases.size(), 8u);
  for (const GoldenCase& c : cases) {
    SCOPED_TRACE(c.name);
    auto r = MeanSampleSize(c.Num("baseline"), c.Num("unit_sd"), c.Num("mde"),
                            OptionsOf(c));
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectClose(r->per_variant_exact, c.Num("per_variant_exact"),
                c.name + " per_variant_exact");
    EXPECT_EQ(r->per_variant, static_cast<int64_t>(c.Num("per_variant")));
    ExpectClose(r->treatment, c.Num("treatment"), c.name + " treatment");
  }
}

TEST(MeanSampleSize, NoisierMetricsNeedMoreUnits) {
  // n grows with the variance: four times the SD, sixteen times the units
  // (up to rounding).
  auto quiet = MeanSampleSize(10, 5, 0.05);
  auto noisy = MeanSampleSize(10, 20, 0.05);
  ASSERT_TRUE(quiet.ok()) << quiet.status();
  ASSERT_TRUE(noisy.ok()) << noisy.status();
  EXPECT_NEAR(noisy->per_variant_exact / quiet->per_variant_exact, 16, 1e-12);
}

TEST(MeanSampleSize, RejectsImpossibleDesignsWithAHint) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  struct Bad {
    double baseline;
    double sd;
    double mde;
    std::string hint;
  };
  const std::vector<Bad> bad = {
      {0, 1, 0.1, "non-zero control mean"},
      {nan, 1, 0.1, "non-zero control mean"},
      {inf, 1, 0.1, "non-zero control mean"},
      {5, 0, 0.1, "unit_sd is 0"},
      {5, -1, 0.1, "unit_sd is -1"},
      {5, nan, 0.1, "unit_sd"},
      {5, 1, 0, "relative_mde is 0"},
      {5, 1e6, 1e-9, "pick a larger MDE"},
  };
  for (const Bad& b : bad) {
    SCOPED_TRACE(b.hint);
    auto r = MeanSampleSize(b.baseline, b.sd, b.mde);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(b.hint), std::string::npos)
        << r.status();
  }
}

// Found by stats_fuzz: baseline * relative_mde overflowed to infinity,
// and the formula answered 0 units with an infinite treatment mean.
TEST(MeanSampleSize, RejectsAnEffectTooLargeToRepresent) {
  auto r = MeanSampleSize(std::numeric_limits<double>::max(), 0.5, 744);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("overflows"), std::string::npos)
      << r.status();
}

// Found by stats_fuzz: sd / delta underflowed to 0, and the formula
// answered 0 units. Any design needs at least one unit per variant.
TEST(MeanSampleSize, NeverAnswersFewerThanOneUnit) {
  auto r = MeanSampleSize(1e10, 5e-324, 1);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->per_variant, 1);
  EXPECT_TRUE(std::isfinite(r->treatment));
}

TEST(DaysToPower, ContinuousUndefinedSizesSayWhy) {
  TrafficSnapshot traffic;
  traffic.exposed = {100, 100};
  traffic.units_per_day = {10, 10};
  traffic.baseline = 0;
  traffic.unit_sd = 2;
  auto zero_mean = DaysToPower(traffic, 0.05);
  ASSERT_TRUE(zero_mean.ok()) << zero_mean.status();
  EXPECT_FALSE(zero_mean->per_variant.has_value());
  EXPECT_TRUE(AnyWarningContains(*zero_mean, "control mean is 0"));
  traffic.baseline = 4;
  traffic.unit_sd = 0;
  auto no_spread = DaysToPower(traffic, 0.05);
  ASSERT_TRUE(no_spread.ok()) << no_spread.status();
  EXPECT_FALSE(no_spread->more_days.has_value());
  EXPECT_TRUE(AnyWarningContains(*no_spread, "standard deviation 0"));
  // Bad arguments are errors, not warnings; a negative mean is fine.
  traffic.unit_sd = -1;
  EXPECT_EQ(DaysToPower(traffic, 0.05).status().code(),
            absl::StatusCode::kInvalidArgument);
  traffic.unit_sd = 1;
  traffic.baseline = -3;
  EXPECT_TRUE(DaysToPower(traffic, 0.05).ok());
}

TEST(DaysToPower, CountsTheDaysTheSlowestVariantNeeds) {
  // 80682 units per variant (see CliExampleDefaults); the treatment needs
  // 40582 more at 5000 a day: 8.1 days, so 9.
  TrafficSnapshot traffic{0.02, {40200, 40100}, {5000, 5000}, std::nullopt};
  auto r = DaysToPower(traffic, 0.10);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->per_variant, 80682);
  EXPECT_EQ(r->more_days, 9);
  EXPECT_TRUE(r->warnings.empty());
}

TEST(DaysToPower, ZeroWhenEveryVariantHasEnough) {
  TrafficSnapshot traffic{0.02, {90000, 80682}, {0, 0}, std::nullopt};
  auto r = DaysToPower(traffic, 0.10);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->more_days, 0);
  EXPECT_TRUE(r->warnings.empty());
}

TEST(DaysToPower, NoTrafficIsNullWithAWarning) {
  TrafficSnapshot traffic{0.02, {1000, 1000}, {300, 0}, std::nullopt};
  auto r = DaysToPower(traffic, 0.10);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->per_variant, 80682);
  EXPECT_FALSE(r->more_days.has_value());
  EXPECT_TRUE(AnyWarningContains(*r, "variant 1 has 1000 of the 80682"));
  EXPECT_TRUE(AnyWarningContains(*r, "no new units per day"));
}

TEST(DaysToPower, ZeroBaselineIsNullWithAWarning) {
  TrafficSnapshot traffic{0.0, {500, 500}, {100, 100}, std::nullopt};
  auto r = DaysToPower(traffic, 0.10);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->per_variant.has_value());
  EXPECT_FALSE(r->more_days.has_value());
  EXPECT_TRUE(AnyWarningContains(*r, "no conversions yet"));
}

TEST(DaysToPower, MdeBeyondTheObservedBaselineIsNullWithAWarning) {
  TrafficSnapshot traffic{0.95, {500, 500}, {100, 100}, std::nullopt};
  auto r = DaysToPower(traffic, 0.10);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->per_variant.has_value());
  EXPECT_FALSE(r->more_days.has_value());
  EXPECT_TRUE(AnyWarningContains(*r, "outside (0, 1)"));
}

TEST(DaysToPower, RejectsBadArgumentsWithAHint) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  struct Bad {
    TrafficSnapshot traffic;
    double mde;
    std::string hint;
  };
  const std::vector<Bad> bad = {
      {{0.02, {10, 10}, {1, 1}, std::nullopt}, 0, "relative_mde is 0"},
      {{1.5, {10, 10}, {1, 1}, std::nullopt}, 0.1, "baseline is 1.5"},
      {{nan, {10, 10}, {1, 1}, std::nullopt}, 0.1, "baseline"},
      {{0.02, {10, 10}, {1}, std::nullopt},
       0.1,
       "one daily traffic figure per variant"},
      {{0.02, {}, {}, std::nullopt}, 0.1, "empty"},
      {{0.02, {10, -3}, {1, 1}, std::nullopt}, 0.1, "exposed[1] is -3"},
      {{0.02, {10, 10}, {-1, 1}, std::nullopt}, 0.1, "units_per_day[0] is -1"},
      {{0.02, {10, 10}, {1, nan}, std::nullopt}, 0.1, "units_per_day[1]"},
  };
  for (const Bad& b : bad) {
    SCOPED_TRACE(b.hint);
    auto r = DaysToPower(b.traffic, b.mde);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(b.hint), std::string::npos)
        << r.status();
  }
  PowerOptions bad_power;
  bad_power.power = 0.3;
  auto r = DaysToPower({0.02, {10, 10}, {1, 1}, std::nullopt}, 0.1, bad_power);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace stats
}  // namespace abexp
