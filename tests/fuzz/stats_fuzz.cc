// Fuzzes the stats entry points (stats/*.h) with random aggregates: huge,
// tiny, negative, zero, infinite and NaN inputs among ordinary ones.
//
// Every call must return an error status or a result in which each number
// is what the headers promise: finite (an undefined figure is nullopt with
// a warning, never NaN or infinity), p-values and chances in [0, 1],
// expected losses not negative, intervals with low <= high, adjusted
// p-values between their raw value and 1.
#include <fuzzer/FuzzedDataProvider.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <optional>
#include <vector>

#include "stats/adjust.h"
#include "stats/bayes.h"
#include "stats/chi_square.h"
#include "stats/compare.h"
#include "stats/power.h"
#include "stats/srm.h"
#include "tests/fuzz/fuzz_check.h"

namespace abexp {
namespace stats {
namespace {

const char* g_call = "";  // the entry point being checked, for reports

void Check(bool ok, const char* what) {
  FuzzCheck(ok, "stats_fuzz", what, g_call);
}

void Finite(double v, const char* what) { Check(std::isfinite(v), what); }
void Finite(const std::optional<double>& v, const char* what) {
  if (v) Finite(*v, what);
}
void Probability(const std::optional<double>& p, const char* what) {
  if (p) Check(*p >= 0 && *p <= 1, what);
}
void Interval(const std::optional<double>& low,
              const std::optional<double>& high, const char* what) {
  Finite(low, what);
  Finite(high, what);
  if (low && high) Check(*low <= *high, what);
}

// Doubles with the edge cases over-represented.
double Number(FuzzedDataProvider& in) {
  static const double kEdges[] = {0.0,
                                  -0.0,
                                  1.0,
                                  -1.0,
                                  0.5,
                                  1e-300,
                                  5e-324,
                                  1e15,
                                  1.35e154,
                                  1e300,
                                  std::numeric_limits<double>::max(),
                                  -std::numeric_limits<double>::max(),
                                  std::numeric_limits<double>::infinity(),
                                  -std::numeric_limits<double>::infinity(),
                                  std::numeric_limits<double>::quiet_NaN()};
  switch (in.ConsumeIntegralInRange<int>(0, 3)) {
    case 0:
      return in.PickValueInArray(kEdges);
    case 1:
      return in.ConsumeIntegralInRange<int>(-10, 1000);
    case 2:
      return in.ConsumeProbability<double>();
    default:
      return in.ConsumeFloatingPoint<double>();
  }
}

int64_t Count(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange<int>(0, 2)) {
    case 0:
      return in.ConsumeIntegralInRange<int64_t>(0, 1000);
    case 1:
      return in.ConsumeIntegralInRange<int64_t>(-2, 20'000'000'000);
    default:
      return in.ConsumeIntegral<int64_t>();
  }
}

void CheckComparison(const absl::StatusOr<Comparison>& c) {
  if (!c.ok()) return;
  Finite(c->control, "control estimate");
  Finite(c->treatment, "treatment estimate");
  Finite(c->control_variance, "control variance");
  Finite(c->treatment_variance, "treatment variance");
  if (c->control_variance)
    Check(*c->control_variance >= 0, "negative control variance");
  if (c->treatment_variance)
    Check(*c->treatment_variance >= 0, "negative treatment variance");
  for (const Lift* lift : {&c->absolute, &c->relative}) {
    Finite(lift->estimate, "lift estimate");
    Finite(lift->standard_error, "lift standard error");
    if (lift->standard_error)
      Check(*lift->standard_error >= 0, "negative standard error");
    Finite(lift->df, "degrees of freedom");
    Interval(lift->ci_low, lift->ci_high, "lift interval");
    Probability(lift->p_value, "lift p-value");
  }
  Interval(c->sequential.ci_low, c->sequential.ci_high, "sequential interval");
  Probability(c->sequential.p_value, "sequential p-value");
}

void CheckBayes(const absl::StatusOr<BayesResult>& b) {
  if (!b.ok()) return;
  Probability(b->chance_to_beat_control, "chance to beat control");
  Finite(b->expected_loss_ship, "expected loss of shipping");
  Finite(b->expected_loss_keep, "expected loss of keeping");
  if (b->expected_loss_ship)
    Check(*b->expected_loss_ship >= 0, "negative expected loss");
  if (b->expected_loss_keep)
    Check(*b->expected_loss_keep >= 0, "negative expected loss");
}

void CheckChiSquare(const absl::StatusOr<ChiSquareResult>& r) {
  if (!r.ok()) return;
  Check(!std::isnan(r->statistic) && r->statistic >= 0, "chi-square statistic");
  Check(r->p_value >= 0 && r->p_value <= 1, "chi-square p-value");
}

void CheckSampleSize(const absl::StatusOr<SampleSizeResult>& r) {
  if (!r.ok()) return;
  Check(r->per_variant > 0, "sample size not positive");
  Finite(r->per_variant_exact, "exact sample size");
  Finite(r->baseline, "baseline");
  Finite(r->treatment, "treatment");
}

CompareOptions Options(FuzzedDataProvider& in) {
  CompareOptions o;
  if (in.ConsumeBool()) o.alpha = Number(in);
  if (in.ConsumeBool()) o.sequential_tuning = Number(in);
  return o;
}

Direction DirectionOf(FuzzedDataProvider& in) {
  return in.ConsumeBool() ? Direction::kLowerIsBetter
                          : Direction::kHigherIsBetter;
}

PowerOptions Power(FuzzedDataProvider& in) {
  PowerOptions o;
  if (in.ConsumeBool()) o.alpha = Number(in);
  if (in.ConsumeBool()) o.power = Number(in);
  return o;
}

std::vector<double> Numbers(FuzzedDataProvider& in, size_t max) {
  std::vector<double> v(in.ConsumeIntegralInRange<size_t>(0, max));
  for (double& x : v) x = Number(in);
  return v;
}

void Run(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange<int>(0, 12)) {
    case 0: {
      g_call = "CompareProportions";
      BinomialArm a{Count(in), Count(in)}, b{Count(in), Count(in)};
      CheckComparison(CompareProportions(a, b, Options(in)));
      break;
    }
    case 1: {
      g_call = "CompareMeans";
      MeanArm a{Count(in), Number(in), Number(in)},
          b{Count(in), Number(in), Number(in)};
      CheckComparison(CompareMeans(a, b, Options(in)));
      break;
    }
    case 2: {
      g_call = "CompareMeanSummaries";
      MeanSummary a{Count(in), Number(in), Number(in)},
          b{Count(in), Number(in), Number(in)};
      CheckComparison(CompareMeanSummaries(a, b, Options(in)));
      break;
    }
    case 3: {
      g_call = "CompareRatios";
      RatioArm a{Count(in),  Number(in), Number(in),
                 Number(in), Number(in), Number(in)};
      RatioArm b{Count(in),  Number(in), Number(in),
                 Number(in), Number(in), Number(in)};
      CheckComparison(CompareRatios(a, b, Options(in)));
      break;
    }
    case 4: {
      g_call = "ConfidenceSequence";
      const double estimate = Number(in), se = Number(in), units = Number(in);
      absl::StatusOr<SequentialInterval> s =
          ConfidenceSequence(estimate, se, units, Options(in));
      if (s.ok()) {
        Interval(s->ci_low, s->ci_high, "sequential interval");
        Probability(s->p_value, "sequential p-value");
      }
      break;
    }
    case 5: {
      g_call = "BayesProportions";
      const BinomialArm control{Count(in), Count(in)};
      const BinomialArm treatment{Count(in), Count(in)};
      CheckBayes(BayesProportions(control, treatment, DirectionOf(in)));
      break;
    }
    case 6: {
      g_call = "BayesGaussian";
      const double difference = Number(in), se = Number(in);
      CheckBayes(BayesGaussian(difference, se, DirectionOf(in)));
      break;
    }
    case 7: {
      g_call = "CheckSampleRatio";
      const size_t n = in.ConsumeIntegralInRange<size_t>(0, 6);
      std::vector<int64_t> exposed(n);
      for (int64_t& x : exposed) x = Count(in);
      std::vector<double> weights = Numbers(in, 6);
      if (in.ConsumeBool()) weights.resize(n, 1.0);
      SrmOptions options;
      if (in.ConsumeBool()) options.threshold = Number(in);
      absl::StatusOr<SrmResult> r = CheckSampleRatio(exposed, weights, options);
      if (r.ok()) {
        Finite(r->chi2, "chi2");
        Probability(r->p_value, "p-value");
        Check(r->mismatch == (r->p_value && *r->p_value < options.threshold),
              "mismatch does not match p_value < threshold");
      }
      break;
    }
    case 8: {
      g_call = "ChiSquareGoodnessOfFit";
      std::vector<double> observed = Numbers(in, 6);
      std::vector<double> expected = Numbers(in, 6);
      if (in.ConsumeBool()) expected.resize(observed.size(), 1.0);
      CheckChiSquare(ChiSquareGoodnessOfFit(observed, expected));
      break;
    }
    case 9: {
      g_call = "ChiSquareIndependence";
      const size_t rows = in.ConsumeIntegralInRange<size_t>(0, 4);
      const size_t cols = in.ConsumeIntegralInRange<size_t>(0, 4);
      std::vector<std::vector<double>> table(rows);
      for (auto& row : table) {
        row = Numbers(in, cols);
        if (in.ConsumeBool()) row.resize(cols, 1.0);
      }
      CheckChiSquare(ChiSquareIndependence(table));
      break;
    }
    case 10: {
      g_call = "AdjustPValues";
      std::vector<std::optional<double>> p(
          in.ConsumeIntegralInRange<size_t>(0, 8));
      for (auto& x : p) {
        if (in.ConsumeBool())
          x = in.ConsumeBool() ? in.ConsumeProbability<double>() : Number(in);
      }
      const AdjustMethod method = in.ConsumeBool()
                                      ? AdjustMethod::kHolm
                                      : AdjustMethod::kBenjaminiHochberg;
      absl::StatusOr<AdjustResult> r = AdjustPValues(p, method);
      if (r.ok()) {
        Check(r->adjusted.size() == p.size(), "one adjusted p-value per input");
        for (size_t i = 0; i < p.size(); ++i) {
          Check(r->adjusted[i].has_value() == p[i].has_value(),
                "null where the raw p-value is null");
          if (!p[i]) continue;
          Check(*r->adjusted[i] >= *p[i] && *r->adjusted[i] <= 1,
                "adjusted p-value out of [raw, 1]");
          for (size_t j = 0; j < p.size(); ++j) {
            if (p[j] && *p[i] < *p[j])
              Check(*r->adjusted[i] <= *r->adjusted[j], "order not preserved");
          }
        }
      }
      break;
    }
    case 11: {
      g_call = in.ConsumeBool() ? "BinomialSampleSize" : "MeanSampleSize";
      const double baseline = Number(in), mde = Number(in);
      if (g_call[0] == 'B') {
        CheckSampleSize(BinomialSampleSize(baseline, mde, Power(in)));
      } else {
        const double sd = Number(in);
        const PowerOptions po = Power(in);
        CheckSampleSize(MeanSampleSize(baseline, sd, mde, po));
      }
      break;
    }
    default: {
      g_call = "DaysToPower";
      TrafficSnapshot t;
      t.baseline = Number(in);
      const size_t n = in.ConsumeIntegralInRange<size_t>(0, 4);
      for (size_t i = 0; i < n; ++i) t.exposed.push_back(Count(in));
      t.units_per_day = Numbers(in, 4);
      if (in.ConsumeBool()) t.units_per_day.resize(n, 100.0);
      if (in.ConsumeBool()) t.unit_sd = Number(in);
      const double mde = Number(in);
      absl::StatusOr<DaysToPowerResult> r = DaysToPower(t, mde, Power(in));
      if (r.ok()) {
        if (r->per_variant)
          Check(*r->per_variant > 0, "per_variant not positive");
        if (r->more_days) Check(*r->more_days >= 0, "negative more_days");
      }
    }
  }
}

}  // namespace
}  // namespace stats
}  // namespace abexp

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  abexp::stats::Run(in);
  return 0;
}
