#include "server/core/config_parser.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace abexp {
namespace {

using ::testing::HasSubstr;

// A file of the repository, by its path from the root (ABEXP_SOURCE_DIR,
// set by the build), so tests run from any directory.
std::string RepoPath(const std::string& relative) {
  return std::string(ABEXP_SOURCE_DIR) + "/" + relative;
}

ParseResult Parse(const std::string& yaml) {
  return ParseConfig(yaml, "test.yaml");
}

std::vector<Diagnostic> Errors(const ParseResult& r) {
  std::vector<Diagnostic> out;
  for (const Diagnostic& d : r.diagnostics) {
    if (!d.warning) out.push_back(d);
  }
  return out;
}

// Asserts the config is rejected with exactly one error, at line:column,
// whose message contains `fragment`.
void ExpectOnlyError(const std::string& yaml, int line, int column,
                     const std::string& fragment) {
  ParseResult r = Parse(yaml);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.config, nullptr);
  std::vector<Diagnostic> errors = Errors(r);
  ASSERT_EQ(errors.size(), 1u) << r.FormatDiagnostics();
  EXPECT_EQ(errors[0].line, line) << errors[0].ToString();
  EXPECT_EQ(errors[0].column, column) << errors[0].ToString();
  EXPECT_THAT(errors[0].message, HasSubstr(fragment));
}

std::shared_ptr<const Config> ParseOk(const std::string& yaml) {
  ParseResult r = Parse(yaml);
  EXPECT_TRUE(r.ok()) << r.FormatDiagnostics();
  EXPECT_TRUE(r.diagnostics.empty()) << r.FormatDiagnostics();
  return r.config;
}

// A valid prefix: 12 lines, so experiments written after it start at line 13.
const char kPrefix[] = R"(attributes:
  country: string
  days: number
  version: semver
  vip: bool
layers:
  checkout: {}
features:
  - {key: flow, type: string, default: multi}
  - {key: flag, type: bool, default: false}
  - {key: limit, type: number, default: 3}
experiments:
)";

std::string WithPrefix(const std::string& experiments) {
  return kPrefix + experiments;
}

// ---- Weights.

TEST(ConfigParser, WeightsThatSumToZeroAreAnError) {
  ExpectOnlyError(
      WithPrefix(R"(  - key: x
    status: running
    variants:
      - {key: a, weight: 0}
      - {key: b, weight: 0.0}
)"),
      15, 5,
      "experiment 'x': variant weights sum to 0; give at least one variant");
}

TEST(ConfigParser, NegativeWeightIsAnError) {
  ExpectOnlyError(WithPrefix(R"(  - key: x
    status: running
    variants:
      - {key: a, weight: -1}
      - {key: b, weight: 1}
)"),
                  16, 26, "weight -1 is negative");
}

TEST(ConfigParser, NonNumericWeightIsAnError) {
  ExpectOnlyError(WithPrefix(R"(  - key: x
    status: running
    variants:
      - {key: a, weight: half}
)"),
                  16, 26, "'half' is not a number");
}

TEST(ConfigParser, WeightWithMoreThanFourDecimalsIsAnError) {
  ExpectOnlyError(WithPrefix(R"(  - key: x
    status: running
    variants:
      - {key: a, weight: 33.33333}
      - {key: b, weight: 1}
)"),
                  16, 26, "more than 4 decimal places");
}

// `n` variants v0, v1, ... of weight `weight`, for experiment x after
// kPrefix: its `variants:` key is at line 15, column 5.
std::string ExperimentWithVariants(int n, const std::string& weight) {
  std::string yaml = "  - key: x\n    status: running\n    variants:\n";
  for (int i = 0; i < n; ++i) {
    absl::StrAppendFormat(&yaml, "      - {key: v%d, weight: %s}\n", i, weight);
  }
  return WithPrefix(yaml);
}

// The event store keeps a unit's variant in one byte: a config with more
// variants would load and then fail at every exposure.
TEST(ConfigParser, MoreVariantsThanTheStoreCanRecordIsAnError) {
  ExpectOnlyError(ExperimentWithVariants(256, "1"), 15, 5,
                  "experiment 'x' has 256 variants, more than 255, the most "
                  "the event store can record");
  auto config = ParseOk(ExperimentWithVariants(255, "1"));
  ASSERT_NE(config, nullptr);
  EXPECT_EQ(config->experiments[0].variants.size(), 255u);
}

TEST(ConfigParser, WeightsAddingUpPastTheLimitAreAnErrorNamingTheSum) {
  ExpectOnlyError(WithPrefix(R"(  - key: x
    status: running
    variants:
      - {key: a, weight: 6000000}
      - {key: b, weight: 6000000.5}
)"),
                  15, 5,
                  "variant weights add up to 12000000.5; they must add up to "
                  "less than 11258999");
  // Just below the limit the ranges are exact: a gets floor(10000 * 1 /
  // 11258998).
  auto config = ParseOk(WithPrefix(R"(  - key: x
    status: running
    variants:
      - {key: a, weight: 1}
      - {key: b, weight: 11258997}
)"));
  ASSERT_NE(config, nullptr);
  EXPECT_EQ(config->experiments[0].variants[0].full_range, (BucketRange{0, 0}));
  EXPECT_EQ(config->experiments[0].variants[1].full_range,
            (BucketRange{0, 10000}));
}

// The limit a doc states as "add up to less than **N**" (N with thousands
// separators), or 0 when it states none.
uint64_t DocumentedWeightLimit(const std::string& doc) {
  std::ifstream in(RepoPath(doc));
  std::stringstream text;
  text << in.rdbuf();
  const std::string md = text.str();
  const std::string marker = "add up to less than **";
  const size_t at = md.find(marker);
  if (at == std::string::npos) return 0;
  uint64_t limit = 0;
  for (size_t i = at + marker.size(); i < md.size() && md[i] != '*'; ++i) {
    if (md[i] >= '0' && md[i] <= '9') {
      limit = limit * 10 + static_cast<uint64_t>(md[i] - '0');
    } else if (md[i] != ',') {
      return 0;
    }
  }
  return limit;
}

// docs/bucketing.md (the spec) and docs/config.md state one limit on the sum
// of an experiment's weights as written, and it is the one the parser
// enforces: just below it loads, at it is refused with a message naming it.
TEST(ConfigParser, TheWeightSumLimitIsTheOneBothDocsState) {
  const uint64_t limit = DocumentedWeightLimit("docs/bucketing.md");
  ASSERT_GT(limit, 0u) << "docs/bucketing.md states no weight limit";
  EXPECT_EQ(DocumentedWeightLimit("docs/config.md"), limit);

  auto config = ParseOk(WithPrefix(absl::StrFormat(R"(  - key: x
    status: running
    variants:
      - {key: a, weight: 1}
      - {key: b, weight: %d.9999}
)",
                                                   limit - 2)));
  ASSERT_NE(config, nullptr);
  EXPECT_EQ(config->experiments[0].variants[1].full_range,
            (BucketRange{0, 10000}));
  ExpectOnlyError(WithPrefix(absl::StrFormat(R"(  - key: x
    status: running
    variants:
      - {key: a, weight: 1}
      - {key: b, weight: %d}
)",
                                             limit - 1)),
                  15, 5,
                  absl::StrCat("variant weights add up to ", limit,
                               "; they must add up to less than ", limit));
}

TEST(ConfigParser, AWeightTooLargeToReadSaysSo) {
  ExpectOnlyError(WithPrefix(R"(  - key: x
    status: running
    variants:
      - {key: a, weight: 10000000000000}
      - {key: b, weight: 1}
)"),
                  16, 26, "weight 10000000000000 is too large");
}

// 1844 weights of 999999999999.9999 and one of 674407371005.346 add up to
// 2^64 + 50 in units of 1/10000: a 64-bit sum would wrap around to 50 and
// pass. The sum is refused instead (with the variant count).
TEST(ConfigParser, WeightsWhoseSumWouldOverflowAreRefusedNotWrapped) {
  std::string yaml = ExperimentWithVariants(1844, "999999999999.9999");
  yaml += "      - {key: last, weight: 674407371005.346}\n";
  ParseResult r = Parse(yaml);
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(r.FormatDiagnostics(), HasSubstr("has 1845 variants"));
  EXPECT_THAT(r.FormatDiagnostics(),
              HasSubstr("variant weights add up to more than "
                        "112589990684.2624; they must add up to less than "
                        "11258999"));
}

TEST(ConfigParser, DecimalWeightsAreParsedExactly) {
  auto config = ParseOk(WithPrefix(R"(  - key: x
    status: running
    variants:
      - {key: a, weight: 33.3}
      - {key: b, weight: 0.0001}
      - {key: c, weight: 7}
      - {key: d, weight: 1.10}
)"));
  ASSERT_NE(config, nullptr);
  const auto& v = config->experiments[0].variants;
  ASSERT_EQ(v.size(), 4u);
  EXPECT_EQ(v[0].weight, 333000u);
  EXPECT_EQ(v[0].weight_text, "33.3");
  EXPECT_EQ(v[1].weight, 1u);
  EXPECT_EQ(v[2].weight, 70000u);
  EXPECT_EQ(v[3].weight, 11000u);
}

TEST(ConfigParser, ThreeWaySplitGetsExactVariantRanges) {
  auto config = ParseOk(WithPrefix(R"(  - key: x
    status: running
    traffic: 0.5
    variants:
      - {key: a, weight: 33.3}
      - {key: b, weight: 33.3}
      - {key: c, weight: 33.4}
)"));
  ASSERT_NE(config, nullptr);
  const auto& v = config->experiments[0].variants;
  ASSERT_EQ(v.size(), 3u);
  // Boundaries floor(10000 * cumulative / total): 3330 and 6660.
  EXPECT_EQ(v[0].full_range, (BucketRange{0, 3330}));
  EXPECT_EQ(v[1].full_range, (BucketRange{3330, 6660}));
  EXPECT_EQ(v[2].full_range, (BucketRange{6660, 10000}));
  // At 50% traffic each range keeps its start and half its size.
  EXPECT_EQ(v[0].active_range, (BucketRange{0, 1665}));
  EXPECT_EQ(v[1].active_range, (BucketRange{3330, 4995}));
  EXPECT_EQ(v[2].active_range, (BucketRange{6660, 8330}));
}

// ---- Duplicates.

TEST(ConfigParser, DuplicateExperimentKeyIsAnError) {
  ExpectOnlyError(WithPrefix(R"(  - key: x
    status: draft
    variants: [{key: a, weight: 1}]
  - key: x
    status: draft
    variants: [{key: a, weight: 1}]
)"),
                  16, 10,
                  "duplicate experiment key 'x' (first defined at line 13)");
}

TEST(ConfigParser, DuplicateFeatureKeyIsAnError) {
  ExpectOnlyError(R"(features:
  - {key: f, type: bool, default: false}
  - {key: f, type: bool, default: true}
)",
                  3, 11, "duplicate feature key 'f' (first defined at line 2)");
}

TEST(ConfigParser, DuplicateVariantKeyIsAnError) {
  ExpectOnlyError(WithPrefix(R"(  - key: x
    status: draft
    variants:
      - {key: a, weight: 1}
      - {key: a, weight: 1}
)"),
                  17, 15, "duplicate variant key 'a' (first at line 16)");
}

TEST(ConfigParser, DuplicateYamlMappingKeyIsAnError) {
  // yaml-cpp keeps both entries silently; the parser must not.
  ExpectOnlyError(WithPrefix(R"(  - key: x
    status: draft
    status: running
    variants: [{key: a, weight: 1}]
)"),
                  15, 5, "duplicate key 'status' (first at line 14)");
}

TEST(ConfigParser, DuplicateKeyInsideASectionMapIsAnError) {
  ExpectOnlyError(R"(attributes:
  country: string
  country: number
)",
                  3, 3, "duplicate key 'country'");
}

