// A PublishedSnapshot<T> holds the current version of a value that is
// replaced whole on reload (the served config, the token table), for
// readers on every call.
//
// Readers call Get() and keep the returned shared_ptr for as long as they
// use it, so a reload never changes what a call sees half-way. Get() takes
// no lock while the value is unchanged: each thread caches, per snapshot,
// the value it last read under mu_ and the snapshot's generation at that
// time; while the generation is unchanged the cached value is still
// current_. (C++17 has no std::atomic<std::shared_ptr>, and libstdc++'s
// std::atomic_load on a shared_ptr takes a mutex from a small global pool.)
// The first read after a Publish takes the reader lock once per thread.
//
// The cache holds weak_ptrs: it never keeps a replaced value, or a destroyed
// snapshot's value, alive (only its control block, until the entry is
// overwritten or the thread exits), so values are freed exactly when their
// last reader lets go, however many reloads happen. Entries are keyed by
// the snapshot's process-unique id, never its address.
//
// Thread-safe: all methods may be called concurrently.
#ifndef ABEXP_SERVER_CORE_PUBLISHED_SNAPSHOT_H_
#define ABEXP_SERVER_CORE_PUBLISHED_SNAPSHOT_H_

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace abexp {

// A process-unique id, never 0 and never reused: names a PublishedSnapshot
// in the per-thread caches.
uint64_t NextPublishedSnapshotId();

template <typename T>
class PublishedSnapshot {
 public:
  // REQUIRES: initial is not null.
  explicit PublishedSnapshot(std::shared_ptr<const T> initial)
      : id_(NextPublishedSnapshotId()), current_(std::move(initial)) {}

  PublishedSnapshot(const PublishedSnapshot&) = delete;
  PublishedSnapshot& operator=(const PublishedSnapshot&) = delete;

  // The value published last. Never null. Lock-free while it is unchanged:
  // one atomic load and one reference-count increment. A thread's first
  // call, its first after each Publish (or after it read several other
  // snapshots), also takes a reader lock that Publish holds only for the
  // swap.
  std::shared_ptr<const T> Get() const ABSL_LOCKS_EXCLUDED(mu_) {
    // A Publish that finished before this call has bumped generation_, so
    // the cached entry misses and the slow path reads the new current_.
    const uint64_t generation = generation_.load(std::memory_order_acquire);
    Cached& cached = ThreadCache()[id_ % kCacheSize];
    if (cached.id == id_ && cached.generation == generation) {
      // Fails only when a Publish replaced the value and every holder
      // released it after the load above: then it is not current anyway.
      if (std::shared_ptr<const T> value = cached.value.lock()) return value;
    }
    std::shared_ptr<const T> value;
    {
      absl::ReaderMutexLock lock(&mu_);
      value = current_;
      // Read under mu_, so it is the generation of `value`.
      cached.generation = generation_.load(std::memory_order_relaxed);
    }
    cached.id = id_;
    cached.value = value;
    return value;
  }

  // Makes `value` what Get() returns from now on.
  // REQUIRES: value is not null.
  void Publish(std::shared_ptr<const T> value) ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      current_.swap(value);
      generation_.store(generation_.load(std::memory_order_relaxed) + 1,
                        std::memory_order_release);
    }
    // `value`, now the old one, is released here, outside the lock: the
    // last reader of a value frees it, never a reader waiting on mu_.
  }

 private:
  struct Cached {
    uint64_t id = 0;  // 0 is no snapshot's id: the entry is empty
    uint64_t generation = 0;
    std::weak_ptr<const T> value;
  };
  // A few entries, chosen by id, so that a thread alternating between two
  // snapshots of one type (tests do) rarely evicts one's entry for the
  // other's.
  static constexpr size_t kCacheSize = 4;
  static std::array<Cached, kCacheSize>& ThreadCache() {
    thread_local std::array<Cached, kCacheSize> cache;
    return cache;
  }

  const uint64_t id_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const T> current_ ABSL_GUARDED_BY(mu_);
  // Incremented, with mu_ held, each time current_ is replaced. Read
  // without the lock by Get() to tell whether its thread's cached value is
  // still current_.
  std::atomic<uint64_t> generation_{0};
};

}  // namespace abexp

#endif  // ABEXP_SERVER_CORE_PUBLISHED_SNAPSHOT_H_
