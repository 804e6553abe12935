// Runs Abseil's one-time system probes now, before any gRPC channel exists.
//
// Why: the first absl::Mutex that ever blocks in a process runs two
// once-only probes on the blocking thread: NumCPUs() reads
// /sys/devices/system/cpu/online and NominalCPUFrequency() tries
// /sys/devices/system/cpu/cpu0/tsc_freq_khz, which most machines lack. A
// failed open leaves ENOENT in errno. gRPC 1.51's TCP connect
// (grpc_tcp_client_create_from_prepared_fd) reads errno to learn whether a
// non-blocking connect() is in progress only after taking locks of its own;
// when one of those is the process's first contended lock, it reads the
// probe's ENOENT instead of EINPROGRESS and fails a connect that was on its
// way ("failed to connect to all addresses; ... No such file or
// directory"), and every call on the fresh channel fails UNAVAILABLE. Seen
// under ASan, where the timing makes it likelier; possible anywhere. Running
// the probes first, on a thread that holds nothing, makes them done.
//
// Header-only (two calls into absl_base); not installed: client.cc,
// event_sender.cc, abexp-loadgen and the tests (tests/absl_probes_at_start.cc)
// call it.
#ifndef ABEXP_CLIENT_ABSL_PROBES_H_
#define ABEXP_CLIENT_ABSL_PROBES_H_

#include "absl/base/internal/sysinfo.h"

namespace abexp {

inline void RunAbslProbesBeforeConnecting() {
  absl::base_internal::NumCPUs();
  absl::base_internal::NominalCPUFrequency();
}

}  // namespace abexp

#endif  // ABEXP_CLIENT_ABSL_PROBES_H_
