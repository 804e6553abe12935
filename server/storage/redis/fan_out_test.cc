#include "server/storage/redis/fan_out.h"

#include <atomic>
#include <functional>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace abexp {
namespace {

// RunAll over `n` copies of `part`.
void RunCopies(FanOut& fan_out, int n, const std::function<void()>& part) {
  std::vector<absl::FunctionRef<void()>> parts(n, part);
  fan_out.RunAll(parts);
}

// Counts parts that have started; each waits (up to a deadline) until
// `want` have, so they only all finish in time when they run at once.
class Rendezvous {
 public:
  explicit Rendezvous(int want) : want_(want) {}
  // True if all `want` parts arrived within 30 s.
  bool Arrive() {
    absl::MutexLock lock(&mu_);
    ++arrived_;
    auto all_here = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return arrived_ >= want_;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&all_here), absl::Seconds(30));
  }

 private:
  const int want_;
  absl::Mutex mu_;
  int arrived_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST(FanOutTest, RunsACallsPartsAtOnceAndReturnsWhenAllHaveReturned) {
  FanOut fan_out(8);
  Rendezvous rendezvous(4);
  std::atomic<int> met{0}, returned{0};
  RunCopies(fan_out, 4, [&] {
    if (rendezvous.Arrive()) ++met;
    ++returned;
  });
  // Every part was running while the others were: none waited for another
  // to finish first, and RunAll came back only after the last.
  EXPECT_EQ(met.load(), 4);
  EXPECT_EQ(returned.load(), 4);
  EXPECT_EQ(fan_out.handed_off(), 3);
  EXPECT_EQ(fan_out.ran_on_caller(), 0);
}

TEST(FanOutTest, KeepsItsThreadsForTheNextCalls) {
  FanOut fan_out(8);
  std::atomic<int> runs{0};
  for (int call = 0; call < 50; ++call) {
    RunCopies(fan_out, 3, [&] { ++runs; });
  }
  EXPECT_EQ(runs.load(), 150);
  // Two parts of each call went to threads; the same two threads took them
  // every time (a call returns only after its threads are idle again).
  EXPECT_EQ(fan_out.threads(), 2);
  EXPECT_EQ(fan_out.handed_off(), 100);
}

TEST(FanOutTest, PartsNoThreadTakesRunOnTheCaller) {
  FanOut fan_out(1);
  const std::thread::id caller = std::this_thread::get_id();
  std::atomic<int> on_caller{0}, elsewhere{0};
  RunCopies(fan_out, 4, [&] {
    (std::this_thread::get_id() == caller ? on_caller : elsewhere)++;
  });
  EXPECT_EQ(on_caller.load(), 3);  // the first part, and two no thread took
  EXPECT_EQ(elsewhere.load(), 1);
  EXPECT_EQ(fan_out.threads(), 1);
  EXPECT_EQ(fan_out.ran_on_caller(), 2);
}

TEST(FanOutTest, WithNoThreadsEverythingRunsOnTheCaller) {
  FanOut fan_out(0);
  const std::thread::id caller = std::this_thread::get_id();
  int on_caller = 0;
  RunCopies(fan_out, 5, [&] {
    if (std::this_thread::get_id() == caller) ++on_caller;
  });
  EXPECT_EQ(on_caller, 5);
  EXPECT_EQ(fan_out.threads(), 0);
}

TEST(FanOutTest, ManyCallersAtOnceRunEveryPartOnceWithinTheBound) {
  FanOut fan_out(4);
  std::atomic<int64_t> runs{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 8; ++c) {
    callers.emplace_back([&] {
      for (int call = 0; call < 300; ++call) {
        RunCopies(fan_out, 3, [&] { ++runs; });
      }
    });
  }
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(runs.load(), 8 * 300 * 3);
  EXPECT_LE(fan_out.threads(), 4);
  EXPECT_EQ(fan_out.handed_off() + fan_out.ran_on_caller(), 8 * 300 * 2);
}

}  // namespace
}  // namespace abexp
