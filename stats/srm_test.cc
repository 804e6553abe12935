#include "stats/srm.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "stats/testing/golden.h"

// Expected values: stats/testdata/misc.golden, written by
// stats/testdata/gen_misc.py with scipy.stats.chisquare.

namespace abexp {
namespace stats {
namespace {

using ::abexp::stats::testing::ExpectClose;
using ::abexp::stats::testing::GoldenCase;
using ::abexp::stats::testing::GoldenCasesOfKind;

std::vector<int64_t> Counts(const std::vector<double>& values) {
  std::vector<int64_t> out;
  for (double v : values) out.push_back(static_cast<int64_t>(v));
  return out;
}

bool AnyWarningContains(const SrmResult& r, const std::string& text) {
  for (const std::string& w : r.warnings) {
    if (w.find(text) != std::string::npos) return true;
  }
  return false;
}

TEST(SampleRatioMismatch, MatchesScipyOnEveryGoldenCase) {
  const std::vector<GoldenCase> cases =
      GoldenCasesOfKind("stats/testdata/misc.golden", "srm");
  ASSERT_GE(cases.size(), 60u);
  for (const GoldenCase& c : cases) {
    SCOPED_TRACE(c.name);
    SrmOptions options;
    options.threshold = c.Num("threshold");
    auto r =
        CheckSampleRatio(Counts(c.Nums("exposed")), c.Nums("weights"), options);
    ASSERT_TRUE(r.ok()) << r.status();
    if (c.IsNull("chi2")) {
      EXPECT_FALSE(r->chi2.has_value()) << *r->chi2;
    } else {
      ASSERT_TRUE(r->chi2.has_value());
      ExpectClose(*r->chi2, c.Num("chi2"), c.name + " chi2");
    }
    if (c.IsNull("p_value")) {
      EXPECT_FALSE(r->p_value.has_value()) << *r->p_value;
    } else {
      ASSERT_TRUE(r->p_value.has_value());
      // abs = 0: tiny p-values must keep their relative accuracy.
      ExpectClose(*r->p_value, c.Num("p_value"), c.name + " p_value", 1e-9, 0);
    }
    EXPECT_EQ(r->degrees_of_freedom, c.Num("df"));
    EXPECT_EQ(r->mismatch, c.Bool("mismatch"));
    // Whatever is null or alarming says why.
    if (!r->chi2.has_value() || !r->p_value.has_value()) {
      EXPECT_FALSE(r->warnings.empty());
    }
    EXPECT_EQ(AnyWarningContains(*r, "do not trust"), r->mismatch);
  }
}

TEST(SampleRatioMismatch, PublishedReferenceValue) {
  // The reference: [1000, 1200] with equal weights, p =
  // 2.00786561243e-5 (12 significant digits, hence the tolerance).
  auto r = CheckSampleRatio({1000, 1200}, {0.5, 0.5});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->p_value.has_value());
  ExpectClose(*r->p_value, 2.00786561243e-5, "p_value", 1e-11, 0);
  EXPECT_TRUE(r->mismatch);
}

TEST(SampleRatioMismatch, MismatchSaysLoudlyNotToTrustTheResults) {
  auto r = CheckSampleRatio({9600, 400}, {95, 5});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->mismatch);
  ASSERT_FALSE(r->warnings.empty());
  EXPECT_TRUE(AnyWarningContains(*r, "SAMPLE RATIO MISMATCH"));
  EXPECT_TRUE(AnyWarningContains(*r, "do not trust"));
  // The warning shows what was seen against what the weights expect.
  EXPECT_TRUE(AnyWarningContains(*r, "9600, 400"));
  EXPECT_TRUE(AnyWarningContains(*r, "9500, 500"));
}

TEST(SampleRatioMismatch, HealthySplitRaisesNothing) {
  auto r = CheckSampleRatio({9512, 488}, {0.95, 0.05});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->mismatch);
  EXPECT_TRUE(r->warnings.empty()) << r->warnings.front();
}

TEST(SampleRatioMismatch, IdenticalCountsHavePValueOne) {
  auto r = CheckSampleRatio({5000, 5000}, {1, 1});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->chi2, 0.0);
  EXPECT_EQ(r->p_value, 1.0);
  EXPECT_FALSE(r->mismatch);
}

TEST(SampleRatioMismatch, ThresholdIsAParameter) {
  // p = 0.00157: fine at the default 0.001, a mismatch at 0.01.
  auto strict = CheckSampleRatio({50500, 49500}, {1, 1});
  ASSERT_TRUE(strict.ok()) << strict.status();
  EXPECT_FALSE(strict->mismatch);
  SrmOptions loose;
  loose.threshold = 0.01;
  auto r = CheckSampleRatio({50500, 49500}, {1, 1}, loose);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->mismatch);
  EXPECT_EQ(r->p_value, strict->p_value);
}

