// abexp::EventSender against a real abexp-server recording into a real
// redis-server, and against no server at all. Expected aggregates are
// computed here from the inputs and read back from Redis with
// RedisEventStore, so "recorded once" means what an analyst would see.
#include "client/event_sender.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/event_store.h"
#include "server/testing/recording_test_util.h"

namespace abexp {
namespace {

using ::abexp::testing::Eventually;
using ::abexp::testing::kCheckoutConfig;
using ::abexp::testing::RecordingServerTest;
using ::abexp::testing::User;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::StartsWith;

// Generous: the machine may be loaded; no test waits this long when it passes.
constexpr absl::Duration kPatience = absl::Seconds(60);

const char* VariantOf(int u) { return u % 2 == 0 ? "control" : "treatment"; }

// A loopback port nothing listens on (yet): bind, read the port, close.
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// Options that retry fast, so tests of outages finish quickly.
EventSenderOptions FastOptions(const std::string& target) {
  EventSenderOptions options;
  options.target = target;
  options.flush_interval = absl::Milliseconds(50);
  options.initial_backoff = absl::Milliseconds(20);
  options.max_backoff = absl::Milliseconds(200);
  return options;
}

// Collects what on_undelivered hands over, from the sender's thread.
class Undelivered {
 public:
  std::function<void(const UndeliveredRecords&)> Callback() {
    return [this](const UndeliveredRecords& u) {
      absl::MutexLock lock(&mu_);
      reports_.push_back(u);
    };
  }
  std::vector<UndeliveredRecords> reports() const {
    absl::MutexLock lock(&mu_);
    return reports_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<UndeliveredRecords> reports_ ABSL_GUARDED_BY(mu_);
};

// Every record accepted is accounted for exactly once.
void ExpectBalanced(const EventSenderStats& s) {
  EXPECT_EQ(s.enqueued, s.sent + s.dropped_invalid + s.dropped_gave_up +
                            s.dropped_at_close + s.pending);
}

std::unique_ptr<EventSender> MustCreate(EventSenderOptions options) {
  absl::StatusOr<std::unique_ptr<EventSender>> sender =
      EventSender::Create(std::move(options));
  EXPECT_TRUE(sender.ok()) << sender.status();
  return sender.ok() ? *std::move(sender) : nullptr;
}

class EventSenderTest : public RecordingServerTest {
 protected:
  EventSenderTest() : RecordingServerTest(kCheckoutConfig, "sender") {}
};

TEST_F(EventSenderTest, EverythingTrackedIsRecordedAfterFlushExposuresFirst) {
  StartServer();
  EventSenderOptions options = FastOptions(server_->address());
  // Only Flush sends, so each unit's exposure and its order share one
  // batch: the order counts only if the exposure reached the server first.
  options.flush_interval = absl::Hours(1);
  std::unique_ptr<EventSender> sender = MustCreate(std::move(options));
  ASSERT_NE(sender, nullptr);

  const absl::Time t0 = absl::Now() - absl::Minutes(10);
  double revenue[2] = {0, 0};
  double revenue_sq[2] = {0, 0};
  int orders = 0;
  for (int u = 0; u < 100; ++u) {
    const std::string user = absl::StrCat("u-", u);
    ASSERT_TRUE(sender->Expose("checkout", User(user), VariantOf(u), t0).ok());
    if (u % 4 == 3) continue;  // never orders
    // Exact binary fractions, so sums compare exactly.
    const double value = 10 + (u % 5) * 0.25;
    ASSERT_TRUE(sender
                    ->Track(User(user), "order_completed", value,
                            t0 + absl::Seconds(1 + u))
                    .ok());
    ++orders;
    revenue[u % 2] += value;
    revenue_sq[u % 2] += value * value;
  }
  ASSERT_TRUE(sender->Flush(kPatience).ok());

  EventSenderStats stats = sender->stats();
  EXPECT_EQ(stats.enqueued, 100 + orders);
  EXPECT_EQ(stats.sent, 100 + orders);
  EXPECT_EQ(stats.pending, 0);
  EXPECT_EQ(stats.dropped_invalid + stats.dropped_gave_up, 0);
  ExpectBalanced(stats);

  ExperimentAggregates a = ReadCheckout();
  ASSERT_EQ(a.variants.size(), 2u);
  EXPECT_EQ(a.multi_exposed, 0);
  for (int v = 0; v < 2; ++v) {
    SCOPED_TRACE(VariantOf(v));
    EXPECT_EQ(a.variants[v].exposed, 50);
    int converted = 0;
    for (int u = v; u < 100; u += 2) converted += u % 4 == 3 ? 0 : 1;
    EXPECT_EQ(a.variants[v].metrics["order_conversion"].units, converted);
    EXPECT_EQ(static_cast<double>(a.variants[v].metrics["revenue"].sum),
              revenue[v]);
    EXPECT_EQ(static_cast<double>(a.variants[v].metrics["revenue"].sum_sq),
              revenue_sq[v]);
  }
}

TEST_F(EventSenderTest, FiveThousandEventsGoInFiveCalls) {
  StartServer();
  EventSenderOptions options = FastOptions(server_->address());
  options.max_batch = 1000;
  // Batches go only when full (or on Flush).
  options.flush_interval = absl::Hours(1);
  std::unique_ptr<EventSender> sender = MustCreate(std::move(options));
  ASSERT_NE(sender, nullptr);

  const absl::Time t0 = absl::Now() - absl::Hours(1);
  for (int u = 0; u < 50; ++u) {
    ASSERT_TRUE(sender
                    ->Expose("checkout", User(absl::StrCat("bulk-", u)),
                             VariantOf(u), t0)
                    .ok());
  }
  ASSERT_TRUE(sender->Flush(kPatience).ok());
  const EventSenderStats before = sender->stats();

  for (int k = 0; k < 100; ++k) {
    for (int u = 0; u < 50; ++u) {
      ASSERT_TRUE(sender
                      ->Track(User(absl::StrCat("bulk-", u)), "order_completed",
                              1.0, t0 + absl::Milliseconds(10 * k + 1))
                      .ok());
    }
  }
  ASSERT_TRUE(sender->Flush(kPatience).ok());
  const EventSenderStats after = sender->stats();
  // First attempts only: a retry (not expected on loopback) is not a batch.
  EXPECT_EQ((after.rpcs - after.retries) - (before.rpcs - before.retries), 5);
  EXPECT_EQ(after.sent - before.sent, 5000);
  ExpectBalanced(after);

  ExperimentAggregates a = ReadCheckout();
  ASSERT_EQ(a.variants.size(), 2u);
  for (const VariantAggregate& v : a.variants) {
    EXPECT_EQ(v.exposed, 25);
    // 25 units with 100 orders of value 1 each.
    EXPECT_EQ(static_cast<double>(v.metrics.at("revenue").sum), 2500);
    EXPECT_EQ(static_cast<double>(v.metrics.at("revenue").sum_sq),
              25 * 100 * 100);
  }
}

TEST_F(EventSenderTest, ServerDownAtFirstFlushSucceedsOnceItIsUpNothingTwice) {
  const std::string address = absl::StrCat("127.0.0.1:", FreePort());
  EventSenderOptions options = FastOptions(address);
  // Each attempt waits this long for a connection.
  options.call_deadline = absl::Milliseconds(300);
  std::unique_ptr<EventSender> sender = MustCreate(std::move(options));
  ASSERT_NE(sender, nullptr);

  const absl::Time t0 = absl::Now() - absl::Minutes(5);
  double revenue[2] = {0, 0};
  for (int u = 0; u < 20; ++u) {
    const std::string user = absl::StrCat("early-", u);
    ASSERT_TRUE(sender->Expose("checkout", User(user), VariantOf(u), t0).ok());
    const double value = 5 + u * 0.5;
    ASSERT_TRUE(
        sender
            ->Track(User(user), "order_completed", value, t0 + absl::Seconds(1))
            .ok());
    revenue[u % 2] += value;
  }
  // The sender has tried and failed at least twice.
  ASSERT_TRUE(Eventually([&] { return sender->stats().retries >= 2; },
                         kPatience, absl::Milliseconds(20)));
  const absl::Status last_error = sender->stats().last_error;
  EXPECT_EQ(last_error.code(), absl::StatusCode::kDeadlineExceeded)
      << last_error;
  EXPECT_THAT(std::string(last_error.message()),
              HasSubstr("abexp-server at " + address));
  EXPECT_THAT(std::string(last_error.message()), HasSubstr("not connected"));
  absl::Status early = sender->Flush(absl::Milliseconds(100));
  EXPECT_EQ(early.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(early.message()), HasSubstr("not acknowledged"));
  EXPECT_EQ(sender->stats().pending, 40);

  StartServer({"--listen=" + address});
  ASSERT_EQ(server_->address(), address);
  absl::Status flushed = sender->Flush(kPatience);
  ASSERT_TRUE(flushed.ok()) << flushed;

  EventSenderStats stats = sender->stats();
  EXPECT_EQ(stats.sent, 40);
  EXPECT_EQ(stats.pending, 0);
  EXPECT_EQ(
      stats.dropped_invalid + stats.dropped_gave_up + stats.dropped_at_close,
      0);
  ExpectBalanced(stats);
  ExperimentAggregates a = ReadCheckout();
  ASSERT_EQ(a.variants.size(), 2u);
  for (int v = 0; v < 2; ++v) {
    EXPECT_EQ(a.variants[v].exposed, 10);
    EXPECT_EQ(static_cast<double>(a.variants[v].metrics["revenue"].sum),
              revenue[v]);
  }
  EXPECT_EQ(a.config_versions[config_->version], 20);
}

TEST_F(EventSenderTest,
       ACallWhoseReplyIsLostIsRetriedWithTheSameKeysAndCountsOnce) {
  StartServer();
  EventSenderOptions options = FastOptions(server_->address());
  options.call_deadline = absl::Milliseconds(500);
  std::unique_ptr<EventSender> sender = MustCreate(std::move(options));
  ASSERT_NE(sender, nullptr);
  const absl::Time t0 = absl::Now() - absl::Minutes(5);
  for (int u = 0; u < 10; ++u) {
    ASSERT_TRUE(
        sender->Expose("checkout", User(absl::StrCat("r-", u)), "treatment", t0)
            .ok());
  }
  ASSERT_TRUE(sender->Flush(kPatience).ok());
  const int64_t retries_before = sender->stats().retries;

  // A stopped Redis holds the server's write until the call's deadline: the
  // call reaches the server and times out at the client, while the server
  // ends its wait for Redis at that deadline and keeps the write in its
  // spool (and Redis may apply it too once it resumes). The retry, with
  // the same keys, is then answered from the spool.
  ASSERT_TRUE(redis_->Signal(SIGSTOP).ok());
  double revenue = 0;
  for (int u = 0; u < 10; ++u) {
    const double value = 1 + u;
    ASSERT_TRUE(sender
                    ->Track(User(absl::StrCat("r-", u)), "order_completed",
                            value, t0 + absl::Seconds(1))
                    .ok());
    revenue += value;
  }
  const bool retried =
      Eventually([&] { return sender->stats().retries >= retries_before + 1; },
                 kPatience, absl::Milliseconds(20));
  ASSERT_TRUE(redis_->Signal(SIGCONT).ok());
  ASSERT_TRUE(retried);
  absl::Status flushed = sender->Flush(kPatience);
  ASSERT_TRUE(flushed.ok()) << flushed;
  EXPECT_EQ(sender->stats().sent, 20);
  // A call acknowledged from the server's spool (Redis was slow) reaches
  // Redis later; a server stopping with SIGTERM first replays its spool.
  ASSERT_TRUE(server_->Signal(SIGTERM).ok());
  absl::StatusOr<int> exit_code = server_->WaitForExit(kPatience);
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0) << server_->Stderr();

