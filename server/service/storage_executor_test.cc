#include "server/service/storage_executor.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <thread>

#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace abexp {
namespace {

StorageExecutorOptions Options(int threads, int max_calls) {
  StorageExecutorOptions options;
  options.threads = threads;
  options.max_calls = max_calls;
  return options;
}

TEST(StorageExecutorTest, RefusesPastMaxCallsAndRunsWhatItAccepted) {
  std::atomic<int> ran{0};
  {
    StorageExecutor executor(Options(2, 3));
    absl::Notification release;
    absl::BlockingCounter started(2);
    auto blocked = [&] {
      started.DecrementCount();
      release.WaitForNotification();
      ++ran;
    };
    ASSERT_TRUE(executor.TrySubmit(blocked));
    ASSERT_TRUE(executor.TrySubmit(blocked));
    started.Wait();  // both threads are busy
    absl::Notification third_ran;
    ASSERT_TRUE(executor.TrySubmit([&] {
      ++ran;
      third_ran.Notify();
    }));
    EXPECT_EQ(executor.in_flight(), 3);
    // Full: two running, one queued.
    EXPECT_FALSE(
        executor.TrySubmit([&] { ADD_FAILURE() << "ran a refused task"; }));
    EXPECT_EQ(executor.in_flight(), 3);

    release.Notify();
    third_ran.WaitForNotification();
    // Room again once tasks finish.
    absl::Notification fourth_ran;
    while (!executor.TrySubmit([&] { fourth_ran.Notify(); })) {
      // Refused only while the two released tasks are still finishing.
    }
    fourth_ran.WaitForNotification();
  }
  // The three accepted tasks, once each; never the refused one.
  EXPECT_EQ(ran.load(), 3);
}

// A task that answers a caller releases its slot before it answers: the
// caller's next call, sent on the answer, finds room even while the task
// is still finishing (here: still running after its answer).
TEST(StorageExecutorTest, AReleasedSlotIsFreeBeforeTheTaskReturns) {
  StorageExecutor executor(Options(1, 1));
  absl::Notification answered;
  absl::Notification finish;
  ASSERT_TRUE(
      executor.TrySubmitReleasing([&](absl::FunctionRef<void()> release) {
        release();
        answered.Notify();  // the caller has its answer now
        finish.WaitForNotification();
      }));
  answered.WaitForNotification();
  EXPECT_EQ(executor.in_flight(), 0);
  absl::Notification next_ran;
  EXPECT_TRUE(executor.TrySubmit([&] { next_ran.Notify(); }))
      << "the caller's next call was refused for its own answered one";
  finish.Notify();
  next_ran.WaitForNotification();
}

TEST(StorageExecutorTest, DestructionRunsEveryAcceptedTask) {
  std::atomic<int> ran{0};
  absl::Notification release;
  {
    StorageExecutor executor(Options(1, 10));
    ASSERT_TRUE(executor.TrySubmit([&] {
      release.WaitForNotification();
      ++ran;
    }));
    for (int i = 0; i < 9; ++i) {
      ASSERT_TRUE(executor.TrySubmit([&] { ++ran; }));
    }
    release.Notify();
  }
  // Each accepted task finishes a call; none may be dropped.
  EXPECT_EQ(ran.load(), 10);
}

TEST(StorageExecutorTest, TasksRunAtTheRequestedNiceValueAndCallersKeepTheirs) {
  const int before = getpriority(PRIO_PROCESS, 0);
  ASSERT_LT(before, 10) << "the test needs a process not already niced";
  StorageExecutorOptions options = Options(2, 2);
  options.nice = 10;
  StorageExecutor executor(options);
  std::atomic<int> seen{-100};
  absl::Notification ran;
  ASSERT_TRUE(executor.TrySubmit([&] {
    seen = getpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)));
    ran.Notify();
  }));
  ran.WaitForNotification();
  EXPECT_EQ(seen.load(), 10);
  EXPECT_EQ(getpriority(PRIO_PROCESS, 0), before);
}

TEST(StorageExecutorTest, ADelayedTaskHoldsItsSlotAndNoThread) {
  std::atomic<int> ran{0};
  {
    StorageExecutor executor(Options(1, 2));
    // Due in an hour: it keeps its slot, but the one thread stays free.
    ASSERT_TRUE(executor.TrySubmitReleasingAfter(
        absl::Hours(1), [&](absl::FunctionRef<void()>) { ++ran; }));
    absl::Notification done;
    ASSERT_TRUE(executor.TrySubmit([&] { done.Notify(); }));
    done.WaitForNotification();
    // That task gives its slot back just after it returns, so a moment
    // after `done`: wait for that, with a deadline.
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (executor.in_flight() != 1 && absl::Now() < deadline) {
      std::this_thread::yield();
    }
    EXPECT_EQ(ran.load(), 0);
    EXPECT_EQ(executor.in_flight(), 1);
    // The delayed task's slot is taken: one more fits, not two.
    absl::Notification release;
    ASSERT_TRUE(executor.TrySubmit([&] { release.WaitForNotification(); }));
    EXPECT_FALSE(executor.TrySubmit([] {}));
    release.Notify();
  }
  // Destruction does not wait an hour, nor drop the task: it runs at once.
  EXPECT_EQ(ran.load(), 1);
}

TEST(StorageExecutorTest, ADelayedTaskRunsOnceDueBeforeLaterOnes) {
  std::atomic<int> ran_later{0};
  {
    StorageExecutor executor(Options(2, 4));
    ASSERT_TRUE(executor.TrySubmitReleasingAfter(
        absl::Hours(1), [&](absl::FunctionRef<void()>) { ++ran_later; }));
    // Due sooner than the one before it: the timer does not sleep the hour.
    absl::Notification sooner;
    ASSERT_TRUE(executor.TrySubmitReleasingAfter(
        absl::Milliseconds(1),
        [&](absl::FunctionRef<void()>) { sooner.Notify(); }));
    EXPECT_TRUE(sooner.WaitForNotificationWithTimeout(absl::Seconds(60)));
    EXPECT_EQ(ran_later.load(), 0);
  }
  EXPECT_EQ(ran_later.load(), 1);
}

}  // namespace
}  // namespace abexp
