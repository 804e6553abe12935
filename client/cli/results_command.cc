#include "client/cli/results_command.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "client/cli/command.h"
#include "client/cli/format.h"
#include "client/client.h"
#include "client/report/figures.h"
#include "google/protobuf/struct.pb.h"

namespace abexp::cli {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;
using report::AsTotals;
using report::ConfidenceLevel;
using report::FindMetric;
using Fields = google::protobuf::Map<std::string, Value>;

const std::string kUsage = absl::StrCat(
    R"(usage: abexp results EXPERIMENT [--metric KEY]... [--alpha A] [--adjust holm|bh]
                     [--dimension NAME [--adjust_segments true]]
                     [--server HOST:PORT] [--timeout DURATION] [--format text|json|csv]
                     [--tls_ca_file FILE] [--token TOKEN] ...

Shows how each variant of an experiment compares with its control (the first
variant in the config), from the exposures and events abexp-server has
recorded: per metric the estimate, the absolute and relative lift with their
confidence intervals, the p-value and the adjusted p-value, the chance to
beat control (to be better: lower, for a metric where lower is better) and
the always-valid interval (safe to look at every day); and
the sample-ratio check, the units exposed to several variants, the config
versions seen, the guardrail verdicts and a decision.

  --metric KEY         only this metric; repeatable (default: all of the
                       experiment's). The decision always uses the primary
                       metric and the guardrails.
  --alpha A            two-sided significance level, in (0, 1); sets the
                       width of every interval (default: 0.05)
  --adjust holm|bh     how the p-values of variants x metrics are adjusted
                       for multiple comparisons: Holm (family-wise error
                       rate) or Benjamini-Hochberg (false discovery rate)
                       (default: holm)
  --dimension NAME     also break the results down by this dimension of the
                       experiment (config dimensions:, e.g. platform): the
                       full comparison and a sample-ratio check per value.
                       Exploratory: p-values are adjusted within each value
                       only, not across values
  --adjust_segments true|false
                       with --dimension: adjust the p-values across the
                       dimension's values too (one family, by --adjust)
                       (default: false)
  --server HOST:PORT   abexp-server address (default: 127.0.0.1:50051)
  --timeout DURATION   deadline, e.g. 500ms, 2s (default: 5s)
)",
    kSecurityFlagsHelp, R"(  --format text|json|csv
                       text (default): a report to read; json: one object;
                       csv: a header row, then one row per metric x variant.
                       Keys and columns: docs/statistics.md, "CLI `abexp
                       results`". Undefined figures are null in JSON and
                       empty in CSV; full precision in both.

Exit codes: 0 the results were printed (whatever they say), 1 server error
(e.g. an unknown experiment: the message lists the known ones), 2 usage
error (including a --alpha, --adjust or --metric the server rejects),
3 server unreachable (or it cannot read Redis).
)");

// Text lines are wrapped at this width, and the bar that pictures an
// interval against zero takes what is left of it in its table, between
// kMinBarWidth and kMaxBarWidth characters.
constexpr size_t kTextWidth = 120;
constexpr int kMinBarWidth = 11;
constexpr int kMaxBarWidth = 21;

std::optional<double> Opt(bool has, double value) {
  return has ? std::optional<double>(value) : std::nullopt;
}

// The metric keys in the response's order (every variant lists the same).
std::vector<std::string> MetricKeys(const v1::GetResultsResponse& r) {
  std::vector<std::string> keys;
  if (r.variants().empty()) return keys;
  for (const v1::MetricResult& m : r.variants(0).metrics()) {
    keys.push_back(m.metric_key());
  }
  return keys;
}

std::string DecisionKindName(v1::DecisionKind kind) {
  const std::string name = v1::DecisionKind_Name(kind);
  return absl::AsciiStrToLower(absl::StripPrefix(name, "DECISION_KIND_"));
}

// ---- Text ----

bool IsRate(const v1::MetricResult& m) {
  return m.type() == "binomial" || m.type() == "retention" ||
         m.type() == "funnel";
}

// Rates print as percent and their differences as percentage points.
double Scale(const v1::MetricResult& m) { return IsRate(m) ? 100 : 1; }

// The largest magnitude of a column, which sets its decimals: `digits`
// significant digits for the largest value and the same decimals for the
// rest, so that a column reads evenly.
class Column {
 public:
  explicit Column(int digits) : digits_(digits) {}
  void Add(std::optional<double> v) {
    if (v && std::isfinite(*v)) max_ = std::max(max_, std::fabs(*v));
  }
  int decimals() const {
    if (!(max_ > 0)) return digits_ - 1;
    const int d = digits_ - 1 - static_cast<int>(std::floor(std::log10(max_)));
    return std::clamp(d, 0, 9);
  }

 private:
  const int digits_;
  double max_ = 0;
};

std::string Fixed(double v, int decimals, bool sign = false) {
  return sign ? absl::StrFormat("%+.*f", decimals, v)
              : absl::StrFormat("%.*f", decimals, v);
}

// "[low,high]", or "-" when either end is undefined.
std::string Interval(std::optional<double> low, std::optional<double> high,
                     double scale, int decimals) {
  if (!low || !high) return "-";
  return absl::StrCat("[", Fixed(*low * scale, decimals), ",",
                      Fixed(*high * scale, decimals), "]");
}

// "+2.00 [-0.74,4.74]": the lift and its interval.
std::string Lift(const v1::Effect& e, double scale, int decimals) {
  if (!e.has_estimate()) return "-";
  std::string s = Fixed(e.estimate() * scale, decimals, /*sign=*/true);
  if (e.has_ci_low() && e.has_ci_high()) {
    absl::StrAppend(&s, " ",
                    Interval(e.ci_low(), e.ci_high(), scale, decimals));
  }
  return s;
}

// Prints `text` wrapped at kTextWidth: the first line starts with `first`,
// the others with `rest`.
void PrintWrapped(absl::string_view text, absl::string_view first,
                  absl::string_view rest, std::ostream& out) {
  std::string line(first);
  bool line_has_words = false;
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (line_has_words && line.size() + 1 + word.size() > kTextWidth) {
      out << line << "\n";
      line = std::string(rest);
      line_has_words = false;
    }
    if (line_has_words) line += ' ';
    absl::StrAppend(&line, word);
    line_has_words = true;
  }
  out << line << "\n";
}

// Where the intervals of one metric's variants sit relative to zero, on one
// scale from min(0, lows) to max(0, highs). Zero has its own column, and a
// value of either sign lands strictly on its side of it, however close to
// zero it is, so "the interval excludes zero" can always be seen.
class Bar {
 public:
  // nullopt when there is no interval to draw (or all are exactly 0).
  // REQUIRES: width >= 3.
  static std::optional<Bar> Of(
      const std::vector<std::pair<double, double>>& intervals, int width) {
    double lo = 0, hi = 0;
    for (const auto& [low, high] : intervals) {
      if (!std::isfinite(low) || !std::isfinite(high)) continue;
      lo = std::min(lo, low);
      hi = std::max(hi, high);
    }
    if (!(hi > lo)) return std::nullopt;
    int zero = static_cast<int>(std::lround(-lo / (hi - lo) * (width - 1)));
    if (hi > 0) zero = std::min(zero, width - 2);
    if (lo < 0) zero = std::max(zero, 1);
    return Bar(lo, hi, width, zero);
  }

  double lo() const { return lo_; }
  double hi() const { return hi_; }

  // width() characters: "[---]" the interval, "*" the estimate, "|" zero.
  // "-" when the interval is undefined.
  std::string Draw(const v1::Effect& e) const {
    if (!e.has_ci_low() || !e.has_ci_high() || !e.has_estimate()) return "-";
    std::string s(width_, ' ');
    const int low = Col(e.ci_low());
    const int high = Col(e.ci_high());
    for (int c = low; c <= high; ++c) s[c] = '-';
    s[low] = '[';
    s[high] = ']';
    s[zero_] = '|';
    s[Col(e.estimate())] = '*';
    return s;
  }

 private:
  Bar(double lo, double hi, int width, int zero)
      : lo_(lo), hi_(hi), width_(width), zero_(zero) {}

  int Col(double x) const {
    if (x > 0) {
      const double right = width_ - 1 - zero_;
      return zero_ + std::max(1, static_cast<int>(std::lround(std::min(x, hi_) /
                                                              hi_ * right)));
    }
    if (x < 0) {
      return zero_ - std::max(1, static_cast<int>(std::lround(std::max(x, lo_) /
                                                              lo_ * zero_)));
    }
    return zero_;
  }

  double lo_, hi_;
  int width_;
  int zero_;
};

// A mismatch shouted between rules of '!' ("SAMPLE RATIO MISMATCH: <what>
// NOT TRUSTWORTHY ..."), or the check's warnings.
void PrintSrmWarnings(const v1::SampleRatio& srm, const std::string& what,
                      std::ostream& out) {
  if (srm.mismatch()) {
    const std::string rule(kTextWidth, '!');
    out << "\n" << rule << "\n";
    PrintWrapped(
        absl::StrCat("SAMPLE RATIO MISMATCH: ", what,
                     " NOT TRUSTWORTHY. Units were lost or added unevenly "
                     "between the variants, so every figure below may be "
                     "biased."),
        "!!! ", "!!! ", out);
    for (const std::string& w : srm.warnings())
      PrintWrapped(w, "!!! ", "!!! ", out);
    out << rule << "\n";
  } else {
    for (const std::string& w : srm.warnings()) {
      PrintWrapped(w, "warning: ", "  ", out);
    }
  }
}

std::string SrmSummary(const v1::SampleRatio& srm) {
  const std::string figures = absl::StrCat(
      "chi2 = ", srm.has_chi2() ? absl::StrFormat("%.3g", srm.chi2()) : "n/a",
      ", p = ", report::FormatPValue(Opt(srm.has_p_value(), srm.p_value())));
  if (srm.mismatch()) {
    return absl::StrCat("MISMATCH (", figures, "): NOT TRUSTWORTHY");
  }
  if (srm.has_p_value()) return absl::StrCat("ok (", figures, ")");
  return "not checked (see the warning)";
}

void PrintHead(const v1::GetResultsResponse& r, std::ostream& out) {
  Table head;
  head.AddRow({"experiment",
               absl::StrCat(r.experiment_key(), " (phase ", r.phase(), ")")});
  head.AddRow(
      {"config version", absl::StrCat(r.config_version(), " (served now)")});
  std::vector<std::string> seen;
  for (const v1::ConfigVersionSeen& v : r.config_versions()) {
    seen.push_back(
        absl::StrCat(v.version(), " (", v.exposures(),
                     v.exposures() == 1 ? " exposure)" : " exposures)"));
  }
  head.AddRow({"versions seen", seen.empty() ? "none (no exposures yet)"
                                             : absl::StrJoin(seen, ", ")});
  head.AddRow(
      {"alpha", absl::StrCat(r.alpha(), " (", ConfidenceLevel(r.alpha()),
                             " intervals)")});
  head.AddRow(
      {"adjustment", r.adjust_method() == "bh"
                         ? "bh (Benjamini-Hochberg: false discovery rate)"
                         : absl::StrCat(r.adjust_method(),
                                        " (Holm: family-wise error rate)")});
  const v1::SampleRatio& srm = r.srm();
  head.AddRow({"sample ratio", SrmSummary(srm)});
  head.AddRow({"multi-exposed",
               absl::StrCat(r.multi_exposed_units(),
                            r.multi_exposed_units() == 1 ? " unit" : " units",
                            " (exposed to several variants; left out of every "
                            "figure)")});
  head.Print(out);
  PrintSrmWarnings(srm, "THESE RESULTS ARE", out);
}

void PrintLegend(const v1::GetResultsResponse& r, std::ostream& out) {
  const std::string level = ConfidenceLevel(r.alpha());
  out << "\n";
  PrintWrapped(
      absl::StrCat(
          "Lifts are variant - control, with their ", level,
          " confidence interval [low,high]; pp = percentage points. P, ADJ "
          "P: the p-value of the absolute lift, raw and adjusted (",
          r.adjust_method(),
          "). CHANCE: chance that the variant is better than control "
          "(lower, where lower is better). ALWAYS-VALID: the ",
          level,
          " interval that stays valid however often you look. The bar: the "
          "[interval] of the absolute lift, * its estimate, | zero."),
      "", "", out);
}

// One metric's rows, control first: each variant that has the metric.
using MetricRows =
    std::vector<std::pair<const v1::VariantResult*, const v1::MetricResult*>>;

MetricRows RowsOf(const v1::GetResultsResponse& r, const std::string& key) {
  MetricRows rows;
  for (const v1::VariantResult& v : r.variants()) {
    if (const v1::MetricResult* m = FindMetric(v, key))
      rows.emplace_back(&v, m);
  }
  return rows;
}

// The decimals of one metric's number columns, and the absolute-lift
// intervals its bar must span.
struct MetricScale {
  // Relative lifts are approximate (the delta method): two digits do.
  Column estimate{3}, absolute{3}, relative{2};
  std::vector<std::pair<double, double>> intervals;
};

MetricScale ScaleOf(const MetricRows& rows, double scale) {
  MetricScale s;
  for (const auto& [variant, m] : rows) {
    s.estimate.Add(Opt(m->has_estimate(), m->estimate() * scale));
    const v1::Effect& a = m->absolute();
    const v1::SequentialFigures& seq = m->sequential();
    s.absolute.Add(Opt(a.has_estimate(), a.estimate() * scale));
    s.absolute.Add(Opt(a.has_ci_low(), a.ci_low() * scale));
    s.absolute.Add(Opt(a.has_ci_high(), a.ci_high() * scale));
    s.absolute.Add(Opt(seq.has_ci_low(), seq.ci_low() * scale));
    s.absolute.Add(Opt(seq.has_ci_high(), seq.ci_high() * scale));
    const v1::Effect& rel = m->relative();
    s.relative.Add(Opt(rel.has_estimate(), rel.estimate() * 100));
    s.relative.Add(Opt(rel.has_ci_low(), rel.ci_low() * 100));
    s.relative.Add(Opt(rel.has_ci_high(), rel.ci_high() * 100));
    if (!variant->is_control() && a.has_ci_low() && a.has_ci_high()) {
      s.intervals.emplace_back(a.ci_low(), a.ci_high());
    }
  }
  return s;
}

// "conversion (binomial, primary, higher is better)".
void PrintMetricTitle(const std::string& key, const v1::MetricResult& first,
                      std::ostream& out) {
  std::vector<std::string> traits = {first.type()};
  if (first.primary()) traits.push_back("primary");
  if (first.guardrail()) traits.push_back("guardrail");
  traits.push_back(first.higher_is_better() ? "higher is better"
                                            : "lower is better");
  out << "\n" << key << " (" << absl::StrJoin(traits, ", ") << ")\n";
}

// The header and one row per variant, every column but the bar, which is
// drawn once their width is known.
std::vector<std::vector<std::string>> MetricCells(const MetricRows& rows,
                                                  double scale,
                                                  const MetricScale& s) {
  const v1::MetricResult& first = *rows[0].second;
  const std::string unit = IsRate(first) ? " pp" : "";
  const char* estimate_name = IsRate(first)             ? "RATE"
                              : first.type() == "ratio" ? "RATIO"
                                                        : "MEAN";
  std::vector<std::vector<std::string>> cells = {
      {"VARIANT", "UNITS", estimate_name, absl::StrCat("ABS LIFT", unit),
       "REL LIFT %", "P", "ADJ P", "CHANCE", "ALWAYS-VALID"}};
  for (const auto& [variant, m] : rows) {
    std::string est = "-";
    if (m->has_estimate()) {
      est = Fixed(m->estimate() * scale, s.estimate.decimals());
      if (IsRate(*m)) est += "%";
    }
    if (variant->is_control()) {
      cells.push_back({variant->key(), absl::StrCat(variant->exposed_units()),
                       est, "-", "-", "-", "-", "-", "-"});
      continue;
    }
    const v1::Effect& a = m->absolute();
    const v1::SequentialFigures& seq = m->sequential();
    cells.push_back(
        {variant->key(), absl::StrCat(variant->exposed_units()), est,
         Lift(a, scale, s.absolute.decimals()),
         Lift(m->relative(), 100, s.relative.decimals()),
         report::FormatPValue(Opt(a.has_p_value(), a.p_value())),
         report::FormatPValue(
             Opt(a.has_adjusted_p_value(), a.adjusted_p_value())),
         report::FormatChance(Opt(m->bayes().has_chance_to_beat_control(),
                                  m->bayes().chance_to_beat_control())),
         Interval(Opt(seq.has_ci_low(), seq.ci_low()),
                  Opt(seq.has_ci_high(), seq.ci_high()), scale,
                  s.absolute.decimals())});
  }
  return cells;
}

// What is left of kTextWidth for the bar beside `cells`, laid out as
// Table::Print does (each column as wide as its widest cell, two spaces
// apart), within [kMinBarWidth, kMaxBarWidth].
int BarWidth(const std::vector<std::vector<std::string>>& cells) {
  size_t used = 0;
  for (size_t c = 0; c < cells[0].size(); ++c) {
    size_t width = 0;
    for (const std::vector<std::string>& row : cells) {
      width = std::max(width, row[c].size());
    }
    used += width + 2;
  }
  return static_cast<int>(std::clamp<size_t>(
      used < kTextWidth ? kTextWidth - used : 0, kMinBarWidth, kMaxBarWidth));
}

// "12.5%": a share as a percent with one decimal; "-" when undefined.
std::string Percent(bool has, double share) {
  return has ? absl::StrCat(Fixed(share * 100, 1), "%") : "-";
}

// The CUPED table of a metric with a covariate: each variant's adjusted
// estimate and comparison over its units with the covariate.
void PrintCuped(const MetricRows& rows, double scale, const MetricScale& s,
                std::ostream& out) {
  if (!rows[0].second->has_cuped()) return;
  const v1::MetricResult& first = *rows[0].second;
  out << "CUPED (adjusted by the covariate; units with it only):\n";
  Table t;
  t.AddRow({"VARIANT", "UNITS", "NO COVARIATE", "ADJUSTED",
            absl::StrCat("ABS LIFT", IsRate(first) ? " pp" : ""), "REL LIFT %",
            "P", "THETA", "VAR REDUCTION"});
  for (const auto& [variant, m] : rows) {
    const v1::CupedFigures& c = m->cuped();
    std::string est = "-";
    if (c.has_estimate()) {
      est = Fixed(c.estimate() * scale, s.estimate.decimals());
      if (IsRate(*m)) est += "%";
    }
    if (variant->is_control()) {
      t.AddRow({variant->key(), absl::StrCat(c.units_with_covariate()),
                absl::StrCat(c.units_without_covariate()), est, "-", "-", "-",
                "-", "-"});
      continue;
    }
    t.AddRow({variant->key(), absl::StrCat(c.units_with_covariate()),
              absl::StrCat(c.units_without_covariate()), est,
              Lift(c.absolute(), scale, s.absolute.decimals()),
              Lift(c.relative(), 100, s.relative.decimals()),
              report::FormatPValue(
                  Opt(c.absolute().has_p_value(), c.absolute().p_value())),
              c.has_theta() ? absl::StrFormat("%.4g", c.theta()) : "-",
              Percent(c.has_variance_reduction(), c.variance_reduction())});
  }
  t.Print(out);
  for (const auto& [variant, m] : rows) {
    for (const std::string& w : m->cuped().warnings()) {
      PrintWrapped(absl::StrCat(variant->key(), " CUPED: ", w),
                   "warning: ", "  ", out);
    }
  }
}

// A step's rate, and for a non-control variant its lift in pp and p-value.
std::vector<std::string> StepRateCells(bool has_rate, double rate,
                                       const v1::StepComparison& c,
                                       bool is_control) {
  std::vector<std::string> cells = {Percent(has_rate, rate)};
  if (is_control) {
    cells.insert(cells.end(), {"-", "-"});
    return cells;
  }
  const v1::Effect& a = c.absolute();
  cells.push_back(a.has_estimate() ? Fixed(a.estimate() * 100, 2) : "-");
  cells.push_back(report::FormatPValue(Opt(a.has_p_value(), a.p_value())));
  return cells;
}

// The steps of a funnel metric: per variant and step, the units that
// reached it and their share of the exposed units and of the previous
// step's, each compared with the control (unadjusted).
void PrintFunnel(const MetricRows& rows, std::ostream& out) {
  if (rows[0].second->funnel_steps().empty()) return;
  out << "Funnel steps (lifts in pp vs control, unadjusted):\n";
  Table t;
  t.AddRow({"VARIANT", "STEP", "UNITS", "OF EXPOSED", "ABS LIFT", "P",
            "OF PREVIOUS", "ABS LIFT", "P"});
  for (const auto& [variant, m] : rows) {
    int k = 0;
    for (const v1::FunnelStepFigures& step : m->funnel_steps()) {
      std::vector<std::string> row = {variant->key(),
                                      absl::StrCat(++k, " ", step.event()),
                                      absl::StrCat(step.units())};
      for (std::string& c : StepRateCells(
               step.has_rate_from_exposure(), step.rate_from_exposure(),
               step.from_exposure(), variant->is_control())) {
        row.push_back(std::move(c));
      }
      for (std::string& c : StepRateCells(
               step.has_rate_from_previous(), step.rate_from_previous(),
               step.from_previous(), variant->is_control())) {
        row.push_back(std::move(c));
      }
      t.AddRow(std::move(row));
    }
  }
  t.Print(out);
  for (const auto& [variant, m] : rows) {
    for (const v1::FunnelStepFigures& step : m->funnel_steps()) {
      for (const std::string& w : step.warnings()) {
        PrintWrapped(
            absl::StrCat(variant->key(), " step ", step.event(), ": ", w),
            "warning: ", "  ", out);
      }
    }
  }
}

void PrintMetric(const v1::GetResultsResponse& r, const std::string& key,
                 std::ostream& out) {
  const MetricRows rows = RowsOf(r, key);
  if (rows.empty()) return;
  const v1::MetricResult& first = *rows[0].second;
  const double scale = Scale(first);
  const MetricScale s = ScaleOf(rows, scale);
  PrintMetricTitle(key, first, out);

  std::vector<std::vector<std::string>> cells = MetricCells(rows, scale, s);
  const std::optional<Bar> bar = Bar::Of(s.intervals, BarWidth(cells));
  Table t;
  for (size_t i = 0; i < cells.size(); ++i) {
    std::vector<std::string> row = std::move(cells[i]);
    if (i == 0) {
      row.push_back("ABS LIFT VS 0");
    } else if (rows[i - 1].first->is_control() || !bar) {
      row.push_back("-");
    } else {
      row.push_back(bar->Draw(rows[i - 1].second->absolute()));
    }
    t.AddRow(std::move(row));
  }
  t.Print(out);
  if (bar) {
    out << "bar scale: " << Fixed(bar->lo() * scale, s.absolute.decimals())
        << " to " << Fixed(bar->hi() * scale, s.absolute.decimals())
        << (IsRate(first) ? " pp" : "") << "\n";
  }
  for (const auto& [variant, m] : rows) {
    for (const std::string& w : m->warnings()) {
      PrintWrapped(absl::StrCat(variant->key(), ": ", w), "warning: ", "  ",
                   out);
    }
  }
  PrintCuped(rows, scale, s, out);
  PrintFunnel(rows, out);
}

void PrintGuardrails(const v1::GetResultsResponse& r, std::ostream& out) {
  out << "\n";
  if (r.guardrails().empty()) {
    out << "Guardrails: none\n";
    return;
  }
  out << "Guardrails (tested unadjusted at alpha " << r.alpha() << "):\n";
  Table t;
  t.AddRow({"METRIC", "VARIANT", "VERDICT", "P"});
  for (const v1::GuardrailVerdict& g : r.guardrails()) {
    std::string verdict = "ok";
    if (g.worse()) {
      verdict = "WORSE (significantly)";
    } else if (!g.has_p_value()) {
      verdict = "no verdict (p-value undefined)";
    }
    t.AddRow({g.metric_key(), g.variant_key(), verdict,
              report::FormatPValue(Opt(g.has_p_value(), g.p_value()))});
  }
  t.Print(out);
}

// ---- JSON ----

Fields& Object(Value* v) {
  return *v->mutable_struct_value()->mutable_fields();
}

Value EffectJson(const v1::Effect& e) {
  Value v;
  Fields& f = Object(&v);
  f["estimate"] = Num(Opt(e.has_estimate(), e.estimate()));
  f["ci_low"] = Num(Opt(e.has_ci_low(), e.ci_low()));
  f["ci_high"] = Num(Opt(e.has_ci_high(), e.ci_high()));
  f["p_value"] = Num(Opt(e.has_p_value(), e.p_value()));
  f["adjusted_p_value"] =
      Num(Opt(e.has_adjusted_p_value(), e.adjusted_p_value()));
  f["df"] = Num(Opt(e.has_df(), e.df()));
  return v;
}

Value SequentialJson(const v1::SequentialFigures& seq) {
  Value v;
  Fields& s = Object(&v);
  s["ci_low"] = Num(Opt(seq.has_ci_low(), seq.ci_low()));
  s["ci_high"] = Num(Opt(seq.has_ci_high(), seq.ci_high()));
  s["p_value"] = Num(Opt(seq.has_p_value(), seq.p_value()));
  return v;
}

Value CupedJson(const v1::CupedFigures& c) {
  Value v;
  Fields& f = Object(&v);
  f["units_with_covariate"] =
      Num(static_cast<double>(c.units_with_covariate()));
  f["units_without_covariate"] =
      Num(static_cast<double>(c.units_without_covariate()));
  f["estimate"] = Num(Opt(c.has_estimate(), c.estimate()));
  f["absolute"] = EffectJson(c.absolute());
  f["relative"] = EffectJson(c.relative());
  f["sequential"] = SequentialJson(c.sequential());
  f["theta"] = Num(Opt(c.has_theta(), c.theta()));
  f["variance_reduction"] =
      Num(Opt(c.has_variance_reduction(), c.variance_reduction()));
  f["warnings"] = Strings(
      std::vector<std::string>(c.warnings().begin(), c.warnings().end()));
  return v;
}

Value StepComparisonJson(const v1::StepComparison& c) {
  Value v;
  Fields& f = Object(&v);
  f["absolute"] = EffectJson(c.absolute());
  f["relative"] = EffectJson(c.relative());
  return v;
}

// A funnel's steps, in order; null for other metrics.
Value FunnelJson(const v1::MetricResult& m) {
  if (m.funnel_steps().empty()) return Num(std::nullopt);
  Value steps;
  steps.mutable_list_value();
  for (const v1::FunnelStepFigures& step : m.funnel_steps()) {
    Value v;
    Fields& f = Object(&v);
    f["event"] = Str(step.event());
    f["units"] = Num(static_cast<double>(step.units()));
    f["rate_from_exposure"] =
        Num(Opt(step.has_rate_from_exposure(), step.rate_from_exposure()));
    f["rate_from_previous"] =
        Num(Opt(step.has_rate_from_previous(), step.rate_from_previous()));
    f["from_exposure"] = step.has_from_exposure()
                             ? StepComparisonJson(step.from_exposure())
                             : Num(std::nullopt);
    f["from_previous"] = step.has_from_previous()
                             ? StepComparisonJson(step.from_previous())
                             : Num(std::nullopt);
    f["warnings"] = Strings(std::vector<std::string>(step.warnings().begin(),
                                                     step.warnings().end()));
    *steps.mutable_list_value()->add_values() = std::move(v);
  }
  return steps;
}

Value CellJson(const v1::VariantResult& variant, const v1::MetricResult& m) {
  Value v;
  Fields& f = Object(&v);
  f["variant"] = Str(variant.key());
  f["is_control"] = Bool(variant.is_control());
  f["units"] = Num(static_cast<double>(variant.exposed_units()));
  f["estimate"] = Num(Opt(m.has_estimate(), m.estimate()));
  f["absolute"] = EffectJson(m.absolute());
  f["relative"] = EffectJson(m.relative());
  Value bayes;
  Fields& b = Object(&bayes);
  b["chance_to_beat_control"] = Num(Opt(m.bayes().has_chance_to_beat_control(),
                                        m.bayes().chance_to_beat_control()));
  b["expected_loss_ship"] = Num(
      Opt(m.bayes().has_expected_loss_ship(), m.bayes().expected_loss_ship()));
  b["expected_loss_keep"] = Num(
      Opt(m.bayes().has_expected_loss_keep(), m.bayes().expected_loss_keep()));
  f["bayes"] = std::move(bayes);
  f["sequential"] = SequentialJson(m.sequential());
  f["warnings"] = Strings(
      std::vector<std::string>(m.warnings().begin(), m.warnings().end()));
  f["cuped"] = m.has_cuped() ? CupedJson(m.cuped()) : Num(std::nullopt);
  f["funnel_steps"] = FunnelJson(m);
  return v;
}

Value StrOrNull(const std::string& s) {
  if (!s.empty()) return Str(s);
  Value v;
  v.set_null_value(google::protobuf::NULL_VALUE);
  return v;
}

Value ConfigVersionsJson(const v1::GetResultsResponse& r) {
  Value versions;
  versions.mutable_list_value();
  for (const v1::ConfigVersionSeen& seen : r.config_versions()) {
    Value v;
    Object(&v)["version"] = Str(seen.version());
    Object(&v)["exposures"] = Num(static_cast<double>(seen.exposures()));
    *versions.mutable_list_value()->add_values() = std::move(v);
  }
  return versions;
}

Value SrmJson(const v1::SampleRatio& srm) {
  Value v;
  Fields& f = Object(&v);
  f["chi2"] = Num(Opt(srm.has_chi2(), srm.chi2()));
  f["p_value"] = Num(Opt(srm.has_p_value(), srm.p_value()));
  f["mismatch"] = Bool(srm.mismatch());
  f["warnings"] = Strings(
      std::vector<std::string>(srm.warnings().begin(), srm.warnings().end()));
  return v;
}

// The variants without their metrics.
Value VariantsJson(const v1::GetResultsResponse& r) {
  Value variants;
  variants.mutable_list_value();
  for (const v1::VariantResult& v : r.variants()) {
    Value item;
    Object(&item)["key"] = Str(v.key());
    Object(&item)["is_control"] = Bool(v.is_control());
    Object(&item)["exposed_units"] =
        Num(static_cast<double>(v.exposed_units()));
    *variants.mutable_list_value()->add_values() = std::move(item);
  }
  return variants;
}

// One metric: its definition (from the first variant that has it) and one
// cell per variant.
Value MetricJson(const v1::GetResultsResponse& r, const std::string& key) {
  Value metric;
  Fields& mf = Object(&metric);
  Value cells;
  cells.mutable_list_value();
  for (const v1::VariantResult& v : r.variants()) {
    const v1::MetricResult* m = FindMetric(v, key);
    if (m == nullptr) continue;
    if (mf.empty()) {
      mf["key"] = Str(key);
      mf["type"] = Str(m->type());
      mf["primary"] = Bool(m->primary());
      mf["guardrail"] = Bool(m->guardrail());
      mf["higher_is_better"] = Bool(m->higher_is_better());
    }
    *cells.mutable_list_value()->add_values() = CellJson(v, *m);
  }
  mf["variants"] = std::move(cells);
  return metric;
}

Value GuardrailsJson(const v1::GetResultsResponse& r) {
  Value guardrails;
  guardrails.mutable_list_value();
  for (const v1::GuardrailVerdict& g : r.guardrails()) {
    Value v;
    Fields& gf = Object(&v);
    gf["metric"] = Str(g.metric_key());
    gf["variant"] = Str(g.variant_key());
    gf["worse"] = Bool(g.worse());
    gf["p_value"] = Num(Opt(g.has_p_value(), g.p_value()));
    *guardrails.mutable_list_value()->add_values() = std::move(v);
  }
  return guardrails;
}

Value DecisionJson(const v1::Decision& d) {
  Value decision;
  Fields& df = Object(&decision);
  df["kind"] = Str(DecisionKindName(d.kind()));
  df["text"] = Str(d.text());
  df["variant"] = StrOrNull(d.variant());
  df["metric"] = StrOrNull(d.metric());
  df["more_days"] =
      Num(Opt(d.has_more_days(), static_cast<double>(d.more_days())));
  return decision;
}

// ---- CSV ----

constexpr const char* kCsvColumns[] = {
    "experiment",
    "metric",
    "metric_type",
    "primary",
    "guardrail",
    "higher_is_better",
    "variant",
    "is_control",
    "units",
    "estimate",
    "abs_estimate",
    "abs_ci_low",
    "abs_ci_high",
    "abs_p_value",
    "abs_adjusted_p_value",
    "abs_df",
    "rel_estimate",
    "rel_ci_low",
    "rel_ci_high",
    "rel_p_value",
    "rel_adjusted_p_value",
    "chance_to_beat_control",
    "expected_loss_ship",
    "expected_loss_keep",
    "seq_ci_low",
    "seq_ci_high",
    "seq_p_value",
    "warnings",
    "cuped_units",
    "cuped_units_without",
    "cuped_estimate",
    "cuped_abs_estimate",
    "cuped_abs_ci_low",
    "cuped_abs_ci_high",
    "cuped_abs_p_value",
    "cuped_rel_estimate",
    "cuped_rel_ci_low",
    "cuped_rel_ci_high",
    "cuped_rel_p_value",
    "cuped_theta",
    "cuped_variance_reduction",
    "funnel_step_units",
    "funnel_rates_from_exposure",
    "funnel_rates_from_previous",
    "funnel_from_exposure_abs_estimates",
    "funnel_from_exposure_p_values",
    "funnel_from_previous_abs_estimates",
    "funnel_from_previous_p_values",
    "dimension",
    "segment",
};

// The shortest decimal that reads back as the same double; "" if undefined.
std::string CsvNumber(bool has, double value) {
  if (!has) return "";
  char buffer[64];
  const std::to_chars_result r =
      std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, r.ptr);
}

std::string CsvBool(bool b) { return b ? "true" : "false"; }

// RFC 4180: a field with a comma, quote or line break is quoted, and its
// quotes doubled.
std::string CsvField(absl::string_view s) {
  if (s.find_first_of(",\"\r\n") == absl::string_view::npos) {
    return std::string(s);
  }
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

void AppendCsvRow(const std::vector<std::string>& fields, std::string* out) {
  std::vector<std::string> quoted;
  quoted.reserve(fields.size());
  for (const std::string& f : fields) quoted.push_back(CsvField(f));
  absl::StrAppend(out, absl::StrJoin(quoted, ","), "\r\n");
}

std::vector<std::string> CsvEffect(const v1::Effect& e, bool with_df) {
  std::vector<std::string> out = {
      CsvNumber(e.has_estimate(), e.estimate()),
      CsvNumber(e.has_ci_low(), e.ci_low()),
      CsvNumber(e.has_ci_high(), e.ci_high()),
      CsvNumber(e.has_p_value(), e.p_value()),
      CsvNumber(e.has_adjusted_p_value(), e.adjusted_p_value())};
  if (with_df) out.push_back(CsvNumber(e.has_df(), e.df()));
  return out;
}

// The cuped_* columns: empty for a metric without CUPED figures.
void AppendCsvCuped(const v1::MetricResult& m, std::vector<std::string>* row) {
  if (!m.has_cuped()) {
    row->resize(row->size() + 13);
    return;
  }
  const v1::CupedFigures& c = m.cuped();
  row->push_back(absl::StrCat(c.units_with_covariate()));
  row->push_back(absl::StrCat(c.units_without_covariate()));
  row->push_back(CsvNumber(c.has_estimate(), c.estimate()));
  for (const v1::Effect* e : {&c.absolute(), &c.relative()}) {
    row->push_back(CsvNumber(e->has_estimate(), e->estimate()));
    row->push_back(CsvNumber(e->has_ci_low(), e->ci_low()));
    row->push_back(CsvNumber(e->has_ci_high(), e->ci_high()));
    row->push_back(CsvNumber(e->has_p_value(), e->p_value()));
  }
  row->push_back(CsvNumber(c.has_theta(), c.theta()));
  row->push_back(CsvNumber(c.has_variance_reduction(), c.variance_reduction()));
}

// The funnel_* columns: one value per step, joined by ';' (empty for other
// metrics, and for a step's comparison in the control).
void AppendCsvFunnel(const v1::MetricResult& m, std::vector<std::string>* row) {
  std::vector<std::string> units, from_exposure, from_previous, exp_abs, exp_p,
      prev_abs, prev_p;
  for (const v1::FunnelStepFigures& step : m.funnel_steps()) {
    units.push_back(absl::StrCat(step.units()));
    from_exposure.push_back(
        CsvNumber(step.has_rate_from_exposure(), step.rate_from_exposure()));
    from_previous.push_back(
        CsvNumber(step.has_rate_from_previous(), step.rate_from_previous()));
    const v1::Effect& e = step.from_exposure().absolute();
    const v1::Effect& p = step.from_previous().absolute();
    exp_abs.push_back(CsvNumber(e.has_estimate(), e.estimate()));
    exp_p.push_back(CsvNumber(e.has_p_value(), e.p_value()));
    prev_abs.push_back(CsvNumber(p.has_estimate(), p.estimate()));
    prev_p.push_back(CsvNumber(p.has_p_value(), p.p_value()));
  }
  for (const std::vector<std::string>* column :
       {&units, &from_exposure, &from_previous, &exp_abs, &exp_p, &prev_abs,
        &prev_p}) {
    row->push_back(absl::StrJoin(*column, ";"));
  }
}

void PrintSegments(const v1::GetResultsResponse& r, std::ostream& out) {
  if (r.dimension().empty()) return;
  out << "\n";
  PrintWrapped(
      absl::StrCat(
          "Segments by ", r.dimension(), ": EXPLORATORY. ",
          r.segments_adjusted()
              ? "The p-values are adjusted across the values (one family)."
              : "The p-values are adjusted within each value only, not "
                "across values: with many values some look significant by "
                "chance (--adjust_segments true adjusts across them).",
          " A decision rests on the totals above."),
      "", "", out);
  if (r.segments().empty()) {
    out << "no exposed units carry a value of " << r.dimension() << " yet\n";
  }
  const std::vector<std::string> keys = MetricKeys(r);
  for (const v1::SegmentResult& segment : r.segments()) {
    out << "\n=== " << r.dimension() << " = " << segment.value() << " ===\n";
    Table head;
    std::vector<std::string> exposed;
    for (const v1::VariantResult& v : segment.variants()) {
      exposed.push_back(absl::StrCat(v.key(), " ", v.exposed_units()));
    }
    head.AddRow({"exposed", absl::StrJoin(exposed, ", ")});
    head.AddRow({"sample ratio", SrmSummary(segment.srm())});
    head.Print(out);
    PrintSrmWarnings(segment.srm(),
                     absl::StrCat("THIS SEGMENT (", segment.value(), ") IS"),
                     out);
    for (const std::string& w : segment.warnings()) {
      PrintWrapped(w, "warning: ", "  ", out);
    }
    const v1::GetResultsResponse as_totals = AsTotals(r, segment);
    for (const std::string& key : keys) PrintMetric(as_totals, key, out);
  }
}

// The CSV rows of `r`'s variants (the totals, or a segment's through
// AsTotals), ending with the dimension and segment columns.
void AppendCsvRows(const v1::GetResultsResponse& r,
                   const std::vector<std::string>& keys,
                   const std::string& dimension, const std::string& segment,
                   std::string* out);

}  // namespace

void PrintResultsText(const v1::GetResultsResponse& r, std::ostream& out) {
  PrintHead(r, out);
  const std::vector<std::string> keys = MetricKeys(r);
  if (!keys.empty()) PrintLegend(r, out);
  for (const std::string& key : keys) PrintMetric(r, key, out);
  PrintGuardrails(r, out);
  out << "\nDecision: "
      << (r.decision().text().empty() ? "none" : r.decision().text()) << "\n";
  PrintSegments(r, out);
}

std::string ResultsJson(const v1::GetResultsResponse& r) {
  Struct s;
  Fields& f = *s.mutable_fields();
  f["experiment"] = Str(r.experiment_key());
  f["phase"] = Num(r.phase());
  f["config_version"] = Str(r.config_version());
  f["config_versions"] = ConfigVersionsJson(r);
  f["alpha"] = Num(r.alpha());
  f["adjust_method"] = Str(r.adjust_method());
  f["multi_exposed_units"] = Num(static_cast<double>(r.multi_exposed_units()));
  f["srm"] = SrmJson(r.srm());
  f["variants"] = VariantsJson(r);
  Value metrics;
  metrics.mutable_list_value();
  for (const std::string& key : MetricKeys(r)) {
    *metrics.mutable_list_value()->add_values() = MetricJson(r, key);
  }
  f["metrics"] = std::move(metrics);
  f["guardrails"] = GuardrailsJson(r);
  f["decision"] = DecisionJson(r.decision());
  if (!r.dimension().empty()) {
    f["dimension"] = Str(r.dimension());
    f["segments_adjusted"] = Bool(r.segments_adjusted());
    Value segments;
    segments.mutable_list_value();
    for (const v1::SegmentResult& segment : r.segments()) {
      const v1::GetResultsResponse as_totals = AsTotals(r, segment);
      Value item;
      Fields& sf = Object(&item);
      sf["value"] = Str(segment.value());
      sf["srm"] = SrmJson(segment.srm());
      sf["warnings"] = Strings(std::vector<std::string>(
          segment.warnings().begin(), segment.warnings().end()));
      sf["variants"] = VariantsJson(as_totals);
      Value seg_metrics;
      seg_metrics.mutable_list_value();
      for (const std::string& key : MetricKeys(r)) {
        *seg_metrics.mutable_list_value()->add_values() =
            MetricJson(as_totals, key);
      }
      sf["metrics"] = std::move(seg_metrics);
      *segments.mutable_list_value()->add_values() = std::move(item);
    }
    f["segments"] = std::move(segments);
  }
  return ToJson(s);
}

std::string ResultsCsv(const v1::GetResultsResponse& r) {
  std::string out;
  AppendCsvRow({std::begin(kCsvColumns), std::end(kCsvColumns)}, &out);
  const std::vector<std::string> keys = MetricKeys(r);
  AppendCsvRows(r, keys, "", "", &out);
  for (const v1::SegmentResult& segment : r.segments()) {
    AppendCsvRows(AsTotals(r, segment), keys, r.dimension(), segment.value(),
                  &out);
  }
  return out;
}

namespace {

void AppendCsvRows(const v1::GetResultsResponse& r,
                   const std::vector<std::string>& keys,
                   const std::string& dimension, const std::string& segment,
                   std::string* out_rows) {
  std::string& out = *out_rows;
  for (const std::string& key : keys) {
    for (const v1::VariantResult& v : r.variants()) {
      const v1::MetricResult* m = FindMetric(v, key);
      if (m == nullptr) continue;
      std::vector<std::string> row = {
          r.experiment_key(),
          key,
          m->type(),
          CsvBool(m->primary()),
          CsvBool(m->guardrail()),
          CsvBool(m->higher_is_better()),
          v.key(),
          CsvBool(v.is_control()),
          absl::StrCat(v.exposed_units()),
          CsvNumber(m->has_estimate(), m->estimate())};
      for (std::string& cell : CsvEffect(m->absolute(), /*with_df=*/true)) {
        row.push_back(std::move(cell));
      }
      for (std::string& cell : CsvEffect(m->relative(), /*with_df=*/false)) {
        row.push_back(std::move(cell));
      }
      const v1::BayesFigures& b = m->bayes();
      row.push_back(CsvNumber(b.has_chance_to_beat_control(),
                              b.chance_to_beat_control()));
      row.push_back(
          CsvNumber(b.has_expected_loss_ship(), b.expected_loss_ship()));
      row.push_back(
          CsvNumber(b.has_expected_loss_keep(), b.expected_loss_keep()));
      const v1::SequentialFigures& s = m->sequential();
      row.push_back(CsvNumber(s.has_ci_low(), s.ci_low()));
      row.push_back(CsvNumber(s.has_ci_high(), s.ci_high()));
      row.push_back(CsvNumber(s.has_p_value(), s.p_value()));
      row.push_back(absl::StrJoin(m->warnings(), " | "));
      AppendCsvCuped(*m, &row);
      AppendCsvFunnel(*m, &row);
      row.push_back(dimension);
      row.push_back(segment);
      AppendCsvRow(row, &out);
    }
  }
}

}  // namespace

std::optional<int> ResultsRequestFromArgs(const Command& command,
                                          const Args& args,
                                          v1::GetResultsRequest* request) {
  if (args.positional.size() != 1 || args.positional[0].empty()) {
    return Usage(command,
                 args.positional.size() > 1
                     ? absl::StrCat("expected one EXPERIMENT key, got ",
                                    args.positional.size(), " arguments")
                     : absl::StrCat("expected the EXPERIMENT key, e.g. abexp ",
                                    command.name, " one_page_checkout"));
  }
  request->set_experiment_key(args.positional[0]);
  for (const std::string& metric : args.All("metric")) {
    request->add_metric_keys(metric);
  }
  if (args.flags.count("alpha") > 0) {
    // Only the syntax is checked here; the server says which values it takes.
    const std::string text = args.Get("alpha", "");
    double alpha = 0;
    if (!absl::SimpleAtod(text, &alpha)) {
      return Usage(command, absl::StrCat("--alpha '", text,
                                         "' is not a number; write a "
                                         "significance level in (0, 1), e.g. "
                                         "--alpha 0.05"));
    }
    request->set_alpha(alpha);
  }
  if (args.flags.count("adjust") > 0) {
    request->set_adjust_method(args.Get("adjust", ""));
  }
  request->set_dimension(args.Get("dimension", ""));
  const std::string adjust_segments = args.Get("adjust_segments", "false");
  if (adjust_segments != "true" && adjust_segments != "false") {
    return Usage(command, absl::StrCat("--adjust_segments '", adjust_segments,
                                       "' is not true or false"));
  }
  if (adjust_segments == "true" && request->dimension().empty()) {
    return Usage(command,
                 "--adjust_segments needs --dimension NAME, the dimension "
                 "whose values to adjust across");
  }
  request->set_adjust_segments(adjust_segments == "true");
  return std::nullopt;
}

std::optional<int> FetchResults(const Command& command, const Args& args,
                                const v1::GetResultsRequest& request,
                                std::unique_ptr<Client>* client,
                                v1::GetResultsResponse* response) {
  absl::StatusOr<std::unique_ptr<Client>> made = MakeClient(args);
  if (!made.ok()) {
    return Usage(command, std::string(made.status().message()));
  }
  *client = *std::move(made);
  absl::StatusOr<v1::GetResultsResponse> r = (*client)->GetResults(request);
  if (!r.ok()) {
    // The server checks --alpha, --adjust and --metric against the
    // experiment: its INVALID_ARGUMENT is about a flag.
    if (r.status().code() == absl::StatusCode::kInvalidArgument) {
      return Usage(command, std::string(r.status().message()));
    }
    return ServerError(args, r.status());
  }
  *response = *std::move(r);
  return std::nullopt;
}

int RunResults(const std::vector<std::string>& argv) {
  Command command{"results",
                  kUsage,
                  {"server", "timeout", "format", "metric", "alpha", "adjust",
                   "dimension", "adjust_segments"},
                  {"metric"}};
  AddSecurityFlags(&command);
  Args args;
  Format format = Format::kText;
  if (std::optional<int> done = StartWithCsv(command, argv, &args, &format)) {
    return *done;
  }
  v1::GetResultsRequest request;
  if (std::optional<int> done =
          ResultsRequestFromArgs(command, args, &request)) {
    return *done;
  }
  std::unique_ptr<Client> client;
  v1::GetResultsResponse response;
  if (std::optional<int> done =
          FetchResults(command, args, request, &client, &response)) {
    return *done;
  }
  const v1::GetResultsResponse* r = &response;
  switch (format) {
    case Format::kJson:
      std::cout << ResultsJson(*r);
      break;
    case Format::kCsv:
      std::cout << ResultsCsv(*r);
      break;
    case Format::kText:
      PrintResultsText(*r, std::cout);
      break;
  }
  return kExitOk;
}

}  // namespace abexp::cli
