// Durability: exposures and events stream into a real abexp-server backed by
// a real redis-server (AOF, appendfsync always) while either process is
// SIGKILLed and restarted. Clients retry every call until it is acknowledged,
// with the same client idempotency keys, so every acknowledged item must count
// exactly once: the final aggregates, read straight from Redis, must equal
// those computed here from the generated inputs.
//
// Values are multiples of 0.25 and the expected figures are computed in
// integers (quarters, sixteenths), so every sum compares exactly.
#include <signal.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "abexp/v1/recording.grpc.pb.h"
#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/core/event_store.h"
#include "server/testing/recording_test_util.h"

namespace abexp {
namespace {

using ::abexp::testing::Eventually;
using ::abexp::testing::FigureDiffs;
using ::abexp::testing::MetricOf;
using ::abexp::testing::RecordingServerTest;
using ::abexp::testing::SetDeadline;
using ::abexp::testing::ToProto;
using ::abexp::testing::User;

// One event feeds all three metrics' kinds: order_completed converts
// (binomial), adds revenue (sum) and the ratio's numerator; page_viewed only
// adds to the ratio's denominator.
constexpr char kConfig[] = R"yaml(
metrics:
  - key: order_conversion
    type: binomial
    event: order_completed
  - key: revenue
    type: sum
    event: order_completed
    aggregate: value
  - key: revenue_per_view
    type: ratio
    numerator: {event: order_completed, aggregate: value}
    denominator: {event: page_viewed, aggregate: count}

experiments:
  - key: checkout
    status: running
    variants:
      - {key: control, weight: 50}
      - {key: treatment, weight: 50}
    metrics: [order_conversion, revenue, revenue_per_view]
    primary_metric: order_conversion
)yaml";

constexpr int kUnits = 20000;
constexpr int kEvents = 100000;
constexpr int kBatch = 1000;
constexpr int kSenders = 2;
const char* const kVariants[] = {"control", "treatment"};

// One generated event, before it becomes a proto.
struct GeneratedEvent {
  int unit = 0;
  bool order = false;    // order_completed, else page_viewed
  int64_t quarters = 0;  // an order's value in units of 0.25
};

// The figures of one variant, exact: sums of values in quarters, sums of
// squared values in sixteenths.
struct ExpectedVariant {
  int64_t exposed = 0;
  int64_t converted = 0;  // order_conversion: units, Σx and Σx²
  int64_t revenue_units = 0;
  int64_t revenue_q = 0;     // Σx, quarters
  int64_t revenue_sq16 = 0;  // Σx², sixteenths
  int64_t ratio_units = 0;
  int64_t num_q = 0;      // Σn, quarters
  int64_t den = 0;        // Σd
  int64_t num_sq16 = 0;   // Σn², sixteenths
  int64_t den_sq = 0;     // Σd²
  int64_t num_den_q = 0;  // Σn·d, quarters
};

// The inputs of a stream, generated from a fixed seed, as request batches,
// and the aggregates they must produce, computed from per-unit totals.
struct Workload {
  std::vector<v1::RecordExposuresRequest> exposure_batches;
  std::vector<v1::RecordEventsRequest> event_batches;
  ExpectedVariant expected[2];
};

Workload Generate() {
  std::mt19937_64 rng(20261130);
  // Exposed an hour ago; the events follow within the 14-day window and
  // never in the future.
  const absl::Time exposed_at = absl::Now() - absl::Hours(1);
  std::vector<int> variant(kUnits);
  for (int& v : variant) v = static_cast<int>(rng() % 2);
  std::vector<GeneratedEvent> events(kEvents);
  for (GeneratedEvent& e : events) {
    e.unit = static_cast<int>(rng() % kUnits);
    e.order = rng() % 5 < 3;
    e.quarters = e.order ? 1 + static_cast<int64_t>(rng() % 400) : 0;
  }

  Workload w;
  for (int u = 0; u < kUnits; ++u) {
    if (u % kBatch == 0) w.exposure_batches.emplace_back();
    v1::ExposureRecord* x = w.exposure_batches.back().add_exposures();
    x->set_experiment_key("checkout");
    *x->mutable_unit() = User(absl::StrCat("user-", u));
    x->set_variant_key(kVariants[variant[u]]);
    *x->mutable_time() = ToProto(exposed_at);
    x->set_idempotency_key(absl::StrCat("exposure-", u));
  }
  for (int i = 0; i < kEvents; ++i) {
    if (i % kBatch == 0) w.event_batches.emplace_back();
    const GeneratedEvent& e = events[i];
    v1::EventRecord* ev = w.event_batches.back().add_events();
    *ev->mutable_unit() = User(absl::StrCat("user-", e.unit));
    if (e.order) {
      ev->set_name("order_completed");
      ev->set_value(static_cast<double>(e.quarters) / 4);
    } else {
      ev->set_name("page_viewed");
    }
    *ev->mutable_time() =
        ToProto(exposed_at + absl::Seconds(1) + absl::Milliseconds(10 * i));
    ev->set_idempotency_key(absl::StrCat("event-", i));
  }

  // Per-unit totals, then the per-variant sums over units.
  std::vector<int64_t> orders(kUnits), order_q(kUnits), views(kUnits);
  for (const GeneratedEvent& e : events) {
    if (e.order) {
      ++orders[e.unit];
      order_q[e.unit] += e.quarters;
    } else {
      ++views[e.unit];
    }
  }
  for (int u = 0; u < kUnits; ++u) {
    ExpectedVariant& x = w.expected[variant[u]];
    ++x.exposed;
    if (orders[u] > 0) {
      ++x.converted;
      ++x.revenue_units;
      x.revenue_q += order_q[u];
      x.revenue_sq16 += order_q[u] * order_q[u];
    }
    if (orders[u] > 0 || views[u] > 0) {
      ++x.ratio_units;
      x.num_q += order_q[u];
      x.den += views[u];
      x.num_sq16 += order_q[u] * order_q[u];
      x.den_sq += views[u] * views[u];
      x.num_den_q += order_q[u] * views[u];
    }
  }
  return w;
}

// Notes every figure of `got` (two variants) that differs from `want`.
void Compare(const ExperimentAggregates& got, const ExpectedVariant (&want)[2],
             const std::string& config_version, FigureDiffs* diffs) {
  diffs->Check("multi_exposed", got.multi_exposed, 0);
  auto cv = got.config_versions.find(config_version);
  diffs->Check("exposures under the config version",
               cv == got.config_versions.end() ? 0 : cv->second, kUnits);
  for (int v = 0; v < 2; ++v) {
    const VariantAggregate& g = got.variants[v];
    const ExpectedVariant& e = want[v];
    const std::string name = kVariants[v];
    diffs->Check(name + " exposed", g.exposed, e.exposed);
    const MetricAggregate conv = MetricOf(g, "order_conversion");
    diffs->Check(name + " order_conversion.units", conv.units, e.converted);
    diffs->Check(name + " order_conversion.sum", conv.sum, e.converted);
    diffs->Check(name + " order_conversion.sum_sq", conv.sum_sq, e.converted);
    const MetricAggregate rev = MetricOf(g, "revenue");
    diffs->Check(name + " revenue.units", rev.units, e.revenue_units);
    diffs->Check(name + " revenue.sum", rev.sum, e.revenue_q / 4.0L);
    diffs->Check(name + " revenue.sum_sq", rev.sum_sq, e.revenue_sq16 / 16.0L);
    const MetricAggregate ratio = MetricOf(g, "revenue_per_view");
    diffs->Check(name + " revenue_per_view.units", ratio.units, e.ratio_units);
    diffs->Check(name + " revenue_per_view.sum_num", ratio.sum_num,
                 e.num_q / 4.0L);
    diffs->Check(name + " revenue_per_view.sum_den", ratio.sum_den, e.den);
    diffs->Check(name + " revenue_per_view.sum_num_sq", ratio.sum_num_sq,
                 e.num_sq16 / 16.0L);
    diffs->Check(name + " revenue_per_view.sum_den_sq", ratio.sum_den_sq,
                 e.den_sq);
    diffs->Check(name + " revenue_per_view.sum_num_den", ratio.sum_num_den,
                 e.num_den_q / 4.0L);
  }
}

// What the clients saw, for failure messages.
class Tally {
 public:
  void Acknowledged(int failed_attempts, int64_t spooled_items) {
    absl::MutexLock lock(&mu_);
    ++acknowledged_;
    if (failed_attempts > 0) ++retried_calls_;
    failed_attempts_ += failed_attempts;
    spooled_items_ += spooled_items;
  }
  void Failed(const grpc::Status& status) {
    absl::MutexLock lock(&mu_);
    ++errors_[status.error_code()];
    last_error_ = status.error_message();
  }
  void Unexpected(const std::string& what) {
    absl::MutexLock lock(&mu_);
    if (unexpected_.size() < 10) unexpected_.push_back(what);
  }
  bool HasUnexpected() const {
    absl::MutexLock lock(&mu_);
    return !unexpected_.empty();
  }
  // Whether any call saw a crash: it failed and was retried, or the server
  // acknowledged items it had not applied yet (spooled).
  bool SawCrashes() const {
    absl::MutexLock lock(&mu_);
    return retried_calls_ > 0 || spooled_items_ > 0;
  }

