// Redis outages with a real abexp-server and a real redis-server: recording
// calls are acknowledged from the server's spool while Redis is down, and
// the spool is replayed into Redis when it is back, also across a server
// restart. Expected aggregates are computed here from the inputs and read
// back from Redis with RedisEventStore.
#include <signal.h>
#include <stdlib.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "abexp/v1/assignment.grpc.pb.h"
#include "abexp/v1/recording.grpc.pb.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/core/event_store.h"
#include "server/testing/recording_test_util.h"
#include "server/testing/server_process.h"

namespace abexp {
namespace {

using ::abexp::testing::Eventually;
using ::abexp::testing::FigureDiffs;
using ::abexp::testing::kCheckoutConfig;
using ::abexp::testing::MetricOf;
using ::abexp::testing::RecordingServerTest;
using ::abexp::testing::RunProcess;
using ::abexp::testing::SetDeadline;
using ::abexp::testing::ToProto;
using ::abexp::testing::User;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// Replay backs off up to 5s and the Redis pool reconnects within 2s; on a
// loaded machine give it much longer.
constexpr absl::Duration kReplayWait = absl::Seconds(90);

// Per-variant figures implied by the inputs.
struct Expected {
  int64_t exposed = 0;
  int64_t converted = 0;
  double revenue = 0;
};

class SpoolE2eTest : public RecordingServerTest {
 protected:
  SpoolE2eTest() : RecordingServerTest(kCheckoutConfig, "spool-e2e") {
    // The tests SIGKILL Redis right after writes they count on: with
    // everysec, Redis itself may lose the last second of them (it did once
    // under load: the direct write before the kill was missing after the
    // restart, and nothing of abexp's).
    redis_options_.appendfsync = "always";
  }

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(RecordingServerTest::SetUp());
    start_ = absl::Now() - absl::Hours(1);
  }

  // Exposes `unit` to `variant` at start_ + `minute` minutes.
  void AddExposure(v1::RecordExposuresRequest* request, const std::string& unit,
                   int variant, int minute) {
    v1::ExposureRecord* x = request->add_exposures();
    x->set_experiment_key("checkout");
    *x->mutable_unit() = User(unit);
    x->set_variant_key(variant == 0 ? "control" : "treatment");
    *x->mutable_time() = ToProto(start_ + absl::Minutes(minute));
    Expected& e = expected_[variant];
    ++e.exposed;
  }

  // An order of `value` by `unit` (exposed to `variant`) at start_ +
  // `minute` minutes; `first` when it is the unit's first order.
  void AddOrder(v1::RecordEventsRequest* request, const std::string& unit,
                int variant, double value, int minute, bool first) {
    v1::EventRecord* ev = request->add_events();
    *ev->mutable_unit() = User(unit);
    ev->set_name("order_completed");
    ev->set_value(value);
    *ev->mutable_time() = ToProto(start_ + absl::Minutes(minute));
    Expected& e = expected_[variant];
    if (first) ++e.converted;
    e.revenue += value;
  }

  // How the checkout aggregates in Redis differ from expected_; "" when
  // they match.
  std::string Differences() {
    return AggregateDifferences(
        "checkout", 2, [&](const ExperimentAggregates& a, FigureDiffs* diffs) {
          for (int v = 0; v < 2; ++v) {
            const VariantAggregate& got = a.variants[v];
            const Expected& want = expected_[v];
            const std::string name = absl::StrCat("variant ", v);
            diffs->Check(name + " exposed", got.exposed, want.exposed);
            diffs->Check(name + " order_conversion.units",
                         MetricOf(got, "order_conversion").units,
                         want.converted);
            diffs->Check(name + " revenue.sum", MetricOf(got, "revenue").sum,
                         want.revenue);
          }
          diffs->Check("multi_exposed", a.multi_exposed, 0);
        });
  }

  // Waits until Redis holds exactly the expected aggregates; the replay runs
  // in the background.
  void ExpectAggregatesReached() {
    std::string diff;
    Eventually(
        [&] {
          diff = Differences();
          return diff.empty();
        },
        kReplayWait, absl::Milliseconds(200));
    EXPECT_EQ(diff, "") << "server stderr:\n" << server_->Stderr();
  }

