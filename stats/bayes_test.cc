#include "stats/bayes.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "stats/testing/golden.h"

// Expected values come from stats/testdata/gen_bayes.py (exact rational sums,
// and nested QUADPACK integrals over the densities, neither touching Boost)
// through stats/testdata/bayes.golden.

namespace abexp {
namespace stats {
namespace {

using ::abexp::stats::testing::ExpectClose;
using ::abexp::stats::testing::GoldenCase;
using ::abexp::stats::testing::LoadGolden;
using ::testing::HasSubstr;

constexpr const char* kFields[] = {"chance_to_beat_control",
                                   "expected_loss_ship", "expected_loss_keep"};

const std::optional<double>& Field(const BayesResult& r,
                                   const std::string& name) {
  if (name == "chance_to_beat_control") return r.chance_to_beat_control;
  if (name == "expected_loss_ship") return r.expected_loss_ship;
  return r.expected_loss_keep;
}

BinomialArm Arm(const GoldenCase& c, const std::string& suffix) {
  return {static_cast<int64_t>(c.Num("n" + suffix)),
          static_cast<int64_t>(c.Num("x" + suffix))};
}

// better=lower marks the cases of a lower-is-better metric.
Direction DirectionOf(const GoldenCase& c) {
  return c.Has("better") && c.Str("better") == "lower"
             ? Direction::kLowerIsBetter
             : Direction::kHigherIsBetter;
}

absl::StatusOr<BayesResult> RunCase(const GoldenCase& c) {
  if (c.Str("kind") == "binomial") {
    return BayesProportions(Arm(c, "_c"), Arm(c, "_t"), DirectionOf(c));
  }
  return BayesGaussian(c.Num("difference"), c.Num("standard_error"),
                       DirectionOf(c));
}

TEST(Bayes, MatchesGoldenValues) {
  auto cases = LoadGolden("stats/testdata/bayes.golden");
  ASSERT_TRUE(cases.ok()) << cases.status();
  int binomial = 0;
  int gaussian = 0;
  int lower_is_better = 0;
  for (const GoldenCase& c : *cases) {
    SCOPED_TRACE("case " + c.name);
    (c.Str("kind") == "binomial" ? binomial : gaussian)++;
    if (DirectionOf(c) == Direction::kLowerIsBetter) ++lower_is_better;
    auto r = RunCase(c);
    ASSERT_TRUE(r.ok()) << r.status();
    bool any_null = false;
    for (const std::string field : kFields) {
      const std::optional<double>& got = Field(*r, field);
      if (c.IsNull(field)) {
        any_null = true;
        EXPECT_FALSE(got.has_value()) << field << " = " << *got;
      } else {
        ASSERT_TRUE(got.has_value()) << field << " is null";
        // Relative accuracy even for the tiny figures (1e-90 and below):
        // each is computed from its own small side, never as 1 - x.
        ExpectClose(*got, c.Num(field), c.name + " " + field, 1e-9,
                    /*abs=*/0);
      }
    }
    // Every null is explained; nothing else warns.
    EXPECT_EQ(any_null, !r->warnings.empty());
  }
  EXPECT_GE(binomial, 20);
  EXPECT_GE(gaussian, 10);
  EXPECT_GE(lower_is_better, 10);
}

TEST(BayesProportions, PublishedReferenceChance) {
  // The reference: 140/1000 beat 120/1000 with chance 0.907872586370
  // (Evan Miller's calculator gives the same).
  auto r = BayesProportions({1000, 120}, {1000, 140});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NEAR(*r->chance_to_beat_control, 0.907872586370, 5e-13);
}

TEST(BayesProportions, OneUnitEachHasTextbookAnswers) {
  // Control 0/1 has posterior Beta(1, 2) (density 2(1-p)), treatment 1/1 has
  // Beta(2, 1) (density 2p). By hand: P(T > C) = ∫∫_{t>c} 4t(1-c) = 5/6,
  // E[(C - T)+] = 1/30, and E[(T - C)+] = 1/30 + (2/3 - 1/3) = 11/30.
  auto r = BayesProportions({1, 0}, {1, 1});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NEAR(*r->chance_to_beat_control, 5.0 / 6, 1e-14);
  EXPECT_NEAR(*r->expected_loss_ship, 1.0 / 30, 1e-14);
  EXPECT_NEAR(*r->expected_loss_keep, 11.0 / 30, 1e-14);
}

TEST(BayesProportions, IdenticalArmsHaveChanceExactlyOneHalf) {
  for (auto [n, x] : std::initializer_list<std::pair<int64_t, int64_t>>{
           {1, 0}, {1000, 0}, {1000, 1000}, {500, 50}, {1'000'000'000, 3}}) {
    SCOPED_TRACE(absl::StrCat(x, "/", n));
    auto r = BayesProportions({n, x}, {n, x});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(*r->chance_to_beat_control, 0.5);
    EXPECT_EQ(*r->expected_loss_ship, *r->expected_loss_keep);
    EXPECT_GT(*r->expected_loss_ship, 0);
    EXPECT_TRUE(r->warnings.empty());
  }
}

// Swapping the arms mirrors every figure; relabelling conversions as
// non-conversions (p -> 1 - p) turns "better" into "worse". Both follow from
// the model alone, so they check the code at counts the golden file lacks.
TEST(BayesProportions, SwappingArmsOrFlippingRatesMirrorsTheResult) {
  const std::pair<BinomialArm, BinomialArm> pairs[] = {
      {{1000, 120}, {1000, 140}},
      {{37, 0}, {1200, 3}},
      {{250'000'000, 1'234'567}, {260'000'000, 1'300'000}},
      {{3'000'000'000, 2'999'999'000}, {3'000'000'000, 2'999'998'900}},
      {{200, 200}, {50, 49}},
  };
  for (const auto& [c, t] : pairs) {
    SCOPED_TRACE(absl::StrCat(c.conversions, "/", c.units, " vs ",
                              t.conversions, "/", t.units));
    auto r = BayesProportions(c, t);
    auto swapped = BayesProportions(t, c);
    auto flipped = BayesProportions({c.units, c.units - c.conversions},
                                    {t.units, t.units - t.conversions});
    ASSERT_TRUE(r.ok() && swapped.ok() && flipped.ok());
    ExpectClose(*swapped->chance_to_beat_control,
                1 - *r->chance_to_beat_control, "swapped chance", 1e-9, 1e-15);
    ExpectClose(*swapped->expected_loss_ship, *r->expected_loss_keep,
                "swapped ship", 1e-9, 0);
    ExpectClose(*swapped->expected_loss_keep, *r->expected_loss_ship,
                "swapped keep", 1e-9, 0);
    ExpectClose(*flipped->chance_to_beat_control,
                1 - *r->chance_to_beat_control, "flipped chance", 1e-9, 1e-15);
    ExpectClose(*flipped->expected_loss_ship, *r->expected_loss_keep,
                "flipped ship", 1e-9, 0);
    // keep - ship is the posterior mean of p_t - p_c.
    const double mean_difference = (1.0 + t.conversions) / (2.0 + t.units) -
                                   (1.0 + c.conversions) / (2.0 + c.units);
    ExpectClose(*r->expected_loss_keep - *r->expected_loss_ship,
                mean_difference, "keep - ship", 1e-9, 1e-17);
  }
}

// When lower is better, the treatment beats control by being below it:
// every figure is the higher-is-better one of the arms in each other's
// place, whatever the rates (the golden file checks the values).
TEST(BayesProportions, LowerIsBetterAsksWhetherTheTreatmentIsBelowControl) {
  const std::pair<BinomialArm, BinomialArm> pairs[] = {
      {{10000, 200}, {10000, 260}},
      {{37, 0}, {1200, 3}},
      {{250'000'000, 1'234'567}, {260'000'000, 1'300'000}},
      {{2000, 1900}, {2100, 1930}},
  };
  for (const auto& [c, t] : pairs) {
    SCOPED_TRACE(absl::StrCat(c.conversions, "/", c.units, " vs ",
                              t.conversions, "/", t.units));
    auto lower = BayesProportions(c, t, Direction::kLowerIsBetter);
    auto below = BayesProportions(t, c);
    ASSERT_TRUE(lower.ok() && below.ok());
    EXPECT_TRUE(lower->warnings.empty());
    ExpectClose(*lower->chance_to_beat_control, *below->chance_to_beat_control,
                "chance", 1e-9, 0);
    ExpectClose(*lower->expected_loss_ship, *below->expected_loss_ship, "ship",
                1e-9, 0);
    ExpectClose(*lower->expected_loss_keep, *below->expected_loss_keep, "keep",
                1e-9, 0);
  }
  // 2.6% refunds against 2%: worse, so a small chance, and shipping costs
  // about the 0.6 pp difference.
  auto refunds =
      BayesProportions({10000, 200}, {10000, 260}, Direction::kLowerIsBetter);
  ASSERT_TRUE(refunds.ok());
  EXPECT_LT(*refunds->chance_to_beat_control, 0.01);
  EXPECT_NEAR(*refunds->expected_loss_ship, 0.006, 0.0002);
  EXPECT_LT(*refunds->expected_loss_keep, 1e-5);
}

TEST(BayesProportions, LowerIsBetterKeepsTheArmsNamesInWarnings) {
  auto r = BayesProportions({0, 0}, {100, 10}, Direction::kLowerIsBetter);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->chance_to_beat_control.has_value());
  ASSERT_EQ(r->warnings.size(), 1u);
  EXPECT_THAT(r->warnings[0], HasSubstr("the control arm has no units"));
}

TEST(BayesGaussian, LowerIsBetterReadsTheDifferenceTheOtherWay) {
  // Load time 50 ms longer in treatment, SE 10 ms: z = 5 the bad way.
  auto slower = BayesGaussian(0.05, 0.01, Direction::kLowerIsBetter);
  auto faster = BayesGaussian(-0.05, 0.01);
  ASSERT_TRUE(slower.ok() && faster.ok());
  EXPECT_LT(*slower->chance_to_beat_control, 1e-6);
  EXPECT_EQ(*slower->chance_to_beat_control, *faster->chance_to_beat_control);
  EXPECT_EQ(*slower->expected_loss_ship, *faster->expected_loss_ship);
  EXPECT_EQ(*slower->expected_loss_keep, *faster->expected_loss_keep);
  EXPECT_NEAR(*slower->expected_loss_ship, 0.05, 1e-6);
}

TEST(BayesProportions, ChanceGrowsWithTheTreatmentsConversions) {
  double previous = 0;
  for (int64_t x = 0; x <= 100; x += 5) {
    auto r = BayesProportions({100, 50}, {100, x});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_GT(*r->chance_to_beat_control, previous) << "x_t = " << x;
    previous = *r->chance_to_beat_control;
  }
  EXPECT_GT(previous, 1 - 1e-12);
}

TEST(BayesProportions, NoOrAllConversionsStayDefined) {
  // Zero variance in the data is no problem for the posterior: Beta(1, n + 1)
  // and Beta(n + 1, 1) are proper.
  for (auto [c, t] : std::initializer_list<std::pair<BinomialArm, BinomialArm>>{
           {{1000, 0}, {1000, 0}},
           {{5'000'000'000, 0}, {5'000'000'000, 2}},
           {{100, 100}, {100, 100}},
           {{1'000'000'000, 1'000'000'000}, {1'000'000'000, 999'999'990}}}) {
    auto r = BayesProportions(c, t);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->warnings.empty());
    for (const std::string field : kFields) {
      ASSERT_TRUE(Field(*r, field).has_value()) << field;
      EXPECT_TRUE(std::isfinite(*Field(*r, field))) << field;
      EXPECT_GE(*Field(*r, field), 0) << field;
    }
  }
}

TEST(BayesProportions, LargestAcceptedCountsGiveConsistentAnswers) {
  // 10^10 units per arm, the documented limit, at a high rate (the golden
  // file has low and middling ones).
  const int64_t max = 10'000'000'000;
  auto r = BayesProportions({max, max - 3'000'000}, {max, max - 2'990'000});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(*r->chance_to_beat_control, 0.99);
  EXPECT_LT(*r->chance_to_beat_control, 1);
  EXPECT_GT(*r->expected_loss_ship, 0);
  ExpectClose(*r->expected_loss_keep - *r->expected_loss_ship,
              (max - 2'990'000 + 1.0) / (max + 2.0) -
                  (max - 3'000'000 + 1.0) / (max + 2.0),
              "keep - ship", 1e-9, 0);
  auto mirrored = BayesProportions({max, 3'000'000}, {max, 2'990'000});
  ASSERT_TRUE(mirrored.ok()) << mirrored.status();
  ExpectClose(*mirrored->chance_to_beat_control, 1 - *r->chance_to_beat_control,
              "mirrored chance", 1e-9, 0);
}

TEST(BayesProportions, AnArmWithoutUnitsLeavesEverythingUndefined) {
  struct Case {
    BinomialArm control;
    BinomialArm treatment;
    const char* names;
  };
  for (const Case& c : {Case{{0, 0}, {100, 10}, "the control arm has"},
                        Case{{100, 10}, {0, 0}, "the treatment arm has"},
                        Case{{0, 0}, {0, 0}, "both arms have"}}) {
    auto r = BayesProportions(c.control, c.treatment);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(r->chance_to_beat_control.has_value());
    EXPECT_FALSE(r->expected_loss_ship.has_value());
    EXPECT_FALSE(r->expected_loss_keep.has_value());
    ASSERT_EQ(r->warnings.size(), 1u);
    EXPECT_THAT(r->warnings[0], HasSubstr(c.names));
    EXPECT_THAT(r->warnings[0], HasSubstr("no units yet"));
  }
}

TEST(BayesProportions, RejectsImpossibleCountsWithAHint) {
  struct Case {
    BinomialArm control;
    BinomialArm treatment;
    const char* message;
  };
  const int64_t too_many = 10'000'000'001;
  for (const Case& c : {
           Case{{-1, 0}, {10, 1}, "control.units is -1"},
           Case{{10, 1}, {-5, 0}, "treatment.units is -5"},
           Case{{10, 11}, {10, 1}, "control.conversions is 11 of 10"},
           Case{{10, 1}, {10, -1}, "treatment.conversions is -1"},
           Case{{too_many, 0},
                {10, 1},
                "control.units is 10000000001; the Bayesian figures support 0 "
                "to 10^10 units per arm"},
           Case{{10, 1}, {too_many, 5}, "treatment.units is 10000000001"},
       }) {
    auto r = BayesProportions(c.control, c.treatment);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
        << r.status();
    EXPECT_THAT(r.status().message(), HasSubstr(c.message));
  }
}

TEST(BayesGaussian, IdenticalArmsLoseTheHalfNormalMean) {
  // D ~ N(0, s^2): P(D > 0) = 1/2 and E[max(D, 0)] = s / sqrt(2π).
  auto r = BayesGaussian(0, 0.3);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r->chance_to_beat_control, 0.5);
  const double pi = std::acos(-1.0);
  EXPECT_NEAR(*r->expected_loss_ship, 0.3 / std::sqrt(2 * pi), 1e-16);
  EXPECT_EQ(*r->expected_loss_ship, *r->expected_loss_keep);
}

TEST(BayesGaussian, ZeroStandardErrorIsUndefinedWithAWarning) {
  auto r = BayesGaussian(0.5, 0);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->chance_to_beat_control.has_value());
  EXPECT_FALSE(r->expected_loss_ship.has_value());
  EXPECT_FALSE(r->expected_loss_keep.has_value());
  ASSERT_EQ(r->warnings.size(), 1u);
  EXPECT_THAT(r->warnings[0],
              HasSubstr("standard error of the difference is 0"));
}

TEST(BayesGaussian, ExtremeRatiosStayInRange) {
  const double tiny = std::numeric_limits<double>::denorm_min();
  for (auto [d, s] : std::initializer_list<std::pair<double, double>>{
           {1e300, tiny}, {-1e300, tiny}, {1e-300, 1e300}, {-5, 1e-300}}) {
    auto r = BayesGaussian(d, s);
    ASSERT_TRUE(r.ok()) << r.status();
    for (const std::string field : kFields) {
      ASSERT_TRUE(Field(*r, field).has_value()) << field;
      EXPECT_TRUE(std::isfinite(*Field(*r, field))) << field << " " << d;
      EXPECT_GE(*Field(*r, field), 0) << field;
    }
    EXPECT_LE(*r->chance_to_beat_control, 1);
  }
}

// Found by stats_fuzz: near the largest double, s·φ(z) + d·Φ(z) exceeds it
// and the loss of keeping came back as infinity.
TEST(BayesGaussian, ALossBeyondTheLargestDoubleIsNullWithAWarning) {
  const double max = std::numeric_limits<double>::max();
  for (double d : {max, -max}) {
    auto r = BayesGaussian(d, 0.6 * max);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(r->chance_to_beat_control.has_value());
    EXPECT_GE(*r->chance_to_beat_control, 0);
    EXPECT_LE(*r->chance_to_beat_control, 1);
    // The larger loss is at least |d| + something, beyond any double; the
    // smaller one is s·φ(z) - |d|·Φ(-|z|), a finite number.
    std::optional<double> larger =
        d > 0 ? r->expected_loss_keep : r->expected_loss_ship;
    std::optional<double> smaller =
        d > 0 ? r->expected_loss_ship : r->expected_loss_keep;
    EXPECT_FALSE(larger.has_value()) << *larger;
    ASSERT_TRUE(smaller.has_value());
    EXPECT_TRUE(std::isfinite(*smaller));
    EXPECT_GT(*smaller, 0);
    ASSERT_EQ(r->warnings.size(), 1u);
    EXPECT_THAT(r->warnings[0],
                HasSubstr(d > 0 ? "loss of keeping" : "loss of shipping"));
    EXPECT_THAT(r->warnings[0], HasSubstr("overflows a double"));
  }
}

TEST(BayesGaussian, RejectsBadInputWithAHint) {
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  struct Case {
    double difference;
    double standard_error;
    const char* message;
  };
  for (const Case& c :
       {Case{nan, 1, "difference is nan"}, Case{inf, 1, "difference is inf"},
        Case{1, -0.1, "standard_error is -0.1"},
        Case{1, inf, "standard_error is inf"},
        Case{1, nan, "standard_error is nan"}}) {
    auto r = BayesGaussian(c.difference, c.standard_error);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
        << r.status();
    EXPECT_THAT(r.status().message(), HasSubstr(c.message));
  }
}

}  // namespace
}  // namespace stats
}  // namespace abexp
