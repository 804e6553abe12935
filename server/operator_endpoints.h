// What abexp-server tells its operators beyond the gRPC services: the
// routes of the HTTP listener (--http_listen: GET /metrics, /healthz,
// /readyz) and the gRPC health of RecordingService, which follows whether
// recording can acknowledge (docs/operations.md).
//
// Thread-safe.
#ifndef ABEXP_SERVER_OPERATOR_ENDPOINTS_H_
#define ABEXP_SERVER_OPERATOR_ENDPOINTS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/health_check_service_interface.h"
#include "server/core/spool_admission.h"
#include "server/http_listener.h"
#include "server/metrics/metrics.h"
#include "server/storage/spool/spooled_event_store.h"

namespace abexp {

// Watches whether recording can acknowledge (SpooledEventStore::
// CanAcknowledge: the spool can keep writes, or Redis took the last one)
// every `interval`, and reports abexp.v1.RecordingService NOT_SERVING in
// gRPC health while it cannot. Also what /readyz answers.
class RecordingHealth {
 public:
  // Starts watching. `health` may be null (no gRPC health to set).
  // REQUIRES: store and health outlive this.
  RecordingHealth(SpooledEventStore* store,
                  grpc::HealthCheckServiceInterface* health,
                  absl::Duration interval);
  // Stops watching.
  ~RecordingHealth();
  RecordingHealth(const RecordingHealth&) = delete;
  RecordingHealth& operator=(const RecordingHealth&) = delete;

  // Whether recording could acknowledge at the last look.
  bool can_acknowledge() const { return can_acknowledge_.load(); }
  // From now on readiness is false: the server is shutting down.
  void SetDraining() { draining_.store(true); }
  bool draining() const { return draining_.load(); }

 private:
  // Looks once and sets the health status when it changed.
  void Check();

  SpooledEventStore* const store_;                   // not owned
  grpc::HealthCheckServiceInterface* const health_;  // not owned; may be null
  const absl::Duration interval_;
  std::atomic<bool> can_acknowledge_{true};
  std::atomic<bool> draining_{false};
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// The routes of the operators' HTTP listener:
//   GET /metrics  metrics->Scrape(), Prometheus text format 0.0.4;
//   GET /healthz  200 "ok" while the process answers;
//   GET /readyz   200 when the server should get traffic, else 503 with
//                 why (shutting down, or recording cannot acknowledge).
// REQUIRES: metrics and health outlive the listener.
HttpRoutes OperatorRoutes(const ServerMetrics* metrics,
                          const RecordingHealth* health,
                          std::function<std::string()> config_version);

// Samples the spool and the recording health on every scrape:
// abexp_spool_* and abexp_recording_can_acknowledge.
// REQUIRES: store and health outlive metrics' scrapes.
void AddRecordingSamplers(ServerMetrics* metrics, SpooledEventStore* store,
                          const RecordingHealth* health);

// The bound on recording from the spool, on every scrape:
// abexp_spool_admission_active and abexp_spool_admit_records_per_second.
// REQUIRES: admission outlives metrics' scrapes.
void AddSpoolAdmissionSamplers(ServerMetrics* metrics,
                               const SpoolAdmission* admission);

// What the spool's recovery found at start: `damaged` places where
// acknowledged records could not be recovered (Spool::damage()) and
// `torn_bytes` of a torn tail dropped (never acknowledged), as
// abexp_spool_damaged_at_start and abexp_spool_torn_bytes_dropped_at_start.
void AddSpoolStartSamplers(ServerMetrics* metrics, int64_t damaged,
                           int64_t torn_bytes);

// The requests the HTTP listener answered 503 because its handler threads
// had max_queued requests waiting (HttpListenerOptions::refused):
// abexp_http_requests_refused_total.
// REQUIRES: refused outlives metrics' scrapes.
void AddHttpListenerSamplers(ServerMetrics* metrics,
                             const std::atomic<int64_t>* refused);

// What HttpListenerOptions::observe takes to count every request the
// listener answers into `metrics`: abexp_http_requests_total{route, code}
// and abexp_http_request_duration_seconds{route}, each route's made when
// the listener starts (counting then takes no lock of its own).
// REQUIRES: metrics outlives the listener.
std::function<HttpAnswerObserver(const std::string& route)> HttpRouteCounting(
    ServerMetrics* metrics);

}  // namespace abexp

#endif  // ABEXP_SERVER_OPERATOR_ENDPOINTS_H_
