#include "client/report/funnel_chart.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/report/svg_parts.h"

namespace abexp::report {
namespace {

// The frame, in viewBox units. Left of the bars the variants' names, right
// of the longest bar room for its label, then the two columns about the
// previous step.
constexpr double kWidth = 700;
constexpr double kMarkerX = 16;
constexpr double kNameX = 26;
constexpr double kPlotLeft = 120;
constexpr double kPlotRight = 390;
constexpr double kPreviousX = 540;
constexpr double kLiftX = 596;
constexpr double kTop = 38;  // under the two lines of column heads
constexpr double kStepTitle = 20;
constexpr double kBarHeight = 12;
constexpr double kBarPitch = 18;
constexpr double kStepGap = 8;
constexpr double kLabelGap = 6;
constexpr size_t kMaxNameChars = 12;
constexpr size_t kMaxStepChars = 60;

bool Finite(const std::optional<double>& v) {
  return v.has_value() && std::isfinite(*v);
}

std::string Percent(double share) {
  return absl::StrFormat("%.1f%%", share * 100);
}

std::string Units(int64_t units) {
  return absl::StrCat(units, units == 1 ? " unit" : " units");
}

bool ExcludesZero(const std::optional<Interval>& in) {
  return in.has_value() && (in->low > 0 || in->high < 0);
}

}  // namespace

FunnelLayout LayoutFunnel(const FunnelSpec& spec) {
  double most = 0;
  for (const FunnelVariant& v : spec.variants) {
    for (const std::optional<FunnelStepValue>& s : v.steps) {
      if (s && Finite(s->rate)) most = std::max(most, std::min(*s->rate, 1.0));
    }
  }
  FunnelLayout layout{
      kWidth,
      0,
      LinearScale::Nice(0, most > 0 ? most : 1, kPlotLeft, kPlotRight),
      kPlotLeft,
      kPlotRight,
      kTop,
      0,
      kPreviousX,
      kLiftX,
      {}};
  double y = kTop;
  for (size_t k = 0; k < spec.steps.size(); ++k) {
    FunnelStepLayout step;
    step.title =
        absl::StrCat(k + 1, ". ", ShortenLabel(spec.steps[k], kMaxStepChars));
    step.title_y = y + 14;
    y += kStepTitle;
    for (size_t i = 0; i < spec.variants.size(); ++i) {
      const FunnelVariant& v = spec.variants[i];
      FunnelBarLayout bar;
      bar.variant = i;
      bar.y = y;
      bar.x = kPlotLeft;
      bar.height = kBarHeight;
      bar.centre_y = y + kBarHeight / 2;
      bar.shape = v.style >= 0 ? v.style : static_cast<int>(i);
      const FunnelStepValue* value =
          k < v.steps.size() && v.steps[k] ? &*v.steps[k] : nullptr;
      if (value == nullptr) {
        bar.has_figures = false;
        bar.share_label = "no figures for this step";
      } else if (!Finite(value->rate)) {
        bar.share_label =
            absl::StrCat("no exposed units, ", Units(value->units));
      } else {
        const double share = std::clamp(*value->rate, 0.0, 1.0);
        bar.width = layout.x(share) - layout.x(0);
        bar.share_label =
            absl::StrCat(Percent(*value->rate), ", ", Units(value->units));
      }
      bar.label_x = bar.x + bar.width + kLabelGap;
      if (value != nullptr) {
        bar.previous_label = Finite(value->rate_from_previous)
                                 ? Percent(*value->rate_from_previous)
                                 : "-";
        if (Finite(value->lift)) {
          bar.lift_label = absl::StrFormat("%+.2f pp", *value->lift * 100);
          bar.significant = ExcludesZero(value->lift_interval);
        }
      }
      step.bars.push_back(std::move(bar));
      y += kBarPitch;
    }
    y += kStepGap;
    layout.steps.push_back(std::move(step));
  }
  layout.plot_bottom = y;
  layout.height = y + 62;
  return layout;
}

std::string RenderFunnelSvg(const FunnelSpec& spec) {
  const FunnelLayout l = LayoutFunnel(spec);
  std::string svg = SvgOpen("funnel", l.width, l.height, spec.title);
  absl::StrAppend(
      &svg,
      SvgText((l.plot_left + l.plot_right) / 2, 14, "middle", "column-head",
              "share of exposed units", 12),
      SvgText(l.previous_x, 14, "start", "column-head",
              "from the previous step", 12),
      SvgText(l.previous_x, 30, "start", "column-head", "share", 12),
      SvgText(l.lift_x, 30, "start", "column-head", "lift vs control", 12));
  const int decimals = l.x.TickDecimals(100);
  std::vector<SvgTick> ticks;
  for (double t : l.x.ticks()) {
    ticks.push_back({l.x(t), absl::StrFormat("%.*f%%", decimals, t * 100)});
  }
  absl::StrAppend(&svg, SvgTickGrid(ticks, l.plot_top, l.plot_bottom));
  for (size_t k = 0; k < l.steps.size(); ++k) {
    const FunnelStepLayout& step = l.steps[k];
    absl::StrAppend(
        &svg, "<g class=\"funnel-step\">",
        SvgText(10, step.title_y, "start", "step-title", step.title, 13));
    for (const FunnelBarLayout& b : step.bars) {
      const FunnelVariant& v = spec.variants[b.variant];
      const char* colour = VariantColour(static_cast<size_t>(b.shape));
      absl::StrAppend(&svg,
                      VariantMarker(b.shape, kMarkerX, b.centre_y, colour),
                      SvgText(kNameX, b.centre_y + 4, "start", "variant-label",
                              ShortenLabel(v.label, kMaxNameChars), 11));
      if (b.has_figures) {
        absl::StrAppend(&svg, "<rect class=\"funnel-bar\" x=\"", SvgNum(b.x),
                        "\" y=\"", SvgNum(b.y), "\" width=\"", SvgNum(b.width),
                        "\" height=\"", SvgNum(b.height), "\" fill=\"", colour,
                        "\"><title>", EscapeXml(v.label), ", step ",
                        EscapeXml(step.title), ": ", EscapeXml(b.share_label),
                        "</title></rect>");
      }
      absl::StrAppend(&svg,
                      SvgText(b.label_x, b.centre_y + 4, "start",
                              b.has_figures ? "share-label" : "no-figures",
                              b.share_label, 11));
      if (!b.previous_label.empty()) {
        absl::StrAppend(&svg, SvgText(l.previous_x, b.centre_y + 4, "start",
                                      "previous-label", b.previous_label, 11));
      }
      if (!b.lift_label.empty()) {
        // A significant lift: bold and starred, so it stands out in print.
        absl::StrAppend(
            &svg, b.significant ? "<g font-weight=\"700\">" : "<g>",
            SvgText(
                l.lift_x, b.centre_y + 4, "start",
                b.significant ? "lift-label lift-significant" : "lift-label",
                b.significant ? absl::StrCat(b.lift_label, " *") : b.lift_label,
                11),
            "</g>");
      }
    }
    absl::StrAppend(&svg, "</g>");
  }
  absl::StrAppend(
      &svg, SvgAxisLine(l.plot_left, l.plot_right, l.plot_bottom),
      SvgText((l.plot_left + l.plot_right) / 2, l.plot_bottom + 32, "middle",
              "axis-title", "share of the variant's exposed units", 12),
      SvgText(10, l.plot_bottom + 52, "start", "note",
              absl::StrCat("* the lift's ", spec.confidence,
                           " interval excludes 0 (unadjusted)"),
              12),
      "</svg>");
  return svg;
}

}  // namespace abexp::report
