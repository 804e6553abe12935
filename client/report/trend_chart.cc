#include "client/report/trend_chart.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/civil_time.h"
#include "client/report/svg_parts.h"

namespace abexp::report {
namespace {

// The frame, in viewBox units, as wide as the forest plot's so the charts
// line up; the y tick labels sit left of the plot, the end labels right.
constexpr double kWidth = 640;
constexpr double kPlotLeft = 70;
constexpr double kPlotRight = 520;
constexpr double kTop = 14;
constexpr double kPlotHeight = 220;
constexpr double kLegendItemWidth = 150;
constexpr int kLegendPerRow = 4;
constexpr size_t kMaxLabelChars = 14;
constexpr double kLabelGap = 14;  // between end labels' baselines

const absl::CivilDay kEpoch(1970, 1, 1);

// The maximal runs of consecutive indexes below `n` where `has` holds.
std::vector<Run> RunsOf(size_t n, const std::function<bool(size_t)>& has) {
  std::vector<Run> runs;
  for (size_t i = 0; i < n; ++i) {
    if (!has(i)) continue;
    if (!runs.empty() && runs.back().end == i) {
      runs.back().end = i + 1;
    } else {
      runs.push_back(Run{i, i + 1});
    }
  }
  return runs;
}

bool Finite(const std::optional<double>& v) {
  return v.has_value() && std::isfinite(*v);
}

std::string Polyline(const std::vector<std::pair<double, double>>& pts,
                     const std::string& attributes) {
  std::string out = "<polyline points=\"";
  for (const auto& [x, y] : pts) {
    absl::StrAppend(&out, SvgNum(x), ",", SvgNum(y), " ");
  }
  out.pop_back();
  return absl::StrCat(out, "\" fill=\"none\" ", attributes, "/>");
}

// The day ticks and labels under a plot, and the axis line.
std::string DayAxis(const DayScale& x, double left, double right, double top,
                    double bottom) {
  std::vector<SvgTick> ticks;
  for (int64_t t : x.ticks()) ticks.push_back({x(t), DayTickLabel(t)});
  std::string out = absl::StrCat(SvgTickGrid(ticks, top, bottom),
                                 SvgAxisLine(left, right, bottom));
  const std::string span =
      x.first() == x.last()
          ? FormatDay(x.first())
          : absl::StrCat(FormatDay(x.first()), " to ", FormatDay(x.last()));
  absl::StrAppend(
      &out, SvgText((left + right) / 2, bottom + 33, "middle", "axis-title",
                    absl::StrCat("cohort day (UTC), ", span), 12));
  return out;
}

// The y ticks left of a plot, as grid lines with labels.
std::string ValueAxis(const LinearScale& y, double left, double right,
                      const std::function<std::string(double)>& label) {
  std::string out;
  for (double t : y.ticks()) {
    absl::StrAppend(&out,
                    SvgLine(left, y(t), right, y(t), "grid",
                            absl::StrCat("stroke=\"", kGrid, "\"")),
                    SvgText(left - 6, y(t) + 4, "end", "tick", label(t), 12));
  }
  return out;
}

// A legend entry: `swatch` drawn at (x, y) and its text after it.
std::string LegendItem(const std::string& swatch, double x, double y,
                       absl::string_view text) {
  return absl::StrCat(swatch,
                      SvgText(x + 12, y + 4, "start", "legend-text", text, 12));
}

// Appends the legend entries item(0, x, y) .. item(count - 1, x, y) to
// *svg, kLegendPerRow to a row from (10, y); returns the last row's y.
double AppendLegendRows(
    size_t count, double y,
    const std::function<std::string(size_t, double, double)>& item,
    std::string* svg) {
  for (size_t i = 0; i < count; ++i) {
    const double x =
        10 + kLegendItemWidth * static_cast<double>(i % kLegendPerRow);
    if (i > 0 && i % kLegendPerRow == 0) y += 22;
    absl::StrAppend(svg, item(i, x, y));
  }
  return y;
}

double LegendRows(size_t items) {
  return static_cast<double>((std::max<size_t>(items, 1) + kLegendPerRow - 1) /
                             kLegendPerRow);
}

}  // namespace

std::optional<int64_t> ParseDay(absl::string_view text) {
  absl::CivilDay day;
  // ParseCivilTime also takes years of other widths; the server's days are
  // exactly "YYYY-MM-DD".
  if (text.size() != 10 || !absl::ParseCivilTime(text, &day)) {
    return std::nullopt;
  }
  return day - kEpoch;
}

std::string FormatDay(int64_t day) {
  return absl::FormatCivilTime(kEpoch + day);
}

std::string DayTickLabel(int64_t day) {
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr",
                                            "May", "Jun", "Jul", "Aug",
                                            "Sep", "Oct", "Nov", "Dec"};
  const absl::CivilDay d = kEpoch + day;
  return absl::StrCat(kMonths[d.month() - 1], " ", d.day());
}