// ---- Conditions.

TEST(ConfigParser, UnknownSegmentReferenceIsAnError) {
  ExpectOnlyError(WithPrefix(R"(  - key: x
    status: draft
    targeting: {segment: vips}
    variants: [{key: a, weight: 1}]
)"),
                  15, 26, "unknown segment 'vips'");
}

TEST(ConfigParser, RegexThatDoesNotCompileReportsRe2Error) {
  ExpectOnlyError(R"(attributes: {country: string}
segments:
  bad: {attribute: country, regex: "(ab"}
)",
                  3, 36, "regex '(ab' does not compile: missing )");
}

TEST(ConfigParser, OrderingOperatorOnStringAttributeIsAnError) {
  ExpectOnlyError(R"(attributes: {country: string}
segments:
  s: {attribute: country, lt: CN}
)",
                  3, 27, "operator 'lt' does not apply to a string attribute");
}

TEST(ConfigParser, StringOperandOnNumberAttributeIsAnError) {
  ExpectOnlyError(R"(attributes: {days: number}
segments:
  s: {attribute: days, eq: "abc"}
)",
                  3, 28, "operand 'abc' of 'eq' is not a number");
}

TEST(ConfigParser, QuotedNumberOperandSaysToDropTheQuotes) {
  ExpectOnlyError(R"(attributes: {days: number}
segments:
  s: {attribute: days, in: [1, "2"]}
)",
                  3, 32, "without quotes");
}

TEST(ConfigParser, UnparsableSemverOperandIsAnError) {
  ExpectOnlyError(R"(attributes: {app_version: semver}
segments:
  s: {attribute: app_version, gte: "5.x"}
)",
                  3, 36, "'5.x' of 'gte' is not a version");
}

TEST(ConfigParser, RegexOnNumberAttributeIsAnError) {
  ExpectOnlyError(R"(attributes: {days: number}
segments:
  s: {attribute: days, regex: "^1"}
)",
                  3, 24,
                  "operator 'regex' does not apply to a number attribute");
}

TEST(ConfigParser, InListOnBoolAttributeIsAnError) {
  ExpectOnlyError(R"(attributes: {vip: bool}
segments:
  s: {attribute: vip, in: [true]}
)",
                  3, 23, "operator 'in' does not apply to a bool attribute");
}

TEST(ConfigParser, BoolOperandMustBeTrueOrFalse) {
  ExpectOnlyError(R"(attributes: {vip: bool}
segments:
  s: {attribute: vip, eq: "yes"}
)",
                  3, 27, "is not true or false");
}

TEST(ConfigParser, RuleOnUndeclaredAttributeIsAnError) {
  ExpectOnlyError(R"(attributes: {country: string}
features:
  - key: f
    type: bool
    default: false
    rules:
      - when: {attribute: city, eq: Paris}
        value: true
)",
                  7, 27,
                  "attribute 'city' is not declared; add it under attributes:");
}

TEST(ConfigParser, SegmentCycleIsAnError) {
  ExpectOnlyError(R"(attributes: {days: number}
segments:
  a: {any: [{segment: b}, {attribute: days, lt: 1}]}
  b: {not: {segment: c}}
  c: {segment: a}
)",
                  5, 16,
                  "segments refer to each other in a cycle (a -> b -> c -> a)");
}

TEST(ConfigParser, SegmentReferringToItselfIsAnError) {
  ExpectOnlyError(R"(segments:
  a: {all: [{segment: a}]}
)",
                  2, 23, "cycle (a -> a)");
}

TEST(ConfigParser, ConditionWithNoFormIsAnError) {
  ExpectOnlyError(R"(attributes: {days: number}
segments:
  s: {lt: 7}
)",
                  3, 6, "operator 'lt' has no attribute");
  ExpectOnlyError(
      R"(segments:
  s: {}
)",
      2, 6,
      "a condition needs exactly one of all, any, not, segment, attribute");
}

TEST(ConfigParser, ConditionWithSeveralFormsIsAnError) {
  ExpectOnlyError(R"(attributes: {days: number}
segments:
  t: {all: []}
  s: {segment: t, attribute: days, lt: 7}
)",
                  4, 6, "several forms (segment, attribute)");
}

TEST(ConfigParser, ComparisonWithSeveralOperatorsIsAnError) {
  ExpectOnlyError(R"(attributes: {days: number}
segments:
  s: {attribute: days, gt: 1, lt: 7}
)",
                  3, 6, "several operators (gt, lt)");
}

TEST(ConfigParser, ComparisonWithNoOperatorIsAnError) {
  ExpectOnlyError(R"(attributes: {days: number}
segments:
  s: {attribute: days}
)",
                  3, 6, "comparison on 'days' has no operator");
}

TEST(ConfigParser, EmptyInListIsAnError) {
  ExpectOnlyError(R"(attributes: {country: string}
segments:
  s: {attribute: country, not_in: []}
)",
                  3, 35, "the not_in list is empty");
}

TEST(ConfigParser, ConditionMustBeAMap) {
  ExpectOnlyError(R"(segments:
  s: [a, b]
)",
                  2, 6, "must be a map");
}

TEST(ConfigParser, ConditionsAreTypedResolvedAndReadable) {
  auto config = ParseOk(R"(attributes:
  country: string
  days: number
  app_version: semver
  vip: bool
segments:
  new_users: {attribute: days, lt: 7}
  asia: {attribute: country, in: [CN, SG]}
  new_in_asia: {all: [{segment: new_users}, {segment: asia}]}
experiments:
  - key: x
    status: running
    targeting:
      any:
        - {segment: new_in_asia}
        - not: {attribute: app_version, gte: "5.2"}
        - {attribute: vip, exists: false}
        - {attribute: country, regex: "^U"}
    variants: [{key: a, weight: 1}]
)");
  ASSERT_NE(config, nullptr);
  const Experiment& e = config->experiments[0];
  ASSERT_NE(e.targeting, nullptr);
  EXPECT_EQ(
      e.targeting_text,
      "any(segment new_in_asia, not(app_version gte 5.2), vip exists false, "
      "country regex ^U)");
  EXPECT_EQ(config->segments.at("asia")->text, "country in [CN, SG]");
  EXPECT_EQ(config->segments.at("new_users")->text, "days lt 7");

  // Segment references point at the shared definitions.
  const Condition& any = *e.targeting;
  ASSERT_EQ(any.kind, ConditionKind::kAny);
  ASSERT_EQ(any.children.size(), 4u);
  EXPECT_EQ(any.children[0]->kind, ConditionKind::kSegment);
  EXPECT_EQ(any.children[0]->segment, config->segments.at("new_in_asia"));
  const Condition& nested = *config->segments.at("new_in_asia");
  ASSERT_EQ(nested.children.size(), 2u);
  EXPECT_EQ(nested.children[1]->segment, config->segments.at("asia"));

  // Operands take the attribute's type.
  const Condition& days = *config->segments.at("new_users");
  ASSERT_EQ(days.operands.size(), 1u);
  EXPECT_EQ(std::get<double>(days.operands[0]), 7.0);
  const Condition& version = *any.children[1]->children[0];
  ASSERT_EQ(version.operands.size(), 1u);
  const SemVer& v = std::get<SemVer>(version.operands[0]);
  EXPECT_EQ(v.major, 5u);
  EXPECT_EQ(v.minor, 2u);
  EXPECT_EQ(v.patch, 0u);
  EXPECT_NE(any.children[3]->regex, nullptr);

  // And they evaluate as written.
  EXPECT_TRUE(
      Evaluate(*e.targeting, Attributes{{"days", 3.0},
                                        {"country", std::string("SG")},
                                        {"vip", true},
                                        {"app_version", std::string("6.0")}}));
  EXPECT_FALSE(
      Evaluate(*e.targeting, Attributes{{"days", 30.0},
                                        {"country", std::string("SG")},
                                        {"vip", true},
                                        {"app_version", std::string("6.0")}}));
  EXPECT_TRUE(
      Evaluate(*e.targeting, Attributes{{"country", std::string("US")},
                                        {"vip", true},
                                        {"app_version", std::string("6.0")}}));
}

// ---- Layers.

TEST(ConfigParser, OverlappingLayerRangesAreAnError) {
  ExpectOnlyError(
      WithPrefix(R"(  - key: a
    status: running
    layer: checkout
    layer_range: [0, 0.5]
    variants: [{key: v, weight: 1}]
  - key: b
    status: paused
    layer: checkout
    layer_range: [0.4999, 1]
    variants: [{key: v, weight: 1}]
)"),
      21, 18, "overlaps experiment 'a' [0, 0.5) (line 13) in layer 'checkout'");
}

TEST(ConfigParser, StoppedExperimentsMayOverlapInALayer) {
  auto config = ParseOk(WithPrefix(R"(  - key: a
    status: running
    layer: checkout
    layer_range: [0, 0.5]
    variants: [{key: v, weight: 1}]
  - key: b
    status: stopped
    layer: checkout
    layer_range: [0.25, 0.75]
    variants: [{key: v, weight: 1}]
  - key: c
    status: draft
    layer: checkout
    layer_range: [0.5, 1]
    variants: [{key: v, weight: 1}]
)"));
  ASSERT_NE(config, nullptr);
  EXPECT_EQ(config->experiments[0].layer_range, (BucketRange{0, 5000}));
  EXPECT_EQ(config->experiments[1].layer_range, (BucketRange{2500, 7500}));
  EXPECT_EQ(config->experiments[2].layer_range, (BucketRange{5000, 10000}));
}

TEST(ConfigParser, UndeclaredLayerIsAnError) {
  ExpectOnlyError(
      WithPrefix(R"(  - key: a
    status: draft
    layer: checkuot
    layer_range: [0, 1]
    variants: [{key: v, weight: 1}]
)"),
      15, 12,
      "layer 'checkuot' is not declared; declare it under layers: or use "
      "one of checkout");
}

TEST(ConfigParser, ExperimentUnitMustMatchItsLayer) {
  ExpectOnlyError(
      WithPrefix(R"(  - key: a
    status: draft
    unit: device_id
    layer: checkout
    layer_range: [0, 1]
    variants: [{key: v, weight: 1}]
)"),
      15, 11,
      "unit 'device_id' differs from layer 'checkout''s unit 'user_id'");
}

TEST(ConfigParser, LayerRangeIsRequiredWithALayer) {
  ExpectOnlyError(WithPrefix(R"(  - key: a
    status: draft
    layer: checkout
    variants: [{key: v, weight: 1}]
)"),
                  15, 12, "missing layer_range");
}

TEST(ConfigParser, LayerRangeOutsideZeroToOneIsAnError) {
  ExpectOnlyError(WithPrefix(R"(  - key: a
    status: draft
    layer: checkout
    layer_range: [0.5, 1.5]
    variants: [{key: v, weight: 1}]
)"),
                  16, 24, "layer_range end 1.5 is more than 1");
}

TEST(ConfigParser, LayerRangeMustStartBelowItsEnd) {
  ExpectOnlyError(WithPrefix(R"(  - key: a
    status: draft
    layer: checkout
    layer_range: [0.5, 0.5]
    variants: [{key: v, weight: 1}]
)"),
                  16, 18, "layer_range [0.5, 0.5) is empty");
}

TEST(ConfigParser, LayerRangeMustHaveTwoBounds) {
  ExpectOnlyError(WithPrefix(R"(  - key: a
    status: draft
    layer: checkout
    layer_range: [0.5]
    variants: [{key: v, weight: 1}]
)"),
                  16, 18, "list of two fractions");
}

// ---- Rollout variant.

TEST(ConfigParser, RolloutVariantMustExist) {
  ExpectOnlyError(
      WithPrefix(R"(  - key: a
    status: stopped
    rollout_variant: winner
    variants: [{key: control, weight: 1}, {key: treatment, weight: 1}]
)"),
      15, 22,
      "rollout_variant 'winner' is not a variant of this experiment; use "
      "one of control, treatment");
}

TEST(ConfigParser, RolloutVariantNeedsAStoppedExperiment) {
  ExpectOnlyError(WithPrefix(R"(  - key: a
    status: running
    rollout_variant: treatment
    variants: [{key: control, weight: 1}, {key: treatment, weight: 1}]
)"),
                  15, 22,
                  "rollout_variant is only allowed when status is stopped");
}

// ---- Fractions.

TEST(ConfigParser, TrafficAboveOneIsAnError) {
  ExpectOnlyError(WithPrefix(R"(  - key: a
    status: draft
    traffic: 50
    variants: [{key: v, weight: 1}]
)"),
                  15, 14, "traffic 50 is more than 1 (did you mean \"50%\"?)");
}

TEST(ConfigParser, NegativeTrafficIsAnError) {
  ExpectOnlyError(WithPrefix(R"(  - key: a
    status: draft
    traffic: -0.1
    variants: [{key: v, weight: 1}]
)"),
                  15, 14, "traffic -0.1 is negative");
}

TEST(ConfigParser, TrafficWithMoreThanFourDecimalsIsAnError) {
  ExpectOnlyError(WithPrefix(R"(  - key: a
    status: draft
    traffic: 0.00005
    variants: [{key: v, weight: 1}]
)"),
                  15, 14, "more than 4 decimal places");
}

TEST(ConfigParser, PercentWithMoreThanTwoDecimalsIsAnError) {
  ExpectOnlyError(WithPrefix(R"(  - key: a
    status: draft
    traffic: "12.345%"
    variants: [{key: v, weight: 1}]
)"),
                  15, 14, "more than 4 decimal places");
}

TEST(ConfigParser, RuleRolloutOutOfRangeIsAnError) {
  ExpectOnlyError(R"(features:
  - key: f
    type: bool
    default: false
    rules:
      - {rollout: 1.01, value: true}
)",
                  6, 19, "rollout 1.01 is more than 1");
}

