// The in-memory form of an abexp experiment config, as produced by
// ParseConfig (config_parser.h) after validation.
//
// A Config is the model alone; IndexedConfig::Build (indexed_config.h)
// takes it over and adds what assignment and recording precompute. Once
// built it is immutable and shared between threads through
// std::shared_ptr<const IndexedConfig>; every field is safe to read
// concurrently.
#ifndef ABEXP_SERVER_CORE_CONFIG_H_
#define ABEXP_SERVER_CORE_CONFIG_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "server/core/bucketing.h"
#include "server/core/targeting.h"

namespace abexp {

// Where something was written in the config file (1-based, as printed in
// diagnostics).
struct SourceLocation {
  int line = 0;
  int column = 0;
};

enum class ValueType { kBool, kNumber, kString, kJson };

// A typed feature value. For kJson, `text` holds compact JSON.
struct FeatureValue {
  ValueType type = ValueType::kBool;
  bool bool_value = false;
  double number_value = 0;
  std::string text;  // kString: the string; kJson: compact JSON text

  bool operator==(const FeatureValue& o) const;
  bool operator!=(const FeatureValue& o) const { return !(*this == o); }
};

// "bool", "number", "string", "json".
const char* ValueTypeName(ValueType type);
// Human-readable rendering: true, 1.5, "text", {"a":1}.
std::string FormatFeatureValue(const FeatureValue& value);

struct Variant {
  std::string key;
  // Weight scaled by kWeightScale so decimal weights stay exact integers.
  uint64_t weight = 0;
  std::string weight_text;  // as written, e.g. "33.3"
  // Feature key -> value this variant sets.
  std::map<std::string, FeatureValue> features;
  // The variant's range at full traffic, and at the experiment's traffic.
  BucketRange full_range;
  BucketRange active_range;
  SourceLocation location;
};

// Decimal weights may have up to 4 digits after the point.
inline constexpr uint64_t kWeightScale = 10000;

// The most variants an experiment may have: the event store keeps a unit's
// variant index in one byte (docs/storage.md, "Unit records"). The config
// parser refuses more, so a config that loads can always be recorded.
inline constexpr int kMaxVariants = 255;

// The most metrics with a covariate one experiment may have: the event store
// keeps 9 bytes per covariate in one unit record entry of at most 255 bytes
// (docs/storage.md, "Unit records"). The config parser refuses more.
inline constexpr int kMaxCovariateMetrics = 28;

// Segments (Experiment::dimensions): the most dimensions one experiment may
// declare, and the bounds of a dimension's max_values. The event store keeps
// a unit's value of each dimension as one byte of its record (0 for a unit
// without the attribute, 255 for "(other)"), and reads every value's
// figures for results, so both stay small.
inline constexpr int kMaxDimensions = 8;
inline constexpr int kDefaultDimensionValues = 20;
inline constexpr int kMaxDimensionValues = 200;

// A breakdown of results by one attribute the exposures carry.
struct Dimension {
  std::string attribute;  // declared in `attributes:` as string or bool
  // The first max_values distinct values of the phase get figures of their
  // own; later ones count under "(other)". Default: 20.
  int max_values = kDefaultDimensionValues;
  SourceLocation location;
};

enum class ExperimentStatus { kDraft, kRunning, kPaused, kStopped };
// "draft", "running", "paused", "stopped".
const char* ExperimentStatusName(ExperimentStatus status);

enum class MetricType {
  kBinomial,   // the unit converts if it sends the event within the window
  kSum,        // per-unit total of the event's value (or count); analysed as
               // the mean per exposed unit, e.g. ARPU, orders per unit
  kRatio,      // sum of numerator over sum of denominator across units, e.g.
               // average order value = revenue / orders
  kRetention,  // the unit sends the event on day k after first exposure
  kFunnel,     // ordered steps: how far each unit gets (Metric::steps)
};
// "binomial", "sum", "ratio", "retention", "funnel".
const char* MetricTypeName(MetricType type);

// What a metric takes from each matching event: one per event (kCount) or
// the event's numeric value (kValue; events without a value add nothing).
enum class EventAggregation { kCount, kValue };

struct MetricSource {
  std::string event;  // event name, e.g. "order_completed"
  EventAggregation aggregation = EventAggregation::kCount;
};

// The fewest and most steps a funnel may have. The event store keeps the
// furthest step in one byte of the unit's record.
inline constexpr int kMinFunnelSteps = 2;
inline constexpr int kMaxFunnelSteps = 8;

// One step of a funnel metric.
struct FunnelStep {
  std::string event;  // e.g. "submit_payment"; distinct within the funnel
  // The step counts only if its event comes within this time of reaching
  // the previous step (for the first step: of the first exposure), besides
  // the metric's window. Unset: only the metric's window bounds it.
  std::optional<absl::Duration> window;
};

struct Metric {
  std::string key;
  std::string description;
  MetricType type = MetricType::kBinomial;
  // kBinomial, kSum, kRetention: the event counted.
  MetricSource source;
  // kRatio only.
  MetricSource numerator;
  MetricSource denominator;
  // Events count only in [first exposure, first exposure + window).
  // Default: 14 days. Unused by kRetention.
  absl::Duration window = absl::Hours(24 * 14);
  // kRetention: active on day k means an event in
  // [first exposure + k days, first exposure + (k+1) days).
  int retention_day = 1;
  // A guardrail must not get worse; results flag it when it does.
  bool guardrail = false;
  // False for metrics where lower is better (bounce, abandonment).
  // Default: true.
  bool higher_is_better = true;
  // kBinomial, kSum: a numeric unit attribute the exposures carry, measured
  // before exposure (e.g. orders in the last 90 days), by which results also
  // report the CUPED-adjusted comparison (stats/cuped.h). Empty: none.
  std::string covariate;
  // kFunnel: kMinFunnelSteps to kMaxFunnelSteps steps, in order. A unit
  // reaches step k with an event of step k at or after it reached step k-1
  // (step 0: its first exposure), inside `window` and the step's own window.
  std::vector<FunnelStep> steps;
  SourceLocation location;
};

struct Experiment {
  std::string key;
  std::string description;
  std::string owner;
  ExperimentStatus status = ExperimentStatus::kDraft;
  // Required when stopped: the variant whose feature values every eligible
  // unit gets.
  std::string rollout_variant;
  // Which of the unit's ids to hash on. Default: "user_id".
  std::string unit_id_type = "user_id";
  // Default: the key.
  std::string salt;
  // Bumped by the product team to re-randomize deliberately. Default: 1.
  int phase = 1;
  // Share of eligible units in the experiment, in basis points.
  // Default: 10000 (everyone).
  uint32_t traffic_bp = kNumBuckets;
  std::vector<Variant> variants;  // at least one
  // Null when the experiment targets everyone.
  std::shared_ptr<const Condition> targeting;
  std::string targeting_text;  // as written, for display
  // Empty when the experiment is in no layer.
  std::string layer;
  // The experiment's share of the layer's buckets. Full when no layer.
  BucketRange layer_range{0, kNumBuckets};
  std::optional<absl::Time> start_time;
  std::optional<absl::Time> end_time;
  // QA overrides: unit id (of unit_id_type) -> variant key.
  absl::flat_hash_map<std::string, std::string> qa_overrides;
  // Metric keys from the config's `metrics` section, in the order written.
  std::vector<std::string> metrics;
  // One of `metrics`; the metric the decision is made on. Required when
  // `metrics` is non-empty.
  std::string primary_metric;
  // When true, a unit that was exposed keeps its recorded variant even if
  // weights or traffic change later (the assignment call consults the
  // event store). Default: false, and assignment is pure computation.
  bool sticky = false;
  // Attributes results can be broken down by (segments), in the order
  // written; at most kMaxDimensions.
  std::vector<Dimension> dimensions;
  SourceLocation location;

