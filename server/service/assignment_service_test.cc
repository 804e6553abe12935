// AssignmentServiceImpl with sticky experiments, over real gRPC on loopback
// and a MemoryEventStore: exposed units keep their recorded variant across
// config reloads, only sticky experiments read the store, one store call per
// RPC, and store failures never fail a call. (tests/sticky_test.cc runs the
// same story against a real abexp-server and a real Redis.)
//
// Expected variants come from the bucketing spec (docs/bucketing.md):
// weights w1:w2 split the buckets at 10000 * w1 / (w1 + w2), and traffic t
// keeps the first floor(length * t) buckets of each variant's range.
#include "server/service/assignment_service.h"

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "abexp/v1/assignment.grpc.pb.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/core/bucketing.h"
#include "server/core/config_store.h"
#include "server/core/recorder.h"
#include "server/testing/memory_event_store.h"
#include "server/testing/recording_test_util.h"
#include "server/testing/server_process.h"

namespace abexp {
namespace {

using ::abexp::testing::FindAssignment;
using ::abexp::testing::FindStep;
using ::abexp::testing::TempDir;
using ::testing::HasSubstr;

// A MemoryEventStore that counts the sticky reads it serves and can fail
// them the way an unreachable Redis does. Writes pass straight through.
class ObservedStore final : public EventStore {
 public:
  absl::StatusOr<std::vector<WriteOutcome>> WriteExposures(
      const ExperimentLayout& layout,
      absl::Span<const Exposure> exposures) override {
    return memory_.WriteExposures(layout, exposures);
  }
  absl::StatusOr<std::vector<WriteOutcome>> WriteEvents(
      const ExperimentLayout& layout, absl::Span<const Event> events) override {
    return memory_.WriteEvents(layout, events);
  }
  absl::StatusOr<ExperimentAggregates> ReadAggregates(
      const ExperimentLayout& layout) override {
    return memory_.ReadAggregates(layout);
  }
  absl::StatusOr<std::optional<int>> RecordedVariant(
      const ExperimentLayout& layout, absl::string_view unit_id) override {
    single_reads_.fetch_add(1);
    absl::Status failure = failure_status();
    if (!failure.ok()) return failure;
    return memory_.RecordedVariant(layout, unit_id);
  }
  std::vector<RecordedVariantResult> RecordedVariants(
      absl::Span<const RecordedVariantQuery> queries) override {
    batch_calls_.fetch_add(1);
    queries_.fetch_add(static_cast<int>(queries.size()));
    absl::Status failure = failure_status();
    if (!failure.ok()) {
      return std::vector<RecordedVariantResult>(queries.size(), failure);
    }
    return memory_.RecordedVariants(queries);
  }

  void Fail(absl::Status status) {
    absl::MutexLock lock(&mu_);
    failure_ = std::move(status);
  }
  int single_reads() const { return single_reads_.load(); }
  int batch_calls() const { return batch_calls_.load(); }
  int queries() const { return queries_.load(); }
  MemoryEventStore& memory() { return memory_; }

 private:
  absl::Status failure_status() {
    absl::MutexLock lock(&mu_);
    return failure_;
  }
  MemoryEventStore memory_;
  std::atomic<int> single_reads_{0}, batch_calls_{0}, queries_{0};
  absl::Mutex mu_;
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
};

// The knobs the tests turn between reloads.
struct Knobs {
  Knobs& Weights(int first, int second) {
    w1 = first;
    w2 = second;
    return *this;
  }
  Knobs& Traffic(std::string t) {
    traffic = std::move(t);
    return *this;
  }
  Knobs& NotSticky() {
    sticky = false;
    return *this;
  }
  Knobs& Status(std::string s) {
    status = std::move(s);
    return *this;
  }
  Knobs& Phase(int p) {
    phase = p;
    return *this;
  }
  Knobs& PaintVariants(std::string v) {
    paint_variants = std::move(v);
    return *this;
  }
  Knobs& Paint(std::string extra) {
    paint_extra = std::move(extra);
    return *this;
  }
  Knobs& Top(std::string extra) {
    top_extra = std::move(extra);
    return *this;
  }
  Knobs& MoreExperiments(std::string extra) {
    more_experiments = std::move(extra);
    return *this;
  }

