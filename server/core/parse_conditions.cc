// Reading attributes, segments and conditions (targeting, rules' when,
// segment definitions), with the limits that bound their evaluation.
#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/core/config_parser_internal.h"
#include "server/core/targeting.h"

namespace abexp {
namespace config_parser_internal {
namespace {

const char* const kConditionForms[] = {"all", "any", "not", "segment",
                                       "attribute"};

struct OpInfo {
  const char* name;
  CompareOp op;
};
const OpInfo kOps[] = {
    {"eq", CompareOp::kEq},       {"ne", CompareOp::kNe},
    {"in", CompareOp::kIn},       {"not_in", CompareOp::kNotIn},
    {"lt", CompareOp::kLt},       {"lte", CompareOp::kLte},
    {"gt", CompareOp::kGt},       {"gte", CompareOp::kGte},
    {"regex", CompareOp::kRegex}, {"exists", CompareOp::kExists},
};

// Why operator `op` does not apply to an attribute of `type`, as a fix for
// the message, or null when it applies (docs/config.md).
const char* UnsupportedOperatorFix(CompareOp op, AttributeType type) {
  switch (op) {
    case CompareOp::kIn:
    case CompareOp::kNotIn:
      if (type != AttributeType::kBool) return nullptr;
      return "use eq or ne for bool attributes";
    case CompareOp::kLt:
    case CompareOp::kLte:
    case CompareOp::kGt:
    case CompareOp::kGte:
      if (type == AttributeType::kNumber || type == AttributeType::kSemver)
        return nullptr;
      return "ordering operators need a number or semver attribute; use eq, "
             "ne, in or regex";
    case CompareOp::kRegex:
      if (type == AttributeType::kString) return nullptr;
      return "regex needs a string attribute; use eq, ne, in, lt, lte, gt or "
             "gte";
    default:
      return nullptr;
  }
}

}  // namespace

void Parser::ParseAttributes(const Entry& section) {
  if (section.value.IsNull()) return;
  if (!ExpectMap(section.value, Pos(section), "attributes",
                 "attributes: {country: string, app_version: semver}")) {
    return;
  }
  for (const Entry& e : Entries(section.value)) {
    const bool key_ok = CheckKeyFormat(e.key_node, e.key, "attribute");
    static const std::pair<const char*, AttributeType> kTypes[] = {
        {"string", AttributeType::kString},
        {"number", AttributeType::kNumber},
        {"bool", AttributeType::kBool},
        {"semver", AttributeType::kSemver}};
    const std::string type = e.value.IsScalar() ? e.value.Scalar() : "";
    bool found = false;
    for (const auto& [name, t] : kTypes) {
      if (type == name) {
        found = true;
        if (key_ok) config_->attributes[e.key] = t;
      }
    }
    if (!found) {
      Error(e, absl::StrCat(
                   "attribute ", Quote(e.key), ": type ",
                   e.value.IsScalar() ? Quote(type) : NodeKindName(e.value),
                   " is not valid; use one of string, number, bool, semver"));
    }
  }
}

void Parser::ParseSegments(const Entry& section) {
  if (section.value.IsNull()) return;
  if (!ExpectMap(
          section.value, Pos(section), "segments",
          "segments: {new_users: {attribute: days_since_signup, lt: 7}}")) {
    return;
  }
  for (const Entry& e : Entries(section.value)) {
    if (!CheckKeyFormat(e.key_node, e.key, "segment")) continue;
    SegmentState& s = segments_[e.key];
    s.key_node = e.key_node;
    s.node = e.value;
  }
  for (auto& [name, state] : segments_) ResolveSegment(name);
  for (auto& [name, state] : segments_) {
    if (state.condition) config_->segments[name] = state.condition;
  }
}

void Parser::ResolveSegment(const std::string& name) {
  SegmentState& s = segments_.at(name);
  if (s.state != SegmentState::kUnvisited) return;
  s.state = SegmentState::kInProgress;
  segment_stack_.push_back(name);
  Entry e{name, s.key_node, s.node};
  s.condition =
      ParseRootCondition(s.node, Pos(e), absl::StrCat("segment ", Quote(name)));
  segment_stack_.pop_back();
  s.state = SegmentState::kDone;
}

std::shared_ptr<const Condition> Parser::ParseRootCondition(
    const YAML::Node& n, const YAML::Mark& mark, const std::string& what) {
  std::shared_ptr<const Condition> c = ParseCondition(n, mark, what, 0);
  if (c != nullptr && ExpandedSize(*c) > kMaxExpandedConditionNodes) {
    Report(
        mark,
        absl::StrCat(
            what, ": the condition has more than ", kMaxExpandedConditionNodes,
            " parts once the segments it uses are written out (each use of "
            "a segment counts), which makes every request slow; simplify "
            "it"),
        false);
    return nullptr;
  }
  return c;
}

uint64_t Parser::ExpandedSize(const Condition& c) {
  auto memo = expanded_sizes_.find(&c);
  if (memo != expanded_sizes_.end()) return memo->second;
  uint64_t size = 1;
  if (c.segment != nullptr) size += ExpandedSize(*c.segment);
  for (const auto& child : c.children) {
    size =
        std::min(size + ExpandedSize(*child), kMaxExpandedConditionNodes + 1);
  }
  size = std::min(size, kMaxExpandedConditionNodes + 1);
  expanded_sizes_.emplace(&c, size);
  return size;
}

std::shared_ptr<const Condition> Parser::ParseCondition(const YAML::Node& n,
                                                        const YAML::Mark& mark,
                                                        const std::string& what,
                                                        int depth) {
  if (depth > kMaxConditionDepth) {
    Report(mark,
           absl::StrCat(
               what, ": condition is nested more than ", kMaxConditionDepth,
               " levels deep; simplify it or move parts into segments"),
           false);
    return nullptr;
  }
  if (!ExpectMap(
          n, mark, absl::StrCat(what, ": a condition"),
          "{attribute: country, in: [CN, SG]} or {segment: new_users}")) {
    return nullptr;
  }
  const std::string form = ConditionForm(n, mark, what);
  if (form.empty()) return nullptr;
  if (form == "attribute") {
    std::vector<const char*> allowed = {"attribute"};
    for (const OpInfo& op : kOps) allowed.push_back(op.name);
    auto fields = Fields(n, absl::StrCat(what, ": comparison"), allowed.data(),
                         allowed.size());
    return ParseComparison(n, fields, what);
  }

  auto fields = Fields(n, what, kConditionForms);
  const Entry& e = fields.at(form);
  if (form == "segment") return ParseSegmentReference(e, what);
  if (form == "not") {
    auto child = ParseCondition(e.value, Pos(e), what, depth + 1);
    if (!child) return nullptr;
    auto c = std::make_shared<Condition>();
    c->kind = ConditionKind::kNot;
    c->text = absl::StrCat("not(", child->text, ")");
    c->children.push_back(std::move(child));
    return c;
  }
  return ParseConditionList(e, form, what, depth);
}

std::string Parser::ConditionForm(const YAML::Node& n, const YAML::Mark& mark,
                                  const std::string& what) {
  std::vector<Entry> entries = Entries(n);
  std::vector<std::string> forms;
  for (const Entry& e : entries) {
    for (const char* f : kConditionForms) {
      if (e.key == f) forms.push_back(e.key);
    }
  }
  if (forms.empty()) {
    std::vector<std::string> ops;
    for (const Entry& e : entries) {
      for (const OpInfo& op : kOps) {
        if (e.key == op.name) ops.push_back(e.key);
      }
    }
    if (!ops.empty()) {
      Report(mark,
             absl::StrCat(
                 what, ": operator '", ops[0],
                 "' has no attribute; add attribute: <name> to the same map"),
             false);
    } else {
      Report(mark,
             absl::StrCat(what, ": a condition needs exactly one of ",
                          JoinNames(kConditionForms),
                          "; write it like {attribute: country, eq: CN}"),
             false);
    }
    return "";
  }
  if (forms.size() > 1) {
    Report(
        mark,
        absl::StrCat(what, ": a condition has several forms (",
                     absl::StrJoin(forms, ", "),
                     "); write one per map and combine them with all: [...] or "
                     "any: [...]"),
        false);
    return "";
  }
  return forms[0];
}

std::shared_ptr<const Condition> Parser::ParseSegmentReference(
    const Entry& e, const std::string& what) {
  std::optional<std::string> name = GetString(e, what + ": segment");
  if (!name) return nullptr;
  auto it = segments_.find(*name);
  if (it == segments_.end()) {
    std::vector<std::string> known;
    for (const auto& [k, v] : segments_) known.push_back(k);
    Error(e,
          absl::StrCat(
              what, ": unknown segment ", Quote(*name),
              known.empty()
                  ? "; declare it under segments:"
                  : absl::StrCat("; declare it under segments: or use one of ",
                                 absl::StrJoin(known, ", "))));
    return nullptr;
  }
  if (it->second.state == SegmentState::kInProgress) {
    auto start = std::find(segment_stack_.begin(), segment_stack_.end(), *name);
    std::vector<std::string> cycle(start, segment_stack_.end());
    cycle.push_back(*name);
    Error(e,
          absl::StrCat(what, ": segments refer to each other in a cycle (",
                       absl::StrJoin(cycle, " -> "),
                       "); break the cycle by inlining one of the conditions"));
    return nullptr;
  }
  // Bounds the recursion here and, through the chain lengths, evaluation.
  const auto too_deep = [&] {
    Error(e,
          absl::StrCat(
              what, ": segments refer to segments more than ",
              kMaxSegmentNesting, " levels deep through segment ", Quote(*name),
              "; write some of the chain's conditions out in place, so that a "
              "chain of segments is at most ",
              kMaxSegmentNesting, " long"));
    return nullptr;
  };
  if (it->second.state == SegmentState::kUnvisited &&
      segment_stack_.size() > kMaxSegmentNesting) {
    return too_deep();
  }
  ResolveSegment(*name);
  if (!it->second.condition) return nullptr;  // its errors are already reported
  const size_t chain = it->second.chain + 1;
  if (chain > kMaxSegmentNesting) return too_deep();
  if (!segment_stack_.empty()) {
    size_t& outer = segments_.at(segment_stack_.back()).chain;
    outer = std::max(outer, chain);
  }
  auto c = std::make_shared<Condition>();
  c->kind = ConditionKind::kSegment;
  c->segment_name = *name;
  c->text = absl::StrCat("segment ", *name);
  c->segment = it->second.condition;
  return c;
}

std::shared_ptr<const Condition> Parser::ParseConditionList(
    const Entry& e, const std::string& form, const std::string& what,
    int depth) {
  auto c = std::make_shared<Condition>();
  c->kind = form == "all" ? ConditionKind::kAll : ConditionKind::kAny;
  if (!ExpectList(e, absl::StrCat(what, ": ", form))) return nullptr;
  bool ok = true;
  std::vector<std::string> texts;
  for (auto it = e.value.begin(); it != e.value.end(); ++it) {
    auto child = ParseCondition(*it, it->Mark(), what, depth + 1);
    if (!child) {
      ok = false;
      continue;
    }
    texts.push_back(child->text);
    c->children.push_back(std::move(child));
  }
  if (!ok) return nullptr;
  c->text = absl::StrCat(form, "(", absl::StrJoin(texts, ", "), ")");
  return c;
}

std::shared_ptr<const Condition> Parser::ParseComparison(
    const YAML::Node& n, const FieldMap& fields, const std::string& what) {
  const Entry& attr_entry = fields.at("attribute");
  std::optional<std::string> attribute =
      GetString(attr_entry, what + ": attribute");
  std::vector<const Entry*> ops;
  for (const auto& [key, e] : fields) {
    if (key != "attribute") ops.push_back(&e);
  }
  if (!attribute) return nullptr;
  const std::string ctx =
      absl::StrCat(what, ": comparison on ", Quote(*attribute));
  std::vector<std::string> op_names;
  for (const OpInfo& op : kOps) op_names.push_back(op.name);
  if (ops.empty()) {
    Error(n, absl::StrCat(ctx, " has no operator; add exactly one of ",
                          absl::StrJoin(op_names, ", ")));
    return nullptr;
  }
  if (ops.size() > 1) {
    std::vector<std::string> names;
    for (const Entry* e : ops) names.push_back(e->key);
    Error(n, absl::StrCat(
                 ctx, " has several operators (", absl::StrJoin(names, ", "),
                 "); use one per map and combine them with all: [...]"));
    return nullptr;
  }
  auto type_it = config_->attributes.find(*attribute);
  if (type_it == config_->attributes.end()) {
    Error(
        attr_entry,
        absl::StrCat(what, ": attribute ", Quote(*attribute),
                     " is not declared; add it under attributes: with its type "
                     "(string, number, bool or semver)"));
    return nullptr;
  }
  const AttributeType type = type_it->second;
  const Entry& op_entry = *ops[0];
  CompareOp op = CompareOp::kEq;
  for (const OpInfo& info : kOps) {
    if (op_entry.key == info.name) op = info.op;
  }
  if (const char* fix = UnsupportedOperatorFix(op, type)) {
    Error(op_entry.key_node,
          absl::StrCat(ctx, ": operator '", op_entry.key,
                       "' does not apply to a ", AttributeTypeName(type),
                       " attribute; ", fix));
    return nullptr;
  }
  auto c = std::make_shared<Condition>();
  c->kind = ConditionKind::kCompare;
  c->attribute = *attribute;
  c->attribute_type = type;
  c->op = op;
  std::optional<std::string> operand_text =
      ParseComparisonOperands(op_entry, *attribute, ctx, c.get());
  if (!operand_text) return nullptr;
  c->text = absl::StrCat(*attribute, " ", op_entry.key, " ", *operand_text);
  return c;
}

std::optional<std::string> Parser::ParseComparisonOperands(
    const Entry& op_entry, const std::string& attribute, const std::string& ctx,
    Condition* c) {
  const YAML::Node& v = op_entry.value;
  const CompareOp op = c->op;
  if (op == CompareOp::kRegex) {
    if (!v.IsScalar()) {
      Error(op_entry,
            absl::StrCat(ctx, ": regex must be a pattern string, not ",
                         NodeKindName(v), "; write it like regex: \"^vip-\""));
      return std::nullopt;
    }
    RE2::Options options;
    options.set_log_errors(false);
    auto re = std::make_shared<RE2>(v.Scalar(), options);
    if (!re->ok()) {
      Error(op_entry, absl::StrCat(ctx, ": regex ", Quote(v.Scalar()),
                                   " does not compile: ", re->error(),
                                   "; fix the pattern (RE2 syntax, no "
                                   "backreferences or lookaround)"));
      return std::nullopt;
    }
    c->regex = std::move(re);
    return OperandText(v);
  }
  if (op == CompareOp::kExists) {
    std::optional<bool> b = PlainBool(v);
    if (!b) {
      Error(op_entry,
            absl::StrCat(ctx, ": exists takes true or false, not ",
                         v.IsScalar() ? Quote(v.Scalar()) : NodeKindName(v),
                         "; write exists: true or exists: false"));
      return std::nullopt;
    }
    c->operands.push_back(*b);
    return std::string(*b ? "true" : "false");
  }
  if (op == CompareOp::kIn || op == CompareOp::kNotIn) {
    if (!v.IsSequence()) {
      Error(op_entry,
            absl::StrCat(ctx, ": ", op_entry.key, " takes a list, not ",
                         NodeKindName(v), "; write it like ", op_entry.key,
                         ": [a, b]"));
      return std::nullopt;
    }
    if (v.size() == 0) {
      Error(op_entry,
            absl::StrCat(ctx, ": the ", op_entry.key,
                         " list is empty; list at least one value, or remove "
                         "the condition"));
      return std::nullopt;
    }
    bool ok = true;
    std::vector<std::string> texts;
    for (auto it = v.begin(); it != v.end(); ++it) {
      std::optional<Operand> o =
          ParseOperand(*it, it->Mark(), c->attribute_type, attribute, op, ctx);
      if (!o) {
        ok = false;
        continue;
      }
      c->operands.push_back(std::move(*o));
      texts.push_back(OperandText(*it));
    }
    if (!ok) return std::nullopt;
    return absl::StrCat("[", absl::StrJoin(texts, ", "), "]");
  }
  std::optional<Operand> o =
      ParseOperand(v, Pos(op_entry), c->attribute_type, attribute, op, ctx);
  if (!o) return std::nullopt;
  c->operands.push_back(std::move(*o));
  return OperandText(v);
}

std::optional<Operand> Parser::ParseOperand(
    const YAML::Node& n, const YAML::Mark& mark, AttributeType type,
    const std::string& attribute, CompareOp op, const std::string& what) {
  const std::string shown = n.IsScalar() ? Quote(n.Scalar()) : NodeKindName(n);
  const std::string prefix =
      absl::StrCat(what, ": operand ", shown, " of '", CompareOpName(op), "'");
  if (!n.IsScalar()) {
    Report(mark,
           absl::StrCat(prefix, " must be a single value; write a ",
                        AttributeTypeName(type), " value"),
           false);
    return std::nullopt;
  }
  switch (type) {
    case AttributeType::kString:
      return Operand(n.Scalar());
    case AttributeType::kNumber:
      if (std::optional<double> d = PlainNumber(n)) return Operand(*d);
      Report(mark,
             absl::StrCat(
                 prefix, " is not a number, but attribute ", Quote(attribute),
                 " is declared number; ",
                 IsQuoted(n) && RE2::FullMatch(n.Scalar(), NumberPattern())
                     ? "write the number without quotes"
                     : "compare with a number such as 7, or declare the "
                       "attribute as string"),
             false);
      return std::nullopt;
    case AttributeType::kBool:
      if (std::optional<bool> b = PlainBool(n)) return Operand(*b);
      Report(
          mark,
          absl::StrCat(prefix, " is not true or false, but attribute ",
                       Quote(attribute),
                       " is declared bool; write true or false without quotes"),
          false);
      return std::nullopt;
    case AttributeType::kSemver:
      if (std::optional<SemVer> v = SemVer::Parse(n.Scalar()))
        return Operand(*v);
      Report(mark,
             absl::StrCat(
                 prefix, " is not a version, but attribute ", Quote(attribute),
                 " is declared semver; write a version such as \"5.2.0\""),
             false);
      return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace config_parser_internal
}  // namespace abexp
