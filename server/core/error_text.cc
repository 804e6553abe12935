#include "server/core/error_text.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace abexp {

std::string ClipForMessage(absl::string_view text) {
  const absl::string_view shown = text.substr(0, kMaxQuotedBytes);
  bool printable = true;
  for (char c : shown) {
    if (c < 0x20 || c > 0x7e) {
      printable = false;
      break;
    }
  }
  std::string out = printable ? std::string(shown) : absl::CHexEscape(shown);
  if (shown.size() < text.size()) {
    absl::StrAppend(&out, "... (", text.size(), " bytes)");
  }
  return out;
}

}  // namespace abexp
