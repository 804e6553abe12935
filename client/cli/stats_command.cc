#include "client/cli/stats_command.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <iostream>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "client/cli/command.h"
#include "client/cli/format.h"
#include "google/protobuf/struct.pb.h"
#include "stats/adjust.h"
#include "stats/bayes.h"
#include "stats/compare.h"
#include "stats/power.h"
#include "stats/srm.h"

namespace abexp::cli {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;
using Fields = google::protobuf::Map<std::string, Value>;

constexpr char kStatsUsage[] =
    R"(usage: abexp stats SUBCOMMAND [FLAGS]

An offline significance calculator for counts that come from elsewhere.
No server needed.

Subcommands:
  proportions   compare two conversion rates (X of N units converted)
  means         compare two means, from N, mean and sample SD per arm
  srm           sample-ratio mismatch check of the units per variant
  sample-size   units per variant to detect a relative lift of a rate
  adjust        Holm or Benjamini-Hochberg adjusted p-values

Flags for every subcommand:
  --format text|json   output format (default: text); in JSON undefined
                       figures are null and "warnings" says why
  --help               the subcommand's flags

Run `abexp stats SUBCOMMAND --help` for its flags.
Exit codes: 0 ok, 2 bad input (the message names the flag).
)";

constexpr char kFormatFlag[] =
    "  --format text|json   output format (default: text)\n";

constexpr char kCompareFlags[] =
    R"(  --alpha A            two-sided significance level, in (0, 1)
                       (default: 0.05)
  --tuning N*          units (both arms) at which the always-valid interval
                       is tightest; pick the expected final total
                       (default: 5000)
  --better higher|lower
                       which direction is better for the metric, for the
                       chance to beat control and the expected losses:
                       lower for a refund or bounce rate (default: higher)
)";

// How a flag's value is written, for error messages: "--control '10/0': N
// must be positive; write X/N, e.g. 120/1000".
struct Form {
  const char* flag;     // without the leading "--"
  const char* shape;    // e.g. "X/N"
  const char* example;  // e.g. "120/1000"
};

absl::Status Bad(const Form& form, absl::string_view text,
                 absl::string_view problem) {
  return absl::InvalidArgumentError(
      absl::StrCat("--", form.flag, " '", text, "': ", problem, "; write ",
                   form.shape, ", e.g. ", form.example));
}

// The text of a required flag.
absl::StatusOr<std::string> Required(const Args& args, const Form& form) {
  if (args.flags.count(form.flag) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", form.flag, " is required; write ", form.shape,
                     ", e.g. --", form.flag, " ", form.example));
  }
  return args.Get(form.flag, "");
}

bool ParseFinite(absl::string_view text, double* out) {
  return absl::SimpleAtod(text, out) && std::isfinite(*out);
}

// "X/N": X conversions of N > 0 units.
absl::StatusOr<stats::BinomialArm> ParseConversions(const Args& args,
                                                    const Form& form) {
  absl::StatusOr<std::string> text = Required(args, form);
  if (!text.ok()) return text.status();
  const std::vector<std::string> parts = absl::StrSplit(*text, '/');
  if (parts.size() != 2) {
    return Bad(form, *text, "not X/N (conversions/units)");
  }
  stats::BinomialArm arm;
  if (!absl::SimpleAtoi(parts[0], &arm.conversions) ||
      !absl::SimpleAtoi(parts[1], &arm.units)) {
    return Bad(form, *text, "X and N must be whole numbers");
  }
  if (arm.units <= 0) return Bad(form, *text, "N must be positive");
  if (arm.conversions < 0) return Bad(form, *text, "X cannot be negative");
  if (arm.conversions > arm.units) {
    return Bad(form, *text, "X (conversions) cannot exceed N (units)");
  }
  return arm;
}

// "N,MEAN,SD": N > 0 units, their mean and sample SD.
absl::StatusOr<stats::MeanSummary> ParseSummary(const Args& args,
                                                const Form& form) {
  absl::StatusOr<std::string> text = Required(args, form);
  if (!text.ok()) return text.status();
  const std::vector<std::string> parts = absl::StrSplit(*text, ',');
  if (parts.size() != 3) {
    return Bad(form, *text, "not N,MEAN,SD (units, mean, sample SD)");
  }
  stats::MeanSummary arm;
  if (!absl::SimpleAtoi(parts[0], &arm.units) || arm.units <= 0) {
    return Bad(form, *text, "N must be a positive whole number");
  }
  if (!ParseFinite(parts[1], &arm.mean)) {
    return Bad(form, *text, "MEAN must be a finite number");
  }
  if (!ParseFinite(parts[2], &arm.sd) || arm.sd < 0) {
    return Bad(form, *text, "SD must be a finite number, 0 or more");
  }
  return arm;
}

