#include "client/report/trend_chart.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

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
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

int64_t Day(const char* text) {
  const std::optional<int64_t> day = ParseDay(text);
  EXPECT_TRUE(day.has_value()) << text;
  return day.value_or(0);
}

TrendPoint Point(int64_t day, std::optional<double> estimate,
                 std::optional<Interval> fixed = std::nullopt,
                 std::optional<Interval> always_valid = std::nullopt) {
  TrendPoint p;
  p.day = day;
  p.estimate = estimate;
  p.fixed = fixed;
  p.always_valid = always_valid;
  return p;
}

TEST(Days, ParseAndFormatTheServersUtcDays) {
  EXPECT_EQ(ParseDay("1970-01-01"), 0);
  EXPECT_EQ(ParseDay("1970-02-01"), 31);
  EXPECT_EQ(ParseDay("2024-03-01").value() - ParseDay("2024-02-28").value(), 2)
      << "2024 is a leap year";
  EXPECT_EQ(FormatDay(Day("2026-11-23")), "2026-11-23");
  EXPECT_EQ(DayTickLabel(Day("2026-01-05")), "Jan 5");
  EXPECT_EQ(DayTickLabel(Day("2026-12-31")), "Dec 31");
  for (const char* bad :
       {"", "2026-13-01", "2026-1-5", "yesterday", "2026-01-05T00:00"}) {
    EXPECT_EQ(ParseDay(bad), std::nullopt) << bad;
  }
}

TEST(DayScale, OneDaySitsInTheMiddle) {
  const DayScale x = DayScale::Make(100, 100, 70, 520);
  EXPECT_DOUBLE_EQ(x(100), 295);
  EXPECT_DOUBLE_EQ(x.slot(), 450);
  EXPECT_THAT(x.ticks(), ElementsAre(100));
}

TEST(DayScale, AGapInDatesIsAGapOnTheAxis) {
  // Days 0, 1 and 5: four empty slots between the second and the third.
  const DayScale x = DayScale::Make(0, 5, 0, 600);
  EXPECT_DOUBLE_EQ(x.slot(), 100);
  EXPECT_DOUBLE_EQ(x(0), 50);
  EXPECT_DOUBLE_EQ(x(1), 150);
  EXPECT_DOUBLE_EQ(x(5), 550);
}

TEST(DayScale, TicksAreDailyForAWeekThenWeeklyThenFortnightly) {
  EXPECT_EQ(DayScale::Make(10, 16, 0, 1).step_days(), 1) << "7 days";
  EXPECT_EQ(DayScale::Make(10, 22, 0, 1).step_days(), 2) << "13 days";
  EXPECT_EQ(DayScale::Make(10, 39, 0, 1).step_days(), 7) << "30 days";
  EXPECT_THAT(DayScale::Make(10, 39, 0, 1).ticks(),
              ElementsAre(10, 17, 24, 31, 38));
  EXPECT_EQ(DayScale::Make(0, 89, 0, 1).step_days(), 14) << "90 days";
  for (int64_t span = 0; span <= 400; ++span) {
    const DayScale x = DayScale::Make(1000, 1000 + span, 0, 1);
    SCOPED_TRACE(span);
    EXPECT_LE(x.ticks().size(), 7u);
    EXPECT_GE(x.ticks().size(), 1u);
    EXPECT_EQ(x.ticks().front(), 1000);
    EXPECT_GT(x.ticks().back() + x.step_days(), 1000 + span)
        << "no room left for another tick";
  }
}

TEST(TrendLayout, OneDayIsAPointWithItsIntervalInTheMiddle) {
  TrendSpec spec;
  spec.series.push_back(
      {"treatment", {Point(Day("2026-01-05"), 0.1, Interval{0.02, 0.18})}});
  const TrendLayout l = LayoutTrend(spec);
  ASSERT_EQ(l.series.size(), 1u);
  ASSERT_EQ(l.series[0].points.size(), 1u);
  const TrendPointLayout& p = l.series[0].points[0];
  EXPECT_DOUBLE_EQ(p.x, (l.plot_left + l.plot_right) / 2);
  ASSERT_TRUE(p.y && p.fixed);
  // Pixels run downwards: the low end is below the estimate, the high above.
  EXPECT_GT(p.fixed->x1, *p.y);
  EXPECT_LT(p.fixed->x2, *p.y);
  EXPECT_DOUBLE_EQ(p.fixed->x1, l.y(0.02));
  EXPECT_DOUBLE_EQ(p.fixed->x2, l.y(0.18));
  EXPECT_FALSE(p.fixed->clipped_low || p.fixed->clipped_high);
  // Zero is on the chart although every figure is above it.
  EXPECT_LE(l.y.lo(), 0);
  EXPECT_DOUBLE_EQ(l.zero_y, l.y(0));
  EXPECT_GT(l.zero_y, p.fixed->x1);

  const std::string svg = RenderTrendSvg(spec);
  EXPECT_EQ(Count(svg, "class=\"ci-bar\""), 1u) << "a bar, not a band";
  EXPECT_EQ(Count(svg, "class=\"ci-band\""), 0u);
  EXPECT_EQ(Count(svg, "<circle class=\"marker\""), 2u) << "point, legend";
  EXPECT_THAT(svg, HasSubstr("cohort day (UTC), 2026-01-05<"));
  EXPECT_THAT(svg, HasSubstr(">Jan 5</text>"));
}

