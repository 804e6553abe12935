// abexp-loadgen: a gRPC load generator for abexp-server and
// abexp-echo-server, written with the C++ async stub (PrepareAsync* and one
// CompletionQueue per poller thread) of the gRPC abexp itself uses.
//
//   abexp-loadgen --target=127.0.0.1:50051 [--call=assign|record|results]
//                 [--mode=closed|open --rate=QPS] [--channels=4]
//                 [--inflight=32] [--duration=10s] [--warmup=2s] [--json]
//
// --call=assign sends AssignmentService.Assign, each request with a unit of
// its own (user_id and device_id) and attributes drawn from a seeded
// generator (--seed), typed as bench/experiments-50.yaml and
// examples/experiments.yaml declare them. --call=record sends
// RecordingService batches of --batch records, alternating RecordExposures
// (new units of --record_experiment) and RecordEvents (one --record_event per
// unit just exposed), every record with a fresh idempotency key.
//
// --mode=closed keeps --inflight calls outstanding: each sends its next
// call as soon as the previous one answers (maximum throughput). --mode=open
// sends --rate calls per second on a fixed schedule and measures each call
// from its *scheduled* send time, so a server that stalls cannot hide it by
// slowing the sender (coordinated omission); sends that left more than
// --late_after after their schedule (all --inflight slots busy, or the
// loadgen itself behind) are counted as late_sends. Open mode also reports
// the percentiles from the *actual* send time (service_*): what the server
// and the network added, without the generator's own lateness.
//
// Every response's status is checked: errors are counted by code, and any
// error makes the exit status 1 unless --allow_errors, or unless its code is
// one of --allowed_errors (a load that expects refusals, such as recording
// while Redis is frozen, names the codes it accepts; any other error still
// fails the run). --timeout is each call's deadline. A successful Assign
// response without a config_version, or with no assignment and no feature,
// counts as the error EMPTY_RESPONSE; a record response without one result
// per record as BAD_RESPONSE.
//
// --honour_retry_hint (closed mode) makes a refused call that carries gRPC's
// retry hint (grpc-retry-pushback-ms) wait that long and go again,
// unchanged, as abexp's EventSender does, instead of the slot sending its
// next call at once.
//
// SIGINT or SIGTERM ends the run early: no more calls are sent, the calls
// in flight are awaited (each at most --timeout), and the run is reported
// over the window measured so far. With --ready_file, the file is created
// when the warmup is over, so a script can run this load in the background
// (e.g. --duration=3600s), start what it measures alongside once the file
// exists, and stop it with SIGINT.
//
// --tls_ca_file, --tls_cert_file, --tls_key_file, --tls and --token (or
// ABEXP_TLS_CA_FILE, ABEXP_TLS_CERT_FILE, ABEXP_TLS_KEY_FILE, ABEXP_TOKEN)
// load a server over TLS or mutual TLS and with an access token, built by
// client/credentials.h as abexp::Client builds them: each call carries the
// token as one metadata entry, as a real client's call does.
//
// --inflight is the total over all channels. Latencies go into an HDR-style
// histogram (bench/histogram.h): percentiles are within 0.8% of the truth.
//
// Output: a summary on stderr; with --json also one JSON object on stdout
// (see --help for the keys). Exit status: 0 ok, 1 errors or the target
// unreachable (or an unknown flag), 2 a flag value out of range.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "abexp/v1/assignment.grpc.pb.h"
#include "abexp/v1/assignment.pb.h"
#include "abexp/v1/recording.grpc.pb.h"
#include "abexp/v1/recording.pb.h"
#include "abexp/v1/results.grpc.pb.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/histogram.h"
#include "client/absl_probes.h"
#include "client/client.h"
#include "client/credentials.h"
#include "grpc/support/time.h"
#include "grpcpp/grpcpp.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051",
          "HOST:PORT of the abexp-server or abexp-echo-server to load.");
ABSL_FLAG(std::string, call, "assign",
          "What to send: assign (AssignmentService.Assign), record "
          "(RecordingService.RecordExposures and RecordEvents, alternating) "
          "or results (ResultsService.GetResults of --results_experiment).");
ABSL_FLAG(std::string, mode, "closed",
          "closed: every in-flight slot sends its next call when the previous "
          "answers. open: --rate calls per second on a fixed schedule, "
          "latency measured from the scheduled send time.");
ABSL_FLAG(double, rate, 0,
          "Open mode: calls per second, in total over all channels.");
ABSL_FLAG(int, channels, 4,
          "gRPC channels, each with a distinct channel argument and its own "
          "subchannel pool, so each is a TCP connection of its own.");
ABSL_FLAG(int, inflight, 32,
          "Calls in flight at most, in total: slot i uses channel i % "
          "channels. Must be at least --channels.");
ABSL_FLAG(int, threads, 1,
          "Poller threads, each with its own CompletionQueue; channel c is "
          "polled by thread c % threads. At most --channels. Open mode polls "
          "without sleeping shortly before each send, so that sends leave on "
          "time: each thread then keeps a core busy.");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(10),
          "How long to measure, after the warmup.");
ABSL_FLAG(absl::Duration, warmup, absl::Seconds(2),
          "How long to send before measuring; those calls are not counted.");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(10),
          "Deadline of each call; a call that takes longer fails with "
          "DEADLINE_EXCEEDED.");
ABSL_FLAG(absl::Duration, late_after, absl::Milliseconds(1),
          "Open mode: a send that leaves more than this after its scheduled "
          "time counts in late_sends.");
ABSL_FLAG(uint64_t, seed, 1,
          "Seeds the unit ids and attributes: the same seed sends the same "
          "units (record mode also mixes a per-run nonce into unit ids and "
          "idempotency keys, so a rerun records new units).");
ABSL_FLAG(std::vector<std::string>, experiments, {},
          "Assign: experiment_keys to ask for (comma-separated). Default: "
          "none, i.e. every experiment.");
ABSL_FLAG(std::vector<std::string>, features, {},
          "Assign: feature_keys to ask for (comma-separated). Default: none, "
          "i.e. every feature.");
ABSL_FLAG(int, batch, 100, "Record: records per call.");
ABSL_FLAG(std::string, record_experiment, "checkout_exp01",
          "Record: the experiment whose units are exposed (its variants and "
          "unit id type are read with GetExperiment).");
ABSL_FLAG(std::string, record_event, "order_completed",
          "Record: the event name sent for exposed units; pick one a metric "
          "of --record_experiment uses, or the events are IGNORED.");
ABSL_FLAG(bool, record_events, true,
          "Record: send an event batch after each exposure batch. false: "
          "exposures only (e.g. to measure Redis memory per exposed unit).");
ABSL_FLAG(std::string, results_experiment, "checkout_exp01",
          "Results: the experiment whose results are read.");
ABSL_FLAG(int64_t, max_calls, 0,
          "Closed mode: stop sending after this many calls in total (warmup "
          "included), or at the end of --duration, whichever comes first. 0: "
          "no limit.");
ABSL_FLAG(bool, json, false, "Also print one JSON object on stdout.");
ABSL_FLAG(bool, allow_errors, false,
          "Exit 0 even when calls failed (they are still counted).");