  ExperimentAggregates a = ReadCheckout();
  ASSERT_EQ(a.variants.size(), 2u);
  EXPECT_EQ(a.variants[1].exposed, 10);
  EXPECT_EQ(static_cast<double>(a.variants[1].metrics["revenue"].sum), revenue);
  EXPECT_EQ(a.variants[1].metrics["order_conversion"].units, 10);
}

TEST_F(EventSenderTest, TheServerRejectingRecordsDropsAndReportsOnlyThose) {
  StartServer();
  Undelivered undelivered;
  EventSenderOptions options = FastOptions(server_->address());
  options.flush_interval = absl::Hours(1);  // one batch
  options.on_undelivered = undelivered.Callback();
  std::unique_ptr<EventSender> sender = MustCreate(std::move(options));
  ASSERT_NE(sender, nullptr);

  // Valid as far as the client can tell; the server knows the config.
  std::set<std::string> bad_units = {"x-0", "x-3", "x-4", "x-9"};
  for (int u = 0; u < 10; ++u) {
    const std::string user = absl::StrCat("x-", u);
    std::string variant = "control";
    v1::Unit unit = User(user);
    if (user == "x-0" || user == "x-4") variant = "treatmnet";
    if (user == "x-3" || user == "x-9") {
      unit.mutable_ids()->clear();
      (*unit.mutable_ids())["device_id"] = user;  // checkout hashes on user_id
    }
    ASSERT_TRUE(sender->Expose("checkout", unit, variant).ok());
  }
  ASSERT_TRUE(sender->Flush(kPatience).ok());

  std::set<std::string> reported;
  for (const UndeliveredRecords& u : undelivered.reports()) {
    EXPECT_EQ(u.status.code(), absl::StatusCode::kInvalidArgument) << u.status;
    EXPECT_THAT(std::string(u.status.message()), StartsWith("exposures["));
    EXPECT_TRUE(u.events.empty());
    for (const v1::ExposureRecord& x : u.exposures) {
      reported.insert(x.unit().ids().begin()->second);
    }
  }
  EXPECT_EQ(reported, bad_units);
  EventSenderStats stats = sender->stats();
  EXPECT_EQ(stats.dropped_invalid, 4);
  EXPECT_EQ(stats.sent, 6);
  ExpectBalanced(stats);
  ExperimentAggregates a = ReadCheckout();
  ASSERT_EQ(a.variants.size(), 2u);
  EXPECT_EQ(a.variants[0].exposed, 6);
}

TEST_F(EventSenderTest, TheDestructorSendsWhatIsQueued) {
  StartServer();
  EventSenderOptions options = FastOptions(server_->address());
  options.flush_interval = absl::Hours(1);
  options.close_timeout = kPatience;
  std::unique_ptr<EventSender> sender = MustCreate(std::move(options));
  ASSERT_NE(sender, nullptr);
  const absl::Time t0 = absl::Now() - absl::Minutes(5);
  for (int u = 0; u < 30; ++u) {
    const std::string user = absl::StrCat("d-", u);
    ASSERT_TRUE(sender->Expose("checkout", User(user), "control", t0).ok());
    ASSERT_TRUE(
        sender->Track(User(user), "order_completed", 2.0, t0 + absl::Seconds(1))
            .ok());
  }
  EXPECT_EQ(sender->stats().sent, 0);  // nothing is due yet
  sender.reset();

  ExperimentAggregates a = ReadCheckout();
  ASSERT_EQ(a.variants.size(), 2u);
  EXPECT_EQ(a.variants[0].exposed, 30);
  EXPECT_EQ(static_cast<double>(a.variants[0].metrics["revenue"].sum), 60);
}

// No server from here on.

TEST(EventSender, AFullQueueRefusesWithResourceExhaustedAndCountsIt) {
  EventSenderOptions options =
      FastOptions(absl::StrCat("127.0.0.1:", FreePort()));
  options.max_queue_items = 10;
  options.close_timeout = absl::ZeroDuration();
  std::unique_ptr<EventSender> sender = MustCreate(std::move(options));
  ASSERT_NE(sender, nullptr);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(sender->Track(User("u"), "app_open").ok());
  }
  for (int i = 0; i < 3; ++i) {
    absl::Status s = sender->Track(User("u"), "app_open");
    EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("max_queue_items is 10"));
  }
  EXPECT_EQ(sender->Expose("checkout", User("u"), "control").code(),
            absl::StatusCode::kResourceExhausted);
  EventSenderStats stats = sender->stats();
  EXPECT_EQ(stats.enqueued, 10);
  EXPECT_EQ(stats.dropped_queue_full, 4);
  EXPECT_EQ(stats.pending, 10);
  ExpectBalanced(stats);
}

