// Charts for the HTML results report as inline SVG strings: a linear scale
// with "nice" ticks and a forest plot of each variant's lift against its
// control. Pure: no I/O, no protobuf; the geometry (LayoutForest) is
// computed apart from the drawing (RenderForestSvg) so that tests can check
// where things land.
//
// Every chart is readable without colour: the verdict of each row is a
// marker shape and a word as well as a colour, and the interval kinds differ
// by stroke width and dashing.
//
// Thread-safe: no shared state.
#ifndef ABEXP_CLIENT_REPORT_SVG_CHART_H_
#define ABEXP_CLIENT_REPORT_SVG_CHART_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace abexp::report {

// `text` with &, <, >, " and ' replaced by entities: safe inside an HTML or
// SVG element and inside a quoted attribute.
std::string EscapeXml(absl::string_view text);

// A linear map from a data domain [lo, hi] to a pixel range [start, end],
// whose domain ends on "nice" ticks (1, 2 or 5 times a power of ten).
class LinearScale {
 public:
  // A scale covering [lo, hi] with at most `max_ticks` ticks (taken as 3
  // when smaller: the ticks are multiples of the step, so a domain that
  // spans zero needs one on each side and zero),
  // its domain widened to the ticks around it. An empty domain (lo == hi)
  // is widened around the value (to [-1, 1] around 0). Non-finite lo or hi
  // are treated as 0.
  static LinearScale Nice(double lo, double hi, double start, double end,
                          int max_ticks = 6);

  // The pixel of x; values outside the domain extrapolate.
  double operator()(double x) const;

  double lo() const { return lo_; }
  double hi() const { return hi_; }
  double start() const { return start_; }
  double end() const { return end_; }
  double step() const { return step_; }
  // lo, lo + step, ..., hi: evenly spaced, zero exactly when in range.
  const std::vector<double>& ticks() const { return ticks_; }
  // Decimals that tell the ticks apart after multiplying them by `scale`.
  int TickDecimals(double scale) const;

 private:
  LinearScale(double lo, double hi, double start, double end, double step);

  double lo_, hi_, start_, end_, step_;
  std::vector<double> ticks_;
};

// An interval's ends. Either may be infinite (an always-valid interval can
// be unbounded early on) or NaN, which is drawn as unbounded on its side:
// nothing bounds it.
struct Interval {
  double low = 0;
  double high = 0;
};

// One variant of a forest plot: its lift against control.
struct ForestRow {
  std::string label;  // the variant's key
  // The lift; nullopt when it is undefined or the variant has no data.
  std::optional<double> estimate;
  std::optional<Interval> fixed;         // the fixed-horizon interval
  std::optional<Interval> always_valid;  // the always-valid interval
  // Shown in place of the marker when there is no estimate, e.g. "no data".
  std::string missing_note;
};

struct ForestSpec {
  // The accessible name of the chart (its <title>), e.g.
  // "order_conversion: relative lift of each variant against control".
  std::string title;
  // Tick labels show value * display_scale followed by value_suffix, e.g.
  // 100 and "%" for a relative lift. Default: 1 and "".
  double display_scale = 1;
  std::string value_suffix;
  // Which side of zero is better. Default: higher.
  bool higher_is_better = true;
  // "95%": names the intervals in the legend.
  std::string confidence = "95%";
  std::vector<ForestRow> rows;
};

// What the fixed-horizon interval says about a row, in the metric's
// direction.
enum class Verdict {
  kBetter,        // the interval lies wholly on the better side of zero
  kWorse,         // wholly on the worse side
  kInconclusive,  // it contains zero
  kNoEstimate,    // no estimate to draw
};

// "better", "worse", "not significant" or "no estimate".
const char* VerdictWord(Verdict verdict);

// An interval on the chart, in pixels. An end that lies beyond the chart
// (unbounded, NaN, or cut off so that the other rows keep their room) is at
// the chart's edge with `clipped_*` set, and is drawn as an arrow.
struct Segment {
  double x1 = 0, x2 = 0;
  bool clipped_low = false, clipped_high = false;
};

// `in` on scale x: x1 is where its low end goes, x2 its high end (for a
// vertical scale, whose pixels run upwards, x1 is below x2). An end outside
// the domain, infinite or NaN is at the domain's edge and marked clipped.
Segment PlaceInterval(const LinearScale& x, const Interval& in);

// The [lo, hi] a lift chart covers: zero and every finite value of `core`
// (estimates, fixed-horizon bounds), then every finite value of `reaching`
// (always-valid bounds) by at most that span again on each side.
std::pair<double, double> LiftDomain(const std::vector<double>& core,
                                     const std::vector<double>& reaching);

struct ForestRowLayout {
  double y = 0;  // the row's centre line
  std::optional<double> estimate_x;
  std::optional<Segment> fixed;
  std::optional<Segment> always_valid;
  Verdict verdict = Verdict::kNoEstimate;
};

struct ForestLayout {
  double width = 0, height = 0;  // the viewBox
  LinearScale x;
  double zero_x = 0;
  double plot_top = 0, plot_bottom = 0;  // where the zero line runs
  std::vector<ForestRowLayout> rows;
};

// Where everything of the forest plot goes. The x domain holds zero, every
// estimate and every finite fixed-horizon bound; always-valid bounds widen
// it by at most the width of that domain on each side, and are clipped
// beyond.
ForestLayout LayoutForest(const ForestSpec& spec);

// The forest plot as one <svg> element with a viewBox (it scales to its
// container's width): per row the variant's label and verdict word, the
// always-valid interval (thin, dashed) under the fixed-horizon one (thick),
// arrows at clipped ends, the estimate's marker (a triangle pointing up for
// better, down for worse, a circle when not significant), a zero line,
// ticks, which side is better, and a legend. Text is escaped.
std::string RenderForestSvg(const ForestSpec& spec);

}  // namespace abexp::report

#endif  // ABEXP_CLIENT_REPORT_SVG_CHART_H_