TEST(TrendLayout, AnUndefinedEstimateIsAGapInTheLine) {
  TrendSpec spec;
  spec.series.push_back(
      {"treatment",
       {Point(0, 0.1, Interval{0, 0.2}), Point(1, kNaN, Interval{-0.1, 0.3}),
        Point(2, std::nullopt), Point(3, 0.2), Point(4, 0.25)}});
  const TrendLayout l = LayoutTrend(spec);
  const TrendSeriesLayout& s = l.series[0];
  EXPECT_FALSE(s.points[1].y.has_value());
  EXPECT_FALSE(s.points[2].y.has_value());
  ASSERT_EQ(s.line_runs.size(), 2u);
  EXPECT_EQ(s.line_runs[0].begin, 0u);
  EXPECT_EQ(s.line_runs[0].end, 1u);
  EXPECT_EQ(s.line_runs[1].begin, 3u);
  EXPECT_EQ(s.line_runs[1].end, 5u);
  ASSERT_EQ(s.band_runs.size(), 1u) << "the interval of day 1 still shows";
  EXPECT_EQ(s.band_runs[0].end, 2u);
  // The label goes at the last point with an estimate.
  ASSERT_TRUE(s.label_y.has_value());
  EXPECT_NEAR(*s.label_y, *s.points[4].y + 4, 1e-9);

  const std::string svg = RenderTrendSvg(spec);
  EXPECT_EQ(Count(svg, "<g class=\"trend-line\""), 1u)
      << "day 0 alone has no line, days 3-4 one";
  EXPECT_EQ(Count(svg, "class=\"ci-band\""), 1u);
  EXPECT_THAT(svg, Not(HasSubstr("nan")));
}

TEST(TrendLayout, IntervalsThatCrossZeroStraddleTheZeroLine) {
  TrendSpec spec;
  spec.series.push_back({"treatment",
                         {Point(0, 0.05, Interval{-0.1, 0.2}),
                          Point(1, -0.02, Interval{-0.08, 0.04})}});
  const TrendLayout l = LayoutTrend(spec);
  for (const TrendPointLayout& p : l.series[0].points) {
    ASSERT_TRUE(p.fixed);
    EXPECT_GT(p.fixed->x1, l.zero_y);
    EXPECT_LT(p.fixed->x2, l.zero_y);
  }
  EXPECT_GT(*l.series[0].points[1].y, l.zero_y) << "a negative lift is below";
}

TEST(TrendLayout, UnboundedAndNaNEndsAreClippedToThePlot) {
  TrendSpec spec;
  spec.series.push_back(
      {"treatment",
       {Point(0, 0.1, Interval{0.0, kNaN}, Interval{-kInf, kInf}),
        Point(1, 0.1, Interval{0.05, 0.15}, Interval{-50, 0.3})}});
  const TrendLayout l = LayoutTrend(spec);
  EXPECT_TRUE(l.any_always_valid);
  const TrendPointLayout& p0 = l.series[0].points[0];
  EXPECT_TRUE(p0.fixed->clipped_high);
  EXPECT_DOUBLE_EQ(p0.fixed->x2, l.plot_top);
  EXPECT_TRUE(p0.always_valid->clipped_low && p0.always_valid->clipped_high);
  EXPECT_DOUBLE_EQ(p0.always_valid->x1, l.plot_bottom);
  EXPECT_DOUBLE_EQ(p0.always_valid->x2, l.plot_top);
  // -50 would squeeze the rest flat: the domain grows by at most its span
  // (0 to 0.15) below, and the end is clipped.
  EXPECT_GE(l.y.lo(), -0.4);
  EXPECT_TRUE(l.series[0].points[1].always_valid->clipped_low);
  EXPECT_FALSE(l.series[0].points[1].always_valid->clipped_high);

  const std::string svg = RenderTrendSvg(spec);
  EXPECT_EQ(Count(svg, "<g class=\"ci-always-valid\""), 2u) << "low, high";
  EXPECT_THAT(svg, HasSubstr("dashed: 95% always-valid interval"));
  EXPECT_THAT(svg, Not(HasSubstr("inf")));
}

