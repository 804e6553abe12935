// The request path with a real abexp-server and a frozen real redis-server
// (SIGSTOP, as a Redis stuck on a slow disk or behind a partition): calls
// that wait on storage run on the server's storage executor, bounded by
// --storage_max_calls, so plain Assign, Explain and List keep being served
// by gRPC's threads; calls past the bound are refused at once with
// RESOURCE_EXHAUSTED and nothing of them is done; and after SIGCONT every
// accepted call is counted exactly once.
//
// Then the bound on recording answered from the spool (--spool_admit_rate):
// past it a recording call is refused RESOURCE_EXHAUSTED, nothing of it
// done, with a message and gRPC's retry hint (grpc-retry-pushback-ms) saying
// when to send it again; abexp's EventSender waits as told and delivers
// every record.
#include <signal.h>

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "abexp/v1/assignment.grpc.pb.h"
#include "abexp/v1/recording.grpc.pb.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "client/event_sender.h"
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

// A server on kConfig, and what the tests below record and read.
class FrozenRedisTest : public RecordingServerTest {
 protected:
  FrozenRedisTest() : RecordingServerTest(kConfig, "request-path") {}

  // Exposes users `prefix`0 .. `prefix`(n-1) to control.
  static v1::RecordExposuresRequest Exposures(const std::string& prefix,
                                              int n = kUsersPerCall) {
    v1::RecordExposuresRequest request;
    for (int i = 0; i < n; ++i) {
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

  // Waits until control has exactly `want` exposed units in Redis.
  void ExpectExposedReached(int64_t want) {
    EXPECT_TRUE(::abexp::testing::Eventually(
        [&] { return ExposedToControl() == want; }, absl::Seconds(60),
        absl::Milliseconds(100)))
        << "control has " << ExposedToControl() << " exposed units, want "
        << want << "; server stderr:\n"
        << server_->Stderr();
  }
};

class RequestPathTest : public FrozenRedisTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(FrozenRedisTest::SetUp());
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
  ExpectExposedReached(5 + int64_t{kStorageMaxCalls} * kUsersPerCall);
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
  ExpectExposedReached(5 + static_cast<int64_t>(taken.size()) * kUsersPerCall);
}

// The server acknowledges recording from its spool once a call finds Redis
// not answering within 200 ms.
using SpoolBoundTest = FrozenRedisTest;

TEST_F(SpoolBoundTest, PastTheBoundCallsAreRefusedWithARetryHintAndNotDone) {
  // 10 records/s: after one admitted call of 50 records nothing more is
  // admitted for 5 s, far longer than the calls below take.
  ASSERT_NO_FATAL_FAILURE(
      StartServer({"--spool_admit_rate=10", "--redis_command_timeout=200ms"}));
  ASSERT_NO_FATAL_FAILURE(ExposeUsers("checkout", "control", "warm", 5,
                                      absl::Now() - absl::Minutes(1)));

  ASSERT_TRUE(redis_->Signal(SIGSTOP).ok());
  // The first call finds Redis not answering and is acknowledged from the
  // spool; from then on the bound holds.
  v1::RecordExposuresResponse response;
  grpc::Status status = RecordExposures(Exposures("spooled", 3), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.counts().spooled(), 3);

  int64_t acknowledged = 5 + 3;
  std::optional<grpc::Status> refusal;
  std::optional<absl::Duration> hint;
  for (int c = 0; c < 20 && !refusal.has_value(); ++c) {
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(30));
    status = record_->RecordExposures(
        &context, Exposures(absl::StrCat("call", c, "-"), 50), &response);
    if (status.ok()) {
      EXPECT_EQ(response.counts().spooled(), 50);
      acknowledged += 50;
      continue;
    }
    refusal = status;
    hint = RetryPushback(context);
  }
  ASSERT_TRUE(refusal.has_value())
      << "20 calls of 50 records were all admitted at 10 records/s";
  EXPECT_EQ(refusal->error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << refusal->error_message();
  EXPECT_THAT(refusal->error_message(), HasSubstr("--spool_admit_rate"));
  EXPECT_THAT(refusal->error_message(), HasSubstr("nothing of this call"));
  EXPECT_THAT(refusal->error_message(), HasSubstr("send it again in"));
  ASSERT_TRUE(hint.has_value())
      << "no grpc-retry-pushback-ms trailing metadata on the refusal";
  EXPECT_GT(*hint, absl::ZeroDuration());
  EXPECT_LE(*hint, absl::Seconds(1));  // the longest delay handed out
  EXPECT_THAT(refusal->error_message(),
              HasSubstr(absl::StrCat(absl::ToInt64Milliseconds(*hint), " ms")));

  // Calls that need no storage are still served.
  {
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(10));
    v1::AssignRequest request;
    *request.mutable_unit() = User("plain");
    v1::AssignResponse assigned;
    ASSERT_TRUE(assign_->Assign(&context, request, &assigned).ok());
  }

