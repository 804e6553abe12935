#include "server/ofrep/ofrep_evaluation.h"

#include <memory>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/assigner.h"
#include "server/core/config_parser.h"

namespace abexp {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

constexpr char kConfig[] = R"yaml(
attributes:
  country: string
  age: number
  vip: bool
  app_version: semver
features:
  - key: banner
    type: string
    default: plain
  - key: discount
    type: number
    default: 5
    rules:
      - {when: {attribute: vip, eq: true}, value: 20}
  - key: limits
    type: json
    default: {max: 3}
  - key: paused_only
    type: bool
    default: false
experiments:
  - key: banner_test
    status: running
    variants:
      - {key: control, weight: 50, features: {banner: plain}}
      - {key: bold, weight: 50, features: {banner: bold}}
    qa_overrides: {bold: [qa-1]}
  - key: paused_test
    status: paused
    variants:
      - {key: a, weight: 1, features: {paused_only: true}}
)yaml";

std::shared_ptr<const IndexedConfig> Load() {
  ParseResult r = ParseConfig(kConfig, "test.yaml");
  EXPECT_TRUE(r.ok()) << r.FormatDiagnostics();
  return r.config;
}

// ParseOfrepRequest of `body`; the error (nullopt when it parsed).
std::optional<OfrepError> ParseBody(const std::string& body,
                                    OfrepRequest* out) {
  static const std::shared_ptr<const IndexedConfig> config = Load();
  return ParseOfrepRequest(*config, body, out);
}

// The OFREP evaluation of `flag` for the context `context_json`.
json Evaluate(const std::string& flag, const std::string& context_json) {
  std::shared_ptr<const IndexedConfig> config = Load();
  OfrepRequest request;
  std::optional<OfrepError> e = ParseOfrepRequest(
      *config, "{\"context\": " + context_json + "}", &request);
  EXPECT_FALSE(e.has_value()) << e->details;
  AssignOptions options;
  options.feature_keys = {flag};
  options.now = absl::FromUnixSeconds(1700000000);
  absl::StatusOr<AssignResult> result = Assign(*config, request.unit, options);
  EXPECT_TRUE(result.ok()) << result.status();
  return OfrepEvaluation(*config, request.unit, *result, result->features[0]);
}

TEST(OfrepContext, TargetingKeyIsTheUnitIdOfTheNamedType) {
  OfrepRequest r;
  ASSERT_FALSE(ParseBody(R"({"context": {"targetingKey": "u-1"}})", &r));
  EXPECT_EQ(r.unit.ids.at("user_id"), "u-1");

  OfrepRequest d;
  ASSERT_FALSE(ParseBody(R"({"context": {"targetingKey": "d-9",
      "unitIdType": "device_id", "unitIds": {"user_id": "u-2"}}})",
                         &d));
  EXPECT_EQ(d.unit.ids.at("device_id"), "d-9");
  EXPECT_EQ(d.unit.ids.at("user_id"), "u-2");
  EXPECT_EQ(d.unit.ids.size(), 2u);
}

TEST(OfrepContext, OtherFieldsAreAttributesOfTheirDeclaredTypes) {
  OfrepRequest r;
  ASSERT_FALSE(ParseBody(R"({"context": {"targetingKey": "u-1",
      "country": "SG", "age": 31, "vip": true, "app_version": "5.2.1",
      "undeclared": "kept", "nothing": null}})",
                         &r));
  EXPECT_EQ(std::get<std::string>(r.unit.attributes.at("country")), "SG");
  EXPECT_EQ(std::get<double>(r.unit.attributes.at("age")), 31);
  EXPECT_EQ(std::get<bool>(r.unit.attributes.at("vip")), true);
  EXPECT_EQ(std::get<std::string>(r.unit.attributes.at("app_version")),
            "5.2.1");
  EXPECT_EQ(r.unit.attributes.count("nothing"), 0u);
  EXPECT_FALSE(r.record_exposure);
}

TEST(OfrepContext, AnAttributeOfTheWrongTypeIsInvalidContextNamingIt) {
  OfrepRequest r;
  std::optional<OfrepError> e =
      ParseBody(R"({"context": {"targetingKey": "u-1", "age": "thirty"}})", &r);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code, OfrepErrorCode::kInvalidContext);
  EXPECT_THAT(e->details, HasSubstr("context.age is a string"));
  EXPECT_THAT(e->details, HasSubstr("as number"));
  EXPECT_EQ(OfrepHttpStatus(e->code), 400);
}

TEST(OfrepContext, MissingOrEmptyTargetingKeyIsTargetingKeyMissing) {
  for (const char* body : {R"({"context": {"country": "SG"}})",
                           R"({"context": {"targetingKey": ""}})",
                           R"({"context": {"targetingKey": 7}})", "", "{}"}) {
    OfrepRequest r;
    std::optional<OfrepError> e = ParseBody(body, &r);
    ASSERT_TRUE(e.has_value()) << body;
    EXPECT_EQ(e->code, OfrepErrorCode::kTargetingKeyMissing) << body;
    EXPECT_STREQ(OfrepErrorCodeName(e->code), "TARGETING_KEY_MISSING");
  }
}

