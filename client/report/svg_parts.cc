#include "client/report/svg_parts.h"

#include <cmath>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/report/svg_chart.h"

namespace abexp::report {

std::string SvgNum(double v) { return absl::StrFormat("%.2f", v); }

std::string SvgText(double x, double y, const char* anchor, const char* cls,
                    absl::string_view text, int size) {
  return absl::StrCat("<text class=\"", cls, "\" x=\"", SvgNum(x), "\" y=\"",
                      SvgNum(y), "\" text-anchor=\"", anchor, "\" font-size=\"",
                      size, "\" fill=\"", kInk, "\">", EscapeXml(text),
                      "</text>");
}

std::string SvgLine(double x1, double y1, double x2, double y2, const char* cls,
                    absl::string_view attributes) {
  return absl::StrCat("<line class=\"", cls, "\" x1=\"", SvgNum(x1), "\" y1=\"",
                      SvgNum(y1), "\" x2=\"", SvgNum(x2), "\" y2=\"",
                      SvgNum(y2), "\" ", attributes, "/>");
}

std::string SvgTickGrid(const std::vector<SvgTick>& ticks, double top,
                        double bottom) {
  std::string out;
  const std::string grid = absl::StrCat("stroke=\"", kGrid, "\"");
  for (const SvgTick& t : ticks) {
    absl::StrAppend(&out, SvgLine(t.x, top, t.x, bottom, "grid", grid),
                    SvgText(t.x, bottom + 16, "middle", "tick", t.label, 12));
  }
  return out;
}

std::string SvgAxisLine(double left, double right, double y) {
  return SvgLine(left, y, right, y, "axis",
                 absl::StrCat("stroke=\"", kInk, "\""));
}

std::string SvgTickLabel(double value, int decimals, double display_scale,
                         absl::string_view suffix) {
  double shown = value * display_scale;
  if (std::fabs(shown) < 0.5 * std::pow(10, -decimals)) shown = 0;
  return absl::StrCat(shown > 0 ? absl::StrFormat("%+.*f", decimals, shown)
                                : absl::StrFormat("%.*f", decimals, shown),
                      suffix);
}

std::string ShortenLabel(const std::string& label, size_t max_chars) {
  if (label.size() <= max_chars) return label;
  return absl::StrCat(label.substr(0, max_chars - 1), "\xE2\x80\xA6");
}

const char* VariantColour(size_t style) {
  // Distinct in lightness as well as hue, so they stay apart in grey print.
  static constexpr const char* kColours[] = {"#1f5fa8", "#c2410c", "#6d28d9",
                                             "#047857", "#a16207"};
  return kColours[style % (sizeof(kColours) / sizeof(*kColours))];
}

std::string VariantMarker(int shape, double x, double y, const char* colour) {
  const std::string style = absl::StrCat(
      "\" fill=\"", colour, "\" stroke=\"#fff\" stroke-width=\"1\"/>");
  auto polygon = [&](std::initializer_list<std::pair<double, double>> pts) {
    std::string out = "<polygon class=\"marker\" points=\"";
    for (const auto& [dx, dy] : pts) {
      absl::StrAppend(&out, SvgNum(x + dx), ",", SvgNum(y + dy), " ");
    }
    out.pop_back();
    return absl::StrCat(out, style);
  };
  switch (shape % kVariantShapes) {
    case 1:
      return absl::StrCat("<rect class=\"marker\" x=\"", SvgNum(x - 4.5),
                          "\" y=\"", SvgNum(y - 4.5),
                          "\" width=\"9\" height=\"9", style);
    case 2:
      return polygon({{0, -6}, {-5.5, 4}, {5.5, 4}});
    case 3:
      return polygon({{0, -6}, {6, 0}, {0, 6}, {-6, 0}});
    case 4:
      return polygon({{0, 6}, {-5.5, -4}, {5.5, -4}});
    default:
      return absl::StrCat("<circle class=\"marker\" cx=\"", SvgNum(x),
                          "\" cy=\"", SvgNum(y), "\" r=\"5", style);
  }
}

std::string SvgOpen(const char* cls, double width, double height,
                    absl::string_view title) {
  return absl::StrCat("<svg class=\"", cls,
                      "\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 ",
                      SvgNum(width), " ", SvgNum(height),
                      "\" role=\"img\" preserveAspectRatio=\"xMinYMin meet\" "
                      "font-family=\"sans-serif\"><title>",
                      EscapeXml(title), "</title>");
}

}  // namespace abexp::report
