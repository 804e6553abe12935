#include "server/testing/recording_test_util.h"

#include <httplib.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "server/core/config_parser.h"
#include "server/storage/redis/redis_connection.h"
#include "server/storage/redis/redis_event_store.h"

namespace abexp::testing {
namespace {

absl::StatusOr<ExperimentAggregates> ReadAggregatesFromRedis(
    const std::string& redis_address, const std::string& key_prefix,
    const Config& config, const std::string& experiment) {
  const Experiment* e = config.FindExperiment(experiment);
  if (e == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("the config has no experiment \"", experiment,
                     "\"; pass a key of its experiments: section"));
  }
  RedisOptions options;
  if (absl::Status s = ParseRedisAddress(redis_address, &options); !s.ok()) {
    return s;
  }
  options.key_prefix = key_prefix;
  absl::StatusOr<std::unique_ptr<RedisPool>> pool = RedisPool::Create(options);
  if (!pool.ok()) return pool.status();
  absl::StatusOr<std::unique_ptr<RedisEventStore>> store =
      RedisEventStore::Create(pool->get());
  if (!store.ok()) return store.status();
  return (*store)->ReadAggregates(LayoutOf(config, *e));
}

}  // namespace

google::protobuf::Timestamp ToProto(absl::Time t) {
  google::protobuf::Timestamp p;
  const int64_t nanos = absl::ToUnixNanos(t);
  p.set_seconds(nanos / 1000000000);
  p.set_nanos(static_cast<int32_t>(nanos % 1000000000));
  return p;
}

v1::Unit User(const std::string& id) {
  v1::Unit unit;
  (*unit.mutable_ids())["user_id"] = id;
  return unit;
}

void SetDeadline(grpc::ClientContext* context, absl::Duration timeout) {
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

std::optional<v1::Assignment> FindAssignment(const v1::AssignResponse& response,
                                             const std::string& experiment) {
  for (const v1::Assignment& a : response.assignments()) {
    if (a.experiment_key() == experiment) return a;
  }
  return std::nullopt;
}

std::optional<v1::ExplainStep> FindStep(
    const v1::ExplainAssignmentResponse& response, const std::string& check) {
  for (const v1::ExplainStep& s : response.steps()) {
    if (s.check() == check) return s;
  }
  return std::nullopt;
}

bool Eventually(const std::function<bool()>& done, absl::Duration timeout,
                absl::Duration interval) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    if (done()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(interval);
  }
}

double MetricValue(int http_port, const std::string& name,
                   const std::vector<std::string>& labels) {
  httplib::Client client("127.0.0.1", http_port);
  client.set_connection_timeout(5);
  client.set_read_timeout(10);
  httplib::Result result = client.Get("/metrics");
  if (!result || result->status != 200) return -1;
  double sum = 0;
  for (absl::string_view line : absl::StrSplit(result->body, '\n')) {
    if (!absl::StartsWith(line, name + "{") &&
        !absl::StartsWith(line, name + " "))
      continue;
    bool match = true;
    for (const std::string& label : labels)
      match = match && absl::StrContains(line, label);
    double value = 0;
    if (match && absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &value))
      sum += value;
  }
  return sum;
}

MetricAggregate MetricOf(const VariantAggregate& variant,
                         const std::string& key) {
  auto it = variant.metrics.find(key);
  return it == variant.metrics.end() ? MetricAggregate() : it->second;
}

void FigureDiffs::Check(absl::string_view what, long double got,
                        long double want) {
  if (got != want) {
    diffs_.push_back(absl::StrCat(what, " is ", static_cast<double>(got),
                                  ", want ", static_cast<double>(want)));
  }
}

std::string FigureDiffs::ToString() const {
  return absl::StrJoin(diffs_, "; ");
}

RecordingServerTest::RecordingServerTest(std::string config_yaml,
                                         std::string redis_prefix)
    : config_yaml_(std::move(config_yaml)),
      redis_prefix_(std::move(redis_prefix)) {}

