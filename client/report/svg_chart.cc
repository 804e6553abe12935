#include "client/report/svg_chart.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/report/svg_parts.h"

namespace abexp::report {
namespace {

// The forest plot's frame, in viewBox units. 640 wide reads well from a
// phone (scaled down) to a wide screen (scaled up, capped by the page).
constexpr double kWidth = 640;
constexpr double kLabelRight = 150;  // variant labels end here
constexpr double kPlotLeft = 165;
constexpr double kPlotRight = 600;  // room for the last tick's label
constexpr double kTop = 12;
constexpr double kRowHeight = 46;
constexpr double kFooter = 92;  // axis labels, direction, legend
constexpr size_t kMaxLabelChars = 20;

// The colours only repeat what shapes and words already say.
constexpr char kBetterColour[] = "#1a7f37";
constexpr char kWorseColour[] = "#b42318";

// 1, 2 or 5 times a power of ten, at least `rough`.
double NiceStep(double rough) {
  const double power = std::pow(10, std::floor(std::log10(rough)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * power >= rough * (1 - 1e-9)) return m * power;
  }
  return 10 * power;
}

const char* ColourOf(Verdict v) {
  switch (v) {
    case Verdict::kBetter:
      return kBetterColour;
    case Verdict::kWorse:
      return kWorseColour;
    default:
      return kNeutralColour;
  }
}

const char* ClassOf(Verdict v) {
  switch (v) {
    case Verdict::kBetter:
      return "better";
    case Verdict::kWorse:
      return "worse";
    case Verdict::kInconclusive:
      return "inconclusive";
    case Verdict::kNoEstimate:
      return "none";
  }
  return "none";
}

Verdict VerdictOf(const ForestRow& row, bool higher_is_better) {
  if (!row.estimate || !std::isfinite(*row.estimate)) {
    return Verdict::kNoEstimate;
  }
  if (!row.fixed) return Verdict::kInconclusive;
  // NaN ends compare false: an interval with one is never significant.
  const bool above = row.fixed->low > 0;
  const bool below = row.fixed->high < 0;
  if (!above && !below) return Verdict::kInconclusive;
  return above == higher_is_better ? Verdict::kBetter : Verdict::kWorse;
}

// The estimate's marker: a triangle pointing up (better) or down (worse), a
// hollow circle when not significant.
std::string Marker(double cx, double cy, Verdict v) {
  const char* colour = ColourOf(v);
  if (v == Verdict::kBetter || v == Verdict::kWorse) {
    const double tip = v == Verdict::kBetter ? cy - 8 : cy + 8;
    const double base = v == Verdict::kBetter ? cy + 6 : cy - 6;
    return absl::StrCat("<polygon class=\"estimate ", ClassOf(v),
                        "\" points=\"", SvgNum(cx), ",", SvgNum(tip), " ",
                        SvgNum(cx - 7), ",", SvgNum(base), " ", SvgNum(cx + 7),
                        ",", SvgNum(base), "\" fill=\"", colour, "\" stroke=\"",
                        kInk, "\" stroke-width=\"1\"/>");
  }
  return absl::StrCat("<circle class=\"estimate inconclusive\" cx=\"",
                      SvgNum(cx), "\" cy=\"", SvgNum(cy),
                      "\" r=\"6\" fill=\"#fff\" stroke=\"", colour,
                      "\" stroke-width=\"2.5\"/>");
}

// An arrowhead at x pointing left (dir -1) or right (+1).
std::string Arrow(double x, double y, int dir, const char* colour) {
  return absl::StrCat("<polygon class=\"arrow\" points=\"", SvgNum(x + 7 * dir),
                      ",", SvgNum(y), " ", SvgNum(x - 2 * dir), ",",
                      SvgNum(y - 6), " ", SvgNum(x - 2 * dir), ",",
                      SvgNum(y + 6), "\" fill=\"", colour, "\"/>");
}

std::string DrawSegment(const Segment& s, double y, const char* cls,
                        const char* colour, double width, const char* dash) {
  std::string out =
      SvgLine(s.x1, y, s.x2, y, cls,
              absl::StrCat("stroke=\"", colour, "\" stroke-width=\"", width,
                           "\"", dash));
  if (s.clipped_low) absl::StrAppend(&out, Arrow(s.x1, y, -1, colour));
  if (s.clipped_high) absl::StrAppend(&out, Arrow(s.x2, y, +1, colour));
  return out;
}

}  // namespace

std::string EscapeXml(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

LinearScale::LinearScale(double lo, double hi, double start, double end,
                         double step)
    : lo_(lo), hi_(hi), start_(start), end_(end), step_(step) {
  const long n = std::lround((hi - lo) / step);
  for (long i = 0; i <= n; ++i) {
    double t = lo + static_cast<double>(i) * step;
    // Multiples of the step land exactly on zero, not on 1e-17.
    if (std::fabs(t) < step * 1e-9) t = 0;
    ticks_.push_back(t);
  }
}

LinearScale LinearScale::Nice(double lo, double hi, double start, double end,
                              int max_ticks) {
  if (!std::isfinite(lo)) lo = 0;
  if (!std::isfinite(hi)) hi = 0;
  if (lo > hi) std::swap(lo, hi);
  if (lo == hi) {
    const double pad = lo == 0 ? 1 : std::fabs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  // Ticks are multiples of the step, so a domain that spans zero needs at
  // least three: one each side and zero.
  max_ticks = std::max(max_ticks, 3);
  double step = NiceStep((hi - lo) / (max_ticks - 1));
  double nice_lo = std::floor(lo / step) * step;
  double nice_hi = std::ceil(hi / step) * step;
  // Widening to the ticks can add one: take the next step up then.
  while (std::lround((nice_hi - nice_lo) / step) + 1 > max_ticks) {
    step = NiceStep(step * 1.01);
    nice_lo = std::floor(lo / step) * step;
    nice_hi = std::ceil(hi / step) * step;
  }
  return LinearScale(nice_lo, nice_hi, start, end, step);
}

double LinearScale::operator()(double x) const {
  return start_ + (x - lo_) / (hi_ - lo_) * (end_ - start_);
}

int LinearScale::TickDecimals(double scale) const {
  const double shown = step_ * std::fabs(scale);
  if (!(shown > 0)) return 0;
  return std::clamp(static_cast<int>(std::ceil(-std::log10(shown) - 1e-9)), 0,
                    9);
}

Segment PlaceInterval(const LinearScale& x, const Interval& in) {
  Segment s;
  const bool low_in = std::isfinite(in.low) && in.low >= x.lo();
  const bool high_in = std::isfinite(in.high) && in.high <= x.hi();
  s.clipped_low = !low_in;
  s.clipped_high = !high_in;
  s.x1 = low_in ? x(std::min(in.low, x.hi())) : x(x.lo());
  s.x2 = high_in ? x(std::max(in.high, x.lo())) : x(x.hi());
  return s;
}

std::pair<double, double> LiftDomain(const std::vector<double>& core,
                                     const std::vector<double>& reaching) {
  double lo = 0, hi = 0;
  auto widen = [&](double v) {
    if (!std::isfinite(v)) return;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  };
  for (double v : core) widen(v);
  // An early always-valid interval can be many times wider than the rest,
  // and would squeeze it into a few pixels.
  const double reach =
      hi > lo ? hi - lo : std::numeric_limits<double>::infinity();
  for (double v : reaching) {
    if (std::isfinite(v)) widen(std::clamp(v, lo - reach, hi + reach));
  }
  return {lo, hi};
}

const char* VerdictWord(Verdict verdict) {
  switch (verdict) {
    case Verdict::kBetter:
      return "better";
    case Verdict::kWorse:
      return "worse";
    case Verdict::kInconclusive:
      return "not significant";
    case Verdict::kNoEstimate:
      return "no estimate";
  }
  return "no estimate";
}

ForestLayout LayoutForest(const ForestSpec& spec) {
  std::vector<double> core, reaching;
  for (const ForestRow& row : spec.rows) {
    if (row.estimate) core.push_back(*row.estimate);
    if (row.fixed) {
      core.push_back(row.fixed->low);
      core.push_back(row.fixed->high);
    }
    if (row.always_valid) {
      reaching.push_back(row.always_valid->low);
      reaching.push_back(row.always_valid->high);
    }
  }
  const auto [lo, hi] = LiftDomain(core, reaching);

  const double rows =
      static_cast<double>(std::max<size_t>(spec.rows.size(), 1));
  ForestLayout layout{kWidth,
                      kTop + rows * kRowHeight + kFooter,
                      LinearScale::Nice(lo, hi, kPlotLeft, kPlotRight),
                      0,
                      kTop,
                      kTop + rows * kRowHeight,
                      {}};
  layout.zero_x = layout.x(0);
  for (size_t i = 0; i < spec.rows.size(); ++i) {
    const ForestRow& row = spec.rows[i];
    ForestRowLayout r;
    r.y = kTop + (static_cast<double>(i) + 0.5) * kRowHeight;
    r.verdict = VerdictOf(row, spec.higher_is_better);
    if (r.verdict != Verdict::kNoEstimate)
      r.estimate_x = layout.x(*row.estimate);
    if (row.fixed) r.fixed = PlaceInterval(layout.x, *row.fixed);
    if (row.always_valid)
      r.always_valid = PlaceInterval(layout.x, *row.always_valid);
    layout.rows.push_back(r);
  }
  return layout;
}

std::string RenderForestSvg(const ForestSpec& spec) {
  const ForestLayout l = LayoutForest(spec);
  std::string svg = SvgOpen("forest", l.width, l.height, spec.title);

  // Grid and tick labels.
  const int decimals = l.x.TickDecimals(spec.display_scale);
  std::vector<SvgTick> ticks;
  for (double t : l.x.ticks()) {
    ticks.push_back({l.x(t), SvgTickLabel(t, decimals, spec.display_scale,
                                          spec.value_suffix)});
  }
  absl::StrAppend(
      &svg, SvgTickGrid(ticks, l.plot_top, l.plot_bottom),
      SvgAxisLine(kPlotLeft, kPlotRight, l.plot_bottom),
      SvgLine(l.zero_x, l.plot_top - 4, l.zero_x, l.plot_bottom, "zero-line",
              absl::StrCat("stroke=\"", kInk, "\" stroke-width=\"2\"")));

  for (size_t i = 0; i < l.rows.size(); ++i) {
    const ForestRowLayout& r = l.rows[i];
    const ForestRow& row = spec.rows[i];
    absl::StrAppend(&svg, "<g class=\"row ", ClassOf(r.verdict), "\"><title>",
                    EscapeXml(row.label), ": ", VerdictWord(r.verdict),
                    "</title>");
    absl::StrAppend(&svg, SvgText(kLabelRight, r.y - 3, "end", "label",
                                  ShortenLabel(row.label, kMaxLabelChars)));
    absl::StrAppend(&svg, SvgText(kLabelRight, r.y + 13, "end", "verdict",
                                  VerdictWord(r.verdict), 11));
    if (r.always_valid) {
      absl::StrAppend(
          &svg, DrawSegment(*r.always_valid, r.y + 10, "ci-always-valid",
                            kNeutralColour, 1.5, " stroke-dasharray=\"5 3\""));
    }
    if (r.fixed) {
      absl::StrAppend(&svg, DrawSegment(*r.fixed, r.y, "ci-fixed",
                                        ColourOf(r.verdict), 4, ""));
    }
    if (r.estimate_x) {
      absl::StrAppend(&svg, Marker(*r.estimate_x, r.y, r.verdict));
    } else {
      absl::StrAppend(&svg, SvgText(kPlotLeft + 6, r.y + 4, "start", "missing",
                                    row.missing_note.empty() ? "no estimate"
                                                             : row.missing_note,
                                    12));
    }
    absl::StrAppend(&svg, "</g>");
  }

  // Which side is better, in words and arrows.
  const double dir_y = l.plot_bottom + 36;
  const char* left = spec.higher_is_better ? "\xE2\x97\x80 worse (lower)"
                                           : "\xE2\x97\x80 better (lower)";
  const char* right = spec.higher_is_better ? "better (higher) \xE2\x96\xB6"
                                            : "worse (higher) \xE2\x96\xB6";
  absl::StrAppend(&svg,
                  SvgText(kPlotLeft, dir_y, "start", "direction", left, 12),
                  SvgText(kPlotRight, dir_y, "end", "direction", right, 12));

  // The legend.
  const double ly = l.plot_bottom + 60;
  absl::StrAppend(
      &svg, "<g class=\"legend\"><line x1=\"10\" y1=\"", SvgNum(ly),
      "\" x2=\"40\" y2=\"", SvgNum(ly), "\" stroke=\"", kNeutralColour,
      "\" stroke-width=\"4\"/>",
      SvgText(46, ly + 4, "start", "legend-text",
              absl::StrCat(spec.confidence, " interval (fixed horizon)"), 12),
      "<line x1=\"250\" y1=\"", SvgNum(ly), "\" x2=\"280\" y2=\"", SvgNum(ly),
      "\" stroke=\"", kNeutralColour,
      "\" stroke-width=\"1.5\" stroke-dasharray=\"5 3\"/>",
      SvgText(286, ly + 4, "start", "legend-text",
              absl::StrCat(spec.confidence, " always-valid interval"), 12));
  const double my = ly + 22;
  absl::StrAppend(
      &svg, Marker(16, my, Verdict::kBetter),
      SvgText(28, my + 4, "start", "legend-text", "better", 12),
      Marker(96, my, Verdict::kWorse),
      SvgText(108, my + 4, "start", "legend-text", "worse", 12),
      Marker(170, my, Verdict::kInconclusive),
      SvgText(182, my + 4, "start", "legend-text", "not significant", 12),
      Arrow(300, my, +1, kNeutralColour),
      SvgText(312, my + 4, "start", "legend-text",
              "interval goes on beyond the chart", 12),
      "</g></svg>");
  return svg;
}

}  // namespace abexp::report
