// Linked into every test binary (abexp_add_test): runs Abseil's one-time
// system probes during static initialisation, before any test creates a gRPC
// channel, so that a test's first connect cannot be failed by the ENOENT a
// probe leaves in errno (client/absl_probes.h explains the race).

#include "client/absl_probes.h"

namespace {

[[maybe_unused]] const bool kAbslProbesDone = [] {
  abexp::RunAbslProbesBeforeConnecting();
  return true;
}();

}  // namespace
