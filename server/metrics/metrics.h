// ServerMetrics: what abexp-server counts for its operators, kept in a
// prometheus-cpp registry and served in the Prometheus text format
// (docs/operations.md lists every metric and what it means).
//
// The layers above count into it: the RPC interceptor
// (server/service/rpc_metrics.h) each call's method, code and latency; the
// HTTP listener each request's route, status and latency (HttpRouteMetrics);
// the assignment service the variants it serves (AssignmentCounts); the
// recording service each record's outcome (RecordCounters); each Redis pool
// its commands, errors and round trips (RedisPoolMetrics); the process its
// config loads and reloads (ConfigMetrics). Figures that are a state rather
// than an event (the spool's size, whether recording can acknowledge) are
// read when scraped, from the samplers the process adds (AddSampler).
//
// Every label value comes from the server itself (RPC names it serves,
// status codes, experiment and variant keys of configs it loaded, fixed
// outcome names), never from a caller, so the number of series is bounded.
//
// Thread-safe: every method may be called from any thread; counting is
// lock-free except where noted.
#ifndef ABEXP_SERVER_METRICS_METRICS_H_
#define ABEXP_SERVER_METRICS_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"
#include "server/core/assigner.h"
#include "server/core/indexed_config.h"

namespace abexp {

// Latency buckets (seconds) of every duration histogram: 50 us to 10 s.
const std::vector<double>& LatencyBuckets();

// One RPC method's calls: a counter per status code and a latency histogram.
class RpcMethodMetrics {
 public:
  // REQUIRES: the families outlive this.
  RpcMethodMetrics(prometheus::Family<prometheus::Counter>* calls,
                   prometheus::Histogram* duration, std::string service,
                   std::string method);

  // One call that ended with gRPC status `code` (0-16; others count as
  // UNKNOWN) after `seconds`.
  void Observe(int code, double seconds);
  // One call counted by its code only (a stream: its length is no latency).
  void Count(int code);

 private:
  prometheus::Family<prometheus::Counter>* const calls_;  // not owned
  prometheus::Histogram* const duration_;                 // not owned
  const std::string service_;
  const std::string method_;
  // The counter of each code, made on its first call (Family::Add locks).
  std::array<std::atomic<prometheus::Counter*>, 17> by_code_{};
};

// One route of the HTTP listener (--http_listen), by its path template
// ("/experiments/{key}/report") or "unmatched": a counter per HTTP status
// sent, abexp_http_requests_total{route, code}, and a latency histogram,
// abexp_http_request_duration_seconds{route}. The histogram exists from
// its making; a status's counter from the route's first answer with it.
class HttpRouteMetrics {
 public:
  // REQUIRES: the families outlive this.
  HttpRouteMetrics(prometheus::Family<prometheus::Counter>* requests,
                   prometheus::Histogram* duration, std::string route);

  // One request answered with HTTP status `status` (100-599; others count
  // as code "other") `seconds` after it was read.
  void Observe(int status, double seconds);

 private:
  static constexpr int kFirstStatus = 100;
  static constexpr int kStatuses = 500;  // 100-599, then "other"

  prometheus::Family<prometheus::Counter>* const requests_;  // not owned
  prometheus::Histogram* const duration_;                    // not owned
  const std::string route_;
  // The counter of each status, made on its first answer (Family::Add
  // locks).
  std::array<std::atomic<prometheus::Counter*>, kStatuses + 1> by_status_{};
};

// Each variant an Assign or BatchAssign call serves, by experiment and
// variant key: abexp_assignments_total. Counting costs no lock and no
// shared cache line: each thread counts into a block of its own for the
// config it serves, and a scrape adds the blocks up.
class AssignmentCounts final : public prometheus::Collectable {
 public:
  AssignmentCounts() = default;
  AssignmentCounts(const AssignmentCounts&) = delete;
  AssignmentCounts& operator=(const AssignmentCounts&) = delete;

  // Counts every assignment of `result` that has a variant.
  // REQUIRES: `result` was computed on `config`.
  void Count(const IndexedConfig& config, const AssignResult& result);

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  struct Block;
  // The calling thread's block for `config` (made and registered on its
  // first use there).
  Block& BlockFor(const IndexedConfig& config);

