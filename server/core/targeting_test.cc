#include "server/core/targeting.h"

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "re2/re2.h"
#include "server/core/config.h"
#include "server/core/config_parser.h"

namespace abexp {
namespace {

std::shared_ptr<Condition> Compare(std::string attribute, AttributeType type,
                                   CompareOp op,
                                   std::vector<Operand> operands) {
  auto c = std::make_shared<Condition>();
  c->kind = ConditionKind::kCompare;
  c->attribute = std::move(attribute);
  c->attribute_type = type;
  c->op = op;
  c->operands = std::move(operands);
  c->text = c->attribute + " " + CompareOpName(op);
  return c;
}

std::shared_ptr<Condition> Combine(
    ConditionKind kind,
    std::vector<std::shared_ptr<const Condition>> children) {
  auto c = std::make_shared<Condition>();
  c->kind = kind;
  c->children = std::move(children);
  c->text = kind == ConditionKind::kAll
                ? "all"
                : (kind == ConditionKind::kAny ? "any" : "not");
  return c;
}

SemVer V(const char* text) {
  std::optional<SemVer> v = SemVer::Parse(text);
  EXPECT_TRUE(v.has_value()) << text;
  return v.value_or(SemVer{});
}

TEST(SemVer, ParsesShortFormsAndPrefix) {
  EXPECT_EQ(V("5.2").Compare(V("5.2.0")), 0);
  EXPECT_EQ(V("v5.2.1").Compare(V("5.2.1")), 0);
  EXPECT_EQ(V("7").Compare(V("7.0.0")), 0);
  EXPECT_EQ(V("1.2.3+build.5").Compare(V("1.2.3")), 0);
}

TEST(SemVer, RejectsWhatIsNotAVersion) {
  for (const char* bad :
       {"", "abc", "1.2.3.4", "1..2", "1.2.x", "-1.0.0", "1.0.0-", "1.0 .0"}) {
    EXPECT_FALSE(SemVer::Parse(bad).has_value()) << bad;
  }
}

// SemVer::Parse scans by hand; its contract is the regular expression in
// its comment. Check the two agree on edge cases and on random strings
// over the characters that matter.
TEST(SemVer, ParseAcceptsExactlyTheDocumentedGrammar) {
  const RE2 grammar(R"(v?(\d+)(?:\.(\d+))?(?:\.(\d+))?)"
                    R"((?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?)"
                    R"((?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)");
  ASSERT_TRUE(grammar.ok());
  auto check = [&](const std::string& text) {
    std::string major, minor, patch, prerelease;
    const bool matches =
        RE2::FullMatch(text, grammar, &major, &minor, &patch, &prerelease);
    const std::optional<SemVer> parsed = SemVer::Parse(text);
    SemVer want;
    // Numbers beyond 64 bits are not versions either.
    const bool fits = matches && absl::SimpleAtoi(major, &want.major) &&
                      (minor.empty() || absl::SimpleAtoi(minor, &want.minor)) &&
                      (patch.empty() || absl::SimpleAtoi(patch, &want.patch));
    ASSERT_EQ(parsed.has_value(), fits) << "\"" << text << "\"";
    if (!fits) return;
    EXPECT_EQ(parsed->major, want.major) << text;
    EXPECT_EQ(parsed->minor, want.minor) << text;
    EXPECT_EQ(parsed->patch, want.patch) << text;
    EXPECT_EQ(absl::StrJoin(parsed->prerelease, "."), prerelease) << text;
  };
  for (const char* text : {"",
                           "v",
                           "vv1",
                           "V1",
                           "1",
                           "01.002.0003",
                           "1.",
                           "1..2",
                           ".1",
                           "1.2.3.4",
                           "1.2.3-",
                           "1.2.3-.",
                           "1.2.3-a.",
                           "1.2.3-a..b",
                           "1.2.3+",
                           "1.2.3+b.",
                           "1-2",
                           "1-2.3",
                           "1+2-3",
                           "1.2.3-x-y.-.z+b-c.d",
                           "1.2.3+b-1+c",
                           "18446744073709551615",
                           "18446744073709551616",
                           "1.99999999999999999999",
                           " 1.2.3",
                           "1.2.3 ",
                           "1.2.3-\xc3\xa9",
                           "5.2.0-beta.2",
                           "v6"}) {
    check(text);
  }
  std::mt19937_64 rng(5);
  const std::string alphabet = "v0123456789.-+aZ_ ";
  for (int i = 0; i < 20000; ++i) {
    std::string text(rng() % 12, ' ');
    for (char& c : text) c = alphabet[rng() % alphabet.size()];
    check(text);
  }
}

TEST(SemVer, OrdersByTheSemverPrecedenceRules) {
  // The precedence chain from semver.org, section 11.
  const char* chain[] = {"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta",
                         "1.0.0-beta",  "1.0.0-beta.2",  "1.0.0-beta.11",
                         "1.0.0-rc.1",  "1.0.0",         "1.0.1",
                         "1.2.0",       "1.10.0",        "2.0.0"};
  for (size_t i = 0; i + 1 < std::size(chain); ++i) {
    EXPECT_LT(V(chain[i]).Compare(V(chain[i + 1])), 0)
        << chain[i] << " < " << chain[i + 1];
    EXPECT_GT(V(chain[i + 1]).Compare(V(chain[i])), 0);
  }
}

TEST(Targeting, NumberComparisons) {
  const Attributes a = {{"days_since_signup", 3.0}};
  auto lt7 = Compare("days_since_signup", AttributeType::kNumber,
                     CompareOp::kLt, {7.0});
  auto gte3 = Compare("days_since_signup", AttributeType::kNumber,
                      CompareOp::kGte, {3.0});
  auto gt3 = Compare("days_since_signup", AttributeType::kNumber,
                     CompareOp::kGt, {3.0});
  auto lte2 = Compare("days_since_signup", AttributeType::kNumber,
                      CompareOp::kLte, {2.0});
  auto in = Compare("days_since_signup", AttributeType::kNumber, CompareOp::kIn,
                    {1.0, 3.0});
  EXPECT_TRUE(Evaluate(*lt7, a));
  EXPECT_TRUE(Evaluate(*gte3, a));
  EXPECT_FALSE(Evaluate(*gt3, a));
  EXPECT_FALSE(Evaluate(*lte2, a));
  EXPECT_TRUE(Evaluate(*in, a));
}

TEST(Targeting, StringMembershipAndEquality) {
  const Attributes cn = {{"country", std::string("CN")}};
  const Attributes us = {{"country", std::string("US")}};
  auto in = Compare("country", AttributeType::kString, CompareOp::kIn,
                    {std::string("CN"), std::string("SG")});
  auto not_in = Compare("country", AttributeType::kString, CompareOp::kNotIn,
                        {std::string("CN"), std::string("SG")});
  auto ne = Compare("country", AttributeType::kString, CompareOp::kNe,
                    {std::string("CN")});
  EXPECT_TRUE(Evaluate(*in, cn));
  EXPECT_FALSE(Evaluate(*in, us));
  EXPECT_FALSE(Evaluate(*not_in, cn));
  EXPECT_TRUE(Evaluate(*not_in, us));
  EXPECT_FALSE(Evaluate(*ne, cn));
  EXPECT_TRUE(Evaluate(*ne, us));
}

TEST(Targeting, SemverAttributesCompareAsVersionsNotStrings) {
  auto gte = Compare("app_version", AttributeType::kSemver, CompareOp::kGte,
                     {V("5.2.0")});
  // As strings "5.10.0" < "5.2.0"; as versions it is higher.
  EXPECT_TRUE(Evaluate(*gte, {{"app_version", std::string("5.10.0")}}));
  EXPECT_TRUE(Evaluate(*gte, {{"app_version", std::string("5.2")}}));
  EXPECT_FALSE(Evaluate(*gte, {{"app_version", std::string("5.2.0-beta.1")}}));
  EXPECT_FALSE(Evaluate(*gte, {{"app_version", std::string("4.99.99")}}));
}

TEST(Targeting, RegexMatchesAnywhereUnlessAnchored) {
  auto c = Compare("acquisition_channel", AttributeType::kString,
                   CompareOp::kRegex, {});
  c->regex = std::make_shared<RE2>("^paid_");
  EXPECT_TRUE(
      Evaluate(*c, {{"acquisition_channel", std::string("paid_search")}}));
  EXPECT_FALSE(
      Evaluate(*c, {{"acquisition_channel", std::string("organic_paid_")}}));
  c->regex = std::make_shared<RE2>("social");
  EXPECT_TRUE(Evaluate(
      *c, {{"acquisition_channel", std::string("paid_social_tiktok")}}));
}

TEST(Targeting, MissingAttributeFailsEveryComparisonButNotExists) {
  const Attributes none;
  for (CompareOp op :
       {CompareOp::kEq, CompareOp::kNe, CompareOp::kLt, CompareOp::kGte}) {
    EXPECT_FALSE(
        Evaluate(*Compare("days", AttributeType::kNumber, op, {1.0}), none));
  }
  EXPECT_FALSE(Evaluate(
      *Compare("days", AttributeType::kNumber, CompareOp::kNotIn, {1.0}),
      none));
  EXPECT_FALSE(Evaluate(
      *Compare("days", AttributeType::kNumber, CompareOp::kExists, {true}),
      none));
  EXPECT_TRUE(Evaluate(
      *Compare("days", AttributeType::kNumber, CompareOp::kExists, {false}),
      none));
  EXPECT_TRUE(Evaluate(
      *Compare("days", AttributeType::kNumber, CompareOp::kExists, {true}),
      {{"days", 0.0}}));
}

TEST(Targeting, BoolEquality) {
  auto vip = Compare("is_vip", AttributeType::kBool, CompareOp::kEq, {true});
  EXPECT_TRUE(Evaluate(*vip, {{"is_vip", true}}));
  EXPECT_FALSE(Evaluate(*vip, {{"is_vip", false}}));
}

TEST(Targeting, CombinatorsAndSegments) {
  auto new_user = Compare("days_since_signup", AttributeType::kNumber,
                          CompareOp::kLt, {7.0});
  auto segment = std::make_shared<Condition>();
  segment->kind = ConditionKind::kSegment;
  segment->segment_name = "new_users";
  segment->segment = new_user;
  segment->text = "segment new_users";
  auto cn = Compare("country", AttributeType::kString, CompareOp::kEq,
                    {std::string("CN")});
  auto all = Combine(ConditionKind::kAll,
                     {segment, Combine(ConditionKind::kNot, {cn})});
  auto any = Combine(ConditionKind::kAny, {segment, cn});

  const Attributes new_us = {{"days_since_signup", 2.0},
                             {"country", std::string("US")}};
  const Attributes new_cn = {{"days_since_signup", 2.0},
                             {"country", std::string("CN")}};
  const Attributes old_cn = {{"days_since_signup", 90.0},
                             {"country", std::string("CN")}};
  const Attributes old_us = {{"days_since_signup", 90.0},
                             {"country", std::string("US")}};
  EXPECT_TRUE(Evaluate(*all, new_us));
  EXPECT_FALSE(Evaluate(*all, new_cn));
  EXPECT_TRUE(Evaluate(*any, old_cn));
  EXPECT_FALSE(Evaluate(*any, old_us));
  EXPECT_TRUE(Evaluate(*Combine(ConditionKind::kAll, {}), old_us));
  EXPECT_FALSE(Evaluate(*Combine(ConditionKind::kAny, {}), old_us));
}

TEST(Targeting, TraceRecordsEveryRuleWithoutShortCircuit) {
  auto new_user = Compare("days_since_signup", AttributeType::kNumber,
                          CompareOp::kLt, {7.0});
  auto cn = Compare("country", AttributeType::kString, CompareOp::kEq,
                    {std::string("CN")});
  auto all = Combine(ConditionKind::kAll, {new_user, cn});
  std::vector<RuleTraceEntry> trace;
  const Attributes a = {{"days_since_signup", 30.0}};
  EXPECT_FALSE(EvaluateWithTrace(*all, a, &trace));
  ASSERT_EQ(trace.size(), 3u);
  EXPECT_EQ(trace[0].depth, 0);
  EXPECT_FALSE(trace[0].matched);
  EXPECT_EQ(trace[1].depth, 1);
  EXPECT_EQ(trace[1].rule, "days_since_signup lt");
  EXPECT_EQ(trace[1].actual, "30");
  EXPECT_FALSE(trace[1].matched);
  EXPECT_EQ(trace[2].actual, "<missing>");
  EXPECT_FALSE(trace[2].matched);
  EXPECT_EQ(Evaluate(*all, a), false);
}

// The assigner evaluates conditions compiled to attribute slots; they must
// answer as the conditions themselves do for any attributes a unit sends.
TEST(Targeting, CompiledConditionsAgreeWithEvaluationByName) {
  ParseResult r = ParseConfig(R"yaml(
attributes:
  country: string
  app_version: semver
  score: number
  vip: bool
segments:
  asia: {attribute: country, in: [CN, SG, JP]}
  modern: {attribute: app_version, gte: "5.2.0-beta.2"}
  either:
    any:
      - {segment: asia}
      - all: [{segment: modern}, {not: {attribute: score, lt: 10}}]
experiments:
  - key: e
    status: running
    targeting:
      all:
        - {segment: either}
        - {attribute: country, not_in: [US, ""]}
        - {attribute: app_version, in: ["5.2", "6.0.0-rc.1"]}
        - {attribute: country, regex: "^[A-Z]{2}$"}
        - {attribute: vip, exists: false}
        - {attribute: vip, ne: true}
        - {attribute: score, gte: 1.5}
        - {attribute: app_version, lt: "7"}
    variants: [{key: a, weight: 1}]
)yaml",
                              "compiled.yaml");
  ASSERT_TRUE(r.ok()) << r.FormatDiagnostics();
  const Config& config = *r.config;
  // Every node of the experiment's condition, so each answer is compared.
  std::vector<std::shared_ptr<const Condition>> conditions;
  std::vector<std::shared_ptr<const Condition>> pending = {
      config.experiments[0].targeting};
  while (!pending.empty()) {
    std::shared_ptr<const Condition> c = pending.back();
    pending.pop_back();
    conditions.push_back(c);
    for (const auto& child : c->children) pending.push_back(child);
    if (c->segment) pending.push_back(c->segment);
  }
  ConditionCompiler compiler;
  std::vector<std::shared_ptr<const CompiledCondition>> compiled;
  for (const auto& c : conditions) compiled.push_back(compiler.Compile(c));