TEST(ConfigParser, HoldoutFractionIsRequiredAndInRange) {
  ExpectOnlyError("holdout: {salt: x}\n", 1, 1,
                  "missing required field 'fraction'");
  ExpectOnlyError("holdout: {fraction: 2}\n", 1, 21,
                  "holdout fraction 2 is more than 1");
}

TEST(ConfigParser, FractionsAreExactBasisPointsAndAcceptPercentStrings) {
  auto config = ParseOk(R"(holdout: {fraction: "2.5%"}
layers: {l: {}}
features:
  - key: f
    type: bool
    default: false
    rules:
      - {rollout: 0.1, value: true}
      - {rollout: "0.01%", value: true}
      - {rollout: 0.0001, value: true}
experiments:
  - key: a
    status: draft
    traffic: "12.5%"
    layer: l
    layer_range: [0, 0.5]
    variants: [{key: v, weight: 1}]
  - key: b
    status: draft
    traffic: 0.3333
    layer: l
    layer_range: ["50%", 1]
    variants: [{key: v, weight: 1}]
)");
  ASSERT_NE(config, nullptr);
  ASSERT_TRUE(config->holdout.has_value());
  EXPECT_EQ(config->holdout->bp, 250u);
  const Feature& f = config->features[0];
  EXPECT_EQ(f.rules[0].rollout_bp, 1000u);
  EXPECT_EQ(f.rules[1].rollout_bp, 1u);
  EXPECT_EQ(f.rules[2].rollout_bp, 1u);
  EXPECT_EQ(config->experiments[0].traffic_bp, 1250u);
  EXPECT_EQ(config->experiments[0].layer_range, (BucketRange{0, 5000}));
  EXPECT_EQ(config->experiments[1].traffic_bp, 3333u);
  EXPECT_EQ(config->experiments[1].layer_range, (BucketRange{5000, 10000}));
}

// ---- Feature values.

TEST(ConfigParser, VariantFeatureMustBeDeclared) {
  ExpectOnlyError(WithPrefix(R"(  - key: a
    status: draft
    variants:
      - key: v
        weight: 1
        features: {flow: one_page, colour: red}
)"),
                  18, 36,
                  "feature 'colour' is not declared; add it under features:");
}

TEST(ConfigParser, VariantFeatureValueMustHaveTheFeatureType) {
  ExpectOnlyError(WithPrefix(R"(  - key: a
    status: draft
    variants:
      - key: v
        weight: 1
        features: {flag: "true"}
)"),
                  18, 26, "must be true or false (the feature is bool)");
  ExpectOnlyError(WithPrefix(R"(  - key: a
    status: draft
    variants:
      - key: v
        weight: 1
        features: {limit: ten}
)"),
                  18, 27,
                  "must be a number (the feature is number), not 'ten'");
}

TEST(ConfigParser, FeatureDefaultMustHaveTheFeatureType) {
  ExpectOnlyError(
      R"(features:
  - key: f
    type: number
    default: [1]
)",
      4, 14, "default must be a number (the feature is number), not a list");
}

TEST(ConfigParser, FeatureTypeMustBeKnown) {
  ExpectOnlyError(
      R"(features:
  - {key: f, type: integer, default: 1}
)",
      2, 20,
      "type 'integer' is not valid; use one of bool, number, string, json");
}

TEST(ConfigParser, FeatureValuesAreTyped) {
  auto config = ParseOk(R"(features:
  - {key: b, type: bool, default: true}
  - {key: n, type: number, default: -2.5}
  - {key: s, type: string, default: "hello world"}
  - {key: s2, type: string, default: 42}
)");
  ASSERT_NE(config, nullptr);
  EXPECT_EQ(config->FindFeature("b")->default_value.type, ValueType::kBool);
  EXPECT_TRUE(config->FindFeature("b")->default_value.bool_value);
  EXPECT_EQ(config->FindFeature("n")->default_value.number_value, -2.5);
  EXPECT_EQ(config->FindFeature("s")->default_value.text, "hello world");
  EXPECT_EQ(config->FindFeature("s2")->default_value.text, "42");
}

TEST(ConfigParser, JsonFeatureValuesBecomeCompactJson) {
  auto config = ParseOk(R"(features:
  - key: j
    type: json
    default:
      a: 1
      b: [true, "x", ~, 1.5e3, -0.25]
      c: "5"
      d: say "hi"\there
      e: {}
      f: []
      g: 007
      h: false
  - {key: k, type: json, default: 12}
  - {key: l, type: json, default: text}
  - {key: m, type: json, default: }
)");
  ASSERT_NE(config, nullptr);
  EXPECT_EQ(
      config->FindFeature("j")->default_value.text,
      R"({"a":1,"b":[true,"x",null,1.5e3,-0.25],"c":"5","d":"say \"hi\"\\there",)"
      R"("e":{},"f":[],"g":"007","h":false})");
  EXPECT_EQ(config->FindFeature("j")->default_value.type, ValueType::kJson);
  EXPECT_EQ(config->FindFeature("k")->default_value.text, "12");
  EXPECT_EQ(config->FindFeature("l")->default_value.text, R"("text")");
  EXPECT_EQ(config->FindFeature("m")->default_value.text, "null");
}

TEST(ConfigParser, JsonStringsEscapeControlCharacters) {
  auto config = ParseOk(
      "features:\n  - {key: j, type: json, default: [\"a\\nb\\u0001\\t\"]}\n");
  ASSERT_NE(config, nullptr);
  EXPECT_EQ(config->FindFeature("j")->default_value.text,
            R"(["a\nb\u0001\t"])");
}

// ---- QA overrides.

TEST(ConfigParser, QaOverrideNamingUnknownVariantIsAnError) {
  ExpectOnlyError(
      WithPrefix(R"(  - key: a
    status: draft
    variants: [{key: control, weight: 1}]
    qa_overrides:
      treatment: [qa-1]
)"),
      17, 7,
      "qa_overrides names unknown variant 'treatment'; use one of control");
}

TEST(ConfigParser, QaOverrideListingAUnitTwiceIsAnError) {
  ExpectOnlyError(WithPrefix(R"(  - key: a
    status: draft
    variants: [{key: control, weight: 1}, {key: treatment, weight: 1}]
    qa_overrides:
      control: [qa-1, qa-2]
      treatment: [qa-3, qa-1]
)"),
                  18, 25,
                  "unit id 'qa-1' is listed twice in qa_overrides (first under "
                  "'control' at line 17)");
}

TEST(ConfigParser, QaOverridesMapUnitsToVariants) {
  auto config = ParseOk(WithPrefix(R"(  - key: a
    status: draft
    variants: [{key: control, weight: 1}, {key: treatment, weight: 1}]
    qa_overrides:
      treatment: [qa-1, qa-2]
)"));
  ASSERT_NE(config, nullptr);
  const auto& qa = config->experiments[0].qa_overrides;
  EXPECT_EQ(qa.size(), 2u);
  EXPECT_EQ(qa.at("qa-1"), "treatment");
  EXPECT_EQ(qa.at("qa-2"), "treatment");
}

// ---- Times, status, phase.

TEST(ConfigParser, StartMustBeBeforeEnd) {
  ExpectOnlyError(WithPrefix(R"(  - key: a
    status: draft
    start: 2026-11-01T00:00:00Z
    end: 2026-11-01T00:00:00Z
    variants: [{key: v, weight: 1}]
)"),
                  16, 10, "is not after start");
}

TEST(ConfigParser, NonRfc3339TimeIsAnError) {
  ExpectOnlyError(WithPrefix(R"(  - key: a
    status: draft
    end: 2026-11-01 10:00
    variants: [{key: v, weight: 1}]
)"),
                  15, 10, "end '2026-11-01 10:00' is not an RFC 3339 time");
}

TEST(ConfigParser, TimesAreParsed) {
  auto config = ParseOk(WithPrefix(R"(  - key: a
    status: draft
    start: 2026-11-01T08:00:00+08:00
    end: 2026-12-15T00:00:00Z
    variants: [{key: v, weight: 1}]
)"));
  ASSERT_NE(config, nullptr);
  const Experiment& e = config->experiments[0];
  ASSERT_TRUE(e.start_time.has_value());
  ASSERT_TRUE(e.end_time.has_value());
  EXPECT_EQ(*e.start_time,
            absl::FromCivil(absl::CivilSecond(2026, 11, 1, 0, 0, 0),
                            absl::UTCTimeZone()));
  EXPECT_EQ(*e.end_time,
            absl::FromCivil(absl::CivilSecond(2026, 12, 15, 0, 0, 0),
                            absl::UTCTimeZone()));
}

TEST(ConfigParser, InvalidStatusIsAnError) {
  ExpectOnlyError(
      WithPrefix(R"(  - key: a
    status: active
    variants: [{key: v, weight: 1}]
)"),
      14, 13,
      "status 'active' is not valid; use one of draft, running, paused, "
      "stopped");
}

TEST(ConfigParser, PhaseBelowOneIsAnError) {
  ExpectOnlyError(WithPrefix(R"(  - key: a
    status: draft
    phase: 0
    variants: [{key: v, weight: 1}]
)"),
                  15, 12, "phase 0 is less than 1");
  ExpectOnlyError(WithPrefix(R"(  - key: a
    status: draft
    phase: 1.5
    variants: [{key: v, weight: 1}]
)"),
                  15, 12, "phase '1.5' is not an integer");
}

// ---- Structure.

TEST(ConfigParser, MissingRequiredFieldsAreErrors) {
  ParseResult r = Parse(WithPrefix(R"(  - key: a
    description: nothing else
)"));
  ASSERT_FALSE(r.ok());
  std::vector<Diagnostic> errors = Errors(r);
  ASSERT_EQ(errors.size(), 2u) << r.FormatDiagnostics();
  EXPECT_THAT(errors[0].message,
              HasSubstr("experiment 'a': missing required field 'status'"));
  EXPECT_THAT(errors[1].message,
              HasSubstr("experiment 'a': missing required field 'variants'"));
  EXPECT_EQ(errors[0].line, 13);
  EXPECT_EQ(errors[0].column, 5);

  ExpectOnlyError(R"(features:
  - {type: bool, default: false}
)",
                  2, 5, "feature #1: missing required field 'key'");
  ExpectOnlyError(R"(features:
  - {key: f, type: bool}
)",
                  2, 5, "feature 'f': missing required field 'default'");
  ExpectOnlyError(R"(features:
  - {key: f, type: bool, default: false, rules: [{rollout: 0.5}]}
)",
                  2, 50, "rule #1: missing required field 'value'");
}

