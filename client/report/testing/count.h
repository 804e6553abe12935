// A helper the report's tests share: how often a piece of markup occurs in
// a page or chart. Header only; for tests.
#ifndef ABEXP_CLIENT_REPORT_TESTING_COUNT_H_
#define ABEXP_CLIENT_REPORT_TESTING_COUNT_H_

#include <cstddef>

#include "absl/strings/string_view.h"

namespace abexp::report::testing {

// How many times `what` occurs in `text`, overlapping occurrences counted.
// REQUIRES: `what` is not empty.
inline size_t Count(absl::string_view text, absl::string_view what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != absl::string_view::npos;
       at = text.find(what, at + 1)) {
    ++n;
  }
  return n;
}

}  // namespace abexp::report::testing

#endif  // ABEXP_CLIENT_REPORT_TESTING_COUNT_H_