  std::string Summary() const {
    absl::MutexLock lock(&mu_);
    std::string s = absl::StrCat(acknowledged_, " calls acknowledged, ",
                                 retried_calls_, " of them after retries (",
                                 failed_attempts_, " failed attempts:");
    for (const auto& [code, n] : errors_) {
      absl::StrAppend(
          &s, " ",
          absl::StatusCodeToString(static_cast<absl::StatusCode>(code)), " x",
          n);
    }
    absl::StrAppend(&s, "; last error: ", last_error_, "); ", spooled_items_,
                    " items acknowledged as spooled");
    if (!unexpected_.empty()) {
      absl::StrAppend(
          &s, "; unexpected outcomes: ", absl::StrJoin(unexpected_, "; "));
    }
    return s;
  }

 private:
  mutable absl::Mutex mu_;
  int64_t acknowledged_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t retried_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t failed_attempts_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t spooled_items_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<int, int64_t> errors_ ABSL_GUARDED_BY(mu_);
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> unexpected_ ABSL_GUARDED_BY(mu_);
};

// Errors a client retries with the same idempotency keys: the server or
// Redis is down, slow or restarting, or the spool is full.
bool Retryable(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::CANCELLED:
      return true;
    default:
      return false;
  }
}

// A client of the recording service that retries each call until it is
// acknowledged. Thread-compatible: one per sending thread.
class RetryingClient {
 public:
  RetryingClient(const std::string& address, Tally* tally) : tally_(tally) {
    // Reconnect quickly once a killed server is back (gRPC's default backoff
    // grows to minutes).
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    stub_ = v1::RecordingService::NewStub(grpc::CreateCustomChannel(
        address, grpc::InsecureChannelCredentials(), args));
  }

