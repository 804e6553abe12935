// Test support for the tests that record through a real abexp-server into a
// real redis-server and check what lands there: request builders, calls with
// deadlines, the aggregates read straight from Redis, comparisons of figures,
// and a fixture that runs Redis and the server.
//
// Thread safety: the free functions are thread-safe. A FigureDiffs and a
// RecordingServerTest are not (use them from the test's thread).
#ifndef ABEXP_SERVER_TESTING_RECORDING_TEST_UTIL_H_
#define ABEXP_SERVER_TESTING_RECORDING_TEST_UTIL_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "abexp/v1/assignment.grpc.pb.h"
#include "abexp/v1/recording.grpc.pb.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/core/config.h"
#include "server/core/event_store.h"
#include "server/testing/redis_process.h"
#include "server/testing/server_process.h"

namespace abexp::testing {

// A config whose one experiment, `checkout`, runs control and treatment
// 50/50 with the metrics order_conversion (binomial) and revenue (the sum
// of the values), both of the event order_completed.
inline constexpr char kCheckoutConfig[] = R"yaml(
metrics:
  - key: order_conversion
    type: binomial
    event: order_completed
  - key: revenue
    type: sum
    event: order_completed
    aggregate: value

experiments:
  - key: checkout
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [order_conversion, revenue]
    primary_metric: order_conversion
)yaml";

// `t` as a protobuf Timestamp, to the nanosecond.
google::protobuf::Timestamp ToProto(absl::Time t);

// A unit identified by user_id = `id`.
v1::Unit User(const std::string& id);

// Sets the deadline of `context` to `timeout` from now.
void SetDeadline(grpc::ClientContext* context, absl::Duration timeout);

// The assignment to `experiment` in `response`, or nullopt. Copies, so that
// it may be taken from a temporary response.
std::optional<v1::Assignment> FindAssignment(const v1::AssignResponse& response,
                                             const std::string& experiment);

// The step of `response` that made `check` (e.g. "sticky"), or nullopt.
std::optional<v1::ExplainStep> FindStep(
    const v1::ExplainAssignmentResponse& response, const std::string& check);

// Calls `done` until it returns true or `timeout` has passed, sleeping
// `interval` between calls, and returns whether it did. Calls it at least
// once. For states the server reaches in the background (a spool replay, a
// reconnect); a test fails on `false`, never on how long it took.
bool Eventually(const std::function<bool()>& done, absl::Duration timeout,
                absl::Duration interval);

// The sum of the samples of Prometheus metric `name` on the /metrics of the
// abexp-server HTTP listener at 127.0.0.1:`http_port` whose labels contain
// each of `labels` (e.g. `pool="recording"`); 0 when there is no such
// sample, -1 when /metrics cannot be read.
double MetricValue(int http_port, const std::string& name,
                   const std::vector<std::string>& labels = {});

// The metric `key` of `variant`, or all zeros when it has none yet (a metric
// no unit has counted for is absent).
MetricAggregate MetricOf(const VariantAggregate& variant,
                         const std::string& key);

// Collects the figures that differ from those a test expects, so that one
// message names them all (e.g. after polling until none differ). Figures
// compare exactly: tests use values that are binary fractions, whose sums are
// exact.
class FigureDiffs {
 public:
  // Notes "`what` is GOT, want WANT" when got != want.
  void Check(absl::string_view what, long double got, long double want);
  // The differences joined by "; ", or "" when there are none.
  std::string ToString() const;

 private:
  std::vector<std::string> diffs_;
};

// A fixture with a real redis-server (started in SetUp) and a real
// abexp-server recording into it (started by StartServer()). Tests derive
// from it, name their config and Redis key prefix to its constructor, and
// use its members.
class RecordingServerTest : public ::testing::Test {
 protected:
  // `config_yaml` is what abexp-server serves (written to experiments.yaml)
  // and what the fixture parses into config_. `redis_prefix` is the
  // server's --redis_prefix and the prefix ReadAggregates() reads under;
  // empty: the flag is not passed (the server's default, "abexp").
  RecordingServerTest(std::string config_yaml, std::string redis_prefix);