  mutable absl::Mutex mu_;
  // Every block a thread may still count into, and those whose thread has
  // let go of them (added into retired_ at the next scrape).
  mutable std::vector<std::shared_ptr<Block>> blocks_ ABSL_GUARDED_BY(mu_);
  // Counts of blocks no thread counts into any more.
  mutable std::map<std::pair<std::string, std::string>, uint64_t> retired_
      ABSL_GUARDED_BY(mu_);
};

// Each record a recording call (or Assign with record_exposure) reports:
// abexp_records_total{kind, outcome, reason}.
class RecordCounters {
 public:
  enum class Kind { kExposure, kEvent };
  // As abexp.v1.RecordOutcome; reason as abexp.v1.IgnoreReason (0 unless
  // ignored).
  // REQUIRES: family outlives this.
  explicit RecordCounters(prometheus::Family<prometheus::Counter>* family);

  // `count` records of `kind` with proto outcome `outcome` (1-5) and proto
  // ignore reason `reason` (0-8). Values outside those count as outcome or
  // reason "unknown".
  void Add(Kind kind, int outcome, int reason, int64_t count);

 private:
  static constexpr int kOutcomes = 6;  // 0 unknown, 1-5
  static constexpr int kReasons = 9;   // 0 none, 1-8
  // [kind][outcome][reason], each made at construction.
  prometheus::Counter* counters_[2][kOutcomes][kReasons] = {};
};

// Each request of the OpenFeature remote evaluation protocol (server/ofrep/)
// by endpoint and result: abexp_ofrep_requests_total{endpoint, result}.
// Every series exists from the start (at 0).
class OfrepCounters {
 public:
  enum class Endpoint { kFlag, kBulk, kConfiguration };
  // ok, not_modified (304), then OFREP's error codes and the auth failures.
  enum class Result {
    kOk,
    kNotModified,
    kFlagNotFound,
    kParseError,
    kInvalidContext,
    kTargetingKeyMissing,
    kUnauthenticated,
    kPermissionDenied,
    kGeneral,
  };
  // "flag", "bulk", "configuration".
  static const char* EndpointName(Endpoint endpoint);
  // "ok", "not_modified", "flag_not_found", "parse_error", ...
  static const char* ResultName(Result result);

  // REQUIRES: family outlives this.
  explicit OfrepCounters(prometheus::Family<prometheus::Counter>* family);
  void Count(Endpoint endpoint, Result result);

 private:
  static constexpr int kEndpoints = 3;
  static constexpr int kResults = 9;
  prometheus::Counter* counters_[kEndpoints][kResults] = {};
};

// One Redis connection pool's traffic. The pools count into it through
// RedisOptions::metrics (server/storage/redis/redis_connection.h).
struct RedisPoolMetrics {
  prometheus::Counter* commands = nullptr;     // commands sent
  prometheus::Counter* round_trips = nullptr;  // pipelined round trips
  prometheus::Histogram* round_trip_seconds = nullptr;
  // Errors by kind: no connection could be made, a round trip timed out or
  // the connection broke, a command answered with an error reply, the pool
  // had no free connection in time.
  prometheus::Counter* connect_errors = nullptr;
  prometheus::Counter* timeout_errors = nullptr;
  prometheus::Counter* connection_errors = nullptr;
  prometheus::Counter* reply_errors = nullptr;
  prometheus::Counter* pool_wait_errors = nullptr;
  prometheus::Gauge* connections_in_use = nullptr;
  prometheus::Gauge* connections_open = nullptr;
  // On a Redis Cluster: commands redirected by MOVED (the slot map was
  // stale) and by ASK (the slot is being migrated); commands retried after
  // a backoff because a node answered TRYAGAIN or CLUSTERDOWN; slot map
  // reads (at start, periodic, after a redirect or error) that succeeded
  // or found no node to answer.
  prometheus::Counter* cluster_moved = nullptr;
  prometheus::Counter* cluster_ask = nullptr;
  prometheus::Counter* cluster_tryagain = nullptr;
  prometheus::Counter* cluster_clusterdown = nullptr;
  prometheus::Counter* cluster_refreshes = nullptr;
  prometheus::Counter* cluster_refresh_failures = nullptr;
};

// Config loads and reloads.
class ConfigMetrics {
 public:
  // REQUIRES: registry outlives this.
  explicit ConfigMetrics(prometheus::Registry* registry);