ABSL_FLAG(std::vector<std::string>, allowed_errors, {},
          "Error codes (comma-separated names as in errors_by_code, e.g. "
          "DEADLINE_EXCEEDED,RESOURCE_EXHAUSTED,UNAVAILABLE) that are counted "
          "by code but do not fail the run; any other error still makes the "
          "exit status 1. Default: none, every error fails the run.");
ABSL_FLAG(bool, honour_retry_hint, false,
          "Closed mode: a call refused with gRPC's retry hint (trailing "
          "metadata grpc-retry-pushback-ms, which abexp-server sends while "
          "it bounds recording from its spool) is sent again, the same "
          "request, after that delay, as abexp's EventSender does; the slot "
          "sends nothing meanwhile. The refusal still counts by its code; "
          "retry_hints counts them. Default: false, the next call is sent at "
          "once.");
ABSL_FLAG(std::string, tls_ca_file, "",
          "TLS: PEM CA certificate(s) that signed the server's certificate. "
          "Default: $ABEXP_TLS_CA_FILE, else plaintext.");
ABSL_FLAG(std::string, tls_cert_file, "",
          "Mutual TLS: this client's PEM certificate, with --tls_key_file. "
          "Default: $ABEXP_TLS_CERT_FILE.");
ABSL_FLAG(std::string, tls_key_file, "",
          "Mutual TLS: the unencrypted PEM key of --tls_cert_file. Default: "
          "$ABEXP_TLS_KEY_FILE.");
ABSL_FLAG(bool, tls, false,
          "TLS verified against the system's root CAs (implied by the "
          "--tls_* files).");
ABSL_FLAG(std::string, token, "",
          "Access token sent on every call as `authorization: Bearer TOKEN`. "
          "Default: $ABEXP_TOKEN, else none.");
ABSL_FLAG(std::string, ready_file, "",
          "Created (empty) when the warmup is over and measuring starts. "
          "Default: none.");

namespace abexp::bench {
namespace {

enum class CallKind { kAssign, kRecord, kResults };
enum class Mode { kClosed, kOpen };

struct LoadOptions {
  std::string target;
  CallKind call = CallKind::kAssign;
  Mode mode = Mode::kClosed;
  double rate = 0;
  int channels = 4;
  int inflight = 32;
  int threads = 1;
  absl::Duration duration;
  absl::Duration warmup;
  absl::Duration timeout;
  absl::Duration late_after;
  uint64_t seed = 1;
  std::vector<std::string> experiments;
  std::vector<std::string> features;
  int batch = 100;
  std::string record_experiment;
  std::string record_event;
  bool record_events = true;
  std::string results_experiment;
  int64_t max_calls = 0;
  bool json = false;
  bool allow_errors = false;
  bool honour_retry_hint = false;
  // Indexed by error code (ErrorName): true for the codes of
  // --allowed_errors.
  std::vector<bool> allowed_errors;
  std::string ready_file;
  // TLS and the token, from the flags and the environment.
  ChannelSecurity security;
};

// What record mode needs to know about its experiment.
struct RecordTarget {
  std::string experiment_key;
  std::string unit_id_type;
  std::vector<std::string> variant_keys;
};

int64_t NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// SplitMix64's finalizer: a bijection on 64-bit values, so distinct
// sequence numbers give distinct ids.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Draws units and records for one poller thread. Unit ids are unique over
// all threads: thread t of T numbers its units t, t + T, t + 2T, ...
class RequestGenerator {
 public:
  RequestGenerator(uint64_t seed, uint64_t nonce, int thread, int threads)
      : id_key_(Mix(seed ^ nonce)),
        device_key_(Mix(seed ^ nonce ^ 0x6465766963650000ULL)),
        next_unit_(thread),
        stride_(threads),
        rng_(Mix(seed) ^ Mix(static_cast<uint64_t>(thread) + 1)),
        key_prefix_(absl::StrFormat("lg-%016x-%d-", nonce, thread)) {}

  // Overwrites the previous request's values in place rather than
  // clearing it: the same map entries and string buffers are reused, so the
  // loadgen spends its core on gRPC, not on building requests.
  void FillAssign(const LoadOptions& options, v1::AssignRequest* request) {
    static const std::string kUserId = "user_id";
    static const std::string kDeviceId = "device_id";
    const uint64_t n = NextUnit();
    v1::Unit* unit = request->mutable_unit();
    SetHex(&(*unit->mutable_ids())[kUserId], "u-", Mix(n ^ id_key_));
    SetHex(&(*unit->mutable_ids())[kDeviceId], "d-", Mix(n ^ device_key_));
    FillAttributes(unit->mutable_attributes());
    if (request->experiment_keys_size() == 0) {
      for (const std::string& e : options.experiments) {
        request->add_experiment_keys(e);
      }
    }
    if (request->feature_keys_size() == 0) {
      for (const std::string& f : options.features) {
        request->add_feature_keys(f);
      }
    }
  }

  // Exposes `batch` new units to random variants; their ids go to *units.
  void FillExposures(const RecordTarget& target, int batch,
                     v1::RecordExposuresRequest* request,
                     std::vector<std::string>* units) {
    request->Clear();
    units->clear();
    for (int i = 0; i < batch; ++i) {
      units->push_back(UserId(NextUnit()));
      v1::ExposureRecord* x = request->add_exposures();
      x->set_experiment_key(target.experiment_key);
      (*x->mutable_unit()->mutable_ids())[target.unit_id_type] = units->back();
      x->set_variant_key(
          target.variant_keys[Below(target.variant_keys.size())]);
      x->set_idempotency_key(NextKey());
    }
  }

  // One event, with a revenue-like value, for each of `units`.
  void FillEvents(const RecordTarget& target, const std::string& name,
                  const std::vector<std::string>& units,
                  v1::RecordEventsRequest* request) {
    request->Clear();
    for (const std::string& id : units) {
      v1::EventRecord* e = request->add_events();
      (*e->mutable_unit()->mutable_ids())[target.unit_id_type] = id;
      e->set_name(name);
      e->set_value(static_cast<double>(500 + Below(20000)) / 100);
      e->set_idempotency_key(NextKey());
    }
  }

 private:
  uint64_t NextUnit() {
    uint64_t n = next_unit_;
    next_unit_ += stride_;
    return n;
  }
  std::string UserId(uint64_t n) const {
    std::string id;
    SetHex(&id, "u-", Mix(n ^ id_key_));
    return id;
  }
  std::string NextKey() { return absl::StrCat(key_prefix_, keys_++); }

  // Uniform in [0, n).
  uint64_t Below(uint64_t n) { return rng_() % n; }
  // Uniform in [0, 1).
  double Unit() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }
  template <size_t N>
  const char* Pick(const char* const (&values)[N]) {
    return values[Below(N)];
  }

