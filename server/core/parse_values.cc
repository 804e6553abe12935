// Reading scalar values of a config: text, keys, event names, booleans,
// fractions, weights, durations, times and feature values.
#include <algorithm>
#include <cmath>
#include <map>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "server/core/bucketing.h"
#include "server/core/config_parser_internal.h"

namespace abexp {
namespace config_parser_internal {
namespace {

const RE2& KeyPattern() {
  static const RE2* const re = new RE2("[A-Za-z0-9][A-Za-z0-9_.-]*");
  return *re;
}
const RE2& EventNamePattern() {
  static const RE2* const re = new RE2("[A-Za-z0-9][A-Za-z0-9_.:-]*");
  return *re;
}

}  // namespace

std::optional<std::string> Parser::GetString(const Entry& e,
                                             const std::string& what) {
  if (e.value.IsScalar()) return e.value.Scalar();
  Error(e, absl::StrCat(what, " must be text, not ", NodeKindName(e.value),
                        "; give it a value such as ", e.key, ": example"));
  return std::nullopt;
}

bool Parser::CheckKeyFormat(const YAML::Node& at, const std::string& key,
                            const std::string& what) {
  if (key.size() > kMaxKeyBytes) {
    Error(at,
          absl::StrFormat("%s '%s' is %d bytes long; shorten it to at most %d",
                          what, key, key.size(), kMaxKeyBytes));
    return false;
  }
  if (!RE2::FullMatch(key, KeyPattern())) {
    Error(at, absl::StrFormat("%s '%s' is not a valid key; use letters, "
                              "digits, '_', '.' and '-', "
                              "starting with a letter or digit",
                              what, key));
    return false;
  }
  return true;
}

std::optional<std::string> Parser::GetKey(const Entry& e,
                                          const std::string& what) {
  std::optional<std::string> s = GetString(e, what);
  if (!s) return std::nullopt;
  if (!CheckKeyFormat(e.value, *s, what)) return std::nullopt;
  return s;
}

std::optional<bool> Parser::GetBool(const Entry& e, const std::string& what) {
  if (std::optional<bool> b = PlainBool(e.value)) return b;
  Error(e,
        absl::StrCat(what, " must be true or false, not ",
                     e.value.IsScalar() ? Quote(e.value.Scalar())
                                        : NodeKindName(e.value),
                     IsQuoted(e.value) ? "; write true or false without quotes"
                                       : "; write true or false"));
  return std::nullopt;
}

std::optional<std::string> Parser::GetEventName(const Entry& e,
                                                const std::string& what) {
  std::optional<std::string> s = GetString(e, what);
  if (!s) return std::nullopt;
  if (s->size() > kMaxKeyBytes) {
    Error(e,
          absl::StrFormat("%s '%s' is %d bytes long; shorten it to at most %d",
                          what, *s, s->size(), kMaxKeyBytes));
    return std::nullopt;
  }
  if (!RE2::FullMatch(*s, EventNamePattern())) {
    Error(e, absl::StrFormat(
                 "%s '%s' is not a valid event name; use letters, digits, '_', "
                 "'.', ':' and '-', starting with a letter or digit, as the "
                 "services send it (such as order_completed)",
                 what, *s));
    return std::nullopt;
  }
  return s;
}

std::optional<EventAggregation> Parser::GetAggregation(
    const Entry& e, const std::string& what) {
  if (e.value.IsScalar()) {
    if (e.value.Scalar() == "value") return EventAggregation::kValue;
    if (e.value.Scalar() == "count") return EventAggregation::kCount;
  }
  Error(e, absl::StrCat(
               what, " ",
               e.value.IsScalar() ? Quote(e.value.Scalar())
                                  : NodeKindName(e.value),
               " is not valid; use value (add up the events' values) or count "
               "(count the events)"));
  return std::nullopt;
}

// A duration such as 7d, 24h, 30m, 90s or 1d12h: one or more parts, each a
// decimal number and a unit, the units in the order d, h, m, s and each at
// most once, adding up to a whole number of seconds. absl::ParseDuration has
// no days, and metric windows are usually written in days.
std::optional<absl::Duration> Parser::GetWindow(const Entry& e,
                                                const std::string& what) {
  const char* const kHow =
      "write a number and a unit (d, h, m or s), such as 7d, 24h or 30m, "
      "or several in the order d, h, m, s, such as 1d12h";
  if (!e.value.IsScalar()) {
    Error(e, absl::StrCat(what, " must be a duration, not ",
                          NodeKindName(e.value), "; ", kHow));
    return std::nullopt;
  }
  std::string s = e.value.Scalar();
  absl::StripAsciiWhitespace(&s);
  if (!s.empty() && s[0] == '-') {
    Error(e, absl::StrCat(what, " ", s,
                          " is negative; a window starts at the unit's first "
                          "exposure and must be positive, such as 7d"));
    return std::nullopt;
  }
  if (RE2::FullMatch(s, NumberPattern())) {
    Error(e,
          absl::StrCat(what, " ", s, " has no unit; write ", s, "d for days, ",
                       s, "h for hours or ", s, "m for minutes"));
    return std::nullopt;
  }
  static const RE2* const part = new RE2(R"((\d+(?:\.\d+)?)([dhms]))");
  constexpr absl::string_view kUnits = "dhms";
  re2::StringPiece in(s);
  std::string number, unit;
  absl::Duration total = absl::ZeroDuration();
  bool any = false;
  size_t next_unit = 0;  // units must come in the order of kUnits
  while (!in.empty() && RE2::Consume(&in, *part, &number, &unit)) {
    const size_t u = kUnits.find(unit);
    if (u + 1 == next_unit) {
      Error(e,
            absl::StrCat(what, " ", Quote(s), " gives the unit ", unit,
                         " twice; give each unit once, such as 2d or 1d12h"));
      return std::nullopt;
    }
    if (u < next_unit) {
      any = false;
      break;
    }
    next_unit = u + 1;
    double v = 0;
    if (!absl::SimpleAtod(number, &v)) break;
    const absl::Duration scale = unit == "d"   ? absl::Hours(24)
                                 : unit == "h" ? absl::Hours(1)
                                 : unit == "m" ? absl::Minutes(1)
                                               : absl::Seconds(1);
    total += scale * v;
    any = true;
  }
  if (!any || !in.empty()) {
    Error(e, absl::StrCat(what, " ", Quote(s), " is not a duration; ", kHow));
    return std::nullopt;
  }
  if (total <= absl::ZeroDuration()) {
    Error(e, absl::StrCat(what, " ", s,
                          " is not positive; use a window such as 7d"));
    return std::nullopt;
  }
  if (total % absl::Seconds(1) != absl::ZeroDuration()) {
    Error(e, absl::StrCat(what, " ", s,
                          " is not a whole number of seconds; the finest unit "
                          "is 1s, so round it"));
    return std::nullopt;
  }
  if (total > kMaxMetricWindow) {
    Error(e,
          absl::StrCat(what, " ", s,
                       " is longer than 365d; use a window of at most 365d"));
    return std::nullopt;
  }
  return total;
}

namespace {

// Parses "D[.DDDD]" exactly into units of 10^-scale_digits. Returns nullopt
// when the text is not such a decimal; *too_precise when it has more than
// scale_digits significant decimals.
std::optional<uint64_t> ParseDecimal(absl::string_view text, int scale_digits,
                                     bool* too_precise) {
  *too_precise = false;
  static const RE2* const re = new RE2(R"((\d*)(?:\.(\d*))?)");
  std::string int_part, frac_part;
  if (!RE2::FullMatch(re2::StringPiece(text.data(), text.size()), *re,
                      &int_part, &frac_part)) {
    return std::nullopt;
  }
  if (int_part.empty() && frac_part.empty()) return std::nullopt;
  int_part.erase(0, std::min(int_part.find_first_not_of('0'), int_part.size()));
  if (int_part.size() > 12) return std::nullopt;
  while (!frac_part.empty() && frac_part.back() == '0') frac_part.pop_back();
  if (frac_part.size() > static_cast<size_t>(scale_digits)) {
    *too_precise = true;
    return std::nullopt;
  }
  frac_part.append(scale_digits - frac_part.size(), '0');
  uint64_t v = 0;
  for (char c : int_part) v = v * 10 + (c - '0');
  for (char c : frac_part) v = v * 10 + (c - '0');
  return v;
}

}  // namespace

// Reports a quoted scalar where a number is expected: "50" is text in YAML.
bool Parser::QuotedNumber(const Entry& e, const std::string& what) {
  if (!IsQuoted(e.value)) return false;
  std::string shown;
  AppendJsonString(e.value.Scalar(), &shown);
  Error(e, absl::StrCat(what, " ", shown,
                        " is quoted; write the number without quotes"));
  return true;
}

std::optional<uint32_t> Parser::GetFraction(const Entry& e,
                                            const std::string& what) {
  const char* const kHow =
      "use a fraction from 0 to 1 with at most 4 decimals (such as 0.25) or a "
      "percent "
      "string (such as \"12.5%\")";
  if (!e.value.IsScalar()) {
    Error(e, absl::StrCat(what, " must be a number, not ",
                          NodeKindName(e.value), "; ", kHow));
    return std::nullopt;
  }
  std::string s = e.value.Scalar();
  absl::StripAsciiWhitespace(&s);
  const bool percent = !s.empty() && s.back() == '%';
  if (!percent && QuotedNumber(e, what)) return std::nullopt;
  if (percent) s.pop_back();
  if (!s.empty() && s[0] == '-') {
    Error(e, absl::StrCat(what, " ", e.value.Scalar(), " is negative; ", kHow));
    return std::nullopt;
  }
  bool too_precise = false;
  std::optional<uint64_t> v = ParseDecimal(s, percent ? 2 : 4, &too_precise);
  if (too_precise) {
    Error(e, absl::StrCat(
                 what, " ", e.value.Scalar(),
                 " has more than 4 decimal places (0.0001 is the finest step); "
                 "round it"));
    return std::nullopt;
  }
  if (!v) {
    Error(e, absl::StrCat(what, " ", Quote(e.value.Scalar()),
                          " is not a number; ", kHow));
    return std::nullopt;
  }
  if (*v > kNumBuckets) {
    std::string hint;
    if (!percent && *v >= 2u * kNumBuckets && *v <= 100u * kNumBuckets) {
      hint = absl::StrCat(" (did you mean \"", e.value.Scalar(), "%\"?)");
    }
    Error(e, absl::StrCat(what, " ", e.value.Scalar(), " is more than ",
                          percent ? "100%" : "1", hint, "; ", kHow));
    return std::nullopt;
  }
  return static_cast<uint32_t>(*v);
}

std::optional<uint64_t> Parser::GetWeight(const Entry& e,
                                          const std::string& what) {
  const char* const kHow =
      "use 0 or a positive integer or decimal with at most 4 places, "
      "such as 50 or 33.3";
  if (!e.value.IsScalar()) {
    Error(e, absl::StrCat(what, " must be a number, not ",
                          NodeKindName(e.value), "; ", kHow));
    return std::nullopt;
  }
  if (QuotedNumber(e, what)) return std::nullopt;
  std::string s = e.value.Scalar();
  absl::StripAsciiWhitespace(&s);
  if (!s.empty() && s[0] == '-') {
    Error(e, absl::StrCat(what, " ", s, " is negative; ", kHow));
    return std::nullopt;
  }
  bool too_precise = false;
  std::optional<uint64_t> v = ParseDecimal(s, 4, &too_precise);
  if (too_precise) {
    Error(e, absl::StrCat(what, " ", s,
                          " has more than 4 decimal places; round it to at "
                          "most 4"));
    return std::nullopt;
  }
  if (!v && RE2::FullMatch(s, R"(\d+(\.\d*)?)")) {
    Error(e, absl::StrCat(what, " ", s,
                          " is too large; weights are relative shares, such "
                          "as 50/50 or 1/3, and must add up to less than ",
                          kMaxWrittenWeightSum));
    return std::nullopt;
  }
  if (!v) {
    Error(e, absl::StrCat(what, " ", Quote(s), " is not a number; ", kHow));
    return std::nullopt;
  }
  return v;
}

std::optional<absl::Time> Parser::GetTime(const Entry& e,
                                          const std::string& what) {
  const char* const kHow =
      "write an RFC 3339 time such as 2026-11-01T00:00:00Z";
  if (!e.value.IsScalar()) {
    Error(e, absl::StrCat(what, " must be a time, not ", NodeKindName(e.value),
                          "; ", kHow));
    return std::nullopt;
  }
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, e.value.Scalar(), &t, &err)) {
    Error(e,
          absl::StrCat(what, " ", Quote(e.value.Scalar()),
                       " is not an RFC 3339 time (with a time zone); ", kHow));
    return std::nullopt;
  }
  const int64_t year = absl::ToCivilYear(t, absl::UTCTimeZone()).year();
  if (year < kMinYear || year > kMaxYear) {
    Error(e, absl::StrCat(what, " ", e.value.Scalar(), " is in the year ", year,
                          "; use a time in the years ", kMinYear, " to ",
                          kMaxYear));
    return std::nullopt;
  }
  return t;
}