  absl::Status Send(const v1::RecordExposuresRequest& request) {
    return SendUntilAcknowledged(
        &v1::RecordingService::Stub::RecordExposures, request,
        [&](const v1::RecordExposuresResponse& r) {
          return CheckOutcomes(r.results(), request.exposures_size(),
                               "exposure");
        });
  }

  absl::Status Send(const v1::RecordEventsRequest& request) {
    return SendUntilAcknowledged(
        &v1::RecordingService::Stub::RecordEvents, request,
        [&](const v1::RecordEventsResponse& r) {
          return CheckOutcomes(r.results(), request.events_size(), "event");
        });
  }

 private:
  // `check(response)` vets an acknowledged response and returns how many
  // of its items were spooled.
  template <typename Request, typename Response, typename Check>
  absl::Status SendUntilAcknowledged(
      grpc::Status (v1::RecordingService::Stub::*method)(grpc::ClientContext*,
                                                         const Request&,
                                                         Response*),
      const Request& request, const Check& check) {
    // Far beyond any outage these tests cause; only a broken recovery
    // gets here.
    const absl::Time give_up = absl::Now() + absl::Seconds(90);
    for (int failed = 0;; ++failed) {
      grpc::ClientContext context;
      SetDeadline(&context, absl::Seconds(20));
      Response response;
      grpc::Status status =
          (stub_.get()->*method)(&context, request, &response);
      if (status.ok()) {
        tally_->Acknowledged(failed, check(response));
        return absl::OkStatus();
      }
      tally_->Failed(status);
      if (!Retryable(status.error_code()) || absl::Now() > give_up) {
        return absl::Status(
            static_cast<absl::StatusCode>(status.error_code()),
            absl::StrCat("call not acknowledged after ", failed + 1,
                         " attempts: ", status.error_message()));
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
  }

  // Every item of an acknowledged call is counted now (RECORDED), was
  // counted by an earlier attempt (DUPLICATE) or waits in the server's spool
  // (SPOOLED; returns how many). None may be ignored or conflict: each unit
  // was exposed once, before its events.
  template <typename Results>
  int64_t CheckOutcomes(const Results& results, int items, const char* kind) {
    if (results.size() != items) {
      tally_->Unexpected(
          absl::StrCat(results.size(), " results for ", items, " ", kind, "s"));
      return 0;
    }
    int64_t spooled = 0;
    for (int i = 0; i < results.size(); ++i) {
      const v1::RecordOutcome outcome = results[i].outcome();
      if (outcome == v1::RECORD_OUTCOME_SPOOLED) {
        ++spooled;
      } else if (outcome != v1::RECORD_OUTCOME_RECORDED &&
                 outcome != v1::RECORD_OUTCOME_DUPLICATE) {
        tally_->Unexpected(absl::StrCat(
            kind, " ", i, ": ", v1::RecordOutcome_Name(outcome), " ",
            v1::IgnoreReason_Name(results[i].ignore_reason())));
      }
    }
    return spooled;
  }

  Tally* const tally_;
  std::unique_ptr<v1::RecordingService::Stub> stub_;
};

// A crash injected while the events stream.
enum class Crash {
  kRedis,   // SIGKILL redis-server, restart it a second later
  kServer,  // SIGKILL abexp-server, restart it on the same port
  // SIGKILL Redis, then abexp-server while Redis is down (what the server
  // acknowledged meanwhile exists only in its spool), restart the server,
  // then Redis.
  kServerDuringRedisOutage,
};

const char* CrashName(Crash crash) {
  switch (crash) {
    case Crash::kRedis:
      return "redis";
    case Crash::kServer:
      return "server";
    case Crash::kServerDuringRedisOutage:
      return "server during a Redis outage";
  }
  return "?";
}

class DurabilityTest : public RecordingServerTest {
 protected:
  DurabilityTest() : RecordingServerTest(kConfig, "durability") {
    redis_options_.appendfsync = "always";
  }

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(RecordingServerTest::SetUp());
    // The same spool dir across restarts, so what a killed server spooled
    // is replayed by the next one.
    ASSERT_NO_FATAL_FAILURE(
        StartServer({absl::StrCat("--spool_dir=", dir_.path(), "/spool")}));
  }

  // Records the workload's exposures, then streams its events from
  // kSenders threads while another thread injects `crashes`, spread over
  // the stream. Each call is retried until acknowledged. Then waits until
  // the aggregates in Redis equal the expected ones and stay so.
  void StreamWithCrashes(const std::vector<Crash>& crashes) {
    const absl::Time started = absl::Now();
    const Workload w = Generate();
    Tally tally;

    RetryingClient exposer(server_->address(), &tally);
    for (const v1::RecordExposuresRequest& batch : w.exposure_batches) {
      absl::Status s = exposer.Send(batch);
      ASSERT_TRUE(s.ok()) << s << "\n" << tally.Summary();
    }

    const int batches = static_cast<int>(w.event_batches.size());
    // Crash k happens once threshold[k] batches are acknowledged, and no
    // batch from threshold[k] + kLag on is sent before it: with a spool,
    // calls keep succeeding during an outage and could otherwise outrun the
    // crashes.
    constexpr int kLag = 10;
    std::vector<int> threshold;
    for (size_t k = 0; k < crashes.size(); ++k) {
      threshold.push_back(
          static_cast<int>((k + 1) * batches / (crashes.size() + 1)));
    }
    absl::Mutex mu;
    int acknowledged = 0;  // event batches
    int crashed = 0;       // crashes injected so far
    bool stop = false;     // a sender gave up, or all are done
    std::vector<absl::Status> sender_errors(kSenders);
    absl::Status crash_error;

    std::vector<std::thread> senders;
    for (int t = 0; t < kSenders; ++t) {
      senders.emplace_back([&, t] {
        RetryingClient client(server_->address(), &tally);
        for (int b = t; b < batches; b += kSenders) {
          {
            absl::MutexLock lock(&mu);
            auto may_send = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
              return stop || crashed >= static_cast<int>(crashes.size()) ||
                     b < threshold[crashed] + kLag;
            };
            mu.Await(absl::Condition(&may_send));
            if (stop) return;
          }
          absl::Status s = client.Send(w.event_batches[b]);
          absl::MutexLock lock(&mu);
          if (!s.ok()) {
            sender_errors[t] = absl::Status(
                s.code(), absl::StrCat("event batch ", b, ": ", s.message()));
            stop = true;
            return;
          }
          ++acknowledged;
        }
      });
    }

    std::thread crasher([&] {
      for (size_t k = 0; k < crashes.size(); ++k) {
        {
          absl::MutexLock lock(&mu);
          auto due = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
            return stop || acknowledged >= threshold[k];
          };
          mu.Await(absl::Condition(&due));
          if (stop) return;
        }
        absl::Status s = Inject(crashes[k], [&] {
          absl::MutexLock lock(&mu);
          ++crashed;
        });
        if (!s.ok()) {
          absl::MutexLock lock(&mu);
          crash_error = absl::Status(
              s.code(), absl::StrCat("crash ", k, " (", CrashName(crashes[k]),
                                     "): ", s.message()));
          stop = true;
          return;
        }
      }
    });