  // The attributes bench/experiments-50.yaml declares (a superset of
  // examples/experiments.yaml's), with values spread so that every
  // targeting rule there matches some units and misses others.
  void FillAttributes(
      google::protobuf::Map<std::string, v1::AttributeValue>* attributes) {
    static constexpr const char* kCountries[] = {
        "US", "CA", "GB", "AU", "DE", "FR", "ES", "IT", "NL", "SE",
        "PL", "CN", "SG", "JP", "KR", "IN", "ID", "TH", "BR", "MX"};
    static constexpr const char* kPlatforms[] = {"ios", "ios", "android",
                                                 "android", "web"};
    static constexpr const char* kLocales[] = {
        "en-US", "en-GB", "en",    "zh-CN", "de-DE",
        "fr-FR", "ja-JP", "es-ES", "pt-BR", "ko-KR"};
    static constexpr const char* kChannels[] = {"organic", "paid_search",
                                                "social", "referral"};
    static constexpr const char* kTiers[] = {
        "basic", "basic",  "basic",  "basic", "basic",
        "basic", "silver", "silver", "gold",  "platinum"};
    static constexpr const char* kRfm[] = {"champions", "loyal", "at_risk",
                                           "hibernating"};
    static const std::string kNames[] = {"country",
                                         "platform",
                                         "app_version",
                                         "locale",
                                         "acquisition_channel",
                                         "days_since_signup",
                                         "days_since_last_active",
                                         "orders_last_90d",
                                         "membership_tier",
                                         "rfm_tier",
                                         "is_vip"};
    auto attribute = [&](int i) -> v1::AttributeValue& {
      return (*attributes)[kNames[i]];
    };
    attribute(0).set_string_value(Pick(kCountries));
    attribute(1).set_string_value(Pick(kPlatforms));
    char version[32];
    std::snprintf(version, sizeof(version), "%d.%d.%d",
                  static_cast<int>(4 + Below(3)), static_cast<int>(Below(10)),
                  static_cast<int>(Below(16)));
    attribute(2).set_string_value(version);
    attribute(3).set_string_value(Pick(kLocales));
    attribute(4).set_string_value(Pick(kChannels));
    // Exponential spreads: some new users (< 7 days), some churned
    // (inactive > 30 days), a few repeat buyers.
    attribute(5).set_number_value(std::floor(-120 * std::log1p(-Unit())));
    attribute(6).set_number_value(std::floor(-15 * std::log1p(-Unit())));
    attribute(7).set_number_value(std::floor(-1.5 * std::log1p(-Unit())));
    attribute(8).set_string_value(Pick(kTiers));
    attribute(9).set_string_value(Pick(kRfm));
    attribute(10).set_bool_value(Below(20) == 0);
  }

  // *out = prefix + 16 hex digits of v, reusing out's buffer.
  static void SetHex(std::string* out, const char* prefix, uint64_t v) {
    char text[32];
    int n = std::snprintf(text, sizeof(text), "%s%016llx", prefix,
                          static_cast<unsigned long long>(v));
    out->assign(text, n);
  }

  const uint64_t id_key_;
  const uint64_t device_key_;
  uint64_t next_unit_;
  const uint64_t stride_;
  std::mt19937_64 rng_;
  const std::string key_prefix_;
  uint64_t keys_ = 0;
};

// Error "codes" of our own, after gRPC's 17.
constexpr int kEmptyResponse = 17;
constexpr int kBadResponse = 18;
constexpr int kErrorKinds = 19;

std::string ErrorName(int code) {
  static constexpr const char* kNames[kErrorKinds] = {"OK",
                                                      "CANCELLED",
                                                      "UNKNOWN",
                                                      "INVALID_ARGUMENT",
                                                      "DEADLINE_EXCEEDED",
                                                      "NOT_FOUND",
                                                      "ALREADY_EXISTS",
                                                      "PERMISSION_DENIED",
                                                      "RESOURCE_EXHAUSTED",
                                                      "FAILED_PRECONDITION",
                                                      "ABORTED",
                                                      "OUT_OF_RANGE",
                                                      "UNIMPLEMENTED",
                                                      "INTERNAL",
                                                      "UNAVAILABLE",
                                                      "DATA_LOSS",
                                                      "UNAUTHENTICATED",
                                                      "EMPTY_RESPONSE",
                                                      "BAD_RESPONSE"};
  return kNames[code];
}

// What one poller thread measured; merged at the end.
struct Stats {
  Histogram latency_ns;
  // From the actual send, not the schedule: what the server and network
  // added, without the generator's own lateness (the same as latency_ns in
  // closed mode).
  Histogram service_ns;
  int64_t requests = 0;  // measured calls, failed ones included
  int64_t items = 0;     // units assigned or records sent in ok calls
  std::array<int64_t, kErrorKinds> errors{};
  std::string first_error;
  int64_t late_sends = 0;
  int64_t retry_hints = 0;     // refusals resent after their retry hint
  int64_t response_bytes = 0;  // summed over ok calls
  int64_t ok_calls = 0;
  // Record outcomes, summed over both call types.
  std::array<int64_t, 6> outcomes{};  // indexed by v1::RecordOutcome
  int64_t exposures_recorded = 0;
  int64_t last_completion_ns = 0;

  int64_t error_count() const {
    int64_t n = 0;
    for (int64_t e : errors) n += e;
    return n;
  }

  void Merge(const Stats& o) {
    latency_ns.Merge(o.latency_ns);
    service_ns.Merge(o.service_ns);
    requests += o.requests;
    items += o.items;
    for (int i = 0; i < kErrorKinds; ++i) errors[i] += o.errors[i];
    if (first_error.empty()) first_error = o.first_error;
    late_sends += o.late_sends;
    retry_hints += o.retry_hints;
    response_bytes += o.response_bytes;
    ok_calls += o.ok_calls;
    for (size_t i = 0; i < outcomes.size(); ++i) outcomes[i] += o.outcomes[i];
    exposures_recorded += o.exposures_recorded;
    last_completion_ns = std::max(last_completion_ns, o.last_completion_ns);
  }
};

struct Channel {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::AssignmentService::Stub> assign;
  std::unique_ptr<v1::RecordingService::Stub> record;
  std::unique_ptr<v1::ResultsService::Stub> results;
};

// One call slot: at most one call in flight, its buffers reused.
struct Slot {
  Channel* channel = nullptr;
  enum class Kind {
    kAssign,
    kExposures,
    kEvents,
    kResults
  } kind = Kind::kAssign;
  std::unique_ptr<grpc::ClientContext> context;
  v1::AssignRequest assign_request;
  v1::AssignResponse assign_response;
  v1::RecordExposuresRequest exposures_request;
  v1::RecordExposuresResponse exposures_response;
  v1::RecordEventsRequest events_request;
  v1::RecordEventsResponse events_response;
  v1::GetResultsRequest results_request;
  v1::GetResultsResponse results_response;
  std::unique_ptr<grpc::ClientAsyncResponseReader<v1::GetResultsResponse>>
      results_reader;
  std::unique_ptr<grpc::ClientAsyncResponseReader<v1::AssignResponse>>
      assign_reader;
  std::unique_ptr<grpc::ClientAsyncResponseReader<v1::RecordExposuresResponse>>
      exposures_reader;
  std::unique_ptr<grpc::ClientAsyncResponseReader<v1::RecordEventsResponse>>
      events_reader;
  grpc::Status status;
  int64_t start_ns = 0;  // scheduled (open) or actual (closed) send time
  int64_t sent_ns = 0;   // actual send time
  bool measured = false;
  // Record mode: the units of the last exposure batch, whose events follow.
  std::vector<std::string> exposed_units;
  bool events_next = false;
  // --honour_retry_hint: the last call is to be sent again, unchanged, at
  // retry_at_ns.
  bool retry = false;
  int64_t retry_at_ns = 0;
};

// The shared clock marks of a run, in NowNanos() time.
struct Schedule {
  int64_t start_ns = 0;    // sending starts
  int64_t measure_ns = 0;  // measurement starts (after the warmup)
  // No call is sent from here on; brought forward by SIGINT/SIGTERM.
  std::atomic<int64_t> end_ns{0};
  // Calls sent so far over all threads, for --max_calls.
  std::atomic<int64_t>* calls_sent = nullptr;
};

// A poller thread: its slots, its CompletionQueue and its statistics.
class Worker {
 public:
  Worker(const LoadOptions& options, const RecordTarget& record,
         const Schedule& schedule, int id, uint64_t nonce,
         std::vector<Slot*> slots)
      : options_(options),
        record_(record),
        schedule_(schedule),
        id_(id),
        slots_(std::move(slots)),
        generator_(options.seed, nonce, id, options.threads) {}