  // Starts Redis, writes the config to config_path_ and parses it into
  // config_. A fatal failure when any of that fails; a derived SetUp should
  // call this under ASSERT_NO_FATAL_FAILURE.
  void SetUp() override;

  // Starts abexp-server on config_path_ with --redis=redis_'s address and
  // --redis_prefix (when given), followed by `extra_args` (a later
  // flag wins), into server_, and connects assign_ and record_ to it. A fatal
  // failure when it does not come up.
  void StartServer(const std::vector<std::string>& extra_args = {});
  // StartServer with --http_listen=127.0.0.1:0 and --spool_dir=dir_/spool
  // before `extra_args`, and http_port_ set to the listener's port. A fatal
  // failure when the server does not come up or has no listener.
  void StartServerWithHttp(std::vector<std::string> extra_args = {});

  // record_'s calls, each with a deadline of call_timeout_.
  grpc::Status RecordExposures(const v1::RecordExposuresRequest& request,
                               v1::RecordExposuresResponse* response);
  grpc::Status RecordEvents(const v1::RecordEventsRequest& request,
                            v1::RecordEventsResponse* response);

  // Records, in one call, exposures of users `prefix`0 .. `prefix`(n-1) to
  // `variant` of `experiment` at `time`. A fatal failure when the call fails.
  void ExposeUsers(const std::string& experiment, const std::string& variant,
                   const std::string& prefix, int n, absl::Time time);
  // Records, in one call, exposures of `units` (with their attributes) to
  // `variant` of `experiment` at `time`. A fatal failure when the call
  // fails.
  void ExposeUnits(const std::string& experiment, const std::string& variant,
                   const std::vector<v1::Unit>& units, absl::Time time);
  // Records, in one call, event `name` once for each of users `prefix`0 ..
  // `prefix`(n-1) at `time`. A fatal failure when the call fails.
  void SendEvents(const std::string& name, const std::string& prefix, int n,
                  absl::Time time);

  // The aggregates of `experiment` (a key of config_) in redis_, read with a
  // RedisEventStore of its own: what an analyst would see. Errors are
  // returned as they come, e.g. UNAVAILABLE while Redis is down, NOT_FOUND
  // for an experiment config_ does not have.
  absl::StatusOr<ExperimentAggregates> ReadAggregates(
      const std::string& experiment) const;
  // The checkout experiment's aggregates; on an error a test failure (not
  // fatal) and empty aggregates.
  ExperimentAggregates ReadCheckout() const;

  // How `experiment`'s aggregates in Redis differ from what the test
  // expects, "" when they match: that they cannot be read, or do not have
  // `variants` variants, or else the differences `compare` notes.
  std::string AggregateDifferences(
      const std::string& experiment, size_t variants,
      const std::function<void(const ExperimentAggregates&, FigureDiffs*)>&
          compare) const;

  // Settings a derived constructor may change.
  // How SetUp starts redis-server, e.g. appendfsync "always" for tests that
  // kill it. Default: RedisProcessOptions's defaults.
  RedisProcessOptions redis_options_;
  // Deadline of each RecordExposures()/RecordEvents() call. Default: 30s,
  // generous: a stopped Redis holds calls and the machine may be loaded.
  absl::Duration call_timeout_ = absl::Seconds(30);

  TempDir dir_;
  std::string config_path_;  // dir_/experiments.yaml
  std::shared_ptr<const Config> config_;
  std::unique_ptr<RedisProcess> redis_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<v1::AssignmentService::Stub> assign_;
  std::unique_ptr<v1::RecordingService::Stub> record_;
  int http_port_ = 0;  // set by StartServerWithHttp

 private:
  const std::string config_yaml_;
  const std::string redis_prefix_;
};

}  // namespace abexp::testing

#endif  // ABEXP_SERVER_TESTING_RECORDING_TEST_UTIL_H_