DayScale::DayScale(int64_t first, int64_t last, double start, double slot,
                   int64_t step)
    : first_(first), last_(last), start_(start), slot_(slot), step_(step) {
  for (int64_t t = first; t <= last; t += step) ticks_.push_back(t);
}

DayScale DayScale::Make(int64_t first, int64_t last, double start, double end,
                        int max_ticks) {
  max_ticks = std::max(max_ticks, 2);
  const int64_t span = last - first;
  int64_t step = 1;
  for (int64_t candidate : {1, 2, 3, 7}) {
    step = candidate;
    if (span / step + 1 <= max_ticks) break;
  }
  while (span / step + 1 > max_ticks) {
    step = step < 14 ? 14 : step + 14;
  }
  const double slot = (end - start) / static_cast<double>(span + 1);
  return DayScale(first, last, start, slot, step);
}

double DayScale::operator()(int64_t day) const {
  return start_ + (static_cast<double>(day - first_) + 0.5) * slot_;
}

TrendLayout LayoutTrend(const TrendSpec& spec) {
  std::vector<double> core, reaching;
  std::optional<int64_t> first, last;
  for (const TrendSeries& s : spec.series) {
    for (const TrendPoint& p : s.points) {
      first = std::min(first.value_or(p.day), p.day);
      last = std::max(last.value_or(p.day), p.day);
      if (Finite(p.estimate)) core.push_back(*p.estimate);
      if (p.fixed) core.insert(core.end(), {p.fixed->low, p.fixed->high});
      if (p.always_valid) {
        reaching.insert(reaching.end(),
                        {p.always_valid->low, p.always_valid->high});
      }
    }
  }
  const auto [lo, hi] = LiftDomain(core, reaching);
  const double bottom = kTop + kPlotHeight;
  const double legend_rows = LegendRows(spec.series.size()) + 1;
  TrendLayout layout{kWidth,
                     bottom + 62 + legend_rows * 22,
                     DayScale::Make(first.value_or(0), last.value_or(0),
                                    kPlotLeft, kPlotRight),
                     LinearScale::Nice(lo, hi, bottom, kTop),
                     0,
                     kPlotLeft,
                     kPlotRight,
                     kTop,
                     bottom,
                     {},
                     false};
  layout.zero_y = layout.y(0);

  for (size_t i = 0; i < spec.series.size(); ++i) {
    const std::vector<TrendPoint>& points = spec.series[i].points;
    TrendSeriesLayout s;
    const int style = spec.series[i].style;
    s.shape = style >= 0 ? style : static_cast<int>(i);
    for (const TrendPoint& p : points) {
      TrendPointLayout pl;
      pl.day = p.day;
      pl.x = layout.x(p.day);
      if (Finite(p.estimate)) {
        pl.y = std::clamp(layout.y(*p.estimate), kTop, bottom);
      }
      if (p.fixed) pl.fixed = PlaceInterval(layout.y, *p.fixed);
      if (p.always_valid) {
        pl.always_valid = PlaceInterval(layout.y, *p.always_valid);
        layout.any_always_valid = true;
      }
      s.points.push_back(pl);
    }
    s.line_runs = RunsOf(s.points.size(),
                         [&](size_t k) { return s.points[k].y.has_value(); });
    s.band_runs = RunsOf(s.points.size(), [&](size_t k) {
      return s.points[k].fixed.has_value();
    });
    s.dash_runs = RunsOf(s.points.size(), [&](size_t k) {
      return s.points[k].always_valid.has_value();
    });
    if (!s.line_runs.empty()) {
      s.label_y = *s.points[s.line_runs.back().end - 1].y + 4;
    }
    layout.series.push_back(std::move(s));
  }

  // End labels: in order of height, each at least kLabelGap below the one
  // above it, then the stack moved up as a whole if it leaves the chart.
  std::vector<TrendSeriesLayout*> labelled;
  for (TrendSeriesLayout& s : layout.series) {
    if (s.label_y) labelled.push_back(&s);
  }
  std::stable_sort(labelled.begin(), labelled.end(),
                   [](const TrendSeriesLayout* a, const TrendSeriesLayout* b) {
                     return *a->label_y < *b->label_y;
                   });
  for (size_t k = 1; k < labelled.size(); ++k) {
    *labelled[k]->label_y =
        std::max(*labelled[k]->label_y, *labelled[k - 1]->label_y + kLabelGap);
  }
  if (!labelled.empty()) {
    const double over = *labelled.back()->label_y - (bottom + 4);
    if (over > 0) {
      for (TrendSeriesLayout* s : labelled) *s->label_y -= over;
    }
  }
  return layout;
}