  // The config in force is now `config` (the start's, or a reload's) at
  // `when`.
  void Loaded(const Config& config, absl::Time when) ABSL_LOCKS_EXCLUDED(mu_);
  // A reload (SIGHUP) that replaced the config, found it unchanged, or
  // failed and kept the one in force; and the running experiments a reload
  // removed.
  void ReloadChanged(const Config& config, absl::Time when,
                     int dropped_running);
  void ReloadUnchanged(absl::Time when);
  void ReloadFailed();

 private:
  // `reloads`: the family abexp_config_reloads_total, built once.
  ConfigMetrics(prometheus::Registry* registry,
                prometheus::Family<prometheus::Counter>* reloads);

  prometheus::Family<prometheus::Gauge>* const info_;
  prometheus::Counter* const changed_;
  prometheus::Counter* const unchanged_;
  prometheus::Counter* const failed_;
  prometheus::Gauge* const last_success_;
  prometheus::Counter* const dropped_running_;
  prometheus::Gauge* const experiments_;
  prometheus::Gauge* const running_;
  absl::Mutex mu_;
  prometheus::Gauge* version_ ABSL_GUARDED_BY(mu_) = nullptr;
};

// Adds metric families computed when scraped. Helpers for samplers.
prometheus::MetricFamily GaugeFamily(std::string name, std::string help,
                                     double value);
prometheus::MetricFamily CounterFamily(std::string name, std::string help,
                                       double value);

class ServerMetrics {
 public:
  // Registers every family, and abexp_build_info with `version`.
  explicit ServerMetrics(const std::string& version);
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;
  ~ServerMetrics();

  // The metrics of RPC `full_method` ("/abexp.v1.AssignmentService/Assign"),
  // made on its first request. Locks; look them up once, not per call.
  RpcMethodMetrics* Rpc(absl::string_view full_method) ABSL_LOCKS_EXCLUDED(mu_);
  // The metrics of the Redis pool named `pool` ("recording", "sticky").
  RedisPoolMetrics* RedisPool(absl::string_view pool) ABSL_LOCKS_EXCLUDED(mu_);
  // The metrics of the HTTP listener's route `route` (a path template, or
  // "unmatched"), made on the first call. Locks; look them up once, when
  // the listener starts (HttpListenerOptions::observe), not per request.
  HttpRouteMetrics* HttpRoute(absl::string_view route) ABSL_LOCKS_EXCLUDED(mu_);
  AssignmentCounts* assignments() { return assignments_.get(); }
  RecordCounters* records() { return records_.get(); }
  ConfigMetrics* config() { return config_.get(); }
  OfrepCounters* ofrep() { return ofrep_.get(); }

  // `sample` is called on every scrape and returns families to add (e.g.
  // GaugeFamily of the spool's size). It runs on the scraping thread.
  void AddSampler(
      std::function<std::vector<prometheus::MetricFamily>()> sample);

  // Everything, in the Prometheus text format (version 0.0.4).
  std::string Scrape() const;

 private:
  class Samplers;

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<AssignmentCounts> assignments_;
  std::shared_ptr<Samplers> samplers_;
  prometheus::Family<prometheus::Counter>* const rpc_calls_;
  prometheus::Family<prometheus::Histogram>* const rpc_duration_;
  prometheus::Family<prometheus::Counter>* const redis_commands_;
  prometheus::Family<prometheus::Counter>* const redis_round_trips_;
  prometheus::Family<prometheus::Histogram>* const redis_round_trip_seconds_;
  prometheus::Family<prometheus::Counter>* const redis_errors_;
  prometheus::Family<prometheus::Gauge>* const redis_in_use_;
  prometheus::Family<prometheus::Gauge>* const redis_open_;
  prometheus::Family<prometheus::Counter>* const redis_cluster_redirects_;
  prometheus::Family<prometheus::Counter>* const redis_cluster_retries_;
  prometheus::Family<prometheus::Counter>* const redis_cluster_refreshes_;
  prometheus::Family<prometheus::Counter>* const http_requests_;
  prometheus::Family<prometheus::Histogram>* const http_duration_;
  std::unique_ptr<RecordCounters> records_;
  std::unique_ptr<ConfigMetrics> config_;
  std::unique_ptr<OfrepCounters> ofrep_;

  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<RpcMethodMetrics>, std::less<>> rpcs_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::unique_ptr<RedisPoolMetrics>, std::less<>>
      redis_pools_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::unique_ptr<HttpRouteMetrics>, std::less<>>
      http_routes_ ABSL_GUARDED_BY(mu_);
};

}  // namespace abexp

#endif  // ABEXP_SERVER_METRICS_METRICS_H_
