// End-to-end tests of abexp-server: a real server process, real gRPC on
// loopback. Expected buckets come from an independent implementation of
// docs/bucketing.md (below), not from the server.
#include <signal.h>
#include <xxhash.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "abexp/v1/assignment.grpc.pb.h"
#include "abexp/v1/assignment.pb.h"
#include "abexp/v1/recording.pb.h"
#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/testing/server_process.h"

namespace abexp {
namespace {

using ::abexp::testing::RunProcess;
using ::abexp::testing::ServerProcess;
using ::abexp::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr char kConfig[] = R"yaml(
attributes:
  country: string
  days_since_signup: number
  is_vip: bool
  app_version: semver

segments:
  north_america: {attribute: country, in: [US, CA]}

holdout:
  fraction: 0.05
  salt: e2e-holdout

layers:
  checkout:
    description: Checkout experiments
    salt: checkout-layer

features:
  - key: checkout_flow
    type: string
    default: multi_step
  - key: new_search
    type: bool
    default: false
    rules:
      - when: {attribute: country, eq: CN}
        value: true
  - key: search_limit
    type: number
    default: 10
  - key: banner
    type: json
    default: {color: blue}

metrics:
  - key: order_conversion
    type: binomial
    event: order_completed
  - key: arpu
    type: sum
    event: order_completed

experiments:
  - key: one_page_checkout
    description: One-page checkout vs the multi-step flow
    owner: checkout-team@example.com
    status: running
    layer: checkout
    layer_range: [0, 0.5]
    variants:
      - key: control
        weight: 50
        features: {checkout_flow: multi_step}
      - key: one_page
        weight: 50
        features: {checkout_flow: one_page}
    qa_overrides:
      one_page: [qa-user-1]
    metrics: [order_conversion, arpu]
    primary_metric: order_conversion
  - key: na_search
    status: running
    traffic: 0.5
    targeting: {segment: north_america}
    start: 2020-01-01T00:00:00Z
    variants:
      - key: control
        weight: 1
        features: {search_limit: 10}
      - key: bigger
        weight: 1
        features: {search_limit: 20}
  - key: old_banner
    status: stopped
    rollout_variant: red
    variants:
      - key: blue
        weight: 1
        features: {banner: {color: blue}}
      - key: red
        weight: 1
        features: {banner: {color: red}}
  - key: draft_idea
    status: draft
    variants:
      - key: a
        weight: 1
)yaml";

// docs/bucketing.md, sections 1 and 2.
std::string SpecInput(const std::string& purpose, const std::string& salt,
                      const std::string& id) {
  std::string out;
  for (const std::string* field : {&purpose, &salt, &id}) {
    uint32_t n = static_cast<uint32_t>(field->size());
    for (int i = 0; i < 4; ++i)
      out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
    out += *field;
  }
  return out;
}
uint64_t SpecHash(const std::string& purpose, const std::string& salt,
                  const std::string& id) {
  std::string input = SpecInput(purpose, salt, id);
  return XXH3_64bits(input.data(), input.size());
}
uint32_t SpecBucket(const std::string& purpose, const std::string& salt,
                    const std::string& id) {
  return static_cast<uint32_t>(SpecHash(purpose, salt, id) % 10000);
}

std::string VersionOf(const std::string& text) {
  return absl::StrFormat("%016x", XXH3_64bits(text.data(), text.size()));
}

v1::Unit UserUnit(const std::string& user_id) {
  v1::Unit unit;
  (*unit.mutable_ids())["user_id"] = user_id;
  return unit;
}

v1::Unit UserIn(const std::string& user_id, const std::string& country) {
  v1::Unit unit = UserUnit(user_id);
  (*unit.mutable_attributes())["country"].set_string_value(country);
  return unit;
}

const v1::Assignment* FindAssignment(const v1::AssignResponse& r,
                                     const std::string& key) {
  for (const v1::Assignment& a : r.assignments()) {
    if (a.experiment_key() == key) return &a;
  }
  return nullptr;
}

class ServerE2E : public ::testing::Test {
 protected:
  // A failure here is reported by SetUp() in every test: an assertion in
  // SetUpTestSuite would make GoogleTest skip the tests, and ctest counts a
  // skipped test as passing.
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    config_path_ = new std::string(dir_->Write("experiments.yaml", kConfig));
    absl::StatusOr<std::unique_ptr<ServerProcess>> server =
        ServerProcess::Start(*config_path_);
    if (!server.ok()) {
      start_error_ = new absl::Status(server.status());
      return;
    }
    server_ = server->release();
    stub_ = v1::AssignmentService::NewStub(
                grpc::CreateChannel(server_->address(),
                                    grpc::InsecureChannelCredentials()))
                .release();
  }
  void SetUp() override { ASSERT_EQ(start_error_, nullptr) << *start_error_; }
  static void TearDownTestSuite() {
    delete start_error_;
    start_error_ = nullptr;
    delete stub_;
    delete server_;
    delete config_path_;
    delete dir_;
  }

  template <typename Req, typename Resp,
            typename Method = grpc::Status (v1::AssignmentService::Stub::*)(
                grpc::ClientContext*, const Req&, Resp*)>
  static grpc::Status Call(Method method, const Req& request, Resp* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
    return (stub_->*method)(&context, request, response);
  }

