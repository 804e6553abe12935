#include "server/operator_endpoints.h"

#include <utility>
#include <vector>

#include "abexp/v1/recording.grpc.pb.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace abexp {

RecordingHealth::RecordingHealth(SpooledEventStore* store,
                                 grpc::HealthCheckServiceInterface* health,
                                 absl::Duration interval)
    : store_(store), health_(health), interval_(interval) {
  Check();
  thread_ = std::thread([this] {
    for (;;) {
      {
        absl::MutexLock lock(&mu_);
        // Wakes at once when told to stop.
        mu_.AwaitWithTimeout(absl::Condition(&stop_), interval_);
        if (stop_) return;
      }
      Check();
    }
  });
}

RecordingHealth::~RecordingHealth() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void RecordingHealth::Check() {
  const bool ok = store_->CanAcknowledge();
  if (can_acknowledge_.exchange(ok) == ok) return;
  // The health service reports NOT_SERVING for everything once shut down;
  // a later status would be ignored.
  if (health_ != nullptr && !draining()) {
    health_->SetServingStatus(v1::RecordingService::service_full_name(), ok);
  }
}

HttpRoutes OperatorRoutes(const ServerMetrics* metrics,
                          const RecordingHealth* health,
                          std::function<std::string()> config_version) {
  HttpRoutes routes;
  routes[{"GET", "/metrics"}] = [metrics](const HttpRequest&) {
    HttpResponse response;
    response.content_type = "text/plain; version=0.0.4; charset=utf-8";
    response.body = metrics->Scrape();
    return response;
  };
  routes[{"GET", "/healthz"}] = [](const HttpRequest&) {
    return HttpResponse{200, "text/plain; charset=utf-8", "ok\n", {}};
  };
  routes[{"GET", "/readyz"}] = [health, config_version](const HttpRequest&) {
    HttpResponse response;
    if (health->draining()) {
      response.status = 503;
      response.body =
          "not ready: shutting down (finishing in-flight calls); send new "
          "calls to another replica\n";
      return response;
    }
    if (!health->can_acknowledge()) {
      response.status = 503;
      response.body =
          "not ready: recording cannot acknowledge: Redis is failing and the "
          "spool cannot be written (deleted, moved or full; see the server's "
          "log). Assignments are still served\n";
      return response;
    }
    response.body = absl::StrCat("ready: config version ", config_version(),
                                 ", recording can acknowledge\n");
    return response;
  };
  return routes;
}

void AddRecordingSamplers(ServerMetrics* metrics, SpooledEventStore* store,
                          const RecordingHealth* health) {
  metrics->AddSampler([store, health] {
    const SpooledEventStoreStats stats = store->stats();
    const absl::Time now = absl::Now();
    const double lag = stats.spooling && stats.spooling_since < now
                           ? absl::ToDoubleSeconds(now - stats.spooling_since)
                           : 0;
    std::vector<prometheus::MetricFamily> out;
    out.push_back(GaugeFamily("abexp_spool_bytes",
                              "Disk space the local spool uses.",
                              static_cast<double>(stats.spool_bytes)));
    out.push_back(GaugeFamily(
        "abexp_spool_pending_records",
        "Recording calls acknowledged into the spool and not yet replayed "
        "into Redis.",
        static_cast<double>(stats.pending_records)));
    out.push_back(GaugeFamily(
        "abexp_spool_replay_lag_seconds",
        "How long writes have been going to the spool (the oldest pending "
        "write is at most this old); 0 when they go to Redis.",
        lag));
    out.push_back(GaugeFamily(
        "abexp_spool_spooling",
        "1 while recording calls are answered from the spool (Redis failed "
        "or the spool is replaying), else 0.",
        stats.spooling ? 1 : 0));
    out.push_back(CounterFamily("abexp_spool_spooled_writes_total",
                                "Recording writes acknowledged into the spool.",
                                static_cast<double>(stats.spooled_writes)));
    out.push_back(CounterFamily(
        "abexp_spool_spooled_items_total",
        "Exposures and events of the writes acknowledged into the spool.",
        static_cast<double>(stats.spooled_items)));
    out.push_back(CounterFamily("abexp_spool_replayed_writes_total",
                                "Spooled writes replayed into Redis.",
                                static_cast<double>(stats.replayed_writes)));
    out.push_back(
        CounterFamily("abexp_spool_rejected_writes_total",
                      "Spooled writes Redis refused on replay, set aside in "
                      "<spool dir>/rejected.",
                      static_cast<double>(stats.rejected_writes)));
    out.push_back(CounterFamily(
        "abexp_spool_lost_writes_total",
        "Acknowledged writes lost with a spool directory deleted or moved "
        "under the server.",
        static_cast<double>(stats.lost_records)));
    out.push_back(GaugeFamily(
        "abexp_recording_can_acknowledge",
        "1 while recording calls can be acknowledged (the spool can keep "
        "them or Redis takes them), else 0 (they fail UNAVAILABLE).",
        health->can_acknowledge() ? 1 : 0));
    return out;
  });
}