// A number flag; `def` when absent.
absl::StatusOr<double> ParseNumber(const Args& args, const Form& form,
                                   double def) {
  if (args.flags.count(form.flag) == 0) return def;
  const std::string text = args.Get(form.flag, "");
  double value = 0;
  if (!ParseFinite(text, &value)) return Bad(form, text, "not a number");
  return value;
}

// A number flag that must lie strictly between lo and hi.
absl::StatusOr<double> ParseBetween(const Args& args, const Form& form,
                                    double def, double lo, double hi) {
  absl::StatusOr<double> value = ParseNumber(args, form, def);
  if (value.ok() && !(*value > lo && *value < hi)) {
    return Bad(form, args.Get(form.flag, ""),
               absl::StrCat("must be in (", lo, ", ", hi, ")"));
  }
  return value;
}

constexpr Form kAlpha{"alpha", "a significance level in (0, 1)", "0.05"};
constexpr Form kTuning{"tuning", "a positive number of units", "5000"};

constexpr Form kBetter{"better", "higher or lower", "lower"};

// --better: the direction the Bayesian figures count as better.
absl::StatusOr<stats::Direction> ParseDirection(const Args& args) {
  const std::string better = args.Get(kBetter.flag, "higher");
  if (better == "higher") return stats::Direction::kHigherIsBetter;
  if (better == "lower") return stats::Direction::kLowerIsBetter;
  return Bad(kBetter, better, "is not a direction");
}

absl::StatusOr<stats::CompareOptions> ParseCompareOptions(const Args& args) {
  stats::CompareOptions options;
  absl::StatusOr<double> alpha = ParseBetween(args, kAlpha, 0.05, 0, 1);
  if (!alpha.ok()) return alpha.status();
  options.alpha = *alpha;
  absl::StatusOr<double> tuning =
      ParseNumber(args, kTuning, options.sequential_tuning);
  if (!tuning.ok()) return tuning.status();
  if (!(*tuning > 0)) {
    return Bad(kTuning, args.Get(kTuning.flag, ""), "must be positive");
  }
  options.sequential_tuning = *tuning;
  return options;
}

// A comma-separated list; `parse` reads one item. An empty text is an
// empty list.
template <typename T, typename Parse>
absl::StatusOr<std::vector<T>> ParseList(const std::string& text,
                                         const Form& form, Parse parse,
                                         absl::string_view problem) {
  std::vector<T> out;
  if (text.empty()) return out;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    std::optional<T> value = parse(item);
    if (!value) {
      return Bad(form, text, absl::StrCat("'", item, "' ", problem));
    }
    out.push_back(*value);
  }
  return out;
}

// Prints the error and returns the exit code. INVALID_ARGUMENT comes from the
// input (from the flag checks here, or from the library for what they do not
// catch) and is a usage error.
int Error(const Command& command, const absl::Status& status) {
  if (status.code() == absl::StatusCode::kInvalidArgument) {
    return Usage(command, std::string(status.message()));
  }
  std::cerr << "abexp " << command.name << ": " << status << "\n";
  return kExitFailure;
}

// The status with its message prefixed by the flags it is about.
absl::Status Prefixed(absl::string_view flags, const absl::Status& status) {
  return absl::Status(status.code(),
                      absl::StrCat(flags, ": ", status.message()));
}

// ---- JSON (a Struct printed by protobuf, so it is well-formed and null is
// a real null; Num and Strings come from format.h) ----

Fields& Object(Value* v) {
  return *v->mutable_struct_value()->mutable_fields();
}

Value JsonList(const std::vector<std::optional<double>>& numbers) {
  Value v;
  v.mutable_list_value();  // [] rather than null when empty
  for (const std::optional<double>& n : numbers) {
    *v.mutable_list_value()->add_values() = Num(n);
  }
  return v;
}

Value LiftJson(const stats::Lift& lift, bool with_df) {
  Value v;
  Fields& f = Object(&v);
  f["estimate"] = Num(lift.estimate);
  if (with_df) f["df"] = Num(lift.df);
  f["ci_low"] = Num(lift.ci_low);
  f["ci_high"] = Num(lift.ci_high);
  f["p_value"] = Num(lift.p_value);
  f["standard_error"] = Num(lift.standard_error);
  return v;
}

Value SequentialJson(const stats::SequentialInterval& s) {
  Value v;
  Fields& f = Object(&v);
  f["ci_low"] = Num(s.ci_low);
  f["ci_high"] = Num(s.ci_high);
  f["p_value"] = Num(s.p_value);
  return v;
}