  static v1::AssignResponse MustAssign(const v1::Unit& unit) {
    v1::AssignRequest request;
    *request.mutable_unit() = unit;
    v1::AssignResponse response;
    grpc::Status status =
        Call(&v1::AssignmentService::Stub::Assign, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  static grpc::Status AssignStatus(const v1::AssignRequest& request) {
    v1::AssignResponse response;
    return Call(&v1::AssignmentService::Stub::Assign, request, &response);
  }

  static std::string Version() { return VersionOf(kConfig); }

  static absl::Status* start_error_;
  static TempDir* dir_;
  static std::string* config_path_;
  static ServerProcess* server_;
  static v1::AssignmentService::Stub* stub_;
};

absl::Status* ServerE2E::start_error_ = nullptr;
TempDir* ServerE2E::dir_ = nullptr;
std::string* ServerE2E::config_path_ = nullptr;
ServerProcess* ServerE2E::server_ = nullptr;
v1::AssignmentService::Stub* ServerE2E::stub_ = nullptr;

// The first user ids (u-0, u-1, ...) that are not held out, and whether each
// falls in one_page_checkout's half of the checkout layer.
std::vector<std::string> UsersNotHeldOut(int n) {
  std::vector<std::string> ids;
  for (int i = 0; static_cast<int>(ids.size()) < n; ++i) {
    std::string id = absl::StrCat("u-", i);
    if (SpecBucket("holdout", "e2e-holdout", id) >= 500) ids.push_back(id);
  }
  return ids;
}

TEST_F(ServerE2E, ListeningLineNamesConfigAndVersion) {
  EXPECT_EQ(server_->listening_line(),
            absl::StrCat("abexp-server listening on ", server_->address(),
                         " config=", *config_path_, " version=", Version(),
                         " redis=127.0.0.1:6379"));
}

TEST_F(ServerE2E, AssignReturnsQaOverrideVariantFeaturesAndConfigVersion) {
  v1::AssignResponse r = MustAssign(UserUnit("qa-user-1"));
  EXPECT_EQ(r.config_version(), Version());
  const v1::Assignment* a = FindAssignment(r, "one_page_checkout");
  ASSERT_NE(a, nullptr) << r.DebugString();
  EXPECT_EQ(a->variant_key(), "one_page");
  EXPECT_EQ(a->reason(), v1::ASSIGNMENT_REASON_QA_OVERRIDE);
  EXPECT_EQ(a->layer(), "checkout");
  EXPECT_EQ(a->phase(), 1);
  EXPECT_EQ(a->unit_id_type(), "user_id");

  const v1::ResolvedFeature* flow = FindFeature(r, "checkout_flow");
  ASSERT_NE(flow, nullptr);
  const v1::ResolvedFeature& f = *flow;
  EXPECT_EQ(f.value().string_value(), "one_page");
  EXPECT_EQ(f.source(), v1::FEATURE_SOURCE_EXPERIMENT);
  EXPECT_EQ(f.experiment_key(), "one_page_checkout");
  EXPECT_EQ(f.variant_key(), "one_page");
  // Every declared feature is resolved.
  EXPECT_EQ(r.features().size(), 4u);
}

TEST_F(ServerE2E, BucketedUnitsGetTheVariantTheSpecComputes) {
  int in_experiment = 0, outside_layer = 0, held_out = 0;
  for (int i = 0; i < 300; ++i) {
    std::string id = absl::StrCat("u-", i);
    v1::AssignResponse r = MustAssign(UserUnit(id));
    ASSERT_EQ(r.config_version(), Version());
    bool expect_held = SpecBucket("holdout", "e2e-holdout", id) < 500;
    bool expect_in_layer = SpecBucket("layer", "checkout-layer", id) < 5000;
    std::string expect_variant =
        SpecBucket("variant", "one_page_checkout", id) < 5000 ? "control"
                                                              : "one_page";
    EXPECT_EQ(r.in_holdout(), expect_held) << id;

    const v1::Assignment* a = FindAssignment(r, "one_page_checkout");
    ASSERT_NE(FindFeature(r, "checkout_flow"), nullptr) << id;
    ASSERT_NE(FindFeature(r, "banner"), nullptr) << id;
    const v1::ResolvedFeature& flow = *FindFeature(r, "checkout_flow");
    const v1::ResolvedFeature& banner = *FindFeature(r, "banner");
    if (expect_held) {
      ++held_out;
      EXPECT_THAT(r.assignments(), IsEmpty()) << id;
      EXPECT_EQ(banner.source(), v1::FEATURE_SOURCE_DEFAULT) << id;
      EXPECT_EQ(banner.value().json_value(), R"({"color":"blue"})") << id;
      continue;
    }
    // The stopped experiment's rollout variant reaches everyone not held out.
    EXPECT_EQ(banner.source(), v1::FEATURE_SOURCE_ROLLOUT) << id;
    EXPECT_EQ(banner.value().json_value(), R"({"color":"red"})") << id;
    EXPECT_EQ(banner.experiment_key(), "old_banner");
    EXPECT_EQ(banner.variant_key(), "red");
    const v1::Assignment* rollout = FindAssignment(r, "old_banner");
    ASSERT_NE(rollout, nullptr) << id;
    EXPECT_EQ(rollout->variant_key(), "red");
    EXPECT_EQ(rollout->reason(), v1::ASSIGNMENT_REASON_ROLLOUT);
    // Drafts assign nobody; na_search needs a country.
    for (const v1::Assignment& other : r.assignments()) {
      EXPECT_THAT(other.experiment_key(),
                  ::testing::AnyOf("one_page_checkout", "old_banner"))
          << id;
    }
    if (!expect_in_layer) {
      ++outside_layer;
      EXPECT_EQ(a, nullptr) << id;
      EXPECT_EQ(flow.source(), v1::FEATURE_SOURCE_DEFAULT) << id;
      EXPECT_EQ(flow.value().string_value(), "multi_step") << id;
      continue;
    }
    ++in_experiment;
    ASSERT_NE(a, nullptr) << id;
    EXPECT_EQ(a->variant_key(), expect_variant) << id;
    EXPECT_EQ(a->reason(), v1::ASSIGNMENT_REASON_BUCKETED) << id;
    EXPECT_EQ(flow.source(), v1::FEATURE_SOURCE_EXPERIMENT) << id;
    EXPECT_EQ(flow.variant_key(), expect_variant) << id;
    EXPECT_EQ(flow.value().string_value(),
              expect_variant == "control" ? "multi_step" : "one_page")
        << id;
  }
  // 300 units cover every branch above.
  EXPECT_GT(in_experiment, 50);
  EXPECT_GT(outside_layer, 50);
  EXPECT_GT(held_out, 0);
}

TEST_F(ServerE2E, TargetingAndTrafficDecideWhoIsInAnExperiment) {
  int assigned = 0, out_of_traffic = 0;
  for (const std::string& id : UsersNotHeldOut(200)) {
    // FR is outside the north_america segment: never in na_search.
    v1::AssignResponse fr = MustAssign(UserIn(id, "FR"));
    EXPECT_EQ(FindAssignment(fr, "na_search"), nullptr) << id;
    ASSERT_NE(FindFeature(fr, "search_limit"), nullptr) << id;
    EXPECT_EQ(FindFeature(fr, "search_limit")->source(),
              v1::FEATURE_SOURCE_DEFAULT);

    // traffic 0.5 over weights 1:1 -> active ranges [0, 2500) and [5000, 7500).
    v1::AssignResponse us = MustAssign(UserIn(id, "US"));
    uint32_t bucket = SpecBucket("variant", "na_search", id);
    const v1::Assignment* a = FindAssignment(us, "na_search");
    ASSERT_NE(FindFeature(us, "search_limit"), nullptr) << id;
    const v1::ResolvedFeature& limit = *FindFeature(us, "search_limit");
    if (bucket < 2500 || (bucket >= 5000 && bucket < 7500)) {
      ++assigned;
      std::string variant = bucket < 2500 ? "control" : "bigger";
      ASSERT_NE(a, nullptr) << id;
      EXPECT_EQ(a->variant_key(), variant) << id;
      EXPECT_EQ(limit.value().number_value(), variant == "control" ? 10 : 20)
          << id;
      EXPECT_EQ(limit.source(), v1::FEATURE_SOURCE_EXPERIMENT) << id;
    } else {
      ++out_of_traffic;
      EXPECT_EQ(a, nullptr) << id;
      EXPECT_EQ(limit.source(), v1::FEATURE_SOURCE_DEFAULT) << id;
      EXPECT_EQ(limit.value().number_value(), 10) << id;
    }
  }
  EXPECT_GT(assigned, 30);
  EXPECT_GT(out_of_traffic, 30);
}

TEST_F(ServerE2E, FeatureRuleSetsValueAndNamesTheRule) {
  v1::AssignResponse cn = MustAssign(UserIn("u-1", "CN"));
  ASSERT_NE(FindFeature(cn, "new_search"), nullptr);
  const v1::ResolvedFeature& f = *FindFeature(cn, "new_search");
  EXPECT_TRUE(f.value().bool_value());
  EXPECT_EQ(f.source(), v1::FEATURE_SOURCE_RULE);
  EXPECT_EQ(f.rule_index(), 0);

  v1::AssignResponse de = MustAssign(UserIn("u-1", "DE"));
  ASSERT_NE(FindFeature(de, "new_search"), nullptr);
  const v1::ResolvedFeature& g = *FindFeature(de, "new_search");
  EXPECT_TRUE(g.value().has_bool_value());
  EXPECT_FALSE(g.value().bool_value());
  EXPECT_EQ(g.source(), v1::FEATURE_SOURCE_DEFAULT);
}

TEST_F(ServerE2E, FiltersLimitExperimentsAndFeatures) {
  v1::AssignRequest request;
  *request.mutable_unit() = UserUnit("qa-user-1");
  request.add_experiment_keys("na_search");
  request.add_feature_keys("new_search");
  v1::AssignResponse r;
  grpc::Status status = Call(&v1::AssignmentService::Stub::Assign, request, &r);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(FindAssignment(r, "one_page_checkout"), nullptr);
  EXPECT_EQ(r.features().size(), 1u);
  EXPECT_NE(FindFeature(r, "new_search"), nullptr);
  EXPECT_EQ(r.config_version(), Version());
}

TEST_F(ServerE2E, UnknownKeysAreNotFound) {
  v1::AssignRequest assign;
  *assign.mutable_unit() = UserUnit("u-1");
  assign.add_experiment_keys("no_such_experiment");
  grpc::Status s = AssignStatus(assign);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("no_such_experiment"));

  assign.clear_experiment_keys();
  assign.add_feature_keys("no_such_feature");
  s = AssignStatus(assign);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("no_such_feature"));

