// Reading the metrics: section (docs/config.md, "Metrics").
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/core/config_parser_internal.h"

namespace abexp {
namespace config_parser_internal {
namespace {

const std::pair<const char*, MetricType> kMetricTypes[] = {
    {"binomial", MetricType::kBinomial},
    {"sum", MetricType::kSum},
    {"ratio", MetricType::kRatio},
    {"retention", MetricType::kRetention},
    {"funnel", MetricType::kFunnel}};

// One metric while it is read.
struct MetricDraft {
  std::string what;
  Metric* metric;
  std::map<std::string, int>* first_line;  // of each metric key so far
  bool ok = false;                         // it has a usable, unique key
  std::optional<MetricType> type{};
};

// A ratio's numerator or denominator while it is read.
struct SourceDraft {
  std::string what;
  MetricSource source{};
  bool event_ok = false;
  bool aggregate_ok = false;
};

// The fields of a metric.
// The fields event to day depend on the type: ParseMetricBody reads them.
const FieldRule<MetricDraft> kMetricRules[] = {
    {"key",
     [](Parser& p, const Entry& e, MetricDraft& d) {
       d.ok = p.GetItemKey(e, "metric", d.metric->location.line, d.first_line,
                           &d.what, &d.metric->key);
     },
     "add key: <name>"},
    {"type",
     [](Parser& p, const Entry& e, MetricDraft& d) {
       d.type = p.GetNamed(
           e, kMetricTypes, d.what + ": type",
           "use one of binomial (converted or not), sum (a total per unit), "
           "ratio (a total over a total), retention (active on day k) or "
           "funnel (ordered steps)");
     },
     "add type: with one of binomial, sum, ratio, retention, funnel"},
    {"description",
     [](Parser& p, const Entry& e, MetricDraft& d) {
       if (auto s = p.GetString(e, d.what + " description"))
         d.metric->description = *s;
     }},
    {"event", nullptr},
    {"aggregate", nullptr},
    {"numerator", nullptr},
    {"denominator", nullptr},
    {"window", nullptr},
    {"day", nullptr},
    {"steps", nullptr},
    {"covariate", nullptr},
    {"guardrail",
     [](Parser& p, const Entry& e, MetricDraft& d) {
       if (auto b = p.GetBool(e, d.what + " guardrail"))
         d.metric->guardrail = *b;
     }},
    {"higher_is_better",
     [](Parser& p, const Entry& e, MetricDraft& d) {
       if (auto b = p.GetBool(e, d.what + " higher_is_better"))
         d.metric->higher_is_better = *b;
     }},
};

// The fields of a ratio's numerator or denominator.
// No default aggregate: counting events with no value would silently give 0.
const FieldRule<SourceDraft> kSourceRules[] = {
    {"event",
     [](Parser& p, const Entry& e, SourceDraft& d) {
       std::optional<std::string> ev = p.GetEventName(e, d.what + " event");
       if (ev) d.source.event = *ev;
       d.event_ok = ev.has_value();
     },
     "add the event, such as event: order_completed"},
    {"aggregate",
     [](Parser& p, const Entry& e, SourceDraft& d) {
       std::optional<EventAggregation> a =
           p.GetAggregation(e, d.what + " aggregate");
       if (a) d.source.aggregation = *a;
       d.aggregate_ok = a.has_value();
     },
     "add aggregate: value to add up the events' values, or aggregate: count "
     "to count the "
     "events"},
};

// A funnel step written as a map.
struct StepDraft {
  std::string what;
  FunnelStep step{};
  bool event_ok = false;
};

const FieldRule<StepDraft> kStepRules[] = {
    {"event",
     [](Parser& p, const Entry& e, StepDraft& d) {
       std::optional<std::string> ev = p.GetEventName(e, d.what + " event");
       if (ev) d.step.event = *ev;
       d.event_ok = ev.has_value();
     },
     "add the step's event, such as event: submit_payment"},
    {"window",
     [](Parser& p, const Entry& e, StepDraft& d) {
       d.step.window = p.GetWindow(e, d.what + " window");
     }},
};

}  // namespace

void Parser::ParseMetrics(const Entry& section) {
  if (section.value.IsNull()) return;
  if (!ExpectList(section, "metrics")) return;
  std::map<std::string, int> first_line;
  int index = 0;
  for (auto it = section.value.begin(); it != section.value.end();
       ++it, ++index) {
    Metric metric;
    if (ParseMetric(*it, index, &first_line, &metric)) {
      config_->metrics.push_back(std::move(metric));
    }
  }
}

bool Parser::ParseMetric(const YAML::Node& n, int index,
                         std::map<std::string, int>* first_line,
                         Metric* metric) {
  MetricDraft d{absl::StrCat("metric #", index + 1), metric, first_line};
  if (!ExpectMap(n, n.Mark(), d.what,
                 "- {key: order_conversion, type: binomial, event: "
                 "order_completed}")) {
    return false;
  }
  const FieldMap f = Fields(n, NameFor("metric", n, d.what), kMetricRules);
  metric->location = {n.Mark().line + 1, n.Mark().column + 1};
  ReadFields(kMetricRules, f, n, d);
  if (d.type) ParseMetricBody(n, f, *d.type, d.what, metric);
  if (!d.ok && f.count("key") && f.at("key").value.IsScalar()) {
    broken_metrics_.insert(f.at("key").value.Scalar());
  }
  return d.ok;
}

void Parser::FieldNotForType(const FieldMap& f, const char* field,
                             MetricType type, const std::string& what,
                             const char* fix) {
  // Fields that some other type needs are errors, not silently unused.
  if (!f.count(field)) return;
  Error(f.at(field).key_node,
        absl::StrCat(what, ": ", field, " does not apply to a ",
                     MetricTypeName(type), " metric; ", fix));
}

void Parser::ParseMetricBody(const YAML::Node& n, const FieldMap& f,
                             MetricType type, const std::string& what,
                             Metric* metric) {
  metric->type = type;
  if (type == MetricType::kRatio) {
    ParseRatioSources(n, f, what, metric);
  } else if (type == MetricType::kFunnel) {
    ParseFunnelSteps(n, f, what, metric);
  } else {
    ParseEventSource(n, f, type, what, metric);
  }
  if (f.count("covariate"))
    ParseCovariate(f.at("covariate"), type, what, metric);
  if (type != MetricType::kFunnel) {
    FieldNotForType(f, "steps", type, what,
                    "steps are for funnel metrics; set type: funnel, or "
                    "remove steps");
  }
  if (type == MetricType::kRetention) {
    FieldNotForType(
        f, "window", type, what,
        "a retention metric counts the events of day k after first exposure, "
        "[k days, k+1 days); remove window");
    ParseRetentionDay(n, f, what, metric);
  } else {
    FieldNotForType(
        f, "day", type, what,
        "day is for retention metrics; bound the metric with window: instead");
    if (f.count("window")) {
      if (auto w = GetWindow(f.at("window"), what + " window"))
        metric->window = *w;
    }
  }
}

void Parser::ParseRatioSources(const YAML::Node& n, const FieldMap& f,
                               const std::string& what, Metric* metric) {
  const MetricType type = MetricType::kRatio;
  FieldNotForType(f, "event", type, what,
                  "give the events in numerator: and denominator:, such as "
                  "numerator: {event: order_completed, aggregate: value}");
  FieldNotForType(f, "aggregate", type, what,
                  "set aggregate inside numerator: and denominator:");
  std::optional<MetricSource> num, den;
  if (!f.count("numerator")) {
    Error(n, absl::StrCat(
                 what,
                 ": missing required field 'numerator'; add it, such as "
                 "numerator: {event: order_completed, aggregate: value}"));
  } else {
    num = ParseMetricSource(f.at("numerator"), what + " numerator");
  }
  if (!f.count("denominator")) {
    Error(n, absl::StrCat(
                 what,
                 ": missing required field 'denominator'; add it, such as "
                 "denominator: {event: order_completed, aggregate: count}"));
  } else {
    den = ParseMetricSource(f.at("denominator"), what + " denominator");
  }
  if (num && den && num->event == den->event &&
      num->aggregation == den->aggregation) {
    Error(f.at("denominator"),
          absl::StrCat(
              what, ": numerator and denominator are the same (event ",
              Quote(num->event), ", aggregate ",
              num->aggregation == EventAggregation::kValue ? "value" : "count",
              "), so the ratio is always 1; change one of them"));
  }
  if (num) metric->numerator = *num;
  if (den) metric->denominator = *den;
}

void Parser::ParseEventSource(const YAML::Node& n, const FieldMap& f,
                              MetricType type, const std::string& what,
                              Metric* metric) {
  FieldNotForType(f, "numerator", type, what,
                  "numerator and denominator are for ratio metrics; use event: "
                  "(or set type: ratio)");
  FieldNotForType(f, "denominator", type, what,
                  "numerator and denominator are for ratio metrics; use "
                  "event: (or set type: ratio)");
  if (!f.count("event")) {
    Error(n,
          absl::StrCat(what,
                       ": missing required field 'event'; add the event that "
                       "counts, such as event: order_completed"));
  } else if (auto ev = GetEventName(f.at("event"), what + " event")) {
    metric->source.event = *ev;
  }
  if (type == MetricType::kSum) {
    metric->source.aggregation = EventAggregation::kValue;
    if (f.count("aggregate")) {
      if (auto a = GetAggregation(f.at("aggregate"), what + " aggregate")) {
        metric->source.aggregation = *a;
      }
    }
    return;
  }
  metric->source.aggregation = EventAggregation::kCount;
  FieldNotForType(
      f, "aggregate", type, what,
      type == MetricType::kBinomial
          ? "a binomial metric counts the units that send the event; remove "
            "aggregate (or set type: sum)"
          : "a retention metric counts the units active on the day; remove "
            "aggregate");
}

void Parser::ParseRetentionDay(const YAML::Node& n, const FieldMap& f,
                               const std::string& what, Metric* metric) {
  if (!f.count("day")) {
    Error(n, absl::StrCat(
                 what,
                 ": missing required field 'day'; add the day after first "
                 "exposure on which the unit must be active, such as day: 1 "
                 "or day: 7"));
    return;
  }
  const Entry& d = f.at("day");
  int day = 0;
  if (!IsPlain(d.value) || !absl::SimpleAtoi(d.value.Scalar(), &day)) {
    Error(d, absl::StrCat(what, " day ",
                          d.value.IsScalar() ? Quote(d.value.Scalar())
                                             : NodeKindName(d.value),
                          " is not a whole number; use a day from 1 to ",
                          kMaxRetentionDay, ", such as day: 7"));
  } else if (day < 1 || day > kMaxRetentionDay) {
    Error(d, absl::StrCat(
                 what, " day ", day, " is out of range; use a day from 1 to ",
                 kMaxRetentionDay, " (day 1 is the day after first exposure)"));
  } else {
    metric->retention_day = day;
  }
}

std::optional<MetricSource> Parser::ParseMetricSource(const Entry& e,
                                                      const std::string& what) {
  if (!ExpectMap(e.value, Pos(e), what,
                 "{event: order_completed, aggregate: value}")) {
    return std::nullopt;
  }
  const FieldMap f = Fields(e.value, what, kSourceRules);
  SourceDraft d{what};
  ReadFields(kSourceRules, f, e.value, d);
  if (!d.event_ok || !d.aggregate_ok) return std::nullopt;
  return d.source;
}

void Parser::ParseCovariate(const Entry& e, MetricType type,
                            const std::string& what, Metric* metric) {
  if (type != MetricType::kBinomial && type != MetricType::kSum) {
    Error(e.key_node,
          absl::StrCat(what,
                       ": covariate applies to binomial and sum metrics, "
                       "not to a ",
                       MetricTypeName(type), " metric; remove covariate"));
    return;
  }
  std::optional<std::string> name = GetString(e, what + " covariate");
  if (!name) return;
  if (name->empty()) {
    Error(e,
          absl::StrCat(what,
                       ": covariate is empty; name a numeric attribute the "
                       "exposures carry, such as covariate: orders_last_90d"));
    return;
  }
  // Without an attributes: section any attribute may be sent, so any name
  // is taken; with one, the covariate must be declared as a number.
  if (!config_->attributes.empty()) {
    auto it = config_->attributes.find(*name);
    if (it == config_->attributes.end()) {
      Error(e, absl::StrCat(what, ": covariate ", Quote(*name),
                            " is not a declared attribute; declare it under "
                            "attributes: as ",
                            *name, ": number"));
      return;
    }
    if (it->second != AttributeType::kNumber) {
      Error(e, absl::StrCat(what, ": covariate ", Quote(*name), " is declared ",
                            AttributeTypeName(it->second),
                            "; a covariate must be a number attribute"));
      return;
    }
  }
  metric->covariate = *name;
}

void Parser::ParseFunnelSteps(const YAML::Node& n, const FieldMap& f,
                              const std::string& what, Metric* metric) {
  const MetricType type = MetricType::kFunnel;
  const char* const kUseSteps =
      "a funnel's events are its steps; list them under steps:, such as "
      "steps: [view_checkout, submit_payment, order_completed]";
  FieldNotForType(f, "event", type, what, kUseSteps);
  FieldNotForType(f, "numerator", type, what, kUseSteps);
  FieldNotForType(f, "denominator", type, what, kUseSteps);
  FieldNotForType(f, "aggregate", type, what,
                  "a funnel counts the units that reach each step; remove "
                  "aggregate");
  if (!f.count("steps")) {
    Error(n, absl::StrCat(what,
                          ": missing required field 'steps'; list the funnel's "
                          "events in order, such as steps: [view_checkout, "
                          "submit_payment, order_completed]"));
    return;
  }
  const Entry& e = f.at("steps");
  if (!ExpectList(e, what + " steps")) return;
  const size_t count = e.value.size();
  if (count < static_cast<size_t>(kMinFunnelSteps) ||
      count > static_cast<size_t>(kMaxFunnelSteps)) {
    Error(e, absl::StrCat(what, " has ", count, " steps; a funnel has ",
                          kMinFunnelSteps, " to ", kMaxFunnelSteps,
                          " steps (a single step is a binomial metric)"));
  }
  std::map<std::string, int> first_step;  // event -> step number
  int index = 0;
  for (auto it = e.value.begin(); it != e.value.end(); ++it, ++index) {
    const YAML::Node& item = *it;
    StepDraft d{absl::StrCat(what, " step ", index + 1)};
    if (item.IsMap()) {
      const FieldMap sf = Fields(item, d.what, kStepRules);
      ReadFields(kStepRules, sf, item, d);
    } else {
      Entry scalar{"", item, item};
      std::optional<std::string> ev = GetEventName(scalar, d.what + " event");
      if (ev) d.step.event = *ev;
      d.event_ok = ev.has_value();
    }
    if (!d.event_ok) continue;
    auto [seen, fresh] = first_step.emplace(d.step.event, index + 1);
    if (!fresh) {
      Error(item, absl::StrCat(d.what, ": event ", Quote(d.step.event),
                               " is already step ", seen->second,
                               "; each step needs its own event"));
      continue;
    }
    metric->steps.push_back(std::move(d.step));
  }
}

const Metric* Parser::DefinedMetric(const std::string& key) const {
  for (const Metric& m : config_->metrics) {
    if (m.key == key) return &m;
  }
  return nullptr;
}

}  // namespace config_parser_internal
}  // namespace abexp
