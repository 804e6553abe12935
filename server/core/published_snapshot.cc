#include "server/core/published_snapshot.h"

#include <atomic>
#include <cstdint>

namespace abexp {

uint64_t NextPublishedSnapshotId() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace abexp
