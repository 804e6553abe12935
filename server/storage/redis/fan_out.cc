#include "server/storage/redis/fan_out.h"

#include <utility>

namespace abexp {
namespace {

bool IsZero(int* n) { return *n == 0; }

}  // namespace

FanOut::FanOut(int max_threads) : max_threads_(max_threads) {}

FanOut::~FanOut() {
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    threads = std::move(threads_);
  }
  for (std::thread& thread : threads) thread.join();
}

void FanOut::RunAll(absl::Span<const absl::FunctionRef<void()>> parts) {
  if (parts.empty()) return;
  Group group;
  std::vector<size_t> on_caller;
  {
    absl::MutexLock lock(&mu_);
    for (size_t i = 1; i < parts.size(); ++i) {
      if (idle_ > 0) {
        --idle_;  // that thread is this task's
      } else if (static_cast<int>(threads_.size()) < max_threads_) {
        threads_.emplace_back([this] { Loop(); });
      } else {
        on_caller.push_back(i);
        ++ran_on_caller_;
        continue;
      }
      tasks_.push_back({&parts[i], &group});
      ++group.pending;
      ++handed_off_;
    }
  }
  parts[0]();
  for (size_t i : on_caller) parts[i]();
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(&IsZero, &group.pending));
}

void FanOut::Loop() {
  mu_.Lock();
  while (true) {
    mu_.Await(absl::Condition(this, &FanOut::HasWorkOrStopping));
    if (tasks_.empty()) break;  // stopping, nothing left to run
    const Task task = tasks_.back();
    tasks_.pop_back();
    mu_.Unlock();
    (*task.part)();
    mu_.Lock();
    --task.group->pending;
    ++idle_;
  }
  mu_.Unlock();
}

bool FanOut::HasWorkOrStopping() const { return stopping_ || !tasks_.empty(); }

int FanOut::threads() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(threads_.size());
}

int64_t FanOut::handed_off() const {
  absl::MutexLock lock(&mu_);
  return handed_off_;
}

int64_t FanOut::ran_on_caller() const {
  absl::MutexLock lock(&mu_);
  return ran_on_caller_;
}

}  // namespace abexp
