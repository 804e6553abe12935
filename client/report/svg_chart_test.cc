#include "client/report/svg_chart.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/report/testing/count.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace abexp::report {
namespace {

using ::abexp::report::testing::Count;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr double kInf = std::numeric_limits<double>::infinity();

// True when step is 1, 2 or 5 times a power of ten.
bool IsNiceStep(double step) {
  const double mantissa = step / std::pow(10, std::floor(std::log10(step)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (std::fabs(mantissa - m) < 1e-9) return true;
  }
  return false;
}

TEST(LinearScale, TicksAreNiceStepsThatCoverTheDataAndHitZero) {
  // Span 0.055 over at most 5 gaps: a step of 0.011 rounds up to 0.02.
  const LinearScale x = LinearScale::Nice(-0.013, 0.042, 0, 100);
  EXPECT_DOUBLE_EQ(x.step(), 0.02);
  ASSERT_EQ(x.ticks().size(), 5u);
  const std::vector<double> want = {-0.02, 0, 0.02, 0.04, 0.06};
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(x.ticks()[i], want[i], 1e-12) << i;
  }
  EXPECT_EQ(x.ticks()[1], 0.0) << "zero is a tick exactly, not 1e-18";
  EXPECT_DOUBLE_EQ(x(-0.02), 0);
  EXPECT_DOUBLE_EQ(x(0.06), 100);
  EXPECT_DOUBLE_EQ(x(0), 25);
}

TEST(LinearScale, AnyRangeGetsANiceStepAndAtMostMaxTicks) {
  std::mt19937_64 random(19);
  std::uniform_real_distribution<double> exponent(-6, 6);
  std::uniform_real_distribution<double> unit(-1, 1);
  for (int i = 0; i < 2000; ++i) {
    const double magnitude = std::pow(10, exponent(random));
    double lo = unit(random) * magnitude, hi = unit(random) * magnitude;
    if (lo > hi) std::swap(lo, hi);
    const int max_ticks = 3 + i % 8;
    const LinearScale x = LinearScale::Nice(lo, hi, 0, 1, max_ticks);
    SCOPED_TRACE(absl::StrCat("[", lo, ", ", hi, "] max ", max_ticks));
    EXPECT_LE(x.lo(), lo);
    EXPECT_GE(x.hi(), hi);
    EXPECT_TRUE(IsNiceStep(x.step())) << x.step();
    EXPECT_GE(x.ticks().size(), 2u);
    if (lo < 0 && hi > 0) {
      EXPECT_NE(std::find(x.ticks().begin(), x.ticks().end(), 0.0),
                x.ticks().end())
          << "zero is a tick";
    }
    EXPECT_LE(x.ticks().size(), static_cast<size_t>(max_ticks));
    EXPECT_NEAR(x.ticks().front(), x.lo(), x.step() * 1e-9);
    EXPECT_NEAR(x.ticks().back(), x.hi(), x.step() * 1e-9);
  }
}

TEST(LinearScale, TooFewTicksForADomainAcrossZeroAreRaisedToThree) {
  // Found by the test above: with two ticks allowed no step fits, as zero
  // must be one of them.
  const LinearScale x = LinearScale::Nice(-454.782, 71.2821, 0, 1, 2);
  EXPECT_THAT(x.ticks(), ElementsAre(-500, 0, 500));
}

TEST(LinearScale, AnEmptyOrNonFiniteDomainIsWidenedAroundItsValue) {
  const LinearScale zero = LinearScale::Nice(0, 0, 0, 10);
  EXPECT_LE(zero.lo(), -1);
  EXPECT_GE(zero.hi(), 1);
  const LinearScale five = LinearScale::Nice(5, 5, 0, 10);
  EXPECT_LT(five.lo(), 5);
  EXPECT_GT(five.hi(), 5);
  EXPECT_GE(five.lo(), 4) << "widened by a tenth, not to zero";
  const LinearScale nan =
      LinearScale::Nice(std::nan(""), kInf, 0, 10);  // both read as 0
  EXPECT_TRUE(std::isfinite(nan.lo()) && std::isfinite(nan.hi()));
  EXPECT_LT(nan.lo(), nan.hi());
}

TEST(LinearScale, TickDecimalsTellTicksApartAtTheShownScale) {
  const LinearScale x = LinearScale::Nice(-0.013, 0.042, 0, 100);  // step 0.02
  EXPECT_EQ(x.TickDecimals(1), 2);                                 // 0.02, 0.04
  EXPECT_EQ(x.TickDecimals(100), 0);                               // 2%, 4%
  const LinearScale wide = LinearScale::Nice(0, 50, 0, 100);       // step 10
  EXPECT_EQ(wide.TickDecimals(1), 0);
}

ForestSpec OneRow(ForestRow row, bool higher_is_better = true) {
  ForestSpec spec;
  spec.title = "conversion: relative lift";
  spec.higher_is_better = higher_is_better;
  spec.rows.push_back(std::move(row));
  return spec;
}

TEST(Forest, AnIntervalCrossingZeroIsNotSignificantAndStraddlesTheZeroLine) {
  const ForestSpec spec =
      OneRow({"treatment", 0.01, Interval{-0.01, 0.03}, std::nullopt, ""});
  const ForestLayout l = LayoutForest(spec);
  ASSERT_EQ(l.rows.size(), 1u);
  const ForestRowLayout& r = l.rows[0];
  EXPECT_EQ(r.verdict, Verdict::kInconclusive);
  ASSERT_TRUE(r.fixed && r.estimate_x);
  EXPECT_LT(r.fixed->x1, l.zero_x);
  EXPECT_GT(r.fixed->x2, l.zero_x);
  EXPECT_GT(*r.estimate_x, l.zero_x);
  EXPECT_LT(*r.estimate_x, r.fixed->x2);
  EXPECT_FALSE(r.fixed->clipped_low || r.fixed->clipped_high);
  EXPECT_DOUBLE_EQ(l.zero_x, l.x(0));
  EXPECT_GT(l.zero_x, l.x.start());
  EXPECT_LT(l.zero_x, l.x.end());

  const std::string svg = RenderForestSvg(spec);
  EXPECT_THAT(svg, HasSubstr("class=\"estimate inconclusive\""));
  EXPECT_THAT(svg, HasSubstr(">not significant</text>"));
  EXPECT_THAT(svg, HasSubstr("class=\"zero-line\""));
}

TEST(Forest, TheBetterSideFollowsTheMetricsDirectionInShapeAndWords) {
  const ForestRow up{"treatment", 0.02, Interval{0.01, 0.03}, std::nullopt, ""};
  const ForestLayout higher = LayoutForest(OneRow(up, true));
  EXPECT_EQ(higher.rows[0].verdict, Verdict::kBetter);
  const ForestLayout lower = LayoutForest(OneRow(up, false));
  EXPECT_EQ(lower.rows[0].verdict, Verdict::kWorse);

  const std::string better_svg = RenderForestSvg(OneRow(up, true));
  EXPECT_THAT(better_svg, HasSubstr("<polygon class=\"estimate better\""));
  EXPECT_THAT(better_svg, HasSubstr("better (higher)"));
  EXPECT_THAT(better_svg, HasSubstr("worse (lower)"));
  const std::string worse_svg = RenderForestSvg(OneRow(up, false));
  EXPECT_THAT(worse_svg, HasSubstr("<polygon class=\"estimate worse\""));
  EXPECT_THAT(worse_svg, HasSubstr("better (lower)"));
  EXPECT_THAT(worse_svg, HasSubstr("worse (higher)"));
  EXPECT_THAT(worse_svg, HasSubstr(">worse</text>"));
}

TEST(Forest, ARowWithoutAnEstimateShowsItsNoteAndNoMarker) {
  // Zero conversions in control: the relative lift is undefined.
  ForestSpec spec = OneRow({"treatment", std::nullopt, std::nullopt,
                            std::nullopt, "not defined (see the warnings)"});
  // A variant that has no data for the metric at all.
  spec.rows.push_back({"b", std::nullopt, std::nullopt, std::nullopt,
                       "no data for this metric"});
  const ForestLayout l = LayoutForest(spec);
  ASSERT_EQ(l.rows.size(), 2u);
  for (const ForestRowLayout& r : l.rows) {
    EXPECT_EQ(r.verdict, Verdict::kNoEstimate);
    EXPECT_FALSE(r.estimate_x);
    EXPECT_FALSE(r.fixed);
  }
  EXPECT_LT(l.rows[0].y, l.rows[1].y);
  const std::string svg = RenderForestSvg(spec);
  EXPECT_THAT(svg, HasSubstr(">not defined (see the warnings)</text>"));
  EXPECT_THAT(svg, HasSubstr(">no data for this metric</text>"));
  // Only the legend's three markers.
  EXPECT_EQ(Count(svg, "class=\"estimate "), 3u);
}

TEST(Forest, UnboundedAndNaNEndsAreClippedToTheEdgeWithArrows) {
  ForestSpec spec = OneRow(
      {"treatment", 0.01, Interval{-0.01, 0.03}, Interval{-kInf, kInf}, ""});
  spec.rows.push_back(
      {"b", 0.0, Interval{-0.02, 0.02}, Interval{std::nan(""), 0.05}, ""});
  const ForestLayout l = LayoutForest(spec);
  const Segment& a = *l.rows[0].always_valid;
  EXPECT_TRUE(a.clipped_low);
  EXPECT_TRUE(a.clipped_high);
  EXPECT_DOUBLE_EQ(a.x1, l.x.start());
  EXPECT_DOUBLE_EQ(a.x2, l.x.end());
  const Segment& b = *l.rows[1].always_valid;
  EXPECT_TRUE(b.clipped_low);
  EXPECT_FALSE(b.clipped_high);
  EXPECT_DOUBLE_EQ(b.x2, l.x(0.05));
  // The infinities do not stretch the scale.
  EXPECT_TRUE(std::isfinite(l.x.lo()) && std::isfinite(l.x.hi()));
  // Three arrows on the rows, one in the legend.
  EXPECT_EQ(Count(RenderForestSvg(spec), "class=\"arrow\""), 4u);
}

TEST(Forest, AVeryWideAlwaysValidIntervalIsClippedSoTheOthersKeepTheirRoom) {
  const ForestSpec spec =
      OneRow({"treatment", 0.0, Interval{-1, 1}, Interval{-100, 100}, ""});
  const ForestLayout l = LayoutForest(spec);
  // Reach: the span of zero, estimates and fixed bounds (2) on each side.
  EXPECT_GE(l.x.lo(), -4);
  EXPECT_LE(l.x.hi(), 4);
  const Segment& fixed = *l.rows[0].fixed;
  // Within [-4, 4]: at least a quarter of the width (unclipped, 1%).
  EXPECT_GE(fixed.x2 - fixed.x1, (l.x.end() - l.x.start()) / 4);
  EXPECT_TRUE(l.rows[0].always_valid->clipped_low);
  EXPECT_TRUE(l.rows[0].always_valid->clipped_high);
}

TEST(Forest, AnAlwaysValidIntervalWithinReachIsDrawnWhole) {
  const ForestSpec spec =
      OneRow({"treatment", 0.5, Interval{0, 1}, Interval{-0.5, 1.5}, ""});
  const ForestLayout l = LayoutForest(spec);
  const Segment& a = *l.rows[0].always_valid;
  EXPECT_FALSE(a.clipped_low || a.clipped_high);
  EXPECT_DOUBLE_EQ(a.x1, l.x(-0.5));
  EXPECT_DOUBLE_EQ(a.x2, l.x(1.5));
}

TEST(Forest, TickLabelsUseTheDisplayScaleAndSuffix) {
  ForestSpec spec =
      OneRow({"treatment", 0.02, Interval{0.01, 0.03}, std::nullopt, ""});
  spec.display_scale = 100;
  spec.value_suffix = "%";
  const std::string svg = RenderForestSvg(spec);
  // 0 to 0.03: a rough step of 0.006 rounds up to 0.01, shown as whole
  // percents, zero without a sign.
  EXPECT_THAT(svg, HasSubstr(">0%</text>"));
  EXPECT_THAT(svg, HasSubstr(">+1%</text>"));
  EXPECT_THAT(svg, HasSubstr(">+3%</text>"));
  EXPECT_THAT(svg, Not(HasSubstr(">+4%</text>")));
  EXPECT_THAT(svg, Not(HasSubstr(">-")));
}

TEST(Forest, TextIsEscaped) {
  ForestSpec spec = OneRow({"<script>alert(1)</script>", 0.01,
                            Interval{-0.01, 0.03}, std::nullopt, ""});
  spec.title = "a & b \"quoted\"";
  const std::string svg = RenderForestSvg(spec);
  EXPECT_THAT(svg, Not(HasSubstr("<script")));
  EXPECT_THAT(svg, HasSubstr("&lt;script&gt;"));
  EXPECT_THAT(svg, HasSubstr("<title>a &amp; b &quot;quoted&quot;</title>"));
}

TEST(Forest, TheSvgScalesByItsViewBox) {
  const ForestSpec spec =
      OneRow({"treatment", 0.01, Interval{-0.01, 0.03}, std::nullopt, ""});
  const ForestLayout l = LayoutForest(spec);
  const std::string svg = RenderForestSvg(spec);
  EXPECT_TRUE(absl::StartsWith(svg, "<svg "));
  EXPECT_TRUE(absl::EndsWith(svg, "</svg>"));
  EXPECT_THAT(svg, HasSubstr(absl::StrCat("viewBox=\"0 0 ", l.width)));
  EXPECT_THAT(svg, Not(HasSubstr(" width=\"")));
  EXPECT_GT(l.height, l.plot_bottom);
}

TEST(EscapeXml, EscapesEveryCharacterThatCanEndTextOrAnAttribute) {
  EXPECT_EQ(EscapeXml("<a href='x'>\"&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&quot;&lt;/a&gt;");
  EXPECT_EQ(EscapeXml("plain"), "plain");
}

}  // namespace
}  // namespace abexp::report
