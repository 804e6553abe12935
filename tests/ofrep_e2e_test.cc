// OFREP (server/ofrep/) on a real abexp-server with a real redis-server:
// the OpenFeature project's own Node SDK and OFREP provider
// (tests/ofrep/evaluate.js, packages pinned in tests/ofrep/package-lock.json)
// get, for every feature of examples/experiments.yaml and 300 units, the
// value gRPC Assign gives the same unit, and the error paths an application
// sees (default value and error code); bulk evaluation's ETag and 304, the
// token check (401/403), and exposure recording, with plain HTTP.
#include <httplib.h>

#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "abexp/v1/assignment.grpc.pb.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/core/config_parser.h"
#include "server/testing/auth_test_util.h"
#include "server/testing/recording_test_util.h"
#include "server/testing/server_process.h"

namespace abexp {
namespace {

using ::abexp::testing::Eventually;
using ::abexp::testing::MakeToken;
using ::abexp::testing::RecordingServerTest;
using ::abexp::testing::RunProcess;
using ::abexp::testing::SetDeadline;
using ::abexp::testing::TokenFileLine;
using nlohmann::json;
using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

const std::string& ExampleConfig() {
  static const std::string* const text =
      new std::string(ReadFile("examples/experiments.yaml"));
  return *text;
}

// A varied unit, i: the OFREP context and the same unit for gRPC.
json Context(int i) {
  static const char* const kCountries[] = {"US", "SG", "CN", "DE"};
  static const char* const kPlatforms[] = {"ios", "android", "web"};
  static const char* const kVersions[] = {"5.1.0", "5.2.0", "6.0.1"};
  static const char* const kTiers[] = {"basic", "gold", "platinum"};
  return json{{"targetingKey", absl::StrCat("ofrep-u", i)},
              {"country", kCountries[i % 4]},
              {"platform", kPlatforms[i % 3]},
              {"app_version", kVersions[i % 3]},
              {"days_since_signup", (i * 7) % 40},
              {"days_since_last_active", (i * 11) % 60},
              {"membership_tier", kTiers[i % 3]},
              {"is_vip", i % 5 == 0}};
}

v1::Unit UnitOf(const json& context) {
  v1::Unit unit;
  (*unit.mutable_ids())["user_id"] = context["targetingKey"].get<std::string>();
  for (const auto& [name, value] : context.items()) {
    if (name == "targetingKey") continue;
    v1::AttributeValue& a = (*unit.mutable_attributes())[name];
    if (value.is_string()) a.set_string_value(value.get<std::string>());
    if (value.is_boolean()) a.set_bool_value(value.get<bool>());
    if (value.is_number()) a.set_number_value(value.get<double>());
  }
  return unit;
}

// A gRPC FeatureValue as the JSON value OFREP should send.
json JsonOf(const v1::FeatureValue& value) {
  switch (value.kind_case()) {
    case v1::FeatureValue::kBoolValue:
      return value.bool_value();
    case v1::FeatureValue::kNumberValue:
      return value.number_value();
    case v1::FeatureValue::kStringValue:
      return value.string_value();
    case v1::FeatureValue::kJsonValue:
      return json::parse(value.json_value());
    default:
      return nullptr;
  }
}

class OfrepE2eTest : public RecordingServerTest {
 protected:
  OfrepE2eTest() : RecordingServerTest(ExampleConfig(), "") {}

  httplib::Result Post(const std::string& path, const json& body,
                       httplib::Headers headers = {}) {
    httplib::Client client("127.0.0.1", http_port_);
    client.set_connection_timeout(5);
    client.set_read_timeout(30);
    return client.Post(path.c_str(), headers, body.dump(), "application/json");
  }