Value BayesJson(const stats::BayesResult& b) {
  Value v;
  Fields& f = Object(&v);
  f["chance_to_beat_control"] = Num(b.chance_to_beat_control);
  f["expected_loss_ship"] = Num(b.expected_loss_ship);
  f["expected_loss_keep"] = Num(b.expected_loss_keep);
  return v;
}

// The comparison's and the Bayesian warnings, each once.
std::vector<std::string> MergeWarnings(std::vector<std::string> a,
                                       const std::vector<std::string>& b) {
  for (const std::string& w : b) {
    if (std::find(a.begin(), a.end(), w) == a.end()) a.push_back(w);
  }
  return a;
}

// ---- Text ----

// Four significant digits, scaled (100 for percent or percentage points),
// with a unit; "n/a" for an undefined figure.
std::string Scaled(std::optional<double> v, double scale,
                   absl::string_view unit) {
  return v ? absl::StrCat(absl::StrFormat("%.4g", *v * scale), unit) : "n/a";
}

std::string Plain(std::optional<double> v) { return Scaled(v, 1, ""); }

std::string Rate(std::optional<double> v) {
  return v ? absl::StrFormat("%.2f%%", *v * 100) : "n/a";
}

// As Scaled, with a sign.
std::string Signed(std::optional<double> v, double scale = 1,
                   absl::string_view unit = "") {
  return v ? absl::StrCat(absl::StrFormat("%+.4g", *v * scale), unit) : "n/a";
}

std::string Interval(std::optional<double> low, std::optional<double> high,
                     double scale = 1, absl::string_view unit = "") {
  if (!low || !high) return "n/a";
  return absl::StrCat("[", Signed(low, scale), ", ", Signed(high, scale), "]",
                      unit);
}

std::string Chance(std::optional<double> p) {
  if (!p) return "n/a";
  // Never round a chance to a certainty.
  if (*p > 0.9999 && *p < 1) return ">99.99%";
  if (*p < 0.0001 && *p > 0) return "<0.01%";
  return absl::StrFormat("%.2f%%", *p * 100);
}

std::string CiLabel(double alpha) {
  return absl::StrFormat("%g%% CI", 100 * (1 - alpha));
}

// One verdict line: the fixed-horizon test, or the always-valid one.
void PrintVerdict(absl::string_view test, std::optional<double> p,
                  std::optional<double> estimate, double alpha,
                  std::ostream& out) {
  out << test;
  if (!p) {
    out << "no verdict at α=" << alpha
        << ": the p-value is undefined (see the warnings)\n";
    return;
  }
  if (*p < alpha) {
    out << "significant at α=" << alpha << " (p = " << Plain(p)
        << "): the treatment is "
        << (estimate.value_or(0) > 0 ? "higher" : "lower") << " than control\n";
  } else {
    out << "not significant at α=" << alpha << " (p = " << Plain(p) << ")\n";
  }
}

void PrintWarnings(const std::vector<std::string>& warnings,
                   std::ostream& out) {
  for (const std::string& w : warnings) out << "warning: " << w << "\n";
}

// An arm echoed in the JSON output: {"units": 1000, "conversions": 120, ...}.
Value ArmJson(
    std::initializer_list<std::pair<const char*, std::optional<double>>>
        fields) {
  Value v;
  for (const auto& [name, value] : fields) Object(&v)[name] = Num(value);
  return v;
}

