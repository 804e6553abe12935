// The request path with a real abexp-server and a frozen real redis-server
// (SIGSTOP, as a Redis stuck on a slow disk or behind a partition): calls
// that wait on storage run on the server's storage executor, bounded by
// --storage_max_calls, so plain Assign, Explain and List keep being served
// by gRPC's threads; calls past the bound are refused at once with
// RESOURCE_EXHAUSTED and nothing of them is done; and after SIGCONT every
// accepted call is counted exactly once.
#include <signal.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "abexp/v1/assignment.grpc.pb.h"
#include "abexp/v1/recording.grpc.pb.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/testing/recording_test_util.h"

namespace abexp {
namespace {

using ::abexp::testing::RecordingServerTest;
using ::abexp::testing::SetDeadline;
using ::abexp::testing::ToProto;
using ::abexp::testing::User;
using ::testing::HasSubstr;

constexpr char kConfig[] = R"yaml(
metrics:
  - key: order_conversion
    type: binomial
    event: order_completed

experiments:
  - key: checkout
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [order_conversion]
    primary_metric: order_conversion
)yaml";

constexpr int kStorageThreads = 4;
constexpr int kStorageMaxCalls = 8;
constexpr int kRecordingCalls = 48;
constexpr int kUsersPerCall = 5;

class RequestPathTest : public RecordingServerTest {
 protected:
  RequestPathTest() : RecordingServerTest(kConfig, "request-path") {}

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(RecordingServerTest::SetUp());
    // Redis waits long enough that a frozen Redis holds the accepted calls
    // for the whole test, instead of failing them over to the spool.
    ASSERT_NO_FATAL_FAILURE(
        StartServer({absl::StrCat("--storage_threads=", storage_threads_),
                     absl::StrCat("--storage_max_calls=", storage_max_calls_),
                     "--redis_command_timeout=120s"}));
  }

  // RecordExposures of Exposures(prefix) with `deadline`.
  grpc::Status RecordWithin(const std::string& prefix,
                            absl::Duration deadline) {
    grpc::ClientContext context;
    SetDeadline(&context, deadline);
    v1::RecordExposuresResponse response;
    return record_->RecordExposures(&context, Exposures(prefix), &response);
  }

  int storage_threads_ = kStorageThreads;
  int storage_max_calls_ = kStorageMaxCalls;

  // Exposes users `prefix`0 .. `prefix`(kUsersPerCall-1) to control.
  v1::RecordExposuresRequest Exposures(const std::string& prefix) const {
    v1::RecordExposuresRequest request;
    for (int i = 0; i < kUsersPerCall; ++i) {
      v1::ExposureRecord* e = request.add_exposures();
      e->set_experiment_key("checkout");
      e->set_variant_key("control");
      *e->mutable_unit() = User(absl::StrCat(prefix, i));
      *e->mutable_time() = ToProto(absl::Now() - absl::Minutes(1));
    }
    return request;
  }

  int64_t ExposedToControl() const {
    absl::StatusOr<ExperimentAggregates> a = ReadAggregates("checkout");
    if (!a.ok() || a->variants.empty()) return -1;
    return a->variants[0].exposed;
  }
};