  v1::AssignResponse AssignOf(const json& context) {
    v1::AssignRequest request;
    *request.mutable_unit() = UnitOf(context);
    v1::AssignResponse response;
    grpc::ClientContext call;
    SetDeadline(&call, absl::Seconds(30));
    const grpc::Status s = assign_->Assign(&call, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response;
  }
};

TEST_F(OfrepE2eTest, TheOpenFeatureSdkGetsWhatAssignGivesAndItsErrorPaths) {
  ASSERT_NO_FATAL_FAILURE(StartServerWithHttp());
  // The pinned SDK, installed once into the build tree.
  const std::string node_dir = std::string(ABEXP_BINARY_DIR) + "/ofrep-node";
  std::string out, err;
  absl::StatusOr<int> installed = RunProcess(
      {"tests/ofrep/install.sh", node_dir}, &out, &err, absl::Seconds(300));
  ASSERT_TRUE(installed.ok()) << installed.status();
  ASSERT_EQ(*installed, 0) << err;

  constexpr int kUnits = 300;
  json request = {{"units", json::array()}, {"flags", json::array()}};
  for (int i = 0; i < kUnits; ++i) request["units"].push_back(Context(i));
  ParseResult parsed = ParseConfig(ExampleConfig(), "experiments.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.FormatDiagnostics();
  for (const Feature& f : parsed.config->features) {
    request["flags"].push_back(
        {{"key", f.key}, {"type", ValueTypeName(f.type)}});
  }
  const std::string request_path = dir_.path() + "/ofrep-request.json";
  std::ofstream(request_path) << request.dump();

  absl::StatusOr<int> ran =
      RunProcess({"/usr/bin/env", "NODE_PATH=" + node_dir + "/node_modules",
                  "node", "tests/ofrep/evaluate.js",
                  absl::StrCat("http://127.0.0.1:", http_port_), request_path},
                 &out, &err, absl::Seconds(300));
  ASSERT_TRUE(ran.ok()) << ran.status();
  ASSERT_EQ(*ran, 0) << err;
  const json answer = json::parse(out);

  // Every value the SDK got is the value Assign gives the same unit.
  std::map<int, v1::AssignResponse> assigned;
  int compared = 0;
  std::map<std::string, int> reasons;
  for (const json& e : answer["evaluations"]) {
    const int unit = e[0].get<int>();
    const std::string flag = e[1].get<std::string>();
    if (!assigned.count(unit)) {
      assigned[unit] = AssignOf(request["units"][unit]);
    }
    const v1::ResolvedFeature* want = nullptr;
    for (const v1::ResolvedFeature& f : assigned[unit].features()) {
      if (f.key() == flag) want = &f;
    }
    ASSERT_NE(want, nullptr) << flag;
    EXPECT_TRUE(e[5].is_null()) << flag << " for unit " << unit << ": " << e;
    EXPECT_EQ(e[2], JsonOf(want->value())) << flag << " for unit " << unit;
    if (!want->variant_key().empty()) {
      EXPECT_EQ(e[4], want->variant_key()) << flag << " for unit " << unit;
    }
    ++reasons[e[3].get<std::string>()];
    ++compared;
  }
  EXPECT_EQ(compared,
            kUnits * static_cast<int>(parsed.config->features.size()));
  // The example config decides values by split, rules and defaults alike.
  EXPECT_GT(reasons["SPLIT"], 0);
  EXPECT_GT(reasons["TARGETING_MATCH"], 0);

  // The errors an application sees: its default and the error code.
  const json& errors = answer["errors"];
  EXPECT_EQ(errors["unknownFlag"]["value"], true);
  EXPECT_EQ(errors["unknownFlag"]["errorCode"], "FLAG_NOT_FOUND");
  EXPECT_EQ(errors["wrongType"]["value"], 42);
  EXPECT_EQ(errors["wrongType"]["errorCode"], "TYPE_MISMATCH");
  EXPECT_EQ(errors["missingTargetingKey"]["value"], true);
  EXPECT_EQ(errors["missingTargetingKey"]["errorCode"],
            "TARGETING_KEY_MISSING");
  for (const char* c : {"unknownFlag", "wrongType", "missingTargetingKey"}) {
    EXPECT_EQ(errors[c]["reason"], "ERROR") << c;
  }
}

TEST_F(OfrepE2eTest, BulkEvaluationHasAnETagAndAnswers304WhenItMatches) {
  ASSERT_NO_FATAL_FAILURE(StartServerWithHttp());
  const json body = {{"context", Context(1)}};
  httplib::Result first = Post("/ofrep/v1/evaluate/flags", body);
  ASSERT_TRUE(first) << httplib::to_string(first.error());
  ASSERT_EQ(first->status, 200) << first->body;
  const std::string etag = first->get_header_value("ETag");
  ASSERT_FALSE(etag.empty());
  const json flags = json::parse(first->body)["flags"];
  EXPECT_EQ(flags.size(), config_->features.size());

  httplib::Result same =
      Post("/ofrep/v1/evaluate/flags", body, {{"If-None-Match", etag}});
  ASSERT_TRUE(same);
  EXPECT_EQ(same->status, 304);
  EXPECT_TRUE(same->body.empty());
  EXPECT_EQ(same->get_header_value("ETag"), etag);

  // Another context is another answer: 200, whatever the If-None-Match.
  httplib::Result other =
      Post("/ofrep/v1/evaluate/flags", {{"context", Context(2)}},
           {{"If-None-Match", etag}});
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 200);
  EXPECT_NE(other->get_header_value("ETag"), etag);

  // A bulk error has OFREP's bulk shape, without a key.
  httplib::Result bad =
      Post("/ofrep/v1/evaluate/flags", {{"context", {{"country", "SG"}}}});
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  const json error = json::parse(bad->body);
  EXPECT_EQ(error["errorCode"], "TARGETING_KEY_MISSING");
  EXPECT_EQ(error.count("key"), 0u);

  // A config reload changes the ETag of the same context.
  std::ofstream(config_path_, std::ios::app) << "\n# edited\n";
  ASSERT_TRUE(server_->Signal(SIGHUP).ok());
  EXPECT_TRUE(Eventually(
      [&] {
        httplib::Result r =
            Post("/ofrep/v1/evaluate/flags", body, {{"If-None-Match", etag}});
        return r && r->status == 200;
      },
      absl::Seconds(20), absl::Milliseconds(50)));
}

TEST_F(OfrepE2eTest, TokensAreCheckedAsForGrpcWith401And403) {
  const std::string assign = MakeToken('a', "assign");
  const std::string results = MakeToken('r', "results");
  const std::string tokens_path = dir_.path() + "/tokens";
  std::ofstream(tokens_path) << TokenFileLine("svc", "assign", assign)
                             << TokenFileLine("analyst", "results", results);
  ASSERT_NO_FATAL_FAILURE(
      StartServerWithHttp({"--auth_tokens_file=" + tokens_path}));
  const std::string path = "/ofrep/v1/evaluate/flags/checkout_flow";
  const json body = {{"context", Context(3)}};

  httplib::Result none = Post(path, body);
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  EXPECT_THAT(none->get_header_value("WWW-Authenticate"), HasSubstr("Bearer"));
  EXPECT_THAT(json::parse(none->body)["errorDetails"].get<std::string>(),
              HasSubstr("X-API-Key"));

  httplib::Result unknown =
      Post(path, body, {{"Authorization", "Bearer " + MakeToken('z', "x")}});
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 401);