  for (int units : {0, 2}) {
    v1::BatchAssignRequest batch;
    for (int i = 0; i < units; ++i)
      *batch.add_units() = UserUnit(absl::StrCat("u-", i));
    batch.add_experiment_keys("no_such_experiment");
    v1::BatchAssignResponse batch_response;
    s = Call(&v1::AssignmentService::Stub::BatchAssign, batch, &batch_response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << units << " units";
    EXPECT_THAT(s.error_message(), HasSubstr("no_such_experiment"));
  }

  v1::ExplainAssignmentRequest explain;
  *explain.mutable_unit() = UserUnit("u-1");
  explain.set_experiment_key("no_such_experiment");
  v1::ExplainAssignmentResponse explain_response;
  s = Call(&v1::AssignmentService::Stub::ExplainAssignment, explain,
           &explain_response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("no_such_experiment"));

  v1::GetExperimentRequest get;
  get.set_experiment_key("no_such_experiment");
  v1::Experiment experiment;
  s = Call(&v1::AssignmentService::Stub::GetExperiment, get, &experiment);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("no_such_experiment"));
}

TEST_F(ServerE2E, InvalidUnitsAreInvalidArgumentNamingTheField) {
  struct Case {
    std::string name;
    v1::Unit unit;
    std::string field;
  };
  std::vector<Case> cases;
  cases.push_back({"empty id", UserUnit(""), "unit.ids[user_id]"});
  cases.push_back({"id over 256 bytes", UserUnit(std::string(257, 'x')),
                   "unit.ids[user_id]"});
  {
    v1::Unit unit = UserUnit("u-1");
    for (int i = 0; i < 101; ++i) {
      (*unit.mutable_attributes())[absl::StrCat("extra_", i)].set_bool_value(
          true);
    }
    cases.push_back({"101 attributes", unit, "unit.attributes"});
  }
  {
    v1::Unit unit = UserUnit("u-1");
    (*unit.mutable_attributes())["country"].set_number_value(44);
    cases.push_back(
        {"number for a string attribute", unit, "unit.attributes[country]"});
  }
  {
    v1::Unit unit = UserUnit("u-1");
    (*unit.mutable_attributes())["days_since_signup"].set_string_value("3");
    cases.push_back({"string for a number attribute", unit,
                     "unit.attributes[days_since_signup]"});
  }
  {
    v1::Unit unit = UserUnit("u-1");
    (*unit.mutable_attributes())["is_vip"];  // no value set
    cases.push_back(
        {"attribute without a value", unit, "unit.attributes[is_vip]"});
  }
  for (const Case& c : cases) {
    v1::AssignRequest request;
    *request.mutable_unit() = c.unit;
    grpc::Status s = AssignStatus(request);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.name;
    EXPECT_THAT(s.error_message(), HasSubstr(c.field)) << c.name;
  }

  // An id of exactly 256 bytes is fine.
  v1::AssignRequest ok;
  *ok.mutable_unit() = UserUnit(std::string(256, 'x'));
  EXPECT_TRUE(AssignStatus(ok).ok());

  v1::AssignRequest no_unit;
  grpc::Status s = AssignStatus(no_unit);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("unit is required"));
}

