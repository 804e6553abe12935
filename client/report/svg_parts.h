// The drawing pieces the report's charts share (svg_chart.h, trend_chart.h,
// funnel_chart.h): coordinates as text, escaped <text> and <line>
// elements, the x axis's grid, tick labels and axis line, the ink colours, and
// each variant's colour and marker shape, so that a variant looks the same in
// every chart. Internal to client/report.
//
// Thread-safe: no shared state.
#ifndef ABEXP_CLIENT_REPORT_SVG_PARTS_H_
#define ABEXP_CLIENT_REPORT_SVG_PARTS_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace abexp::report {

// Text and axes; the colours of data only repeat what shapes and words say.
inline constexpr char kInk[] = "#222";
inline constexpr char kGrid[] = "#ddd";
inline constexpr char kNeutralColour[] = "#444";

// A coordinate with two decimals, e.g. "165.00".
std::string SvgNum(double v);

// A <text> element of class `cls` at (x, y) anchored "start", "middle" or
// "end"; `text` is escaped.
std::string SvgText(double x, double y, const char* anchor, const char* cls,
                    absl::string_view text, int size = 13);

// A <line> of class `cls` from (x1, y1) to (x2, y2), then `attributes`
// as written (e.g. stroke="#222").
std::string SvgLine(double x1, double y1, double x2, double y2, const char* cls,
                    absl::string_view attributes);

// A tick of a horizontal axis: where it is and its label.
struct SvgTick {
  double x = 0;
  std::string label;
};

// Per tick a vertical grid line from `top` to `bottom` and its label
// centred under it: the x axis's ticks of every chart.
std::string SvgTickGrid(const std::vector<SvgTick>& ticks, double top,
                        double bottom);

// The x axis's line, from `left` to `right` at height `y`.
std::string SvgAxisLine(double left, double right, double y);

// "+2.5%": value * display_scale with `decimals` decimals, a sign when
// positive, then `suffix`; never "-0".
std::string SvgTickLabel(double value, int decimals, double display_scale,
                         absl::string_view suffix);

// The colour of variant style `style` (the variant's index in the results):
// five colours distinct in lightness as well as hue, then again.
const char* VariantColour(size_t style);

// The number of marker shapes before they repeat.
inline constexpr int kVariantShapes = 5;

// A marker of shape `shape` (0 circle, 1 square, 2 triangle, 3 diamond,
// 4 triangle down, then again) centred on (x, y), about 12 units across.
std::string VariantMarker(int shape, double x, double y, const char* colour);

// An <svg> element of class `cls` with a viewBox of width x height that
// scales to its container, opened up to and with its <title> (escaped).
std::string SvgOpen(const char* cls, double width, double height,
                    absl::string_view title);

// `label` cut to `max_chars` bytes with an ellipsis when longer.
std::string ShortenLabel(const std::string& label, size_t max_chars);

}  // namespace abexp::report

#endif  // ABEXP_CLIENT_REPORT_SVG_PARTS_H_