  void Run() {
    if (options_.mode == Mode::kClosed) {
      RunClosed();
    } else {
      RunOpen();
    }
    cq_.Shutdown();
    void* tag;
    bool ok;
    while (cq_.Next(&tag, &ok)) {
    }
  }

  const Stats& stats() const { return stats_; }

 private:
  void RunClosed() {
    int outstanding = 0;
    bool sending = true;
    for (Slot* slot : slots_) {
      if (!TakeCall()) {
        sending = false;
        break;
      }
      Issue(slot, -1);
      ++outstanding;
    }
    // Slots waiting out a retry hint, the earliest first.
    auto later = [](const Slot* a, const Slot* b) {
      return a->retry_at_ns > b->retry_at_ns;
    };
    std::priority_queue<Slot*, std::vector<Slot*>, decltype(later)> waiting(
        later);
    while (outstanding > 0) {
      int64_t wait_ns =
          sending ? std::min(schedule_.end_ns - NowNanos(), kDrainPollNs)
                  : kDrainPollNs;
      if (!waiting.empty()) {
        wait_ns = std::min(wait_ns, waiting.top()->retry_at_ns - NowNanos());
      }
      void* tag;
      bool ok;
      // Waits stay short while sending: a signal may bring end_ns forward.
      grpc::CompletionQueue::NextStatus next =
          cq_.AsyncNext(&tag, &ok, DeadlineIn(wait_ns));
      if (next == grpc::CompletionQueue::SHUTDOWN) return;
      const int64_t now = NowNanos();
      if (now >= schedule_.end_ns) sending = false;
      while (!waiting.empty() &&
             (!sending || waiting.top()->retry_at_ns <= now)) {
        Slot* slot = waiting.top();
        waiting.pop();
        if (sending && TakeCall()) {
          Issue(slot, -1);
        } else {
          sending = false;
          --outstanding;
        }
      }
      if (next == grpc::CompletionQueue::TIMEOUT) continue;
      Slot* slot = static_cast<Slot*>(tag);
      Complete(slot, now);
      if (sending && slot->retry) {
        waiting.push(slot);
        continue;
      }
      if (sending && !TakeCall()) sending = false;
      if (sending) {
        Issue(slot, -1);
      } else {
        --outstanding;
      }
    }
  }

  void RunOpen() {
    // Each thread sends its share of the rate, offset so that the threads'
    // sends interleave evenly.
    const double interval =
        1e9 * options_.threads / options_.rate;  // ns between this thread's
    int64_t k = 0;
    auto scheduled = [&](int64_t i) {
      return schedule_.start_ns +
             static_cast<int64_t>(
                 (i + static_cast<double>(id_) / options_.threads) * interval);
    };
    std::vector<Slot*> free(slots_.rbegin(), slots_.rend());
    int outstanding = 0;
    for (;;) {
      int64_t now = NowNanos();
      int64_t next = scheduled(k);
      while (next < schedule_.end_ns && next <= now && !free.empty()) {
        Slot* slot = free.back();
        free.pop_back();
        Issue(slot, next);
        if (slot->measured &&
            NowNanos() - next > absl::ToInt64Nanoseconds(options_.late_after)) {
          ++stats_.late_sends;
        }
        ++outstanding;
        next = scheduled(++k);
      }
      const bool more_to_send = next < schedule_.end_ns;
      if (!more_to_send && outstanding == 0) return;
      // Block until shortly before the next send (gRPC's timers have
      // millisecond granularity), then poll without blocking so the send
      // leaves on time.
      int64_t wait_ns = kDrainPollNs;
      if (more_to_send && !free.empty()) {
        wait_ns = next - now - kSpinNs;
        if (wait_ns < 0) wait_ns = 0;
      }
      void* tag;
      bool ok;
      grpc::CompletionQueue::NextStatus status =
          cq_.AsyncNext(&tag, &ok, DeadlineIn(wait_ns));
      if (status == grpc::CompletionQueue::SHUTDOWN) return;
      if (status == grpc::CompletionQueue::TIMEOUT) continue;
      Slot* slot = static_cast<Slot*>(tag);
      Complete(slot, NowNanos());
      free.push_back(slot);
      --outstanding;
    }
  }

  // Counts one more call against --max_calls; false when the limit is
  // reached.
  bool TakeCall() {
    if (options_.max_calls <= 0) return true;
    return schedule_.calls_sent->fetch_add(1) < options_.max_calls;
  }

  static gpr_timespec DeadlineIn(int64_t ns) {
    if (ns <= 0) return gpr_inf_past(GPR_CLOCK_MONOTONIC);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_nanos(ns, GPR_TIMESPAN));
  }

  // Starts the slot's next call. `scheduled_ns` < 0: now (closed mode).
  void Issue(Slot* slot, int64_t scheduled_ns) {
    if (slot->retry) {
      slot->retry = false;  // the same request again
    } else if (options_.call == CallKind::kAssign) {
      slot->kind = Slot::Kind::kAssign;
      generator_.FillAssign(options_, &slot->assign_request);
    } else if (options_.call == CallKind::kResults) {
      slot->kind = Slot::Kind::kResults;
      slot->results_request.set_experiment_key(options_.results_experiment);
    } else if (slot->events_next) {
      slot->kind = Slot::Kind::kEvents;
      generator_.FillEvents(record_, options_.record_event, slot->exposed_units,
                            &slot->events_request);
    } else {
      slot->kind = Slot::Kind::kExposures;
      generator_.FillExposures(record_, options_.batch,
                               &slot->exposures_request, &slot->exposed_units);
    }
    slot->context = std::make_unique<grpc::ClientContext>();
    slot->context->set_deadline(std::chrono::system_clock::now() +
                                absl::ToChronoNanoseconds(options_.timeout));
    options_.security.Apply(slot->context.get());
    slot->sent_ns = NowNanos();
    slot->start_ns = scheduled_ns >= 0 ? scheduled_ns : slot->sent_ns;
    // A closed-loop call (not scheduled) is sent only when its sender saw
    // the clock before end_ns, but reading the clock again here may already
    // pass it: it is sent, so it is counted, or the server would hold
    // records the run does not report.
    slot->measured = slot->start_ns >= schedule_.measure_ns &&
                     (scheduled_ns < 0 || slot->start_ns < schedule_.end_ns);
    switch (slot->kind) {
      case Slot::Kind::kAssign:
        slot->assign_reader = slot->channel->assign->PrepareAsyncAssign(
            slot->context.get(), slot->assign_request, &cq_);
        slot->assign_reader->StartCall();
        slot->assign_reader->Finish(&slot->assign_response, &slot->status,
                                    slot);
        break;
      case Slot::Kind::kExposures:
        slot->exposures_reader =
            slot->channel->record->PrepareAsyncRecordExposures(
                slot->context.get(), slot->exposures_request, &cq_);
        slot->exposures_reader->StartCall();
        slot->exposures_reader->Finish(&slot->exposures_response, &slot->status,
                                       slot);
        break;
      case Slot::Kind::kEvents:
        slot->events_reader = slot->channel->record->PrepareAsyncRecordEvents(
            slot->context.get(), slot->events_request, &cq_);
        slot->events_reader->StartCall();
        slot->events_reader->Finish(&slot->events_response, &slot->status,
                                    slot);
        break;
      case Slot::Kind::kResults:
        slot->results_reader = slot->channel->results->PrepareAsyncGetResults(
            slot->context.get(), slot->results_request, &cq_);
        slot->results_reader->StartCall();
        slot->results_reader->Finish(&slot->results_response, &slot->status,
                                     slot);
        break;
    }
  }

