#include "client/report/html_report.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "client/report/daily_section.h"
#include "client/report/figures.h"
#include "client/report/funnel_chart.h"
#include "client/report/svg_chart.h"

namespace abexp::report {
namespace {

// Inline only: the page must not fetch anything. System fonts, a single
// column that the tables may scroll within on a phone, and A4 for print.
constexpr char kCss[] = R"css(
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; font-family: system-ui, -apple-system, "Segoe UI", Roboto,
  "Helvetica Neue", Arial, sans-serif; font-size: 16px; line-height: 1.45;
  color: #1b1b1b; background: #fff; }
main { max-width: 1200px; margin: 0 auto; padding: 16px; }
h1 { font-size: 1.6em; margin: 0.2em 0; overflow-wrap: anywhere; }
h2 { font-size: 1.25em; margin: 1.2em 0 0.4em; overflow-wrap: anywhere; }
h3 { font-size: 1.05em; margin: 1em 0 0.3em; }
.description { font-size: 1.05em; margin: 0.3em 0 0.8em; overflow-wrap: anywhere; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.banner { border: 4px solid #b42318; background: #fdecea; padding: 12px 16px; margin: 16px 0; }
.banner h2 { margin: 0 0 0.3em; color: #7a1010; font-size: 1.35em; }
.decision { border: 2px solid #1b1b1b; padding: 8px 16px; margin: 16px 0; }
.decision .verdict { font-size: 1.3em; font-weight: 700; margin: 0.2em 0; }
.summary pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #f4f4f4;
  border-left: 4px solid #555; padding: 10px 12px; font-size: 0.95em; }
.badge { display: inline-block; border: 1px solid #1b1b1b; border-radius: 3px;
  padding: 0 6px; font-size: 0.7em; font-weight: 600; vertical-align: middle; }
.chart { width: 100%; max-width: 760px; }
.chart svg { width: 100%; height: auto; display: block; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.9em; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #ccc; padding: 4px 8px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 2px solid #1b1b1b; white-space: normal; vertical-align: bottom; }
.warnings { font-size: 0.9em; }
td .ci { font-size: 0.85em; color: #333; }
.chart-pair { display: grid; grid-template-columns: 1fr; gap: 0 24px; }
@media (min-width: 1000px) { .chart-pair { grid-template-columns: 1fr 1fr; } }
.chart .caption { margin: 0.4em 0 0; font-weight: 600; font-size: 0.9em; }
.note { max-width: 60em; }
.placeholder { border: 2px dashed #888; padding: 8px 16px; margin: 16px 0; }
section.segment { border-top: 1px solid #ccc; margin-top: 1em; }
section.segment h3 { overflow-wrap: anywhere; }
.segment .banner { margin: 8px 0; padding: 8px 12px; }
.segment .banner p { margin: 0; }
footer { margin-top: 2em; font-size: 0.85em; color: #444; }
@media (max-width: 480px) {
  main { padding: 10px; }
  body { font-size: 15px; }
  dl.facts { grid-template-columns: 1fr; }
  dl.facts dd { margin-bottom: 4px; }
}
@media print {
  @page { size: A4; margin: 14mm; }
  body { font-size: 10.5pt; }
  main { max-width: none; padding: 0; }
  section.metric, .decision, .banner, .summary, .chart, section.segment {
    break-inside: avoid; }
  .chart-pair { grid-template-columns: 1fr 1fr; }
  .table-wrap { overflow: visible; }
  table { font-size: 8.5pt; }
  th, td { white-space: normal; }
}
)css";

std::string E(absl::string_view s) { return EscapeXml(s); }

std::optional<double> Opt(bool has, double v) {
  return has ? std::optional<double>(v) : std::nullopt;
}

// A variant's estimate: a rate in percent, else four significant digits.
std::string Value(const v1::MetricResult& m, std::optional<double> v) {
  if (!v) return "-";
  return IsRate(m) ? absl::StrFormat("%.2f%%", *v * 100)
                   : absl::StrFormat("%.4g", *v);
}

// An absolute lift: percentage points for a rate.
std::string Absolute(const v1::MetricResult& m, std::optional<double> v) {
  if (!v) return "-";
  return IsRate(m) ? absl::StrFormat("%+.2f pp", *v * 100)
                   : absl::StrFormat("%+.4g", *v);
}

std::string Relative(std::optional<double> v) {
  if (!v) return "-";
  return absl::StrFormat("%+.1f%%", *v * 100);
}

// "[-0.74 pp, +4.74 pp]"; "-" when an end is undefined, "∞" when unbounded.
template <typename Fmt>
std::string Range(std::optional<double> low, std::optional<double> high,
                  Fmt fmt) {
  if (!low || !high) return "-";
  auto end = [&](double v) {
    if (std::isinf(v))
      return std::string(v < 0 ? "-\xE2\x88\x9E" : "+\xE2\x88\x9E");
    return fmt(v);
  };
  return absl::StrCat("[", end(*low), ", ", end(*high), "]");
}

// A table cell's HTML: an effect, and under it its interval; "-" without an
// estimate.
template <typename Fmt>
std::string LiftCell(const v1::Effect& e, Fmt fmt) {
  if (!e.has_estimate()) return "-";
  std::string s = E(fmt(e.estimate()));
  if (e.has_ci_low() && e.has_ci_high()) {
    absl::StrAppend(
        &s, "<br><span class=\"ci\">",
        E(Range(e.ci_low(), e.ci_high(), [&](double x) { return fmt(x); })),
        "</span>");
  }
  return s;
}

const v1::VariantResult* Control(const v1::GetResultsResponse& r) {
  for (const v1::VariantResult& v : r.variants()) {
    if (v.is_control()) return &v;
  }
  return r.variants().empty() ? nullptr : &r.variants(0);
}

std::string EnumWord(const std::string& name, absl::string_view prefix) {
  return absl::AsciiStrToLower(absl::StripPrefix(name, prefix));
}

bool Significant(const v1::Effect& e) {
  return e.has_ci_low() && e.has_ci_high() &&
         (e.ci_low() > 0 || e.ci_high() < 0);
}

// ---- Header ----

void AppendFact(const std::string& name, const std::string& value,
                std::string* out) {
  absl::StrAppend(out, "<dt>", E(name), "</dt><dd>", E(value), "</dd>");
}

std::string Header(const v1::GetResultsResponse& r, const ReportContext& c) {
  const v1::Experiment* x = c.experiment;
  std::string out =
      absl::StrCat("<header><h1>Results: ", E(r.experiment_key()), "</h1>");
  if (x != nullptr && !x->description().empty()) {
    absl::StrAppend(&out, "<p class=\"description\">", E(x->description()),
                    "</p>");
  }
  absl::StrAppend(&out, "<dl class=\"facts\">");
  if (x != nullptr) {
    AppendFact("owner", x->owner().empty() ? "not set" : x->owner(), &out);
    std::string status =
        EnumWord(v1::ExperimentStatus_Name(x->status()), "EXPERIMENT_STATUS_");
    if (!x->rollout_variant().empty()) {
      absl::StrAppend(&status, " (rolled out: ", x->rollout_variant(), ")");
    }
    AppendFact("status", status, &out);
    AppendFact("start", x->start_time().empty() ? "not set" : x->start_time(),
               &out);
    AppendFact("end", x->end_time().empty() ? "not set" : x->end_time(), &out);
    AppendFact(
        "traffic",
        absl::StrFormat("%g%% of eligible units", x->traffic_bp() / 100.0),
        &out);
  }
  AppendFact("phase", absl::StrCat(r.phase()), &out);
  AppendFact("config served", r.config_version(), &out);
  std::vector<std::string> seen;
  for (const v1::ConfigVersionSeen& v : r.config_versions()) {
    seen.push_back(
        absl::StrCat(v.version(), " (", v.exposures(),
                     v.exposures() == 1 ? " exposure)" : " exposures)"));
  }
  AppendFact(
      "config versions seen",
      seen.empty() ? "none (no exposures yet)" : absl::StrJoin(seen, ", "),
      &out);
  std::vector<std::string> units;
  for (const v1::VariantResult& v : r.variants()) {
    units.push_back(absl::StrCat(v.key(), v.is_control() ? " (control)" : "",
                                 ": ", v.exposed_units()));
  }
  AppendFact("exposed units", absl::StrJoin(units, ", "), &out);
  AppendFact("multi-exposed units",
             absl::StrCat(r.multi_exposed_units(),
                          " (exposed to several variants; left out of every "
                          "figure)"),
             &out);
  AppendFact(
      "intervals",
      absl::StrCat(ConfidenceLevel(r.alpha()), " (alpha ", r.alpha(),
                   "); p-values adjusted by ",
                   r.adjust_method() == "bh" ? "Benjamini-Hochberg" : "Holm"),
      &out);
  if (!c.generated_at.empty()) AppendFact("generated", c.generated_at, &out);
  if (!c.source.empty()) AppendFact("source", c.source, &out);
  absl::StrAppend(&out, "</dl></header>");
  return out;
}

// "chi-square 20, p = 7.7e-6".
std::string SrmFigures(const v1::SampleRatio& srm) {
  return absl::StrCat(
      "chi-square ",
      srm.has_chi2() ? absl::StrFormat("%.3g", srm.chi2()) : "n/a",
      ", p = ", FormatPValue(Opt(srm.has_p_value(), srm.p_value())));
}

std::string SrmSection(const v1::SampleRatio& srm) {
  const std::string figures = SrmFigures(srm);
  std::string out;
  if (srm.mismatch()) {
    absl::StrAppend(
        &out,
        "<section class=\"banner srm-mismatch\" role=\"alert\"><h2>"
        "\xE2\x9A\xA0 Sample ratio mismatch: do not trust these results</h2>"
        "<p>Units were lost or added unevenly between the variants (",
        E(figures),
        "), so every figure on this page may be biased. Find the cause (a "
        "redirect, a crash in one variant, bots, a changed split) before "
        "reading any comparison.</p>");
  } else {
    absl::StrAppend(&out, "<section class=\"srm\"><h2>Sample ratio</h2><p>",
                    srm.has_p_value()
                        ? absl::StrCat("OK: the units split as configured (",
                                       E(figures), ").")
                        : "Not checked (see below).",
                    "</p>");
  }
  for (const std::string& w : srm.warnings()) {
    absl::StrAppend(&out, "<p class=\"warnings\">", E(w), "</p>");
  }
  absl::StrAppend(&out, "</section>");
  return out;
}

// Why the rules gave this decision (docs/statistics.md, "Results RPC").
std::string DecisionWhy(const v1::GetResultsResponse& r) {
  const v1::Decision& d = r.decision();
  const std::string alpha = absl::StrCat(r.alpha());
  switch (d.kind()) {
    case v1::DECISION_KIND_DO_NOT_TRUST:
      return "The sample-ratio check failed, which overrides every other "
             "rule: the comparisons cannot be trusted until its cause is "
             "found.";
    case v1::DECISION_KIND_GUARDRAIL_WORSE:
      return absl::StrCat("The guardrail ", d.metric(),
                          " is significantly worse in ", d.variant(), " (p < ",
                          alpha,
                          " in the bad direction, unadjusted). A worse "
                          "guardrail blocks shipping whatever the primary "
                          "metric says.");
    case v1::DECISION_KIND_SHIP:
      return absl::StrCat("The primary metric ", d.metric(),
                          " is significantly better in ", d.variant(),
                          " (adjusted p < ", alpha,
                          "), no guardrail is significantly worse, and the "
                          "sample ratio is as configured.");
    case v1::DECISION_KIND_KEEP_RUNNING:
      return "The primary metric shows no significant difference yet, and "
             "the experiment has fewer units than it needs for 80% power to "
             "detect a 5% relative change.";
    case v1::DECISION_KIND_NO_DETECTABLE_EFFECT:
      return "The experiment has the units for 80% power to detect a 5% "
             "relative change, and the primary metric shows no significant "
             "difference: an effect, if any, is smaller than that.";
    default:
      return "The server gave no decision.";
  }
}

std::string DecisionSection(const v1::GetResultsResponse& r) {
  const v1::Decision& d = r.decision();
  return absl::StrCat(
      "<section class=\"decision\"><h2>Decision</h2><p class=\"verdict\">",
      E(d.text().empty() ? "none" : d.text()), "</p><p>", E(DecisionWhy(r)),
      "</p></section>");
}

// ---- Summary ----

// " (95% CI [a, b])", or "" when the effect has no interval.
template <typename Fmt>
std::string CiClause(const v1::Effect& e, const std::string& level, Fmt fmt) {
  if (!e.has_ci_low() || !e.has_ci_high()) return "";
  return absl::StrCat(" (", level, " CI ", Range(e.ci_low(), e.ci_high(), fmt),
                      ")");
}

// "treatment: order_conversion (primary) went from 10.00% (control) to
// 12.00%: +2.00 pp, +20.0% relative (95% CI ...); p = ..."
std::string SummaryLine(const v1::GetResultsResponse& r,
                        const v1::VariantResult& control,
                        const v1::VariantResult& v, const v1::MetricResult& m) {
  const v1::MetricResult* c = FindMetric(control, m.metric_key());
  const v1::Effect& a = m.absolute();
  const v1::Effect& rel = m.relative();
  std::string role = m.primary()     ? " (primary)"
                     : m.guardrail() ? " (guardrail)"
                                     : "";
  std::string s = absl::StrCat(
      v.key(), " vs ", control.key(), ", ", m.metric_key(), role, ": ",
      Value(m, c ? Opt(c->has_estimate(), c->estimate()) : std::nullopt),
      " -> ", Value(m, Opt(m.has_estimate(), m.estimate())));
  if (!a.has_estimate()) {
    absl::StrAppend(&s, "; no comparison (",
                    m.warnings().empty() ? "not enough data" : m.warnings(0),
                    ")");
    return s;
  }
  const std::string level = ConfidenceLevel(r.alpha());
  auto abs_fmt = [&](double x) { return Absolute(m, x); };
  absl::StrAppend(&s, ", a change of ", abs_fmt(a.estimate()),
                  CiClause(a, level, abs_fmt));
  if (rel.has_estimate()) {
    auto rel_fmt = [](double x) { return Relative(x); };
    absl::StrAppend(&s, ", ", rel_fmt(rel.estimate()), " relative",
                    CiClause(rel, level, rel_fmt));
  }
  absl::StrAppend(&s,
                  "; p = ", FormatPValue(Opt(a.has_p_value(), a.p_value())));
  if (!m.guardrail() && a.has_adjusted_p_value()) {
    absl::StrAppend(&s, " (adjusted ", FormatPValue(a.adjusted_p_value()), ")");
  }
  if (m.bayes().has_chance_to_beat_control()) {
    absl::StrAppend(&s, "; chance to be better than control ",
                    FormatChance(m.bayes().chance_to_beat_control()));
  }
  const bool sig = Significant(a);
  const bool up = a.ci_low() > 0;
  absl::StrAppend(
      &s, ". ",
      sig ? absl::StrCat("Significant at alpha ", r.alpha(), ": ",
                         up == m.higher_is_better() ? "better" : "worse",
                         " than control.")
          : absl::StrCat("Not significant at alpha ", r.alpha(),
                         ": the interval includes no change."));
  return s;
}

// ---- Metrics ----

ForestSpec ForestOf(const v1::GetResultsResponse& r, const std::string& key,
                    const v1::MetricResult& def, bool relative) {
  ForestSpec spec;
  spec.title = absl::StrCat(key, ": ", relative ? "relative" : "absolute",
                            " lift of each variant against control");
  spec.higher_is_better = def.higher_is_better();
  spec.confidence = ConfidenceLevel(r.alpha());
  if (relative) {
    spec.display_scale = 100;
    spec.value_suffix = "%";
  } else if (IsRate(def)) {
    spec.display_scale = 100;
    spec.value_suffix = " pp";
  }
  for (const v1::VariantResult& v : r.variants()) {
    if (v.is_control()) continue;
    ForestRow row;
    row.label = v.key();
    const v1::MetricResult* m = FindMetric(v, key);
    if (m == nullptr) {
      row.missing_note = "no data for this metric";
      spec.rows.push_back(row);
      continue;
    }
    const v1::Effect& e = relative ? m->relative() : m->absolute();
    if (e.has_estimate()) row.estimate = e.estimate();
    if (e.has_ci_low() && e.has_ci_high()) {
      row.fixed = Interval{e.ci_low(), e.ci_high()};
    }
    const v1::SequentialFigures& seq = m->sequential();
    if (!relative && seq.has_ci_low() && seq.has_ci_high()) {
      row.always_valid = Interval{seq.ci_low(), seq.ci_high()};
    }
    row.missing_note = relative ? "not defined (see the warnings)"
                                : "no estimate (see the warnings)";
    spec.rows.push_back(row);
  }
  return spec;
}

// A non-control variant's verdict on a metric, by its absolute lift.
std::string Verdict(const v1::MetricResult& m) {
  const v1::Effect& a = m.absolute();
  if (!a.has_estimate()) return "no estimate";
  if (!Significant(a)) return "not significant";
  return (a.ci_low() > 0) == m.higher_is_better() ? "better" : "worse";
}

std::string MetricTable(const v1::GetResultsResponse& r,
                        const std::string& key) {
  const std::string level = ConfidenceLevel(r.alpha());
  std::string out = absl::StrCat(
      "<div class=\"table-wrap\"><table><thead><tr><th scope=\"col\">"
      "Variant</th><th scope=\"col\">Units</th><th scope=\"col\">Estimate</th>"
      "<th scope=\"col\">Absolute lift [",
      level, " CI]</th><th scope=\"col\">Relative lift [", level,
      " CI]</th><th scope=\"col\">p</th><th scope=\"col\">Adjusted p</th>"
      "<th scope=\"col\">Chance to be better</th><th scope=\"col\">"
      "Always-valid [",
      level, "]</th><th scope=\"col\">Verdict</th></tr></thead><tbody>");
  std::vector<std::string> warnings;
  for (const v1::VariantResult& v : r.variants()) {
    const v1::MetricResult* m = FindMetric(v, key);
    absl::StrAppend(&out, "<tr><th scope=\"row\">", E(v.key()),
                    v.is_control() ? " (control)" : "", "</th><td>",
                    v.exposed_units(), "</td>");
    if (m == nullptr) {
      absl::StrAppend(&out,
                      "<td colspan=\"8\">no data for this metric</td></tr>");
      continue;
    }
    for (const std::string& w : m->warnings()) {
      warnings.push_back(absl::StrCat(v.key(), ": ", w));
    }
    absl::StrAppend(&out, "<td>",
                    E(Value(*m, Opt(m->has_estimate(), m->estimate()))),
                    "</td>");
    if (v.is_control()) {
      absl::StrAppend(&out, "<td colspan=\"7\">baseline</td></tr>");
      continue;
    }
    const v1::Effect& a = m->absolute();
    const v1::Effect& rel = m->relative();
    const v1::SequentialFigures& seq = m->sequential();
    auto abs_fmt = [&](double x) { return Absolute(*m, x); };
    absl::StrAppend(
        &out, "<td>", LiftCell(a, abs_fmt), "</td><td>",
        LiftCell(rel, [](double x) { return Relative(x); }), "</td><td>",
        E(FormatPValue(Opt(a.has_p_value(), a.p_value()))), "</td><td>",
        E(FormatPValue(Opt(a.has_adjusted_p_value(), a.adjusted_p_value()))),
        "</td><td>",
        E(FormatChance(Opt(m->bayes().has_chance_to_beat_control(),
                           m->bayes().chance_to_beat_control()))),
        "</td><td>",
        E(Range(Opt(seq.has_ci_low(), seq.ci_low()),
                Opt(seq.has_ci_high(), seq.ci_high()), abs_fmt)),
        "</td><td>", Verdict(*m), "</td></tr>");
  }
  absl::StrAppend(&out, "</tbody></table></div>");
  if (!warnings.empty()) {
    absl::StrAppend(&out, "<ul class=\"warnings\">");
    for (const std::string& w : warnings) {
      absl::StrAppend(&out, "<li>", E(w), "</li>");
    }
    absl::StrAppend(&out, "</ul>");
  }
  return out;
}

// The CUPED figures of a metric with a covariate, as `abexp results` shows
// them: each variant's estimate adjusted by the covariate and its
// comparison, over its units with the covariate. Empty without them.
std::string CupedTable(const v1::GetResultsResponse& r,
                       const std::string& key) {
  const v1::MetricResult* def = MetricDefinition(r, key);
  if (def == nullptr || !def->has_cuped()) return "";
  const std::string level = ConfidenceLevel(r.alpha());
  std::string out = absl::StrCat(
      "<h3>CUPED: adjusted by the covariate (units with it only)</h3>"
      "<div class=\"table-wrap\"><table class=\"cuped\"><thead><tr>"
      "<th scope=\"col\">Variant</th><th scope=\"col\">Units with the "
      "covariate</th><th scope=\"col\">Without</th><th scope=\"col\">"
      "Adjusted estimate</th><th scope=\"col\">Absolute lift [",
      level, " CI]</th><th scope=\"col\">Relative lift [", level,
      " CI]</th><th scope=\"col\">p</th><th scope=\"col\">\xCE\xB8</th>"
      "<th scope=\"col\">Variance reduction</th></tr></thead><tbody>");
  std::vector<std::string> warnings;
  for (const v1::VariantResult& v : r.variants()) {
    const v1::MetricResult* m = FindMetric(v, key);
    if (m == nullptr || !m->has_cuped()) continue;
    const v1::CupedFigures& c = m->cuped();
    for (const std::string& w : c.warnings()) {
      warnings.push_back(absl::StrCat(v.key(), " CUPED: ", w));
    }
    absl::StrAppend(&out, "<tr><th scope=\"row\">", E(v.key()),
                    v.is_control() ? " (control)" : "", "</th><td>",
                    c.units_with_covariate(), "</td><td>",
                    c.units_without_covariate(), "</td><td>",
                    E(Value(*m, Opt(c.has_estimate(), c.estimate()))), "</td>");
    if (v.is_control()) {
      absl::StrAppend(&out, "<td colspan=\"5\">baseline</td></tr>");
      continue;
    }
    absl::StrAppend(
        &out, "<td>",
        LiftCell(c.absolute(), [&](double x) { return Absolute(*m, x); }),
        "</td><td>",
        LiftCell(c.relative(), [](double x) { return Relative(x); }),
        "</td><td>",
        E(FormatPValue(
            Opt(c.absolute().has_p_value(), c.absolute().p_value()))),
        "</td><td>", c.has_theta() ? absl::StrFormat("%.4g", c.theta()) : "-",
        "</td><td>",
        c.has_variance_reduction()
            ? absl::StrFormat("%.1f%%", c.variance_reduction() * 100)
            : "-",
        "</td></tr>");
  }
  absl::StrAppend(&out, "</tbody></table></div>");
  if (!warnings.empty()) {
    absl::StrAppend(&out, "<ul class=\"warnings\">");
    for (const std::string& w : warnings) {
      absl::StrAppend(&out, "<li>", E(w), "</li>");
    }
    absl::StrAppend(&out, "</ul>");
  }
  return out;
}

std::string MetricSection(const v1::GetResultsResponse& r,
                          const std::string& key) {
  const v1::MetricResult* def = MetricDefinition(r, key);
  std::string out = absl::StrCat(
      "<section class=\"metric\" id=\"metric-", E(key), "\"><h2>", E(key),
      " <span class=\"badge\">", E(def->type()), "</span>");
  if (def->primary())
    absl::StrAppend(&out, " <span class=\"badge\">primary</span>");
  if (def->guardrail()) {
    absl::StrAppend(&out, " <span class=\"badge\">guardrail</span>");
  }
  absl::StrAppend(
      &out, " <span class=\"badge\">",
      def->higher_is_better() ? "higher is better" : "lower is better",
      "</span></h2>");
  absl::StrAppend(&out, "<h3>Relative lift</h3><div class=\"chart\">",
                  RenderForestSvg(ForestOf(r, key, *def, /*relative=*/true)),
                  "</div>");
  absl::StrAppend(&out,
                  "<h3>Absolute lift, with the always-valid interval</h3><div "
                  "class=\"chart\">",
                  RenderForestSvg(ForestOf(r, key, *def, /*relative=*/false)),
                  "</div>");
  absl::StrAppend(&out, MetricTable(r, key), CupedTable(r, key), "</section>");
  return out;
}

// A share as "12.5%", or "-".
std::string Share(bool has, double v) {
  return has ? absl::StrFormat("%.1f%%", v * 100) : "-";
}

// The funnel chart of metric `key`: its steps as the variant with the most
// lists them, and each variant's figures matched to them by event.
FunnelSpec FunnelOf(const v1::GetResultsResponse& r, const std::string& key) {
  FunnelSpec spec;
  spec.title = absl::StrCat(
      key,
      ": the share of each variant's exposed units that reached each "
      "step");
  spec.confidence = ConfidenceLevel(r.alpha());
  for (const v1::VariantResult& v : r.variants()) {
    const v1::MetricResult* m = FindMetric(v, key);
    if (m != nullptr &&
        m->funnel_steps_size() > static_cast<int>(spec.steps.size())) {
      spec.steps.clear();
      for (const v1::FunnelStepFigures& step : m->funnel_steps()) {
        spec.steps.push_back(step.event());
      }
    }
  }
  for (int index = 0; index < r.variants_size(); ++index) {
    const v1::VariantResult& v = r.variants(index);
    const v1::MetricResult* m = FindMetric(v, key);
    FunnelVariant variant;
    variant.label = v.key();
    variant.style = index;  // as in the trend and exposure charts
    for (const std::string& event : spec.steps) {
      std::optional<FunnelStepValue> value;
      for (int k = 0; m != nullptr && k < m->funnel_steps_size(); ++k) {
        const v1::FunnelStepFigures& step = m->funnel_steps(k);
        if (step.event() != event) continue;
        const v1::Effect& lift = step.from_previous().absolute();
        value = FunnelStepValue{
            step.units(),
            Opt(step.has_rate_from_exposure(), step.rate_from_exposure()),
            Opt(step.has_rate_from_previous(), step.rate_from_previous()),
            v.is_control() ? std::nullopt
                           : Opt(lift.has_estimate(), lift.estimate()),
            std::nullopt};
        if (!v.is_control() && lift.has_ci_low() && lift.has_ci_high()) {
          value->lift_interval = Interval{lift.ci_low(), lift.ci_high()};
        }
        break;
      }
      variant.steps.push_back(value);
    }
    spec.variants.push_back(std::move(variant));
  }
  return spec;
}

// Per funnel metric a chart and a table: per variant and step, the units
// that reached the step, their share of the exposed units and of the
// previous step's, and for a non-control variant the lift of that last
// share in pp.
std::string FunnelSection(const v1::GetResultsResponse& r) {
  std::string tables;
  for (const std::string& key : MetricKeys(r)) {
    std::string rows;
    for (const v1::VariantResult& v : r.variants()) {
      const v1::MetricResult* m = FindMetric(v, key);
      if (m == nullptr) continue;
      int k = 0;
      for (const v1::FunnelStepFigures& step : m->funnel_steps()) {
        const v1::Effect& lift = step.from_previous().absolute();
        absl::StrAppend(
            &rows, "<tr><th scope=\"row\">", E(v.key()), "</th><td>", ++k, " ",
            E(step.event()), "</td><td>", step.units(), "</td><td>",
            Share(step.has_rate_from_exposure(), step.rate_from_exposure()),
            "</td><td>",
            Share(step.has_rate_from_previous(), step.rate_from_previous()),
            "</td><td>",
            v.is_control() || !lift.has_estimate()
                ? "-"
                : absl::StrFormat("%+.2f pp", lift.estimate() * 100),
            "</td></tr>");
      }
    }
    if (rows.empty()) continue;
    absl::StrAppend(
        &tables, "<h3>", E(key), "</h3><div class=\"chart\">",
        RenderFunnelSvg(FunnelOf(r, key)),
        "</div><div class=\"table-wrap\"><table><thead><tr>"
        "<th scope=\"col\">Variant</th><th scope=\"col\">Step</th>"
        "<th scope=\"col\">Units</th><th scope=\"col\">Of exposed</th>"
        "<th scope=\"col\">Of previous step</th><th scope=\"col\">Lift of "
        "previous-step share vs control</th></tr></thead><tbody>",
        rows, "</tbody></table></div>");
  }
  if (tables.empty()) {
    return "<section class=\"placeholder\" id=\"funnels\"><h2>Funnels</h2>"
           "<p>No funnel metric: a metric of type: funnel "
           "(docs/config.md) shows its steps here.</p></section>";
  }
  return absl::StrCat(
      "<section class=\"metric\" id=\"funnels\"><h2>Funnels</h2><p>Units "
      "that reached each step, in order: the bars are each variant's share "
      "of its exposed units, and beside them is the share of the previous "
      "step's units with its lift against the control. The lifts are "
      "unadjusted, and those from the previous step compare units that the "
      "variants brought that far, no longer randomized alike "
      "(docs/statistics.md, \"Funnels\").</p>",
      tables, "</section>");
}

// ---- Segments ----

// A segment's sample-ratio check: on a mismatch a banner like the totals',
// naming the segment.
std::string SegmentSrm(const std::string& name, const v1::SampleRatio& srm) {
  std::string out;
  if (srm.mismatch()) {
    absl::StrAppend(
        &out,
        "<div class=\"banner segment-srm-mismatch\"><p><strong>"
        "\xE2\x9A\xA0 Sample ratio mismatch in ",
        E(name), ": do not trust its figures</strong> (", E(SrmFigures(srm)),
        "). Its units were lost or added unevenly between the variants, a "
        "classic sign of a client that drops exposures.</p></div>");
  } else {
    absl::StrAppend(&out, "<p class=\"srm\">Sample ratio: ",
                    srm.has_p_value()
                        ? absl::StrCat("OK (", E(SrmFigures(srm)), ")")
                        : "not checked",
                    "</p>");
  }
  for (const std::string& w : srm.warnings()) {
    absl::StrAppend(&out, "<p class=\"warnings\">", E(w), "</p>");
  }
  return out;
}

// One row per metric and variant of a segment: the estimate, and for a
// non-control variant its lifts with their intervals, p and verdict.
std::string SegmentTable(const v1::GetResultsResponse& seg,
                         const std::vector<std::string>& keys) {
  const std::string level = ConfidenceLevel(seg.alpha());
  std::string rows;
  for (const std::string& key : keys) {
    for (const v1::VariantResult& v : seg.variants()) {
      const v1::MetricResult* m = FindMetric(v, key);
      if (m == nullptr) continue;
      absl::StrAppend(
          &rows, "<tr><th scope=\"row\">", E(key), "</th><td>", E(v.key()),
          v.is_control() ? " (control)" : "", "</td><td>",
          E(Value(*m, Opt(m->has_estimate(), m->estimate()))), "</td>");
      if (v.is_control()) {
        absl::StrAppend(&rows, "<td colspan=\"4\">baseline</td></tr>");
        continue;
      }
      const v1::Effect& a = m->absolute();
      absl::StrAppend(
          &rows, "<td>",
          LiftCell(m->relative(), [](double x) { return Relative(x); }),
          "</td><td>", LiftCell(a, [&](double x) { return Absolute(*m, x); }),
          "</td><td>", E(FormatPValue(Opt(a.has_p_value(), a.p_value()))), " (",
          E(FormatPValue(Opt(a.has_adjusted_p_value(), a.adjusted_p_value()))),
          ")</td><td>", Verdict(*m), "</td></tr>");
    }
  }
  if (rows.empty()) return "";
  return absl::StrCat(
      "<div class=\"table-wrap\"><table class=\"segment-figures\"><thead><tr>"
      "<th scope=\"col\">Metric</th><th scope=\"col\">Variant</th>"
      "<th scope=\"col\">Estimate</th><th scope=\"col\">Relative lift [",
      level, " CI]</th><th scope=\"col\">Absolute lift [", level,
      " CI]</th><th scope=\"col\">p (adjusted)</th><th scope=\"col\">"
      "Verdict</th></tr></thead><tbody>",
      rows, "</tbody></table></div>");
}

// The breakdown by the response's dimension (docs/statistics.md,
// "Segments"): per value its exposed units, sample-ratio check, warnings, a
// forest plot of the primary metric's relative lift and a row per metric
// and variant. Empty without a dimension.
std::string SegmentSection(const v1::GetResultsResponse& r) {
  if (r.dimension().empty()) return "";
  std::string out = absl::StrCat(
      "<section class=\"segments\" id=\"segments\"><h2>Segments by ",
      E(r.dimension()), "</h2><p class=\"note\"><strong>Exploratory.</strong> ",
      r.segments_adjusted()
          ? "The p-values are adjusted across the values (one family). "
          : "The p-values are adjusted within each value only, not across "
            "values: with many values some look significant by chance "
            "(--adjust_segments true adjusts across them). ",
      "A value with few units is marked too small to say anything. A "
      "decision rests on the totals above.</p>");
  if (r.segments().empty()) {
    absl::StrAppend(&out, "<p>No exposed units carry a value of ",
                    E(r.dimension()), " yet.</p>");
  }
  for (const v1::SegmentResult& segment : r.segments()) {
    const std::string name =
        absl::StrCat(r.dimension(), " = ", segment.value());
    const v1::GetResultsResponse seg = AsTotals(r, segment);
    std::vector<std::string> units;
    for (const v1::VariantResult& v : seg.variants()) {
      units.push_back(absl::StrCat(v.key(), " ", v.exposed_units()));
    }
    absl::StrAppend(&out, "<section class=\"segment\"><h3>", E(name),
                    "</h3><p>Exposed units: ",
                    E(units.empty() ? "none" : absl::StrJoin(units, ", ")),
                    "</p>", SegmentSrm(name, segment.srm()));
    if (!segment.warnings().empty()) {
      absl::StrAppend(&out, "<ul class=\"warnings\">");
      for (const std::string& w : segment.warnings()) {
        absl::StrAppend(&out, "<li>", E(w), "</li>");
      }
      absl::StrAppend(&out, "</ul>");
    }
    const std::vector<std::string> keys = MetricKeys(seg);
    if (!keys.empty()) {
      std::string key = keys.front();
      for (const std::string& k : keys) {
        if (MetricDefinition(seg, k)->primary()) {
          key = k;
          break;
        }
      }
      ForestSpec spec =
          ForestOf(seg, key, *MetricDefinition(seg, key), /*relative=*/true);
      spec.title = absl::StrCat(name, ": ", spec.title);
      absl::StrAppend(&out, "<div class=\"chart\">", RenderForestSvg(spec),
                      "</div>");
    }
    absl::StrAppend(&out, SegmentTable(seg, keys), "</section>");
  }
  absl::StrAppend(&out, "</section>");
  return out;
}

}  // namespace

std::string SummaryText(const v1::GetResultsResponse& r) {
  std::vector<std::string> lines;
  std::vector<std::string> units;
  for (const v1::VariantResult& v : r.variants()) {
    units.push_back(absl::StrCat(v.key(), " ", v.exposed_units()));
  }
  lines.push_back(absl::StrCat(
      "Experiment ", r.experiment_key(), " (phase ", r.phase(),
      "), units exposed: ", units.empty() ? "none" : absl::StrJoin(units, ", "),
      "."));
  if (r.srm().mismatch()) {
    lines.push_back(
        "WARNING: sample ratio mismatch; the figures below are not "
        "trustworthy.");
  }
  const v1::VariantResult* control = Control(r);
  if (control != nullptr) {
    for (const std::string& key : MetricKeys(r)) {
      for (const v1::VariantResult& v : r.variants()) {
        if (&v == control) continue;
        const v1::MetricResult* m = FindMetric(v, key);
        if (m == nullptr) continue;
        lines.push_back(SummaryLine(r, *control, v, *m));
      }
    }
  }
  lines.push_back(absl::StrCat(
      "Decision: ", r.decision().text().empty() ? "none" : r.decision().text(),
      ". ", DecisionWhy(r)));
  return absl::StrCat(absl::StrJoin(lines, "\n"), "\n");
}

std::string RenderHtmlReport(const v1::GetResultsResponse& r,
                             const ReportContext& context) {
  std::string out = absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width, "
      "initial-scale=1\"><title>Results: ",
      E(r.experiment_key()), "</title><style>", kCss,
      "</style></head><body><main>");
  absl::StrAppend(&out, Header(r, context));
  absl::StrAppend(&out, SrmSection(r.srm()), DecisionSection(r));
  absl::StrAppend(
      &out,
      "<section class=\"summary\"><h2>Summary</h2><p>In plain words, "
      "ready to paste into a campaign review:</p><pre>",
      E(SummaryText(r)), "</pre></section>");
  for (const std::string& key : MetricKeys(r)) {
    absl::StrAppend(&out, MetricSection(r, key));
  }
  if (MetricKeys(r).empty()) {
    absl::StrAppend(&out,
                    "<section class=\"metric\"><h2>Metrics</h2><p>No metric "
                    "figures: the experiment has no metrics, or none was "
                    "asked for.</p></section>");
  }
  absl::StrAppend(&out, DailyTrendSection(r), FunnelSection(r),
                  SegmentSection(r));
  absl::StrAppend(&out,
                  "<footer><p>Made by <code>abexp report</code>. Intervals "
                  "that cross zero are not significant; the always-valid "
                  "interval stays valid however often the results are "
                  "looked at. Formulas: docs/statistics.md.</p></footer>"
                  "</main></body></html>\n");
  return out;
}

}  // namespace abexp::report
