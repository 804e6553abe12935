// FanOut: long-lived threads that run the parts of one call in parallel,
// for RedisCluster, which sends a call's commands to every master they
// touch at once. Starting and joining a thread per master on every call
// costs more than the round trip it overlaps (clone, a stack, the join's
// wake-up, all on the core Redis may share), so the threads stay.
//
//   FanOut fan_out(/*max_threads=*/16);
//   std::vector<std::function<void()>> parts = ...;
//   fan_out.RunAll(parts);  // returns when every part has returned
//
// Bounded: at most max_threads threads, started when a call finds none idle
// and kept until the FanOut is destroyed. A part that finds every thread
// busy runs on the calling thread instead, after the parts handed off have
// started, so a burst of calls neither queues without limit nor waits for
// another call's parts: it loses only the parallelism.
//
// Thread-safe: RunAll may be called from many threads at once.
#ifndef ABEXP_SERVER_STORAGE_REDIS_FAN_OUT_H_
#define ABEXP_SERVER_STORAGE_REDIS_FAN_OUT_H_

#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"

namespace abexp {

class FanOut {
 public:
  // REQUIRES: max_threads >= 0 (0: every part runs on the caller).
  explicit FanOut(int max_threads);
  // Waits for the threads to finish the parts they run, then joins them.
  // REQUIRES: no RunAll in progress or to come.
  ~FanOut();
  FanOut(const FanOut&) = delete;
  FanOut& operator=(const FanOut&) = delete;

  // Runs parts[0] on the calling thread and the others on idle threads
  // (starting one when none is idle and fewer than max_threads run), the
  // ones no thread takes on the calling thread too; returns once every part
  // has returned.
  void RunAll(absl::Span<const absl::FunctionRef<void()>> parts)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Threads started so far (at most max_threads).
  int threads() const ABSL_LOCKS_EXCLUDED(mu_);
  // Parts run on a FanOut thread, and on the caller because every thread
  // was busy (parts[0] of each call not counted).
  int64_t handed_off() const ABSL_LOCKS_EXCLUDED(mu_);
  int64_t ran_on_caller() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // One call's parts that threads have taken and not yet finished.
  struct Group {
    int pending = 0;
  };
  struct Task {
    const absl::FunctionRef<void()>* part;
    Group* group;
  };

  void Loop() ABSL_LOCKS_EXCLUDED(mu_);
  bool HasWorkOrStopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int max_threads_;
  mutable absl::Mutex mu_;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
  std::vector<Task> tasks_ ABSL_GUARDED_BY(mu_);  // handed off, not taken
  int idle_ ABSL_GUARDED_BY(mu_) = 0;             // threads waiting for a task
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int64_t handed_off_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t ran_on_caller_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace abexp

#endif  // ABEXP_SERVER_STORAGE_REDIS_FAN_OUT_H_