  void Complete(Slot* slot, int64_t now) {
    const bool ok = slot->status.ok();
    if (!ok && options_.honour_retry_hint) {
      if (std::optional<absl::Duration> hint = RetryPushback(*slot->context)) {
        slot->retry = true;
        slot->retry_at_ns = now + absl::ToInt64Nanoseconds(*hint);
        if (slot->measured) ++stats_.retry_hints;
      }
    }
    if (slot->retry) {
      // Sent again as it was: whether events follow is decided then.
    } else if (slot->kind == Slot::Kind::kExposures) {
      // Events follow only exposures that were acknowledged.
      slot->events_next = ok && options_.record_events;
    } else if (slot->kind == Slot::Kind::kEvents) {
      slot->events_next = false;
    }
    if (!slot->measured) return;
    ++stats_.requests;
    stats_.latency_ns.Record(now - slot->start_ns);
    stats_.service_ns.Record(now - slot->sent_ns);
    stats_.last_completion_ns = std::max(stats_.last_completion_ns, now);
    if (!ok) {
      Fail(slot->status.error_code(), slot->status.error_message());
      return;
    }
    switch (slot->kind) {
      case Slot::Kind::kAssign: {
        const v1::AssignResponse& r = slot->assign_response;
        if (r.config_version().empty() ||
            (r.assignments_size() == 0 && r.features_size() == 0)) {
          Fail(kEmptyResponse,
               "an Assign response had no config_version, or no assignment "
               "and no feature");
          return;
        }
        ++stats_.ok_calls;
        ++stats_.items;
        stats_.response_bytes += static_cast<int64_t>(r.ByteSizeLong());
        break;
      }
      case Slot::Kind::kResults: {
        const v1::GetResultsResponse& r = slot->results_response;
        if (r.variants_size() == 0) {
          Fail(kEmptyResponse, "a GetResults response had no variant");
          return;
        }
        ++stats_.ok_calls;
        ++stats_.items;
        stats_.response_bytes += static_cast<int64_t>(r.ByteSizeLong());
        break;
      }
      case Slot::Kind::kExposures:
        CountOutcomes(slot->exposures_response.results(),
                      slot->exposures_request.exposures_size(), true,
                      slot->exposures_response.ByteSizeLong());
        break;
      case Slot::Kind::kEvents:
        CountOutcomes(slot->events_response.results(),
                      slot->events_request.events_size(), false,
                      slot->events_response.ByteSizeLong());
        break;
    }
  }

  void CountOutcomes(
      const google::protobuf::RepeatedPtrField<v1::RecordResult>& results,
      int sent, bool exposures, size_t bytes) {
    if (results.size() != sent) {
      Fail(kBadResponse, absl::StrCat("a record response had ", results.size(),
                                      " results for ", sent, " records"));
      return;
    }
    ++stats_.ok_calls;
    stats_.items += sent;
    stats_.response_bytes += static_cast<int64_t>(bytes);
    for (const v1::RecordResult& r : results) {
      const int outcome = r.outcome();
      if (outcome >= 0 && outcome < static_cast<int>(stats_.outcomes.size())) {
        ++stats_.outcomes[outcome];
      }
      if (exposures && outcome == v1::RECORD_OUTCOME_RECORDED) {
        ++stats_.exposures_recorded;
      }
    }
  }

  void Fail(int code, const std::string& message) {
    ++stats_
          .errors[code >= 0 && code < kErrorKinds ? code
                                                  : grpc::StatusCode::UNKNOWN];
    if (stats_.first_error.empty()) {
      stats_.first_error = absl::StrCat(ErrorName(code), ": ", message);
    }
  }

  // Open mode busy-polls for the last stretch before each send.
  static constexpr int64_t kSpinNs = 2'000'000;
  // How long one wait lasts when nothing is due but completions.
  static constexpr int64_t kDrainPollNs = 100'000'000;

  const LoadOptions& options_;
  const RecordTarget& record_;
  const Schedule& schedule_;
  const int id_;
  const std::vector<Slot*> slots_;
  RequestGenerator generator_;
  grpc::CompletionQueue cq_;
  Stats stats_;
};

// CPU time (user + system) this process has used.
double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

std::string Micros(int64_t ns) { return absl::StrFormat("%.1f", ns / 1000.0); }

// Reads the variants and unit id type of the experiment record mode uses.
// Errors are messages for the user.
absl::StatusOr<RecordTarget> DiscoverRecordTarget(
    Channel* channel, const std::string& key, const ChannelSecurity& security) {
  if (key.empty()) {
    return absl::InvalidArgumentError(
        "--record_experiment is empty; name an experiment of the served "
        "config");
  }
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(5));
  security.Apply(&context);
  v1::GetExperimentRequest request;
  request.set_experiment_key(key);
  v1::Experiment experiment;
  grpc::Status status =
      channel->assign->GetExperiment(&context, request, &experiment);
  if (!status.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot read experiment '", key,
        "' with GetExperiment: ", ErrorName(status.error_code()),
        status.error_message().empty() ? "" : " ", status.error_message(),
        "; pass --record_experiment=KEY of an experiment the server serves "
        "(record mode needs abexp-server, not the echo server)"));
  }
  RecordTarget target;
  target.experiment_key = key;
  target.unit_id_type = experiment.unit_id_type();
  for (const v1::ExperimentVariant& v : experiment.variants()) {
    target.variant_keys.push_back(v.key());
  }
  if (target.variant_keys.empty() || target.unit_id_type.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "experiment '", key, "' has no variants or no unit id type"));
  }
  return target;
}