TEST(OfrepContext, ABodyThatIsNotAJsonObjectIsParseError) {
  for (const char* body : {"{not json", "[1, 2]", "\"text\""}) {
    OfrepRequest r;
    std::optional<OfrepError> e = ParseBody(body, &r);
    ASSERT_TRUE(e.has_value()) << body;
    EXPECT_EQ(e->code, OfrepErrorCode::kParseError) << body;
  }
}

TEST(OfrepContext, ReservedFieldsOfTheWrongTypeAreInvalidContext) {
  for (
      const char* body :
      {R"({"context": "u-1"})",
       R"({"context": {"targetingKey": "u-1", "unitIdType": 3}})",
       R"({"context": {"targetingKey": "u-1", "unitIds": ["d"]}})",
       R"({"context": {"targetingKey": "u-1", "abexpRecordExposure": "yes"}})"}) {
    OfrepRequest r;
    std::optional<OfrepError> e = ParseBody(body, &r);
    ASSERT_TRUE(e.has_value()) << body;
    EXPECT_EQ(e->code, OfrepErrorCode::kInvalidContext) << body;
  }
}

TEST(OfrepContext, RecordExposureIsOptIn) {
  OfrepRequest r;
  ASSERT_FALSE(ParseBody(
      R"({"context": {"targetingKey": "u-1", "abexpRecordExposure": true}})",
      &r));
  EXPECT_TRUE(r.record_exposure);
  EXPECT_EQ(r.unit.attributes.count("abexpRecordExposure"), 0u);
}

TEST(OfrepEvaluation, ABucketedVariantIsASplitNamingExperimentAndBucket) {
  json flag = Evaluate("banner", R"({"targetingKey": "u-1"})");
  EXPECT_EQ(flag["reason"], "SPLIT");
  EXPECT_EQ(flag["metadata"]["experimentKey"], "banner_test");
  ASSERT_TRUE(flag["metadata"]["bucket"].is_number_integer());
  const int bucket = flag["metadata"]["bucket"].get<int>();
  // 50/50: buckets below 5000 are control.
  EXPECT_EQ(flag["variant"], bucket < 5000 ? "control" : "bold");
  EXPECT_EQ(flag["value"], bucket < 5000 ? "plain" : "bold");
  EXPECT_EQ(flag["key"], "banner");
  EXPECT_TRUE(flag["metadata"]["configVersion"].is_string());
}

TEST(OfrepEvaluation, AQaOverrideIsATargetingMatch) {
  json flag = Evaluate("banner", R"({"targetingKey": "qa-1"})");
  EXPECT_EQ(flag["reason"], "TARGETING_MATCH");
  EXPECT_EQ(flag["variant"], "bold");
  EXPECT_EQ(flag["metadata"].count("bucket"), 0u);
}

TEST(OfrepEvaluation, RulesMatchDefaultsAreDefaultAndNumbersStayIntegral) {
  json vip = Evaluate("discount", R"({"targetingKey": "u-1", "vip": true})");
  EXPECT_EQ(vip["reason"], "TARGETING_MATCH");
  EXPECT_EQ(vip["variant"], "rule0");
  EXPECT_TRUE(vip["value"].is_number_integer());
  EXPECT_EQ(vip["value"], 20);
  json plain = Evaluate("discount", R"({"targetingKey": "u-1", "vip": false})");
  EXPECT_EQ(plain["reason"], "DEFAULT");
  EXPECT_EQ(plain["variant"], "default");
  EXPECT_EQ(plain["value"], 5);
}

TEST(OfrepEvaluation, UnchangeableDefaultsAreStaticAndPausedOnesDisabled) {
  json limits = Evaluate("limits", R"({"targetingKey": "u-1"})");
  EXPECT_EQ(limits["reason"], "STATIC");
  EXPECT_EQ(limits["value"], json({{"max", 3}}));
  json paused = Evaluate("paused_only", R"({"targetingKey": "u-1"})");
  EXPECT_EQ(paused["reason"], "DISABLED");
  EXPECT_EQ(paused["value"], false);
}

TEST(OfrepErrorJson, HasTheKeyOnlyForOneFlag) {
  const std::string key = "banner";
  const OfrepError e{OfrepErrorCode::kFlagNotFound, "no such flag"};
  EXPECT_EQ(OfrepErrorJson(&key, e), json({{"key", "banner"},
                                           {"errorCode", "FLAG_NOT_FOUND"},
                                           {"errorDetails", "no such flag"}}));
  EXPECT_EQ(OfrepErrorJson(nullptr, e).count("key"), 0u);
  EXPECT_EQ(OfrepHttpStatus(OfrepErrorCode::kFlagNotFound), 404);
}

}  // namespace
}  // namespace abexp
