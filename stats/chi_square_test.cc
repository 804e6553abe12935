#include "stats/chi_square.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

// Expected values come from SciPy 1.10 (Debian 12's python3-scipy), run as
//   /usr/bin/python3 -c 'from scipy.stats import chisquare, chi2_contingency;
//   ...'
// with the exact call next to each number.

namespace abexp {
namespace stats {
namespace {

// Relative tolerance: the p-values differ from SciPy only by rounding.
void ExpectClose(double expected, double actual) {
  EXPECT_NEAR(expected, actual, 1e-9 * std::abs(expected) + 1e-15)
      << "expected " << expected << ", got " << actual;
}

// Found by stats_fuzz: counts whose sum overflows made the statistic NaN,
// and Boost threw from the p-value (std::terminate in the server).
TEST(ChiSquareGoodnessOfFit, RejectsCountsWhoseSumOverflows) {
  auto r = ChiSquareGoodnessOfFit({1e308, 1e308}, {1, 1});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
      << r.status();
}

// A statistic that overflows to infinity has p-value 0 (Boost refuses it).
TEST(ChiSquareGoodnessOfFit, AnInfiniteStatisticHasPValueZero) {
  auto r = ChiSquareGoodnessOfFit({1e300, 0}, {1, 1});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->p_value, 0);
}

TEST(ChiSquareGoodnessOfFit, BalancedSplitMatchesScipy) {
  // chisquare([5020, 4980]) -> statistic=0.16, pvalue=0.6891565167793516
  auto r = ChiSquareGoodnessOfFit({5020, 4980}, {1, 1});
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(0.16, r->statistic);
  EXPECT_EQ(r->degrees_of_freedom, 1);
  ExpectClose(0.6891565167793516, r->p_value);
}

TEST(ChiSquareGoodnessOfFit, DetectsASampleRatioMismatch) {
  // chisquare([50500, 49500]) -> statistic=10.0, pvalue=0.001565402258002549
  auto r = ChiSquareGoodnessOfFit({50500, 49500}, {0.5, 0.5});
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(10.0, r->statistic);
  ExpectClose(0.001565402258002549, r->p_value);
}

TEST(ChiSquareGoodnessOfFit, WeightsNeedNotSumToOne) {
  // o = [1980, 3050, 4970]; t = sum(o)
  // chisquare(o, f_exp=[t*0.2, t*0.3, t*0.5])
  //   -> statistic=1.2133333333333334, pvalue=0.5451650606108354
  auto r = ChiSquareGoodnessOfFit({1980, 3050, 4970}, {20, 30, 50});
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(1.2133333333333334, r->statistic);
  EXPECT_EQ(r->degrees_of_freedom, 2);
  ExpectClose(0.5451650606108354, r->p_value);
}

TEST(ChiSquareGoodnessOfFit, TinyPValuesKeepTheirPrecision) {
  // chisquare([600, 400]) -> statistic=40.0, pvalue=2.5396285894708634e-10
  auto r = ChiSquareGoodnessOfFit({600, 400}, {1, 1});
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(40.0, r->statistic);
  ExpectClose(2.5396285894708634e-10, r->p_value);
}

TEST(ChiSquareGoodnessOfFit, SmallCountsFourCategories) {
  // chisquare([3, 7, 1, 9]) -> statistic=8.0, pvalue=0.04601170568923136
  auto r = ChiSquareGoodnessOfFit({3, 7, 1, 9}, {1, 1, 1, 1});
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(8.0, r->statistic);
  EXPECT_EQ(r->degrees_of_freedom, 3);
  ExpectClose(0.04601170568923136, r->p_value);
}

TEST(ChiSquareGoodnessOfFit, PerfectFitHasPValueOne) {
  // chisquare([2000, 3000, 5000], f_exp=[2000, 3000, 5000])
  //   -> statistic=0.0, pvalue=1.0
  auto r = ChiSquareGoodnessOfFit({2000, 3000, 5000}, {0.2, 0.3, 0.5});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->statistic, 0.0);
  EXPECT_EQ(r->p_value, 1.0);
}

TEST(ChiSquareGoodnessOfFit, RejectsBadInputWithAHint) {
  EXPECT_EQ(ChiSquareGoodnessOfFit({1, 2}, {1, 1, 1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChiSquareGoodnessOfFit({5}, {1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChiSquareGoodnessOfFit({}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChiSquareGoodnessOfFit({0, 0}, {1, 1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChiSquareGoodnessOfFit({-1, 5}, {1, 1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChiSquareGoodnessOfFit({std::nan(""), 5}, {1, 1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChiSquareGoodnessOfFit({3, 5}, {1, 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChiSquareGoodnessOfFit({3, 5}, {1, -1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(ChiSquareGoodnessOfFit({3, 5}, {1, inf}).status().code(),
            absl::StatusCode::kInvalidArgument);

  auto zero = ChiSquareGoodnessOfFit({3, 5}, {1, 0});
  EXPECT_NE(zero.status().message().find("expected[1]"), std::string::npos)
      << zero.status();
  auto sizes = ChiSquareGoodnessOfFit({1, 2}, {1, 1, 1});
  EXPECT_NE(sizes.status().message().find("one expected proportion per"),
            std::string::npos)
      << sizes.status();
}

TEST(ChiSquareIndependence, TwoByTwoWithoutContinuityCorrection) {
  // chi2_contingency([[120, 80], [90, 110]], correction=False)
  //   -> 9.022556390977442, p=0.0026666817936140982, dof=1
  auto r = ChiSquareIndependence({{120, 80}, {90, 110}});
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(9.022556390977442, r->statistic);
  EXPECT_EQ(r->degrees_of_freedom, 1);
  ExpectClose(0.0026666817936140982, r->p_value);
}

TEST(ChiSquareIndependence, TwoByThreeMatchesScipy) {
  // chi2_contingency([[30, 45, 25], [35, 40, 25]], correction=False)
  //   -> 0.6787330316742082, p=0.7122213608373542, dof=2
  auto r = ChiSquareIndependence({{30, 45, 25}, {35, 40, 25}});
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(0.6787330316742082, r->statistic);
  EXPECT_EQ(r->degrees_of_freedom, 2);
  ExpectClose(0.7122213608373542, r->p_value);
}

TEST(ChiSquareIndependence, ThreeByThreeDependentTable) {
  // chi2_contingency([[10, 20, 30], [20, 20, 20], [30, 20, 10]],
  //                  correction=False)
  //   -> 20.0, p=0.0004993992273873336, dof=4
  auto r = ChiSquareIndependence({{10, 20, 30}, {20, 20, 20}, {30, 20, 10}});
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectClose(20.0, r->statistic);
  EXPECT_EQ(r->degrees_of_freedom, 4);
  ExpectClose(0.0004993992273873336, r->p_value);
}

TEST(ChiSquareIndependence, IndependentTableHasPValueOne) {
  // chi2_contingency([[500, 500], [500, 500]], correction=False) -> 0.0, p=1.0
  auto r = ChiSquareIndependence({{500, 500}, {500, 500}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->statistic, 0.0);
  EXPECT_EQ(r->p_value, 1.0);
}

// Found by stats_fuzz: expected counts were computed as a product that
// overflowed (inf - inf, then inf / inf = NaN) although every input and the
// answer are ordinary. Counts in exact proportion fit exactly: statistic 0.
TEST(ChiSquareGoodnessOfFit, HugeCountsInProportionFitExactly) {
  auto r = ChiSquareGoodnessOfFit({1e300, 1e300}, {1e300, 1e300});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->statistic, 0.0);
  EXPECT_EQ(r->p_value, 1.0);
}

TEST(ChiSquareIndependence, HugeIndependentCountsGiveStatisticZero) {
  auto r = ChiSquareIndependence({{1e300, 1e300}, {1e300, 1e300}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->statistic, 0.0);
  EXPECT_EQ(r->p_value, 1.0);
}

TEST(ChiSquareIndependence, CountsWhoseSumOverflowsAreRefused) {
  auto r = ChiSquareIndependence({{1e308, 1e308}, {1e308, 1e308}});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

// An expected count so small it underflows to 0: nothing observed there
// adds nothing, anything observed there is infinitely unlikely. Never NaN.
TEST(ChiSquareIndependence, ExpectedCountsThatUnderflowNeverGiveNaN) {
  auto none_seen = ChiSquareIndependence({{5e-324, 0}, {1, 1e300}});
  ASSERT_TRUE(none_seen.ok()) << none_seen.status();
  EXPECT_FALSE(std::isnan(none_seen->statistic));
  EXPECT_FALSE(std::isnan(none_seen->p_value));
}

TEST(ChiSquareIndependence, RejectsBadTablesWithAHint) {
  EXPECT_EQ(ChiSquareIndependence({{1, 2}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChiSquareIndependence({{1}, {2}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChiSquareIndependence({{1, 2}, {3}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChiSquareIndependence({{1, -2}, {3, 4}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto empty_row = ChiSquareIndependence({{0, 0}, {3, 4}});
  EXPECT_EQ(empty_row.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(empty_row.status().message().find("row 0"), std::string::npos)
      << empty_row.status();
  auto empty_col = ChiSquareIndependence({{1, 0}, {3, 0}});
  EXPECT_EQ(empty_col.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(empty_col.status().message().find("column 1"), std::string::npos)
      << empty_col.status();
}

}  // namespace
}  // namespace stats
}  // namespace abexp