// One channel per --channels, each with its own subchannel pool, connected;
// empty after printing why when one cannot connect within 5 s.
std::vector<std::unique_ptr<Channel>> OpenChannels(const LoadOptions& options) {
  // Channels that differ in an argument, each with its own subchannel pool,
  // never share a connection.
  std::vector<std::unique_ptr<Channel>> channels;
  RunAbslProbesBeforeConnecting();  // client/absl_probes.h says why
  for (int c = 0; c < options.channels; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("abexp.loadgen.channel", c);
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto channel = std::make_unique<Channel>();
    channel->channel = grpc::CreateCustomChannel(
        options.target, options.security.credentials(), args);
    channel->assign = v1::AssignmentService::NewStub(channel->channel);
    channel->record = v1::RecordingService::NewStub(channel->channel);
    channel->results = v1::ResultsService::NewStub(channel->channel);
    channels.push_back(std::move(channel));
  }
  for (auto& channel : channels) {
    if (!channel->channel->WaitForConnected(std::chrono::system_clock::now() +
                                            std::chrono::seconds(5))) {
      std::fprintf(stderr,
                   "abexp-loadgen: cannot connect to %s within 5s; is the "
                   "server running there? (--target=HOST:PORT; for a server "
                   "with TLS, --tls_ca_file and, for mutual TLS, "
                   "--tls_cert_file and --tls_key_file)\n",
                   options.target.c_str());
      return {};
    }
  }
  return channels;
}

// What one run measured, over the measured window.
struct RunTotals {
  Stats stats;
  int64_t window_ns = 1;  // the measured window, at least 1 ns
  double cpu_cores = 0;   // cores the loadgen used in it
  // False when --ready_file was given and could not be created.
  bool ready_file_written = true;
};

// Set by SIGINT and SIGTERM: end the run now.
std::atomic<bool> stop_requested{false};

void RequestStop(int) { stop_requested.store(true); }

// SIGINT and SIGTERM end the run early instead of killing the process; a
// second one kills it as usual.
void StopOnSignals() {
  struct sigaction action {};
  action.sa_handler = RequestStop;
  action.sa_flags = SA_RESETHAND;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

// Sleeps until `until_ns`, or until every worker has finished (--max_calls),
// or until a stop is requested, which brings the schedule's end forward to
// now.
void WaitForEnd(Schedule* schedule, int64_t until_ns,
                const std::atomic<int>& running) {
  constexpr int64_t kPollNs = 20'000'000;
  for (;;) {
    const int64_t now = NowNanos();
    if (stop_requested.load()) {
      if (now < schedule->end_ns) schedule->end_ns = now;
      return;
    }
    if (now >= until_ns || running.load() == 0) return;
    absl::SleepFor(absl::Nanoseconds(std::min(until_ns - now, kPollNs)));
  }
}

// Creates `path` (empty); false after saying why when it cannot.
bool TouchFile(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr || std::fclose(f) != 0) {
    std::fprintf(stderr, "abexp-loadgen: cannot create --ready_file=%s\n",
                 path.c_str());
    return false;
  }
  return true;
}

// Spreads --inflight call slots over the channels and the poller threads,
// runs the workers through warmup and the measured window, and merges what
// they saw.
RunTotals RunWorkers(const LoadOptions& options, const RecordTarget& record,
                     const std::vector<std::unique_ptr<Channel>>& channels) {
  RunTotals totals;
  std::vector<std::unique_ptr<Slot>> slots;
  std::vector<std::vector<Slot*>> slots_of_thread(options.threads);
  for (int s = 0; s < options.inflight; ++s) {
    auto slot = std::make_unique<Slot>();
    const int c = s % options.channels;
    slot->channel = channels[c].get();
    slots_of_thread[c % options.threads].push_back(slot.get());
    slots.push_back(std::move(slot));
  }

  // Record mode makes unit ids and keys unique to this run.
  const uint64_t nonce =
      options.call == CallKind::kRecord
          ? Mix(static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())) ^
                static_cast<uint64_t>(getpid()))
          : 0;
  std::atomic<int64_t> calls_sent{0};
  Schedule schedule;
  schedule.calls_sent = &calls_sent;
  schedule.start_ns = NowNanos();
  schedule.measure_ns =
      schedule.start_ns + absl::ToInt64Nanoseconds(options.warmup);
  schedule.end_ns =
      schedule.measure_ns + absl::ToInt64Nanoseconds(options.duration);
  std::vector<std::unique_ptr<Worker>> workers;
  for (int t = 0; t < options.threads; ++t) {
    workers.push_back(std::make_unique<Worker>(options, record, schedule, t,
                                               nonce, slots_of_thread[t]));
  }
  std::atomic<int> running{options.threads};
  std::vector<std::thread> threads;
  for (auto& w : workers) {
    threads.emplace_back([&w, &running] {
      w->Run();
      --running;
    });
  }
  WaitForEnd(&schedule, schedule.measure_ns, running);
  if (!options.ready_file.empty()) {
    totals.ready_file_written = TouchFile(options.ready_file);
  }
  const double cpu_start = CpuSeconds();
  const int64_t cpu_start_ns = NowNanos();
  // With --max_calls the run ends when the last call answers, which may be
  // long before --duration is over.
  WaitForEnd(&schedule, schedule.end_ns, running);
  for (std::thread& t : threads) t.join();
  const double cpu_used = CpuSeconds() - cpu_start;
  const double cpu_seconds =
      std::max<int64_t>(1, NowNanos() - cpu_start_ns) / 1e9;

  for (auto& w : workers) totals.stats.Merge(w->stats());
  const Stats& total = totals.stats;
  totals.window_ns = std::max<int64_t>(
      1, (options.max_calls > 0
              ? total.last_completion_ns
              : std::max(total.last_completion_ns, schedule.end_ns.load())) -
             schedule.measure_ns);
  totals.cpu_cores = cpu_used / cpu_seconds;
  return totals;
}

// The figures both reports print, derived once from the totals.
struct Figures {
  std::string call_name;
  std::string mode_name;
  double seconds = 0;
  double qps = 0;
  double items_per_s = 0;
  int64_t errors = 0;
  int64_t unexpected_errors = 0;  // errors whose code --allowed_errors lacks
  double mean_bytes = 0;
  std::vector<std::string> error_parts;  // "UNAVAILABLE 3"
  std::vector<std::string> error_json;   // "\"UNAVAILABLE\":3"
};

Figures FiguresOf(const LoadOptions& options, const RunTotals& totals) {
  const Stats& total = totals.stats;
  Figures f;
  f.call_name = options.call == CallKind::kAssign   ? "assign"
                : options.call == CallKind::kRecord ? "record"
                                                    : "results";
  f.mode_name = options.mode == Mode::kClosed ? "closed" : "open";
  f.seconds = totals.window_ns / 1e9;
  f.qps = total.requests / f.seconds;
  f.items_per_s = total.items / f.seconds;
  f.errors = total.error_count();
  f.mean_bytes =
      total.ok_calls == 0 ? 0 : double(total.response_bytes) / total.ok_calls;
  for (int code = 1; code < kErrorKinds; ++code) {
    if (total.errors[code] == 0) continue;
    if (!options.allowed_errors[code]) {
      f.unexpected_errors += total.errors[code];
    }
    f.error_parts.push_back(
        absl::StrCat(ErrorName(code), " ", total.errors[code]));
    f.error_json.push_back(
        absl::StrFormat("\"%s\":%d", ErrorName(code), total.errors[code]));
  }
  return f;
}