TEST(EventSender, CloseReportsWhatWasNotSentWithItsTimeAndKey) {
  Undelivered undelivered;
  EventSenderOptions options =
      FastOptions(absl::StrCat("127.0.0.1:", FreePort()));
  options.on_undelivered = undelivered.Callback();
  std::unique_ptr<EventSender> sender = MustCreate(std::move(options));
  ASSERT_NE(sender, nullptr);

  v1::Unit unit = User("u-1");
  (*unit.mutable_attributes())["country"].set_string_value("CN");
  const absl::Time before = absl::Now();
  ASSERT_TRUE(sender
                  ->Expose("checkout", unit, "control", std::nullopt,
                           "0123456789abcdef")
                  .ok());
  ASSERT_TRUE(sender->Track(unit, "order_completed", 9.5).ok());
  ASSERT_TRUE(sender->Track(unit, "order_completed").ok());
  const absl::Time after = absl::Now();
  const absl::Time given = absl::FromUnixSeconds(1767225600);  // 2026-01-01
  ASSERT_TRUE(sender->Track(unit, "refund", -1.0, given, "order-8812").ok());

  absl::Status closed = sender->Close(absl::Milliseconds(300));
  EXPECT_EQ(closed.code(), absl::StatusCode::kDeadlineExceeded) << closed;
  EXPECT_THAT(std::string(closed.message()), HasSubstr("4 records"));
  // Closed: later records are refused, and Close keeps its answer.
  EXPECT_EQ(sender->Track(unit, "order_completed").code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(sender->Close(absl::Seconds(1)), closed);

  std::vector<v1::ExposureRecord> exposures;
  std::vector<v1::EventRecord> events;
  for (const UndeliveredRecords& u : undelivered.reports()) {
    EXPECT_EQ(u.status.code(), absl::StatusCode::kDeadlineExceeded) << u.status;
    exposures.insert(exposures.end(), u.exposures.begin(), u.exposures.end());
    events.insert(events.end(), u.events.begin(), u.events.end());
  }
  ASSERT_EQ(exposures.size(), 1u);
  ASSERT_EQ(events.size(), 3u);
  auto time_of = [](const google::protobuf::Timestamp& t) {
    return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
  };
  const v1::ExposureRecord& x = exposures[0];
  EXPECT_EQ(x.experiment_key(), "checkout");
  EXPECT_EQ(x.variant_key(), "control");
  EXPECT_EQ(x.config_version(), "0123456789abcdef");
  EXPECT_EQ(x.unit().ids().at("user_id"), "u-1");
  EXPECT_TRUE(x.unit().attributes().empty());
  ASSERT_TRUE(x.has_time());
  EXPECT_GE(time_of(x.time()), before);
  EXPECT_LE(time_of(x.time()), after);
  EXPECT_THAT(x.idempotency_key(), MatchesRegex("[0-9a-f]{32}"));

  std::set<std::string> keys = {x.idempotency_key()};
  for (int i = 0; i < 2; ++i) {
    const v1::EventRecord& e = events[i];
    EXPECT_EQ(e.name(), "order_completed");
    ASSERT_TRUE(e.has_time());
    EXPECT_GE(time_of(e.time()), before);
    EXPECT_LE(time_of(e.time()), after);
    EXPECT_THAT(e.idempotency_key(), MatchesRegex("[0-9a-f]{32}"));
    keys.insert(e.idempotency_key());
  }
  EXPECT_EQ(keys.size(), 3u);  // every record its own key
  EXPECT_EQ(events[0].value(), 9.5);
  EXPECT_FALSE(events[1].has_value());
  EXPECT_EQ(events[2].name(), "refund");
  EXPECT_EQ(time_of(events[2].time()), given);
  EXPECT_EQ(events[2].idempotency_key(), "order-8812");

  EventSenderStats stats = sender->stats();
  EXPECT_EQ(stats.dropped_at_close, 4);
  EXPECT_EQ(stats.pending, 0);
  ExpectBalanced(stats);
}

TEST(EventSender, MaxRetryTimeDropsTheBatchAndReportsIt) {
  Undelivered undelivered;
  EventSenderOptions options =
      FastOptions(absl::StrCat("127.0.0.1:", FreePort()));
  options.call_deadline = absl::Milliseconds(100);
  options.max_retry_time = absl::Milliseconds(300);
  options.on_undelivered = undelivered.Callback();
  std::unique_ptr<EventSender> sender = MustCreate(std::move(options));
  ASSERT_NE(sender, nullptr);
  ASSERT_TRUE(sender->Track(User("u"), "app_open").ok());
  // Resolved, by giving up: Flush does not wait for ever.
  ASSERT_TRUE(sender->Flush(kPatience).ok());
  std::vector<UndeliveredRecords> reports = undelivered.reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(reports[0].status.message()),
              HasSubstr("max_retry_time"));
  EXPECT_THAT(std::string(reports[0].status.message()),
              HasSubstr("not connected"));
  ASSERT_EQ(reports[0].events.size(), 1u);
  EventSenderStats stats = sender->stats();
  EXPECT_EQ(stats.dropped_gave_up, 1);
  EXPECT_GE(stats.retries, 1);
  ExpectBalanced(stats);
  // Nothing left: Close has nothing to report.
  EXPECT_TRUE(sender->Close(kPatience).ok());
}