    for (std::thread& t : senders) t.join();
    {
      absl::MutexLock lock(&mu);
      stop = true;
    }
    crasher.join();
    ASSERT_TRUE(crash_error.ok())
        << crash_error << "\n"
        << tally.Summary() << "\n--- abexp-server stderr ---\n"
        << server_->Stderr();
    for (const absl::Status& s : sender_errors) {
      ASSERT_TRUE(s.ok()) << s << "\n"
                          << tally.Summary()
                          << "\n--- abexp-server stderr ---\n"
                          << server_->Stderr();
    }
    EXPECT_EQ(crashed, static_cast<int>(crashes.size()));
    EXPECT_FALSE(tally.HasUnexpected()) << tally.Summary();
    // A crash that no call noticed would test nothing.
    EXPECT_TRUE(tally.SawCrashes()) << tally.Summary();
    const absl::Time streamed = absl::Now();

    // Acknowledged items may still wait in the server's spool: give the
    // replay time, then require the figures to stay put.
    std::string diff = WaitForAggregates(w, absl::Seconds(120));
    ASSERT_EQ(diff, "") << tally.Summary();
    absl::SleepFor(absl::Seconds(1));
    EXPECT_EQ(Differences(w), "")
        << "the aggregates changed after matching; " << tally.Summary();
    std::printf(
        "[ durability ] %d exposures, %d events, %zu crashes: "
        "streamed in %s, settled after %s more; %s\n",
        kUnits, kEvents, crashes.size(),
        absl::FormatDuration(streamed - started).c_str(),
        absl::FormatDuration(absl::Now() - streamed).c_str(),
        tally.Summary().c_str());
  }

  // Injects one crash; `killed` runs once the first process is dead.
  absl::Status Inject(Crash crash, const std::function<void()>& killed) {
    // Outages long enough for many calls to fail (or be spooled).
    constexpr absl::Duration kOutage = absl::Seconds(1);
    switch (crash) {
      case Crash::kRedis:
        if (absl::Status s = redis_->Kill(); !s.ok()) return s;
        killed();
        absl::SleepFor(kOutage);
        return redis_->Restart();
      case Crash::kServer:
        if (absl::Status s = server_->Kill(); !s.ok()) return s;
        killed();
        absl::SleepFor(kOutage / 2);
        return server_->Restart();
      case Crash::kServerDuringRedisOutage:
        if (absl::Status s = redis_->Kill(); !s.ok()) return s;
        killed();
        absl::SleepFor(kOutage);
        if (absl::Status s = server_->Kill(); !s.ok()) return s;
        absl::SleepFor(kOutage / 2);
        if (absl::Status s = server_->Restart(); !s.ok()) return s;
        absl::SleepFor(kOutage);
        return redis_->Restart();
    }
    return absl::InternalError("unknown crash");
  }

  // How the aggregates in Redis differ from those `w` must produce; "" when
  // they are equal.
  std::string Differences(const Workload& w) {
    return AggregateDifferences(
        "checkout", 2, [&](const ExperimentAggregates& a, FigureDiffs* diffs) {
          Compare(a, w.expected, config_->version, diffs);
        });
  }

  // Polls the aggregates until they match; returns the last differences
  // ("" once they match).
  std::string WaitForAggregates(const Workload& w, absl::Duration timeout) {
    std::string diff;
    Eventually(
        [&] {
          diff = Differences(w);
          return diff.empty();
        },
        timeout, absl::Milliseconds(250));
    return diff;
  }
};

TEST_F(DurabilityTest, RedisKilledMidStreamCountsEveryAcknowledgedEventOnce) {
  StreamWithCrashes({Crash::kRedis, Crash::kRedis, Crash::kRedis});
}

TEST_F(DurabilityTest, ServerKilledMidStreamCountsEveryAcknowledgedEventOnce) {
  StreamWithCrashes({Crash::kServer, Crash::kServer, Crash::kServer});
}

TEST_F(DurabilityTest,
       RedisAndServerKilledInOneStreamCountsEveryAcknowledgedEventOnce) {
  StreamWithCrashes(
      {Crash::kRedis, Crash::kServer, Crash::kServerDuringRedisOutage});
}

}  // namespace
}  // namespace abexp