std::optional<FeatureValue> Parser::GetValue(const Entry& e, ValueType type,
                                             const std::string& what) {
  FeatureValue v;
  v.type = type;
  const YAML::Node& n = e.value;
  switch (type) {
    case ValueType::kBool:
      if (std::optional<bool> b = PlainBool(n)) {
        v.bool_value = *b;
        return v;
      }
      Error(e, absl::StrCat(
                   what, " must be true or false (the feature is bool), not ",
                   n.IsScalar() ? Quote(n.Scalar()) : NodeKindName(n),
                   "; write true or false without quotes"));
      return std::nullopt;
    case ValueType::kNumber:
      if (std::optional<double> d = PlainNumber(n)) {
        v.number_value = *d;
        return v;
      }
      Error(e, absl::StrCat(what,
                            " must be a number (the feature is number), not ",
                            n.IsScalar() ? Quote(n.Scalar()) : NodeKindName(n),
                            IsQuoted(n) ? "; write the number without quotes"
                                        : "; write a number such as 3 or 0.5"));
      return std::nullopt;
    case ValueType::kString:
      if (n.IsScalar()) {
        v.text = n.Scalar();
        return v;
      }
      Error(e, absl::StrCat(what,
                            " must be a string (the feature is string), not ",
                            NodeKindName(n),
                            "; write text, quoted if it has special "
                            "characters"));
      return std::nullopt;
    case ValueType::kJson:
      if (!AppendJson(n, &v.text)) {
        Error(e, absl::StrCat(what, " is larger than ", kMaxJsonBytes,
                              " bytes as JSON; keep feature values small"));
        return std::nullopt;
      }
      return v;
  }
  return std::nullopt;
}

bool Parser::GetItemKey(const Entry& e, const char* kind, int line,
                        std::map<std::string, int>* first_line,
                        std::string* what, std::string* key) {
  std::optional<std::string> k = GetKey(e, absl::StrCat(kind, " key"));
  if (!k) return false;
  *key = *k;
  *what = absl::StrCat(kind, " ", Quote(*k));
  auto [pos, inserted] = first_line->emplace(*k, line);
  if (!inserted) {
    Error(e, absl::StrCat("duplicate ", kind, " key ", Quote(*k),
                          " (first defined at line ", pos->second, "); ", kind,
                          " keys must be unique, rename or remove one"));
    return false;
  }
  return true;
}

}  // namespace config_parser_internal
}  // namespace abexp