TEST(ConfigParser, UnknownFieldsNameTheAllowedOnes) {
  ExpectOnlyError(
      WithPrefix(R"(  - key: a
    status: draft
    trafic: 0.5
    variants: [{key: v, weight: 1}]
)"),
      15, 5,
      "unknown field 'trafic' (did you mean 'traffic'?); allowed fields "
      "are key, description, owner, status");
  ExpectOnlyError(
      "experiment: []\n", 1, 1,
      "unknown field 'experiment' (did you mean 'experiments'?); allowed "
      "fields "
      "are attributes, segments, holdout, layers, metrics, features, "
      "experiments");
}

// Each kind of map names every field it accepts (docs/config.md), in the
// documented order, when it meets one it does not.
TEST(ConfigParser, UnknownFieldsListEveryAllowedFieldOfTheirMap) {
  const struct {
    std::string yaml;
    std::string owner;
    std::string allowed;
  } cases[] = {
      {"experiments: [{key: a, status: draft, variants: [{key: v, weight: 1}], "
       "zzzzzz: 1}]\n",
       "experiment 'a'",
       "key, description, owner, status, rollout_variant, unit, salt, phase, "
       "traffic, start, "
       "end, targeting, layer, layer_range, variants, qa_overrides, metrics, "
       "primary_metric, dimensions, "
       "sticky"},
      {"experiments: [{key: a, status: draft, variants: [{key: v, weight: 1, "
       "zzzzzz: 1}]}]\n",
       "experiment 'a' variant #1", "key, weight, features"},
      {"metrics: [{key: m, type: binomial, event: e, zzzzzz: 1}]\n",
       "metric 'm'",
       "key, type, description, event, aggregate, numerator, denominator, "
       "window, day, steps, covariate, guardrail, higher_is_better"},
      {"metrics: [{key: m, type: ratio, numerator: {event: e, aggregate: "
       "count, zzzzzz: 1}, "
       "denominator: {event: f, aggregate: count}}]\n",
       "metric 'm' numerator", "event, aggregate"},
      {"features: [{key: f, type: bool, default: false, zzzzzz: 1}]\n",
       "feature 'f'", "key, type, default, description, rules"},
      {"features: [{key: f, type: bool, default: false, rules: [{value: true, "
       "zzzzzz: 1}]}]\n",
       "feature 'f' rule #1", "when, value, rollout, unit, salt"},
      {"layers: {l: {zzzzzz: 1}}\n", "layer 'l'", "description, unit, salt"},
      {"holdout: {fraction: 0.1, zzzzzz: 1}\n", "holdout",
       "fraction, unit, salt"},
  };
  for (const auto& c : cases) {
    ParseResult r = Parse(c.yaml);
    std::vector<Diagnostic> errors = Errors(r);
    ASSERT_EQ(errors.size(), 1u) << c.yaml << r.FormatDiagnostics();
    EXPECT_EQ(
        errors[0].message,
        c.owner + ": unknown field 'zzzzzz'; allowed fields are " + c.allowed)
        << c.yaml;
  }
}

// Diagnostics are sorted by position; two at one position (through an
// alias) keep the order in which the fields are checked.
TEST(ConfigParser, DiagnosticsAtOnePositionKeepTheOrderFieldsAreChecked) {
  // variants before rollout_variant, which is checked against them.
  ParseResult r = Parse(R"(experiments:
  - key: x
    status: stopped
    variants: &v []
    rollout_variant: *v
)");
  ASSERT_EQ(r.diagnostics.size(), 2u) << r.FormatDiagnostics();
  EXPECT_THAT(r.diagnostics[0].message, HasSubstr("variants is empty"));
  EXPECT_THAT(r.diagnostics[1].message,
              HasSubstr("rollout_variant must be text"));
  // A rule's value before its when.
  r = Parse(R"(features:
  - key: f
    type: string
    default: a
    rules:
      - when: &c {x: 1}
        value: *c
)");
  ASSERT_EQ(r.diagnostics.size(), 2u) << r.FormatDiagnostics();
  EXPECT_EQ(r.diagnostics[0].line, r.diagnostics[1].line);
  EXPECT_EQ(r.diagnostics[0].column, r.diagnostics[1].column);
  EXPECT_THAT(r.diagnostics[0].message,
              HasSubstr("rule #1 value must be a string"));
  EXPECT_THAT(r.diagnostics[1].message,
              HasSubstr("rule #1 when: a condition needs exactly one of"));
}

TEST(ConfigParser, KeysMustHaveTheDocumentedFormat) {
  ExpectOnlyError(WithPrefix(R"(  - key: -bad
    status: draft
    variants: [{key: v, weight: 1}]
)"),
                  13, 10, "experiment key '-bad' is not a valid key");
  ExpectOnlyError(WithPrefix("  - key: " + std::string(65, 'k') + R"(
    status: draft
    variants: [{key: v, weight: 1}]
)"),
                  13, 10, "is 65 bytes long; shorten it to at most 64");
  ExpectOnlyError("segments:\n  \"new users\": {all: []}\n", 2, 3,
                  "segment 'new users' is not a valid key");
  // 64 bytes and every allowed character are fine.
  ParseOk(WithPrefix("  - key: " + std::string(60, 'k') + R"(A._-
    status: draft
    variants: [{key: v, weight: 1}]
)"));
}

TEST(ConfigParser, YamlSyntaxErrorIsADiagnosticWithItsPosition) {
  ParseResult r = Parse("experiments:\n  - key: [a, b\n");
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.diagnostics.size(), 1u);
  EXPECT_GT(r.diagnostics[0].line, 0);
  EXPECT_THAT(r.diagnostics[0].message, HasSubstr("YAML syntax error"));
  EXPECT_THAT(r.diagnostics[0].ToString(), HasSubstr("test.yaml:"));
}

TEST(ConfigParser, TabIndentationSaysToUseSpaces) {
  ParseResult r = Parse("features:\n\t- key: x\n");
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.diagnostics.size(), 1u);
  EXPECT_EQ(r.diagnostics[0].line, 2);
  EXPECT_THAT(r.diagnostics[0].message,
              HasSubstr("indent with spaces, not tabs"));
}

TEST(ConfigParser, ConfigMustBeAMap) {
  ExpectOnlyError("- a\n- b\n", 1, 1, "the config must be a map of sections");
}

// An empty file is what a deploy that truncates before writing, or a
// template that rendered nothing, leaves behind: serving it would end every
// experiment at once, so it is refused with the way to mean it.
TEST(ConfigParser, AnEmptyDocumentIsAnErrorThatSaysHowToServeNothing) {
  const char* const kEmpty[] = {
      "",
      "\n",
      "  \n\n\t\n",
      "# nothing yet\n# still nothing\n",
      "---\n",
      "---\n...\n",
      "~\n",
      "null\n",
      "--- # a comment\n",
  };
  for (const char* text : kEmpty) {
    SCOPED_TRACE(::testing::PrintToString(std::string(text)));
    ParseResult r = Parse(text);
    EXPECT_FALSE(r.ok());
    ASSERT_EQ(r.diagnostics.size(), 1u) << r.FormatDiagnostics();
    EXPECT_FALSE(r.diagnostics[0].warning);
    EXPECT_EQ(r.diagnostics[0].ToString(),
              "test.yaml: the file is empty; write 'experiments: []' to serve "
              "nothing on purpose");
  }
}

TEST(ConfigParser, AnEmptyExperimentsListIsValid) {
  auto config = ParseOk("experiments: []\n");
  ASSERT_NE(config, nullptr);
  EXPECT_TRUE(config->experiments.empty());
  EXPECT_TRUE(config->features.empty());
  EXPECT_FALSE(config->holdout.has_value());
}

TEST(ConfigParser, AnEmptyFileIsNamedByItsPath) {
  const std::string path =
      ::testing::TempDir() + "/config_parser_test_empty.yaml";
  { std::ofstream(path, std::ios::trunc); }
  ParseResult r = ParseConfigFile(path);
  std::remove(path.c_str());
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.FormatDiagnostics(),
            path +
                ": the file is empty; write 'experiments: []' to serve "
                "nothing on purpose\n");
}

TEST(ConfigParser, ReportsEveryErrorSortedByPosition) {
  ParseResult r = Parse(R"(experiments:
  - key: b
    status: nope
    variants: [{key: v, weight: x}]
attributes: {c: colour}
)");
  ASSERT_FALSE(r.ok());
  std::vector<Diagnostic> errors = Errors(r);
  ASSERT_EQ(errors.size(), 3u) << r.FormatDiagnostics();
  EXPECT_EQ(errors[0].line, 3);
  EXPECT_EQ(errors[1].line, 4);
  EXPECT_EQ(errors[2].line, 5);
}

// ---- Metrics.

// A config with only a metrics section: the first metric is on line 2.
std::string Metrics(const std::string& body) { return "metrics:\n" + body; }