// What proportions and means print once the arms are compared: in JSON the
// arms, lifts, Bayesian figures and warnings; in text the arms table, the
// effects table, the Bayesian figures, the verdicts and the warnings.
// Differences of means are in the metric's units and show df; differences
// of rates are in percentage points.
int PrintComparisonResult(const stats::Comparison& c,
                          const stats::BayesResult& b, double alpha, bool means,
                          Value control_json, Value treatment_json,
                          const Table& arms, bool json) {
  const std::vector<std::string> warnings =
      MergeWarnings(c.warnings, b.warnings);
  if (json) {
    Struct s;
    Fields& f = *s.mutable_fields();
    f["control"] = std::move(control_json);
    f["treatment"] = std::move(treatment_json);
    f["alpha"] = Num(alpha);
    f["absolute"] = LiftJson(c.absolute, /*with_df=*/means);
    f["relative"] = LiftJson(c.relative, /*with_df=*/false);
    f["bayes"] = BayesJson(b);
    f["sequential"] = SequentialJson(c.sequential);
    f["warnings"] = Strings(warnings);
    std::cout << ToJson(s);
    return kExitOk;
  }
  const double scale = means ? 1 : 100;
  const absl::string_view unit = means ? "" : " pp";
  std::ostream& out = std::cout;
  arms.Print(out);
  out << "\n";
  Table t;
  std::vector<std::string> head = {"", "estimate", CiLabel(alpha), "p-value"};
  if (means) head.push_back("df");
  t.AddRow(head);
  std::vector<std::string> absolute = {
      "absolute", Signed(c.absolute.estimate, scale, unit),
      Interval(c.absolute.ci_low, c.absolute.ci_high, scale, unit),
      Plain(c.absolute.p_value)};
  if (means) {
    absolute.push_back(c.absolute.df ? absl::StrFormat("%.1f", *c.absolute.df)
                                     : "n/a");
  }
  t.AddRow(absolute);
  t.AddRow({"relative", Signed(c.relative.estimate, 100, "%"),
            Interval(c.relative.ci_low, c.relative.ci_high, 100, "%"),
            Plain(c.relative.p_value)});
  t.AddRow({"always-valid", Signed(c.absolute.estimate, scale, unit),
            Interval(c.sequential.ci_low, c.sequential.ci_high, scale, unit),
            Plain(c.sequential.p_value)});
  t.Print(out);
  out << "\n";
  Table bayes;
  bayes.AddRow({"chance to beat control", Chance(b.chance_to_beat_control)});
  bayes.AddRow(
      {"expected loss if shipped", Scaled(b.expected_loss_ship, scale, unit)});
  bayes.AddRow(
      {"expected loss if kept", Scaled(b.expected_loss_keep, scale, unit)});
  bayes.Print(out);
  out << "\n";
  PrintVerdict("", c.absolute.p_value, c.absolute.estimate, alpha, out);
  // One "undefined" line is enough when both are.
  if (c.sequential.p_value || c.absolute.p_value) {
    PrintVerdict("always-valid (safe to look every day): ",
                 c.sequential.p_value, c.absolute.estimate, alpha, out);
  }
  PrintWarnings(warnings, out);
  return kExitOk;
}

// Start() for the stats subcommands, none of which takes a positional
// argument.
std::optional<int> Begin(const Command& command,
                         const std::vector<std::string>& argv, Args* args,
                         bool* json) {
  if (std::optional<int> done = Start(command, argv, args, json)) return done;
  if (!args->positional.empty()) {
    return Usage(command, "unexpected argument '" + args->positional[0] + "'");
  }
  return std::nullopt;
}

// ---- Subcommands ----

constexpr Form kControlRate{"control", "X/N", "120/1000"};
constexpr Form kTreatmentRate{"treatment", "X/N", "140/1000"};

int RunProportions(const std::vector<std::string>& argv) {
  const Command command{
      "stats proportions",
      absl::StrCat(
          "usage: abexp stats proportions --control X/N --treatment X/N "
          "[--alpha A] [--tuning N*] [--better higher|lower]\n\n"
          "Compares two conversion rates, X of N units converted per arm: "
          "the absolute\ndifference (treatment - control) and the relative "
          "lift, each with its\nconfidence interval and p-value (unpooled "
          "Wald z-test); the chance that the\ntreatment beats control and the "
          "expected loss of shipping or keeping it\n(Beta(1,1) prior); and "
          "the always-valid interval, which stays valid however\noften you "
          "look (docs/statistics.md).\n\n"
          "  --control X/N        control conversions/units, e.g. 120/1000\n"
          "  --treatment X/N      treatment conversions/units, e.g. "
          "140/1000\n",
          kCompareFlags, kFormatFlag,
          "\nJSON: absolute {estimate, ci_low, ci_high, p_value}, relative "
          "{...},\nbayes {chance_to_beat_control, expected_loss_ship, "
          "expected_loss_keep},\nsequential {ci_low, ci_high, p_value}, "
          "warnings [...].\n"),
      {"control", "treatment", "alpha", "tuning", "better", "format"},
      {}};
  Args args;
  bool json = false;
  if (std::optional<int> done = Begin(command, argv, &args, &json)) {
    return *done;
  }
  absl::StatusOr<stats::BinomialArm> control =
      ParseConversions(args, kControlRate);
  if (!control.ok()) return Error(command, control.status());
  absl::StatusOr<stats::BinomialArm> treatment =
      ParseConversions(args, kTreatmentRate);
  if (!treatment.ok()) return Error(command, treatment.status());
  absl::StatusOr<stats::CompareOptions> options = ParseCompareOptions(args);
  if (!options.ok()) return Error(command, options.status());
  absl::StatusOr<stats::Direction> direction = ParseDirection(args);
  if (!direction.ok()) return Error(command, direction.status());

  absl::StatusOr<stats::Comparison> c =
      stats::CompareProportions(*control, *treatment, *options);
  if (!c.ok()) return Error(command, c.status());
  absl::StatusOr<stats::BayesResult> b =
      stats::BayesProportions(*control, *treatment, *direction);
  if (!b.ok()) return Error(command, b.status());
  Table arms;
  arms.AddRow({"", "conversions", "units", "rate"});
  arms.AddRow({"control", absl::StrCat(control->conversions),
               absl::StrCat(control->units), Rate(c->control)});
  arms.AddRow({"treatment", absl::StrCat(treatment->conversions),
               absl::StrCat(treatment->units), Rate(c->treatment)});
  return PrintComparisonResult(*c, *b, options->alpha, /*means=*/false,
                               ArmJson({{"conversions", control->conversions},
                                        {"units", control->units},
                                        {"rate", c->control}}),
                               ArmJson({{"conversions", treatment->conversions},
                                        {"units", treatment->units},
                                        {"rate", c->treatment}}),
                               arms, json);
}