TEST_F(ServerE2E, BatchErrorsNameTheUnitIndex) {
  v1::BatchAssignRequest batch;
  for (int i = 0; i < 5; ++i)
    *batch.add_units() = UserUnit(absl::StrCat("u-", i));
  (*batch.mutable_units(3)->mutable_ids())["user_id"] = "";
  v1::BatchAssignResponse response;
  grpc::Status s =
      Call(&v1::AssignmentService::Stub::BatchAssign, batch, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("units[3].ids[user_id]"));

  v1::BatchAssignRequest too_big;
  for (int i = 0; i < 1001; ++i)
    *too_big.add_units() = UserUnit(absl::StrCat("u-", i));
  s = Call(&v1::AssignmentService::Stub::BatchAssign, too_big, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("units"));
  EXPECT_THAT(s.error_message(), HasSubstr("1000"));

  too_big.mutable_units()->RemoveLast();
  s = Call(&v1::AssignmentService::Stub::BatchAssign, too_big, &response);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(response.results_size(), 1000);
}

TEST_F(ServerE2E, BatchAnswersInRequestOrderLikeSingleAssigns) {
  v1::BatchAssignRequest batch;
  *batch.add_units() = UserIn("u-7", "US");
  *batch.add_units() = UserUnit("qa-user-1");
  *batch.add_units() = UserIn("u-3", "CN");
  *batch.add_units() = UserUnit("u-12");
  v1::BatchAssignResponse response;
  grpc::Status s =
      Call(&v1::AssignmentService::Stub::BatchAssign, batch, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(response.config_version(), Version());
  ASSERT_EQ(response.results_size(), batch.units_size());
  for (int i = 0; i < batch.units_size(); ++i) {
    v1::AssignResponse single = MustAssign(batch.units(i));
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(
        single, response.results(i)))
        << "units[" << i << "]\nbatch: " << response.results(i).DebugString()
        << "\nsingle: " << single.DebugString();
    EXPECT_EQ(response.results(i).config_version(), Version());
  }
}

TEST_F(ServerE2E, ExplainShowsHashLayerHoldoutAndRanges) {
  // A unit not held out and inside one_page_checkout's layer range.
  std::string id;
  for (const std::string& candidate : UsersNotHeldOut(100)) {
    if (SpecBucket("layer", "checkout-layer", candidate) < 5000) {
      id = candidate;
      break;
    }
  }
  ASSERT_FALSE(id.empty());
  v1::ExplainAssignmentRequest request;
  *request.mutable_unit() = UserUnit(id);
  request.set_experiment_key("one_page_checkout");
  v1::ExplainAssignmentResponse r;
  grpc::Status s =
      Call(&v1::AssignmentService::Stub::ExplainAssignment, request, &r);
  ASSERT_TRUE(s.ok()) << s.error_message();

  uint32_t bucket = SpecBucket("variant", "one_page_checkout", id);
  std::string variant = bucket < 5000 ? "control" : "one_page";
  EXPECT_EQ(r.config_version(), Version());
  EXPECT_EQ(r.experiment_key(), "one_page_checkout");
  EXPECT_EQ(r.variant_key(), variant);
  EXPECT_EQ(r.reason(), v1::ASSIGNMENT_REASON_BUCKETED);
  EXPECT_FALSE(r.summary().empty());

  const v1::HashTrace& h = r.variant_hash();
  EXPECT_EQ(h.input_hex(), absl::BytesToHexString(
                               SpecInput("variant", "one_page_checkout", id)));
  EXPECT_EQ(
      h.hash_hex(),
      absl::StrFormat("%016x", SpecHash("variant", "one_page_checkout", id)));
  EXPECT_EQ(h.bucket(), bucket);
  EXPECT_EQ(h.salt(), "one_page_checkout");
  EXPECT_EQ(h.unit_id_type(), "user_id");
  EXPECT_EQ(h.unit_id(), id);

  uint32_t start = variant == "control" ? 0 : 5000;
  EXPECT_EQ(r.matched_range().start(), start);
  EXPECT_EQ(r.matched_range().end(), start + 5000);
  ASSERT_EQ(r.variant_ranges_size(), 2);
  EXPECT_EQ(r.variant_ranges(0).variant_key(), "control");
  EXPECT_EQ(r.variant_ranges(0).range().start(), 0u);
  EXPECT_EQ(r.variant_ranges(0).range().end(), 5000u);
  EXPECT_EQ(r.variant_ranges(1).variant_key(), "one_page");
  EXPECT_EQ(r.variant_ranges(1).range().start(), 5000u);
  EXPECT_EQ(r.variant_ranges(1).range().end(), 10000u);

  ASSERT_TRUE(r.has_layer());
  EXPECT_EQ(r.layer().layer(), "checkout");
  EXPECT_EQ(r.layer().hash().bucket(),
            SpecBucket("layer", "checkout-layer", id));
  EXPECT_EQ(r.layer().hash().salt(), "checkout-layer");
  EXPECT_EQ(r.layer().experiment_range().start(), 0u);
  EXPECT_EQ(r.layer().experiment_range().end(), 5000u);
  EXPECT_TRUE(r.layer().in_range());

  ASSERT_TRUE(r.has_holdout());
  EXPECT_EQ(r.holdout().threshold(), 500u);
  EXPECT_EQ(r.holdout().hash().bucket(),
            SpecBucket("holdout", "e2e-holdout", id));
  EXPECT_EQ(r.holdout().hash().salt(), "e2e-holdout");
  EXPECT_FALSE(r.holdout().held_out());

  std::vector<std::string> checks;
  for (const v1::ExplainStep& step : r.steps()) checks.push_back(step.check());
  EXPECT_THAT(checks, ::testing::IsSupersetOf(
                          {"status", "holdout", "layer", "traffic"}));
}