TEST(ConfigParser, MetricsAreParsedWithTheDocumentedDefaults) {
  auto config = ParseOk(Metrics(R"(  - key: order_conversion
    type: binomial
    event: order_completed
  - key: arpu
    description: Revenue per exposed user
    type: sum
    event: order_completed
  - key: orders_per_user
    type: sum
    event: order_completed
    aggregate: count
    window: 30d
  - key: average_order_value
    type: ratio
    numerator: {event: order_completed, aggregate: value}
    denominator: {event: order_completed, aggregate: count}
  - key: day7_retention
    type: retention
    event: app_open
    day: 7
  - key: bounce_rate
    type: binomial
    event: landing:bounce
    window: 30m
    guardrail: true
    higher_is_better: false
)"));
  ASSERT_NE(config, nullptr);
  ASSERT_EQ(config->metrics.size(), 6u);
  EXPECT_EQ(config->metrics[0].key, "order_conversion");
  EXPECT_EQ(config->metrics[5].key, "bounce_rate");

  const Metric* conversion = config->FindMetric("order_conversion");
  ASSERT_NE(conversion, nullptr);
  EXPECT_EQ(conversion->type, MetricType::kBinomial);
  EXPECT_EQ(conversion->source.event, "order_completed");
  EXPECT_EQ(conversion->window, absl::Hours(14 * 24));
  EXPECT_FALSE(conversion->guardrail);
  EXPECT_TRUE(conversion->higher_is_better);
  EXPECT_EQ(conversion->location.line, 2);
  EXPECT_EQ(conversion->location.column, 5);

  const Metric* arpu = config->FindMetric("arpu");
  ASSERT_NE(arpu, nullptr);
  EXPECT_EQ(arpu->type, MetricType::kSum);
  EXPECT_EQ(arpu->description, "Revenue per exposed user");
  EXPECT_EQ(arpu->source.aggregation, EventAggregation::kValue);

  const Metric* orders = config->FindMetric("orders_per_user");
  ASSERT_NE(orders, nullptr);
  EXPECT_EQ(orders->source.aggregation, EventAggregation::kCount);
  EXPECT_EQ(orders->window, absl::Hours(30 * 24));

  const Metric* aov = config->FindMetric("average_order_value");
  ASSERT_NE(aov, nullptr);
  EXPECT_EQ(aov->type, MetricType::kRatio);
  EXPECT_EQ(aov->numerator.event, "order_completed");
  EXPECT_EQ(aov->numerator.aggregation, EventAggregation::kValue);
  EXPECT_EQ(aov->denominator.event, "order_completed");
  EXPECT_EQ(aov->denominator.aggregation, EventAggregation::kCount);

  const Metric* retention = config->FindMetric("day7_retention");
  ASSERT_NE(retention, nullptr);
  EXPECT_EQ(retention->type, MetricType::kRetention);
  EXPECT_EQ(retention->source.event, "app_open");
  EXPECT_EQ(retention->retention_day, 7);

  const Metric* bounce = config->FindMetric("bounce_rate");
  ASSERT_NE(bounce, nullptr);
  EXPECT_EQ(bounce->source.event, "landing:bounce");
  EXPECT_EQ(bounce->window, absl::Minutes(30));
  EXPECT_TRUE(bounce->guardrail);
  EXPECT_FALSE(bounce->higher_is_better);
}

const char kWindowHead[] = "  - {key: m, type: binomial, event: e, window: ";

absl::Duration WindowOf(const std::string& text) {
  auto config = ParseOk(Metrics(kWindowHead + text + "}\n"));
  if (config == nullptr || config->metrics.empty()) return absl::ZeroDuration();
  return config->metrics[0].window;
}

TEST(ConfigParser, MetricWindowsTakeDaysHoursMinutesAndSeconds) {
  EXPECT_EQ(WindowOf("7d"), absl::Hours(7 * 24));
  EXPECT_EQ(WindowOf("24h"), absl::Hours(24));
  EXPECT_EQ(WindowOf("30m"), absl::Minutes(30));
  EXPECT_EQ(WindowOf("90s"), absl::Seconds(90));
  EXPECT_EQ(WindowOf("1d12h"), absl::Hours(36));
  EXPECT_EQ(WindowOf("1.5d"), absl::Hours(36));
  EXPECT_EQ(WindowOf("365d"), absl::Hours(365 * 24));
}

TEST(ConfigParser, MetricWindowMustBeAPositiveDurationOfAtMostAYear) {
  const int column = sizeof(kWindowHead);  // 1-based column after the head
  auto expect = [&](const std::string& window, const std::string& fragment) {
    SCOPED_TRACE(window);
    ExpectOnlyError(Metrics(kWindowHead + window + "}\n"), 2, column, fragment);
  };
  expect("7",
         "metric 'm' window 7 has no unit; write 7d for days, 7h for hours");
  expect("\"7 days\"",
         "window '7 days' is not a duration; write a number and a unit");
  expect("300ms", "window '300ms' is not a duration");
  expect("0d", "window 0d is not positive");
  expect("-1d", "window -1d is negative");
  expect("366d", "window 366d is longer than 365d");
  expect("[7d]", "window must be a duration, not a list");
}

TEST(ConfigParser, MetricTypeMustBeKnown) {
  ExpectOnlyError(
      Metrics("  - {key: m, type: bernoulli, event: e}\n"), 2, 20,
      "metric 'm': type 'bernoulli' is not valid; use one of binomial");
}

TEST(ConfigParser, MetricRequiredFieldsAreErrors) {
  ExpectOnlyError(Metrics("  - {type: binomial, event: e}\n"), 2, 5,
                  "metric #1: missing required field 'key'");
  ExpectOnlyError(
      Metrics("  - {key: m, event: e}\n"), 2, 5,
      "metric 'm': missing required field 'type'; add type: with one of "
      "binomial, sum, ratio, retention");
  ExpectOnlyError(Metrics("  - {key: m, type: sum}\n"), 2, 5,
                  "metric 'm': missing required field 'event'");
  ExpectOnlyError(Metrics("  - {key: m, type: ratio, denominator: {event: o, "
                          "aggregate: count}}\n"),
                  2, 5, "metric 'm': missing required field 'numerator'");
  ExpectOnlyError(Metrics("  - {key: m, type: ratio, numerator: {event: o, "
                          "aggregate: value}}\n"),
                  2, 5, "metric 'm': missing required field 'denominator'");
  ExpectOnlyError(Metrics("  - {key: m, type: retention, event: app_open}\n"),
                  2, 5, "metric 'm': missing required field 'day'");
}

TEST(ConfigParser, RatioPartsNeedAnEventAndAnAggregate) {
  // No default aggregate: counting events that carry no value would give 0.
  ExpectOnlyError(
      Metrics(R"(  - key: aov
    type: ratio
    numerator: {event: order_completed}
    denominator: {event: order_completed, aggregate: count}
)"),
      4, 16,
      "metric 'aov' numerator: missing required field 'aggregate'; add "
      "aggregate: value");
  ExpectOnlyError(Metrics(R"(  - key: ctr
    type: ratio
    numerator: {event: click, aggregate: count}
    denominator: {aggregate: count}
)"),
                  5, 18,
                  "metric 'ctr' denominator: missing required field 'event'");
  ExpectOnlyError(Metrics(R"(  - key: aov
    type: ratio
    numerator: {event: order_completed, aggregate: total}
    denominator: {event: order_completed, aggregate: count}
)"),
                  4, 52, "numerator aggregate 'total' is not valid; use value");
  ExpectOnlyError(Metrics(R"(  - key: aov
    type: ratio
    numerator: order_completed
    denominator: {event: order_completed, aggregate: count}
)"),
                  4, 16, "metric 'aov' numerator must be a map, not a scalar");
  ExpectOnlyError(
      Metrics(R"(  - key: aov
    type: ratio
    numerator: {event: order_completed, aggregate: count}
    denominator: {event: order_completed, aggregate: count}
)"),
      5, 18,
      "numerator and denominator are the same (event 'order_completed', "
      "aggregate count), so the ratio is always 1");
  ExpectOnlyError(Metrics(R"(  - key: aov
    type: ratio
    numerator: {event: order_completed, aggregate: value, window: 7d}
    denominator: {event: order_completed, aggregate: count}
)"),
                  4, 59, "metric 'aov' numerator: unknown field 'window'");
}

TEST(ConfigParser, MetricFieldsThatDoNotApplyToTheTypeAreErrors) {
  ExpectOnlyError(Metrics(R"(  - key: m
    type: retention
    event: app_open
    day: 1
    window: 7d
)"),
                  6, 5,
                  "metric 'm': window does not apply to a retention metric");
  ExpectOnlyError(Metrics(R"(  - key: m
    type: binomial
    event: signup
    day: 7
)"),
                  5, 5, "metric 'm': day does not apply to a binomial metric");
  ExpectOnlyError(
      Metrics(R"(  - key: m
    type: binomial
    event: signup
    aggregate: count
)"),
      5, 5,
      "aggregate does not apply to a binomial metric; a binomial metric "
      "counts the units that send the event");
  ExpectOnlyError(Metrics(R"(  - key: m
    type: ratio
    event: order_completed
    numerator: {event: order_completed, aggregate: value}
    denominator: {event: order_completed, aggregate: count}
)"),
                  4, 5, "metric 'm': event does not apply to a ratio metric");
  ExpectOnlyError(Metrics(R"(  - key: m
    type: sum
    event: order_completed
    numerator: {event: order_completed, aggregate: value}
)"),
                  5, 5, "numerator does not apply to a sum metric");
}

TEST(ConfigParser, RetentionDayIsAWholeNumberFromOneToNinety) {
  const std::string head =
      "  - {key: m, type: retention, event: app_open, day: ";
  const int column = static_cast<int>(head.size()) + 1;
  ExpectOnlyError(Metrics(head + "0}\n"), 2, column,
                  "day 0 is out of range; use a day from 1 to 90");
  ExpectOnlyError(Metrics(head + "91}\n"), 2, column, "day 91 is out of range");
  ExpectOnlyError(Metrics(head + "one}\n"), 2, column,
                  "day 'one' is not a whole number");
  ExpectOnlyError(Metrics(head + "1.5}\n"), 2, column,
                  "day '1.5' is not a whole number");
  auto config = ParseOk(Metrics(head + "90}\n"));
  ASSERT_NE(config, nullptr);
  EXPECT_EQ(config->metrics[0].retention_day, 90);
}

TEST(ConfigParser, EventNamesHaveTheDocumentedFormat) {
  ExpectOnlyError(
      Metrics(R"(  - key: m
    type: binomial
    event: "order completed"
)"),
      4, 12, "metric 'm' event 'order completed' is not a valid event name");
  ExpectOnlyError(Metrics("  - key: m\n    type: sum\n    event: " +
                          std::string(65, 'e') + "\n"),
                  4, 12, "is 65 bytes long; shorten it to at most 64");
  ExpectOnlyError(Metrics("  - key: m\n    type: sum\n    event:\n"), 4, 5,
                  "metric 'm' event must be text, not empty");
  ParseOk(Metrics("  - {key: m, type: sum, event: " + std::string(60, 'e') +
                  ".:-_}\n"));
}

TEST(ConfigParser, GuardrailAndHigherIsBetterAreBooleans) {
  ExpectOnlyError(
      Metrics(R"(  - key: m
    type: binomial
    event: e
    guardrail: "true"
)"),
      5, 16,
      "metric 'm' guardrail must be true or false, not 'true'; write true "
      "or false without quotes");
  ExpectOnlyError(
      Metrics(R"(  - key: m
    type: binomial
    event: e
    higher_is_better: lower
)"),
      5, 23, "metric 'm' higher_is_better must be true or false, not 'lower'");
}

TEST(ConfigParser, MetricCovariateNamesANumberAttributeTheExposuresCarry) {
  // Without an attributes: section any name is taken.
  auto config = ParseOk(
      Metrics(R"(  - {key: orders, type: sum, event: o, covariate: orders_90d}
  - {key: conv, type: binomial, event: o, covariate: orders_90d}
  - {key: plain, type: sum, event: o}
)"));
  ASSERT_NE(config, nullptr);
  EXPECT_EQ(config->FindMetric("orders")->covariate, "orders_90d");
  EXPECT_EQ(config->FindMetric("conv")->covariate, "orders_90d");
  EXPECT_EQ(config->FindMetric("plain")->covariate, "");
  // With one, it must be a declared number.
  ExpectOnlyError(R"(attributes: {orders_90d: number, tier: string}
metrics:
  - {key: m, type: sum, event: o, covariate: tier}
)",
                  3, 46,
                  "covariate 'tier' is declared string; a covariate "
                  "must be a number attribute");
  ExpectOnlyError(R"(attributes: {orders_90d: number}
metrics:
  - {key: m, type: sum, event: o, covariate: orders_91d}
)",
                  3, 46, "declare it under attributes: as orders_91d: number");
  ExpectOnlyError(
      Metrics(
          R"(  - {key: m, type: ratio, numerator: {event: a, aggregate: count}, denominator: {event: b, aggregate: count}, covariate: x}
)"),
      2, 111, "covariate applies to binomial and sum metrics, not to a ratio");
}

