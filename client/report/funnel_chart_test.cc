#include "client/report/funnel_chart.h"

#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/report/testing/count.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace abexp::report {
namespace {

using ::abexp::report::testing::Count;
using ::testing::HasSubstr;
using ::testing::Not;

FunnelStepValue Step(int64_t units, int64_t exposed, int64_t previous,
                     std::optional<double> lift = std::nullopt,
                     std::optional<Interval> interval = std::nullopt) {
  FunnelStepValue s;
  s.units = units;
  if (exposed > 0) s.rate = static_cast<double>(units) / exposed;
  if (previous > 0)
    s.rate_from_previous = static_cast<double>(units) / previous;
  s.lift = lift;
  s.lift_interval = interval;
  return s;
}

// control 400 -> 200 of 1000, treatment 500 -> 300 of 1000: treatment's
// payment step converts 60% of its viewers against 50% (+10 pp, interval
// [0.04, 0.16]); its view step +10 pp of exposed is not significant here.
FunnelSpec Checkout() {
  FunnelSpec spec;
  spec.title = "checkout_steps: units that reached each step";
  spec.steps = {"view_checkout", "submit_payment"};
  FunnelVariant control{"control", 0, {}};
  control.steps = {Step(400, 1000, 1000), Step(200, 1000, 400)};
  FunnelVariant treatment{"treatment", 1, {}};
  treatment.steps = {Step(500, 1000, 1000, 0.1, Interval{-0.01, 0.2}),
                     Step(300, 1000, 500, 0.1, Interval{0.04, 0.16})};
  spec.variants = {control, treatment};
  return spec;
}

TEST(FunnelLayout, BarLengthsAreProportionalToTheShareOfExposedUnits) {
  const FunnelLayout l = LayoutFunnel(Checkout());
  ASSERT_EQ(l.steps.size(), 2u);
  ASSERT_EQ(l.steps[0].bars.size(), 2u);
  // Shares 40%, 50%, 20%, 30%: the axis runs from 0 to 50%.
  EXPECT_DOUBLE_EQ(l.x.lo(), 0);
  EXPECT_DOUBLE_EQ(l.x.hi(), 0.5);
  const double full = l.plot_right - l.plot_left;
  EXPECT_DOUBLE_EQ(l.steps[0].bars[0].width, full * 0.4 / 0.5);
  EXPECT_DOUBLE_EQ(l.steps[0].bars[1].width, full);
  EXPECT_DOUBLE_EQ(l.steps[1].bars[0].width, full * 0.2 / 0.5);
  EXPECT_DOUBLE_EQ(l.steps[1].bars[1].width, full * 0.3 / 0.5);
  for (const FunnelStepLayout& s : l.steps) {
    for (const FunnelBarLayout& b : s.bars) {
      EXPECT_DOUBLE_EQ(b.x, l.plot_left);
      EXPECT_DOUBLE_EQ(b.label_x, b.x + b.width + 6)
          << "label at the bar's end";
    }
  }
}

TEST(FunnelLayout, StepsAreRowsInOrderAndBarsDoNotOverlap) {
  const FunnelLayout l = LayoutFunnel(Checkout());
  EXPECT_EQ(l.steps[0].title, "1. view_checkout");
  EXPECT_EQ(l.steps[1].title, "2. submit_payment");
  double below = l.plot_top;
  for (const FunnelStepLayout& s : l.steps) {
    EXPECT_GT(s.title_y, below);
    below = s.title_y;
    for (const FunnelBarLayout& b : s.bars) {
      EXPECT_GT(b.y, below) << "under the step's title and the bar above";
      below = b.y + b.height;
    }
  }
  EXPECT_LE(below, l.plot_bottom);
  EXPECT_GT(l.height, l.plot_bottom) << "room for the ticks and the note";
}

TEST(FunnelLayout, LabelsGiveTheShareUnitsAndTheLiftFromThePreviousStep) {
  const FunnelLayout l = LayoutFunnel(Checkout());
  const FunnelBarLayout& c = l.steps[1].bars[0];
  const FunnelBarLayout& t = l.steps[1].bars[1];
  EXPECT_EQ(c.share_label, "20.0%, 200 units");
  EXPECT_EQ(c.previous_label, "50.0%");
  EXPECT_EQ(c.lift_label, "") << "the control has no lift";
  EXPECT_EQ(t.share_label, "30.0%, 300 units");
  EXPECT_EQ(t.previous_label, "60.0%");
  EXPECT_EQ(t.lift_label, "+10.00 pp");
  EXPECT_TRUE(t.significant) << "[+4, +16] pp excludes 0";
  EXPECT_EQ(l.steps[0].bars[1].lift_label, "+10.00 pp");
  EXPECT_FALSE(l.steps[0].bars[1].significant) << "[-1, +20] pp holds 0";
}

TEST(FunnelLayout, AShareOfZeroIsAZeroLengthBarThatIsStillLabelled) {
  FunnelSpec spec = Checkout();
  spec.variants[1].steps[1] = Step(0, 1000, 500, -0.5, Interval{-0.55, -0.45});
  const FunnelLayout l = LayoutFunnel(spec);
  const FunnelBarLayout& b = l.steps[1].bars[1];
  EXPECT_DOUBLE_EQ(b.width, 0);
  EXPECT_EQ(b.share_label, "0.0%, 0 units");
  EXPECT_DOUBLE_EQ(b.label_x, l.plot_left + 6);
  EXPECT_EQ(b.lift_label, "-50.00 pp");
  EXPECT_TRUE(b.significant);
  const std::string svg = RenderFunnelSvg(spec);
  EXPECT_THAT(svg, HasSubstr("width=\"0.00\" height=\"12.00\""));
  EXPECT_THAT(svg, HasSubstr(">0.0%, 0 units</text>"));
}

TEST(FunnelLayout, AVariantMissingAStepSaysSoInPlaceOfItsBar) {
  FunnelSpec spec = Checkout();
  spec.variants[1].steps.resize(1);  // treatment has no payment figures
  FunnelVariant b{"b", 2, {std::nullopt, Step(250, 1000, 450)}};
  spec.variants.push_back(b);
  const FunnelLayout l = LayoutFunnel(spec);
  ASSERT_EQ(l.steps[1].bars.size(), 3u) << "every variant keeps its row";
  EXPECT_DOUBLE_EQ(l.steps[1].bars[1].width, 0);
  EXPECT_EQ(l.steps[1].bars[1].share_label, "no figures for this step");
  EXPECT_EQ(l.steps[1].bars[1].previous_label, "");
  EXPECT_FALSE(l.steps[1].bars[1].has_figures);
  EXPECT_TRUE(l.steps[1].bars[2].has_figures);
  EXPECT_EQ(l.steps[0].bars[2].share_label, "no figures for this step");
  EXPECT_EQ(l.steps[1].bars[2].share_label, "25.0%, 250 units");
  // Each variant keeps its shape: the style given, not the row.
  EXPECT_EQ(l.steps[1].bars[2].shape, 2);
  const std::string svg = RenderFunnelSvg(spec);
  EXPECT_EQ(Count(svg, ">no figures for this step</text>"), 2u);
  EXPECT_EQ(Count(svg, "<rect class=\"funnel-bar\""), 4u) << "6 less 2";
  EXPECT_EQ(Count(svg, ">b</text>"), 2u) << "named in both rows";
}

TEST(FunnelLayout, EightStepsAllFitInOrder) {
  FunnelSpec spec;
  spec.title = "eight";
  FunnelVariant control{"control", 0, {}};
  FunnelVariant treatment{"treatment", 1, {}};
  int64_t previous = 1000;
  for (int k = 0; k < 8; ++k) {
    spec.steps.push_back(absl::StrCat("step_", k + 1));
    const int64_t units = 900 - 100 * k;
    control.steps.push_back(Step(units, 1000, previous));
    treatment.steps.push_back(Step(units + 50, 1000, previous + 50));
    previous = units;
  }
  spec.variants = {control, treatment};
  const FunnelLayout l = LayoutFunnel(spec);
  ASSERT_EQ(l.steps.size(), 8u);
  EXPECT_EQ(l.steps[7].title, "8. step_8");
  EXPECT_DOUBLE_EQ(l.x.hi(), 1) << "the largest share is 95%";
  double below = 0;
  for (const FunnelStepLayout& s : l.steps) {
    EXPECT_GT(s.title_y, below);
    for (const FunnelBarLayout& b : s.bars) {
      EXPECT_GE(b.y, s.title_y);
      below = b.y + b.height;
    }
  }
  EXPECT_LE(below, l.plot_bottom);
  EXPECT_LT(l.plot_bottom, l.height);
  // Narrowing: each step's bars are shorter than the step's above.
  for (size_t k = 1; k < 8; ++k) {
    EXPECT_LT(l.steps[k].bars[0].width, l.steps[k - 1].bars[0].width);
  }
  EXPECT_EQ(Count(RenderFunnelSvg(spec), "<g class=\"funnel-step\">"), 8u);
}

TEST(FunnelLayout, ZeroExposedUnitsDrawNoBarsAndSayWhy) {
  FunnelSpec spec = Checkout();
  for (FunnelVariant& v : spec.variants) {
    for (std::optional<FunnelStepValue>& s : v.steps) {
      *s = Step(0, 0, 0);
    }
  }
  const FunnelLayout l = LayoutFunnel(spec);
  EXPECT_DOUBLE_EQ(l.x.lo(), 0);
  EXPECT_DOUBLE_EQ(l.x.hi(), 1) << "no share: the axis runs to 100%";
  for (const FunnelStepLayout& s : l.steps) {
    for (const FunnelBarLayout& b : s.bars) {
      EXPECT_DOUBLE_EQ(b.width, 0);
      EXPECT_EQ(b.share_label, "no exposed units, 0 units");
      EXPECT_EQ(b.previous_label, "-");
      EXPECT_EQ(b.lift_label, "");
    }
  }
  const std::string svg = RenderFunnelSvg(spec);
  EXPECT_THAT(svg, Not(HasSubstr("nan")));
  EXPECT_THAT(svg, Not(HasSubstr("inf")));
}

TEST(FunnelLayout, ANonFiniteOrOutOfRangeShareStaysInsideThePlot) {
  FunnelSpec spec = Checkout();
  spec.variants[0].steps[0]->rate = std::numeric_limits<double>::quiet_NaN();
  spec.variants[1].steps[0]->rate = 1.5;
  const FunnelLayout l = LayoutFunnel(spec);
  EXPECT_EQ(l.steps[0].bars[0].share_label, "no exposed units, 400 units");
  EXPECT_DOUBLE_EQ(l.steps[0].bars[1].width, l.plot_right - l.plot_left);
}

TEST(FunnelSvg, EachBarHasItsVariantsShapeNameAndColour) {
  const std::string svg = RenderFunnelSvg(Checkout());
  EXPECT_EQ(svg.rfind("<svg class=\"funnel\"", 0), 0u);
  EXPECT_THAT(svg, HasSubstr("<title>checkout_steps: units that reached each "
                             "step</title>"));
  EXPECT_EQ(Count(svg, "<rect class=\"funnel-bar\""), 4u);
  // Two steps: control's circles and treatment's squares, each by its name.
  EXPECT_EQ(Count(svg, "<circle class=\"marker\""), 2u);
  EXPECT_EQ(Count(svg, "<rect class=\"marker\""), 2u);
  EXPECT_EQ(Count(svg, ">control</text>"), 2u);
  EXPECT_EQ(Count(svg, ">treatment</text>"), 2u);
  EXPECT_EQ(Count(svg, "fill=\"#1f5fa8\""), 4u) << "control's colour";
  EXPECT_EQ(Count(svg, "fill=\"#c2410c\""), 4u) << "treatment's colour";
  EXPECT_THAT(svg, HasSubstr("<title>treatment, step 2. submit_payment: "
                             "30.0%, 300 units</title>"));
  // Only the payment step's lift is significant: bold and starred.
  EXPECT_EQ(Count(svg, "lift-significant"), 1u);
  EXPECT_THAT(svg, HasSubstr(">+10.00 pp *</text>"));
  EXPECT_THAT(svg, HasSubstr(">+10.00 pp</text>"));
  EXPECT_THAT(svg, HasSubstr("* the lift&#39;s 95% interval excludes 0"));
  EXPECT_THAT(svg, HasSubstr(">50%</text>")) << "the axis's last tick";
}

TEST(FunnelSvg, HostileEventAndVariantNamesAreEscaped) {
  FunnelSpec spec = Checkout();
  spec.title = "<script>t</script>";
  spec.steps[0] = "<img src=x onerror=alert(1)>";
  spec.variants[1].label = "\"><b>v</b>";
  const std::string svg = RenderFunnelSvg(spec);
  EXPECT_THAT(svg, Not(HasSubstr("<script")));
  EXPECT_THAT(svg, Not(HasSubstr("<img")));
  EXPECT_THAT(svg, Not(HasSubstr("<b>")));
  EXPECT_THAT(svg, HasSubstr("1. &lt;img src=x onerror=alert(1)&gt;</text>"));
  EXPECT_THAT(svg, HasSubstr("<title>&quot;&gt;&lt;b&gt;v&lt;/b&gt;, step 1. "
                             "&lt;img"));
}

}  // namespace
}  // namespace abexp::report
