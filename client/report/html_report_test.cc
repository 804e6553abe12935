#include "client/report/html_report.h"

#include <string>

#include "abexp/v1/assignment.pb.h"
#include "abexp/v1/results.pb.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/report/testing/count.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace abexp::report {
namespace {

using ::abexp::report::testing::Count;
using ::testing::HasSubstr;
using ::testing::Not;

v1::MetricResult* AddMetric(v1::VariantResult* v, const std::string& key,
                            double estimate) {
  v1::MetricResult* m = v->add_metrics();
  m->set_metric_key(key);
  m->set_type("binomial");
  m->set_higher_is_better(true);
  m->set_estimate(estimate);
  return m;
}

// checkout: control 10% vs treatment 12% on the primary metric (+2 pp, +20%
// relative, significant), signup 0% vs 0.5% (a zero baseline: no relative
// lift), and variant b without signup figures.
v1::GetResultsResponse Checkout() {
  v1::GetResultsResponse r;
  r.set_experiment_key("checkout");
  r.set_phase(1);
  r.set_config_version("00000000000000aa");
  v1::ConfigVersionSeen* seen = r.add_config_versions();
  seen->set_version("00000000000000aa");
  seen->set_exposures(3000);
  r.set_alpha(0.05);
  r.set_adjust_method("holm");
  r.set_multi_exposed_units(7);
  r.mutable_srm()->set_chi2(0.5);
  r.mutable_srm()->set_p_value(0.78);

  v1::VariantResult* control = r.add_variants();
  control->set_key("control");
  control->set_is_control(true);
  control->set_exposed_units(1000);
  AddMetric(control, "order_conversion", 0.10)->set_primary(true);
  AddMetric(control, "signup", 0.0);

  v1::VariantResult* t = r.add_variants();
  t->set_key("treatment");
  t->set_exposed_units(1000);
  v1::MetricResult* oc = AddMetric(t, "order_conversion", 0.12);
  oc->set_primary(true);
  oc->mutable_absolute()->set_estimate(0.02);
  oc->mutable_absolute()->set_ci_low(0.005);
  oc->mutable_absolute()->set_ci_high(0.035);
  oc->mutable_absolute()->set_p_value(0.012);
  oc->mutable_absolute()->set_adjusted_p_value(0.024);
  oc->mutable_relative()->set_estimate(0.2);
  oc->mutable_relative()->set_ci_low(0.05);
  oc->mutable_relative()->set_ci_high(0.35);
  oc->mutable_bayes()->set_chance_to_beat_control(0.993);
  oc->mutable_sequential()->set_ci_low(-0.01);
  oc->mutable_sequential()->set_ci_high(0.05);
  v1::MetricResult* su = AddMetric(t, "signup", 0.005);
  su->mutable_absolute()->set_estimate(0.005);
  su->mutable_absolute()->set_ci_low(0.0006);
  su->mutable_absolute()->set_ci_high(0.0094);
  su->add_warnings("the control's rate is 0: the relative lift is undefined");

  v1::VariantResult* b = r.add_variants();
  b->set_key("b");
  b->set_exposed_units(1000);
  AddMetric(b, "order_conversion", 0.10)->set_primary(true);

  r.mutable_decision()->set_kind(v1::DECISION_KIND_SHIP);
  r.mutable_decision()->set_variant("treatment");
  r.mutable_decision()->set_metric("order_conversion");
  r.mutable_decision()->set_text("ship treatment");
  return r;
}

v1::Experiment CheckoutExperiment() {
  v1::Experiment x;
  x.set_key("checkout");
  x.set_owner("growth-team@example.com");
  x.set_description("One-page checkout");
  x.set_status(v1::EXPERIMENT_STATUS_RUNNING);
  x.set_start_time("2026-11-01T00:00:00Z");
  x.set_traffic_bp(10000);
  return x;
}

TEST(HtmlReport, AHostileDescriptionIsShownAsTextNeverAsMarkup) {
  v1::Experiment x = CheckoutExperiment();
  x.set_description(
      "<script>alert('x')</script><img src=x onerror=alert(1)>\"&</p>");
  x.set_owner("<b>owner</b>");
  v1::GetResultsResponse r = Checkout();
  r.mutable_variants(1)->set_key("<svg onload=alert(2)>");
  r.mutable_decision()->set_text("ship <i>it</i>");
  const std::string page = RenderHtmlReport(r, {&x, "<now>", "<src>"});
  EXPECT_THAT(page, Not(HasSubstr("<script")));
  EXPECT_THAT(page, Not(HasSubstr("<img")));
  EXPECT_THAT(page, Not(HasSubstr("<b>owner")));
  EXPECT_THAT(page, Not(HasSubstr("<svg onload")));
  EXPECT_THAT(page, Not(HasSubstr("<i>it")));
  EXPECT_THAT(page, Not(HasSubstr("<now>")));
  EXPECT_THAT(page, HasSubstr("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
                              "&lt;img src=x onerror=alert(1)&gt;&quot;&amp;"
                              "&lt;/p&gt;"));
  EXPECT_THAT(page, HasSubstr("&lt;svg onload=alert(2)&gt;"));
}

TEST(HtmlReport, ThePageFetchesNothing) {
  const v1::Experiment x = CheckoutExperiment();
  const std::string page = RenderHtmlReport(Checkout(), {&x, "now", "here"});
  for (const char* fetch : {"<script", "<link", "<img", "<iframe", "@import",
                            "url(", "src=", "href=", "https:"}) {
    EXPECT_THAT(page, Not(HasSubstr(fetch))) << fetch;
  }
  // The one http: is the SVG namespace name, which is never fetched.
  EXPECT_EQ(Count(page, "http:"),
            Count(page, "xmlns=\"http://www.w3.org/2000/svg\""));
}

TEST(HtmlReport, TheHeaderCarriesTheExperimentsFacts) {
  const v1::Experiment x = CheckoutExperiment();
  const std::string page = RenderHtmlReport(
      Checkout(), {&x, "2026-12-07 16:30 UTC", "abexp-server h:1"});
  for (const char* fact :
       {"<h1>Results: checkout</h1>", "One-page checkout",
        "growth-team@example.com", "<dd>running</dd>", "2026-11-01T00:00:00Z",
        "00000000000000aa (3000 exposures)", "<dd>7 (exposed to several",
        "control (control): 1000", "2026-12-07 16:30 UTC", "abexp-server h:1",
        "95% (alpha 0.05)"}) {
    EXPECT_THAT(page, HasSubstr(fact));
  }
}

TEST(HtmlReport, WithoutTheExperimentTheHeaderShowsWhatTheResultsCarry) {
  const std::string page = RenderHtmlReport(Checkout(), {});
  EXPECT_THAT(page, HasSubstr("<h1>Results: checkout</h1>"));
  EXPECT_THAT(page, Not(HasSubstr("<dt>owner</dt>")));
  EXPECT_THAT(page, Not(HasSubstr("<dt>generated</dt>")));
}

TEST(HtmlReport, ASampleRatioMismatchIsALoudBannerAndTheSummarySaysSo) {
  v1::GetResultsResponse r = Checkout();
  EXPECT_THAT(RenderHtmlReport(r, {}), Not(HasSubstr("role=\"alert\"")));
  r.mutable_srm()->set_mismatch(true);
  r.mutable_srm()->set_p_value(1e-9);
  r.mutable_decision()->set_kind(v1::DECISION_KIND_DO_NOT_TRUST);
  r.mutable_decision()->set_text("do not trust: sample ratio mismatch");
  const std::string page = RenderHtmlReport(r, {});
  EXPECT_THAT(page, HasSubstr("class=\"banner srm-mismatch\" role=\"alert\""));
  EXPECT_THAT(page, HasSubstr("Sample ratio mismatch: do not trust"));
  EXPECT_THAT(page, HasSubstr("p = 1.0e-9"));
  EXPECT_THAT(SummaryText(r), HasSubstr("WARNING: sample ratio mismatch"));
  // The banner comes before any figure.
  EXPECT_LT(page.find("srm-mismatch"), page.find("class=\"metric\""));
}

TEST(HtmlReport, TheDecisionAndWhy) {
  const std::string page = RenderHtmlReport(Checkout(), {});
  EXPECT_THAT(page, HasSubstr("<p class=\"verdict\">ship treatment</p>"));
  EXPECT_THAT(page, HasSubstr("The primary metric order_conversion is "
                              "significantly better in treatment"));
}

TEST(HtmlReport, TheSummaryGivesWhatChangedByHowMuchAndHowSure) {
  const std::string summary = SummaryText(Checkout());
  EXPECT_THAT(summary,
              HasSubstr("treatment vs control, order_conversion (primary): "
                        "10.00% -> 12.00%, a change of +2.00 pp (95% CI "
                        "[+0.50 pp, +3.50 pp]), +20.0% relative (95% CI "
                        "[+5.0%, +35.0%]); p = 0.012 (adjusted 0.024); chance "
                        "to be better than control 99.3%. Significant at "
                        "alpha 0.05: better than control."));
  // A zero baseline: the absolute change, no relative one.
  EXPECT_THAT(summary,
              HasSubstr("signup: 0.00% -> 0.50%, a change of +0.50 pp"));
  EXPECT_THAT(summary, HasSubstr("b vs control, order_conversion (primary): "
                                 "10.00% -> 10.00%; no comparison"));
  EXPECT_THAT(summary, HasSubstr("units exposed: control 1000, treatment 1000, "
                                 "b 1000."));
  EXPECT_THAT(summary, HasSubstr("Decision: ship treatment."));
}

TEST(HtmlReport, EachMetricHasTwoForestPlotsAndATable) {
  const std::string page = RenderHtmlReport(Checkout(), {});
  EXPECT_EQ(Count(page, "<section class=\"metric\""), 2u);
  EXPECT_EQ(Count(page, "<svg class=\"forest\""), 4u);
  EXPECT_EQ(Count(page, "<table>"), 2u);
  // b has no signup figures: its rows say so, in both plots and the table.
  EXPECT_EQ(Count(page, "no data for this metric"), 3u);
  // The zero control rate leaves treatment's relative signup lift undefined.
  EXPECT_THAT(page, HasSubstr(">not defined (see the warnings)</text>"));
  EXPECT_THAT(page, HasSubstr("the control&#39;s rate is 0"));
  // Only the absolute plots carry always-valid intervals (treatment's
  // order_conversion is the one row that has it).
  EXPECT_EQ(Count(page, "<line class=\"ci-always-valid\""), 1u);
  EXPECT_THAT(page, HasSubstr("[-1.00 pp, +5.00 pp]"));
}

// Checkout() with two cohort days, 2026-11-01 and 2026-11-03 (no units on
// the 2nd): the first day's figures are the totals' with the treatment's
// lift halved, the last day's are the totals.
v1::GetResultsResponse CheckoutWithDays() {
  v1::GetResultsResponse r = Checkout();
  v1::DayResult* first = r.add_daily();
  first->set_day("2026-11-01");
  for (int n : {600, 590, 610}) first->add_exposed_on_day(n);
  *first->mutable_variants() = r.variants();
  v1::MetricResult* oc = first->mutable_variants(1)->mutable_metrics(0);
  oc->mutable_absolute()->set_estimate(0.01);
  oc->mutable_relative()->set_estimate(0.1);
  v1::DayResult* last = r.add_daily();
  last->set_day("2026-11-03");
  for (int n : {400, 410, 390}) last->add_exposed_on_day(n);
  *last->mutable_variants() = r.variants();
  return r;
}

// The text of the daily-trend section.
std::string DailySection(const std::string& page) {
  const size_t begin =
      page.find("<section class=\"daily\" id=\"daily-trend\">");
  EXPECT_NE(begin, std::string::npos);
  if (begin == std::string::npos) return "";
  return page.substr(begin, page.find("</section>", begin) - begin);
}

TEST(HtmlReport, TwoDaysDrawTheExposuresOnceAndATrendPerMetric) {
  const std::string page = RenderHtmlReport(CheckoutWithDays(), {});
  const std::string daily = DailySection(page);
  EXPECT_THAT(daily, Not(HasSubstr("not available yet")));
  EXPECT_EQ(Count(daily, "<svg class=\"exposures\""), 1u);
  EXPECT_EQ(Count(daily, "<rect class=\"bar\""), 6u) << "2 days, 3 variants";
  EXPECT_THAT(daily,
              HasSubstr("<title>2026-11-01 treatment: 590 units</title>"));
  // order_conversion and signup, each relative and absolute.
  EXPECT_EQ(Count(daily, "<svg class=\"trend\""), 4u);
  EXPECT_THAT(daily, HasSubstr("order_conversion (primary): cumulative lift"));
  EXPECT_THAT(daily, HasSubstr("cohort day (UTC), 2026-11-01 to 2026-11-03"));
  // The treatment's order_conversion: a line over both days with a band;
  // its absolute lift has always-valid intervals, the relative has none.
  EXPECT_GE(Count(daily, "class=\"ci-band\""), 2u);
  EXPECT_EQ(Count(daily, "<g class=\"ci-always-valid\""), 2u)
      << "a low and a high dashed line through both days, in "
         "order_conversion's absolute lift only";
  EXPECT_THAT(daily, HasSubstr("always-valid interval: absolute lift only"));
  // What the trend is, and that a day is not a decision.
  EXPECT_THAT(daily, HasSubstr("It is not the result as it stood on that day"));
  EXPECT_THAT(daily, HasSubstr("is not a decision"));
  // The funnels have their own section.
  EXPECT_THAT(page, HasSubstr("id=\"funnels\""));
}

TEST(HtmlReport, AFunnelMetricShowsItsStepsPerVariant) {
  v1::GetResultsResponse r = Checkout();
  // Control 400 -> 200 of 1000, treatment 500 -> 300 of 1000.
  const int64_t units[2][2] = {{400, 200}, {500, 300}};
  for (int v = 0; v < 2; ++v) {
    v1::MetricResult* m =
        AddMetric(r.mutable_variants(v), "checkout_steps", units[v][1] / 1e3);
    m->set_type("funnel");
    for (int k = 0; k < 2; ++k) {
      v1::FunnelStepFigures* step = m->add_funnel_steps();
      step->set_event(k == 0 ? "view_checkout" : "submit_payment");
      step->set_units(units[v][k]);
      step->set_rate_from_exposure(units[v][k] / 1e3);
      step->set_rate_from_previous(k == 0 ? units[v][0] / 1e3
                                          : 1.0 * units[v][1] / units[v][0]);
      if (v == 1 && k == 1) {
        step->mutable_from_previous()->mutable_absolute()->set_estimate(0.1);
      }
    }
  }
  const std::string page = RenderHtmlReport(r, {});
  EXPECT_THAT(page, Not(HasSubstr("No funnel metric")));
  EXPECT_THAT(page, HasSubstr("<th scope=\"row\">treatment</th><td>2 "
                              "submit_payment</td><td>300</td><td>30.0%</td>"
                              "<td>60.0%</td><td>+10.00 pp</td>"));
  EXPECT_THAT(page, HasSubstr("<th scope=\"row\">control</th><td>1 "
                              "view_checkout</td><td>400</td><td>40.0%</td>"
                              "<td>40.0%</td><td>-</td>"));
  // The funnel's own estimate is a rate, as a binomial metric's.
  EXPECT_THAT(page, HasSubstr("30.00%"));
  // Above the table, a funnel chart: per step a bar per variant that has
  // the metric (b has none: it says so), labelled.
  const size_t chart = page.find("<svg class=\"funnel\"");
  ASSERT_NE(chart, std::string::npos);
  EXPECT_LT(chart, page.find("<th scope=\"row\">treatment</th><td>2 "));
  EXPECT_GT(chart, page.find("id=\"funnels\""));
  const std::string svg =
      page.substr(chart, page.find("</svg>", chart) - chart);
  EXPECT_EQ(Count(svg, "<rect class=\"funnel-bar\""), 4u);
  EXPECT_EQ(Count(svg, ">no figures for this step</text>"), 2u);
  EXPECT_THAT(svg, HasSubstr(">2. submit_payment</text>"));
  EXPECT_THAT(svg, HasSubstr(">30.0%, 300 units</text>"));
  EXPECT_THAT(svg, HasSubstr(">60.0%</text>"));
  EXPECT_THAT(svg, HasSubstr(">+10.00 pp</text>")) << "no interval: no star";
  // A variant keeps its colour across the charts: control the first,
  // treatment the second.
  EXPECT_THAT(svg, HasSubstr("<title>control, step 1. view_checkout: 40.0%, "
                             "400 units</title>"));
  EXPECT_THAT(svg, HasSubstr("fill=\"#c2410c\"><title>treatment, step 1."));
  // Without a funnel metric the section says so and draws nothing.
  const std::string none = RenderHtmlReport(Checkout(), {});
  EXPECT_THAT(none, HasSubstr("No funnel metric"));
  EXPECT_THAT(none, Not(HasSubstr("<svg class=\"funnel\"")));
}

TEST(HtmlReport, TheFunnelChartStarsASignificantStepAndEscapesEvents) {
  v1::GetResultsResponse r = Checkout();
  for (int v = 0; v < 2; ++v) {
    v1::MetricResult* m =
        AddMetric(r.mutable_variants(v), "steps", v == 0 ? 0.1 : 0.2);
    m->set_type("funnel");
    v1::FunnelStepFigures* step = m->add_funnel_steps();
    step->set_event("<img src=x onerror=alert(1)>");
    step->set_units(v == 0 ? 100 : 200);
    step->set_rate_from_exposure(v == 0 ? 0.1 : 0.2);
    step->set_rate_from_previous(v == 0 ? 0.1 : 0.2);
    if (v == 1) {
      v1::Effect* lift = step->mutable_from_previous()->mutable_absolute();
      lift->set_estimate(0.1);
      lift->set_ci_low(0.07);
      lift->set_ci_high(0.13);
    }
  }
  const std::string page = RenderHtmlReport(r, {});
  EXPECT_THAT(page, Not(HasSubstr("<img")));
  EXPECT_THAT(page, HasSubstr(">1. &lt;img src=x onerror=alert(1)&gt;</text>"));
  EXPECT_THAT(page, HasSubstr(">+10.00 pp *</text>"));
  EXPECT_THAT(page, HasSubstr("* the lift&#39;s 95% interval excludes 0"));
}

TEST(HtmlReport, ThePrimaryMetricsTrendComesFirst) {
  v1::GetResultsResponse r = CheckoutWithDays();
  for (v1::DayResult& d : *r.mutable_daily()) {
    for (v1::VariantResult& v : *d.mutable_variants()) {
      for (v1::MetricResult& m : *v.mutable_metrics()) {
        m.set_primary(m.metric_key() == "signup");
      }
    }
  }
  for (v1::VariantResult& v : *r.mutable_variants()) {
    for (v1::MetricResult& m : *v.mutable_metrics()) {
      m.set_primary(m.metric_key() == "signup");
    }
  }
  const std::string daily = DailySection(RenderHtmlReport(r, {}));
  const size_t signup = daily.find("<h3>signup (primary)");
  const size_t order = daily.find("<h3>order_conversion:");
  ASSERT_NE(signup, std::string::npos);
  ASSERT_NE(order, std::string::npos);
  EXPECT_LT(signup, order);
}

TEST(HtmlReport, WithoutDailyEntriesTheSectionSaysSoAndDrawsNothing) {
  const std::string page = RenderHtmlReport(Checkout(), {});
  const std::string daily = DailySection(page);
  EXPECT_THAT(daily, HasSubstr("No daily figures"));
  EXPECT_THAT(daily, Not(HasSubstr("<svg")));
  EXPECT_THAT(page, HasSubstr("id=\"funnels\""));
}

TEST(HtmlReport, HostileStringsInTheDailyFiguresAreEscaped) {
  v1::GetResultsResponse r = CheckoutWithDays();
  for (v1::DayResult& d : *r.mutable_daily()) {
    d.mutable_variants(1)->set_key("<svg onload=alert(2)>");
  }
  r.mutable_variants(1)->set_key("<svg onload=alert(2)>");
  r.add_daily()->set_day("<script>alert(3)</script>");
  const std::string daily = DailySection(RenderHtmlReport(r, {}));
  EXPECT_THAT(daily, Not(HasSubstr("<svg onload")));
  EXPECT_THAT(daily, Not(HasSubstr("<script")));
  EXPECT_THAT(daily, HasSubstr("&lt;svg onload=alert(2)&gt;"));
  EXPECT_THAT(daily, HasSubstr("1 day left out"));
}

TEST(HtmlReport, CupedFiguresAreShownWhereAMetricHasThem) {
  v1::GetResultsResponse r = Checkout();
  v1::CupedFigures* c =
      r.mutable_variants(0)->mutable_metrics(0)->mutable_cuped();
  c->set_units_with_covariate(990);
  c->set_units_without_covariate(10);
  c->set_estimate(0.101);
  c = r.mutable_variants(1)->mutable_metrics(0)->mutable_cuped();
  c->set_units_with_covariate(980);
  c->set_units_without_covariate(20);
  c->set_estimate(0.119);
  c->mutable_absolute()->set_estimate(0.018);
  c->mutable_absolute()->set_ci_low(0.008);
  c->mutable_absolute()->set_ci_high(0.028);
  c->mutable_absolute()->set_p_value(0.0123);
  c->mutable_relative()->set_estimate(0.178);
  c->set_theta(0.8125);
  c->set_variance_reduction(0.375);
  c->add_warnings("<covariate> missing for 20 units");
  const std::string page = RenderHtmlReport(r, {});
  EXPECT_EQ(Count(page, "<table class=\"cuped\">"), 1u) << "signup has none";
  EXPECT_THAT(page, HasSubstr("<td>980</td><td>20</td><td>11.90%</td>"));
  EXPECT_THAT(page, HasSubstr("+1.80 pp<br><span class=\"ci\">[+0.80 pp, "
                              "+2.80 pp]</span>"));
  EXPECT_THAT(page, HasSubstr("<td>+17.8%</td><td>0.0123</td>"
                              "<td>0.8125</td><td>37.5%</td>"));
  EXPECT_THAT(page, HasSubstr("treatment CUPED: &lt;covariate&gt; missing"));
  EXPECT_THAT(RenderHtmlReport(Checkout(), {}), Not(HasSubstr("CUPED")));
}

TEST(HtmlReport, ThePageFitsPhonesAndPrintsOnA4) {
  const std::string page = RenderHtmlReport(Checkout(), {});
  EXPECT_TRUE(absl::StartsWith(page, "<!DOCTYPE html>"));
  EXPECT_THAT(
      page, HasSubstr("<meta name=\"viewport\" content=\"width=device-width"));
  EXPECT_THAT(page, HasSubstr("@media print"));
  EXPECT_THAT(page, HasSubstr("size: A4"));
  EXPECT_THAT(page, HasSubstr("@media (max-width: 480px)"));
}

// A segment of Checkout()'s order_conversion: control and treatment with
// `units` each and their conversion rates; treatment's lift is given whole.
v1::SegmentResult* AddSegment(v1::GetResultsResponse* r,
                              const std::string& value, int control_units,
                              int treatment_units) {
  v1::SegmentResult* s = r->add_segments();
  s->set_value(value);
  v1::VariantResult* c = s->add_variants();
  c->set_key("control");
  c->set_is_control(true);
  c->set_exposed_units(control_units);
  AddMetric(c, "order_conversion", 0.10)->set_primary(true);
  v1::VariantResult* t = s->add_variants();
  t->set_key("treatment");
  t->set_exposed_units(treatment_units);
  AddMetric(t, "order_conversion", 0.15)->set_primary(true);
  return s;
}

// Checkout() broken down by platform: ios balanced with a significant
// +5 pp (+50%) lift, web with a planted sample-ratio mismatch (300 vs 200)
// and the server's too-small warning.
v1::GetResultsResponse CheckoutByPlatform() {
  v1::GetResultsResponse r = Checkout();
  r.set_dimension("platform");
  v1::SegmentResult* ios = AddSegment(&r, "ios", 600, 600);
  ios->mutable_srm()->set_chi2(0);
  ios->mutable_srm()->set_p_value(1);
  v1::MetricResult* oc = ios->mutable_variants(1)->mutable_metrics(0);
  oc->mutable_absolute()->set_estimate(0.05);
  oc->mutable_absolute()->set_ci_low(0.01);
  oc->mutable_absolute()->set_ci_high(0.09);
  oc->mutable_absolute()->set_p_value(0.006);
  oc->mutable_absolute()->set_adjusted_p_value(0.012);
  oc->mutable_relative()->set_estimate(0.5);
  oc->mutable_relative()->set_ci_low(0.1);
  oc->mutable_relative()->set_ci_high(0.9);
  v1::SegmentResult* web = AddSegment(&r, "web", 300, 200);
  web->mutable_srm()->set_chi2(20);
  web->mutable_srm()->set_p_value(7.7e-6);
  web->mutable_srm()->set_mismatch(true);
  web->add_warnings(
      "too small to say anything: fewer than 100 exposed units in a variant");
  return r;
}

// The text of the segment section of value `value`.
std::string SegmentOf(const std::string& page, const std::string& value) {
  const size_t begin = page.find(
      absl::StrCat("<section class=\"segment\"><h3>platform = ", value, "<"));
  EXPECT_NE(begin, std::string::npos) << value;
  if (begin == std::string::npos) return "";
  return page.substr(begin, page.find("</section>", begin) - begin);
}

TEST(HtmlReport, EachSegmentShowsItsUnitsItsSampleRatioAndItsLifts) {
  const std::string page = RenderHtmlReport(CheckoutByPlatform(), {});
  EXPECT_THAT(page, HasSubstr("<h2>Segments by platform</h2>"));
  EXPECT_THAT(page, HasSubstr("adjusted within each value only"));
  EXPECT_EQ(Count(page, "<section class=\"segment\">"), 2u);
  // The totals come first.
  EXPECT_LT(page.find("id=\"metric-order_conversion\""),
            page.find("id=\"segments\""));

  const std::string ios = SegmentOf(page, "ios");
  EXPECT_THAT(ios, HasSubstr("Exposed units: control 600, treatment 600"));
  EXPECT_THAT(ios, HasSubstr("Sample ratio: OK"));
  EXPECT_THAT(ios, Not(HasSubstr("segment-srm-mismatch")));
  EXPECT_EQ(Count(ios, "<svg class=\"forest\""), 1u);
  EXPECT_THAT(ios, HasSubstr("platform = ios: order_conversion: relative"));
  EXPECT_THAT(ios, HasSubstr("+50.0%<br><span class=\"ci\">[+10.0%, +90.0%]"));
  EXPECT_THAT(ios, HasSubstr("+5.00 pp<br><span class=\"ci\">"
                             "[+1.00 pp, +9.00 pp]"));
  EXPECT_THAT(ios, HasSubstr("0.006 (0.012)</td><td>better</td>"));

  // web's mismatch is as loud as the totals' would be, in web alone.
  const std::string web = SegmentOf(page, "web");
  EXPECT_THAT(web, HasSubstr("Exposed units: control 300, treatment 200"));
  EXPECT_THAT(web, HasSubstr("class=\"banner segment-srm-mismatch\""));
  EXPECT_THAT(web, HasSubstr("Sample ratio mismatch in platform = web: do "
                             "not trust its figures"));
  EXPECT_THAT(web, HasSubstr("p = 7.7e-6"));
  EXPECT_THAT(web, HasSubstr("<li>too small to say anything"));
  EXPECT_EQ(Count(page, "segment-srm-mismatch"), 1u);
  // The totals are balanced: no banner for them.
  EXPECT_THAT(page, Not(HasSubstr("role=\"alert\"")));
}

TEST(HtmlReport, AdjustedSegmentsSayTheValuesAreOneFamily) {
  v1::GetResultsResponse r = CheckoutByPlatform();
  r.set_segments_adjusted(true);
  const std::string page = RenderHtmlReport(r, {});
  EXPECT_THAT(page, HasSubstr("adjusted across the values (one family)"));
  EXPECT_THAT(page, Not(HasSubstr("adjusted within each value only")));
}

TEST(HtmlReport, WithoutADimensionThereIsNoSegmentSection) {
  const std::string page = RenderHtmlReport(Checkout(), {});
  EXPECT_THAT(page, Not(HasSubstr("id=\"segments\"")));
  EXPECT_THAT(page, Not(HasSubstr("Segments by")));

  // A dimension without any value yet says so.
  v1::GetResultsResponse r = Checkout();
  r.set_dimension("platform");
  EXPECT_THAT(RenderHtmlReport(r, {}),
              HasSubstr("No exposed units carry a value of platform yet."));
}

TEST(HtmlReport, AHostileSegmentValueIsShownAsText) {
  v1::GetResultsResponse r = CheckoutByPlatform();
  r.mutable_segments(1)->set_value("<script>alert(1)</script>&");
  const std::string page = RenderHtmlReport(r, {});
  EXPECT_THAT(page, Not(HasSubstr("<script>")));
  EXPECT_THAT(page, HasSubstr("platform = &lt;script&gt;alert(1)&lt;/script&gt;"
                              "&amp;</h3>"));
  // In its mismatch banner and its chart's title too.
  EXPECT_EQ(Count(page, "&lt;script&gt;alert(1)&lt;/script&gt;&amp;"), 3u);
}

}  // namespace
}  // namespace abexp::report
