#include "server/testing/memory_event_store.h"

#include "absl/strings/str_cat.h"
#include "server/core/event_store_internal.h"

namespace abexp {
namespace {

using internal::DayOfMillis;
using internal::kMillisPerDay;
using internal::StoreMillis;

// Sums move by double deltas into long double, as HINCRBYFLOAT does.
void Add(long double* field, double delta) {
  *field += static_cast<long double>(delta);
}

// A unit with covariate x whose value y moved from y0 to y1, in the CUPED
// sums (as write_events.lua's cuped_y).
void AddCupedY(MetricAggregate* m, double x, double y0, double y1) {
  Add(&m->cuped_sum_y, y1 - y0);
  Add(&m->cuped_sum_y_sq, y1 * y1 - y0 * y0);
  Add(&m->cuped_sum_xy, x * (y1 - y0));
}

// Adds (sign +1) or removes (-1) a unit's value y in the CUPED sums.
void AddCupedUnit(MetricAggregate* m, double x, double y, int sign) {
  if (sign > 0) {
    AddCupedY(m, x, 0, y);
  } else {
    AddCupedY(m, x, y, 0);
  }
}

}  // namespace

MemoryEventStore::ExperimentData* MemoryEventStore::Data(
    const ExperimentLayout& layout) {
  return &experiments_[absl::StrCat(layout.key, "\n", layout.phase)];
}

std::string MemoryEventStore::Segment(
    const Dimension& dimension,
    const std::map<std::string, std::string>& values, ExperimentData* data) {
  std::string segment = internal::SegmentOf(values, dimension.attribute);
  if (segment == kNoneSegment || segment == kOtherSegment) return segment;
  absl::flat_hash_set<std::string>& known =
      data->dimension_values[dimension.attribute];
  if (known.contains(segment)) return segment;
  if (known.size() >= static_cast<size_t>(dimension.max_values))
    return kOtherSegment;
  known.insert(segment);
  return segment;
}

std::vector<MemoryEventStore::Figures*> MemoryEventStore::SegmentFigures(
    const UnitRecord& unit, ExperimentData* data) {
  std::vector<Figures*> out;
  for (const auto& [attribute, segment] : unit.segments) {
    out.push_back(&data->segments[{attribute, segment}]);
  }
  return out;
}

void MemoryEventStore::ApplyUnit(int sign, const UnitRecord& unit,
                                 Figures* figures) {
  figures->exposed[unit.variant] += sign;
  for (const auto& [signature, x] : unit.covariates) {
    MetricAggregate& m = figures->metrics[{unit.variant, signature}];
    m.cuped_units += sign;
    Add(&m.cuped_sum_x, sign * x);
    Add(&m.cuped_sum_x_sq, sign * (x * x));
  }
  for (const auto& [signature, state] : unit.states) {
    MetricAggregate& m = figures->metrics[{unit.variant, signature}];
    m.units += sign;
    auto covariate = unit.covariates.find(signature);
    const double* x =
        covariate == unit.covariates.end() ? nullptr : &covariate->second;
    switch (state.type) {
      case MetricType::kBinomial:
      case MetricType::kRetention:
        Add(&m.sum, sign);
        Add(&m.sum_sq, sign);
        if (x != nullptr) AddCupedUnit(&m, *x, 1, sign);
        break;
      case MetricType::kSum:
        Add(&m.sum, sign * state.a);
        Add(&m.sum_sq, sign * (state.a * state.a));
        if (x != nullptr) AddCupedUnit(&m, *x, state.a, sign);
        break;
      case MetricType::kFunnel:
        if (m.steps.size() < static_cast<size_t>(state.step))
          m.steps.resize(state.step);
        for (int k = 0; k < state.step; ++k) m.steps[k] += sign;
        break;
      case MetricType::kRatio:
        Add(&m.sum_num, sign * state.a);
        Add(&m.sum_den, sign * state.b);
        Add(&m.sum_num_sq, sign * (state.a * state.a));
        Add(&m.sum_den_sq, sign * (state.b * state.b));
        Add(&m.sum_num_den, sign * (state.a * state.b));
        break;
    }
  }
}

absl::StatusOr<std::vector<WriteOutcome>> MemoryEventStore::WriteExposures(
    const ExperimentLayout& layout, absl::Span<const Exposure> exposures) {
  if (absl::Status s = internal::CheckExposures(layout, exposures); !s.ok())
    return s;
  absl::MutexLock lock(&mu_);
  ExperimentData* data = Data(layout);
  std::string merged;
  if (absl::Status s =
          internal::CheckVariantKeys(layout, data->variant_keys, &merged);
      !s.ok()) {
    return s;
  }
  data->variant_keys = merged;

  std::vector<WriteOutcome> outcomes;
  outcomes.reserve(exposures.size());
  for (const Exposure& e : exposures) {
    // Every exposure written claims its values' segments, first come first
    // served, as RedisEventStore settles them before its script runs.
    std::map<std::string, std::string> segments;
    for (const Dimension& d : layout.dimensions) {
      segments[d.attribute] = Segment(d, e.dimensions, data);
    }
    if (!data->idempotency_keys.insert(absl::StrCat("x:", e.idempotency_key))
             .second) {
      outcomes.push_back(WriteOutcome::kDuplicate);
      continue;
    }
    internal::CountConfigVersion(e.config_version, max_config_versions_,
                                 &data->config_versions);
    int64_t t = StoreMillis(e.time);
    auto [it, inserted] = data->units.try_emplace(e.unit_id);
    UnitRecord& unit = it->second;
    if (inserted) {
      unit.variant = e.variant_index;
      unit.first_ms = t;
      for (const Metric& m : layout.metrics) {
        if (m.covariate.empty()) continue;
        auto x = e.covariates.find(m.covariate);
        if (x != e.covariates.end()) {
          unit.covariates[internal::MetricSignature(m)] = x->second;
        }
      }
      unit.segments = std::move(segments);
      ApplyUnit(+1, unit, &data->total);
      ApplyUnit(+1, unit, &data->days[DayOfMillis(t)]);
      for (Figures* f : SegmentFigures(unit, data)) ApplyUnit(+1, unit, f);
      outcomes.push_back(WriteOutcome::kRecorded);
    } else if (unit.multi_exposed) {
      outcomes.push_back(WriteOutcome::kIgnored);
    } else if (unit.variant == e.variant_index) {
      if (t < unit.first_ms) {
        // An earlier exposure arrived late: the unit's cohort is its day.
        ApplyUnit(-1, unit, &data->days[DayOfMillis(unit.first_ms)]);
        unit.first_ms = t;
        ApplyUnit(+1, unit, &data->days[DayOfMillis(unit.first_ms)]);
      }
      outcomes.push_back(WriteOutcome::kDuplicate);
    } else {
      ApplyUnit(-1, unit, &data->total);
      ApplyUnit(-1, unit, &data->days[DayOfMillis(unit.first_ms)]);
      for (Figures* f : SegmentFigures(unit, data)) ApplyUnit(-1, unit, f);
      data->multi_exposed += 1;
      unit.multi_exposed = true;
      unit.states.clear();
      unit.covariates.clear();
      unit.segments.clear();
      outcomes.push_back(WriteOutcome::kConflict);
    }
  }
  return outcomes;
}

bool MemoryEventStore::CountEvent(const Metric& metric,
                                  const std::string& signature, const Event& e,
                                  int64_t t,
                                  absl::Span<MetricAggregate* const> aggs,
                                  UnitRecord* unit) {
  int64_t window_end =
      unit->first_ms + absl::ToInt64Milliseconds(metric.window);
  auto delta_of = [&](const MetricSource& source) -> std::optional<double> {
    if (source.event != e.name) return std::nullopt;
    if (source.aggregation == EventAggregation::kCount) return 1.0;
    return e.value;
  };
  auto state_it = unit->states.find(signature);
  bool counted = state_it != unit->states.end();
  auto covariate = unit->covariates.find(signature);
  const double* cx =
      covariate == unit->covariates.end() ? nullptr : &covariate->second;
  switch (metric.type) {
    case MetricType::kBinomial:
    case MetricType::kRetention: {
      if (metric.source.event != e.name || counted) return false;
      bool in = false;
      if (metric.type == MetricType::kBinomial) {
        in = t < window_end;
      } else {
        int64_t from = unit->first_ms + metric.retention_day * kMillisPerDay;
        in = t >= from && t < from + kMillisPerDay;
      }
      if (!in) return false;
      unit->states[signature] = MetricState{metric.type, 0, 0};
      for (MetricAggregate* m : aggs) {
        m->units += 1;
        Add(&m->sum, 1);
        Add(&m->sum_sq, 1);
        if (cx != nullptr) AddCupedY(m, *cx, 0, 1);
      }
      return true;
    }
    case MetricType::kSum: {
      std::optional<double> delta = delta_of(metric.source);
      if (!delta || t >= window_end) return false;
      double x = counted ? state_it->second.a : 0;
      double v = *delta;
      unit->states[signature] = MetricState{metric.type, x + v, 0};
      for (MetricAggregate* m : aggs) {
        if (!counted) m->units += 1;
        Add(&m->sum, v);
        Add(&m->sum_sq, 2 * x * v + v * v);
        if (cx != nullptr) AddCupedY(m, *cx, x, x + v);
      }
      return !counted || v != 0;
    }
    case MetricType::kFunnel: {
      // Only the next step counts, at or after the previous one was reached
      // (step 0: the first exposure), inside both windows.
      const int reached = counted ? state_it->second.step : 0;
      if (reached >= static_cast<int>(metric.steps.size())) return false;
      const FunnelStep& step = metric.steps[reached];
      const int64_t from = counted ? state_it->second.step_ms : unit->first_ms;
      if (step.event != e.name || t < from || t >= window_end) return false;
      if (step.window && t >= from + absl::ToInt64Milliseconds(*step.window))
        return false;
      MetricState next{metric.type};
      next.step = reached + 1;
      next.step_ms = t;
      unit->states[signature] = next;
      for (MetricAggregate* m : aggs) {
        if (!counted) m->units += 1;
        if (m->steps.size() < metric.steps.size())
          m->steps.resize(metric.steps.size());
        m->steps[reached] += 1;
      }
      return true;
    }
    case MetricType::kRatio: {
      std::optional<double> dn = delta_of(metric.numerator);
      std::optional<double> dd = delta_of(metric.denominator);
      if ((!dn && !dd) || t >= window_end) return false;
      double n = counted ? state_it->second.a : 0;
      double d = counted ? state_it->second.b : 0;
      double nn = n + dn.value_or(0);
      double nd = d + dd.value_or(0);
      unit->states[signature] = MetricState{metric.type, nn, nd};
      for (MetricAggregate* m : aggs) {
        if (!counted) m->units += 1;
        Add(&m->sum_num, nn - n);
        Add(&m->sum_den, nd - d);
        Add(&m->sum_num_sq, nn * nn - n * n);
        Add(&m->sum_den_sq, nd * nd - d * d);
        Add(&m->sum_num_den, nn * nd - n * d);
      }
      return !counted || nn != n || nd != d;
    }
  }
  return false;
}

absl::StatusOr<std::vector<WriteOutcome>> MemoryEventStore::WriteEvents(
    const ExperimentLayout& layout, absl::Span<const Event> events) {
  std::vector<std::string> signatures;
  for (const Metric& m : layout.metrics)
    signatures.push_back(internal::MetricSignature(m));

  absl::MutexLock lock(&mu_);
  ExperimentData* data = Data(layout);
  std::vector<WriteOutcome> outcomes;
  outcomes.reserve(events.size());
  for (const Event& e : events) {
    // The unit comes before the idempotency key, as in the Redis script: an
    // event that cannot count leaves no key behind, so a retry after the
    // unit's exposure arrived is judged afresh.
    int64_t t = StoreMillis(e.time);
    auto it = data->units.find(e.unit_id);
    if (it == data->units.end() || it->second.multi_exposed ||
        t < it->second.first_ms) {
      outcomes.push_back(WriteOutcome::kIgnored);
      continue;
    }
    if (!data->idempotency_keys.insert(absl::StrCat("e:", e.idempotency_key))
             .second) {
      outcomes.push_back(WriteOutcome::kDuplicate);
      continue;
    }
    UnitRecord& unit = it->second;
    std::vector<Figures*> figures = SegmentFigures(unit, data);
    figures.push_back(&data->total);
    figures.push_back(&data->days[DayOfMillis(unit.first_ms)]);
    bool changed = false;
    std::vector<MetricAggregate*> aggs(figures.size());
    for (size_t i = 0; i < layout.metrics.size(); ++i) {
      const std::string& sig = signatures[i];
      for (size_t f = 0; f < figures.size(); ++f) {
        aggs[f] = &figures[f]->metrics[{unit.variant, sig}];
      }
      if (CountEvent(layout.metrics[i], sig, e, t, aggs, &unit)) changed = true;
    }
    outcomes.push_back(changed ? WriteOutcome::kRecorded
                               : WriteOutcome::kIgnored);
  }
  return outcomes;
}

VariantAggregate MemoryEventStore::ToVariant(const ExperimentLayout& layout,
                                             const Figures& figures, int v) {
  VariantAggregate out;
  if (auto it = figures.exposed.find(v); it != figures.exposed.end())
    out.exposed = it->second;
  for (const Metric& metric : layout.metrics) {
    MetricAggregate& m = out.metrics[metric.key];
    auto it = figures.metrics.find({v, internal::MetricSignature(metric)});
    if (it != figures.metrics.end()) m = it->second;
    m.steps.resize(metric.steps.size());
  }
  return out;
}

absl::StatusOr<ExperimentAggregates> MemoryEventStore::ReadAggregates(
    const ExperimentLayout& layout) {
  absl::MutexLock lock(&mu_);
  const ExperimentData* data = Data(layout);
  ExperimentAggregates out;
  int n = static_cast<int>(layout.variant_keys.size());
  for (int v = 0; v < n; ++v)
    out.variants.push_back(ToVariant(layout, data->total, v));
  out.multi_exposed = data->multi_exposed;
  out.config_versions = data->config_versions;
  for (const auto& [day, figures] : data->days) {
    std::vector<VariantAggregate>& daily = out.daily[internal::FormatDay(day)];
    for (int v = 0; v < n; ++v) daily.push_back(ToVariant(layout, figures, v));
  }
  for (const Dimension& d : layout.dimensions) {
    for (auto it = data->segments.lower_bound({d.attribute, ""});
         it != data->segments.end() && it->first.first == d.attribute; ++it) {
      std::vector<VariantAggregate>& variants =
          out.segments[d.attribute][it->first.second];
      for (int v = 0; v < n; ++v)
        variants.push_back(ToVariant(layout, it->second, v));
    }
  }
  internal::DropEmptySegments(&out.segments);
  return out;
}

absl::StatusOr<std::optional<int>> MemoryEventStore::RecordedVariant(
    const ExperimentLayout& layout, absl::string_view unit_id) {
  RecordedVariantQuery query{&layout, std::string(unit_id)};
  return std::move(RecordedVariants({query})[0]);
}

std::vector<RecordedVariantResult> MemoryEventStore::RecordedVariants(
    absl::Span<const RecordedVariantQuery> queries) {
  std::vector<RecordedVariantResult> results;
  results.reserve(queries.size());
  absl::MutexLock lock(&mu_);
  for (const RecordedVariantQuery& q : queries) {
    const ExperimentData* data = Data(*q.layout);
    std::string merged;
    if (absl::Status s =
            internal::CheckVariantKeys(*q.layout, data->variant_keys, &merged);
        !s.ok()) {
      results.push_back(s);
      continue;
    }
    auto it = data->units.find(q.unit_id);
    if (it == data->units.end()) {
      results.push_back(std::nullopt);
    } else {
      results.push_back(it->second.variant);
    }
  }
  return results;
}

}  // namespace abexp