  ASSERT_TRUE(redis_->Signal(SIGCONT).ok());
  // Everything acknowledged, once; nothing of the refused call.
  ExpectExposedReached(acknowledged);
}

TEST_F(SpoolBoundTest, ACallTheBoundAdmitsWithinTheHoldIsHeldNotRefused) {
  // 100 records/s: a call of 20 records is due every 200 ms, so each call
  // below, sent as soon as the one before it is answered, is over the bound
  // and admitted within the 2 s it may be held.
  ASSERT_NO_FATAL_FAILURE(
      StartServer({"--spool_admit_rate=100", "--spool_admit_max_hold=2s",
                   "--redis_command_timeout=200ms"}));
  ASSERT_NO_FATAL_FAILURE(ExposeUsers("checkout", "control", "warm", 5,
                                      absl::Now() - absl::Minutes(1)));

  ASSERT_TRUE(redis_->Signal(SIGSTOP).ok());
  int64_t acknowledged = 5;
  for (int c = 0; c < 8; ++c) {
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(30));
    v1::RecordExposuresResponse response;
    const grpc::Status status = record_->RecordExposures(
        &context, Exposures(absl::StrCat("held", c, "-"), 20), &response);
    ASSERT_TRUE(status.ok()) << "call " << c << ": " << status.error_code()
                             << " " << status.error_message();
    EXPECT_EQ(response.counts().spooled(), 20) << "call " << c;
    EXPECT_FALSE(RetryPushback(context).has_value()) << "call " << c;
    acknowledged += 20;
  }

  ASSERT_TRUE(redis_->Signal(SIGCONT).ok());
  ExpectExposedReached(acknowledged);
}

TEST_F(SpoolBoundTest, TheEventSenderWaitsAsToldAndDeliversEveryRecord) {
  ASSERT_NO_FATAL_FAILURE(
      StartServer({"--spool_admit_rate=100", "--redis_command_timeout=200ms"}));
  ASSERT_NO_FATAL_FAILURE(ExposeUsers("checkout", "control", "warm", 5,
                                      absl::Now() - absl::Minutes(1)));

  EventSenderOptions options;
  options.target = server_->address();
  options.max_batch = 50;
  options.flush_interval = absl::Milliseconds(50);
  // Its own backoff is a minute: only waiting as the server says lets it
  // deliver within the Flush below.
  options.initial_backoff = absl::Minutes(1);
  options.max_backoff = absl::Minutes(1);
  absl::StatusOr<std::unique_ptr<EventSender>> sender =
      EventSender::Create(std::move(options));
  ASSERT_TRUE(sender.ok()) << sender.status();

  ASSERT_TRUE(redis_->Signal(SIGSTOP).ok());
  constexpr int kUsers = 300;  // 6 calls: 3 s at 100 records/s
  for (int u = 0; u < kUsers; ++u) {
    ASSERT_TRUE((*sender)
                    ->Expose("checkout", User(absl::StrCat("sent", u)),
                             "control", absl::Now() - absl::Minutes(1))
                    .ok());
  }
  // Acknowledged from the spool while Redis is still frozen.
  const absl::Status flushed = (*sender)->Flush(absl::Seconds(30));
  EXPECT_TRUE(flushed.ok()) << flushed;
  const EventSenderStats stats = (*sender)->stats();
  EXPECT_EQ(stats.sent, kUsers);
  EXPECT_GT(stats.retries, 0) << "no call was refused: the bound never held";
  EXPECT_THAT(stats.last_error.message(), HasSubstr("--spool_admit_rate"));

  ASSERT_TRUE(redis_->Signal(SIGCONT).ok());
  ExpectExposedReached(5 + kUsers);
  EXPECT_TRUE((*sender)->Close(absl::Seconds(10)).ok());
}

}  // namespace
}  // namespace abexp
