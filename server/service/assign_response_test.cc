// AssignResponseEncoder against protobuf: for every answer Assign gives
// with the example and the benchmark configs (defaults, feature rules,
// variants, a stopped experiment's rollout, the holdout, QA overrides,
// layers, filters, an exposure error), the encoder's bytes are those
// protobuf writes for the message AssignResultToProto builds, and they
// parse back into an equal message.
#include "server/service/assign_response.h"

#include <memory>
#include <random>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "server/core/config_parser.h"
#include "server/service/rpc_handlers.h"

namespace abexp {
namespace {

std::shared_ptr<const IndexedConfig> Load(const std::string& relative) {
  const ParseResult parsed =
      ParseConfigFile(absl::StrCat(ABEXP_SOURCE_DIR, "/", relative));
  EXPECT_TRUE(parsed.ok()) << parsed.FormatDiagnostics();
  return parsed.config;
}

// A request for a unit with ids and attributes drawn from `rng`, so that
// targeting, segments, rules and rollouts go both ways.
v1::AssignRequest RandomRequest(std::mt19937_64& rng, int i) {
  v1::AssignRequest request;
  v1::Unit* unit = request.mutable_unit();
  auto pick = [&](std::initializer_list<const char*> options) {
    return std::string(*(options.begin() + rng() % options.size()));
  };
  // Every 50th unit is a QA tester of the example config.
  (*unit->mutable_ids())["user_id"] =
      i % 50 == 0 ? "qa-user-1" : absl::StrCat("u-", rng() % 1000000);
  if (rng() % 4 != 0) {
    (*unit->mutable_ids())["device_id"] = absl::StrCat("d-", rng() % 1000000);
  }
  auto& attributes = *unit->mutable_attributes();
  attributes["country"].set_string_value(pick({"US", "SG", "CN", "DE"}));
  attributes["platform"].set_string_value(pick({"ios", "android", "web"}));
  attributes["app_version"].set_string_value(
      pick({"5.1.9", "5.2.0", "6.0.1", "4.0.0"}));
  attributes["days_since_signup"].set_number_value(
      static_cast<double>(rng() % 60));
  attributes["membership_tier"].set_string_value(
      pick({"basic", "silver", "gold", "platinum"}));
  attributes["is_vip"].set_bool_value(rng() % 5 == 0);
  attributes["days_since_last_active"].set_number_value(
      static_cast<double>(rng() % 90));
  attributes["rfm_tier"].set_string_value(
      pick({"champions", "loyal", "at_risk", "hibernating"}));
  attributes["locale"].set_string_value(pick({"en-US", "de-DE", "zh-CN"}));
  attributes["orders_last_90d"].set_number_value(
      static_cast<double>(rng() % 20));
  attributes["acquisition_channel"].set_string_value(
      pick({"organic", "paid_search", "social", "referral"}));
  return request;
}

// The bytes protobuf writes for HandleAssign's response.
std::string ByProtobuf(const IndexedConfig& config,
                       const v1::AssignRequest& request) {
  v1::AssignResponse response;
  const absl::Status s =
      HandleAssign(config, nullptr, StickyRead{}, request, &response);
  EXPECT_TRUE(s.ok()) << s;
  return response.SerializeAsString();
}

std::string ByEncoder(const IndexedConfig& config,
                      const AssignResponseEncoder& encoder,
                      const v1::AssignRequest& request) {
  std::string bytes;
  const absl::Status s = HandleAssignEncoded(config, encoder, nullptr,
                                             StickyRead{}, request, &bytes);
  EXPECT_TRUE(s.ok()) << s;
  return bytes;
}

// Checks the encoder against protobuf on 3000 requests; returns the
// feature sources the answers used.
std::set<int> ExpectSameBytes(const std::string& config_file) {
  std::set<int> sources;
  std::shared_ptr<const IndexedConfig> config = Load(config_file);
  if (config == nullptr) return sources;
  AssignResponseEncoder encoder(*config);
  std::mt19937_64 rng(20261207);
  int assignments = 0, held_out = 0, with_error = 0;
  for (int i = 0; i < 3000; ++i) {
    v1::AssignRequest request = RandomRequest(rng, i);
    if (i % 7 == 0) {
      // Only some features (and so only the experiments that set them).
      request.add_feature_keys(
          config->features[i % config->features.size()].key);
    }
    // Asks to record with no recorder: the answer carries exposure_error.
    if (i % 11 == 0) request.set_record_exposure(true);
    const std::string want = ByProtobuf(*config, request);
    const std::string got = ByEncoder(*config, encoder, request);
    EXPECT_EQ(got, want) << config_file << " request " << i << ":\n"
                         << request.DebugString();
    if (got != want) break;
    v1::AssignResponse parsed;
    EXPECT_TRUE(parsed.ParseFromString(got));
    assignments += parsed.assignments_size();
    held_out += parsed.in_holdout() ? 1 : 0;
    with_error += parsed.exposure_error().empty() ? 0 : 1;
    for (const v1::ResolvedFeature& f : parsed.features()) {
      sources.insert(f.source());
    }
  }
  // Every answer came from the pieces, none from the fallback.
  EXPECT_EQ(encoder.unforeseen(), 0) << config_file;
  // The sample covers what the encoder has to get right.
  EXPECT_GT(assignments, 1000) << config_file;
  EXPECT_GT(held_out, 10) << config_file;
  EXPECT_GT(with_error, 10) << config_file;
  return sources;
}

TEST(AssignResponseEncoder, WritesProtobufsBytesForTheExampleConfig) {
  // The example's answers use every feature source: default, rule,
  // experiment and a stopped experiment's rollout.
  EXPECT_EQ(ExpectSameBytes("examples/experiments.yaml"),
            (std::set<int>{v1::FEATURE_SOURCE_DEFAULT, v1::FEATURE_SOURCE_RULE,
                           v1::FEATURE_SOURCE_EXPERIMENT,
                           v1::FEATURE_SOURCE_ROLLOUT}));
}

TEST(AssignResponseEncoder, WritesProtobufsBytesForTheBenchmarkConfig) {
  EXPECT_FALSE(ExpectSameBytes("bench/experiments-50.yaml").empty());
}

}  // namespace
}  // namespace abexp