// The human summary, on stderr.
void PrintSummary(const LoadOptions& options, const RunTotals& totals,
                  const Figures& f) {
  const Stats& total = totals.stats;
  const Histogram& h = total.latency_ns;
  std::string summary = absl::StrFormat(
      "abexp-loadgen: %s %s-loop against %s, %d channels, %d in flight, "
      "%d poller thread(s)%s; %s measured after %s warmup\n"
      "  requests %d  qps %.1f  items/s %.1f  errors %d%s\n"
      "  latency us: p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  mean %.1f\n"
      "  responses %.0f bytes on average; the loadgen used %.2f cores\n",
      f.call_name, f.mode_name, options.target, options.channels,
      options.inflight, options.threads,
      options.mode == Mode::kOpen
          ? absl::StrFormat(", %.0f calls/s scheduled", options.rate)
          : "",
      absl::FormatDuration(options.duration),
      absl::FormatDuration(options.warmup), total.requests, f.qps,
      f.items_per_s, f.errors,
      f.error_parts.empty()
          ? ""
          : absl::StrCat(" (", absl::StrJoin(f.error_parts, ", "), ")"),
      Micros(h.ValueAtPercentile(50)), Micros(h.ValueAtPercentile(90)),
      Micros(h.ValueAtPercentile(99)), Micros(h.ValueAtPercentile(99.9)),
      Micros(h.max()), h.mean() / 1000, f.mean_bytes, totals.cpu_cores);
  if (options.mode == Mode::kOpen) {
    const Histogram& service = total.service_ns;
    absl::StrAppendFormat(
        &summary,
        "  late sends (> %s after schedule): %d\n"
        "  from the actual send, us: p50 %s  p99 %s  p99.9 %s\n",
        absl::FormatDuration(options.late_after), total.late_sends,
        Micros(service.ValueAtPercentile(50)),
        Micros(service.ValueAtPercentile(99)),
        Micros(service.ValueAtPercentile(99.9)));
  }
  if (options.call == CallKind::kRecord) {
    const auto& o = total.outcomes;
    absl::StrAppendFormat(
        &summary,
        "  record outcomes: recorded %d (exposures %d), duplicate %d, "
        "ignored %d, conflict %d, spooled %d\n",
        o[v1::RECORD_OUTCOME_RECORDED], total.exposures_recorded,
        o[v1::RECORD_OUTCOME_DUPLICATE], o[v1::RECORD_OUTCOME_IGNORED],
        o[v1::RECORD_OUTCOME_CONFLICT], o[v1::RECORD_OUTCOME_SPOOLED]);
    if (o[v1::RECORD_OUTCOME_SPOOLED] > 0) {
      absl::StrAppendFormat(
          &summary,
          "  warning: %d records were SPOOLED: Redis was down or did not keep "
          "up, so items/s measures the server's spool, not Redis\n",
          o[v1::RECORD_OUTCOME_SPOOLED]);
    }
  }
  if (f.errors > f.unexpected_errors) {
    absl::StrAppendFormat(&summary,
                          "  %d of the errors have a code --allowed_errors "
                          "names\n",
                          f.errors - f.unexpected_errors);
  }
  if (!total.first_error.empty()) {
    absl::StrAppend(&summary, "  first error: ", total.first_error, "\n");
  }
  std::fputs(summary.c_str(), stderr);
}

// The --json line, on stdout.
void PrintJson(const LoadOptions& options, const RunTotals& totals,
               const Figures& f) {
  const Stats& total = totals.stats;
  const Histogram& h = total.latency_ns;
  const auto& o = total.outcomes;
  std::printf(
      "{\"call\":\"%s\",\"mode\":\"%s\",\"target\":\"%s\","
      "\"channels\":%d,\"inflight\":%d,\"threads\":%d,\"rate\":%.1f,"
      "\"duration_s\":%.3f,\"requests\":%lld,\"qps\":%.1f,"
      "\"items\":%lld,\"items_per_s\":%.1f,"
      "\"p50_us\":%s,\"p90_us\":%s,\"p99_us\":%s,\"p999_us\":%s,"
      "\"max_us\":%s,\"mean_us\":%.1f,"
      "\"service_p50_us\":%s,\"service_p99_us\":%s,\"service_p999_us\":%s,"
      "\"errors\":%lld,\"unexpected_errors\":%lld,"
      "\"errors_by_code\":{%s},\"late_sends\":%lld,\"retry_hints\":%lld,"
      "\"response_bytes\":%.0f,\"loadgen_cpu\":%.2f,"
      "\"recorded\":%lld,\"exposures_recorded\":%lld,\"duplicate\":%lld,"
      "\"ignored\":%lld,\"conflict\":%lld,\"spooled\":%lld}\n",
      f.call_name.c_str(), f.mode_name.c_str(), options.target.c_str(),
      options.channels, options.inflight, options.threads, options.rate,
      f.seconds, static_cast<long long>(total.requests), f.qps,
      static_cast<long long>(total.items), f.items_per_s,
      Micros(h.ValueAtPercentile(50)).c_str(),
      Micros(h.ValueAtPercentile(90)).c_str(),
      Micros(h.ValueAtPercentile(99)).c_str(),
      Micros(h.ValueAtPercentile(99.9)).c_str(), Micros(h.max()).c_str(),
      h.mean() / 1000, Micros(total.service_ns.ValueAtPercentile(50)).c_str(),
      Micros(total.service_ns.ValueAtPercentile(99)).c_str(),
      Micros(total.service_ns.ValueAtPercentile(99.9)).c_str(),
      static_cast<long long>(f.errors),
      static_cast<long long>(f.unexpected_errors),
      absl::StrJoin(f.error_json, ",").c_str(),
      static_cast<long long>(total.late_sends),
      static_cast<long long>(total.retry_hints), f.mean_bytes, totals.cpu_cores,
      static_cast<long long>(o[v1::RECORD_OUTCOME_RECORDED]),
      static_cast<long long>(total.exposures_recorded),
      static_cast<long long>(o[v1::RECORD_OUTCOME_DUPLICATE]),
      static_cast<long long>(o[v1::RECORD_OUTCOME_IGNORED]),
      static_cast<long long>(o[v1::RECORD_OUTCOME_CONFLICT]),
      static_cast<long long>(o[v1::RECORD_OUTCOME_SPOOLED]));
  std::fflush(stdout);
}

int Run(const LoadOptions& options) {
  std::vector<std::unique_ptr<Channel>> channels = OpenChannels(options);
  if (channels.empty()) return 1;
  RecordTarget record;
  if (options.call == CallKind::kRecord) {
    absl::StatusOr<RecordTarget> found = DiscoverRecordTarget(
        channels[0].get(), options.record_experiment, options.security);
    if (!found.ok()) {
      std::fprintf(stderr, "abexp-loadgen: %s\n",
                   std::string(found.status().message()).c_str());
      return 1;
    }
    record = *std::move(found);
  }

  StopOnSignals();
  const RunTotals totals = RunWorkers(options, record, channels);
  const Figures figures = FiguresOf(options, totals);
  PrintSummary(options, totals, figures);
  if (options.json) PrintJson(options, totals, figures);
  if (totals.stats.requests == 0) {
    std::fprintf(stderr,
                 "abexp-loadgen: no call completed in the measured window\n");
    return 1;
  }
  if (!totals.ready_file_written) return 1;
  return figures.unexpected_errors > 0 && !options.allow_errors ? 1 : 0;
}

