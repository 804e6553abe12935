// The report's charts over days, as inline SVG strings: the cumulative lift
// of each variant per cohort day (a trend chart) and the units first
// exposed per day per variant (grouped bars). Pure: no I/O, no protobuf; the
// geometry (LayoutTrend, LayoutExposures) is computed apart from the drawing
// so that tests can check where things land.
//
// The x axis is a date axis: each day has a slot of the same width, so a
// day without data shows as a gap. Each variant has its own marker shape as
// well as its own colour, and its label at the end of its line, so the
// charts read without colour and in black-and-white print.
//
// Thread-safe: no shared state.
#ifndef ABEXP_CLIENT_REPORT_TREND_CHART_H_
#define ABEXP_CLIENT_REPORT_TREND_CHART_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "client/report/svg_chart.h"

namespace abexp::report {

// A UTC day as the number of days since 1970-01-01; nullopt unless `text`
// is a valid "YYYY-MM-DD".
std::optional<int64_t> ParseDay(absl::string_view text);
// "2026-01-05" for the day number `day`.
std::string FormatDay(int64_t day);

// Days first..last on a pixel range [start, end]: each day is a slot of
// equal width and sits at its slot's centre, so one day alone is in the
// middle. Ticks fall every 1, 2, 3 or 7 days, or a multiple of 14, counted
// from the first day, as few as keep them to `max_ticks` (taken as 2 when
// smaller).
class DayScale {
 public:
  // REQUIRES: first <= last.
  static DayScale Make(int64_t first, int64_t last, double start, double end,
                       int max_ticks = 7);

  double operator()(int64_t day) const;  // the centre of the day's slot
  double slot() const { return slot_; }  // pixels per day
  int64_t first() const { return first_; }
  int64_t last() const { return last_; }
  int64_t step_days() const { return step_; }
  const std::vector<int64_t>& ticks() const { return ticks_; }

 private:
  DayScale(int64_t first, int64_t last, double start, double slot,
           int64_t step);

  int64_t first_, last_;
  double start_, slot_;
  int64_t step_;
  std::vector<int64_t> ticks_;
};

// "Jan 5": a tick's label.
std::string DayTickLabel(int64_t day);

// ---- The trend of a lift ----

// One day of one variant.
struct TrendPoint {
  int64_t day = 0;
  // The lift over the cohorts up to the day; nullopt (or NaN) when
  // undefined: the line has a gap there.
  std::optional<double> estimate;
  std::optional<Interval> fixed;         // fixed-horizon interval
  std::optional<Interval> always_valid;  // always-valid interval
};

// A non-control variant's line, oldest day first.
struct TrendSeries {
  std::string label;  // the variant's key
  std::vector<TrendPoint> points;
  // Which marker shape and colour, so that a variant looks the same in
  // every chart (the exposure bars use the variant's index). Default (-1):
  // the series' position.
  int style = -1;
};

struct TrendSpec {
  // The accessible name of the chart (its <title>).
  std::string title;
  // Tick labels show value * display_scale then value_suffix (100 and "%"
  // for a relative lift). Default: 1 and "".
  double display_scale = 1;
  std::string value_suffix;
  // Which way is better. Default: higher.
  bool higher_is_better = true;
  // "95%": names the intervals in the legend.
  std::string confidence = "95%";
  // Shown in the legend when no point has an always-valid interval, e.g.
  // why there is none. Empty: nothing is said.
  std::string no_always_valid_note;
  std::vector<TrendSeries> series;
};

struct TrendPointLayout {
  int64_t day = 0;
  double x = 0;
  std::optional<double> y;              // unset: no estimate
  std::optional<Segment> fixed;         // x1: the low end's y, x2: high
  std::optional<Segment> always_valid;  // the same
};

// Index ranges [begin, end) of consecutive points.
struct Run {
  size_t begin = 0, end = 0;
};

struct TrendSeriesLayout {
  std::vector<TrendPointLayout> points;  // one per TrendPoint
  std::vector<Run> line_runs;     // points with estimates: one polyline each
  std::vector<Run> band_runs;     // points with fixed intervals: one band each
  std::vector<Run> dash_runs;     // points with always-valid intervals
  int shape = 0;                  // index into the marker shapes
  std::optional<double> label_y;  // the end label's baseline; unset: none
};

struct TrendLayout {
  double width = 0, height = 0;  // the viewBox
  DayScale x;
  LinearScale y;
  double zero_y = 0;
  double plot_left = 0, plot_right = 0, plot_top = 0, plot_bottom = 0;
  std::vector<TrendSeriesLayout> series;
  bool any_always_valid = false;
};

// Where everything of the trend chart goes. The x axis spans the first to
// the last day of any series (day 0 alone when there is none); the y domain
// is as LiftDomain over every point's estimate, fixed and always-valid
// bounds, and ends beyond it are clipped to the plot's edge. Series get the
// marker shapes of their style (circle, square, triangle, diamond, triangle
// down, then again); end labels are spaced so they do not overlap.
TrendLayout LayoutTrend(const TrendSpec& spec);

// The trend chart as one <svg> with a viewBox: per series the fixed-horizon
// interval as a translucent band (a vertical bar for a point without
// neighbours), the always-valid interval as dashed lines, the line and a
// marker per day, the label at its last point; a zero line, the ticks,
// which way is better, and a legend naming the shapes and the intervals.
// Text is escaped.
std::string RenderTrendSvg(const TrendSpec& spec);

// ---- Exposures per day ----

struct ExposureDay {
  int64_t day = 0;
  // Per variant, in the spec's order: the units first exposed that day;
  // nullopt when the day has no figure for the variant (no bar is drawn).
  std::vector<std::optional<int64_t>> counts;
};

struct ExposureSpec {
  std::string title;                  // the chart's <title>
  std::vector<std::string> variants;  // labels, in bar order
  std::vector<ExposureDay> days;      // oldest first
};

struct BarLayout {
  size_t variant = 0;
  int64_t day = 0;
  int64_t count = 0;
  double x = 0, width = 0;  // left edge and width
  double top = 0;           // y of the bar's top; the bottom is the axis
};

struct ExposureLayout {
  double width = 0, height = 0;  // the viewBox
  DayScale x;
  LinearScale y;  // counts: 0 to at least 5, whole-number ticks
  double plot_left = 0, plot_right = 0, plot_top = 0, plot_bottom = 0;
  std::vector<BarLayout> bars;  // day by day, variants in order
};

// Where the bars go: each day's slot holds one bar per variant side by side
// (80% of the slot), in the variants' order.
ExposureLayout LayoutExposures(const ExposureSpec& spec);

// The grouped bar chart as one <svg> with a viewBox, a count axis, the day
// ticks, and a legend in bar order. Each bar has a <title> with its day,
// variant and count. Text is escaped.
std::string RenderExposuresSvg(const ExposureSpec& spec);

}  // namespace abexp::report

#endif  // ABEXP_CLIENT_REPORT_TREND_CHART_H_
