#include "server/core/spool_admission.h"

#include <memory>
#include <optional>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace abexp {
namespace {

// A clock the test moves by hand.
struct TestClock {
  absl::Time now = absl::FromUnixSeconds(1800000000);
  std::function<absl::Time()> fn() {
    return [this] { return now; };
  }
};

SpoolAdmissionOptions OptionsWith(TestClock* clock) {
  SpoolAdmissionOptions options;
  options.clock = clock->fn();
  return options;
}

// A SpoolAdmission at `rate` records/s with `burst`, told that a call was
// spooled, so that the bound holds.
std::unique_ptr<SpoolAdmission> Spooling(
    TestClock* clock, double rate, absl::Duration burst,
    absl::Duration max_retry_delay = absl::Seconds(1)) {
  SpoolAdmissionOptions options = OptionsWith(clock);
  options.rate = rate;
  options.burst = burst;
  options.max_retry_delay = max_retry_delay;
  auto admission = std::make_unique<SpoolAdmission>(options);
  admission->Note(0, 1);
  return admission;
}

TEST(SpoolAdmission, AdmitsEverythingWhileNothingIsSpooled) {
  TestClock clock;
  SpoolAdmission admission(OptionsWith(&clock));
  for (int i = 0; i < 100000; ++i) {
    ASSERT_EQ(admission.Admit(1000), std::nullopt);
  }
  admission.Note(/*direct=*/5000, /*spooled=*/0);
  EXPECT_EQ(admission.Admit(50000), std::nullopt);
  EXPECT_FALSE(admission.spooling());
  EXPECT_EQ(admission.rate(), 0);
}

TEST(SpoolAdmission, TheAutomaticRateIsHalfTheRecentAverageOfBusySeconds) {
  TestClock clock;
  SpoolAdmission admission(OptionsWith(&clock));
  admission.Note(2000, 0);
  admission.Note(1000, 0);  // 3,000 in this second
  clock.now += absl::Seconds(1);
  admission.Note(1200, 0);
  clock.now += absl::Seconds(1);  // a second with nothing written
  admission.Note(0, 20);
  EXPECT_TRUE(admission.spooling());
  // (3,000 + 1,200) / 2 busy seconds, halved.
  EXPECT_EQ(admission.rate(), 1050);
}

TEST(SpoolAdmission, WritesOlderThanTheWindowDoNotCount) {
  TestClock clock;
  SpoolAdmissionOptions options = OptionsWith(&clock);
  options.window = absl::Seconds(10);
  options.floor = 100;
  SpoolAdmission admission(options);
  admission.Note(9000, 0);
  clock.now += absl::Seconds(5);
  admission.Note(400, 0);
  clock.now += absl::Seconds(7);  // the 9,000 are 12 s old
  admission.Note(0, 1);
  EXPECT_EQ(admission.rate(), 200);
}

// The bound once spooling begins, after `written` records went straight to
// the store in one second, with `floor` and a given `rate` (0: automatic).
double RateAfter(double floor, double rate, int64_t written) {
  TestClock clock;
  SpoolAdmissionOptions options = OptionsWith(&clock);
  options.floor = floor;
  options.rate = rate;
  SpoolAdmission admission(options);
  admission.Note(written, 0);
  admission.Note(0, 1);
  return admission.rate();
}

TEST(SpoolAdmission, TheFloorHoldsWhenLittleWasWritten) {
  EXPECT_EQ(RateAfter(/*floor=*/1500, /*rate=*/0, /*written=*/10), 1500);
  EXPECT_EQ(RateAfter(/*floor=*/1500, /*rate=*/0, /*written=*/4000), 2000);
}

TEST(SpoolAdmission, AGivenRateOverridesTheMeasuredOneAndTheFloor) {
  EXPECT_EQ(RateAfter(/*floor=*/1000, /*rate=*/250, /*written=*/100000), 250);
  EXPECT_EQ(RateAfter(/*floor=*/1000, /*rate=*/5000, /*written=*/10), 5000);
}

TEST(SpoolAdmission, AdmitsTheBurstAtOnceThenRefusesWithConsecutivePlaces) {
  TestClock clock;
  // 1,000 records/s: a call of 20 costs 20 ms.
  std::unique_ptr<SpoolAdmission> spooling =
      Spooling(&clock, 1000, absl::Milliseconds(100));
  SpoolAdmission& admission = *spooling;
  // Admitted while the records before are due within 100 ms: at 0, 20, 40,
  // 60, 80 and 100 ms, six calls.
  for (int i = 0; i < 6; ++i) {
    ASSERT_EQ(admission.Admit(20), std::nullopt) << "call " << i;
  }
  // Due at 120 ms: the next fits at 20 ms, the one after at 40 ms.
  EXPECT_EQ(admission.Admit(20), absl::Milliseconds(20));
  EXPECT_EQ(admission.Admit(20), absl::Milliseconds(40));
  EXPECT_EQ(admission.Admit(20), absl::Milliseconds(60));
}

TEST(SpoolAdmission, ClientsThatWaitAsToldAreAdmittedAtTheRate) {
  TestClock clock;
  std::unique_ptr<SpoolAdmission> spooling =
      Spooling(&clock, 1000, absl::ZeroDuration());
  SpoolAdmission& admission = *spooling;
  ASSERT_EQ(admission.Admit(10), std::nullopt);  // due at 10 ms
  // Five clients refused at once, each given its own place 10 ms apart.
  std::optional<absl::Duration> waits[5];
  for (auto& wait : waits) {
    wait = admission.Admit(10);
    ASSERT_TRUE(wait.has_value());
  }
  const absl::Time refused_at = clock.now;
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(*waits[i], absl::Milliseconds(10 * (i + 1))) << "client " << i;
    clock.now = refused_at + *waits[i];
    EXPECT_EQ(admission.Admit(10), std::nullopt) << "client " << i;
  }
  // 60 records admitted over 50 ms: the burst of one call plus the rate.
}