TEST(EventSender, InvalidRecordsAreRejectedAtOnceNamingTheField) {
  EventSenderOptions options =
      FastOptions(absl::StrCat("127.0.0.1:", FreePort()));
  options.close_timeout = absl::ZeroDuration();
  std::unique_ptr<EventSender> sender = MustCreate(std::move(options));
  ASSERT_NE(sender, nullptr);
  const v1::Unit ok = User("u-1");
  v1::Unit empty_id = User("");
  v1::Unit no_ids;
  v1::Unit long_id = User(std::string(257, 'a'));
  const absl::Time now = absl::Now();
  struct Case {
    absl::Status status;
    const char* field;        // the message starts with it
    const char* detail = "";  // and says this
  } cases[] = {
      {sender->Track(ok, ""), "event name is empty"},
      {sender->Track(ok, std::string(129, 'e')), "event name is 129 bytes"},
      {sender->Track(ok, "order", std::nan("")), "value is NaN"},
      {sender->Track(ok, "order", std::numeric_limits<double>::infinity()),
       "value is infinite"},
      {sender->Track(no_ids, "order"), "unit.ids is empty"},
      {sender->Track(empty_id, "order"), "unit.ids[user_id] is empty"},
      {sender->Track(long_id, "order"), "unit.ids[user_id] is 257 bytes"},
      {sender->Track(ok, "order", 1.0, now + absl::Hours(48)), "time is",
       "more than 24h"},
      {sender->Track(ok, "order", 1.0, absl::FromUnixSeconds(0)), "time is",
       "before 2000"},
      {sender->Track(ok, "order", 1.0, std::nullopt, std::string(257, 'k')),
       "idempotency_key is 257 bytes"},
      {sender->Expose("", ok, "control"), "experiment_key is empty"},
      {sender->Expose("checkout", ok, ""), "variant_key is empty"},
      {sender->Expose("checkout", no_ids, "control"), "unit.ids is empty"},
      {sender->Expose("checkout", ok, "control", now + absl::Hours(25)),
       "time is", "more than 24h"},
      {sender->Expose("checkout", ok, "control", std::nullopt,
                      std::string(65, 'v')),
       "config_version is \"vvvv", "16 lowercase hex digits"},
      {sender->Expose("checkout", ok, "control", std::nullopt, "v1"),
       "config_version is \"v1\"", "16 lowercase hex digits"},
      {sender->Expose("checkout", ok, "control", std::nullopt,
                      "0123456789ABCDEF"),
       "config_version is \"0123456789ABCDEF\""},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(c.status.code(), absl::StatusCode::kInvalidArgument) << c.status;
    EXPECT_THAT(std::string(c.status.message()), StartsWith(c.field));
    EXPECT_THAT(std::string(c.status.message()), HasSubstr(c.detail));
  }
  EventSenderStats stats = sender->stats();
  EXPECT_EQ(stats.rejected_invalid, static_cast<int64_t>(std::size(cases)));
  EXPECT_EQ(stats.enqueued, 0);
  // Valid edge cases are accepted.
  EXPECT_TRUE(sender->Track(ok, std::string(128, 'e'), 0.0).ok());
  EXPECT_TRUE(sender->Track(ok, "order", -3.5, now + absl::Hours(23)).ok());
}