TEST(TrendLayout, EachVariantHasItsOwnShapeAndAVariantWithoutDataIsNamed) {
  TrendSpec spec;
  spec.no_always_valid_note = "no always-valid interval for this lift";
  spec.series.push_back({"treatment", {Point(0, 0.1), Point(1, 0.12)}});
  spec.series.push_back({"b", {}});
  spec.series.push_back({"c", {Point(1, 0.12)}});
  const TrendLayout l = LayoutTrend(spec);
  EXPECT_EQ(l.series[0].shape, 0);
  EXPECT_EQ(l.series[1].shape, 1);
  EXPECT_EQ(l.series[2].shape, 2);
  EXPECT_FALSE(l.series[1].label_y.has_value());
  // Both lines end at 0.12 on day 1: their labels are kept apart.
  ASSERT_TRUE(l.series[0].label_y && l.series[2].label_y);
  EXPECT_GE(std::fabs(*l.series[0].label_y - *l.series[2].label_y), 14);

  const std::string svg = RenderTrendSvg(spec);
  EXPECT_EQ(Count(svg, "<circle class=\"marker\""), 3u) << "2 points, legend";
  // A style given keeps a variant's look across charts.
  spec.series[0].style = 3;
  EXPECT_EQ(LayoutTrend(spec).series[0].shape, 3);
  EXPECT_EQ(Count(svg, "<rect class=\"marker\""), 1u) << "b: legend only";
  EXPECT_EQ(Count(svg, "<polygon class=\"marker\""), 2u) << "c: 1 + legend";
  EXPECT_THAT(svg, HasSubstr(">b</text>"));
  EXPECT_THAT(svg, HasSubstr("no always-valid interval for this lift"));
  EXPECT_THAT(svg, Not(HasSubstr("dashed:")));
}

TEST(TrendLayout, TextIsEscaped) {
  TrendSpec spec;
  spec.title = "<script>alert(1)</script>";
  spec.series.push_back({"<b>x</b>&", {Point(0, 0.1)}});
  const std::string svg = RenderTrendSvg(spec);
  EXPECT_THAT(svg, Not(HasSubstr("<script>")));
  EXPECT_THAT(svg, Not(HasSubstr("<b>")));
  EXPECT_THAT(svg, HasSubstr("&lt;b&gt;x&lt;/b&gt;&amp;"));
}

TEST(ExposureLayout, BarsStandSideBySideInTheirDaysSlot) {
  ExposureSpec spec;
  spec.variants = {"control", "treatment"};
  spec.days = {{0, {100, 80}}, {3, {1234, 0}}};
  const ExposureLayout l = LayoutExposures(spec);
  ASSERT_EQ(l.bars.size(), 4u);
  EXPECT_GE(l.y.hi(), 1234);
  EXPECT_EQ(l.y.lo(), 0);
  for (double t : l.y.ticks()) {
    EXPECT_EQ(t, std::round(t)) << "counts have whole-number ticks";
  }
  const BarLayout& c0 = l.bars[0];
  const BarLayout& t0 = l.bars[1];
  EXPECT_EQ(c0.variant, 0u);
  EXPECT_EQ(t0.variant, 1u);
  EXPECT_DOUBLE_EQ(c0.x + c0.width, t0.x) << "side by side, control first";
  EXPECT_GE(c0.x, l.x(0) - l.x.slot() / 2);
  EXPECT_LE(t0.x + t0.width, l.x(0) + l.x.slot() / 2);
  EXPECT_DOUBLE_EQ(c0.top, l.y(100));
  EXPECT_LT(c0.top, t0.top) << "100 is taller than 80";
  // Zero exposures: a bar of no height on the axis, not a missing bar.
  EXPECT_EQ(l.bars[3].count, 0);
  EXPECT_DOUBLE_EQ(l.bars[3].top, l.plot_bottom);
  // Day 3 is three slots after day 0: days 1 and 2 are a gap.
  EXPECT_DOUBLE_EQ(l.bars[2].x - c0.x, 3 * l.x.slot());
}

TEST(ExposureLayout, NoExposuresAtAllStillHasACountAxis) {
  ExposureSpec spec;
  spec.variants = {"control", "treatment"};
  spec.days = {{7, {0, 0}}};
  const ExposureLayout l = LayoutExposures(spec);
  EXPECT_EQ(l.y.lo(), 0);
  EXPECT_EQ(l.y.hi(), 5);
  EXPECT_EQ(l.y.step(), 1);
  ASSERT_EQ(l.bars.size(), 2u);
  EXPECT_DOUBLE_EQ(l.bars[0].top, l.plot_bottom);
}

TEST(ExposureLayout, AVariantMissingFromADayHasNoBar) {
  ExposureSpec spec;
  spec.variants = {"control", "treatment", "b"};
  // Day 1 has a figure for control only; day 2 none for treatment.
  spec.days = {{1, {10}}, {2, {10, std::nullopt, 12}}};
  const ExposureLayout l = LayoutExposures(spec);
  ASSERT_EQ(l.bars.size(), 3u);
  EXPECT_EQ(l.bars[0].variant, 0u);
  EXPECT_EQ(l.bars[1].variant, 0u);
  EXPECT_EQ(l.bars[2].variant, 2u);
  // b keeps its place (third) in the slot.
  EXPECT_DOUBLE_EQ(l.bars[2].x - l.bars[1].x, 2 * l.bars[1].width);

  const std::string svg = RenderExposuresSvg(spec);
  EXPECT_EQ(Count(svg, "<rect class=\"bar\""), 3u);
  EXPECT_THAT(svg, HasSubstr("<title>1970-01-03 b: 12 units</title>"));
  EXPECT_THAT(svg, HasSubstr(">3. b</text>")) << "the legend gives bar order";
}

}  // namespace
}  // namespace abexp::report