  int w1 = 50, w2 = 50;  // weights of the first and second variants
  std::string traffic = "1";
  bool sticky = true;
  std::string status = "running";
  int phase = 1;
  std::string paint_variants;  // replaces red/blue when set
  std::string paint_extra;     // more keys of `paint`
  std::string top_extra;       // more top-level sections
  std::string more_experiments;
};

// `paint` (sticky unless told) sets color; `sizing` (never sticky) sets
// size. Both split by the same weights.
std::string ConfigYaml(const Knobs& k) {
  std::string paint_variants =
      !k.paint_variants.empty()
          ? k.paint_variants
          : absl::StrCat("      - {key: red, weight: ", k.w1,
                         ", features: {color: red}}\n",
                         "      - {key: blue, weight: ", k.w2,
                         ", features: {color: blue}}\n");
  return absl::StrCat(R"yaml(
attributes:
  country: string
layers:
  shelf: {unit: user_id}
features:
  - {key: color, type: string, default: grey}
  - {key: size, type: number, default: 0}
)yaml",
                      k.top_extra, R"yaml(
experiments:
  - key: paint
    status: )yaml",
                      k.status, "\n    sticky: ", k.sticky ? "true" : "false",
                      "\n    phase: ", k.phase, "\n    traffic: ", k.traffic,
                      "\n", k.paint_extra, "    variants:\n", paint_variants,
                      R"yaml(  - key: sizing
    status: running
    variants:
)yaml",
                      "      - {key: small, weight: ", k.w1,
                      ", features: {size: 1}}\n",
                      "      - {key: large, weight: ", k.w2,
                      ", features: {size: 2}}\n", k.more_experiments);
}

uint32_t VariantBucket(const std::string& salt, const std::string& id) {
  return Bucket(HashPurpose::kVariant, salt, id);
}

// The variant the spec gives at weights w1:w2 and full traffic.
std::string BySpec(const std::string& salt, const std::string& id, int w1,
                   int w2, const std::string& first,
                   const std::string& second) {
  const uint32_t split = static_cast<uint32_t>(10000 * w1 / (w1 + w2));
  return VariantBucket(salt, id) < split ? first : second;
}

class StickyServiceTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  // Serves `yaml` with the sticky options given (store_ and a log capture
  // by default).
  void Start(const std::string& yaml, StickyOptions sticky) {
    path_ = dir_.Write("experiments.yaml", yaml);
    absl::StatusOr<std::unique_ptr<ConfigStore>> config_store =
        ConfigStore::Open(path_);
    ASSERT_TRUE(config_store.ok()) << config_store.status();
    config_store_ = *std::move(config_store);
    recorder_ = std::make_unique<Recorder>(&store_);
    service_ = std::make_unique<AssignmentServiceImpl>(
        config_store_.get(), recorder_.get(), std::move(sticky));
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::AssignmentService::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }
  void Start(const std::string& yaml) { Start(yaml, DefaultSticky()); }

  StickyOptions DefaultSticky() {
    StickyOptions sticky;
    sticky.store = &store_;
    sticky.log = [this](absl::string_view line) {
      absl::MutexLock lock(&log_mu_);
      log_.emplace_back(line);
    };
    return sticky;
  }
  std::vector<std::string> Log() {
    absl::MutexLock lock(&log_mu_);
    return log_;
  }

  void Reload(const std::string& yaml) {
    dir_.Write("experiments.yaml", yaml);
    absl::StatusOr<LoadResult> loaded = config_store_->Reload();
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    ASSERT_TRUE(loaded->changed);
  }

  static v1::Unit User(const std::string& id, const std::string& country = "") {
    v1::Unit unit;
    (*unit.mutable_ids())["user_id"] = id;
    if (!country.empty()) {
      (*unit.mutable_attributes())["country"].set_string_value(country);
    }
    return unit;
  }

  v1::AssignResponse Assign(const v1::Unit& unit, bool record = false,
                            std::vector<std::string> experiment_keys = {}) {
    v1::AssignRequest request;
    *request.mutable_unit() = unit;
    request.set_record_exposure(record);
    for (const std::string& k : experiment_keys) request.add_experiment_keys(k);
    v1::AssignResponse response;
    grpc::ClientContext context;
    grpc::Status s = stub_->Assign(&context, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response;
  }
  v1::AssignResponse Assign(const std::string& id) { return Assign(User(id)); }

  v1::BatchAssignResponse BatchAssign(const std::vector<v1::Unit>& units) {
    v1::BatchAssignRequest request;
    for (const v1::Unit& u : units) *request.add_units() = u;
    v1::BatchAssignResponse response;
    grpc::ClientContext context;
    grpc::Status s = stub_->BatchAssign(&context, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response;
  }

  v1::ExplainAssignmentResponse Explain(const v1::Unit& unit,
                                        const std::string& experiment) {
    v1::ExplainAssignmentRequest request;
    *request.mutable_unit() = unit;
    request.set_experiment_key(experiment);
    v1::ExplainAssignmentResponse response;
    grpc::ClientContext context;
    grpc::Status s = stub_->ExplainAssignment(&context, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response;
  }

  // Records that `id` was shown `variant` of `experiment`, as
  // RecordExposures does.
  void Expose(const std::string& id, const std::string& experiment,
              const std::string& variant) {
    ExposureInput x;
    x.experiment_key = experiment;
    x.unit.ids["user_id"] = id;
    x.variant_key = variant;
    absl::StatusOr<RecordBatchResult> r = recorder_->RecordExposures(
        *config_store_->Snapshot(), {x}, absl::Now());
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->results[0].outcome, WriteOutcome::kRecorded) << id;
  }

  ExperimentAggregates Aggregates(const std::string& experiment) {
    std::shared_ptr<const Config> config = config_store_->Snapshot();
    absl::StatusOr<ExperimentAggregates> a = store_.memory().ReadAggregates(
        LayoutOf(*config, *config->FindExperiment(experiment)));
    EXPECT_TRUE(a.ok()) << a.status();
    return a.ok() ? *a : ExperimentAggregates{};
  }

  TempDir dir_;
  std::string path_;
  ObservedStore store_;
  std::unique_ptr<ConfigStore> config_store_;
  std::unique_ptr<Recorder> recorder_;
  std::unique_ptr<AssignmentServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::AssignmentService::Stub> stub_;
  absl::Mutex log_mu_;
  std::vector<std::string> log_ ABSL_GUARDED_BY(log_mu_);
};

TEST_F(StickyServiceTest,
       ExposedUnitsKeepTheirVariantAndFeaturesWhenWeightsChange) {
  Start(ConfigYaml(Knobs()));
  // Half the units are shown their variant (record_exposure), half never.
  std::map<std::string, std::string> paint_seen, sizing_seen;
  for (int i = 0; i < 400; ++i) {
    const std::string id = absl::StrCat("u", i);
    v1::AssignResponse r = Assign(User(id), /*record=*/i < 200);
    EXPECT_EQ(r.exposure_error(), "") << id;
    ASSERT_TRUE(FindAssignment(r, "paint").has_value()) << id;
    EXPECT_EQ(FindAssignment(r, "paint")->reason(),
              v1::ASSIGNMENT_REASON_BUCKETED);
    if (i < 200) {
      paint_seen[id] = FindAssignment(r, "paint")->variant_key();
      sizing_seen[id] = FindAssignment(r, "sizing")->variant_key();
    }
  }

  Reload(ConfigYaml(Knobs().Weights(10, 90)));
  int paint_kept_against_hash = 0, sizing_moved = 0;
  for (int i = 0; i < 400; ++i) {
    const std::string id = absl::StrCat("u", i);
    const v1::AssignResponse r = Assign(id);
    const std::optional<v1::Assignment> paint = FindAssignment(r, "paint");
    const std::optional<v1::Assignment> sizing = FindAssignment(r, "sizing");
    ASSERT_TRUE(paint.has_value()) << id;
    ASSERT_TRUE(sizing.has_value()) << id;
    const std::string paint_hash = BySpec("paint", id, 10, 90, "red", "blue");
    const std::string sizing_hash =
        BySpec("sizing", id, 10, 90, "small", "large");
    if (i < 200) {
      EXPECT_EQ(paint->variant_key(), paint_seen[id]) << id;
      EXPECT_EQ(paint->reason(), v1::ASSIGNMENT_REASON_STICKY) << id;
      paint_kept_against_hash += paint_seen[id] != paint_hash;
      sizing_moved += sizing_seen[id] != sizing_hash;
    } else {
      EXPECT_EQ(paint->variant_key(), paint_hash) << id;
      EXPECT_EQ(paint->reason(), v1::ASSIGNMENT_REASON_BUCKETED) << id;
    }
    // The feature follows the variant served, sticky or not.
    const v1::ResolvedFeature* color = FindFeature(r, "color");
    ASSERT_NE(color, nullptr) << id;
    EXPECT_EQ(color->value().string_value(), paint->variant_key()) << id;
    EXPECT_EQ(color->source(), v1::FEATURE_SOURCE_EXPERIMENT) << id;
    EXPECT_EQ(color->variant_key(), paint->variant_key()) << id;
    // Not sticky: follows the new weights, exposed or not.
    EXPECT_EQ(sizing->variant_key(), sizing_hash) << id;
    EXPECT_EQ(sizing->reason(), v1::ASSIGNMENT_REASON_BUCKETED) << id;
  }
  // About 40% of the exposed units sit where the split moved.
  EXPECT_GT(paint_kept_against_hash, 40);
  EXPECT_GT(sizing_moved, 40);

  // Showing the sticky variants again records nothing new; showing the moved
  // non-sticky variants makes those units multi-exposed.
  for (int i = 0; i < 200; ++i) {
    EXPECT_EQ(
        Assign(User(absl::StrCat("u", i)), /*record=*/true).exposure_error(),
        "");
  }
  EXPECT_EQ(Aggregates("paint").multi_exposed, 0);
  EXPECT_EQ(Aggregates("paint").variants[0].exposed +
                Aggregates("paint").variants[1].exposed,
            200);
  EXPECT_EQ(Aggregates("sizing").multi_exposed, sizing_moved);
}

TEST_F(StickyServiceTest, TrafficCutsKeepExposedUnitsAndAdmitNoOthers) {
  Start(ConfigYaml(Knobs()));
  // The record decides, not the hash: expose each unit to a variant chosen
  // here.
  auto chosen = [](int i) { return i % 2 == 0 ? "red" : "blue"; };
  for (int i = 0; i < 300; ++i)
    Expose(absl::StrCat("u", i), "paint", chosen(i));

  Reload(ConfigYaml(Knobs().Traffic("0.1")));
  int admitted = 0;
  for (int i = 0; i < 1000; ++i) {
    const std::string id = absl::StrCat("u", i);
    const std::optional<v1::Assignment> paint =
        FindAssignment(Assign(id), "paint");
    if (i < 300) {
      ASSERT_TRUE(paint.has_value()) << id;
      EXPECT_EQ(paint->variant_key(), chosen(i)) << id;
      EXPECT_EQ(paint->reason(), v1::ASSIGNMENT_REASON_STICKY) << id;
      continue;
    }
    // 50/50 at traffic 0.1: red [0, 500), blue [5000, 5500).
    const uint32_t b = VariantBucket("paint", id);
    const std::string expected = b < 500                 ? "red"
                                 : b >= 5000 && b < 5500 ? "blue"
                                                         : "";
    EXPECT_EQ(paint ? paint->variant_key() : std::string(), expected) << id;
    if (paint.has_value()) {
      ++admitted;
      EXPECT_EQ(paint->reason(), v1::ASSIGNMENT_REASON_BUCKETED) << id;
    }
  }
  EXPECT_GT(admitted, 20);
}

TEST_F(StickyServiceTest, QaOverrideHoldoutTargetingAndLayerStillDecide) {
  Start(
      ConfigYaml(Knobs().Paint("    layer: shelf\n    layer_range: [0, 1]\n")));
  for (int i = 0; i < 400; ++i) Expose(absl::StrCat("u", i), "paint", "blue");
  Reload(ConfigYaml(Knobs()
                        .Paint("    layer: shelf\n    layer_range: [0, 0.5]\n"
                               "    targeting: {attribute: country, eq: NL}\n"
                               "    qa_overrides: {red: [u1]}\n")
                        .Top("holdout: {fraction: 0.3, salt: hold}\n")));
  int sticky = 0;
  for (int i = 0; i < 400; ++i) {
    const std::string id = absl::StrCat("u", i);
    const v1::AssignResponse dutch = Assign(User(id, "NL"));
    const std::optional<v1::Assignment> paint = FindAssignment(dutch, "paint");
    const bool held = Bucket(HashPurpose::kHoldout, "hold", id) < 3000;
    EXPECT_EQ(dutch.in_holdout(), held) << id;
    if (id == "u1") {
      ASSERT_TRUE(paint.has_value());
      EXPECT_EQ(paint->variant_key(), "red");
      EXPECT_EQ(paint->reason(), v1::ASSIGNMENT_REASON_QA_OVERRIDE);
      continue;
    }
    const bool in_layer = Bucket(HashPurpose::kLayer, "shelf", id) < 5000;
    if (held || !in_layer) {
      EXPECT_FALSE(paint.has_value())
          << id << (held ? " is held out" : " left the layer");
      continue;
    }
    ++sticky;
    ASSERT_TRUE(paint.has_value()) << id;
    EXPECT_EQ(paint->variant_key(), "blue") << id;
    EXPECT_EQ(paint->reason(), v1::ASSIGNMENT_REASON_STICKY) << id;
    // The same unit outside the targeting gets nothing.
    EXPECT_FALSE(FindAssignment(Assign(User(id, "DE")), "paint").has_value())
        << id;
  }
  EXPECT_GT(sticky, 80);
}

TEST_F(StickyServiceTest, PausedStoppedAndNewPhaseIgnoreTheRecord) {
  Start(ConfigYaml(Knobs()));
  for (int i = 0; i < 100; ++i) Expose(absl::StrCat("u", i), "paint", "blue");

  Reload(ConfigYaml(Knobs().Status("paused")));
  for (int i = 0; i < 100; ++i) {
    EXPECT_FALSE(
        FindAssignment(Assign(absl::StrCat("u", i)), "paint").has_value());
  }
  Reload(ConfigYaml(
      Knobs().Status("stopped").Paint("    rollout_variant: red\n")));
  for (int i = 0; i < 100; ++i) {
    const v1::AssignResponse r = Assign(absl::StrCat("u", i));
    ASSERT_TRUE(FindAssignment(r, "paint").has_value());
    EXPECT_EQ(FindAssignment(r, "paint")->variant_key(), "red");
    EXPECT_EQ(FindAssignment(r, "paint")->reason(),
              v1::ASSIGNMENT_REASON_ROLLOUT);
  }
  Reload(ConfigYaml(Knobs().Phase(2)));
  for (int i = 0; i < 100; ++i) {
    const std::string id = absl::StrCat("u", i);
    const std::optional<v1::Assignment> paint =
        FindAssignment(Assign(id), "paint");
    ASSERT_TRUE(paint.has_value());
    EXPECT_EQ(paint->variant_key(), BySpec("paint", id, 50, 50, "red", "blue"))
        << id;
    EXPECT_EQ(paint->reason(), v1::ASSIGNMENT_REASON_BUCKETED) << id;
  }
}

TEST_F(StickyServiceTest, ARecordedVariantDroppedFromTheConfigIsIgnored) {
  Start(ConfigYaml(Knobs().PaintVariants(
      "      - {key: red, weight: 1, features: {color: red}}\n"
      "      - {key: blue, weight: 1, features: {color: blue}}\n"
      "      - {key: green, weight: 1, features: {color: green}}\n")));
  for (int i = 0; i < 100; ++i) Expose(absl::StrCat("u", i), "paint", "green");
  Reload(ConfigYaml(Knobs()));  // green, the last variant, is gone
  for (int i = 0; i < 100; ++i) {
    const std::string id = absl::StrCat("u", i);
    const v1::AssignResponse r = Assign(id);
    const std::optional<v1::Assignment> paint = FindAssignment(r, "paint");
    ASSERT_TRUE(paint.has_value());
    EXPECT_EQ(paint->variant_key(), BySpec("paint", id, 50, 50, "red", "blue"));
    EXPECT_EQ(paint->reason(), v1::ASSIGNMENT_REASON_BUCKETED);
    const std::optional<v1::ExplainStep> step =
        FindStep(Explain(User(id), "paint"), "sticky");
    ASSERT_TRUE(step.has_value());
    EXPECT_THAT(step->detail(), HasSubstr("not among the 2 variants"));
  }
}

TEST_F(StickyServiceTest, ReorderedVariantsAreNotReadAgainstTheRecord) {
  Start(ConfigYaml(Knobs()));
  for (int i = 0; i < 50; ++i) Expose(absl::StrCat("u", i), "paint", "blue");
  // Index 1 was blue; it would now name red.
  Reload(ConfigYaml(Knobs().PaintVariants(
      "      - {key: blue, weight: 50, features: {color: blue}}\n"
      "      - {key: red, weight: 50, features: {color: red}}\n")));
  for (int i = 0; i < 50; ++i) {
    const std::string id = absl::StrCat("u", i);
    const std::optional<v1::Assignment> paint =
        FindAssignment(Assign(id), "paint");
    ASSERT_TRUE(paint.has_value());
    EXPECT_EQ(paint->variant_key(), BySpec("paint", id, 50, 50, "blue", "red"));
    // The record could not be read against the new order: said so.
    EXPECT_EQ(paint->reason(), v1::ASSIGNMENT_REASON_STICKY_UNREAD);
  }
  const std::optional<v1::ExplainStep> step =
      FindStep(Explain(User("u1"), "paint"), "sticky");
  ASSERT_TRUE(step.has_value());
  EXPECT_FALSE(step->passed());
  EXPECT_THAT(step->detail(), HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(step->detail(), HasSubstr("bump the experiment's `phase`"));
  ASSERT_FALSE(Log().empty());
  EXPECT_THAT(Log()[0], HasSubstr("paint"));
  EXPECT_THAT(Log()[0], HasSubstr("Restore the variant order"));
}

TEST_F(StickyServiceTest, NonStickyExperimentsNeverReadTheStore) {
  Start(ConfigYaml(Knobs().NotSticky()));
  for (int i = 0; i < 50; ++i) Expose(absl::StrCat("u", i), "paint", "blue");
  std::vector<v1::Unit> units;
  for (int i = 0; i < 100; ++i) {
    const std::string id = absl::StrCat("u", i);
    units.push_back(User(id));
    const std::optional<v1::Assignment> paint =
        FindAssignment(Assign(User(id), true), "paint");
    ASSERT_TRUE(paint.has_value());
    EXPECT_EQ(paint->reason(), v1::ASSIGNMENT_REASON_BUCKETED);
    Explain(User(id), "paint");
  }
  BatchAssign(units);
  EXPECT_EQ(store_.batch_calls(), 0);
  EXPECT_EQ(store_.single_reads(), 0);

  // A sticky experiment the request does not evaluate is not read either.
  Reload(ConfigYaml(Knobs()));
  for (int i = 0; i < 50; ++i) {
    Assign(User(absl::StrCat("u", i)), false, {"sizing"});
    Explain(User(absl::StrCat("u", i)), "sizing");
  }
  EXPECT_EQ(store_.batch_calls(), 0);
  EXPECT_EQ(store_.single_reads(), 0);
}

TEST_F(StickyServiceTest, EachCallReadsTheStoreOnceForAllItsLookups) {
  Start(ConfigYaml(Knobs().MoreExperiments(R"yaml(  - key: shade
    status: running
    sticky: true
    variants:
      - {key: light, weight: 1}
      - {key: dark, weight: 1}
)yaml")));
  Expose("u1", "paint", "blue");
  Expose("u1", "shade", "dark");
  const v1::AssignResponse r = Assign("u1");
  EXPECT_EQ(FindAssignment(r, "paint")->reason(), v1::ASSIGNMENT_REASON_STICKY);
  EXPECT_EQ(FindAssignment(r, "shade")->variant_key(), "dark");
  EXPECT_EQ(FindAssignment(r, "shade")->reason(), v1::ASSIGNMENT_REASON_STICKY);
  EXPECT_EQ(store_.batch_calls(), 1);
  EXPECT_EQ(store_.queries(), 2);

  std::vector<v1::Unit> units;
  for (int i = 0; i < 100; ++i) units.push_back(User(absl::StrCat("u", i)));
  const v1::BatchAssignResponse batch = BatchAssign(units);
  ASSERT_EQ(batch.results_size(), 100);
  EXPECT_EQ(FindAssignment(batch.results(1), "shade")->reason(),
            v1::ASSIGNMENT_REASON_STICKY);
  EXPECT_EQ(store_.batch_calls(), 2);
  EXPECT_EQ(store_.queries(), 2 + 200);

  Explain(User("u1"), "shade");
  EXPECT_EQ(store_.batch_calls(), 3);
  EXPECT_EQ(store_.queries(), 2 + 200 + 1);
  EXPECT_EQ(store_.single_reads(), 0);
}

TEST_F(StickyServiceTest, BatchAssignAndExplainAgreeWithAssign) {
  Start(ConfigYaml(
      Knobs().Paint("    targeting: {attribute: country, eq: NL}\n")));
  for (int i = 0; i < 300; i += 2) {
    Expose(absl::StrCat("u", i), "paint", i % 4 == 0 ? "red" : "blue");
  }
  Reload(ConfigYaml(Knobs().Weights(10, 90).Traffic("0.5").Paint(
      "    targeting: {attribute: country, eq: NL}\n")));
  std::vector<v1::Unit> units;
  for (int i = 0; i < 300; ++i) {
    units.push_back(User(absl::StrCat("u", i), i % 3 == 0 ? "DE" : "NL"));
  }
  const v1::BatchAssignResponse batch = BatchAssign(units);
  ASSERT_EQ(batch.results_size(), 300);
  int sticky = 0;
  for (int i = 0; i < 300; ++i) {
    const v1::AssignResponse single = Assign(units[i]);
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(
        batch.results(i), single))
        << "unit " << i << "\nbatch: " << batch.results(i).DebugString()
        << "\nsingle: " << single.DebugString();
    const std::optional<v1::Assignment> paint = FindAssignment(single, "paint");
    const v1::ExplainAssignmentResponse x = Explain(units[i], "paint");
    EXPECT_EQ(x.variant_key(), paint ? paint->variant_key() : std::string())
        << i;
    if (paint.has_value()) {
      EXPECT_EQ(x.reason(), paint->reason()) << i;
      sticky += paint->reason() == v1::ASSIGNMENT_REASON_STICKY;
    }
  }
  EXPECT_EQ(sticky, 100);  // the exposed units with country NL
}

TEST_F(StickyServiceTest, StoreFailureServesComputedVariantsLogsOnceAndPauses) {
  StickyOptions sticky = DefaultSticky();
  sticky.retry_after = absl::Hours(1);
  Start(ConfigYaml(Knobs()), sticky);
  auto chosen = [](int i) { return i % 2 == 0 ? "red" : "blue"; };
  for (int i = 0; i < 50; ++i) Expose(absl::StrCat("u", i), "paint", chosen(i));
  store_.Fail(absl::UnavailableError("Redis at 127.0.0.1:9 is unreachable"));
  for (int i = 0; i < 50; ++i) {
    const std::string id = absl::StrCat("u", i);
    const std::optional<v1::Assignment> paint =
        FindAssignment(Assign(id), "paint");
    ASSERT_TRUE(paint.has_value()) << id;
    EXPECT_EQ(paint->variant_key(), BySpec("paint", id, 50, 50, "red", "blue"));
    EXPECT_EQ(paint->reason(), v1::ASSIGNMENT_REASON_STICKY_UNREAD);
  }
  // The first failure paused lookups: the store was asked once.
  EXPECT_EQ(store_.batch_calls(), 1);
  ASSERT_EQ(Log().size(), 1u);
  EXPECT_THAT(Log()[0], HasSubstr("paint"));
  EXPECT_THAT(Log()[0],
              HasSubstr("UNAVAILABLE: Redis at 127.0.0.1:9 is unreachable"));
  const v1::ExplainAssignmentResponse x = Explain(User("u1"), "paint");
  const std::optional<v1::ExplainStep> step = FindStep(x, "sticky");
  ASSERT_TRUE(step.has_value());
  EXPECT_FALSE(step->passed());
  EXPECT_THAT(step->detail(), HasSubstr("paused"));
  EXPECT_THAT(step->detail(), HasSubstr("Redis at 127.0.0.1:9 is unreachable"));
  EXPECT_EQ(x.reason(), v1::ASSIGNMENT_REASON_STICKY_UNREAD);
}

TEST_F(StickyServiceTest,
       FailuresAreLoggedAtMostOncePerIntervalAndStickinessReturns) {
  StickyOptions sticky = DefaultSticky();
  sticky.retry_after = absl::ZeroDuration();
  sticky.log_interval = absl::Hours(1);
  Start(ConfigYaml(Knobs()), sticky);
  Expose("u1", "paint", "red");
  Expose("u2", "paint", "blue");
  store_.Fail(absl::DeadlineExceededError("Redis did not answer in 2s"));
  for (int i = 0; i < 30; ++i) Assign("u1");
  EXPECT_EQ(store_.batch_calls(), 30);  // no pause: every call tried
  EXPECT_EQ(Log().size(), 1u);

  store_.Fail(absl::OkStatus());
  for (const auto& [id, variant] :
       std::vector<std::pair<std::string, std::string>>{{"u1", "red"},
                                                        {"u2", "blue"}}) {
    const std::optional<v1::Assignment> paint =
        FindAssignment(Assign(id), "paint");
    ASSERT_TRUE(paint.has_value());
    EXPECT_EQ(paint->variant_key(), variant);
    EXPECT_EQ(paint->reason(), v1::ASSIGNMENT_REASON_STICKY);
  }
  EXPECT_EQ(Log().size(), 1u);
}

TEST_F(StickyServiceTest,
       WithoutAStoreStickyExperimentsAreUnreadAndExplainSaysWhy) {
  StickyOptions none;
  none.log = [this](absl::string_view line) {
    absl::MutexLock lock(&log_mu_);
    log_.emplace_back(line);
  };
  Start(ConfigYaml(Knobs()), none);
  Expose("u1", "paint", "blue");  // recorded, but this service cannot read it
  const std::optional<v1::Assignment> paint =
      FindAssignment(Assign("u1"), "paint");
  ASSERT_TRUE(paint.has_value());
  EXPECT_EQ(paint->variant_key(), BySpec("paint", "u1", 50, 50, "red", "blue"));
  EXPECT_EQ(paint->reason(), v1::ASSIGNMENT_REASON_STICKY_UNREAD);
  const std::optional<v1::ExplainStep> step =
      FindStep(Explain(User("u1"), "paint"), "sticky");
  ASSERT_TRUE(step.has_value());
  EXPECT_THAT(step->detail(), HasSubstr("no event store"));
  EXPECT_EQ(store_.batch_calls(), 0);
  EXPECT_TRUE(Log().empty());
}

}  // namespace
}  // namespace abexp