TEST(ConfigParser, ExperimentDimensionsAreDeclaredStringOrBoolAttributes) {
  constexpr char kHead[] =
      R"(attributes: {platform: string, returning: bool, orders: number}
experiments:
  - key: e
    status: running
    variants: [{key: a, weight: 1}]
)";
  auto config = ParseOk(absl::StrCat(
      kHead,
      "    dimensions: [platform, {attribute: returning, max_values: 5}]\n"));
  ASSERT_NE(config, nullptr);
  const Experiment* e = config->FindExperiment("e");
  ASSERT_EQ(e->dimensions.size(), 2u);
  EXPECT_EQ(e->dimensions[0].attribute, "platform");
  EXPECT_EQ(e->dimensions[0].max_values, 20);  // the default
  EXPECT_EQ(e->dimensions[1].attribute, "returning");
  EXPECT_EQ(e->dimensions[1].max_values, 5);
  ExpectOnlyError(absl::StrCat(kHead, "    dimensions: [orders]\n"), 6, 18,
                  "dimension 'orders' is declared number; a dimension must be "
                  "a string or bool attribute (numbers are not bucketed");
  ExpectOnlyError(absl::StrCat(kHead, "    dimensions: [country]\n"), 6, 18,
                  "dimension 'country' is not a declared attribute; declare "
                  "it under attributes: as country: string");
  ExpectOnlyError(absl::StrCat(kHead, "    dimensions: [platform, platform]\n"),
                  6, 28, "dimension 'platform' is listed twice");
  ExpectOnlyError(
      absl::StrCat(kHead,
                   "    dimensions: [{attribute: platform, max_values: 0}]\n"),
      6, 52, "max_values must be a whole number from 1 to 200");
}

TEST(ConfigParser, FunnelMetricHasOrderedStepsWithOptionalWindows) {
  auto config = ParseOk(Metrics(R"(  - key: checkout
    type: funnel
    window: 7d
    steps:
      - view_checkout
      - {event: submit_payment, window: 30m}
      - order_completed
)"));
  ASSERT_NE(config, nullptr);
  const Metric* m = config->FindMetric("checkout");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->type, MetricType::kFunnel);
  EXPECT_EQ(m->window, absl::Hours(24 * 7));
  ASSERT_EQ(m->steps.size(), 3u);
  EXPECT_EQ(m->steps[0].event, "view_checkout");
  EXPECT_FALSE(m->steps[0].window.has_value());
  EXPECT_EQ(m->steps[1].event, "submit_payment");
  EXPECT_EQ(m->steps[1].window, absl::Minutes(30));
  EXPECT_EQ(m->steps[2].event, "order_completed");
}

TEST(ConfigParser, FunnelStepsAreTwoToEightDistinctEvents) {
  ExpectOnlyError(Metrics("  - {key: f, type: funnel, steps: [a]}\n"), 2, 35,
                  "metric 'f' has 1 steps; a funnel has 2 to 8 steps");
  ExpectOnlyError(
      Metrics(
          "  - {key: f, type: funnel, steps: [a, b, c, d, e, f, g, h, i]}\n"),
      2, 35, "metric 'f' has 9 steps; a funnel has 2 to 8 steps");
  ExpectOnlyError(Metrics("  - {key: f, type: funnel, steps: [a, b, a]}\n"), 2,
                  42,
                  "metric 'f' step 3: event 'a' is already step 1; each step "
                  "needs its own event");
  ExpectOnlyError(Metrics("  - {key: f, type: funnel}\n"), 2, 5,
                  "metric 'f': missing required field 'steps'");
  ExpectOnlyError(
      Metrics("  - {key: f, type: funnel, steps: [a, {window: 1h}]}\n"), 2, 39,
      "metric 'f' step 2: missing required field 'event'");
  ExpectOnlyError(
      Metrics(
          "  - {key: f, type: funnel, steps: [a, {event: b, window: -1h}]}\n"),
      2, 58, "metric 'f' step 2 window -1h is negative");
  ExpectOnlyError(Metrics("  - {key: f, type: funnel, steps: [a, \"b c\"]}\n"),
                  2, 39, "metric 'f' step 2 event 'b c' is not a valid event");
}

TEST(ConfigParser, FunnelFieldsBelongToFunnelsOnly) {
  ExpectOnlyError(
      Metrics("  - {key: f, type: funnel, event: a, steps: [a, b]}\n"), 2, 28,
      "metric 'f': event does not apply to a funnel metric; a funnel's events "
      "are its steps");
  ExpectOnlyError(
      Metrics("  - {key: b, type: binomial, event: a, steps: [a, b]}\n"), 2, 40,
      "metric 'b': steps does not apply to a binomial metric; steps "
      "are for funnel metrics");
  ExpectOnlyError(
      Metrics("  - {key: f, type: funnel, steps: [a, b], covariate: x}\n"), 2,
      43, "covariate applies to binomial and sum metrics, not to a funnel");
}

TEST(ConfigParser, MetricKeysAreValidAndUnique) {
  ExpectOnlyError(Metrics(R"(  - {key: m, type: binomial, event: e}
  - {key: m, type: sum, event: e}
)"),
                  3, 11, "duplicate metric key 'm' (first defined at line 2)");
  ExpectOnlyError(Metrics("  - {key: \"arpu usd\", type: sum, event: e}\n"), 2,
                  11, "metric key 'arpu usd' is not a valid key");
}

TEST(ConfigParser, UnknownMetricFieldSuggestsTheRightOne) {
  ExpectOnlyError(Metrics(R"(  - key: m
    type: binomial
    event: e
    windw: 7d
)"),
                  5, 5,
                  "metric 'm': unknown field 'windw' (did you mean 'window'?)");
}

TEST(ConfigParser, MetricsSectionIsAList) {
  ExpectOnlyError("metrics: {m: {type: sum}}\n", 1, 10,
                  "metrics must be a list");
}

// Metric definitions for experiment tests, written after the experiments
// (metrics may be defined anywhere in the file).
const char kMetricDefs[] = R"(metrics:
  - {key: conversion, type: binomial, event: order_completed}
  - {key: revenue, type: sum, event: order_completed}
  - {key: bounce, type: binomial, event: bounce, guardrail: true, higher_is_better: false}
)";

// An experiment at line 13 whose fields after `variants` start at line 16.
std::string ExperimentWith(const std::string& fields) {
  return WithPrefix(
             "  - key: a\n    status: running\n    variants: [{key: v, weight: "
             "1}]\n" +
             fields) +
         kMetricDefs;
}