// Reads the flags into *options; on a bad flag returns a message saying how
// to fix it.
std::string ParseOptions(LoadOptions* options) {
  options->target = absl::GetFlag(FLAGS_target);
  const std::string call = absl::GetFlag(FLAGS_call);
  if (call == "assign") {
    options->call = CallKind::kAssign;
  } else if (call == "record") {
    options->call = CallKind::kRecord;
  } else if (call == "results") {
    options->call = CallKind::kResults;
  } else {
    return absl::StrCat("--call=", call,
                        " is not a call; use assign, record or results");
  }
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (mode == "closed") {
    options->mode = Mode::kClosed;
  } else if (mode == "open") {
    options->mode = Mode::kOpen;
  } else {
    return absl::StrCat("--mode=", mode, " is not a mode; use closed or open");
  }
  options->rate = absl::GetFlag(FLAGS_rate);
  if (options->mode == Mode::kOpen && !(options->rate > 0)) {
    return "--mode=open needs --rate=QPS, the calls per second to send";
  }
  options->channels = absl::GetFlag(FLAGS_channels);
  options->inflight = absl::GetFlag(FLAGS_inflight);
  options->threads = absl::GetFlag(FLAGS_threads);
  if (options->channels < 1 || options->inflight < options->channels ||
      options->threads < 1 || options->threads > options->channels) {
    return "need --channels >= 1, --inflight >= --channels (every channel "
           "carries calls) and 1 <= --threads <= --channels";
  }
  options->duration = absl::GetFlag(FLAGS_duration);
  options->warmup = absl::GetFlag(FLAGS_warmup);
  options->timeout = absl::GetFlag(FLAGS_timeout);
  options->late_after = absl::GetFlag(FLAGS_late_after);
  if (options->duration <= absl::ZeroDuration() ||
      options->warmup < absl::ZeroDuration() ||
      options->timeout <= absl::ZeroDuration() ||
      options->late_after < absl::ZeroDuration()) {
    return "--duration and --timeout must be positive, --warmup and "
           "--late_after 0 or more (e.g. --duration=10s --warmup=2s)";
  }
  options->seed = absl::GetFlag(FLAGS_seed);
  options->experiments = absl::GetFlag(FLAGS_experiments);
  options->features = absl::GetFlag(FLAGS_features);
  options->batch = absl::GetFlag(FLAGS_batch);
  if (options->batch < 1 || options->batch > 50000) {
    return "--batch must be 1 to 50000 records per call (the server's limit)";
  }
  options->record_experiment = absl::GetFlag(FLAGS_record_experiment);
  options->record_event = absl::GetFlag(FLAGS_record_event);
  options->record_events = absl::GetFlag(FLAGS_record_events);
  options->results_experiment = absl::GetFlag(FLAGS_results_experiment);
  options->max_calls = absl::GetFlag(FLAGS_max_calls);
  if (options->max_calls < 0 ||
      (options->max_calls > 0 && options->mode != Mode::kClosed)) {
    return "--max_calls must be 0 (no limit) or, in closed mode, a positive "
           "number of calls";
  }
  options->json = absl::GetFlag(FLAGS_json);
  options->allow_errors = absl::GetFlag(FLAGS_allow_errors);
  options->allowed_errors.assign(kErrorKinds, false);
  for (const std::string& name : absl::GetFlag(FLAGS_allowed_errors)) {
    int code = 1;
    while (code < kErrorKinds && ErrorName(code) != name) ++code;
    if (code == kErrorKinds) {
      std::vector<std::string> names;
      for (int c = 1; c < kErrorKinds; ++c) names.push_back(ErrorName(c));
      return absl::StrCat("--allowed_errors: '", name,
                          "' is not an error code; use names from ",
                          absl::StrJoin(names, ", "));
    }
    options->allowed_errors[code] = true;
  }
  options->ready_file = absl::GetFlag(FLAGS_ready_file);
  options->honour_retry_hint = absl::GetFlag(FLAGS_honour_retry_hint);
  if (options->honour_retry_hint && options->mode != Mode::kClosed) {
    return "--honour_retry_hint needs --mode=closed (an open loop sends on "
           "its schedule whatever the server says)";
  }
  SecurityOptions security;
  security.tls_ca_file = absl::GetFlag(FLAGS_tls_ca_file);
  security.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  security.tls_key_file = absl::GetFlag(FLAGS_tls_key_file);
  security.tls = absl::GetFlag(FLAGS_tls);
  security.token = absl::GetFlag(FLAGS_token);
  absl::StatusOr<ChannelSecurity> resolved = ResolveSecurity(security, "--");
  if (!resolved.ok()) return std::string(resolved.status().message());
  options->security = *std::move(resolved);
  if (options->call == CallKind::kRecord && options->record_event.empty()) {
    return "--record_event is empty; name an event a metric of "
           "--record_experiment uses, e.g. order_completed";
  }
  return "";
}

}  // namespace
}  // namespace abexp::bench

int main(int argc, char** argv) {
  // --help lists this file's flags (absl's default looks for main.cc).
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "bench/loadgen.cc");
  };
  absl::SetFlagsUsageConfig(usage);
  absl::SetProgramUsageMessage(
      "Loads an abexp-server (or abexp-echo-server) over gRPC and reports "
      "throughput and latency percentiles.\n"
      "Usage: abexp-loadgen --target=HOST:PORT [--call=assign|record|results] "
      "[--mode=closed|open --rate=QPS] [--channels=4] [--inflight=32] "
      "[--duration=10s] [--warmup=2s] [--json]\n"
      "With --json, stdout gets one JSON object with the keys: call, mode, "
      "target, channels, inflight, threads, rate, duration_s (measured "
      "window: warmup excluded, until the last measured call answered), "
      "requests (calls sent in the window), qps, items and items_per_s "
      "(units assigned, records sent, or results read, in successful calls), "
      "p50_us, "
      "p90_us, p99_us, p999_us, max_us, mean_us (latency in microseconds; "
      "percentiles within 0.8% of the truth, never below it; from the "
      "scheduled send time in open mode), service_p50_us, service_p99_us, "
      "service_p999_us (from the actual send time), errors, "
      "unexpected_errors (errors whose code --allowed_errors does not name), "
      "errors_by_code ({\"UNAVAILABLE\": n, ...}), late_sends (open mode), "
      "retry_hints (refused calls sent again after their retry hint, "
      "--honour_retry_hint), "
      "response_bytes (mean serialized size), loadgen_cpu (cores this "
      "process used while measuring: near the cores it may use, it is the "
      "bottleneck), and for --call=record the outcome counts recorded, "
      "exposures_recorded, duplicate, ignored, conflict and spooled "
      "(spooled: Redis was down or slow, the server kept the records in its "
      "spool). SIGINT or SIGTERM ends the run early and reports it. "
      "Exit status: 0 ok, 1 failed calls (unless --allow_errors, or their "
      "codes are all --allowed_errors), the target unreachable or an unknown "
      "flag, 2 a flag value out of range.");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() > 1) {
    std::fprintf(stderr,
                 "abexp-loadgen: unexpected argument '%s'; flags are written "
                 "--name=value (see --help)\n",
                 args[1]);
    return 2;
  }
  abexp::bench::LoadOptions options;
  std::string problem = abexp::bench::ParseOptions(&options);
  if (!problem.empty()) {
    std::fprintf(stderr, "abexp-loadgen: %s\n", problem.c_str());
    return 2;
  }
  return abexp::bench::Run(options);
}
