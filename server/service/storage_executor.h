// A StorageExecutor runs the part of a call that may wait on storage (a
// Redis round trip, the wait for a pool connection, the spool's fsync) on
// threads of its own, so that gRPC's callback threads never wait: the gRPC
// callback API requires reactions not to block, and when they do, every
// callback thread ends up parked on Redis and nothing else, not even a
// plain Assign, is served.
//
// It is bounded: at most `max_calls` tasks are queued or running at once.
// Past that, TrySubmit refuses the task and the caller answers
// RESOURCE_EXHAUSTED, so a stuck Redis costs a bounded number of threads
// and a bounded amount of memory, never an unbounded queue.
//
//   StorageExecutor executor(StorageExecutorOptions{});  // 16 threads, 256
//   if (!executor.TrySubmit([call] { call->Run(); })) call->Refuse();
//
// A task may also be queued to start after a delay (TrySubmitReleasingAfter):
// it holds its slot meanwhile, and no thread waits for it but one timer
// thread, which moves it to the queue when it is due.
//
// Thread-safe. The destructor stops taking tasks, runs every task already
// accepted (a delayed one at once), and joins the threads.
#ifndef ABEXP_SERVER_SERVICE_STORAGE_EXECUTOR_H_
#define ABEXP_SERVER_SERVICE_STORAGE_EXECUTOR_H_

#include <deque>
#include <functional>
#include <map>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace abexp {

struct StorageExecutorOptions {
  // Threads that run tasks. Default: 16.
  int threads = 16;
  // Tasks queued or running at once, at least `threads`. Default: 256.
  int max_calls = 256;
  // The threads' nice value (setpriority), 0 to 19 (the timer thread of
  // delayed tasks too): above 0, the threads
  // serving calls that need no storage (plain Assign) get the CPU first
  // when both want it. Default: 0, as the process.
  int nice = 0;
};

class StorageExecutor {
 public:
  // REQUIRES: options.threads >= 1 and options.max_calls >= options.threads.
  explicit StorageExecutor(StorageExecutorOptions options);
  ~StorageExecutor();

  StorageExecutor(const StorageExecutor&) = delete;
  StorageExecutor& operator=(const StorageExecutor&) = delete;

  // Queues `task` to run on one of the threads and returns true, or returns
  // false without running it when max_calls tasks are already queued or
  // running (or the executor is being destroyed).
  bool TrySubmit(std::function<void()> task);

  // As TrySubmit, for a task that answers a caller: it calls release() once
  // its storage work is done and before it answers, so that the slot is
  // free again by the time the caller has the answer (a client sending one
  // call after another is never refused for its own finished call). The
  // slot is released when the task returns if the task did not.
  using Releasing = std::function<void(absl::FunctionRef<void()> release)>;
  bool TrySubmitReleasing(Releasing task);
  // As TrySubmitReleasing, for a task that is to start once `delay` has
  // passed (at once when it is not positive). It counts as queued meanwhile.
  bool TrySubmitReleasingAfter(absl::Duration delay, Releasing task);

  // Tasks queued or running now.
  int in_flight() const;

  const StorageExecutorOptions& options() const { return options_; }

 private:
  void Work();
  // Gives the calling thread options_.nice.
  void SetNice() const;
  // Moves delayed tasks to queue_ when they are due (all of them once
  // stopping).
  void RunTimer();

  const StorageExecutorOptions options_;
  mutable absl::Mutex mu_;
  std::deque<Releasing> queue_ ABSL_GUARDED_BY(mu_);
  // Delayed tasks by when they are due; equal times in submission order.
  std::multimap<absl::Time, Releasing> delayed_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;  // queued + running, not released
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
  std::thread timer_;
};

}  // namespace abexp

#endif  // ABEXP_SERVER_SERVICE_STORAGE_EXECUTOR_H_
