// The drawing pieces the report's charts share (svg_chart.h, trend_chart.h):
// coordinates as text, escaped <text> elements, tick labels, and the ink
// colours. Internal to client/report.
//
// Thread-safe: no shared state.
#ifndef ABEXP_CLIENT_REPORT_SVG_PARTS_H_
#define ABEXP_CLIENT_REPORT_SVG_PARTS_H_

#include <string>

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

// "+2.5%": value * display_scale with `decimals` decimals, a sign when
// positive, then `suffix`; never "-0".
std::string SvgTickLabel(double value, int decimals, double display_scale,
                         absl::string_view suffix);

// `label` cut to `max_chars` bytes with an ellipsis when longer.
std::string ShortenLabel(const std::string& label, size_t max_chars);

}  // namespace abexp::report

#endif  // ABEXP_CLIENT_REPORT_SVG_PARTS_H_
