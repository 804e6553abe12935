#include "stats/testing/golden.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"

namespace abexp::stats::testing {
namespace {

std::string Where(const GoldenCase& c) {
  return absl::StrCat(c.file, ":", c.line, " (case ", c.name, ")");
}

}  // namespace

bool GoldenCase::IsNull(const std::string& key) const {
  auto it = fields.find(key);
  return it != fields.end() && it->second == "null";
}

std::string GoldenCase::Str(const std::string& key) const {
  auto it = fields.find(key);
  if (it == fields.end()) {
    ADD_FAILURE() << Where(*this) << ": no field '" << key << "'";
    return "";
  }
  return it->second;
}

double GoldenCase::Num(const std::string& key) const {
  const std::string text = Str(key);
  double v = 0;
  if (!absl::SimpleAtod(text, &v)) {
    ADD_FAILURE() << Where(*this) << ": field '" << key << "' is '" << text
                  << "', not a number";
    return std::numeric_limits<double>::quiet_NaN();
  }
  return v;
}

std::optional<double> GoldenCase::MaybeNum(const std::string& key) const {
  if (IsNull(key)) return std::nullopt;
  return Num(key);
}

std::vector<double> GoldenCase::Nums(const std::string& key) const {
  std::vector<double> out;
  const std::string text = Str(key);
  if (text.empty()) return out;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    double v = 0;
    if (!absl::SimpleAtod(part, &v)) {
      ADD_FAILURE() << Where(*this) << ": field '" << key << "' has '" << part
                    << "', not a number";
      v = std::numeric_limits<double>::quiet_NaN();
    }
    out.push_back(v);
  }
  return out;
}

bool GoldenCase::Bool(const std::string& key) const {
  const std::string text = Str(key);
  if (text != "true" && text != "false") {
    ADD_FAILURE() << Where(*this) << ": field '" << key << "' is '" << text
                  << "', not true or false";
  }
  return text == "true";
}

absl::StatusOr<std::vector<GoldenCase>> LoadGolden(const std::string& path) {
  const std::string full = absl::StrCat(ABEXP_SOURCE_DIR, "/", path);
  std::ifstream in(full);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(
        "cannot read golden file ", full,
        "; regenerate it with the script named in its first line"));
  }
  std::vector<GoldenCase> cases;
  std::set<std::string> names;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty() || text[0] == '#') continue;
    GoldenCase c;
    c.file = path;
    c.line = number;
    for (absl::string_view field :
         absl::StrSplit(text, ' ', absl::SkipWhitespace())) {
      const size_t eq = field.find('=');
      if (eq == absl::string_view::npos || eq == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ":", number, ": field '", field, "' is not key=value"));
      }
      c.fields[std::string(field.substr(0, eq))] =
          std::string(field.substr(eq + 1));
    }
    auto name = c.fields.find("case");
    if (name == c.fields.end() || name->second.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", number, ": the line has no case=NAME"));
    }
    c.name = name->second;
    if (!names.insert(c.name).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ":", number, ": case '", c.name, "' appears twice"));
    }
    cases.push_back(std::move(c));
  }
  if (cases.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " holds no cases"));
  }
  return cases;
}

std::vector<GoldenCase> GoldenCasesOfKind(const std::string& path,
                                          const std::string& kind) {
  std::vector<GoldenCase> out;
  absl::StatusOr<std::vector<GoldenCase>> all = LoadGolden(path);
  if (!all.ok()) {
    ADD_FAILURE() << all.status();
    return out;
  }
  for (GoldenCase& c : *all) {
    auto it = c.fields.find("kind");
    if (it != c.fields.end() && it->second == kind) out.push_back(std::move(c));
  }
  EXPECT_FALSE(out.empty()) << "no kind=" << kind << " cases in " << path;
  return out;
}

void ExpectClose(double got, double want, const std::string& what, double rel,
                 double abs) {
  if (std::isnan(want)) {
    EXPECT_TRUE(std::isnan(got)) << what << ": got " << got << ", want NaN";
    return;
  }
  if (std::isinf(want)) {
    EXPECT_EQ(got, want) << what;
    return;
  }
  const double tolerance = std::max(rel * std::fabs(want), abs);
  EXPECT_LE(std::fabs(got - want), tolerance)
      << what << ": got " << absl::StrCat(absl::SixDigits(got)) << " (" << got
      << "), want " << want << ", off by " << std::fabs(got - want)
      << " > tolerance " << tolerance;
}

}  // namespace abexp::stats::testing