void RecordingServerTest::SetUp() {
  absl::StatusOr<std::unique_ptr<RedisProcess>> redis =
      RedisProcess::Start(redis_options_);
  ASSERT_TRUE(redis.ok()) << redis.status();
  redis_ = *std::move(redis);
  config_path_ = dir_.Write("experiments.yaml", config_yaml_);
  ParseResult parsed = ParseConfig(config_yaml_, "experiments.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.FormatDiagnostics();
  config_ = parsed.config;
}

void RecordingServerTest::StartServer(
    const std::vector<std::string>& extra_args) {
  std::vector<std::string> args = {"--redis=" + redis_->address()};
  if (!redis_prefix_.empty()) {
    args.push_back("--redis_prefix=" + redis_prefix_);
  }
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(config_path_, args);
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = *std::move(server);
  std::shared_ptr<grpc::Channel> channel = grpc::CreateChannel(
      server_->address(), grpc::InsecureChannelCredentials());
  assign_ = v1::AssignmentService::NewStub(channel);
  record_ = v1::RecordingService::NewStub(channel);
}

void RecordingServerTest::StartServerWithHttp(
    std::vector<std::string> extra_args) {
  extra_args.insert(
      extra_args.begin(),
      {"--http_listen=127.0.0.1:0", "--spool_dir=" + dir_.path() + "/spool"});
  ASSERT_NO_FATAL_FAILURE(StartServer(extra_args));
  http_port_ = server_->http_port();
  ASSERT_NE(http_port_, 0) << "no http= in " << server_->listening_line();
}

grpc::Status RecordingServerTest::RecordExposures(
    const v1::RecordExposuresRequest& request,
    v1::RecordExposuresResponse* response) {
  grpc::ClientContext context;
  SetDeadline(&context, call_timeout_);
  return record_->RecordExposures(&context, request, response);
}

grpc::Status RecordingServerTest::RecordEvents(
    const v1::RecordEventsRequest& request,
    v1::RecordEventsResponse* response) {
  grpc::ClientContext context;
  SetDeadline(&context, call_timeout_);
  return record_->RecordEvents(&context, request, response);
}

void RecordingServerTest::ExposeUsers(const std::string& experiment,
                                      const std::string& variant,
                                      const std::string& prefix, int n,
                                      absl::Time time) {
  std::vector<v1::Unit> units;
  for (int i = 0; i < n; ++i) units.push_back(User(absl::StrCat(prefix, i)));
  ExposeUnits(experiment, variant, units, time);
}

void RecordingServerTest::ExposeUnits(const std::string& experiment,
                                      const std::string& variant,
                                      const std::vector<v1::Unit>& units,
                                      absl::Time time) {
  v1::RecordExposuresRequest request;
  for (const v1::Unit& unit : units) {
    v1::ExposureRecord* e = request.add_exposures();
    e->set_experiment_key(experiment);
    e->set_variant_key(variant);
    *e->mutable_unit() = unit;
    *e->mutable_time() = ToProto(time);
  }
  v1::RecordExposuresResponse response;
  const grpc::Status status = RecordExposures(request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
}

void RecordingServerTest::SendEvents(const std::string& name,
                                     const std::string& prefix, int n,
                                     absl::Time time) {
  v1::RecordEventsRequest request;
  for (int i = 0; i < n; ++i) {
    v1::EventRecord* e = request.add_events();
    *e->mutable_unit() = User(absl::StrCat(prefix, i));
    e->set_name(name);
    *e->mutable_time() = ToProto(time);
  }
  v1::RecordEventsResponse response;
  const grpc::Status status = RecordEvents(request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
}

absl::StatusOr<ExperimentAggregates> RecordingServerTest::ReadAggregates(
    const std::string& experiment) const {
  // The server's default prefix when the fixture passes none.
  const std::string prefix =
      redis_prefix_.empty() ? RedisOptions().key_prefix : redis_prefix_;
  return ReadAggregatesFromRedis(redis_->address(), prefix, *config_,
                                 experiment);
}

ExperimentAggregates RecordingServerTest::ReadCheckout() const {
  absl::StatusOr<ExperimentAggregates> a = ReadAggregates("checkout");
  EXPECT_TRUE(a.ok()) << a.status();
  return a.ok() ? *std::move(a) : ExperimentAggregates();
}

std::string RecordingServerTest::AggregateDifferences(
    const std::string& experiment, size_t variants,
    const std::function<void(const ExperimentAggregates&, FigureDiffs*)>&
        compare) const {
  absl::StatusOr<ExperimentAggregates> a = ReadAggregates(experiment);
  if (!a.ok()) {
    return absl::StrCat("cannot read the aggregates: ", a.status().ToString());
  }
  if (a->variants.size() != variants) {
    return absl::StrCat("aggregates have ", a->variants.size(),
                        " variants, want ", variants);
  }
  FigureDiffs diffs;
  compare(*a, &diffs);
  return diffs.ToString();
}

}  // namespace abexp::testing