TEST(EventSender, CreateRejectsBadOptionsNamingThem) {
  struct Case {
    std::function<void(EventSenderOptions*)> set;
    const char* message;
  } cases[] = {
      {[](EventSenderOptions* o) { o->target = ""; }, "target is empty"},
      {[](EventSenderOptions* o) { o->max_batch = 0; }, "max_batch is 0"},
      {[](EventSenderOptions* o) { o->max_batch = 10001; },
       "max_batch is 10001"},
      {[](EventSenderOptions* o) { o->max_queue_items = 0; },
       "max_queue_items is 0"},
      {[](EventSenderOptions* o) { o->flush_interval = absl::ZeroDuration(); },
       "flush_interval"},
      {[](EventSenderOptions* o) { o->call_deadline = -absl::Seconds(1); },
       "call_deadline"},
      {[](EventSenderOptions* o) { o->max_backoff = absl::Milliseconds(1); },
       "max_backoff"},
      {[](EventSenderOptions* o) { o->jitter = 1; }, "jitter is 1"},
      {[](EventSenderOptions* o) { o->max_retry_time = absl::ZeroDuration(); },
       "max_retry_time"},
  };
  for (const Case& c : cases) {
    EventSenderOptions options;
    c.set(&options);
    absl::StatusOr<std::unique_ptr<EventSender>> sender =
        EventSender::Create(std::move(options));
    ASSERT_FALSE(sender.ok()) << c.message;
    EXPECT_EQ(sender.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(sender.status().message()),
                HasSubstr(absl::StrCat("EventSenderOptions.", c.message)));
  }
  EventSenderOptions options;
  options.max_batch = kMaxEventSenderBatch;
  EXPECT_TRUE(EventSender::Create(std::move(options)).ok());
}

}  // namespace
}  // namespace abexp