  httplib::Result wrong_role =
      Post(path, body, {{"Authorization", "Bearer " + results}});
  ASSERT_TRUE(wrong_role);
  EXPECT_EQ(wrong_role->status, 403);
  EXPECT_THAT(json::parse(wrong_role->body)["errorDetails"].get<std::string>(),
              HasSubstr("assign"));

  for (const httplib::Headers& ok :
       {httplib::Headers{{"Authorization", "Bearer " + assign}},
        httplib::Headers{{"X-API-Key", assign}}}) {
    httplib::Result r = Post(path, body, ok);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << r->body;
  }

  // Recording an exposure needs the record role too.
  json record = body;
  record["context"]["abexpRecordExposure"] = true;
  httplib::Result no_record =
      Post(path, record, {{"Authorization", "Bearer " + assign}});
  ASSERT_TRUE(no_record);
  EXPECT_EQ(no_record->status, 403);
  EXPECT_THAT(no_record->body, HasSubstr("record"));
}

TEST_F(OfrepE2eTest, RecordExposureOptInRecordsTheDecidingExperiment) {
  ASSERT_NO_FATAL_FAILURE(StartServerWithHttp());
  // Units that a running experiment decides checkout_flow for.
  int recorded = 0;
  for (int i = 0; i < 200 && recorded < 5; ++i) {
    json context = Context(i);
    httplib::Result plain =
        Post("/ofrep/v1/evaluate/flags/checkout_flow", {{"context", context}});
    ASSERT_TRUE(plain);
    ASSERT_EQ(plain->status, 200) << plain->body;
    const json flag = json::parse(plain->body);
    if (flag["reason"] != "SPLIT") continue;
    const std::string experiment = flag["metadata"]["experimentKey"];
    context["abexpRecordExposure"] = true;
    httplib::Result again =
        Post("/ofrep/v1/evaluate/flags/checkout_flow", {{"context", context}});
    ASSERT_TRUE(again);
    ASSERT_EQ(again->status, 200) << again->body;
    EXPECT_EQ(json::parse(again->body)["metadata"].count("abexpExposureError"),
              0u)
        << again->body;
    ++recorded;
    EXPECT_TRUE(Eventually(
        [&] {
          absl::StatusOr<ExperimentAggregates> a = ReadAggregates(experiment);
          if (!a.ok()) return false;
          int64_t total = 0;
          for (const auto& [version, n] : a->config_versions) total += n;
          return total >= 1;
        },
        absl::Seconds(20), absl::Milliseconds(50)))
        << experiment;
  }
  EXPECT_EQ(recorded, 5);
}

}  // namespace
}  // namespace abexp