std::string RenderTrendSvg(const TrendSpec& spec) {
  const TrendLayout l = LayoutTrend(spec);
  std::string svg = SvgOpen("trend", l.width, l.height, spec.title);
  const int decimals = l.y.TickDecimals(spec.display_scale);
  absl::StrAppend(
      &svg,
      ValueAxis(l.y, l.plot_left, l.plot_right,
                [&](double t) {
                  return SvgTickLabel(t, decimals, spec.display_scale,
                                      spec.value_suffix);
                }),
      DayAxis(l.x, l.plot_left, l.plot_right, l.plot_top, l.plot_bottom));
  absl::StrAppend(
      &svg, SvgLine(l.plot_left, l.zero_y, l.plot_right, l.zero_y, "zero-line",
                    absl::StrCat("stroke=\"", kInk, "\" stroke-width=\"2\"")));

  for (size_t i = 0; i < l.series.size(); ++i) {
    const TrendSeriesLayout& s = l.series[i];
    const TrendSeries& data = spec.series[i];
    const char* colour = VariantColour(static_cast<size_t>(s.shape));
    absl::StrAppend(&svg, "<g class=\"series\"><title>", EscapeXml(data.label),
                    "</title>");
    for (const Run& run : s.band_runs) {
      if (run.end - run.begin == 1) {
        const TrendPointLayout& p = s.points[run.begin];
        absl::StrAppend(&svg,
                        SvgLine(p.x, p.fixed->x1, p.x, p.fixed->x2, "ci-bar",
                                absl::StrCat("stroke=\"", colour,
                                             "\" stroke-width=\"6\" "
                                             "stroke-opacity=\"0.3\"")));
        continue;
      }
      std::string points;
      for (size_t k = run.begin; k < run.end; ++k) {
        absl::StrAppend(&points, SvgNum(s.points[k].x), ",",
                        SvgNum(s.points[k].fixed->x2), " ");
      }
      for (size_t k = run.end; k-- > run.begin;) {
        absl::StrAppend(&points, SvgNum(s.points[k].x), ",",
                        SvgNum(s.points[k].fixed->x1), " ");
      }
      points.pop_back();
      absl::StrAppend(&svg, "<polygon class=\"ci-band\" points=\"", points,
                      "\" fill=\"", colour,
                      "\" fill-opacity=\"0.15\" stroke=\"none\"/>");
    }
    for (const Run& run : s.dash_runs) {
      for (bool high : {false, true}) {
        std::vector<std::pair<double, double>> pts;
        for (size_t k = run.begin; k < run.end; ++k) {
          const Segment& seg = *s.points[k].always_valid;
          pts.emplace_back(s.points[k].x, high ? seg.x2 : seg.x1);
        }
        if (pts.size() == 1) {
          // One day: a short dash across the day's slot.
          const double half = std::min(l.x.slot() / 2, 10.0);
          pts = {{pts[0].first - half, pts[0].second},
                 {pts[0].first + half, pts[0].second}};
        }
        absl::StrAppend(&svg, "<g class=\"ci-always-valid\">",
                        Polyline(pts, absl::StrCat("stroke=\"", colour,
                                                   "\" stroke-width=\"1.5\" "
                                                   "stroke-dasharray=\"5 3\"")),
                        "</g>");
      }
    }
    for (const Run& run : s.line_runs) {
      std::vector<std::pair<double, double>> pts;
      for (size_t k = run.begin; k < run.end; ++k) {
        pts.emplace_back(s.points[k].x, *s.points[k].y);
      }
      if (pts.size() > 1) {
        absl::StrAppend(&svg, "<g class=\"trend-line\">",
                        Polyline(pts, absl::StrCat("stroke=\"", colour,
                                                   "\" stroke-width=\"2\"")),
                        "</g>");
      }
      for (const auto& [x, y] : pts) {
        absl::StrAppend(&svg, VariantMarker(s.shape, x, y, colour));
      }
    }
    if (s.label_y) {
      const TrendPointLayout& end = s.points[s.line_runs.back().end - 1];
      absl::StrAppend(&svg,
                      SvgText(end.x + 9, *s.label_y, "start", "series-label",
                              ShortenLabel(data.label, kMaxLabelChars), 12));
    }
    absl::StrAppend(&svg, "</g>");
  }

  // Which way is better, then the legend: a row of series, a row of
  // interval kinds.
  const double dir_y = l.plot_bottom + 50;
  absl::StrAppend(
      &svg, SvgText(l.plot_left, dir_y, "start", "direction",
                    spec.higher_is_better
                        ? "\xE2\x96\xB2 up is better (higher), \xE2\x96\xBC "
                          "down is worse"
                        : "\xE2\x96\xBC down is better (lower), \xE2\x96\xB2 "
                          "up is worse",
                    12));
  absl::StrAppend(&svg, "<g class=\"legend\">");
  double ly = AppendLegendRows(
      spec.series.size(), dir_y + 22,
      [&](size_t i, double x, double y) {
        const int shape = l.series[i].shape;
        return LegendItem(
            VariantMarker(shape, x, y,
                          VariantColour(static_cast<size_t>(shape))),
            x, y, ShortenLabel(spec.series[i].label, kMaxLabelChars + 4));
      },
      &svg);
  ly += 22;
  absl::StrAppend(&svg, "<rect x=\"10\" y=\"", SvgNum(ly - 7),
                  "\" width=\"24\" height=\"14\" fill=\"", kNeutralColour,
                  "\" fill-opacity=\"0.25\"/>",
                  SvgText(40, ly + 4, "start", "legend-text",
                          absl::StrCat("shaded: ", spec.confidence,
                                       " interval (fixed horizon)"),
                          12));
  if (l.any_always_valid) {
    absl::StrAppend(&svg,
                    SvgLine(300, ly, 330, ly, "legend-dash",
                            absl::StrCat("stroke=\"", kNeutralColour,
                                         "\" stroke-width=\"1.5\" "
                                         "stroke-dasharray=\"5 3\"")),
                    SvgText(336, ly + 4, "start", "legend-text",
                            absl::StrCat("dashed: ", spec.confidence,
                                         " always-valid interval"),
                            12));
  } else if (!spec.no_always_valid_note.empty()) {
    absl::StrAppend(&svg, SvgText(300, ly + 4, "start", "legend-text",
                                  spec.no_always_valid_note, 12));
  }
  absl::StrAppend(&svg, "</g></svg>");
  return svg;
}

