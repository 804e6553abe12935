#include "stats/cuped.h"

#include <cmath>
#include <cstddef>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "stats/compare.h"
#include "stats/testing/golden.h"

// Expected values come from stats/testdata/cuped.golden, written by
// stats/testdata/gen_cuped.py: statsmodels OLS of y on the arm indicators
// and the centred covariate, fitted to the simulated raw units whose sums
// the golden file holds.

namespace abexp {
namespace stats {
namespace {

using ::abexp::stats::testing::ExpectClose;
using ::abexp::stats::testing::GoldenCase;
using ::abexp::stats::testing::GoldenCasesOfKind;
using ::testing::HasSubstr;

constexpr char kGolden[] = "stats/testdata/cuped.golden";

std::vector<CupedArm> ArmsOf(const GoldenCase& c) {
  const std::vector<double> n = c.Nums("n"), sy = c.Nums("sy"),
                            syy = c.Nums("syy"), sx = c.Nums("sx"),
                            sxx = c.Nums("sxx"), sxy = c.Nums("sxy");
  std::vector<CupedArm> arms;
  for (size_t i = 0; i < n.size(); ++i) {
    arms.push_back(
        {static_cast<int64_t>(n[i]), sy[i], syy[i], sx[i], sxx[i], sxy[i]});
  }
  return arms;
}

void Check(const std::optional<double>& got, double want,
           const std::string& what) {
  ASSERT_TRUE(got.has_value()) << what << " is null, want " << want;
  ExpectClose(*got, want, what);
}

// Checks arm `t` against the control (arm 0) with the golden figures at
// position t - 1 of each per-treatment list.
void CheckTreatment(const CupedComparison& r, const GoldenCase& c, size_t t) {
  const std::string at = absl::StrCat(c.name, " arm ", t, " ");
  const auto want = [&](const std::string& key) { return c.Nums(key)[t - 1]; };
  Check(r.theta, c.Num("theta"), at + "theta");
  Check(r.adjusted.control, c.Nums("adj")[0], at + "adjusted control");
  Check(r.adjusted.treatment, c.Nums("adj")[t], at + "adjusted treatment");
  Check(r.adjusted.absolute.estimate, want("abs_estimate"), at + "abs");
  Check(r.adjusted.absolute.standard_error, want("abs_se"), at + "abs se");
  Check(r.adjusted.absolute.df, c.Num("abs_df"), at + "df");
  Check(r.adjusted.absolute.ci_low, want("abs_ci_low"), at + "abs ci_low");
  Check(r.adjusted.absolute.ci_high, want("abs_ci_high"), at + "abs ci_high");
  Check(r.adjusted.absolute.p_value, want("abs_p"), at + "abs p");
  Check(r.adjusted.relative.estimate, want("rel_estimate"), at + "rel");
  Check(r.adjusted.relative.standard_error, want("rel_se"), at + "rel se");
  Check(r.adjusted.relative.ci_low, want("rel_ci_low"), at + "rel ci_low");
  Check(r.adjusted.relative.ci_high, want("rel_ci_high"), at + "rel ci_high");
  Check(r.adjusted.relative.p_value, want("rel_p"), at + "rel p");
  Check(r.variance_reduction, want("vr"), at + "variance reduction");
  EXPECT_TRUE(r.adjusted.sequential.p_value.has_value()) << at;
  EXPECT_THAT(r.adjusted.warnings, ::testing::IsEmpty()) << at;
}

TEST(CupedGolden, MeansMatchStatsmodelsOlsWithTheCentredCovariate) {
  for (const GoldenCase& c : GoldenCasesOfKind(kGolden, "means")) {
    const std::vector<CupedArm> arms = ArmsOf(c);
    CompareOptions options;
    options.alpha = c.Num("alpha");
    for (size_t t = 1; t < arms.size(); ++t) {
      absl::StatusOr<CupedComparison> r =
          CompareCupedMeans(arms, 0, t, options);
      ASSERT_TRUE(r.ok()) << c.name << ": " << r.status();
      CheckTreatment(*r, c, t);
    }
  }
}

TEST(CupedGolden, ProportionsMatchTheLinearProbabilityModel) {
  for (const GoldenCase& c : GoldenCasesOfKind(kGolden, "binomial")) {
    std::vector<CupedBinomialArm> arms;
    for (const CupedArm& a : ArmsOf(c)) {
      arms.push_back({a.units, static_cast<int64_t>(a.sum_y), a.sum_x,
                      a.sum_x_sq, a.sum_xy});
    }
    CompareOptions options;
    options.alpha = c.Num("alpha");
    for (size_t t = 1; t < arms.size(); ++t) {
      absl::StatusOr<CupedComparison> r =
          CompareCupedProportions(arms, 0, t, options);
      ASSERT_TRUE(r.ok()) << c.name << ": " << r.status();
      CheckTreatment(*r, c, t);
    }
  }
}

// Sums of simulated units: x standard normal, y = rho·x + sqrt(1 − rho²)·e
// (plus `lift` in the treatment), so the within-arm correlation is rho.
struct Simulated {
  CupedArm cuped;
  MeanArm raw;
};
Simulated Simulate(std::mt19937_64& rng, int units, double rho, double lift) {
  std::normal_distribution<double> normal;
  Simulated s;
  s.cuped.units = units;
  s.raw.units = units;
  for (int i = 0; i < units; ++i) {
    const double x = normal(rng);
    const double y =
        10 + lift + rho * x + std::sqrt(1 - rho * rho) * normal(rng);
    s.cuped.sum_y += y;
    s.cuped.sum_y_sq += y * y;
    s.cuped.sum_x += x;
    s.cuped.sum_x_sq += x * x;
    s.cuped.sum_xy += x * y;
  }
  s.raw.sum = s.cuped.sum_y;
  s.raw.sum_sq = s.cuped.sum_y_sq;
  return s;
}

// A/A experiments: the adjusted test keeps its 5% false-positive rate, and
// its interval is narrower than Welch's on the same units by sqrt(1 − rho²),
// as the correlation predicts.
TEST(CupedSimulation, AaFalsePositivesStayAtAlphaAndIntervalsNarrowByRho) {
  std::mt19937_64 rng(18);
  constexpr int kExperiments = 2000;
  constexpr int kUnits = 500;
  for (const double rho : {0.3, 0.6, 0.9}) {
    SCOPED_TRACE(absl::StrCat("rho ", rho));
    int positives = 0;
    double width_ratio = 0;
    double reduction = 0;
    for (int e = 0; e < kExperiments; ++e) {
      const Simulated c = Simulate(rng, kUnits, rho, 0);
      const Simulated t = Simulate(rng, kUnits, rho, 0);
      absl::StatusOr<CupedComparison> adjusted =
          CompareCupedMeans({c.cuped, t.cuped}, 0, 1);
      absl::StatusOr<Comparison> raw = CompareMeans(c.raw, t.raw);
      ASSERT_TRUE(adjusted.ok()) << adjusted.status();
      ASSERT_TRUE(raw.ok()) << raw.status();
      const Lift& a = adjusted->adjusted.absolute;
      if (*a.p_value < 0.05) ++positives;
      width_ratio += (*a.ci_high - *a.ci_low) /
                     (*raw->absolute.ci_high - *raw->absolute.ci_low);
      reduction += *adjusted->variance_reduction;
    }
    EXPECT_NEAR(static_cast<double>(positives) / kExperiments, 0.05, 0.015);
    EXPECT_NEAR(width_ratio / kExperiments, std::sqrt(1 - rho * rho), 0.01);
    EXPECT_NEAR(reduction / kExperiments, rho * rho, 0.01);
  }
}

TEST(CupedSimulation, AaFalsePositivesOfAConversionRateStayAtAlpha) {
  std::mt19937_64 rng(1818);
  std::poisson_distribution<int> frequency(1.5);
  std::uniform_real_distribution<double> uniform;
  constexpr int kExperiments = 2000;
  int positives = 0;
  for (int e = 0; e < kExperiments; ++e) {
    std::vector<CupedBinomialArm> arms(2);
    for (CupedBinomialArm& arm : arms) {
      arm.units = 1000;
      for (int i = 0; i < arm.units; ++i) {
        const double x = frequency(rng);
        const bool converted = uniform(rng) < 0.05 + 0.06 * x;
        arm.conversions += converted;
        arm.sum_x += x;
        arm.sum_x_sq += x * x;
        arm.sum_xy += converted ? x : 0;
      }
    }
    absl::StatusOr<CupedComparison> r = CompareCupedProportions(arms, 0, 1);
    ASSERT_TRUE(r.ok()) << r.status();
    if (*r->adjusted.absolute.p_value < 0.05) ++positives;
  }
  EXPECT_NEAR(static_cast<double>(positives) / kExperiments, 0.05, 0.015);
}

TEST(Cuped, ACovariateConstantWithinArmsLeavesNothingToAdjustAndSaysSo) {
  // x = 3 for every unit: Σx = 3n, Σx² = 9n, Σxy = 3Σy.
  const CupedArm c{100, 500, 2600, 300, 900, 1500};
  const CupedArm t{100, 520, 2800, 300, 900, 1560};
  absl::StatusOr<CupedComparison> r = CompareCupedMeans({c, t}, 0, 1);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->theta.has_value());
  EXPECT_FALSE(r->adjusted.absolute.estimate.has_value());
  EXPECT_THAT(r->adjusted.warnings,
              ::testing::Contains(HasSubstr("read the unadjusted figures")));
}

TEST(Cuped, AnArmWithoutUnitsIsNamedAndNothingIsCompared) {
  const CupedArm c{100, 500, 2600, 300, 1000, 1500};
  absl::StatusOr<CupedComparison> r = CompareCupedMeans({c, CupedArm{}}, 0, 1);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->adjusted.absolute.estimate.has_value());
  EXPECT_THAT(r->adjusted.warnings,
              ::testing::Contains(HasSubstr("treatment arm has no units")));
}

TEST(Cuped, SumsNoDataCanGiveAreRefusedNamingTheField) {
  const CupedArm good{100, 500, 2600, 300, 1000, 1500};
  CupedArm bad = good;
  bad.sum_x_sq = 10;  // below (Σx)²/n = 900
  absl::StatusOr<CupedComparison> r = CompareCupedMeans({good, bad}, 0, 1);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("arms[1].sum_x_sq"));

  EXPECT_EQ(CompareCupedMeans({good, good}, 0, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CompareCupedMeans({good, good}, 0, 2).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<CupedComparison> conversions = CompareCupedProportions(
      {CupedBinomialArm{10, 11, 0, 0, 0}, CupedBinomialArm{10, 1, 0, 0, 0}}, 0,
      1);
  EXPECT_EQ(conversions.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(conversions.status().message(), HasSubstr("arms[0].conversions"));
}

}  // namespace
}  // namespace stats
}  // namespace abexp