TEST_F(ServerE2E, ExplainTracesTheTargetingRuleThatFailed) {
  v1::ExplainAssignmentRequest request;
  *request.mutable_unit() = UserIn(UsersNotHeldOut(1)[0], "FR");
  request.set_experiment_key("na_search");
  v1::ExplainAssignmentResponse r;
  grpc::Status s =
      Call(&v1::AssignmentService::Stub::ExplainAssignment, request, &r);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(r.variant_key(), "");
  ASSERT_GT(r.targeting_size(), 0);
  EXPECT_EQ(r.targeting(0).depth(), 0);
  EXPECT_FALSE(r.targeting(0).matched());
  bool saw_country = false;
  for (const v1::RuleTrace& t : r.targeting()) {
    if (t.rule().find("country") != std::string::npos) {
      saw_country = true;
      EXPECT_FALSE(t.matched());
      EXPECT_THAT(t.actual(), HasSubstr("FR"));
    }
  }
  EXPECT_TRUE(saw_country) << r.DebugString();
  bool targeting_failed = false;
  for (const v1::ExplainStep& step : r.steps()) {
    if (step.check() == "targeting") targeting_failed = !step.passed();
  }
  EXPECT_TRUE(targeting_failed) << r.DebugString();
}

TEST_F(ServerE2E, MissingExperimentKeyIsInvalidArgument) {
  v1::ExplainAssignmentRequest explain;
  *explain.mutable_unit() = UserUnit("u-1");
  v1::ExplainAssignmentResponse explain_response;
  grpc::Status s = Call(&v1::AssignmentService::Stub::ExplainAssignment,
                        explain, &explain_response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("experiment_key"));

  v1::GetExperimentRequest get;
  v1::Experiment experiment;
  s = Call(&v1::AssignmentService::Stub::GetExperiment, get, &experiment);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("experiment_key"));

  explain.clear_unit();
  explain.set_experiment_key("na_search");
  s = Call(&v1::AssignmentService::Stub::ExplainAssignment, explain,
           &explain_response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("unit"));
}

TEST_F(ServerE2E, ListExperimentsInConfigOrderWithStatusFilter) {
  v1::ListExperimentsRequest request;
  v1::ListExperimentsResponse r;
  grpc::Status s =
      Call(&v1::AssignmentService::Stub::ListExperiments, request, &r);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(r.config_version(), Version());
  std::vector<std::string> keys;
  for (const v1::Experiment& e : r.experiments()) keys.push_back(e.key());
  EXPECT_THAT(keys, ElementsAre("one_page_checkout", "na_search", "old_banner",
                                "draft_idea"));

  request.add_statuses(v1::EXPERIMENT_STATUS_RUNNING);
  request.add_statuses(v1::EXPERIMENT_STATUS_DRAFT);
  s = Call(&v1::AssignmentService::Stub::ListExperiments, request, &r);
  ASSERT_TRUE(s.ok()) << s.error_message();
  keys.clear();
  for (const v1::Experiment& e : r.experiments()) keys.push_back(e.key());
  EXPECT_THAT(keys,
              ElementsAre("one_page_checkout", "na_search", "draft_idea"));

  request.add_statuses(v1::EXPERIMENT_STATUS_UNSPECIFIED);
  s = Call(&v1::AssignmentService::Stub::ListExperiments, request, &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("statuses[2]"));
}

TEST_F(ServerE2E, GetExperimentDescribesItAsConfigured) {
  v1::GetExperimentRequest request;
  request.set_experiment_key("one_page_checkout");
  v1::Experiment e;
  grpc::Status s =
      Call(&v1::AssignmentService::Stub::GetExperiment, request, &e);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(e.key(), "one_page_checkout");
  EXPECT_EQ(e.description(), "One-page checkout vs the multi-step flow");
  EXPECT_EQ(e.owner(), "checkout-team@example.com");
  EXPECT_EQ(e.status(), v1::EXPERIMENT_STATUS_RUNNING);
  EXPECT_EQ(e.unit_id_type(), "user_id");
  EXPECT_EQ(e.salt(), "one_page_checkout");
  EXPECT_EQ(e.phase(), 1);
  EXPECT_EQ(e.traffic_bp(), 10000u);
  EXPECT_EQ(e.layer(), "checkout");
  EXPECT_EQ(e.layer_range().start(), 0u);
  EXPECT_EQ(e.layer_range().end(), 5000u);
  EXPECT_THAT(e.metrics(), ElementsAre("order_conversion", "arpu"));
  EXPECT_EQ(e.qa_override_count(), 1);
  EXPECT_EQ(e.config_version(), Version());
  ASSERT_EQ(e.variants_size(), 2);
  EXPECT_EQ(e.variants(1).key(), "one_page");
  EXPECT_EQ(e.variants(1).weight(), "50");
  EXPECT_EQ(e.variants(1).full_range().start(), 5000u);
  EXPECT_EQ(e.variants(1).full_range().end(), 10000u);
  EXPECT_EQ(e.variants(1).features().at("checkout_flow").string_value(),
            "one_page");

  request.set_experiment_key("na_search");
  s = Call(&v1::AssignmentService::Stub::GetExperiment, request, &e);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(e.traffic_bp(), 5000u);
  EXPECT_EQ(e.start_time(), "2020-01-01T00:00:00Z");
  EXPECT_EQ(e.end_time(), "");
  EXPECT_FALSE(e.targeting().empty());
  ASSERT_EQ(e.variants_size(), 2);
  EXPECT_EQ(e.variants(1).full_range().start(), 5000u);
  EXPECT_EQ(e.variants(1).active_range().start(), 5000u);
  EXPECT_EQ(e.variants(1).active_range().end(), 7500u);

  request.set_experiment_key("old_banner");
  s = Call(&v1::AssignmentService::Stub::GetExperiment, request, &e);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(e.status(), v1::EXPERIMENT_STATUS_STOPPED);
  EXPECT_EQ(e.rollout_variant(), "red");
  EXPECT_EQ(e.variants(1).features().at("banner").json_value(),
            R"({"color":"red"})");
}