ExposureLayout LayoutExposures(const ExposureSpec& spec) {
  std::optional<int64_t> first, last;
  int64_t most = 0;
  for (const ExposureDay& d : spec.days) {
    first = std::min(first.value_or(d.day), d.day);
    last = std::max(last.value_or(d.day), d.day);
    for (const std::optional<int64_t>& c : d.counts) {
      if (c) most = std::max(most, *c);
    }
  }
  const double bottom = kTop + kPlotHeight * 0.75;
  // Whole-number ticks: with at most 6 ticks over at least 0..5 the step
  // is at least 1.
  ExposureLayout layout{
      kWidth,
      bottom + 44 + LegendRows(spec.variants.size()) * 22,
      DayScale::Make(first.value_or(0), last.value_or(0), kPlotLeft,
                     kPlotRight),
      LinearScale::Nice(0, static_cast<double>(std::max<int64_t>(most, 5)),
                        bottom, kTop),
      kPlotLeft,
      kPlotRight,
      kTop,
      bottom,
      {}};
  const size_t n = std::max<size_t>(spec.variants.size(), 1);
  const double bar = layout.x.slot() * 0.8 / static_cast<double>(n);
  for (const ExposureDay& d : spec.days) {
    const double left = layout.x(d.day) - layout.x.slot() * 0.4;
    for (size_t v = 0; v < d.counts.size() && v < spec.variants.size(); ++v) {
      if (!d.counts[v]) continue;
      const int64_t count = std::max<int64_t>(*d.counts[v], 0);
      layout.bars.push_back(BarLayout{v, d.day, count,
                                      left + bar * static_cast<double>(v), bar,
                                      layout.y(static_cast<double>(count))});
    }
  }
  return layout;
}

