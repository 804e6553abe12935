#include "client/report/daily_section.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/report/figures.h"
#include "client/report/svg_chart.h"
#include "client/report/trend_chart.h"

namespace abexp::report {
namespace {

// One entry of `daily` whose date could be read.
struct Day {
  int64_t number;
  const v1::DayResult* result;
};

const v1::VariantResult* FindVariant(const v1::DayResult& day,
                                     const std::string& key) {
  for (const v1::VariantResult& v : day.variants()) {
    if (v.key() == key) return &v;
  }
  return nullptr;
}

std::optional<Interval> IntervalOf(bool has_low, double low, bool has_high,
                                   double high) {
  if (!has_low || !has_high) return std::nullopt;
  return Interval{low, high};
}

// The trend of metric `key`'s relative (else absolute) lift, one series per
// non-control variant.
TrendSpec TrendOf(const v1::GetResultsResponse& r, const std::vector<Day>& days,
                  const std::string& key, const v1::MetricResult& def,
                  bool relative) {
  TrendSpec spec;
  spec.title =
      absl::StrCat(key, ": cumulative ", relative ? "relative" : "absolute",
                   " lift of each variant by cohort day");
  spec.higher_is_better = def.higher_is_better();
  spec.confidence = ConfidenceLevel(r.alpha());
  if (relative || IsRate(def)) {
    spec.display_scale = 100;
    spec.value_suffix = relative ? "%" : " pp";
  }
  if (relative) {
    spec.no_always_valid_note = "always-valid interval: absolute lift only";
  }
  for (int index = 0; index < r.variants_size(); ++index) {
    const v1::VariantResult& variant = r.variants(index);
    if (variant.is_control()) continue;
    TrendSeries series;
    series.label = variant.key();
    series.style = index;  // as in the exposure bars
    for (const Day& day : days) {
      const v1::VariantResult* v = FindVariant(*day.result, variant.key());
      const v1::MetricResult* m = v ? FindMetric(*v, key) : nullptr;
      if (m == nullptr) continue;
      const v1::Effect& e = relative ? m->relative() : m->absolute();
      TrendPoint p;
      p.day = day.number;
      if (e.has_estimate()) p.estimate = e.estimate();
      p.fixed =
          IntervalOf(e.has_ci_low(), e.ci_low(), e.has_ci_high(), e.ci_high());
      if (!relative) {
        const v1::SequentialFigures& s = m->sequential();
        p.always_valid = IntervalOf(s.has_ci_low(), s.ci_low(), s.has_ci_high(),
                                    s.ci_high());
      }
      series.points.push_back(p);
    }
    spec.series.push_back(std::move(series));
  }
  return spec;
}

ExposureSpec ExposuresOf(const v1::GetResultsResponse& r,
                         const std::vector<Day>& days) {
  ExposureSpec spec;
  spec.title = "Units first exposed per day, per variant";
  for (const v1::VariantResult& v : r.variants()) {
    spec.variants.push_back(v.key());
  }
  for (const Day& day : days) {
    ExposureDay d;
    d.day = day.number;
    for (size_t i = 0; i < spec.variants.size(); ++i) {
      const int n = static_cast<int>(i);
      d.counts.push_back(
          n < day.result->exposed_on_day_size()
              ? std::optional<int64_t>(day.result->exposed_on_day(n))
              : std::nullopt);
    }
    spec.days.push_back(std::move(d));
  }
  return spec;
}

// Metric keys with the primary first, the rest in their order.
std::vector<std::string> PrimaryFirst(const v1::GetResultsResponse& r) {
  std::vector<std::string> keys = MetricKeys(r);
  std::stable_partition(keys.begin(), keys.end(), [&](const std::string& k) {
    const v1::MetricResult* def = MetricDefinition(r, k);
    return def != nullptr && def->primary();
  });
  return keys;
}

std::string Chart(const std::string& caption, const std::string& svg) {
  return absl::StrCat("<div class=\"chart\"><p class=\"caption\">",
                      EscapeXml(caption), "</p>", svg, "</div>");
}

constexpr char kNote[] =
    "<p class=\"note\">Each day's point is computed over the units first "
    "exposed on or before that day (their cohorts), with all the events "
    "they have had so far. It is not the result as it stood on that day. A "
    "line that settles means more units no longer move the estimate; a "
    "line that drifts from early cohorts to late ones suggests a novelty "
    "effect or a change in who arrives. A day whose interval misses zero "
    "is not a decision: looking every day is what the fixed-horizon "
    "interval (shaded) does not allow for, and the always-valid interval "
    "(dashed, absolute lift) does. Days without new units are left out, so "
    "a pause in traffic shows as a gap. See docs/statistics.md, \"The daily "
    "trend\".</p>";

}  // namespace

std::string DailyTrendSection(const v1::GetResultsResponse& r) {
  std::string out =
      "<section class=\"daily\" id=\"daily-trend\"><h2>Daily trend</h2>";
  std::vector<Day> days;
  int unreadable = 0;
  for (const v1::DayResult& d : r.daily()) {
    if (std::optional<int64_t> n = ParseDay(d.day())) {
      days.push_back(Day{*n, &d});
    } else {
      ++unreadable;
    }
  }
  if (days.empty()) {
    absl::StrAppend(&out,
                    "<p class=\"no-daily\">No daily figures: the server sent "
                    "no cohort day",
                    unreadable > 0 ? " with a readable date" : "",
                    ". Either no unit is exposed yet, or the server predates "
                    "daily results (upgrade abexp-server).</p></section>");
    return out;
  }
  absl::StrAppend(&out, kNote);
  if (unreadable > 0) {
    absl::StrAppend(&out, "<p class=\"warnings\">", unreadable,
                    unreadable == 1 ? " day" : " days",
                    " left out: the server sent a date that is not "
                    "YYYY-MM-DD.</p>");
  }
  absl::StrAppend(&out, "<h3>Units first exposed per day</h3>",
                  Chart("Bars in each day in the legend's order",
                        RenderExposuresSvg(ExposuresOf(r, days))));
  for (const std::string& key : PrimaryFirst(r)) {
    const v1::MetricResult* def = MetricDefinition(r, key);
    absl::StrAppend(&out, "<h3>", EscapeXml(key),
                    def->primary() ? " (primary)" : "",
                    ": cumulative lift by cohort day</h3><div "
                    "class=\"chart-pair\">",
                    Chart("Relative lift",
                          RenderTrendSvg(TrendOf(r, days, key, *def, true))),
                    Chart("Absolute lift",
                          RenderTrendSvg(TrendOf(r, days, key, *def, false))),
                    "</div>");
  }
  absl::StrAppend(&out, "</section>");
  return out;
}

}  // namespace abexp::report