TEST(ConfigParser, ExperimentMetricsMustBeDefined) {
  ParseResult r =
      Parse(ExperimentWith(R"(    metrics: [conversion, revnue, pageviews]
    primary_metric: conversion
)"));
  ASSERT_FALSE(r.ok());
  std::vector<Diagnostic> errors = Errors(r);
  ASSERT_EQ(errors.size(), 2u) << r.FormatDiagnostics();
  EXPECT_EQ(errors[0].line, 16);
  EXPECT_EQ(errors[0].column, 27);
  EXPECT_THAT(
      errors[0].message,
      HasSubstr("experiment 'a': metric 'revnue' is not defined (did you mean "
                "'revenue'?)"));
  EXPECT_EQ(errors[1].line, 16);
  EXPECT_EQ(errors[1].column, 35);
  EXPECT_THAT(
      errors[1].message,
      HasSubstr("metric 'pageviews' is not defined; define it under metrics:"));

  auto config =
      ParseOk(ExperimentWith(R"(    metrics: [revenue, bounce, conversion]
    primary_metric: conversion
)"));
  ASSERT_NE(config, nullptr);
  const Experiment* e = config->FindExperiment("a");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->metrics,
            (std::vector<std::string>{"revenue", "bounce", "conversion"}));
  EXPECT_EQ(e->primary_metric, "conversion");
  EXPECT_FALSE(e->sticky);
}

TEST(ConfigParser, ExperimentNamingABrokenMetricIsReportedOnce) {
  ExpectOnlyError(WithPrefix(R"(  - key: a
    status: running
    variants: [{key: v, weight: 1}]
    metrics: ["bad key"]
    primary_metric: "bad key"
metrics:
  - {key: "bad key", type: sum, event: e}
)"),
                  19, 11, "metric key 'bad key' is not a valid key");
}

TEST(ConfigParser, PrimaryMetricIsRequiredWithMetrics) {
  ExpectOnlyError(
      ExperimentWith("    metrics: [bounce, revenue]\n"), 16, 5,
      "experiment 'a': metrics are listed but primary_metric is missing; name "
      "the metric the decision is made on, such as primary_metric: revenue");
}

TEST(ConfigParser, PrimaryMetricMustBeOneOfTheExperimentsMetrics) {
  ExpectOnlyError(
      ExperimentWith(R"(    metrics: [conversion, bounce]
    primary_metric: revenue
)"),
      17, 21,
      "experiment 'a': primary_metric 'revenue' is not one of the "
      "experiment's metrics (conversion, bounce); name one of them, or "
      "add it to metrics");
  ExpectOnlyError(ExperimentWith(R"(    metrics: [conversion, bounce]
    primary_metric: conversoin
)"),
                  17, 21, "(did you mean 'conversion'?)");
  ExpectOnlyError(ExperimentWith("    primary_metric: conversion\n"), 16, 21,
                  "primary_metric 'conversion' is not in the experiment's "
                  "metrics; list them, "
                  "such as metrics: [conversion]");
}

TEST(ConfigParser, GuardrailCannotBeThePrimaryMetric) {
  ExpectOnlyError(
      ExperimentWith(R"(    metrics: [bounce, conversion]
    primary_metric: bounce
)"),
      17, 21,
      "experiment 'a': primary_metric 'bounce' is a guardrail, and a "
      "guardrail cannot be the primary metric; name the metric the "
      "decision is made on, such as conversion");
}

TEST(ConfigParser, StickyIsTrueOrFalse) {
  auto config = ParseOk(ExperimentWith("    sticky: true\n"));
  ASSERT_NE(config, nullptr);
  EXPECT_TRUE(config->FindExperiment("a")->sticky);
  ExpectOnlyError(
      ExperimentWith("    sticky: sometimes\n"), 16, 13,
      "experiment 'a' sticky must be true or false, not 'sometimes'");
}

// ---- Warnings.

TEST(ConfigParser, RunningExperimentsOutsideOneLayerSettingOneFeatureWarn) {
  ParseResult r = Parse(WithPrefix(R"(  - key: a
    status: running
    variants: [{key: v, weight: 1, features: {flow: one}}]
  - key: b
    status: running
    variants: [{key: v, weight: 1, features: {flow: two}}]
)"));
  ASSERT_TRUE(r.ok()) << r.FormatDiagnostics();
  ASSERT_EQ(r.diagnostics.size(), 1u);
  const Diagnostic& d = r.diagnostics[0];
  EXPECT_TRUE(d.warning);
  EXPECT_EQ(d.line, 16);
  EXPECT_EQ(d.column, 5);
  EXPECT_THAT(d.message,
              HasSubstr("experiment 'b' and experiment 'a' (line 13)"));
  EXPECT_THAT(d.message, HasSubstr("feature flow"));
  EXPECT_THAT(d.ToString(),
              HasSubstr("test.yaml:16:5: warning: experiment 'b'"));
}

TEST(ConfigParser, ExperimentsInOneLayerOrNotRunningDoNotWarn) {
  ParseOk(WithPrefix(R"(  - key: a
    status: running
    layer: checkout
    layer_range: [0, 0.5]
    variants: [{key: v, weight: 1, features: {flow: one}}]
  - key: b
    status: running
    layer: checkout
    layer_range: [0.5, 1]
    variants: [{key: v, weight: 1, features: {flow: two}}]
  - key: c
    status: paused
    variants: [{key: v, weight: 1, features: {flow: three}}]
)"));
}

// ---- Defaults and model.

TEST(ConfigParser, DefaultsFollowTheDocs) {
  auto config = ParseOk(R"(attributes: {days: number}
holdout: {fraction: 0.05}
layers:
  checkout: {description: Checkout}
  search:
features:
  - key: f
    type: bool
    default: false
    rules:
      - {when: {attribute: days, lt: 7}, value: true}
      - {value: false, salt: custom, unit: device_id, rollout: 0.5}
experiments:
  - key: exp
    status: running
    variants: [{key: v, weight: 1}]
)");
  ASSERT_NE(config, nullptr);
  ASSERT_TRUE(config->holdout.has_value());
  EXPECT_EQ(config->holdout->salt, "abexp-global-holdout");
  EXPECT_EQ(config->holdout->unit_id_type, "user_id");
  EXPECT_EQ(config->holdout->bp, 500u);

  const Layer* checkout = config->FindLayer("checkout");
  ASSERT_NE(checkout, nullptr);
  EXPECT_EQ(checkout->salt, "checkout");
  EXPECT_EQ(checkout->unit_id_type, "user_id");
  EXPECT_EQ(checkout->description, "Checkout");
  ASSERT_NE(config->FindLayer("search"), nullptr);
  EXPECT_EQ(config->FindLayer("search")->salt, "search");

  const Feature* f = config->FindFeature("f");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(f->rules.size(), 2u);
  EXPECT_EQ(f->rules[0].salt, "f.rule0");
  EXPECT_EQ(f->rules[0].unit_id_type, "user_id");
  EXPECT_EQ(f->rules[0].rollout_bp, 10000u);
  EXPECT_EQ(f->rules[0].condition_text, "days lt 7");
  EXPECT_TRUE(f->rules[0].value.bool_value);
  EXPECT_EQ(f->rules[1].salt, "custom");
  EXPECT_EQ(f->rules[1].unit_id_type, "device_id");
  EXPECT_EQ(f->rules[1].condition, nullptr);

  const Experiment* e = config->FindExperiment("exp");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->salt, "exp");
  EXPECT_EQ(e->unit_id_type, "user_id");
  EXPECT_EQ(e->phase, 1);
  EXPECT_EQ(e->traffic_bp, 10000u);
  EXPECT_EQ(e->targeting, nullptr);
  EXPECT_TRUE(e->layer.empty());
  EXPECT_EQ(e->layer_range, (BucketRange{0, 10000}));
  EXPECT_FALSE(e->start_time.has_value());
  EXPECT_EQ(e->variants[0].full_range, (BucketRange{0, 10000}));
  EXPECT_EQ(e->variants[0].active_range, (BucketRange{0, 10000}));
  EXPECT_TRUE(e->metrics.empty());
  EXPECT_TRUE(e->primary_metric.empty());
  EXPECT_FALSE(e->sticky);
  EXPECT_TRUE(config->metrics.empty());
  EXPECT_EQ(config->source_path, "test.yaml");
}

TEST(ConfigParser, ExplicitFieldsOverrideDefaults) {
  auto config = ParseOk(R"(layers:
  l: {unit: device_id, salt: l-salt}
experiments:
  - key: exp
    description: d
    owner: o@example.com
    status: stopped
    rollout_variant: v
    unit: device_id
    salt: s
    phase: 3
    layer: l
    layer_range: [0, 1]
    variants: [{key: v, weight: 1}]
    metrics: [order_conversion, arpu]
    primary_metric: arpu
    sticky: true
metrics:
  - {key: order_conversion, type: binomial, event: order_completed}
  - {key: arpu, type: sum, event: order_completed}
)");
  ASSERT_NE(config, nullptr);
  EXPECT_EQ(config->FindLayer("l")->salt, "l-salt");
  const Experiment* e = config->FindExperiment("exp");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->status, ExperimentStatus::kStopped);
  EXPECT_EQ(e->rollout_variant, "v");
  EXPECT_EQ(e->unit_id_type, "device_id");
  EXPECT_EQ(e->salt, "s");
  EXPECT_EQ(e->phase, 3);
  EXPECT_EQ(e->owner, "o@example.com");
  EXPECT_EQ(e->metrics, (std::vector<std::string>{"order_conversion", "arpu"}));
  EXPECT_EQ(e->primary_metric, "arpu");
  EXPECT_TRUE(e->sticky);
  EXPECT_EQ(e->location.line, 4);
}

// ---- Files and versions.

TEST(ConfigParser, ExampleFileLoadsWithoutErrorsOrWarnings) {
  ParseResult r = ParseConfigFile(RepoPath("examples/experiments.yaml"));
  ASSERT_TRUE(r.ok()) << r.FormatDiagnostics();
  EXPECT_TRUE(r.diagnostics.empty()) << r.FormatDiagnostics();
  const Config& c = *r.config;
  EXPECT_GE(c.experiments.size(), 5u);
  EXPECT_NE(c.FindLayer("checkout"), nullptr);
  ASSERT_TRUE(c.holdout.has_value());
  EXPECT_EQ(c.attributes.at("app_version"), AttributeType::kSemver);

  // Every experiment names its metrics and a primary metric that is defined
  // and not a guardrail, and the example shows every kind of metric.
  for (const Experiment& e : c.experiments) {
    EXPECT_FALSE(e.metrics.empty()) << e.key;
    for (const std::string& m : e.metrics)
      EXPECT_NE(c.FindMetric(m), nullptr) << m;
    const Metric* primary = c.FindMetric(e.primary_metric);
    ASSERT_NE(primary, nullptr) << e.key;
    EXPECT_FALSE(primary->guardrail) << e.key;
  }
  std::set<MetricType> types;
  bool has_guardrail = false, has_lower_is_better = false;
  for (const Metric& m : c.metrics) {
    types.insert(m.type);
    has_guardrail |= m.guardrail;
    has_lower_is_better |= !m.higher_is_better;
  }
  EXPECT_EQ(types.size(), 5u);  // binomial, sum, ratio, retention, funnel
  EXPECT_TRUE(has_guardrail);
  EXPECT_TRUE(has_lower_is_better);
}

TEST(ConfigParser, DocsExampleIsValid) {
  std::ifstream in(RepoPath("docs/config.md"));
  ASSERT_TRUE(in.good());
  std::stringstream all;
  all << in.rdbuf();
  const std::string md = all.str();
  const size_t start = md.find("```yaml\n");
  ASSERT_NE(start, std::string::npos);
  const size_t end = md.find("```", start + 8);
  ASSERT_NE(end, std::string::npos);
  auto config = ParseOk(md.substr(start + 8, end - start - 8));
  ASSERT_NE(config, nullptr);
  const Experiment* e = config->FindExperiment("one_page_checkout");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->targeting_text, "all(segment modern_app, not(segment churned))");
  EXPECT_EQ(e->qa_overrides.at("qa-user-2"), "one_page");
  EXPECT_EQ(e->primary_metric, "order_conversion");
  EXPECT_EQ(config->metrics.size(), 6u);
}

TEST(ConfigParser, ExperimentWithoutKeyIsStillValidated) {
  ParseResult r = Parse(WithPrefix(R"(  - status: sometimes
    variants: [{key: a, weight: 0}]
)"));
  ASSERT_FALSE(r.ok());
  std::vector<Diagnostic> errors = Errors(r);
  ASSERT_EQ(errors.size(), 3u) << r.FormatDiagnostics();
  EXPECT_THAT(errors[0].message,
              HasSubstr("experiment #1: missing required field 'key'"));
  EXPECT_THAT(errors[1].message, HasSubstr("status 'sometimes' is not valid"));
  EXPECT_THAT(errors[2].message, HasSubstr("variant weights sum to 0"));
}

TEST(ConfigParser, InvalidFixtureReportsEveryMarkedError) {
  const std::string path = RepoPath("tests/testdata/invalid_experiments.yaml");
  std::ifstream in(path);
  ASSERT_TRUE(in.good()) << path;
  // Lines ending in "# error: TEXT" (outside the header comment) each expect
  // one error containing TEXT.
  std::vector<std::pair<int, std::string>> expected;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    const size_t pos = line.find("# error: ");
    if (pos == std::string::npos || line[0] == '#') continue;
    expected.emplace_back(n, line.substr(pos + 9));
  }
  ASSERT_GE(expected.size(), 40u);

  ParseResult r = ParseConfigFile(path);
  ASSERT_FALSE(r.ok());
  std::vector<Diagnostic> errors = Errors(r);
  EXPECT_EQ(errors.size(), expected.size()) << r.FormatDiagnostics();
  EXPECT_EQ(errors.size(), r.diagnostics.size()) << "expected no warnings";
  for (const auto& [n, fragment] : expected) {
    bool found = false;
    for (const Diagnostic& d : errors) {
      if (d.line == n && d.message.find(fragment) != std::string::npos)
        found = true;
    }
    EXPECT_TRUE(found) << "line " << n << ": no error containing \"" << fragment
                       << "\"\n"
                       << r.FormatDiagnostics();
  }
  for (const Diagnostic& d : errors) EXPECT_EQ(d.file, path);
}

// ---- Hostile and careless input (issue 12): refused with a position, never a
// crash.

// The 1-based column of `needle` in the 1-based line `line` of `text`.
int ColumnOf(const std::string& text, int line, const std::string& needle) {
  size_t start = 0;
  for (int i = 1; i < line; ++i) start = text.find('\n', start) + 1;
  return static_cast<int>(text.find(needle, start) - start) + 1;
}

TEST(ConfigParser, AnAliasInsideItsOwnAnchorIsRefusedNotFollowedForever) {
  // Reported at the anchor.
  ExpectOnlyError("zzz: &x [*x]\n", 1, 6, "contains itself through an alias");
  // The same inside a segment and a condition, where the parser recurses too.
  ExpectOnlyError("attributes: {c: string}\nsegments:\n  s: &x {all: [*x]}\n",
                  3, 6, "contains itself through an alias");
  ExpectOnlyError("segments:\n  s: &x {not: *x}\n", 2, 6,
                  "contains itself through an alias");
  ExpectOnlyError(
      WithPrefix("  - &x {key: a, status: draft, targeting: {any: [*x]},\n"
                 "         variants: [{key: v, weight: 1}]}\n"),
      13, 5, "contains itself through an alias");
}

TEST(ConfigParser, AliasesThatDoNotContainThemselvesStillWork) {
  auto config = ParseOk(R"(attributes: {country: string}
segments:
  asia: &asia {attribute: country, in: [CN, SG]}
  also_asia: {all: [*asia, *asia]}
)");
  ASSERT_NE(config, nullptr);
  EXPECT_TRUE(Evaluate(*config->segments.at("also_asia"),
                       Attributes{{"country", std::string("SG")}}));
}

