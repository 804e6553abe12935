#include "server/core/call_scope.h"

#include <thread>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace abexp {
namespace {

TEST(CallScope, OutsideAnyScopeThereIsNoDeadlineAndNoCancellation) {
  EXPECT_EQ(CallScope::Deadline(), absl::InfiniteFuture());
  EXPECT_FALSE(CallScope::Cancelled());
}

TEST(CallScope, TheInnermostScopeCountsAndClosingRestoresTheOuter) {
  const absl::Time outer_deadline = absl::FromUnixSeconds(2000000000);
  const absl::Time inner_deadline = outer_deadline - absl::Seconds(5);
  bool outer_cancelled = true;
  CallScope outer(outer_deadline, [&] { return outer_cancelled; });
  EXPECT_EQ(CallScope::Deadline(), outer_deadline);
  EXPECT_TRUE(CallScope::Cancelled());
  {
    CallScope inner(inner_deadline, nullptr);  // no cancellation to ask
    EXPECT_EQ(CallScope::Deadline(), inner_deadline);
    EXPECT_FALSE(CallScope::Cancelled());
  }
  EXPECT_EQ(CallScope::Deadline(), outer_deadline);
  outer_cancelled = false;
  EXPECT_FALSE(CallScope::Cancelled());
}

TEST(CallScope, AScopeIsItsThreadsOnly) {
  CallScope scope(absl::Now(), [] { return true; });
  absl::Time seen = absl::InfinitePast();
  bool cancelled = true;
  std::thread other([&] {
    seen = CallScope::Deadline();
    cancelled = CallScope::Cancelled();
  });
  other.join();
  EXPECT_EQ(seen, absl::InfiniteFuture());
  EXPECT_FALSE(cancelled);
}

}  // namespace
}  // namespace abexp