  absl::Time start_;
  std::map<int, Expected> expected_;  // by variant index
};

TEST_F(SpoolE2eTest, RedisDownCallsAreSpooledAndAppliedExactlyWhenItIsBack) {
  StartServer();
  // Redis up: a direct write.
  v1::RecordExposuresRequest before;
  for (int u = 0; u < 10; ++u)
    AddExposure(&before, absl::StrCat("u", u), u % 2, u);
  v1::RecordExposuresResponse exposed;
  ASSERT_TRUE(RecordExposures(before, &exposed).ok());
  EXPECT_EQ(exposed.counts().recorded(), 10);

  ASSERT_TRUE(redis_->Kill().ok());
  // More units exposed, and orders of old and new units, while Redis is
  // down: acknowledged from the spool. The order of u10 comes after its
  // exposure only in the spool, so replay order matters.
  v1::RecordExposuresRequest during;
  for (int u = 10; u < 20; ++u)
    AddExposure(&during, absl::StrCat("u", u), u % 2, u);
  grpc::Status status = RecordExposures(during, &exposed);
  ASSERT_TRUE(status.ok()) << status.error_message() << server_->Stderr();
  EXPECT_EQ(exposed.counts().spooled(), 10);
  EXPECT_EQ(exposed.counts().recorded(), 0);
  for (const v1::RecordResult& r : exposed.results()) {
    EXPECT_EQ(r.outcome(), v1::RECORD_OUTCOME_SPOOLED);
  }
  v1::RecordEventsRequest orders;
  for (int u = 0; u < 20; u += 3) {
    AddOrder(&orders, absl::StrCat("u", u), u % 2, 10 + 0.25 * u, 30 + u, true);
  }
  AddOrder(&orders, "u3", 1, 7.5, 59, false);  // a second order
  v1::RecordEventsResponse tracked;
  status = RecordEvents(orders, &tracked);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(tracked.counts().spooled(), orders.events_size());
  // A retry of the same batch counts once after the replay.
  status = RecordEvents(orders, &tracked);
  ASSERT_TRUE(status.ok()) << status.error_message();

  // Assign with record_exposure is acknowledged the same way.
  v1::AssignRequest assign;
  *assign.mutable_unit() = User("assigned-user");
  assign.set_record_exposure(true);
  v1::AssignResponse assigned;
  {
    grpc::ClientContext context;
    SetDeadline(&context, absl::Seconds(30));
    ASSERT_TRUE(assign_->Assign(&context, assign, &assigned).ok());
  }
  EXPECT_EQ(assigned.exposure_error(), "");
  ASSERT_EQ(assigned.assignments_size(), 1);
  ++expected_[assigned.assignments(0).variant_key() == "control" ? 0 : 1]
        .exposed;

  // The CLI says so.
  std::string out, err;
  absl::StatusOr<int> code = RunProcess(
      {ABEXP_CLI_BIN, "expose", "--server", server_->address(), "--experiment",
       "checkout", "--variant", "treatment", "--id", "user_id=cli-user"},
      &out, &err);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << err;
  EXPECT_THAT(out, StartsWith("spooled"));
  ++expected_[1].exposed;
  code = RunProcess(
      {ABEXP_CLI_BIN, "track", "--server", server_->address(), "--id",
       "user_id=cli-user", "--event", "order_completed", "--value", "2.5"},
      &out, &err);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << err;
  EXPECT_THAT(out, StartsWith("spooled"));
  ++expected_[1].converted;
  expected_[1].revenue += 2.5;

  ASSERT_TRUE(redis_->Restart().ok());
  ExpectAggregatesReached();
  EXPECT_TRUE(
      server_->WaitForStderr("drained into Redis", absl::Seconds(30)).ok());

  // Drained: writes go straight to Redis again.
  v1::RecordExposuresRequest after;
  AddExposure(&after, "late-user", 0, 70);
  status = RecordExposures(after, &exposed);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(exposed.counts().recorded(), 1);
  ExpectAggregatesReached();
}

TEST_F(SpoolE2eTest, SigtermKeepsTheSpoolAndTheNextStartReplaysIt) {
  const std::string spool_dir = dir_.path() + "/spool";
  ASSERT_TRUE(redis_->Kill().ok());
  StartServer({"--spool_dir=" + spool_dir, "--shutdown_grace=1s"});

  v1::RecordExposuresRequest exposures;
  for (int u = 0; u < 6; ++u)
    AddExposure(&exposures, absl::StrCat("u", u), u % 2, u);
  v1::RecordExposuresResponse exposed;
  grpc::Status status = RecordExposures(exposures, &exposed);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(exposed.counts().spooled(), 6);
  v1::RecordEventsRequest orders;
  AddOrder(&orders, "u1", 1, 19.75, 20, true);
  AddOrder(&orders, "u2", 0, 4, 21, true);
  v1::RecordEventsResponse tracked;
  status = RecordEvents(orders, &tracked);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(tracked.counts().spooled(), 2);

  ASSERT_TRUE(server_->Signal(SIGTERM).ok());
  absl::StatusOr<int> code = server_->WaitForExit(absl::Seconds(60));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << server_->Stderr();
  // Two writes: the exposures (one experiment) and the events.
  EXPECT_THAT(server_->Stderr(), HasSubstr("2 spooled writes"));
  EXPECT_THAT(server_->Stderr(), HasSubstr("2 pending"));
  EXPECT_THAT(server_->Stderr(), HasSubstr("shut down"));

  ASSERT_TRUE(redis_->Restart().ok());
  StartServer({"--spool_dir=" + spool_dir});
  EXPECT_TRUE(
      server_
          ->WaitForStderr("from an earlier run are pending", absl::Seconds(10))
          .ok());
  ExpectAggregatesReached();
}

TEST_F(SpoolE2eTest,
       AFullSpoolMakesCallsUnavailableAndKeepsWhatItAcknowledged) {
  ASSERT_TRUE(redis_->Kill().ok());
  StartServer({"--spool_max_bytes=2048", "--shutdown_grace=1s"});
  grpc::Status refused;
  int acknowledged = 0;
  for (int u = 0; u < 200 && refused.ok(); ++u) {
    v1::RecordExposuresRequest request;
    v1::ExposureRecord* x = request.add_exposures();
    x->set_experiment_key("checkout");
    *x->mutable_unit() = User(absl::StrCat("u", u));
    x->set_variant_key("control");
    *x->mutable_time() = ToProto(start_);
    v1::RecordExposuresResponse response;
    grpc::Status s = RecordExposures(request, &response);
    if (s.ok()) {
      EXPECT_EQ(response.counts().spooled(), 1);
      ++acknowledged;
    } else {
      refused = s;
    }
  }
  ASSERT_FALSE(refused.ok()) << "a 2 KiB spool never filled up";
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(refused.error_message(), HasSubstr("is full"));
  EXPECT_THAT(refused.error_message(),
              HasSubstr("Redis at " + redis_->address()));
  ASSERT_GT(acknowledged, 0);
  expected_[0].exposed = acknowledged;

  ASSERT_TRUE(redis_->Restart().ok());
  ExpectAggregatesReached();
}

// The spool directory deleted under a running server, then Redis down: no
// call is acknowledged as spooled (nothing could replay it), each refusal
// and the log say why, and SIGTERM does not promise a replay.
TEST_F(SpoolE2eTest,
       ADeletedSpoolDirectoryAcknowledgesNothingAndTheLogSaysWhy) {
  const std::string spool_dir = dir_.path() + "/spool";
  StartServer({"--spool_dir=" + spool_dir, "--shutdown_grace=1s"});
  std::filesystem::remove_all(spool_dir);
  ASSERT_TRUE(redis_->Kill().ok());

  for (int u = 0; u < 3; ++u) {
    v1::RecordExposuresRequest request;
    AddExposure(&request, absl::StrCat("u", u), u % 2, u);
    v1::RecordExposuresResponse response;
    grpc::Status status = RecordExposures(request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
        << "acknowledged, " << response.counts().spooled() << " spooled";
    EXPECT_THAT(status.error_message(), HasSubstr(spool_dir));
    EXPECT_THAT(status.error_message(), HasSubstr("deleted"));
  }
  v1::RecordEventsRequest orders;
  AddOrder(&orders, "u1", 1, 12.5, 20, true);
  v1::RecordEventsResponse tracked;
  grpc::Status status = RecordEvents(orders, &tracked);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << "acknowledged, " << tracked.counts().spooled() << " spooled";
  EXPECT_TRUE(server_
                  ->WaitForStderr("Restart abexp-server to spool again",
                                  absl::Seconds(30))
                  .ok())
      << server_->Stderr();
  EXPECT_FALSE(std::filesystem::exists(spool_dir)) << "recreated";

  ASSERT_TRUE(server_->Signal(SIGTERM).ok());
  absl::StatusOr<int> code = server_->WaitForExit(absl::Seconds(60));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << server_->Stderr();
  EXPECT_THAT(server_->Stderr(),
              ::testing::Not(HasSubstr("replayed first on the next start")));
}

// Writes acknowledged from the spool, then its directory deleted: SIGTERM
// says they are lost, and how many, instead of that they stay for the
// next start.
TEST_F(SpoolE2eTest, SigtermCountsTheAcknowledgedWritesADeletedSpoolTook) {
  const std::string spool_dir = dir_.path() + "/spool";
  ASSERT_TRUE(redis_->Kill().ok());
  StartServer({"--spool_dir=" + spool_dir, "--shutdown_grace=1s"});
  for (int u = 0; u < 2; ++u) {
    v1::RecordExposuresRequest request;
    AddExposure(&request, absl::StrCat("u", u), u % 2, u);
    v1::RecordExposuresResponse response;
    grpc::Status status = RecordExposures(request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.counts().spooled(), 1);
  }
  std::filesystem::remove_all(spool_dir);

  ASSERT_TRUE(server_->Signal(SIGTERM).ok());
  absl::StatusOr<int> code = server_->WaitForExit(absl::Seconds(60));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << server_->Stderr();
  EXPECT_THAT(server_->Stderr(),
              HasSubstr("2 acknowledged writes LOST with the spool directory"));
  EXPECT_THAT(server_->Stderr(),
              ::testing::Not(HasSubstr("replayed first on the next start")));
}

TEST_F(SpoolE2eTest, TwoServersCannotShareASpool) {
  const std::string spool_dir = dir_.path() + "/shared-spool";
  StartServer({"--spool_dir=" + spool_dir});
  std::string out, err;
  absl::StatusOr<int> code = RunProcess(
      {ABEXP_SERVER_BIN, "--config=" + config_path_, "--listen=127.0.0.1:0",
       "--redis=" + redis_->address(), "--spool_dir=" + spool_dir},
      &out, &err);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 1);
  EXPECT_THAT(err, HasSubstr(spool_dir));
  EXPECT_THAT(err, HasSubstr("give this one its own --spool_dir"));
  EXPECT_THAT(out, ::testing::IsEmpty());
}

// abexp-server as a Redis ACL user (--redis_user): a user that may only
// touch keys under the server's prefix, with the command categories
// docs/storage.md lists. The fixture reads Redis as the default user.
class RedisAclE2eTest : public SpoolE2eTest {
 protected:
  RedisAclE2eTest() {
    redis_options_.extra_args = {
        "--user",       "abexp-recorder", "on",          ">rec-pass",
        "~spool-e2e:*", "resetchannels",  "-@all",       "+@read",
        "+@write",      "+@scripting",    "+@connection"};
  }
};

TEST_F(RedisAclE2eTest, RecordingLandsAsTheAclUserNamedByTheEnvironment) {
  // The user from ABEXP_REDIS_USER (inherited by the server), the password
  // from the flag.
  ASSERT_EQ(::setenv("ABEXP_REDIS_USER", "abexp-recorder", 1), 0);
  StartServer({"--redis_password=rec-pass"});
  ::unsetenv("ABEXP_REDIS_USER");
  EXPECT_THAT(server_->Stderr(), HasSubstr("recording to Redis at"));

  v1::RecordExposuresRequest exposures;
  for (int u = 0; u < 8; ++u)
    AddExposure(&exposures, absl::StrCat("u", u), u % 2, u);
  v1::RecordExposuresResponse exposed;
  grpc::Status status = RecordExposures(exposures, &exposed);
  ASSERT_TRUE(status.ok()) << status.error_message() << server_->Stderr();
  EXPECT_EQ(exposed.counts().recorded(), 8);
  v1::RecordEventsRequest orders;
  AddOrder(&orders, "u1", 1, 12.5, 20, true);
  AddOrder(&orders, "u2", 0, 3, 21, true);
  v1::RecordEventsResponse tracked;
  status = RecordEvents(orders, &tracked);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(tracked.counts().recorded(), 2);
  ExpectAggregatesReached();
}

TEST_F(RedisAclE2eTest, AWrongPasswordIsLoggedAndRecordingIsSpooledUntilFixed) {
  const std::string spool_dir = dir_.path() + "/spool";
  StartServer({"--redis_user=abexp-recorder", "--redis_password=not-it",
               "--spool_dir=" + spool_dir, "--shutdown_grace=1s"});
  EXPECT_THAT(server_->Stderr(),
              HasSubstr("rejected user 'abexp-recorder' with the password"));
  EXPECT_THAT(server_->Stderr(), HasSubstr("kept in the spool"));
  EXPECT_THAT(server_->Stderr(), ::testing::Not(HasSubstr("not-it")));

  v1::RecordExposuresRequest exposures;
  for (int u = 0; u < 6; ++u)
    AddExposure(&exposures, absl::StrCat("u", u), u % 2, u);
  v1::RecordExposuresResponse exposed;
  grpc::Status status = RecordExposures(exposures, &exposed);
  ASSERT_TRUE(status.ok()) << status.error_message() << server_->Stderr();
  EXPECT_EQ(exposed.counts().spooled(), 6);
  EXPECT_THAT(Differences(), HasSubstr("exposed")) << "reached Redis";

  // With the password fixed, the next start replays what was spooled.
  ASSERT_TRUE(server_->Signal(SIGTERM).ok());
  absl::StatusOr<int> code = server_->WaitForExit(absl::Seconds(60));
  ASSERT_TRUE(code.ok()) << code.status();
  StartServer({"--redis_user=abexp-recorder", "--redis_password=rec-pass",
               "--spool_dir=" + spool_dir});
  ExpectAggregatesReached();
}

}  // namespace
}  // namespace abexp