constexpr Form kControlMean{"control", "N,MEAN,SD", "5000,12.5,30"};
constexpr Form kTreatmentMean{"treatment", "N,MEAN,SD", "5100,13.4,31"};

int RunMeans(const std::vector<std::string>& argv) {
  const Command command{
      "stats means",
      absl::StrCat(
          "usage: abexp stats means --control N,MEAN,SD --treatment "
          "N,MEAN,SD [--alpha A] [--tuning N*] [--better higher|lower]\n\n"
          "Compares two means of a per-unit value (e.g. revenue per user, "
          "counting units\nwith 0): Welch's t-test and interval for the "
          "absolute difference, the\nrelative lift (delta method), the "
          "always-valid interval, and a Gaussian\napproximation of the chance "
          "to beat control (docs/statistics.md).\nSD is the sample standard "
          "deviation (divisor N - 1).\n\n"
          "  --control N,MEAN,SD  control units, mean and SD, e.g. "
          "5000,12.5,30\n"
          "  --treatment N,MEAN,SD\n"
          "                       treatment units, mean and SD, e.g. "
          "5100,13.4,31\n",
          kCompareFlags, kFormatFlag,
          "\nJSON: absolute {estimate, df, ci_low, ci_high, p_value}, "
          "relative {estimate,\nci_low, ci_high, p_value}, sequential {...}, "
          "bayes {...}, warnings [...].\n"),
      {"control", "treatment", "alpha", "tuning", "better", "format"},
      {}};
  Args args;
  bool json = false;
  if (std::optional<int> done = Begin(command, argv, &args, &json)) {
    return *done;
  }
  absl::StatusOr<stats::MeanSummary> control = ParseSummary(args, kControlMean);
  if (!control.ok()) return Error(command, control.status());
  absl::StatusOr<stats::MeanSummary> treatment =
      ParseSummary(args, kTreatmentMean);
  if (!treatment.ok()) return Error(command, treatment.status());
  absl::StatusOr<stats::CompareOptions> options = ParseCompareOptions(args);
  if (!options.ok()) return Error(command, options.status());
  absl::StatusOr<stats::Direction> direction = ParseDirection(args);
  if (!direction.ok()) return Error(command, direction.status());

  absl::StatusOr<stats::Comparison> c =
      stats::CompareMeanSummaries(*control, *treatment, *options);
  if (!c.ok()) return Error(command, c.status());
  // Without an estimate and standard error the comparison's warnings
  // already say why, and the Bayesian figures stay null.
  stats::BayesResult b;
  if (c->absolute.estimate && c->absolute.standard_error) {
    absl::StatusOr<stats::BayesResult> gaussian = stats::BayesGaussian(
        *c->absolute.estimate, *c->absolute.standard_error, *direction);
    if (!gaussian.ok()) return Error(command, gaussian.status());
    b = *std::move(gaussian);
  }
  Table arms;
  arms.AddRow({"", "units", "mean", "sd"});
  arms.AddRow({"control", absl::StrCat(control->units), Plain(control->mean),
               Plain(control->sd)});
  arms.AddRow({"treatment", absl::StrCat(treatment->units),
               Plain(treatment->mean), Plain(treatment->sd)});
  return PrintComparisonResult(*c, b, options->alpha, /*means=*/true,
                               ArmJson({{"units", control->units},
                                        {"mean", control->mean},
                                        {"sd", control->sd}}),
                               ArmJson({{"units", treatment->units},
                                        {"mean", treatment->mean},
                                        {"sd", treatment->sd}}),
                               arms, json);
}

constexpr Form kObserved{"observed", "exposed units per variant", "5040,4960"};
constexpr Form kWeights{"weights", "one weight per variant", "0.5,0.5"};
constexpr Form kThreshold{"threshold", "a p-value in (0, 1)", "0.001"};