TEST(SpoolAdmission, RetryDelaysAreCappedAndThenReserveNothing) {
  TestClock clock;
  std::unique_ptr<SpoolAdmission> spooling =
      Spooling(&clock, 1000, absl::ZeroDuration(), absl::Milliseconds(50));
  SpoolAdmission& admission = *spooling;
  ASSERT_EQ(admission.Admit(40), std::nullopt);            // due at 40 ms
  EXPECT_EQ(admission.Admit(40), absl::Milliseconds(40));  // place 40-80 ms
  EXPECT_EQ(admission.Admit(40), absl::Milliseconds(50));  // 80 ms: capped
  EXPECT_EQ(admission.Admit(40), absl::Milliseconds(50));
  // The capped ones took no place: the next place is still at 80 ms.
  clock.now += absl::Milliseconds(40);
  ASSERT_EQ(admission.Admit(40), std::nullopt);  // due at 80 ms
  EXPECT_EQ(admission.Admit(40), absl::Milliseconds(40));
}

TEST(SpoolAdmission, AWriteThatReachesTheStoreEndsTheBound) {
  TestClock clock;
  std::unique_ptr<SpoolAdmission> spooling =
      Spooling(&clock, 10, absl::Milliseconds(100));
  SpoolAdmission& admission = *spooling;
  ASSERT_EQ(admission.Admit(1000), std::nullopt);
  ASSERT_NE(admission.Admit(1000), std::nullopt);
  admission.Note(20, 0);
  EXPECT_FALSE(admission.spooling());
  EXPECT_EQ(admission.Admit(1000), std::nullopt);
  EXPECT_EQ(admission.Admit(1000), std::nullopt);
  // A call that wrote nothing (all its records ignored) changes nothing.
  admission.Note(0, 0);
  EXPECT_FALSE(admission.spooling());
}

TEST(SpoolAdmission, ACallTheBoundAdmitsWithinTheHoldIsHeldNotRefused) {
  TestClock clock;
  // 100 records/s, 100 ms ahead: a call of 20 records is due every 200 ms.
  SpoolAdmissionOptions options = OptionsWith(&clock);
  options.rate = 100;
  options.burst = absl::Milliseconds(100);
  options.max_hold = absl::Seconds(1);
  auto admission = std::make_unique<SpoolAdmission>(options);
  admission->Note(0, 1);
  using Kind = SpoolAdmission::Decision::Kind;
  EXPECT_EQ(admission->Decide(20, absl::Seconds(1)).kind, Kind::kNow);
  // The next one would be admitted 100 ms from now: held that long.
  SpoolAdmission::Decision held = admission->Decide(20, absl::Seconds(1));
  EXPECT_EQ(held.kind, Kind::kHold);
  EXPECT_EQ(held.wait, absl::Milliseconds(100));
  // Its place is taken: the one after it waits 200 ms more.
  held = admission->Decide(20, absl::Seconds(1));
  EXPECT_EQ(held.kind, Kind::kHold);
  EXPECT_EQ(held.wait, absl::Milliseconds(300));
  EXPECT_EQ(admission->held_calls(), 2);
  // Past the caller's hold (here 400 ms; options.max_hold caps it), the
  // call is refused with a retry delay instead, and takes no place among
  // the admitted.
  const SpoolAdmission::Decision refused =
      admission->Decide(20, absl::Milliseconds(400));
  EXPECT_EQ(refused.kind, Kind::kRefuse);
  EXPECT_EQ(refused.wait, absl::Milliseconds(500));
  EXPECT_EQ(admission->held_calls(), 2);
}

TEST(SpoolAdmission, WithoutAHoldEveryCallOverTheBoundIsRefused) {
  TestClock clock;
  SpoolAdmissionOptions options = OptionsWith(&clock);
  options.rate = 100;
  options.max_hold = absl::ZeroDuration();
  SpoolAdmission admission(options);
  admission.Note(0, 1);
  using Kind = SpoolAdmission::Decision::Kind;
  EXPECT_EQ(admission.Decide(20, absl::Seconds(1)).kind, Kind::kNow);
  EXPECT_EQ(admission.Decide(20, absl::Seconds(1)).kind, Kind::kRefuse);
  EXPECT_EQ(admission.held_calls(), 0);
}

}  // namespace
}  // namespace abexp
