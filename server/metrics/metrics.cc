#include "server/metrics/metrics.h"

#include <algorithm>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "prometheus/text_serializer.h"

namespace abexp {
namespace {

// abexp.v1.RecordOutcome and abexp.v1.IgnoreReason by number (0: not one).
constexpr const char* kOutcomeNames[6] = {
    "unknown", "recorded", "duplicate", "ignored", "conflict", "spooled",
};
constexpr const char* kReasonNames[9] = {
    "",
    "unknown_experiment",
    "not_running",
    "qa_override",
    "holdout",
    "missing_unit_id",
    "no_metric",
    "not_attributed",
    "multi_exposed",
};
constexpr int kOutcomeIgnored = 3;

double Seconds(absl::Time t) {
  return absl::ToDoubleSeconds(t - absl::UnixEpoch());
}

// The counter in `slot`, added to `family` with the labels `labels()` if
// the slot is still empty: Family::Add locks, so each counter is made once
// and then counted into without a lock. Two threads racing here get the
// same counter (Add returns the one with the same labels).
template <typename MakeLabels>
prometheus::Counter& CounterInSlot(
    std::atomic<prometheus::Counter*>& slot,
    prometheus::Family<prometheus::Counter>* family, MakeLabels labels) {
  prometheus::Counter* counter = slot.load(std::memory_order_acquire);
  if (counter == nullptr) {
    counter = &family->Add(labels());
    slot.store(counter, std::memory_order_release);
  }
  return *counter;
}

}  // namespace

const std::vector<double>& LatencyBuckets() {
  static const std::vector<double>* const buckets = new std::vector<double>{
      0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
      0.05,    0.1,    0.25,    0.5,    1,     2.5,    5,     10};
  return *buckets;
}

const char* OfrepCounters::EndpointName(Endpoint endpoint) {
  switch (endpoint) {
    case Endpoint::kFlag:
      return "flag";
    case Endpoint::kBulk:
      return "bulk";
    case Endpoint::kConfiguration:
      return "configuration";
  }
  return "unknown";
}

const char* OfrepCounters::ResultName(Result result) {
  switch (result) {
    case Result::kOk:
      return "ok";
    case Result::kNotModified:
      return "not_modified";
    case Result::kFlagNotFound:
      return "flag_not_found";
    case Result::kParseError:
      return "parse_error";
    case Result::kInvalidContext:
      return "invalid_context";
    case Result::kTargetingKeyMissing:
      return "targeting_key_missing";
    case Result::kUnauthenticated:
      return "unauthenticated";
    case Result::kPermissionDenied:
      return "permission_denied";
    case Result::kGeneral:
      return "general";
  }
  return "unknown";
}

OfrepCounters::OfrepCounters(prometheus::Family<prometheus::Counter>* family) {
  for (int e = 0; e < kEndpoints; ++e) {
    for (int r = 0; r < kResults; ++r) {
      counters_[e][r] =
          &family->Add({{"endpoint", EndpointName(static_cast<Endpoint>(e))},
                        {"result", ResultName(static_cast<Result>(r))}});
    }
  }
}

void OfrepCounters::Count(Endpoint endpoint, Result result) {
  counters_[static_cast<int>(endpoint)][static_cast<int>(result)]->Increment();
}

// ---------------------------------------------------------------------------
// RpcMethodMetrics

RpcMethodMetrics::RpcMethodMetrics(
    prometheus::Family<prometheus::Counter>* calls,
    prometheus::Histogram* duration, std::string service, std::string method)
    : calls_(calls),
      duration_(duration),
      service_(std::move(service)),
      method_(std::move(method)) {}

void RpcMethodMetrics::Observe(int code, double seconds) {
  Count(code);
  duration_->Observe(seconds);
}

void RpcMethodMetrics::Count(int code) {
  if (code < 0 || code > 16) code = 2;  // UNKNOWN
  CounterInSlot(by_code_[code], calls_, [&]() -> prometheus::Labels {
    // gRPC's codes are absl's canonical ones, with the same names.
    return {{"service", service_},
            {"method", method_},
            {"code",
             absl::StatusCodeToString(static_cast<absl::StatusCode>(code))}};
  }).Increment();
}

// ---------------------------------------------------------------------------
// HttpRouteMetrics

HttpRouteMetrics::HttpRouteMetrics(
    prometheus::Family<prometheus::Counter>* requests,
    prometheus::Histogram* duration, std::string route)
    : requests_(requests), duration_(duration), route_(std::move(route)) {}

void HttpRouteMetrics::Observe(int status, double seconds) {
  const bool known =
      status >= kFirstStatus && status < kFirstStatus + kStatuses;
  const int slot = known ? status - kFirstStatus : kStatuses;
  CounterInSlot(by_status_[slot], requests_, [&]() -> prometheus::Labels {
    return {{"route", route_},
            {"code", known ? std::to_string(status) : "other"}};
  }).Increment();
  duration_->Observe(seconds);
}

// ---------------------------------------------------------------------------
// AssignmentCounts

// One thread's counts for one config: one slot per (experiment, variant),
// written only by that thread (relaxed load and store, no locked
// instruction), read by scrapes.
struct AssignmentCounts::Block {
  explicit Block(const IndexedConfig& config)
      : first_slot(config.experiments.size()) {
    size_t slots = 0;
    for (size_t e = 0; e < config.experiments.size(); ++e) {
      first_slot[e] = slots;
      slots += config.experiments[e].variants.size();
    }
    counts = std::make_unique<std::atomic<uint64_t>[]>(slots);
    for (size_t i = 0; i < slots; ++i) counts[i].store(0);
    labels.reserve(slots);
    for (const Experiment& experiment : config.experiments) {
      for (const Variant& variant : experiment.variants) {
        labels.emplace_back(experiment.key, variant.key);
      }
    }
  }