TEST_F(RequestPathTest, FrozenRedisParksOnlyRecordingAndBoundsIt) {
  // Connected and counted before Redis freezes.
  ASSERT_NO_FATAL_FAILURE(ExposeUsers("checkout", "control", "warm", 5,
                                      absl::Now() - absl::Minutes(1)));
  ASSERT_EQ(ExposedToControl(), 5);

  ASSERT_TRUE(redis_->Signal(SIGSTOP).ok());
  absl::Mutex mu;
  std::vector<grpc::Status> statuses(kRecordingCalls);
  std::vector<bool> done(kRecordingCalls, false);
  int refused = 0;
  int completed = 0;
  std::vector<std::thread> callers;
  for (int c = 0; c < kRecordingCalls; ++c) {
    callers.emplace_back([&, c] {
      grpc::ClientContext context;
      SetDeadline(&context, absl::Seconds(110));
      v1::RecordExposuresResponse response;
      const grpc::Status status = record_->RecordExposures(
          &context, Exposures(absl::StrCat("call", c, "-")), &response);
      absl::MutexLock lock(&mu);
      statuses[c] = status;
      done[c] = true;
      ++completed;
      if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
        ++refused;
      }
    });
  }

  // Exactly --storage_max_calls calls are taken and park on the frozen
  // Redis; every other one is refused at once.
  {
    absl::MutexLock lock(&mu);
    auto all_others_refused = [&] {
      mu.AssertHeld();
      return refused == kRecordingCalls - kStorageMaxCalls;
    };
    EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all_others_refused),
                                    absl::Seconds(60)))
        << refused << " of " << kRecordingCalls
        << " recording calls were refused while Redis was frozen; want "
        << kRecordingCalls - kStorageMaxCalls
        << " (all but --storage_max_calls)";
  }

  // Calls that need no storage are served meanwhile.
  for (int i = 0; i < 20; ++i) {
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(10));
    v1::AssignRequest request;
    *request.mutable_unit() = User(absl::StrCat("plain", i));
    v1::AssignResponse response;
    const grpc::Status status = assign_->Assign(&context, request, &response);
    ASSERT_TRUE(status.ok())
        << "Assign " << i << ": " << status.error_message();
    EXPECT_EQ(response.assignments_size(), 1);
  }
  {
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(10));
    v1::ExplainAssignmentRequest request;
    *request.mutable_unit() = User("plain0");
    request.set_experiment_key("checkout");
    v1::ExplainAssignmentResponse response;
    const grpc::Status status =
        assign_->ExplainAssignment(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  {
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(10));
    v1::ListExperimentsResponse response;
    const grpc::Status status = assign_->ListExperiments(
        &context, v1::ListExperimentsRequest(), &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.experiments_size(), 1);
  }
  {
    // ... while the accepted recording calls are still parked.
    absl::MutexLock lock(&mu);
    EXPECT_EQ(completed, kRecordingCalls - kStorageMaxCalls);
    for (int c = 0; c < kRecordingCalls; ++c) {
      if (!done[c]) continue;
      EXPECT_EQ(statuses[c].error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
          << "call " << c << ": " << statuses[c].error_message();
      EXPECT_THAT(statuses[c].error_message(),
                  HasSubstr("--storage_max_calls"));
      EXPECT_THAT(statuses[c].error_message(), HasSubstr("retry"));
    }
  }

  ASSERT_TRUE(redis_->Signal(SIGCONT).ok());
  for (std::thread& t : callers) t.join();
  int accepted = 0;
  for (int c = 0; c < kRecordingCalls; ++c) {
    if (statuses[c].error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      continue;
    }
    ++accepted;
    EXPECT_TRUE(statuses[c].ok())
        << "call " << c << ": " << statuses[c].error_message();
  }
  EXPECT_EQ(accepted, kStorageMaxCalls);
  // Each accepted call once; nothing of a refused one.
  const int64_t want = 5 + int64_t{kStorageMaxCalls} * kUsersPerCall;
  EXPECT_TRUE(
      ::abexp::testing::Eventually([&] { return ExposedToControl() == want; },
                                   absl::Seconds(60), absl::Milliseconds(100)))
      << "control has " << ExposedToControl() << " exposed units, want "
      << want;
}

// One storage thread and room for one call: whatever holds it holds every
// recording call.
class CallDeadlineTest : public RequestPathTest {
 protected:
  CallDeadlineTest() {
    storage_threads_ = 1;
    storage_max_calls_ = 1;
  }
};

TEST_F(CallDeadlineTest, ARedisWaitEndsAtTheCallsDeadlineNotTheTimeout) {
  ASSERT_NO_FATAL_FAILURE(ExposeUsers("checkout", "control", "warm", 5,
                                      absl::Now() - absl::Minutes(1)));
  ASSERT_EQ(ExposedToControl(), 5);
  ASSERT_TRUE(redis_->Signal(SIGSTOP).ok());

  // The server would wait 120s (--redis_command_timeout) for Redis; this
  // call gives up after 1s, and so must the server's wait for it.
  const grpc::Status first = RecordWithin("first-", absl::Seconds(1));
  EXPECT_EQ(first.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << first.error_message();

  // Then the one storage thread is free again for the next call, long
  // before 120s: calls are refused only until then. A call taken ends
  // within its own deadline too (or is spooled at once).
  std::vector<std::string> taken = {"first-"};
  grpc::Status next;
  const bool freed = ::abexp::testing::Eventually(
      [&] {
        const std::string prefix = absl::StrCat("next", taken.size(), "-");
        next = RecordWithin(prefix, absl::Seconds(3));
        if (next.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
          return false;
        }
        taken.push_back(prefix);
        return true;
      },
      absl::Seconds(60), absl::Milliseconds(100));
  EXPECT_TRUE(freed) << "the storage thread stayed taken: " << next.error_code()
                     << " " << next.error_message();
  EXPECT_TRUE(next.ok() ||
              next.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED)
      << next.error_code() << " " << next.error_message();

  // A client that did not hear back retries with the same request; each
  // call then counts exactly once, whether it reached Redis, the spool, or
  // neither before its deadline.
  ASSERT_TRUE(redis_->Signal(SIGCONT).ok());
  for (const std::string& prefix : taken) {
    grpc::Status retried;
    EXPECT_TRUE(::abexp::testing::Eventually(
        [&] {
          retried = RecordWithin(prefix, absl::Seconds(30));
          return retried.ok();
        },
        absl::Seconds(60), absl::Milliseconds(100)))
        << prefix << ": " << retried.error_message();
  }
  const int64_t want = 5 + static_cast<int64_t>(taken.size()) * kUsersPerCall;
  EXPECT_TRUE(
      ::abexp::testing::Eventually([&] { return ExposedToControl() == want; },
                                   absl::Seconds(60), absl::Milliseconds(100)))
      << "control has " << ExposedToControl() << " exposed units, want "
      << want;
}

}  // namespace
}  // namespace abexp