Command SrmCommand() {
  return Command{
      "stats srm",
      absl::StrCat(
          "usage: abexp stats srm --observed N1,N2,... [--weights "
          "W1,W2,...] [--threshold P]\n\n"
          "Checks the exposed units per variant against the configured "
          "weights\n(Pearson's chi-square, df = variants - 1). A mismatch "
          "means units were lost\nor added unevenly, and then no comparison "
          "between the variants can be\ntrusted.\n\n"
          "  --observed N1,N2,... exposed units per variant, e.g. 5040,4960\n"
          "  --weights W1,W2,...  the configured weights, in the same order; "
          "any scale,\n                       e.g. 0.5,0.5 or 95,5 "
          "(default: equal)\n"
          "  --threshold P        flag a mismatch when p < P (default: "
          "0.001)\n",
          kFormatFlag,
          "\nJSON: {chi2, p_value, mismatch, df, warnings}; chi2 and p_value "
          "are null when\nthe check is undefined (no units, fewer than 2 "
          "weighted variants).\n"),
      {"observed", "weights", "threshold", "format"},
      {}};
}

// --observed: at least one count of units.
absl::StatusOr<std::vector<int64_t>> ParseObserved(const Args& args) {
  absl::StatusOr<std::string> text = Required(args, kObserved);
  if (!text.ok()) return text.status();
  absl::StatusOr<std::vector<int64_t>> observed = ParseList<int64_t>(
      *text, kObserved,
      [](absl::string_view item) -> std::optional<int64_t> {
        int64_t n = 0;
        if (!absl::SimpleAtoi(item, &n) || n < 0) return std::nullopt;
        return n;
      },
      "is not a whole number of units, 0 or more");
  if (observed.ok() && observed->empty()) {
    return Bad(kObserved, "", "no variants");
  }
  return observed;
}

// --weights: one per variant; equal weights when absent.
absl::StatusOr<std::vector<double>> ParseWeights(const Args& args,
                                                 size_t variants) {
  if (args.flags.count(kWeights.flag) == 0) {
    return std::vector<double>(variants, 1.0);
  }
  const std::string text = args.Get(kWeights.flag, "");
  absl::StatusOr<std::vector<double>> weights = ParseList<double>(
      text, kWeights,
      [](absl::string_view item) -> std::optional<double> {
        double w = 0;
        if (!ParseFinite(item, &w) || w < 0) return std::nullopt;
        return w;
      },
      "is not a weight (a finite number, 0 or more)");
  if (weights.ok() && weights->size() != variants) {
    return Bad(kWeights, text,
               absl::StrCat(weights->size(), " weights for ", variants,
                            " variants in --observed"));
  }
  return weights;
}

void PrintSrmJson(const stats::SrmResult& r) {
  Struct s;
  Fields& f = *s.mutable_fields();
  f["chi2"] = Num(r.chi2);
  f["p_value"] = Num(r.p_value);
  f["mismatch"].set_bool_value(r.mismatch);
  f["df"] = Num(r.degrees_of_freedom);
  f["warnings"] = Strings(r.warnings);
  std::cout << ToJson(s);
}

// The observed and expected shares per variant, the test, and the verdict.
void PrintSrmText(const std::vector<int64_t>& observed,
                  const std::vector<double>& weights, const stats::SrmResult& r,
                  double threshold) {
  double total = 0;
  double weight_sum = 0;
  for (size_t i = 0; i < observed.size(); ++i) {
    total += static_cast<double>(observed[i]);
    weight_sum += weights[i];
  }
  Table t;
  t.AddRow({"variant", "observed", "share", "expected share"});
  for (size_t i = 0; i < observed.size(); ++i) {
    t.AddRow({absl::StrCat(i), absl::StrCat(observed[i]),
              total > 0 ? absl::StrFormat("%.2f%%", observed[i] / total * 100)
                        : "n/a",
              weight_sum > 0
                  ? absl::StrFormat("%.2f%%", weights[i] / weight_sum * 100)
                  : "n/a"});
  }
  t.Print(std::cout);
  std::cout << "\nchi2 = " << Plain(r.chi2) << ", df = " << r.degrees_of_freedom
            << ", p = " << Plain(r.p_value) << "\n";
  PrintWarnings(r.warnings, std::cout);
  if (r.mismatch) {
    std::cout << "MISMATCH: do not trust the results of these variants (p < "
              << threshold
              << "); find why units were lost or added unevenly first\n";
  } else if (r.p_value) {
    std::cout << "OK: no sample-ratio mismatch (p >= " << threshold << ")\n";
  } else {
    std::cout << "no verdict: the check is undefined (see the warnings)\n";
  }
}