TEST_F(ServerE2E, HealthServiceReportsServing) {
  absl::StatusOr<int> health = testing::HealthCheck(server_->address());
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, 1);  // SERVING
}

TEST_F(ServerE2E, HealthChecksNameEachServiceServing) {
  for (const char* service :
       {"abexp.v1.AssignmentService", "abexp.v1.RecordingService",
        "abexp.v1.ResultsService"}) {
    absl::StatusOr<int> health =
        testing::HealthCheck(server_->address(), service);
    ASSERT_TRUE(health.ok()) << service << ": " << health.status();
    EXPECT_EQ(*health, 1) << service;  // SERVING
  }
}

// Calls `method` ("/package.Service/Method") with `request` as the raw
// request bytes, as a client with other (or broken) generated code would.
grpc::Status RawCall(const std::string& address, const std::string& method,
                     const std::string& request) {
  grpc::GenericStub stub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(10));
  grpc::Slice slice(request);
  grpc::ByteBuffer request_bytes(&slice, 1);
  std::unique_ptr<grpc::ClientAsyncResponseReader<grpc::ByteBuffer>> call =
      stub.PrepareUnaryCall(&context, method, request_bytes, &cq);
  call->StartCall();
  grpc::ByteBuffer response;
  grpc::Status status;
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  EXPECT_TRUE(cq.Next(&tag, &ok));
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return status;
}

TEST_F(ServerE2E, UnparseableRequestsAreInvalidArgumentForEveryMethod) {
  // A field 1 of wire type 2 whose length runs past the end.
  const std::string broken("\x0a\x7f\x01", 3);
  const std::vector<std::pair<std::string, std::string>> methods = {
      {"/abexp.v1.AssignmentService/Assign", "abexp.v1.AssignRequest"},
      {"/abexp.v1.AssignmentService/BatchAssign",
       "abexp.v1.BatchAssignRequest"},
      {"/abexp.v1.AssignmentService/ExplainAssignment",
       "abexp.v1.ExplainAssignmentRequest"},
      {"/abexp.v1.AssignmentService/ListExperiments",
       "abexp.v1.ListExperimentsRequest"},
      {"/abexp.v1.AssignmentService/GetExperiment",
       "abexp.v1.GetExperimentRequest"},
      {"/abexp.v1.RecordingService/RecordExposures",
       "abexp.v1.RecordExposuresRequest"},
      {"/abexp.v1.RecordingService/RecordEvents",
       "abexp.v1.RecordEventsRequest"},
      {"/abexp.v1.ResultsService/GetResults", "abexp.v1.GetResultsRequest"},
  };
  for (const auto& [method, type] : methods) {
    grpc::Status status = RawCall(server_->address(), method, broken);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << method << ": " << status.error_message();
    EXPECT_THAT(status.error_message(),
                HasSubstr("could not be parsed as " + type))
        << method;
  }
  // The server is still there and answers well-formed calls.
  EXPECT_EQ(MustAssign(UserUnit("u-1")).config_version(), Version());
}

TEST_F(ServerE2E, NonUtf8StringsAreInvalidArgumentNamingTheField) {
  const std::string not_utf8 = "\xff\xfe";
  v1::AssignRequest assign;
  (*assign.mutable_unit()->mutable_ids())["user_id"] = not_utf8;
  v1::GetExperimentRequest get;
  get.set_experiment_key(not_utf8);
  v1::RecordEventsRequest events;
  events.add_events()->set_name(not_utf8);
  const struct {
    std::string method;
    std::string bytes;
    std::string field;
  } calls[] = {
      {"/abexp.v1.AssignmentService/Assign", assign.SerializeAsString(),
       "abexp.v1.Unit.IdsEntry.value"},
      {"/abexp.v1.AssignmentService/GetExperiment", get.SerializeAsString(),
       "abexp.v1.GetExperimentRequest.experiment_key"},
      {"/abexp.v1.RecordingService/RecordEvents", events.SerializeAsString(),
       "abexp.v1.EventRecord.name"},
  };
  for (const auto& call : calls) {
    grpc::Status status = RawCall(server_->address(), call.method, call.bytes);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << call.method << ": " << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr("not valid UTF-8"))
        << call.method;
    EXPECT_THAT(status.error_message(), HasSubstr(call.field)) << call.method;
  }
}

TEST_F(ServerE2E, ProtobufErrorLinesAreRateLimited) {
  v1::AssignRequest assign;
  (*assign.mutable_unit()->mutable_ids())["user_id"] = "\xff\xfe";
  const std::string bytes = assign.SerializeAsString();
  auto lines = [] {
    const std::string err = server_->Stderr();
    int n = 0;
    for (size_t p = err.find("[libprotobuf"); p != std::string::npos;
         p = err.find("[libprotobuf", p + 1)) {
      ++n;
    }
    return n;
  };
  const int before = lines();
  const absl::Time start = absl::Now();
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(
        RawCall(server_->address(), "/abexp.v1.AssignmentService/Assign", bytes)
            .error_code(),
        grpc::StatusCode::INVALID_ARGUMENT);
  }
  // At most one line per 10s, however many bad requests.
  const int allowed =
      1 + static_cast<int>((absl::Now() - start) / absl::Seconds(10));
  EXPECT_LE(lines() - before, allowed) << server_->Stderr();
}

