// The report's funnel chart, as an inline SVG string: per step of a funnel
// metric (rows, in order) one horizontal bar per variant of the share of its
// exposed units that reached the step, labelled with the share and the
// units, and beside it the step's share of the previous step's units and
// that share's lift against the control. Pure: no I/O, no protobuf; the
// geometry (LayoutFunnel) is computed apart from the drawing so that tests
// can check where things land.
//
// A variant has the colour and marker shape of its style in every chart
// (svg_parts.h), and its name on each of its bars, so the chart reads
// without colour and in black-and-white print.
//
// Thread-safe: no shared state.
#ifndef ABEXP_CLIENT_REPORT_FUNNEL_CHART_H_
#define ABEXP_CLIENT_REPORT_FUNNEL_CHART_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "client/report/svg_chart.h"

namespace abexp::report {

// One variant at one step.
struct FunnelStepValue {
  int64_t units = 0;  // the units that reached the step
  // units / exposed units; nullopt (or NaN) when undefined: the variant has
  // no exposed units.
  std::optional<double> rate;
  // units / the previous step's units (step 1: the exposed units); nullopt
  // when undefined.
  std::optional<double> rate_from_previous;
  // rate_from_previous minus the control's, and its interval; unset for the
  // control and when undefined.
  std::optional<double> lift;
  std::optional<Interval> lift_interval;
};

struct FunnelVariant {
  std::string label;  // the variant's key
  // Which marker shape and colour: the variant's index in the results, as
  // in the trend and exposure charts. Default (-1): its position here.
  int style = -1;
  // One per step of the spec, in order; nullopt when the variant has no
  // figures for the step (its bar is replaced by a note).
  std::vector<std::optional<FunnelStepValue>> steps;
};

struct FunnelSpec {
  std::string title;               // the chart's <title>
  std::vector<std::string> steps;  // the steps' event names, in order
  std::vector<FunnelVariant> variants;
  // "95%": names the lift's interval in the note under the chart.
  std::string confidence = "95%";
};

// One variant's bar at one step.
struct FunnelBarLayout {
  size_t variant = 0;
  double y = 0;      // the bar's top
  double x = 0;      // its left end: the plot's left edge
  double width = 0;  // 0 for a share of 0, an undefined one or no figures
  double height = 0;
  double centre_y = 0;  // the baseline-free middle: marker and texts
  int shape = 0;        // index into the marker shapes
  // "40.0%, 400 units", or why there is no bar ("no exposed units", "no
  // figures for this step"); drawn from label_x.
  std::string share_label;
  double label_x = 0;
  // "60.0%" and "+10.00 pp": the share of the previous step's units and its
  // lift against the control ("-" when undefined, empty for the control and
  // a variant without figures).
  std::string previous_label;
  std::string lift_label;
  bool significant = false;  // the lift's interval excludes 0
  // False for a variant without figures for the step: no bar is drawn.
  bool has_figures = true;
};

struct FunnelStepLayout {
  std::string title;  // "1. view_checkout"
  double title_y = 0;
  std::vector<FunnelBarLayout> bars;  // one per variant, in the spec's order
};

struct FunnelLayout {
  double width = 0, height = 0;  // the viewBox
  LinearScale x;                 // shares: 0 to the largest share at least
  double plot_left = 0, plot_right = 0, plot_top = 0, plot_bottom = 0;
  double previous_x = 0;  // where the "of previous" column starts
  double lift_x = 0;      // where the lift column starts
  std::vector<FunnelStepLayout> steps;
};

// Where everything of the funnel chart goes: a row per step, in it a bar per
// variant whose length is proportional to its share (the x domain runs from
// 0 to the largest share, widened to a nice tick; 0 to 100% when no share is
// above 0). Labels are at the bar's end, so a zero-length bar is labelled
// too. Shares are clamped to [0, 1].
FunnelLayout LayoutFunnel(const FunnelSpec& spec);

// The funnel chart as one <svg> with a viewBox: the column heads, per step
// its number and event, per variant its marker, name, bar (with a <title>
// naming variant, step, share and units) and labels, a significant lift in
// bold with " *"; share ticks and grid lines, and a note saying what the
// star means. Text is escaped.
std::string RenderFunnelSvg(const FunnelSpec& spec);

}  // namespace abexp::report

#endif  // ABEXP_CLIENT_REPORT_FUNNEL_CHART_H_