int RunSrm(const std::vector<std::string>& argv) {
  const Command command = SrmCommand();
  Args args;
  bool json = false;
  if (std::optional<int> done = Begin(command, argv, &args, &json)) {
    return *done;
  }
  absl::StatusOr<std::vector<int64_t>> observed = ParseObserved(args);
  if (!observed.ok()) return Error(command, observed.status());
  absl::StatusOr<std::vector<double>> weights =
      ParseWeights(args, observed->size());
  if (!weights.ok()) return Error(command, weights.status());
  stats::SrmOptions options;
  absl::StatusOr<double> threshold =
      ParseBetween(args, kThreshold, options.threshold, 0, 1);
  if (!threshold.ok()) return Error(command, threshold.status());
  options.threshold = *threshold;

  absl::StatusOr<stats::SrmResult> r =
      stats::CheckSampleRatio(*observed, *weights, options);
  if (!r.ok()) {
    // Left for the library: e.g. all weights 0.
    return Error(command, Prefixed("--observed/--weights", r.status()));
  }
  if (json) {
    PrintSrmJson(*r);
  } else {
    PrintSrmText(*observed, *weights, *r, options.threshold);
  }
  return kExitOk;
}

constexpr Form kBaseline{"baseline", "a conversion rate in (0, 1)", "0.02"};
constexpr Form kMde{"mde", "a relative lift, non-zero", "0.10 for +10%"};
constexpr Form kPower{"power", "a probability in [0.5, 1)", "0.8"};

Command SampleSizeCommand() {
  return Command{
      "stats sample-size",
      absl::StrCat(
          "usage: abexp stats sample-size --baseline P --mde M [--alpha A] "
          "[--power B]\n\n"
          "Units each variant needs to detect a relative change M of a "
          "conversion rate P\nwith a two-sided test (Fleiss' formula without "
          "continuity correction, as\nR's power.prop.test).\n\n"
          "  --baseline P         the control's conversion rate, e.g. 0.02 "
          "for 2%\n"
          "  --mde M              the relative lift to detect, e.g. 0.10 for "
          "+10%\n                       (-0.05 for -5%)\n"
          "  --alpha A            two-sided significance level (default: "
          "0.05)\n"
          "  --power B            chance to detect a lift of exactly M, in "
          "[0.5, 1)\n                       (default: 0.8)\n",
          kFormatFlag, "\nJSON: {per_variant, per_variant_exact, ...}.\n"),
      {"baseline", "mde", "alpha", "power", "format"},
      {}};
}

// --alpha and --power.
absl::StatusOr<stats::PowerOptions> ParsePowerOptions(const Args& args) {
  stats::PowerOptions options;
  absl::StatusOr<double> alpha = ParseBetween(args, kAlpha, 0.05, 0, 1);
  if (!alpha.ok()) return alpha.status();
  options.alpha = *alpha;
  absl::StatusOr<double> power = ParseNumber(args, kPower, options.power);
  if (!power.ok()) return power.status();
  if (!(*power >= 0.5 && *power < 1)) {
    return Bad(kPower, args.Get(kPower.flag, ""), "must be in [0.5, 1)");
  }
  options.power = *power;
  return options;
}

void PrintSampleSize(const stats::SampleSizeResult& r, double mde,
                     const stats::PowerOptions& options, bool json) {
  if (json) {
    Struct s;
    Fields& f = *s.mutable_fields();
    f["per_variant"] = Num(static_cast<double>(r.per_variant));
    f["per_variant_exact"] = Num(r.per_variant_exact);
    f["baseline"] = Num(r.baseline);
    f["treatment"] = Num(r.treatment);
    f["mde"] = Num(mde);
    f["alpha"] = Num(options.alpha);
    f["power"] = Num(options.power);
    std::cout << ToJson(s);
    return;
  }
  Table t;
  t.AddRow({"per variant", absl::StrCat(r.per_variant, " units")});
  t.AddRow({"rates",
            absl::StrFormat("%.4g%% -> %.4g%% (%+.4g%% relative)",
                            r.baseline * 100, r.treatment * 100, mde * 100)});
  t.AddRow({"test", absl::StrFormat("two-sided, α=%g, power %g%%",
                                    options.alpha, options.power * 100)});
  t.Print(std::cout);
}

int RunSampleSize(const std::vector<std::string>& argv) {
  const Command command = SampleSizeCommand();
  Args args;
  bool json = false;
  if (std::optional<int> done = Begin(command, argv, &args, &json)) {
    return *done;
  }
  for (const Form& form : {kBaseline, kMde}) {
    if (absl::StatusOr<std::string> t = Required(args, form); !t.ok()) {
      return Error(command, t.status());
    }
  }
  absl::StatusOr<double> baseline = ParseBetween(args, kBaseline, 0, 0, 1);
  if (!baseline.ok()) return Error(command, baseline.status());
  absl::StatusOr<double> mde = ParseNumber(args, kMde, 0);
  if (!mde.ok()) return Error(command, mde.status());
  if (*mde == 0) {
    return Error(command, Bad(kMde, args.Get(kMde.flag, ""),
                              "a lift of 0 cannot be detected"));
  }
  absl::StatusOr<stats::PowerOptions> options = ParsePowerOptions(args);
  if (!options.ok()) return Error(command, options.status());

  absl::StatusOr<stats::SampleSizeResult> r =
      stats::BinomialSampleSize(*baseline, *mde, *options);
  if (!r.ok()) {
    // Left for the library: a treatment rate outside (0, 1), or an MDE too
    // small to ever detect.
    return Error(command, Prefixed(absl::StrCat("--baseline ", *baseline,
                                                " --mde ", *mde),
                                   r.status()));
  }
  PrintSampleSize(*r, *mde, *options, json);
  return kExitOk;
}

