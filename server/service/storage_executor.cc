#include "server/service/storage_executor.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <utility>

namespace abexp {

StorageExecutor::StorageExecutor(StorageExecutorOptions options)
    : options_(options) {
  threads_.reserve(options_.threads);
  for (int i = 0; i < options_.threads; ++i) {
    threads_.emplace_back([this] { Work(); });
  }
}

StorageExecutor::~StorageExecutor() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : threads_) t.join();
}

bool StorageExecutor::TrySubmit(std::function<void()> task) {
  return TrySubmitReleasing(
      [task = std::move(task)](absl::FunctionRef<void()>) { task(); });
}

bool StorageExecutor::TrySubmitReleasing(Releasing task) {
  absl::MutexLock lock(&mu_);
  if (stopping_ || in_flight_ >= options_.max_calls) return false;
  ++in_flight_;
  queue_.push_back(std::move(task));
  return true;
}

int StorageExecutor::in_flight() const {
  absl::MutexLock lock(&mu_);
  return in_flight_;
}

void StorageExecutor::Work() {
  if (options_.nice != 0) {
    // Linux: a thread's nice value is its own, set by its thread id.
    const id_t tid = static_cast<id_t>(syscall(SYS_gettid));
    if (setpriority(PRIO_PROCESS, tid, options_.nice) != 0) {
      std::perror("abexp-server: cannot lower the storage threads' priority");
    }
  }
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || !queue_.empty();
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
