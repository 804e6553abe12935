#include "client/report/svg_parts.h"

#include <cmath>
#include <string>

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

}  // namespace abexp::report
