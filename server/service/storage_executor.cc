#include "server/service/storage_executor.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <utility>

#include "absl/time/clock.h"

namespace abexp {

StorageExecutor::StorageExecutor(StorageExecutorOptions options)
    : options_(options) {
  threads_.reserve(options_.threads);
  for (int i = 0; i < options_.threads; ++i) {
    threads_.emplace_back([this] { Work(); });
  }
  timer_ = std::thread([this] { RunTimer(); });
}

StorageExecutor::~StorageExecutor() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  timer_.join();
  for (std::thread& t : threads_) t.join();
}

bool StorageExecutor::TrySubmit(std::function<void()> task) {
  return TrySubmitReleasing(
      [task = std::move(task)](absl::FunctionRef<void()>) { task(); });
}

bool StorageExecutor::TrySubmitReleasing(Releasing task) {
  return TrySubmitReleasingAfter(absl::ZeroDuration(), std::move(task));
}

bool StorageExecutor::TrySubmitReleasingAfter(absl::Duration delay,
                                              Releasing task) {
  const absl::Time due =
      delay > absl::ZeroDuration() ? absl::Now() + delay : absl::Time();
  absl::MutexLock lock(&mu_);
  if (stopping_ || in_flight_ >= options_.max_calls) return false;
  ++in_flight_;
  if (delay > absl::ZeroDuration()) {
    delayed_.emplace(due, std::move(task));
  } else {
    queue_.push_back(std::move(task));
  }
  return true;
}

void StorageExecutor::SetNice() const {
  if (options_.nice == 0) return;
  // Linux: a thread's nice value is its own, set by its thread id.
  const id_t tid = static_cast<id_t>(syscall(SYS_gettid));
  if (setpriority(PRIO_PROCESS, tid, options_.nice) != 0) {
    std::perror("abexp-server: cannot lower the storage threads' priority");
  }
}

void StorageExecutor::RunTimer() {
  SetNice();
  absl::MutexLock lock(&mu_);
  while (true) {
    const absl::Time now = absl::Now();
    while (!delayed_.empty() && (stopping_ || delayed_.begin()->first <= now)) {
      queue_.push_back(std::move(delayed_.begin()->second));
      delayed_.erase(delayed_.begin());
    }
    if (stopping_) return;
    // Sleeps until the first delayed task is due, or an earlier one (or
    // the stop) comes.
    const absl::Time wake =
        delayed_.empty() ? absl::InfiniteFuture() : delayed_.begin()->first;
    auto changed = [this, wake]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ || (!delayed_.empty() && delayed_.begin()->first < wake);
    };
    mu_.AwaitWithDeadline(absl::Condition(&changed), wake);
  }
}

int StorageExecutor::in_flight() const {
  absl::MutexLock lock(&mu_);
  return in_flight_;
}

void StorageExecutor::Work() {
  SetNice();
  // Once stopping, a thread leaves when nothing is queued or delayed (the
  // timer thread queues what is delayed).
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return (stopping_ && delayed_.empty()) || !queue_.empty();
  };
  while (true) {
    Releasing task;
    {
      absl::MutexLock lock(&mu_, absl::Condition(&ready));
      // Accepted tasks run even when stopping: each finishes a call.
      if (queue_.empty()) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    bool released = false;
    auto release = [this, &released] {
      if (released) return;
      released = true;
      absl::MutexLock lock(&mu_);
      --in_flight_;
    };
    task(release);
    release();
  }
}

}  // namespace abexp