  std::mt19937_64 rng(11);
  auto pick = [&rng](const std::vector<std::string>& v) {
    return v[rng() % v.size()];
  };
  int matched = 0;
  for (int i = 0; i < 5000; ++i) {
    Attributes attributes;
    if (rng() % 4)
      attributes["country"] = pick({"CN", "US", "DE", "", "JPN", "sg"});
    if (rng() % 4) {
      attributes["app_version"] =
          pick({"5.2.0", "5.2", "5.2.0-beta.1", "5.2.0-beta.10", "6.0.0-rc.1",
                "7", "4.9.9", "not a version"});
    }
    if (rng() % 4) attributes["score"] = static_cast<double>(rng() % 30) / 2;
    if (rng() % 4) attributes["vip"] = rng() % 2 == 0;
    // Slots as the assigner fills them, with versions parsed once.
    std::vector<SlotValue> slots(compiler.slot_names().size());
    for (size_t s = 0; s < slots.size(); ++s) {
      auto it = attributes.find(compiler.slot_names()[s]);
      if (it == attributes.end()) continue;
      slots[s].value = &it->second;
      if (const auto* text = std::get_if<std::string>(&it->second);
          text != nullptr && it->first == "app_version") {
        slots[s].version = SemVer::Parse(*text);
      }
    }
    for (size_t c = 0; c < conditions.size(); ++c) {
      const bool by_name = Evaluate(*conditions[c], attributes);
      ASSERT_EQ(Evaluate(*compiled[c], slots), by_name) << conditions[c]->text;
      matched += by_name;
    }
  }
  // Both answers occur, or the comparison would prove little.
  EXPECT_GT(matched, 0);
  EXPECT_LT(matched, 5000 * static_cast<int>(conditions.size()));
}

}  // namespace
}  // namespace abexp