std::string RenderExposuresSvg(const ExposureSpec& spec) {
  const ExposureLayout l = LayoutExposures(spec);
  std::string svg = SvgOpen("exposures", l.width, l.height, spec.title);
  absl::StrAppend(
      &svg,
      ValueAxis(l.y, l.plot_left, l.plot_right,
                [](double t) { return absl::StrFormat("%.0f", t); }),
      DayAxis(l.x, l.plot_left, l.plot_right, l.plot_top, l.plot_bottom));
  for (const BarLayout& b : l.bars) {
    absl::StrAppend(&svg, "<rect class=\"bar\" x=\"", SvgNum(b.x), "\" y=\"",
                    SvgNum(b.top), "\" width=\"", SvgNum(b.width),
                    "\" height=\"", SvgNum(l.plot_bottom - b.top), "\" fill=\"",
                    VariantColour(b.variant), "\"><title>", FormatDay(b.day),
                    " ", EscapeXml(spec.variants[b.variant]), ": ", b.count,
                    b.count == 1 ? " unit" : " units", "</title></rect>");
  }
  absl::StrAppend(&svg, "<g class=\"legend\">");
  AppendLegendRows(
      spec.variants.size(), l.plot_bottom + 56,
      [&](size_t i, double x, double y) {
        return LegendItem(
            absl::StrCat("<rect x=\"", SvgNum(x - 5), "\" y=\"", SvgNum(y - 5),
                         "\" width=\"10\" height=\"10\" fill=\"",
                         VariantColour(i), "\"/>"),
            x, y,
            absl::StrCat(i + 1, ". ",
                         ShortenLabel(spec.variants[i], kMaxLabelChars + 4)));
      },
      &svg);
  absl::StrAppend(&svg, "</g></svg>");
  return svg;
}

}  // namespace abexp::report
