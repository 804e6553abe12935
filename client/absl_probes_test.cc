// The promise of client/absl_probes.h, which gRPC's connect relies on: once
// the probes ran (here before main, as in every test binary), the first
// absl::Mutex lock that has to queue leaves errno as it was. Without them,
// that lock reads /sys files, and on a machine without
// /sys/devices/system/cpu/cpu0/tsc_freq_khz (most) or without /sys (a
// chroot) it leaves ENOENT behind. ctest runs each test in its own process,
// so the queued lock below is the process's first.

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"

namespace abexp {
namespace {

// Whether thread `tid` of this process is blocked in futex(2): a Mutex
// waiter that has queued and sleeps (MutexDelay's short sleeps between spins
// are nanosleeps, not this). From /proc/self/task/TID/syscall, whose first
// field is the number of the system call the thread is blocked in.
bool InFutexWait(pid_t tid) {
  std::ifstream in(absl::StrCat("/proc/self/task/", tid, "/syscall"));
  long number = -1;
  return (in >> number) && number == SYS_futex;
}

TEST(AbslProbes, TheFirstQueuedMutexLockLeavesErrnoAlone) {
  absl::Mutex mu;
  std::atomic<bool> held{false};
  std::atomic<pid_t> locker{0};
  // Holds mu until the test thread, having asked for it, sleeps in futex:
  // it has given up spinning and queued (Enqueue reads the CPU frequency
  // the first time any thread does), the path that runs the probes when
  // they have not run. This thread never waits on a Mutex, so
  // the test thread's queued lock is the process's first.
  std::thread holder([&] {
    mu.Lock();
    held.store(true);
    pid_t tid;
    while ((tid = locker.load()) == 0) std::this_thread::yield();
    while (!InFutexWait(tid)) std::this_thread::yield();
    mu.Unlock();
  });
  while (!held.load()) std::this_thread::yield();
  errno = EINPROGRESS;  // what gRPC's non-blocking connect() left
  locker.store(static_cast<pid_t>(syscall(SYS_gettid)));
  mu.Lock();
  const int after = errno;
  mu.Unlock();
  holder.join();
  EXPECT_EQ(after, EINPROGRESS)
      << "errno became " << after << " (" << std::strerror(after) << ")";
}

}  // namespace
}  // namespace abexp