TEST(ConfigParser, YamlNestedTooDeeplyIsRefusedWithItsPosition) {
  // 200 nested lists in a JSON feature value: within what yaml-cpp reads,
  // beyond what the validator walks.
  const std::string deep =
      "features:\n  - {key: f, type: json, default: " + std::string(200, '[') +
      std::string(200, ']') + "}\n";
  ParseResult r = Parse(deep);
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(Errors(r).size(), 1u) << r.FormatDiagnostics();
  EXPECT_EQ(Errors(r)[0].line, 2);
  EXPECT_THAT(Errors(r)[0].message, HasSubstr("nests more than 128 levels"));

  // Deeper than yaml-cpp itself reads. (Its position is where yaml-cpp
  // stopped, which for flow lists is past them.)
  const std::string deeper =
      "features:\n  - {key: f, type: json, default: " + std::string(5000, '[') +
      std::string(5000, ']') + "}\n";
  r = Parse(deeper);
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(Errors(r).size(), 1u) << r.FormatDiagnostics();
  EXPECT_GT(Errors(r)[0].line, 0);
  EXPECT_THAT(Errors(r)[0].message, HasSubstr("nests too deeply"));
}

// segments s0000 -> s0001 -> ... -> s<links>, the last a comparison.
std::string SegmentChain(int links) {
  std::string yaml = "attributes: {c: string}\nsegments:\n";
  for (int i = 0; i < links; ++i) {
    absl::StrAppendFormat(&yaml, "  s%04d: {segment: s%04d}\n", i, i + 1);
  }
  absl::StrAppendFormat(&yaml, "  s%04d: {attribute: c, eq: x}\n", links);
  return yaml;
}

TEST(ConfigParser, SegmentChainsAreBoundedSoParsingAndEvaluationAre) {
  auto config = ParseOk(SegmentChain(16));
  ASSERT_NE(config, nullptr);
  EXPECT_TRUE(Evaluate(*config->segments.at("s0000"),
                       Attributes{{"c", std::string("x")}}));

  // The 17th reference in a chain (s0016's, on line 19) is one too many.
  const std::string chain = SegmentChain(17);
  ExpectOnlyError(chain, 19, ColumnOf(chain, 19, "s0017}"),
                  "segments refer to segments more than 16 levels deep");

  // Long chains are refused rather than overflowing the stack.
  ParseResult r = Parse(SegmentChain(5000));
  ASSERT_FALSE(r.ok());
  ASSERT_FALSE(Errors(r).empty());
  EXPECT_THAT(Errors(r)[0].message, HasSubstr("more than 16 levels deep"));
}

// s0 a comparison; each next segment all: of ten uses of the one before.
std::string SegmentFanOut(int levels) {
  std::string yaml =
      "attributes: {c: string}\nsegments:\n  s0: {attribute: c, eq: x}\n";
  for (int i = 1; i <= levels; ++i) {
    absl::StrAppendFormat(&yaml, "  s%d: {all: [", i);
    for (int k = 0; k < 10; ++k) {
      absl::StrAppendFormat(&yaml, "%s{segment: s%d}", k ? ", " : "", i - 1);
    }
    yaml += "]}\n";
  }
  return yaml;
}

TEST(ConfigParser, ConditionsThatExpandTooFarThroughSegmentsAreRefused) {
  // s3 evaluates 2,221 nodes; s4 would evaluate 22,221 on every request.
  ParseOk(SegmentFanOut(3));
  ExpectOnlyError(SegmentFanOut(4), 7, 7,
                  "segment 's4': the condition has more than 10000 parts once "
                  "the segments it "
                  "uses are written out");
}

TEST(ConfigParser, InvalidUtf8IsRefusedWithItsPosition) {
  const std::string bad =
      "features:\n  - {key: f, type: string, default: \"a\xff\"}\n";
  ExpectOnlyError(bad, 2, 39, "is not valid UTF-8");
  // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not
  // UTF-8 either.
  ExpectOnlyError("# \xc0\xaf\n", 1, 3, "is not valid UTF-8");
  ExpectOnlyError("# ok\n# \xed\xa0\x80\n", 2, 3, "is not valid UTF-8");
  ExpectOnlyError("# \xf4\x90\x80\x80\n", 1, 3, "is not valid UTF-8");
  ExpectOnlyError("# \xe4\xb8\n", 1, 3, "is not valid UTF-8");  // cut short
  auto config =
      ParseOk("features:\n  - {key: f, type: string, default: \"é中😀\"}\n");
  ASSERT_NE(config, nullptr);
  EXPECT_EQ(config->features[0].default_value.text, "é中😀");
}

TEST(ConfigParser, ConfigsLargerThan16MiBAreRefusedBeforeParsing) {
  EXPECT_EQ(kMaxConfigBytes, 16u << 20);
  ParseResult r = Parse(std::string(kMaxConfigBytes + 1, '#'));
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.diagnostics.size(), 1u) << r.FormatDiagnostics();
  EXPECT_EQ(r.diagnostics[0].line, 0);
  EXPECT_THAT(r.diagnostics[0].message, HasSubstr("16777217 bytes"));
  EXPECT_THAT(r.diagnostics[0].message, HasSubstr("limit of 16 MiB"));

  // A file is refused from its size, whatever it holds.
  const std::string path =
      ::testing::TempDir() + "/config_parser_test_big.yaml";
  { std::ofstream(path, std::ios::binary | std::ios::trunc) << "# big\n"; }
  std::filesystem::resize_file(path, 50u << 20);
  r = ParseConfigFile(path);
  std::filesystem::remove(path);
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.diagnostics.size(), 1u) << r.FormatDiagnostics();
  EXPECT_THAT(r.diagnostics[0].ToString(),
              HasSubstr(path + ": the config is 52428800 bytes"));
}

TEST(ConfigParser, TimesOutsideTheYears2000To9999AreRefused) {
  const auto with_start = [](const std::string& start) {
    return WithPrefix("  - key: a\n    status: draft\n    start: " + start +
                      "\n    variants: [{key: v, weight: 1}]\n");
  };
  ExpectOnlyError(with_start("99999-01-01T00:00:00Z"), 15, 12,
                  "start 99999-01-01T00:00:00Z is in the year 99999; use a "
                  "time in the years "
                  "2000 to 9999");
  ExpectOnlyError(with_start("1999-12-31T23:59:59Z"), 15, 12,
                  "is in the year 1999");
  ParseOk(with_start("2000-01-01T00:00:00Z"));
  ParseOk(with_start("9999-12-31T23:59:59Z"));
}

TEST(ConfigParser, MetricWindowsFollowTheDocumentedGrammar) {
  const std::pair<std::string, std::string> kRefused[] = {
      {"1d1d", "window '1d1d' gives the unit d twice"},
      {"1h1d", "window '1h1d' is not a duration; write"},
      {"0.0000001s", "window 0.0000001s is not a whole number of seconds"},
      {"1.5s", "is not a whole number of seconds"},
  };
  for (const auto& [window, fragment] : kRefused) {
    SCOPED_TRACE(window);
    ExpectOnlyError(Metrics(kWindowHead + window + "}\n"), 2,
                    sizeof(kWindowHead), fragment);
  }
  EXPECT_EQ(WindowOf("0.5m"), absl::Seconds(30));
  EXPECT_EQ(WindowOf("1d2h3m4s"), absl::Seconds(86400 + 7200 + 180 + 4));
}

TEST(ConfigParser, QuotedNumbersAreRefusedWhereANumberIsExpected) {
  const std::string weight = WithPrefix(
      "  - {key: x, status: draft, variants: [{key: a, weight: \"50\"}]}\n");
  ExpectOnlyError(
      weight, 13, ColumnOf(weight, 13, "\"50\""),
      "experiment 'x' variant 'a' weight \"50\" is quoted; write the number "
      "without quotes");
  const std::string traffic = WithPrefix(
      "  - {key: x, status: draft, traffic: '0.5', variants: [{key: a, weight: "
      "1}]}\n");
  ExpectOnlyError(traffic, 13, ColumnOf(traffic, 13, "'0.5'"),
                  "traffic \"0.5\" is quoted; write the number without quotes");
  // Percent strings stay strings.
  ParseOk(
      WithPrefix("  - {key: x, status: draft, traffic: \"50%\", variants: "
                 "[{key: a, weight: 1}]}\n"));
}

TEST(ConfigParser, TagsOutsideTheYamlCoreSchemaAreRefused) {
  const std::string python =
      "features:\n  - {key: f, type: string, default: "
      "!!python/object:os.system x}\n";
  ExpectOnlyError(
      python, 2, ColumnOf(python, 2, "!!python"),
      "tag !!python/object:os.system is not a YAML core schema tag");
  ExpectOnlyError("!local features: []\n", 1, 1,
                  "tag !local is not a YAML core schema tag");
  const std::string wrong_kind =
      "features: !!map [{key: f, type: bool, default: false}]\n";
  ExpectOnlyError(wrong_kind, 1, 11, "tag !!map is on a list");
  // Core schema tags keep their meaning.
  auto config = ParseOk(
      "features:\n  - {key: f, type: string, default: !!str 5}\n"
      "experiments:\n  - {key: x, status: draft, variants: [{key: a, weight: "
      "!!int 50}]}\n");
  ASSERT_NE(config, nullptr);
  EXPECT_EQ(config->features[0].default_value.text, "5");
  EXPECT_EQ(config->experiments[0].variants[0].weight, 50u * 10000);
}

TEST(ConfigParser, UnreadableFileIsADiagnostic) {
  ParseResult r = ParseConfigFile("/nonexistent/abexp.yaml");
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.diagnostics.size(), 1u);
  EXPECT_EQ(r.diagnostics[0].ToString(),
            "/nonexistent/abexp.yaml: cannot read file: No such file or "
            "directory; check the "
            "path");
}

TEST(ConfigParser, VersionIsXxh3OfTheBytesAndChangesWithAnyByte) {
  // XXH3-64 of no bytes, from the xxHash test vectors.
  EXPECT_EQ(ConfigVersionOf(""), "2d06800538d394c2");
  const std::string a = WithPrefix(
      "  - {key: x, status: draft, variants: [{key: v, weight: 1}]}\n");
  std::string b = a;
  b.back() = ' ';  // trailing whitespace: same config, different bytes
  auto ca = ParseOk(a);
  auto cb = ParseOk(b);
  ASSERT_NE(ca, nullptr);
  ASSERT_NE(cb, nullptr);
  EXPECT_EQ(ca->version, ConfigVersionOf(a));
  EXPECT_EQ(ca->version.size(), 16u);
  EXPECT_EQ(ca->version.find_first_not_of("0123456789abcdef"),
            std::string::npos);
  EXPECT_NE(ca->version, cb->version);
  EXPECT_EQ(ParseOk(a)->version, ca->version);
}

TEST(ConfigParser, DiagnosticFormatting) {
  Diagnostic d{"f.yaml", 3, 7, "bad thing; fix it", false};
  EXPECT_EQ(d.ToString(), "f.yaml:3:7: bad thing; fix it");
  d.warning = true;
  EXPECT_EQ(d.ToString(), "f.yaml:3:7: warning: bad thing; fix it");
  Diagnostic nopos{"f.yaml", 0, 0, "cannot read", false};
  EXPECT_EQ(nopos.ToString(), "f.yaml: cannot read");
  ParseResult r;
  r.diagnostics = {d, nopos};
  EXPECT_EQ(r.FormatDiagnostics(),
            "f.yaml:3:7: warning: bad thing; fix it\nf.yaml: cannot read\n");
}

}  // namespace
}  // namespace abexp