TEST(SampleRatioMismatch, NoUnitsYetIsUndefinedNotAnAlarm) {
  auto r = CheckSampleRatio({0, 0}, {0.5, 0.5});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->chi2.has_value());
  EXPECT_FALSE(r->p_value.has_value());
  EXPECT_FALSE(r->mismatch);
  EXPECT_TRUE(AnyWarningContains(*r, "no units have been exposed yet"));
}

TEST(SampleRatioMismatch, SingleArmIsUndefined) {
  auto r = CheckSampleRatio({1234}, {1});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->chi2.has_value());
  EXPECT_FALSE(r->p_value.has_value());
  EXPECT_FALSE(r->mismatch);
  EXPECT_TRUE(AnyWarningContains(*r, "at least 2 variants"));
}

TEST(SampleRatioMismatch, EmptyZeroWeightArmIsLeftOut) {
  auto with_empty_arm = CheckSampleRatio({5020, 4980, 0}, {0.5, 0.5, 0});
  auto two_arms = CheckSampleRatio({5020, 4980}, {0.5, 0.5});
  ASSERT_TRUE(with_empty_arm.ok()) << with_empty_arm.status();
  ASSERT_TRUE(two_arms.ok()) << two_arms.status();
  EXPECT_EQ(with_empty_arm->degrees_of_freedom, 1);
  EXPECT_EQ(with_empty_arm->chi2, two_arms->chi2);
  EXPECT_EQ(with_empty_arm->p_value, two_arms->p_value);
  EXPECT_TRUE(with_empty_arm->warnings.empty());
}

TEST(SampleRatioMismatch, UnitsInAZeroWeightArmAreAMismatch) {
  auto r = CheckSampleRatio({5020, 4980, 7}, {0.5, 0.5, 0});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->mismatch);
  EXPECT_EQ(r->p_value, 0.0);
  EXPECT_FALSE(r->chi2.has_value());  // infinite
  EXPECT_TRUE(AnyWarningContains(*r, "variant 2 has 7 exposed units"));
  EXPECT_TRUE(AnyWarningContains(*r, "do not trust"));
}

// Found by stats_fuzz: a weight so small that its expected count is a
// denormal made X^2 infinite, and it was reported as a number.
TEST(SampleRatioMismatch, AnInfiniteStatisticIsNullAndAMismatch) {
  auto r = CheckSampleRatio({1, 1}, {5e-324, 1});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->chi2.has_value()) << *r->chi2;
  ASSERT_TRUE(r->p_value.has_value());
  EXPECT_EQ(*r->p_value, 0.0);
  EXPECT_TRUE(r->mismatch);
}

TEST(SampleRatioMismatch, SmallExpectedCountsWarnThatPIsApproximate) {
  auto r = CheckSampleRatio({1, 3}, {1, 1});  // 2 expected per arm
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->p_value.has_value());
  EXPECT_TRUE(AnyWarningContains(*r, "only approximate"));
}

// Found by stats_fuzz: the total of the counts overflowed int64_t (and
// wrapped negative, giving negative expected counts in the warnings).
TEST(SampleRatioMismatch, CountsWhoseSumPassesInt64AreStillTested) {
  const int64_t max = std::numeric_limits<int64_t>::max();
  auto r = CheckSampleRatio({max, max}, {1, 1});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->chi2, 0.0);
  EXPECT_EQ(r->p_value, 1.0);
  EXPECT_FALSE(r->mismatch);
  EXPECT_TRUE(r->warnings.empty()) << r->warnings[0];
}

TEST(SampleRatioMismatch, RejectsBadInputWithAHint) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  struct Bad {
    std::vector<int64_t> exposed;
    std::vector<double> weights;
    double threshold;
    std::string hint;
  };
  const std::vector<Bad> bad = {
      {{10, 20}, {1, 1, 1}, 0.001, "one weight per variant"},
      {{}, {}, 0.001, "empty"},
      {{10, -1}, {1, 1}, 0.001, "exposed[1] is -1"},
      {{10, 20}, {1, -1}, 0.001, "weights[1]"},
      {{10, 20}, {nan, 1}, 0.001, "weights[0]"},
      {{10, 20}, {1, inf}, 0.001, "weights[1]"},
      {{10, 20}, {0, 0}, 0.001, "all weights are 0"},
      {{10, 20}, {1, 1}, 0, "threshold"},
      {{10, 20}, {1, 1}, 1, "threshold"},
      {{10, 20}, {1, 1}, nan, "threshold"},
  };
  for (const Bad& b : bad) {
    SCOPED_TRACE(b.hint);
    SrmOptions options;
    options.threshold = b.threshold;
    auto r = CheckSampleRatio(b.exposed, b.weights, options);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(b.hint), std::string::npos)
        << r.status();
  }
}

}  // namespace
}  // namespace stats
}  // namespace abexp