  // Index of the variant with this key, or -1.
  int VariantIndex(const std::string& variant_key) const;
};

// A feature's own rule, checked in order after experiments: the first rule
// whose condition matches and whose rollout includes the unit sets the value.
struct FeatureRule {
  // Null: every unit matches.
  std::shared_ptr<const Condition> condition;
  std::string condition_text;
  // Share of matching units that get `value`, in basis points. Default: 10000.
  uint32_t rollout_bp = kNumBuckets;
  // Rollout hashing (ramp-safe: raising rollout_bp only adds units).
  std::string salt;  // Default: "<feature key>.rule<index>"
  std::string unit_id_type = "user_id";
  FeatureValue value;
  SourceLocation location;
};

struct Feature {
  std::string key;
  std::string description;
  ValueType type = ValueType::kBool;
  FeatureValue default_value;
  std::vector<FeatureRule> rules;
  SourceLocation location;
};

// A layer: experiments in one layer never share a unit. Each owns a range
// of the layer's buckets (Experiment::layer_range).
struct Layer {
  std::string key;
  std::string description;
  // Default: the key.
  std::string salt;
  // Every experiment in the layer must hash on this id type. Default:
  // "user_id".
  std::string unit_id_type = "user_id";
  SourceLocation location;
};

// A global holdout: a share of units kept out of every experiment; they get
// default feature values (feature rules still apply).
struct Holdout {
  uint32_t bp = 0;  // buckets below this are held out
  std::string salt = "abexp-global-holdout";
  std::string unit_id_type = "user_id";
};

struct Config {
  // Content hash of the file bytes: 16 lowercase hex digits (ConfigVersionOf).
  std::string version;
  std::string source_path;
  // Declared attribute types; targeting may use only these.
  std::map<std::string, AttributeType> attributes;
  // Named reusable conditions.
  std::map<std::string, std::shared_ptr<const Condition>> segments;
  std::map<std::string, Layer> layers;
  std::vector<Metric> metrics;          // in file order
  std::vector<Feature> features;        // in file order
  std::vector<Experiment> experiments;  // in file order
  std::optional<Holdout> holdout;

  // Lookups by key, null when there is none: linear for experiments,
  // features and metrics (an IndexedConfig answers those by hash), by map
  // for layers.
  const Experiment* FindExperiment(const std::string& key) const;
  const Feature* FindFeature(const std::string& key) const;
  const Layer* FindLayer(const std::string& key) const;
  const Metric* FindMetric(const std::string& key) const;
};

}  // namespace abexp

#endif  // ABEXP_SERVER_CORE_CONFIG_H_