TEST_F(ServerE2E, HugeRequestStringsAreClippedInErrors) {
  const std::string huge(1 << 20, 'k');
  v1::AssignRequest filtered;
  *filtered.mutable_unit() = UserUnit("u-1");
  filtered.add_experiment_keys(huge);
  grpc::Status status = AssignStatus(filtered);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("experiment_keys"));
  EXPECT_THAT(status.error_message(), HasSubstr("(1048576 bytes)"));
  EXPECT_LT(status.error_message().size(), 1024u);

  v1::AssignRequest empty_id;
  (*empty_id.mutable_unit()->mutable_ids())[huge] = "";
  status = AssignStatus(empty_id);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("unit.ids["));
  EXPECT_LT(status.error_message().size(), 1024u);

  v1::GetExperimentRequest get;
  get.set_experiment_key(huge);
  v1::Experiment experiment;
  status = Call(&v1::AssignmentService::Stub::GetExperiment, get, &experiment);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("experiment_key"));
  EXPECT_LT(status.error_message().size(), 1024u);

  // Bytes that are not text are escaped, so the message stays printable.
  get.set_experiment_key(std::string("a\nb\x01", 4));
  status = Call(&v1::AssignmentService::Stub::GetExperiment, get, &experiment);
  EXPECT_THAT(status.error_message(), HasSubstr("'a\\nb\\x01'"));
}

// Splits a protobuf message into (field number, length-delimited payload)
// pairs; enough to read reflection responses without their generated code.
std::vector<std::pair<int, std::string>> LengthDelimitedFields(
    const std::string& bytes) {
  std::vector<std::pair<int, std::string>> fields;
  size_t p = 0;
  auto varint = [&](uint64_t* v) {
    *v = 0;
    for (int shift = 0; p < bytes.size() && shift < 64; shift += 7) {
      uint8_t b = static_cast<uint8_t>(bytes[p++]);
      *v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  };
  uint64_t tag, len;
  while (p < bytes.size() && varint(&tag)) {
    int wire = static_cast<int>(tag & 7);
    if (wire == 0) {
      if (!varint(&len)) break;
    } else if (wire == 2) {
      if (!varint(&len) || p + len > bytes.size()) break;
      fields.emplace_back(static_cast<int>(tag >> 3), bytes.substr(p, len));
      p += len;
    } else {
      break;  // reflection responses use no other wire types here
    }
  }
  return fields;
}

TEST_F(ServerE2E, ReflectionListsTheService) {
  // grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo with
  // ServerReflectionRequest{list_services: ""} (field 7).
  grpc::GenericStub stub(grpc::CreateChannel(
      server_->address(), grpc::InsecureChannelCredentials()));
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(10));
  auto call = stub.PrepareCall(
      &context,
      "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  ASSERT_NE(call, nullptr);
  void* tag;
  bool ok;
  auto step = [&](intptr_t id) {
    EXPECT_TRUE(cq.Next(&tag, &ok));
    EXPECT_EQ(reinterpret_cast<intptr_t>(tag), id);
    return ok;
  };
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(step(1));
  std::string request_bytes("\x3a\x00", 2);
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer request(&slice, 1);
  call->Write(request, reinterpret_cast<void*>(2));
  ASSERT_TRUE(step(2));
  call->WritesDone(reinterpret_cast<void*>(3));
  ASSERT_TRUE(step(3));
  grpc::ByteBuffer response;
  call->Read(&response, reinterpret_cast<void*>(4));
  ASSERT_TRUE(step(4));
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  step(5);
  ASSERT_TRUE(status.ok()) << status.error_message();

  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  // ServerReflectionResponse.list_services_response (6) -> service (1) -> name
  // (1).
  std::vector<std::string> services;
  for (const auto& [field, list] : LengthDelimitedFields(bytes)) {
    if (field != 6) continue;
    for (const auto& [f2, service] : LengthDelimitedFields(list)) {
      if (f2 != 1) continue;
      for (const auto& [f3, name] : LengthDelimitedFields(service)) {
        if (f3 == 1) services.push_back(name);
      }
    }
  }
  EXPECT_THAT(services, ::testing::Contains("abexp.v1.AssignmentService"));
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

// ---- process behaviour ----

TEST(ServerProcessTest, InvalidConfigExitsOneWithEveryDiagnostic) {
  TempDir dir;
  // Two independent errors: an undeclared attribute and an unknown status.
  std::string path = dir.Write("bad.yaml", R"yaml(
attributes:
  country: string
experiments:
  - key: a
    status: runing
    variants:
      - key: control
        weight: 1
  - key: b
    status: running
    targeting: {attribute: planet, eq: mars}
    variants:
      - key: control
        weight: 1
)yaml");
  std::string out, err;
  absl::StatusOr<int> code =
      RunProcess({ABEXP_SERVER_BIN, "--config=" + path, "--listen=127.0.0.1:0"},
                 &out, &err);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 1);
  EXPECT_THAT(out, IsEmpty())
      << "no listening line for a server that did not start";
  EXPECT_THAT(err, HasSubstr(path + ":6:"));   // status: runing
  EXPECT_THAT(err, HasSubstr(path + ":12:"));  // planet
  EXPECT_THAT(err, HasSubstr("runing"));
  EXPECT_THAT(err, HasSubstr("planet"));

  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(path);
  EXPECT_FALSE(server.ok());
  EXPECT_THAT(server.status().message(), HasSubstr("exited with status 1"));
}

TEST(ServerProcessTest, MissingOrUnreadableConfigExitsOne) {
  std::string out, err;
  absl::StatusOr<int> code = RunProcess({ABEXP_SERVER_BIN}, &out, &err);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 1);
  EXPECT_THAT(err, HasSubstr("--config is required"));

  code = RunProcess(
      {ABEXP_SERVER_BIN, "--config=/nonexistent/experiments.yaml"}, &out, &err);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 1);
  EXPECT_THAT(err, HasSubstr("/nonexistent/experiments.yaml"));
}

