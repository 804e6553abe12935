// Reading the features: section and its rules (docs/config.md, "Features").
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/core/config_parser_internal.h"

namespace abexp {
namespace config_parser_internal {
namespace {

const std::pair<const char*, ValueType> kValueTypes[] = {
    {"bool", ValueType::kBool},
    {"number", ValueType::kNumber},
    {"string", ValueType::kString},
    {"json", ValueType::kJson}};

// One feature while it is read.
struct FeatureDraft {
  std::string what;
  YAML::Node node;  // the feature's map
  Feature* feature;
  std::map<std::string, int>* first_line;  // of each feature key so far
  bool ok = false;                         // it has a usable, unique key
  std::optional<ValueType> type{};
};

// One rule of a feature while it is read.
struct RuleDraft {
  std::string what;
  FeatureRule* rule;
  std::optional<ValueType> type;  // the feature's, when valid
};

// The fields of a feature.
// default and rules need the type, and are read after description.
const FieldRule<FeatureDraft> kFeatureRules[] = {
    {"key",
     [](Parser& p, const Entry& e, FeatureDraft& d) {
       d.ok = p.GetItemKey(e, "feature", d.feature->location.line, d.first_line,
                           &d.what, &d.feature->key);
     },
     "add key: <name>"},
    {"type",
     [](Parser& p, const Entry& e, FeatureDraft& d) {
       d.type = p.GetNamed(e, kValueTypes, d.what + ": type",
                           "use one of bool, number, string, json");
       if (d.type) d.feature->type = *d.type;
     },
     "add type: with one of bool, number, string, json"},
    {"default",
     [](Parser& p, const Entry& e, FeatureDraft& d) {
       if (!d.type) return;
       if (auto v = p.GetValue(e, *d.type, d.what + " default"))
         d.feature->default_value = *v;
     },
     nullptr,
     [](Parser& p, FeatureDraft& d) {
       if (!d.type) return;
       const ValueType t = *d.type;
       p.Error(d.node,
               absl::StrCat(
                   d.what,
                   ": missing required field 'default'; add the value units "
                   "get when nothing else applies, e.g. default: ",
                   t == ValueType::kBool     ? "false"
                   : t == ValueType::kNumber ? "0"
                   : t == ValueType::kString ? "off"
                                             : "{}"));
     },
     /*late=*/true},
    {"description",
     [](Parser& p, const Entry& e, FeatureDraft& d) {
       if (auto s = p.GetString(e, d.what + " description"))
         d.feature->description = *s;
     }},
    {"rules",
     [](Parser& p, const Entry& e, FeatureDraft& d) {
       if (!e.value.IsNull()) p.ParseRules(e, d.type, d.what, d.feature);
     },
     nullptr, nullptr, /*late=*/true},
};

// The fields of a feature's rule.
// value is read before the others.
const FieldRule<RuleDraft> kRuleRules[] = {
    {"when",
     [](Parser& p, const Entry& e, RuleDraft& d) {
       if (e.value.IsNull()) return;
       d.rule->condition =
           p.ParseRootCondition(e.value, Parser::Pos(e), d.what + " when");
       if (d.rule->condition) d.rule->condition_text = d.rule->condition->text;
     },
     nullptr, nullptr, /*late=*/true},
    {"value",
     [](Parser& p, const Entry& e, RuleDraft& d) {
       if (!d.type) return;
       if (auto v = p.GetValue(e, *d.type, d.what + " value"))
         d.rule->value = *v;
     },
     "add the value this rule sets"},
    {"rollout",
     [](Parser& p, const Entry& e, RuleDraft& d) {
       if (auto bp = p.GetFraction(e, d.what + " rollout"))
         d.rule->rollout_bp = *bp;
     },
     nullptr, nullptr, /*late=*/true},
    {"unit",
     [](Parser& p, const Entry& e, RuleDraft& d) {
       if (auto s = p.GetKey(e, d.what + " unit")) d.rule->unit_id_type = *s;
     },
     nullptr, nullptr, /*late=*/true},
    {"salt",
     [](Parser& p, const Entry& e, RuleDraft& d) {
       if (auto s = p.GetString(e, d.what + " salt")) d.rule->salt = *s;
     },
     nullptr, nullptr, /*late=*/true},
};

}  // namespace

void Parser::ParseFeatures(const Entry& section) {
  if (section.value.IsNull()) return;
  if (!ExpectList(section, "features")) return;
  std::map<std::string, int> first_line;
  int index = 0;
  for (auto it = section.value.begin(); it != section.value.end();
       ++it, ++index) {
    Feature feature;
    if (ParseFeature(*it, index, &first_line, &feature)) {
      config_->features.push_back(std::move(feature));
    }
  }
}

bool Parser::ParseFeature(const YAML::Node& n, int index,
                          std::map<std::string, int>* first_line,
                          Feature* feature) {
  FeatureDraft d{absl::StrCat("feature #", index + 1), n, feature, first_line};
  if (!ExpectMap(n, n.Mark(), d.what,
                 "- {key: new_search, type: bool, default: false}")) {
    return false;
  }
  const FieldMap f = Fields(n, NameFor("feature", n, d.what), kFeatureRules);
  feature->location = {n.Mark().line + 1, n.Mark().column + 1};
  ReadFields(kFeatureRules, f, n, d);
  if (!d.ok && f.count("key") && f.at("key").value.IsScalar()) {
    broken_features_.insert(f.at("key").value.Scalar());
  }
  return d.ok;
}

void Parser::ParseRules(const Entry& rules,
                        const std::optional<ValueType>& type,
                        const std::string& what, Feature* feature) {
  if (!ExpectList(rules, what + " rules")) return;
  int ri = 0;
  for (auto r = rules.value.begin(); r != rules.value.end(); ++r, ++ri) {
    RuleDraft d{absl::StrCat(what, " rule #", ri + 1), nullptr, type};
    if (!ExpectMap(*r, r->Mark(), d.what,
                   "- {when: {segment: new_users}, value: true}")) {
      continue;
    }
    const FieldMap f = Fields(*r, d.what, kRuleRules);
    FeatureRule rule;
    rule.location = {r->Mark().line + 1, r->Mark().column + 1};
    rule.salt = absl::StrCat(feature->key, ".rule", ri);
    d.rule = &rule;
    ReadFields(kRuleRules, f, *r, d);
    feature->rules.push_back(std::move(rule));
  }
}

}  // namespace config_parser_internal
}  // namespace abexp