  std::vector<size_t> first_slot;  // by experiment index
  std::unique_ptr<std::atomic<uint64_t>[]> counts;
  std::vector<std::pair<std::string, std::string>> labels;  // by slot
};

AssignmentCounts::Block& AssignmentCounts::BlockFor(
    const IndexedConfig& config) {
  struct Cached {
    const AssignmentCounts* owner = nullptr;
    uint64_t build_id = 0;  // never reused, unlike an address
    std::shared_ptr<Block> block;
  };
  thread_local Cached cached;
  if (cached.owner != this || cached.build_id != config.build_id) {
    auto block = std::make_shared<Block>(config);
    {
      absl::MutexLock lock(&mu_);
      blocks_.push_back(block);
    }
    // The block this thread let go of is added into retired_ by the next
    // scrape.
    cached = Cached{this, config.build_id, std::move(block)};
  }
  return *cached.block;
}

void AssignmentCounts::Count(const IndexedConfig& config,
                             const AssignResult& result) {
  if (result.assignments.empty()) return;
  Block& block = BlockFor(config);
  const Experiment* const first = config.experiments.data();
  for (const ExperimentAssignment& a : result.assignments) {
    if (a.variant_index < 0 || a.experiment == nullptr) continue;
    const size_t slot =
        block.first_slot[a.experiment - first] + a.variant_index;
    std::atomic<uint64_t>& c = block.counts[slot];
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
}

std::vector<prometheus::MetricFamily> AssignmentCounts::Collect() const {
  std::map<std::pair<std::string, std::string>, uint64_t> totals;
  {
    absl::MutexLock lock(&mu_);
    std::vector<std::shared_ptr<Block>> live;
    for (std::shared_ptr<Block>& block : blocks_) {
      // Only blocks_ holds it: its thread counts into another one now. The
      // acquire fence makes that thread's last counts visible here.
      const bool let_go = block.use_count() == 1;
      if (let_go) std::atomic_thread_fence(std::memory_order_acquire);
      for (size_t i = 0; i < block->labels.size(); ++i) {
        const uint64_t n = block->counts[i].load(std::memory_order_relaxed);
        if (let_go) {
          retired_[block->labels[i]] += n;
        } else {
          totals[block->labels[i]] += n;
        }
      }
      if (!let_go) live.push_back(std::move(block));
    }
    blocks_ = std::move(live);
    for (const auto& [labels, n] : retired_) totals[labels] += n;
  }
  prometheus::MetricFamily family;
  family.name = "abexp_assignments_total";
  family.help =
      "Variants served by Assign and BatchAssign, by experiment and variant "
      "key (units not in an experiment are not counted).";
  family.type = prometheus::MetricType::Counter;
  for (const auto& [labels, n] : totals) {
    prometheus::ClientMetric metric;
    metric.label = {{"experiment", labels.first}, {"variant", labels.second}};
    metric.counter.value = static_cast<double>(n);
    family.metric.push_back(std::move(metric));
  }
  return {std::move(family)};
}

// ---------------------------------------------------------------------------
// RecordCounters

RecordCounters::RecordCounters(
    prometheus::Family<prometheus::Counter>* family) {
  for (int kind = 0; kind < 2; ++kind) {
    for (int outcome = 1; outcome < kOutcomes; ++outcome) {
      for (int reason = 0; reason < kReasons; ++reason) {
        // Only ignored records have a reason.
        if ((outcome == kOutcomeIgnored) != (reason != 0)) continue;
        counters_[kind][outcome][reason] =
            &family->Add({{"kind", kind == 0 ? "exposure" : "event"},
                          {"outcome", kOutcomeNames[outcome]},
                          {"reason", kReasonNames[reason]}});
      }
    }
  }
}

void RecordCounters::Add(Kind kind, int outcome, int reason, int64_t count) {
  if (count <= 0) return;
  if (outcome < 1 || outcome >= kOutcomes) outcome = 0;
  if (outcome != kOutcomeIgnored || reason < 1 || reason >= kReasons) {
    reason = 0;
  }
  prometheus::Counter*& counter =
      counters_[kind == Kind::kExposure ? 0 : 1][outcome][reason];
  // Outcome 0 and an ignored record without a known reason are never
  // expected; their counters are made when first needed.
  if (counter == nullptr) return;
  counter->Increment(static_cast<double>(count));
}

// ---------------------------------------------------------------------------
// ConfigMetrics

namespace {

prometheus::Family<prometheus::Counter>& ReloadFamily(
    prometheus::Registry* registry) {
  return prometheus::BuildCounter()
      .Name("abexp_config_reloads_total")
      .Help(
          "Config reloads (SIGHUP) by result: changed (a new version is "
          "served), unchanged (the file was the same), failed (the file "
          "was invalid; the version in force was kept).")
      .Register(*registry);
}

prometheus::Gauge& NewGauge(prometheus::Registry* registry,
                            const std::string& name, const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(*registry).Add(
      {});
}

}  // namespace

ConfigMetrics::ConfigMetrics(prometheus::Registry* registry)
    : ConfigMetrics(registry, &ReloadFamily(registry)) {}

ConfigMetrics::ConfigMetrics(prometheus::Registry* registry,
                             prometheus::Family<prometheus::Counter>* reloads)
    : info_(&prometheus::BuildGauge()
                 .Name("abexp_config_info")
                 .Help("1, labelled with the version of the config served.")
                 .Register(*registry)),
      changed_(&reloads->Add({{"result", "changed"}})),
      unchanged_(&reloads->Add({{"result", "unchanged"}})),
      failed_(&reloads->Add({{"result", "failed"}})),
      last_success_(&NewGauge(
          registry, "abexp_config_last_success_timestamp_seconds",
          "When the config served was loaded (start or reload), or last "
          "re-read unchanged, in Unix seconds.")),
      dropped_running_(&prometheus::BuildCounter()
                            .Name("abexp_config_dropped_running_total")
                            .Help("Running experiments that a reload removed "
                                  "from the config (their units get no "
                                  "variant any more).")
                            .Register(*registry)
                            .Add({})),
      experiments_(&NewGauge(registry, "abexp_config_experiments",
                             "Experiments in the config served.")),
      running_(&NewGauge(registry, "abexp_config_running_experiments",
                         "Experiments with status running in the config "
                         "served.")) {}

void ConfigMetrics::Loaded(const Config& config, absl::Time when) {
  {
    absl::MutexLock lock(&mu_);
    if (version_ != nullptr) info_->Remove(version_);
    version_ = &info_->Add({{"version", config.version}});
    version_->Set(1);
  }
  last_success_->Set(Seconds(when));
  experiments_->Set(static_cast<double>(config.experiments.size()));
  const auto running =
      std::count_if(config.experiments.begin(), config.experiments.end(),
                    [](const Experiment& e) {
                      return e.status == ExperimentStatus::kRunning;
                    });
  running_->Set(static_cast<double>(running));
}

void ConfigMetrics::ReloadChanged(const Config& config, absl::Time when,
                                  int dropped_running) {
  changed_->Increment();
  if (dropped_running > 0) dropped_running_->Increment(dropped_running);
  Loaded(config, when);
}

void ConfigMetrics::ReloadUnchanged(absl::Time when) {
  unchanged_->Increment();
  last_success_->Set(Seconds(when));
}

void ConfigMetrics::ReloadFailed() { failed_->Increment(); }

// ---------------------------------------------------------------------------
// Samplers

prometheus::MetricFamily GaugeFamily(std::string name, std::string help,
                                     double value) {
  prometheus::MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = prometheus::MetricType::Gauge;
  family.metric.emplace_back();
  family.metric.back().gauge.value = value;
  return family;
}

prometheus::MetricFamily CounterFamily(std::string name, std::string help,
                                       double value) {
  prometheus::MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = prometheus::MetricType::Counter;
  family.metric.emplace_back();
  family.metric.back().counter.value = value;
  return family;
}

class ServerMetrics::Samplers final : public prometheus::Collectable {
 public:
  void Add(std::function<std::vector<prometheus::MetricFamily>()> sample) {
    absl::MutexLock lock(&mu_);
    samplers_.push_back(std::move(sample));
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<std::function<std::vector<prometheus::MetricFamily>()>> all;
    {
      absl::MutexLock lock(&mu_);
      all = samplers_;
    }
    std::vector<prometheus::MetricFamily> out;
    for (const auto& sample : all) {
      for (prometheus::MetricFamily& f : sample()) out.push_back(std::move(f));
    }
    return out;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::function<std::vector<prometheus::MetricFamily>()>> samplers_
      ABSL_GUARDED_BY(mu_);
};

// ---------------------------------------------------------------------------
// ServerMetrics

ServerMetrics::ServerMetrics(const std::string& version)
    : registry_(std::make_shared<prometheus::Registry>()),
      assignments_(std::make_shared<AssignmentCounts>()),
      samplers_(std::make_shared<Samplers>()),
      rpc_calls_(&prometheus::BuildCounter()
                      .Name("abexp_rpc_requests_total")
                      .Help("gRPC calls served, by service, method and the "
                            "status code they ended with.")
                      .Register(*registry_)),
      rpc_duration_(&prometheus::BuildHistogram()
                         .Name("abexp_rpc_duration_seconds")
                         .Help("Time from a call's arrival to its status being "
                               "sent, by service and method.")
                         .Register(*registry_)),
      redis_commands_(&prometheus::BuildCounter()
                           .Name("abexp_redis_commands_total")
                           .Help("Redis commands sent (an EVALSHA of abexp's "
                                 "scripts counts as one), by pool.")
                           .Register(*registry_)),
      redis_round_trips_(&prometheus::BuildCounter()
                              .Name("abexp_redis_round_trips_total")
                              .Help("Pipelined round trips to Redis, by pool.")
                              .Register(*registry_)),
      redis_round_trip_seconds_(
          &prometheus::BuildHistogram()
               .Name("abexp_redis_round_trip_seconds")
               .Help("Time from sending a pipeline to Redis to its last "
                     "reply (or its failure), by pool.")
               .Register(*registry_)),
      redis_errors_(&prometheus::BuildCounter()
                         .Name("abexp_redis_errors_total")
                         .Help("Redis failures by pool and kind: connect (no "
                               "connection could be made), timeout (no answer "
                               "in time), connection (the connection broke), "
                               "reply (a command answered with an error), "
                               "pool_wait (no free connection in time).")
                         .Register(*registry_)),
      redis_in_use_(&prometheus::BuildGauge()
                         .Name("abexp_redis_connections_in_use")
                         .Help("Redis connections borrowed by a call right "
                               "now, by pool.")
                         .Register(*registry_)),
      redis_open_(&prometheus::BuildGauge()
                       .Name("abexp_redis_connections_open")
                       .Help("Redis connections open (idle or in use), by "
                             "pool.")
                       .Register(*registry_)),
      redis_cluster_redirects_(
          &prometheus::BuildCounter()
               .Name("abexp_redis_cluster_redirects_total")
               .Help("Redis Cluster commands redirected, by pool and kind: "
                     "moved (the slot map was stale), ask (the slot is "
                     "being migrated).")
               .Register(*registry_)),
      redis_cluster_retries_(
          &prometheus::BuildCounter()
               .Name("abexp_redis_cluster_retries_total")
               .Help("Redis Cluster commands retried after a backoff, by "
                     "pool and the reply that asked for it: tryagain, "
                     "clusterdown.")
               .Register(*registry_)),
      redis_cluster_refreshes_(
          &prometheus::BuildCounter()
               .Name("abexp_redis_cluster_slot_map_refreshes_total")
               .Help("Reads of the Redis Cluster slot map, by pool and "
                     "outcome: ok, failed (no node answered).")
               .Register(*registry_)),
      http_requests_(
          &prometheus::BuildCounter()
               .Name("abexp_http_requests_total")
               .Help("Requests the HTTP listener (--http_listen) answered, by "
                     "route (the path template; unmatched for paths no route "
                     "serves) and the HTTP status code sent.")
               .Register(*registry_)),
      http_duration_(
          &prometheus::BuildHistogram()
               .Name("abexp_http_request_duration_seconds")
               .Help("Time from an HTTP request being read to its answer "
                     "being handed to the listener's event loop, by route.")
               .Register(*registry_)),
      records_(std::make_unique<RecordCounters>(
          &prometheus::BuildCounter()
               .Name("abexp_records_total")
               .Help("Exposures and events recorded by RecordExposures, "
                     "RecordEvents and Assign with record_exposure, by kind, "
                     "outcome (recorded, duplicate, conflict, ignored, "
                     "spooled) and, for ignored ones, reason.")
               .Register(*registry_))),
      config_(std::make_unique<ConfigMetrics>(registry_.get())),
      ofrep_(std::make_unique<OfrepCounters>(
          &prometheus::BuildCounter()
               .Name("abexp_ofrep_requests_total")
               .Help("Requests of the OpenFeature remote evaluation "
                     "protocol (OFREP) on the HTTP listener, by endpoint "
                     "(flag, bulk, configuration) and result (ok, "
                     "not_modified, or the error).")
               .Register(*registry_))) {
  prometheus::BuildGauge()
      .Name("abexp_build_info")
      .Help("1, labelled with the abexp-server version.")
      .Register(*registry_)
      .Add({{"version", version}})
      .Set(1);
  NewGauge(registry_.get(), "abexp_start_time_seconds",
           "When this abexp-server started, in Unix seconds.")
      .Set(Seconds(absl::Now()));
}

ServerMetrics::~ServerMetrics() = default;

RpcMethodMetrics* ServerMetrics::Rpc(absl::string_view full_method) {
  absl::MutexLock lock(&mu_);
  auto it = rpcs_.find(full_method);
  if (it != rpcs_.end()) return it->second.get();
  // "/abexp.v1.AssignmentService/Assign" -> service and method.
  absl::string_view name = full_method;
  if (!name.empty() && name.front() == '/') name.remove_prefix(1);
  const size_t slash = name.rfind('/');
  std::string service(slash == absl::string_view::npos ? ""
                                                       : name.substr(0, slash));
  std::string method(slash == absl::string_view::npos ? name
                                                      : name.substr(slash + 1));
  prometheus::Histogram* duration = &rpc_duration_->Add(
      {{"service", service}, {"method", method}}, LatencyBuckets());
  auto metrics = std::make_unique<RpcMethodMetrics>(
      rpc_calls_, duration, std::move(service), std::move(method));
  RpcMethodMetrics* out = metrics.get();
  rpcs_.emplace(std::string(full_method), std::move(metrics));
  return out;
}

RedisPoolMetrics* ServerMetrics::RedisPool(absl::string_view pool) {
  absl::MutexLock lock(&mu_);
  auto it = redis_pools_.find(pool);
  if (it != redis_pools_.end()) return it->second.get();
  const std::string name(pool);
  auto m = std::make_unique<RedisPoolMetrics>();
  m->commands = &redis_commands_->Add({{"pool", name}});
  m->round_trips = &redis_round_trips_->Add({{"pool", name}});
  m->round_trip_seconds =
      &redis_round_trip_seconds_->Add({{"pool", name}}, LatencyBuckets());
  m->connect_errors =
      &redis_errors_->Add({{"pool", name}, {"kind", "connect"}});
  m->timeout_errors =
      &redis_errors_->Add({{"pool", name}, {"kind", "timeout"}});
  m->connection_errors =
      &redis_errors_->Add({{"pool", name}, {"kind", "connection"}});
  m->reply_errors = &redis_errors_->Add({{"pool", name}, {"kind", "reply"}});
  m->pool_wait_errors =
      &redis_errors_->Add({{"pool", name}, {"kind", "pool_wait"}});
  m->connections_in_use = &redis_in_use_->Add({{"pool", name}});
  m->connections_open = &redis_open_->Add({{"pool", name}});
  m->cluster_moved =
      &redis_cluster_redirects_->Add({{"pool", name}, {"kind", "moved"}});
  m->cluster_ask =
      &redis_cluster_redirects_->Add({{"pool", name}, {"kind", "ask"}});
  m->cluster_tryagain =
      &redis_cluster_retries_->Add({{"pool", name}, {"reason", "tryagain"}});
  m->cluster_clusterdown =
      &redis_cluster_retries_->Add({{"pool", name}, {"reason", "clusterdown"}});
  m->cluster_refreshes =
      &redis_cluster_refreshes_->Add({{"pool", name}, {"outcome", "ok"}});
  m->cluster_refresh_failures =
      &redis_cluster_refreshes_->Add({{"pool", name}, {"outcome", "failed"}});
  RedisPoolMetrics* out = m.get();
  redis_pools_.emplace(name, std::move(m));
  return out;
}

HttpRouteMetrics* ServerMetrics::HttpRoute(absl::string_view route) {
  absl::MutexLock lock(&mu_);
  auto it = http_routes_.find(route);
  if (it != http_routes_.end()) return it->second.get();
  const std::string name(route);
  auto m = std::make_unique<HttpRouteMetrics>(
      http_requests_, &http_duration_->Add({{"route", name}}, LatencyBuckets()),
      name);
  HttpRouteMetrics* out = m.get();
  http_routes_.emplace(name, std::move(m));
  return out;
}

void ServerMetrics::AddSampler(
    std::function<std::vector<prometheus::MetricFamily>()> sample) {
  samplers_->Add(std::move(sample));
}

std::string ServerMetrics::Scrape() const {
  // The registry's families, then those made when scraped.
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  for (const prometheus::Collectable* more :
       {static_cast<const prometheus::Collectable*>(assignments_.get()),
        static_cast<const prometheus::Collectable*>(samplers_.get())}) {
    for (prometheus::MetricFamily& f : more->Collect()) {
      families.push_back(std::move(f));
    }
  }
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

}  // namespace abexp