TEST(ServerProcessTest, MalformedRedisAndSpoolFlagsExitOneNamingTheFlag) {
  TempDir dir;
  const std::string config =
      "--config=" + dir.Write("experiments.yaml", kConfig);
  struct Case {
    std::string flag;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {"--redis=localhost", "--redis"},
           {"--redis_db=-1", "--redis_db=-1 is negative"},
           {"--redis_command_timeout=0s", "--redis_command_timeout"},
           {"--redis_connect_timeout=-1s", "--redis_connect_timeout"},
           {"--redis_pool_size=-2", "--redis_pool_size"},
           {"--spool_admit_rate=-1", "--spool_admit_rate=-1"},
           {"--spool_admit_floor=0", "--spool_admit_floor=0"},
           {"--spool_admit_share=0", "--spool_admit_share=0: pass a share"},
           {"--spool_admit_share=1.5", "--spool_admit_share=1.5"},
           {"--spool_admit_share=nan", "--spool_admit_share=nan"},
           {"--redis_wait_replicas=-1", "--redis_wait_replicas=-1"}}) {
    std::string out, err;
    absl::StatusOr<int> code =
        RunProcess({ABEXP_SERVER_BIN, config, c.flag}, &out, &err);
    ASSERT_TRUE(code.ok()) << code.status();
    EXPECT_EQ(*code, 1) << c.flag;
    EXPECT_THAT(err, HasSubstr(c.message)) << c.flag;
    EXPECT_THAT(out, IsEmpty()) << c.flag << ": no listening line";
  }
  // WAIT must end before the command it follows times out.
  std::string out, err;
  absl::StatusOr<int> code =
      RunProcess({ABEXP_SERVER_BIN, config, "--redis_wait_replicas=1",
                  "--redis_wait_timeout=5s", "--redis_command_timeout=2s"},
                 &out, &err);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 1);
  EXPECT_THAT(err, HasSubstr("below --redis_command_timeout (2s)"));
}

TEST(ServerProcessTest, HelpListsTheServersFlags) {
  std::string out, err;
  absl::StatusOr<int> code =
      RunProcess({ABEXP_SERVER_BIN, "--help"}, &out, &err);
  ASSERT_TRUE(code.ok()) << code.status();
  const std::string help = out + err;
  for (const char* flag :
       {"--config", "--listen", "--redis", "--storage_threads",
        "--storage_max_calls", "--sticky_read_budget", "--sticky_read_threads",
        "--spool_dir", "--shutdown_grace"}) {
    EXPECT_THAT(help, HasSubstr(flag)) << help;
  }
  EXPECT_THAT(help, Not(HasSubstr("No flags matched")));
}

TEST(ServerProcessTest, AddressInUseExitsOneWithAClearError) {
  TempDir dir;
  std::string path = dir.Write("experiments.yaml", kConfig);
  absl::StatusOr<std::unique_ptr<ServerProcess>> first =
      ServerProcess::Start(path);
  ASSERT_TRUE(first.ok()) << first.status();
  std::string out, err;
  // Its own spool dir, so that it fails on the port, not on a spool lock.
  absl::StatusOr<int> code = RunProcess(
      {ABEXP_SERVER_BIN, "--config=" + path, "--listen=" + (*first)->address(),
       "--spool_dir=" + dir.path() + "/spool"},
      &out, &err);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 1);
  EXPECT_THAT(err, HasSubstr("cannot listen on " + (*first)->address()));
}

TEST(ServerProcessTest, SigtermAndSigintExitZero) {
  TempDir dir;
  std::string path = dir.Write("experiments.yaml", kConfig);
  for (int sig : {SIGTERM, SIGINT}) {
    absl::StatusOr<std::unique_ptr<ServerProcess>> server =
        ServerProcess::Start(path);
    ASSERT_TRUE(server.ok()) << server.status();
    ASSERT_TRUE((*server)->Signal(sig).ok());
    absl::StatusOr<int> code = (*server)->WaitForExit(absl::Seconds(20));
    ASSERT_TRUE(code.ok()) << code.status();
    EXPECT_EQ(*code, 0) << "signal " << sig << "\n" << (*server)->Stderr();
    EXPECT_THAT((*server)->Stderr(), HasSubstr("shut down"));
  }
}

TEST(ServerProcessTest, ShutdownAnswersWholeAndDoesNotWaitForIdleClients) {
  TempDir dir;
  std::string path = dir.Write("experiments.yaml", kConfig);
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(path);
  ASSERT_TRUE(server.ok()) << server.status();

  // An idle client keeps its connection open through the shutdown.
  auto idle = v1::AssignmentService::NewStub(grpc::CreateChannel(
      (*server)->address(), grpc::InsecureChannelCredentials()));
  {
    grpc::ClientContext context;
    v1::ListExperimentsResponse response;
    ASSERT_TRUE(
        idle->ListExperiments(&context, v1::ListExperimentsRequest(), &response)
            .ok());
  }

  // Busy clients call until the server goes away. Every answer is whole;
  // calls racing the shutdown are refused by gRPC itself (UNAVAILABLE, or
  // CANCELLED for calls that reached the server but no handler yet).
  std::atomic<bool> stop{false};
  std::atomic<int> ok_calls{0};
  std::vector<std::string> bad;
  absl::Mutex mu;
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      auto stub = v1::AssignmentService::NewStub(grpc::CreateChannel(
          (*server)->address(), grpc::InsecureChannelCredentials()));
      for (int i = 0; !stop.load(); ++i) {
        v1::BatchAssignRequest request;
        for (int u = 0; u < 200; ++u)
          *request.add_units() = UserIn(absl::StrCat(t, "-", i, "-", u), "US");
        v1::BatchAssignResponse response;
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() +
                             std::chrono::seconds(10));
        grpc::Status s = stub->BatchAssign(&context, request, &response);
        if (s.ok()) {
          ok_calls.fetch_add(1);
          if (response.results_size() != 200) {
            absl::MutexLock lock(&mu);
            bad.push_back("short response");
          }
        } else {
          if (s.error_code() != grpc::StatusCode::UNAVAILABLE &&
              s.error_code() != grpc::StatusCode::CANCELLED) {
            absl::MutexLock lock(&mu);
            bad.push_back(
                absl::StrCat(s.error_code(), ": ", s.error_message()));
          }
          return;
        }
      }
    });
  }
  while (ok_calls.load() < 20) absl::SleepFor(absl::Milliseconds(5));
  absl::Time start = absl::Now();
  ASSERT_TRUE((*server)->Signal(SIGTERM).ok());
  absl::StatusOr<int> code = (*server)->WaitForExit(absl::Seconds(20));
  absl::Duration took = absl::Now() - start;
  stop.store(true);
  for (std::thread& c : clients) c.join();
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << (*server)->Stderr();
  // The default grace is 10s; nothing was running, so it must not be used up.
  EXPECT_LT(took, absl::Seconds(5));
  absl::MutexLock lock(&mu);
  EXPECT_THAT(bad, IsEmpty());
}

}  // namespace
}  // namespace abexp
