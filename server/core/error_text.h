// How error messages quote strings a caller sent. A request string copied
// whole into a status message can make the message megabytes long (clients
// then fail on the status, e.g. Python's "metadata size exceeds limit"), or
// put bytes in it that are not printable text.
//
// Thread-safe: pure functions.
#ifndef ABEXP_SERVER_CORE_ERROR_TEXT_H_
#define ABEXP_SERVER_CORE_ERROR_TEXT_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace abexp {

// The most bytes of a caller's string an error message quotes.
inline constexpr size_t kMaxQuotedBytes = 64;

// `text` as an error message may show it: unchanged when it is at most
// kMaxQuotedBytes of printable ASCII; otherwise its first kMaxQuotedBytes
// bytes with anything else C-escaped (\n, \xff, ...), and when cut,
// followed by "... (N bytes)". The result is always printable ASCII.
std::string ClipForMessage(absl::string_view text);

}  // namespace abexp

#endif  // ABEXP_SERVER_CORE_ERROR_TEXT_H_
