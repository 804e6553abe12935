// A SpoolAdmission bounds how many records recording calls may bring in
// while they are being acknowledged from the local spool (the store is down
// and SpooledEventStore answers for it), so that recording cannot take more
// of the server when Redis is down than when it is up. With Redis up,
// Redis's own speed bounds recording; from the spool, acknowledging is cheap
// and closed-loop clients would send as fast as the server answers, taking
// the CPU that plain Assign calls need.
//
//   SpoolAdmission admission(SpoolAdmissionOptions{});
//   // On the gRPC thread, before any work is done for a call:
//   SpoolAdmission::Decision d = admission.Decide(records, max_hold);
//   // kNow: go ahead; kHold: go ahead once d.wait has passed (the call is
//   // admitted, its place taken); kRefuse: RESOURCE_EXHAUSTED, retry after
//   // d.wait; nothing was done
//   // Once the call has been recorded:
//   admission.Note(result.recorded + result.duplicate + result.conflict,
//                  result.spooled);
//
// Rules:
//  - It learns that the store is spooling from the calls' results: a call
//    with a spooled record starts the bound, one with records written to
//    the store and none spooled ends it. While it is off, Admit admits
//    everything and costs one atomic load.
//  - The bound is a rate of records (exposures or events as sent, before
//    their fan-out to experiments): options.rate, or when that is 0
//    options.auto_share of the records written straight to the store per
//    second, on average over the seconds of the last options.window before
//    spooling began that had any (what Redis was recently taking), and at
//    least options.floor. A share because recording from the spool costs
//    the server more than the same records cost it with Redis (each call's
//    batch per experiment is encoded and fsynced here, and a closed-loop
//    client's next call is refused about once per admitted one): in R9
//    (docs/PERFORMANCE.md) admitting about the live average left plain
//    Assign 0.7 of its live throughput.
//  - Admission is a token bucket in time (GCRA): a call is admitted when
//    the records admitted before it are due within options.burst; it then
//    adds records / rate to that. A call of any size can be admitted.
//  - A call that would be admitted within the max_hold its caller passes
//    (abexp-server: --spool_admit_max_hold, and at most half the time the
//    call's deadline leaves) is held until then instead of refused: its
//    place is taken at once, and the caller starts it after Decision::wait
//    without holding a thread. A closed-loop client is then paced at the
//    rate with one call per admitted call; refused, it would make a refused
//    call (parsed and answered for nothing, sent again) per admitted one.
//  - A refused call gets a retry delay that reserves it a place: refused
//    calls are given slots one after another at the rate, so clients that
//    wait as told come back one at a time instead of all together. A delay
//    is at least 1 ms and at most options.max_retry_delay (past that no
//    place is reserved).
//
// Thread-safe: all methods may be called concurrently.
#ifndef ABEXP_SERVER_CORE_SPOOL_ADMISSION_H_
#define ABEXP_SERVER_CORE_SPOOL_ADMISSION_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace abexp {

struct SpoolAdmissionOptions {
  // Records per second admitted while spooling; 0: automatic (see above).
  // Default: 0.
  double rate = 0;
  // The automatic rate: this share of the recent average. Default: 0.5.
  double auto_share = 0.5;
  // The automatic rate's lower bound, records per second. Default: 1000.
  double floor = 1000;
  // How far back the automatic rate looks. Default: 60s.
  absl::Duration window = absl::Seconds(60);
  // How far ahead of the rate admitted records may run. Default: 100ms.
  absl::Duration burst = absl::Milliseconds(100);
  // The longest a call is held before it starts rather than refused (see
  // Decide). Zero refuses every call over the rate. Default: 250ms.
  absl::Duration max_hold = absl::Milliseconds(250);
  // The longest retry delay handed out. Default: 1s.
  absl::Duration max_retry_delay = absl::Seconds(1);
  // Default (empty): absl::Now.
  std::function<absl::Time()> clock;
};

class SpoolAdmission {
 public:
  // REQUIRES: options.rate >= 0, options.auto_share > 0, options.floor > 0,
  // options.window >= 1s,
  // options.burst >= 0, options.max_hold >= 0, options.max_retry_delay >= 1ms.
  explicit SpoolAdmission(SpoolAdmissionOptions options);

  SpoolAdmission(const SpoolAdmission&) = delete;
  SpoolAdmission& operator=(const SpoolAdmission&) = delete;

  // What to do with a call: start it now, start it after `wait` (held), or
  // refuse it and have its caller send it again after `wait`.
  struct Decision {
    enum class Kind { kNow, kHold, kRefuse };
    Kind kind = Kind::kNow;
    absl::Duration wait;  // kHold, kRefuse: > 0
  };

  // Decides on a call that brings `records` records, before anything of it
  // is done. A call admitted later than now is held when that is within
  // min(max_hold, options.max_hold), else refused.
  Decision Decide(int64_t records, absl::Duration max_hold);

  // Decide with no hold: nullopt to go ahead, or how long the caller should
  // wait before sending the call again.
  std::optional<absl::Duration> Admit(int64_t records);

  // What a finished call did: `direct` records written to the store (taken
  // or found duplicate or conflicting there), `spooled` records
  // acknowledged from the spool.
  void Note(int64_t direct, int64_t spooled);

  // Whether the bound is on (the last call that wrote anything spooled).
  bool spooling() const { return spooling_.load(std::memory_order_relaxed); }
  // The bound, records per second, while spooling(); else 0.
  double rate() const;

  const SpoolAdmissionOptions& options() const { return options_; }
  // Calls Decide held (kHold) so far.
  int64_t held_calls() const { return held_.load(std::memory_order_relaxed); }

 private:
  absl::Time Now() const;
  // The records written per second, on average over the seconds of the
  // window ending at `now` that had any; 0 when none had.
  double AverageRate(absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const SpoolAdmissionOptions options_;
  std::atomic<bool> spooling_{false};  // written under mu_
  std::atomic<int64_t> held_{0};
  mutable absl::Mutex mu_;
  // Records written straight to the store per second, a ring over the
  // window: second_[i] is the unix second counted in count_[i].
  std::vector<int64_t> second_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> count_ ABSL_GUARDED_BY(mu_);
  double rate_ ABSL_GUARDED_BY(mu_) = 0;  // while spooling
  // When the records admitted so far are due at the rate.
  absl::Time due_ ABSL_GUARDED_BY(mu_);
  // Where the next refused call's place goes.
  absl::Time next_place_ ABSL_GUARDED_BY(mu_);
};

}  // namespace abexp

#endif  // ABEXP_SERVER_CORE_SPOOL_ADMISSION_H_