constexpr Form kPValues{"p-values", "comma-separated p-values in [0, 1]",
                        "0.01,0.04,0.03"};
constexpr Form kMethod{"method", "holm or bh", "holm"};

int RunAdjust(const std::vector<std::string>& argv) {
  const Command command{
      "stats adjust",
      absl::StrCat(
          "usage: abexp stats adjust --p-values P1,P2,... [--method "
          "holm|bh]\n\n"
          "Adjusts a family of p-values for multiple comparisons, e.g. every "
          "variant x\nmetric of one experiment. Holm keeps the chance of any "
          "false positive at\nmost alpha; Benjamini-Hochberg keeps the "
          "expected share of false positives\namong the significant results "
          "at most alpha.\n\n"
          "  --p-values P1,P2,... the raw p-values, e.g. 0.01,0.04,0.03; "
          "`null` for an\n                       undefined test (left out "
          "of the family)\n"
          "  --method holm|bh     the adjustment (default: holm)\n",
          kFormatFlag,
          "\nJSON: {adjusted: [...], method, warnings}; adjusted in input "
          "order.\n"),
      {"p-values", "method", "format"},
      {}};
  Args args;
  bool json = false;
  if (std::optional<int> done = Begin(command, argv, &args, &json)) {
    return *done;
  }
  const std::string method_text = args.Get(kMethod.flag, "holm");
  absl::StatusOr<stats::AdjustMethod> method =
      stats::ParseAdjustMethod(method_text);
  if (!method.ok()) {
    return Error(command, Bad(kMethod, method_text, "unknown method"));
  }
  absl::StatusOr<std::string> text = Required(args, kPValues);
  if (!text.ok()) return Error(command, text.status());
  absl::StatusOr<std::vector<std::optional<double>>> p_values =
      ParseList<std::optional<double>>(
          *text, kPValues,
          [](absl::string_view item) -> std::optional<std::optional<double>> {
            if (item == "null") return std::optional<double>();
            double p = 0;
            if (!ParseFinite(item, &p) || p < 0 || p > 1) return std::nullopt;
            return std::optional<double>(p);
          },
          "is not a p-value in [0, 1]");
  if (!p_values.ok()) return Error(command, p_values.status());

  absl::StatusOr<stats::AdjustResult> r =
      stats::AdjustPValues(*p_values, *method);
  if (!r.ok()) return Error(command, r.status());

  if (json) {
    Struct s;
    Fields& f = *s.mutable_fields();
    f["method"].set_string_value(std::string(stats::AdjustMethodName(*method)));
    f["adjusted"] = JsonList(r->adjusted);
    f["warnings"] = Strings(r->warnings);
    std::cout << ToJson(s);
    return kExitOk;
  }
  Table t;
  t.AddRow({"p-value", absl::StrCat("adjusted (", method_text, ")")});
  for (size_t i = 0; i < p_values->size(); ++i) {
    t.AddRow({Plain((*p_values)[i]), Plain(r->adjusted[i])});
  }
  t.Print(std::cout);
  PrintWarnings(r->warnings, std::cout);
  return kExitOk;
}

}  // namespace

int RunStats(const std::vector<std::string>& argv) {
  if (argv.empty()) {
    std::cerr << kStatsUsage;
    return kExitUsage;
  }
  const std::string& sub = argv[0];
  if (sub == "--help" || sub == "-h" || sub == "help") {
    std::cout << kStatsUsage;
    return kExitOk;
  }
  const std::vector<std::string> rest(argv.begin() + 1, argv.end());
  if (sub == "proportions") return RunProportions(rest);
  if (sub == "means") return RunMeans(rest);
  if (sub == "srm") return RunSrm(rest);
  if (sub == "sample-size") return RunSampleSize(rest);
  if (sub == "adjust") return RunAdjust(rest);
  std::cerr << "abexp stats: unknown subcommand '" << sub
            << "'; expected proportions, means, srm, sample-size or adjust\n"
            << "Run `abexp stats --help` for usage.\n";
  return kExitUsage;
}

}  // namespace abexp::cli