void AddSpoolAdmissionSamplers(ServerMetrics* metrics,
                               const SpoolAdmission* admission) {
  metrics->AddSampler([admission] {
    std::vector<prometheus::MetricFamily> out;
    out.push_back(GaugeFamily(
        "abexp_spool_admission_active",
        "1 while recording calls answered from the spool are admitted at a "
        "bounded rate (--spool_admit_rate; past it held, or refused "
        "RESOURCE_EXHAUSTED with a retry hint), else 0.",
        admission->spooling() ? 1 : 0));
    out.push_back(GaugeFamily(
        "abexp_spool_admit_records_per_second",
        "The bound, in records per second, while it is active; else 0.",
        admission->rate()));
    out.push_back(CounterFamily(
        "abexp_spool_admission_held_calls_total",
        "Recording calls over the bound held until it admitted them "
        "(--spool_admit_max_hold) instead of refused.",
        static_cast<double>(admission->held_calls())));
    return out;
  });
}

void AddSpoolStartSamplers(ServerMetrics* metrics, int64_t damaged,
                           int64_t torn_bytes) {
  metrics->AddSampler([damaged, torn_bytes] {
    std::vector<prometheus::MetricFamily> out;
    out.push_back(GaugeFamily(
        "abexp_spool_damaged_at_start",
        "Places where the spool's recovery at start found acknowledged "
        "records it could not replay (logged as ACKNOWLEDGED WRITES LOST, "
        "the bytes kept in <spool dir>/damaged).",
        static_cast<double>(damaged)));
    out.push_back(GaugeFamily(
        "abexp_spool_torn_bytes_dropped_at_start",
        "Bytes of a torn spool tail the recovery at start dropped: a write "
        "cut by a crash, never acknowledged.",
        static_cast<double>(torn_bytes)));
    return out;
  });
}

void AddHttpListenerSamplers(ServerMetrics* metrics,
                             const std::atomic<int64_t>* refused) {
  metrics->AddSampler([refused] {
    return std::vector<prometheus::MetricFamily>{CounterFamily(
        "abexp_http_requests_refused_total",
        "HTTP requests answered 503 because --http_listen's handler threads "
        "had 1024 requests waiting: raise --http_handler_threads when it "
        "moves.",
        static_cast<double>(refused->load()))};
  });
}

std::function<HttpAnswerObserver(const std::string& route)> HttpRouteCounting(
    ServerMetrics* metrics) {
  return [metrics](const std::string& route) -> HttpAnswerObserver {
    HttpRouteMetrics* counted = metrics->HttpRoute(route);
    return [counted](int status, absl::Duration elapsed) {
      counted->Observe(status, absl::ToDoubleSeconds(elapsed));
    };
  };
}

}  // namespace abexp
