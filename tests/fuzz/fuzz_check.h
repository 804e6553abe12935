// What the fuzz targets share: a property check that aborts, so that
// libFuzzer keeps the input as a crash.
#ifndef ABEXP_TESTS_FUZZ_FUZZ_CHECK_H_
#define ABEXP_TESTS_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>

namespace abexp {

// Aborts with "<target>: property violated: <what> (<detail>)" unless ok.
inline void FuzzCheck(bool ok, const char* target, const char* what,
                      const char* detail = "") {
  if (ok) return;
  fprintf(stderr, "%s: property violated: %s (%s)\n", target, what, detail);
  abort();
}

}  // namespace abexp

#endif  // ABEXP_TESTS_FUZZ_FUZZ_CHECK_H_
