// abexp-server: serves abexp.v1.AssignmentService for one config file, and
// abexp.v1.RecordingService into Redis.
//
//   abexp-server --config=experiments.yaml [--listen=127.0.0.1:50051]
//                [--redis=127.0.0.1:6379] [--redis_prefix=abexp]
//                [--spool_dir=abexp-spool] [--spool_max_bytes=1073741824]
//
// On start it prints one line to stdout:
//   abexp-server listening on HOST:PORT config=PATH version=VERSION
//   redis=HOST:PORT
// Logs go to stderr. SIGHUP reloads the config (an invalid or empty file
// keeps the last good one; removing running experiments is logged as a
// warning naming them); SIGTERM and SIGINT drain in-flight calls (recording
// ones included) and exit 0. Exits 1 when the config is invalid, the address
// cannot be bound or a --redis flag is malformed. Redis being down is not
// fatal: assignment only reads it for sticky experiments and then falls back
// to the computed variant, and recording calls are acknowledged from a
// local spool (--spool_dir, fsynced) and replayed into Redis, in order, when
// it is back or after a restart; a full spool, a call larger than the spool,
// or a spool directory deleted or moved under the server makes them
// UNAVAILABLE. On SIGTERM, once in-flight calls are done, the spool is
// replayed into Redis for up to --shutdown_grace; what remains is kept for
// the next start (or, when the directory went, is logged as lost).
// Exits 1 also when the spool cannot be opened (e.g. another server uses it).
//
// --tls_cert_file and --tls_key_file serve TLS (and --tls_client_ca_file
// requires client certificates: mTLS); SIGHUP re-reads them with the config,
// and a bad set keeps the last good one (server/server_tls.h). Exits 1 when
// they are combined wrongly, cannot be read or parsed, or the key does not
// belong to the certificate. Without them, a listen address that is not
// loopback is warned about.
//
// With --http_listen=HOST:PORT it serves GET /metrics (Prometheus), /healthz
// and /readyz over HTTP (docs/operations.md), and the OpenFeature remote
// evaluation protocol under /ofrep/v1/ (server/ofrep/, README.md "Using it
// from OpenFeature"), and each experiment's results page at
// /experiments/KEY/report (server/report_endpoint.h); and
// abexp.v1.RecordingService's gRPC health is
// NOT_SERVING while recording cannot acknowledge.
//
// With --auth_tokens_file, every call but health checks needs a bearer token
// of that file with the roles its RPC needs (README.md, "Tokens and
// roles"); the file is re-read on SIGHUP too, and an invalid one stops the
// start (exit 1) or, on reload, is logged and the tokens in force are kept.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "server/core/config_store.h"
#include "server/core/recorder.h"
#include "server/core/spool_admission.h"
#include "server/core/token_store.h"
#include "server/http/http_auth.h"
#include "server/http_listener.h"
#include "server/metrics/metrics.h"
#include "server/ofrep/ofrep_handler.h"
#include "server/operator_endpoints.h"
#include "server/report_endpoint.h"
#include "server/server_setup.h"
#include "server/server_tls.h"
#include "server/service/assignment_service.h"
#include "server/service/call_auth.h"
#include "server/service/recording_service.h"
#include "server/service/reflection_service.h"
#include "server/service/results_service.h"
#include "server/service/rpc_handlers.h"
#include "server/service/rpc_metrics.h"
#include "server/service/storage_executor.h"
#include "server/storage/redis/redis_cluster.h"
#include "server/storage/redis/redis_connection.h"
#include "server/storage/redis/redis_event_store.h"
#include "server/storage/spool/spool.h"
#include "server/storage/spool/spooled_event_store.h"

// Defines ABEXP_GIT_REVISION; CMake writes it on every build (Bazel has none).
#ifdef ABEXP_HAVE_GIT_REVISION_HEADER
#include "abexp_git_revision.h"
#endif

ABSL_FLAG(std::string, config, "",
          "Path of the experiments YAML file to serve (required; see "
          "docs/config.md).");
ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "HOST:PORT to listen on. Port 0 picks a free port; the chosen one is "
          "printed on stdout.");
ABSL_FLAG(std::string, redis, "127.0.0.1:6379",
          "HOST:PORT of the Redis that stores exposures and events.");
ABSL_FLAG(std::string, redis_password, "",
          "Redis AUTH password. Default: none, or the ABEXP_REDIS_PASSWORD "
          "environment variable (which keeps it out of `ps`).");
ABSL_FLAG(int, redis_db, 0, "Redis database index (SELECT).");
ABSL_FLAG(absl::Duration, redis_connect_timeout, absl::Milliseconds(500),
          "How long connecting to Redis may take before the attempt fails "
          "(and recording falls back to the spool).");
ABSL_FLAG(absl::Duration, redis_command_timeout, absl::Seconds(2),
          "How long abexp waits for Redis to answer one pipelined batch before "
          "it treats Redis as down (recording then goes to the spool).");
ABSL_FLAG(int, redis_pool_size, 0,
          "Redis connections kept open. 0: twice the number of cores.");
ABSL_FLAG(std::string, redis_prefix, "abexp",
          "Prefix of every Redis key abexp writes; lets several deployments "
          "share one Redis.");
ABSL_FLAG(
    absl::Duration, shutdown_grace, absl::Seconds(10),
    "On SIGTERM/SIGINT, how long in-flight calls may take to finish before "
    "they are cancelled, and then how long the spool may take to replay into "
    "Redis.");
ABSL_FLAG(int, storage_threads, 16,
          "Threads that run the calls that wait on storage (recording, "
          "results, Assign with record_exposure), so that gRPC's own threads "
          "never wait on Redis or the disk and plain Assign calls keep being "
          "served whatever Redis does.");
ABSL_FLAG(int, storage_max_calls, 256,
          "Calls that wait on storage, queued or running, at most (at least "
          "--storage_threads). Past it, such calls are answered "
          "RESOURCE_EXHAUSTED at once (retry with backoff) instead of "
          "queueing without limit while Redis is slow.");
ABSL_FLAG(absl::Duration, sticky_read_budget, absl::Milliseconds(5),
          "How long an assignment may wait for the recorded variants of "
          "sticky experiments (the Redis read, the connection and the wait "
          "for a thread). Past it the call answers with the variants "
          "computed from the config, reason ASSIGNMENT_REASON_STICKY_UNREAD, "
          "so a slow or frozen Redis never holds an Assign longer.");
ABSL_FLAG(int, sticky_read_threads, 8,
          "Threads that read the recorded variants of sticky experiments, so "
          "that gRPC's own threads never wait on Redis. Calls beyond 8 per "
          "thread waiting for one are answered at once without reading "
          "(reason ASSIGNMENT_REASON_STICKY_UNREAD).");
ABSL_FLAG(std::string, spool_dir, "abexp-spool",
          "Directory of the local spool that keeps recording calls while "
          "Redis is down or slow, until they are replayed into it. Relative "
          "paths are from the working directory; use a local disk that "
          "survives restarts, one directory per server (it is locked).");
ABSL_FLAG(std::string, auth_tokens_file, "",
          "Token file: one line per caller, NAME ROLES sha256:HEX (roles "
          "assign, record, results, admin; `abexp token create` prints a "
          "token and its line). When set, every call but health checks needs "
          "\"authorization: Bearer <token>\" metadata with a token of the file "
          "that has the roles its RPC needs, and server reflection needs "
          "admin. Re-read on SIGHUP. Default: none, every call is allowed.");
ABSL_FLAG(int64_t, spool_max_bytes, int64_t{1} << 30,
          "Disk space the spool may use (default 1 GiB). When it is full, "
          "recording calls fail with UNAVAILABLE until Redis is back.");
// The bound on recording answered from the spool (docs/storage.md, "While
// Redis is down").
ABSL_FLAG(double, spool_admit_rate, 0,
          "Records per second (exposures or events as sent) that recording "
          "calls may bring in while they are acknowledged from the spool "
          "(Redis down or failing). Past it a call is held until the rate "
          "admits it when that is within --spool_admit_max_hold, else "
          "answered RESOURCE_EXHAUSTED at once, nothing of it done, with the "
          "delay "
          "after which to send it again in its message and in the trailing "
          "metadata grpc-retry-pushback-ms. 0, the default: half the records "
          "per second Redis took on average over the minute before spooling "
          "began (recording from the spool costs the server more than with "
          "Redis), at least --spool_admit_floor, so that recording cannot "
          "take more of the server with Redis down than with it up.");
ABSL_FLAG(double, spool_admit_share, 0.5,
          "The automatic --spool_admit_rate as a share of the records per "
          "second Redis took on average over the minute before spooling "
          "began, in (0, 1] (default 0.5).");
ABSL_FLAG(absl::Duration, spool_admit_max_hold, absl::Milliseconds(250),
          "While recording is answered from the spool at --spool_admit_rate: "
          "how long a call over the rate may be held (no thread waits for "
          "it) until the rate admits it, instead of being refused "
          "RESOURCE_EXHAUSTED; at most half the time the call's deadline "
          "leaves, and only while the storage executor is under half full "
          "(--storage_max_calls). 0 refuses every call over the rate. "
          "Default: 250ms.");
ABSL_FLAG(double, spool_admit_floor, 1000,
          "The lowest automatic --spool_admit_rate, records per second "
          "(default 1000): what a server that has recorded little lately, "
          "or just started, admits from the spool.");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate chain (the server's certificate first) to serve "
          "TLS with; needs --tls_key_file. SIGHUP re-reads it. Default: none, "
          "plain text.");
ABSL_FLAG(std::string, tls_key_file, "",
          "PEM private key of --tls_cert_file, unencrypted, readable only by "
          "this user. SIGHUP re-reads it.");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA certificate(s): clients must present a certificate signed "
          "by one of them (mTLS). Needs --tls_cert_file and --tls_key_file. "
          "SIGHUP re-reads it.");

ABSL_FLAG(std::string, http_listen, "",
          "HOST:PORT of the HTTP listener: GET /metrics (Prometheus), "
          "/healthz and /readyz (docs/operations.md), and OpenFeature's "
          "remote evaluation protocol, /ofrep/v1/... (README.md, \"Using it "
          "from OpenFeature\"). Port 0 picks a free one (printed on stdout "
          "as http=HOST:PORT). Default: none, no HTTP listener and no "
          "metrics counted.");
ABSL_FLAG(int, http_threads, 2,
          "Event loops of --http_listen: they read requests and write "
          "answers for any number of keep-alive connections, and run no "
          "handler, so 2 keep up with a core's worth of handlers; more only "
          "help with many cores and many connections.");
ABSL_FLAG(int, http_handler_threads, 16,
          "Threads running --http_listen's handlers (OFREP evaluations, "
          "/metrics): how many requests are answered at once, and so how "
          "many may wait on Redis at once (OFREP abexpRecordExposure) "
          "before the others queue.");

// Limits on what callers can make the server hold, and hardening
// (docs/storage.md, docs/architecture.md).
ABSL_FLAG(std::string, redis_cluster, "",
          "HOST:PORT[,HOST:PORT...] of Redis Cluster nodes to record to "
          "instead of one Redis (any reachable node gives the slot map). "
          "Exclusive with --redis; the --redis_password, --redis_user, "
          "--redis_prefix, timeout and pool flags apply to every master.");
ABSL_FLAG(int, redis_shards_per_experiment, 0,
          "Shards each experiment phase's keys are split into, each on the "
          "master of its own hash slot; fixed when a phase first records. "
          "0: one per master of the cluster (at most 16) when the phase "
          "first records, so 3 on a 3-master cluster, with --redis_cluster; "
          "1 (the single-node layout) without.");
ABSL_FLAG(int, redis_wait_replicas, 0,
          "Replicas each master must have a recording write on (Redis WAIT) "
          "before abexp acknowledges it; fewer within --redis_wait_timeout "
          "and the write is spooled and retried. With replication being "
          "asynchronous, 1 keeps acknowledged records through a failover "
          "to a replica. 0: no WAIT.");
ABSL_FLAG(absl::Duration, redis_wait_timeout, absl::Seconds(1),
          "How long --redis_wait_replicas waits for the replicas; less than "
          "--redis_command_timeout.");
ABSL_FLAG(std::string, redis_user, "",
          "Redis ACL user (Redis 6+) to authenticate as, with "
          "--redis_password, on every connection (AUTH user password). "
          "Default: none (Redis's default user), or the ABEXP_REDIS_USER "
          "environment variable.");
ABSL_FLAG(int, max_config_versions, abexp::kDefaultMaxConfigVersions,
          "Distinct config versions whose exposures are counted apart per "
          "experiment phase (the results list them); exposures under "
          "further versions are counted as 'other'. 1 to 1000.");
ABSL_FLAG(int, max_concurrent_streams, 256,
          "Calls one client connection may have open at once; further calls "
          "on that connection wait in the client until one ends.");
ABSL_FLAG(int64_t, max_request_memory_bytes, int64_t{1} << 30,
          "Memory gRPC may hold for all connections and calls together "
          "(default 1 GiB); a request it cannot hold is refused with "
          "RESOURCE_EXHAUSTED instead of the server growing. At least "
          "67108864, the largest request.");

namespace abexp {
namespace {

#ifndef ABEXP_VERSION
#define ABEXP_VERSION "unknown"
#endif
#ifndef ABEXP_GIT_REVISION
#define ABEXP_GIT_REVISION "unknown"
#endif
// abexp_build_info's version (CMake's project version).
constexpr char kAbexpVersion[] = ABEXP_VERSION;

// How often RecordingService's gRPC health looks at whether recording can
// acknowledge.
constexpr absl::Duration kRecordingHealthInterval = absl::Milliseconds(250);

struct ServerOptions {
  std::string config_path;
  // The listen address and the gRPC options (server/server_setup.h).
  ServerSetup setup;
  // Default: 10s.
  absl::Duration shutdown_grace = absl::Seconds(10);
  // Where recording goes. Default: RedisOptions' defaults.
  RedisOptions redis;
  // --redis_cluster's nodes; when set, recording goes to that cluster, with
  // `redis` as each master's options. Default: none.
  std::vector<std::string> redis_cluster;
  // Where recording calls wait while Redis fails. Default: "abexp-spool".
  std::string spool_dir = "abexp-spool";
  // Default: 1 GiB.
  int64_t spool_max_bytes = int64_t{1} << 30;
  // Where calls that wait on storage run.
  StorageExecutorOptions storage;
  // Default: 5ms.
  absl::Duration sticky_read_budget = absl::Milliseconds(5);
  // Where calls that read sticky experiments' recorded variants run.
  StorageExecutorOptions sticky_reads;
  // The token file calls are checked against. Default: "", none (every call
  // is allowed).
  std::string auth_tokens_file;
  // The --tls_* files. Default: none, plain text.
  TlsFiles tls;
  // How recording is kept in Redis (max_config_versions). Default:
  // RedisEventStoreOptions' defaults.
  RedisEventStoreOptions store;
  // The HTTP listener (metrics, health, OFREP). Default: "", none.
  std::string http_listen;
  HttpListenerOptions http;
  // The bound on recording answered from the spool. Default:
  // SpoolAdmissionOptions' defaults (automatic).
  SpoolAdmissionOptions spool_admission;
};

// The connection options for reading sticky experiments' recorded
// variants: every wait (connect, a free connection, the reply) bounded by
// the budget, and a connection for each thread that may read.
RedisOptions StickyRedisOptions(const ServerOptions& options) {
  RedisOptions redis = options.redis;
  redis.connect_timeout = options.sticky_read_budget;
  redis.command_timeout = options.sticky_read_budget;
  redis.pool_wait_timeout = options.sticky_read_budget;
  redis.pool_size = options.sticky_reads.threads + options.storage.threads;
  redis.wait_replicas = 0;  // reads only
  return redis;
}

// One log line per message line, each prefixed with a UTC timestamp, written
// with one call so lines from different threads do not interleave.
void Log(absl::string_view message) {
  std::string prefix =
      absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                                    absl::UTCTimeZone()),
                   " abexp-server: ");
  std::string out;
  for (absl::string_view line :
       absl::StrSplit(message, '\n', absl::SkipEmpty())) {
    absl::StrAppend(&out, prefix, line, "\n");
  }
  std::fputs(out.c_str(), stderr);
  std::fflush(stderr);
}

void LogWarnings(const std::vector<std::string>& warnings) {
  for (const std::string& w : warnings) Log(w);
}

// A reload that removes running experiments ends them for every unit: said
// loudly, since a deploy that lost part of the file looks the same.
void LogDroppedRunning(const std::string& path,
                       const std::vector<std::string>& dropped) {
  if (dropped.empty()) return;
  // Counted in abexp_config_dropped_running_total too.
  const bool one = dropped.size() == 1;
  Log(absl::StrCat(
      "warning: this reload removes ", dropped.size(), " running experiment",
      one ? "" : "s", " that ", one ? "was" : "were",
      " serving: ", absl::StrJoin(dropped, ", "), "; ", one ? "its" : "their",
      " units get no variant from now on. If that was not meant, put ",
      one ? "it" : "them", " back in ", path,
      " and send SIGHUP again; to end an experiment, set its status to "
      "stopped instead"));
}

// Re-reads the --tls_* files; a bad set is logged and the served one kept.
void ReloadTls(ServerTls* tls) {
  absl::StatusOr<bool> changed = tls->Reload();
  if (!changed.ok()) {
    Log(changed.status().message());
    Log(absl::StrCat("TLS reload failed; keeping the certificate served: ",
                     tls->Describe()));
    return;
  }
  LogWarnings(tls->warnings());
  Log(absl::StrCat(*changed ? "TLS files reloaded; new connections get "
                            : "TLS files unchanged; serving ",
                   tls->Describe()));
}

// Opens --auth_tokens_file and logs how many tokens hold each role (never a
// token or a hash). Null when the flag is not set; *failed (after logging
// why) when the file is invalid.
std::unique_ptr<TokenStore> OpenTokens(const ServerOptions& options,
                                       bool* failed) {
  *failed = false;
  if (options.auth_tokens_file.empty()) return nullptr;
  TokenLoad load;
  absl::StatusOr<std::unique_ptr<TokenStore>> tokens =
      TokenStore::Open(options.auth_tokens_file, &load);
  if (!tokens.ok()) {
    Log(tokens.status().message());
    Log("not starting: fix the token file (--auth_tokens_file) and start "
        "again");
    *failed = true;
    return nullptr;
  }
  LogWarnings(load.warnings);
  Log(absl::StrCat("checking calls against ", options.auth_tokens_file, ": ",
                   load.table->Summary()));
  return *std::move(tokens);
}

// Re-reads the token file on SIGHUP; an invalid one keeps the tokens in
// force.
void ReloadTokens(TokenStore* tokens) {
  absl::StatusOr<TokenLoad> load = tokens->Reload();
  if (!load.ok()) {
    Log(load.status().message());
    Log(absl::StrCat("token file reload failed; keeping ",
                     tokens->Snapshot()->Summary()));
    return;
  }
  LogWarnings(load->warnings);
  Log(absl::StrCat("token file reloaded: ", load->table->Summary()));
}

// Handles SIGHUP (reload of the config, and of the TLS files and the token
// file when `tls` and `tokens` are not null) and SIGTERM/SIGINT (shutdown)
// until a shutdown.
// REQUIRES: the signals are blocked in every thread.
void HandleSignals(const sigset_t& signals, ConfigStore* store, ServerTls* tls,
                   TokenStore* tokens, ConfigMetrics* config_metrics,
                   RecordingHealth* recording_health, grpc::Server* server,
                   const std::function<int()>& in_flight_calls,
                   absl::Duration grace) {
  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP && tls != nullptr) ReloadTls(tls);
    if (sig == SIGHUP && tokens != nullptr) ReloadTokens(tokens);
    if (sig == SIGHUP) {
      std::string old_version = store->Snapshot()->version;
      absl::StatusOr<LoadResult> result = store->Reload();
      if (!result.ok()) {
        if (config_metrics != nullptr) config_metrics->ReloadFailed();
        Log(result.status().message());
        Log(absl::StrCat("config reload failed; keeping version=",
                         old_version));
        continue;
      }
      if (config_metrics != nullptr && result->changed) {
        config_metrics->ReloadChanged(
            *result->config, absl::Now(),
            static_cast<int>(result->dropped_running.size()));
      } else if (config_metrics != nullptr) {
        config_metrics->ReloadUnchanged(absl::Now());
      }
      LogWarnings(result->warnings);
      LogDroppedRunning(store->path(), result->dropped_running);
      Log(absl::StrCat("config reloaded version=", result->config->version,
                       result->changed
                           ? absl::StrCat(" (was ", old_version, ")")
                           : std::string(" (unchanged)")));
      continue;
    }
    Log(absl::StrCat("received ", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                     "; finishing in-flight calls (up to ",
                     absl::FormatDuration(grace), ") and shutting down"));
    recording_health->SetDraining();  // /readyz answers 503 from now on
    if (grpc::HealthCheckServiceInterface* health =
            server->GetHealthCheckService()) {
      health->Shutdown();  // report NOT_SERVING while draining
    }
    ShutdownServer(server, in_flight_calls, grace);
    return;
  }
}

// Blocks SIGHUP, SIGTERM and SIGINT in this thread, and so in every thread
// started after it (gRPC's among them), so only HandleSignals sees them.
// Returns the set, for sigwait.
sigset_t BlockServerSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

// Opens the spool of --spool_dir and logs what an earlier run left in it.
// Null, after logging why the server does not start, when it cannot be
// opened.
std::unique_ptr<Spool> OpenSpool(const ServerOptions& options) {
  SpoolOptions spool_options;
  spool_options.max_bytes = options.spool_max_bytes;
  absl::StatusOr<std::unique_ptr<Spool>> spool =
      Spool::Open(options.spool_dir, spool_options);
  if (!spool.ok()) {
    Log(absl::StrCat("cannot open the spool in --spool_dir=", options.spool_dir,
                     ": ", spool.status().message()));
    switch (spool.status().code()) {
      case absl::StatusCode::kFailedPrecondition:
        Log("not starting: stop the other abexp-server using that spool, or "
            "give this one its own --spool_dir");
        break;
      case absl::StatusCode::kDataLoss:
        Log("not starting: the spool holds acknowledged calls not yet in "
            "Redis and is damaged as described; keep a copy of the "
            "directory, then move the named file aside to start (its calls "
            "are lost)");
        break;
      default:
        Log("not starting: pass a --spool_dir this user can create and "
            "write, on a local disk");
    }
    return nullptr;
  }
  for (const std::string& damage : (*spool)->damage()) {
    Log(absl::StrCat("spool ", options.spool_dir,
                     ": ACKNOWLEDGED WRITES LOST: ", damage));
  }
  if ((*spool)->torn_bytes_dropped() > 0) {
    Log(absl::StrCat("spool ", options.spool_dir, ": dropped a torn tail of ",
                     (*spool)->torn_bytes_dropped(),
                     " bytes left by a crash mid-write (never acknowledged)"));
  }
  if (!(*spool)->empty()) {
    Log(absl::StrCat("spool ", options.spool_dir, ": ",
                     (*spool)->pending_records(), " writes (",
                     (*spool)->size_bytes(),
                     " bytes) from an earlier run are pending; replaying them "
                     "into Redis as soon as it is up, before new writes"));
  }
  return *std::move(spool);
}

// Makes the Redis event store over a `Client` (RedisPool: one Redis;
// RedisCluster: a cluster) made from `client_options`.
// Redis refusing the user or password is Redis being unusable to this
// server, as when it is down: UNAVAILABLE, so that recording is kept in the
// spool (and replayed once the credentials are fixed) and the log says why.
template <typename Client, typename ClientOptions>
DeferredEventStore::Factory StoreFactoryOver(
    const ClientOptions& client_options,
    const RedisEventStoreOptions& options) {
  return [client_options,
          options]() -> absl::StatusOr<std::shared_ptr<EventStore>> {
    absl::StatusOr<std::unique_ptr<Client>> client =
        Client::Create(client_options);
    if (client.status().code() == absl::StatusCode::kPermissionDenied) {
      return absl::UnavailableError(client.status().message());
    }
    if (!client.ok()) return client.status();
    absl::StatusOr<std::unique_ptr<RedisEventStore>> store =
        RedisEventStore::Create(client->get(), options);
    if (!store.ok()) return store.status();
    // The store borrows the client: keep both alive together.
    struct Both {
      std::unique_ptr<Client> client;
      std::unique_ptr<RedisEventStore> store;
    };
    auto both =
        std::make_shared<Both>(Both{*std::move(client), *std::move(store)});
    return std::shared_ptr<EventStore>(both, both->store.get());
  };
}

// The event store on one Redis, or with --redis_cluster on the cluster, its
// masters' pools made from `redis` (which counts into redis.metrics).
DeferredEventStore::Factory RedisStoreFactory(const ServerOptions& server,
                                              const RedisOptions& redis) {
  if (server.redis_cluster.empty()) {
    return StoreFactoryOver<RedisPool>(redis, server.store);
  }
  RedisClusterOptions cluster;
  cluster.seeds = server.redis_cluster;
  cluster.node = redis;
  return StoreFactoryOver<RedisCluster>(cluster, server.store);
}

// Where recording goes, for the log and the startup line: "HOST:PORT", or
// "cluster(HOST:PORT,...)" with --redis_cluster.
std::string RedisAddress(const ServerOptions& options) {
  if (!options.redis_cluster.empty()) {
    return absl::StrCat("cluster(", absl::StrJoin(options.redis_cluster, ","),
                        ")");
  }
  return absl::StrCat(options.redis.host, ":", options.redis.port);
}

// Whether the command line names --redis (absl does not say whether a flag
// was given, only its value, and the default is a valid address).
bool RedisFlagGiven(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (!absl::ConsumePrefix(&arg, "--")) absl::ConsumePrefix(&arg, "-");
    if (arg == "redis" || absl::StartsWith(arg, "redis=")) return true;
  }
  return false;
}

// Reads --redis_cluster and --redis_shards_per_experiment into *options;
// false after printing what is wrong. `redis_given`: RedisFlagGiven().
bool ReadClusterFlags(bool redis_given, ServerOptions* options) {
  const std::string nodes = absl::GetFlag(FLAGS_redis_cluster);
  const int shards = absl::GetFlag(FLAGS_redis_shards_per_experiment);
  if (shards < 0 || shards > 1024) {
    std::fprintf(stderr,
                 "abexp-server: --redis_shards_per_experiment=%d; pass 1 to "
                 "1024, or 0 for the default (one per master on a cluster, 1 "
                 "on one Redis)\n",
                 shards);
    return false;
  }
  if (nodes.empty()) {
    options->store.shards = shards == 0 ? 1 : shards;
    return true;
  }
  if (redis_given) {
    std::fprintf(stderr,
                 "abexp-server: both --redis and --redis_cluster are given; "
                 "pass --redis=HOST:PORT for one Redis or "
                 "--redis_cluster=HOST:PORT[,HOST:PORT...] for a Redis "
                 "Cluster, not both\n");
    return false;
  }
  if (options->redis.db != 0) {
    std::fprintf(stderr,
                 "abexp-server: --redis_db=%d with --redis_cluster; a Redis "
                 "Cluster has only database 0, so leave --redis_db out\n",
                 options->redis.db);
    return false;
  }
  for (absl::string_view node :
       absl::StrSplit(nodes, ',', absl::SkipWhitespace())) {
    RedisOptions check;
    const std::string address(absl::StripAsciiWhitespace(node));
    if (absl::Status s = ParseRedisAddress(address, &check); !s.ok()) {
      std::fprintf(stderr, "abexp-server: --redis_cluster: %s\n",
                   std::string(s.message()).c_str());
      return false;
    }
    options->redis_cluster.push_back(address);
  }
  if (options->redis_cluster.empty()) {
    std::fprintf(stderr,
                 "abexp-server: --redis_cluster names no node; pass "
                 "HOST:PORT[,HOST:PORT...] of the cluster's nodes\n");
    return false;
  }
  options->store.shards = shards;  // 0: one per master, per new phase
  return true;
}

// Reads --redis_wait_replicas and --redis_wait_timeout into *options;
// false after printing what is wrong.
bool ReadWaitFlags(ServerOptions* options) {
  options->redis.wait_replicas = absl::GetFlag(FLAGS_redis_wait_replicas);
  options->redis.wait_timeout = absl::GetFlag(FLAGS_redis_wait_timeout);
  if (options->redis.wait_replicas < 0 ||
      (options->redis.wait_replicas > 0 &&
       (options->redis.wait_timeout <= absl::ZeroDuration() ||
        options->redis.wait_timeout >= options->redis.command_timeout))) {
    std::fprintf(stderr,
                 "abexp-server: --redis_wait_replicas=%d "
                 "--redis_wait_timeout=%s: pass 0 (no WAIT) or a replica "
                 "count, and a timeout above 0 and below "
                 "--redis_command_timeout (%s)\n",
                 options->redis.wait_replicas,
                 absl::FormatDuration(options->redis.wait_timeout).c_str(),
                 absl::FormatDuration(options->redis.command_timeout).c_str());
    return false;
  }
  return true;
}

// Tries Redis once at startup to log where recording goes; Redis being
// down is only a warning.
void ConnectToRedis(const ServerOptions& options,
                    const std::string& redis_address,
                    DeferredEventStore* event_store) {
  if (absl::Status redis = event_store->Connect(); !redis.ok()) {
    Log(absl::StrCat("warning: Redis at ", redis_address,
                     " is not usable: ", redis.message(),
                     "; serving assignments anyway, recording calls are kept "
                     "in the spool ",
                     options.spool_dir, " until Redis is back"));
  } else {
    Log(absl::StrCat("recording to Redis at ", redis_address, " db=",
                     options.redis.db, " prefix=", options.redis.key_prefix));
  }
}

// Starts the gRPC server with the three services and reflection; *port is
// the port bound. Null (after logging why) when the address cannot be bound.
std::unique_ptr<grpc::Server> StartServer(const ServerOptions& options,
                                          const ServerTls* tls,
                                          AssignmentServiceImpl* assignment,
                                          RecordingServiceImpl* recording,
                                          ResultsServiceImpl* results,
                                          ReflectionService* reflection,
                                          ServerMetrics* metrics, int* port) {
  EnableServerPlugins();
  grpc::ServerBuilder builder;
  ServerSetup setup = options.setup;
  if (tls != nullptr) setup.credentials = tls->credentials();
  ConfigureServerBuilder(setup, &builder, port);
  if (metrics != nullptr) {
    builder.experimental().SetInterceptorCreators(RpcMetricsInterceptors(
        metrics,
        {v1::AssignmentService::service_full_name(),
         v1::RecordingService::service_full_name(),
         v1::ResultsService::service_full_name(),
         grpc::reflection::v1alpha::ServerReflection::service_full_name()}));
  }
  builder.RegisterService(assignment);
  builder.RegisterService(recording);
  builder.RegisterService(results);
  builder.RegisterService(reflection);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || *port == 0) {
    Log(absl::StrCat("cannot listen on ", options.setup.listen_address,
                     ": the address is invalid or already in use; pass "
                     "--listen=HOST:PORT with a free port (port 0 picks one)"));
    return nullptr;
  }
  if (grpc::HealthCheckServiceInterface* health =
          server->GetHealthCheckService()) {
    // Health checks may name a service; "" is the whole server.
    for (const char* name : {"", v1::AssignmentService::service_full_name(),
                             v1::RecordingService::service_full_name(),
                             v1::ResultsService::service_full_name()}) {
      health->SetServingStatus(name, true);
    }
    // RecordingService follows RecordingHealth from now on.
  }
  return server;
}

// Makes *tls from the --tls_* files, or leaves it null without them. False,
// after logging why, when they are unusable.
bool SetUpTls(const TlsFiles& files, std::unique_ptr<ServerTls>* tls) {
  if (!files.enabled()) return true;
  absl::StatusOr<std::unique_ptr<ServerTls>> created = ServerTls::Create(files);
  if (!created.ok()) {
    Log(created.status().message());
    Log("not starting: fix the --tls_* files and start again");
    return false;
  }
  *tls = *std::move(created);
  LogWarnings((*tls)->warnings());
  return true;
}

// Says how clients reach the server: which certificate it serves, or a
// warning when it serves plain text beyond this machine.
void LogTransport(const ServerOptions& options, int port,
                  const ServerTls* tls) {
  if (tls != nullptr) {
    Log(absl::StrCat("serving TLS: ", tls->Describe()));
  } else if (!IsLoopbackListenAddress(options.setup.listen_address)) {
    Log(absl::StrCat(
        "warning: listening on ", WithPort(options.setup.listen_address, port),
        " in plain text: anyone on the network can read and send its "
        "traffic; pass --tls_cert_file and --tls_key_file (and "
        "--tls_client_ca_file to require client certificates), or listen "
        "on 127.0.0.1"));
  }
}

// The startup line on stdout (tests and scripts read the port from it) and
// its log line.
void AnnounceServing(const ServerOptions& options, int port,
                     const std::string& redis_address,
                     const std::string& http_address, const Config& config) {
  const std::string http =
      http_address.empty() ? "" : absl::StrCat(" http=", http_address);
  std::printf("abexp-server listening on %s config=%s version=%s redis=%s%s\n",
              WithPort(options.setup.listen_address, port).c_str(),
              options.config_path.c_str(), config.version.c_str(),
              redis_address.c_str(), http.c_str());
  std::fflush(stdout);
  Log(absl::StrCat("serving ", options.config_path, " version=", config.version,
                   " with ", config.experiments.size(), " experiments and ",
                   config.features.size(), " features"));
}

// Once no call runs any more: moves what the spool holds into Redis for up
// to --shutdown_grace and logs what the spool did in this run.
void DrainSpool(const ServerOptions& options,
                SpooledEventStore* spooled_store) {
  const SpooledEventStoreStats before = spooled_store->stats();
  if (before.pending_records > 0) {
    Log(absl::StrCat("replaying ", before.pending_records,
                     " spooled writes into Redis (up to ",
                     absl::FormatDuration(options.shutdown_grace), ")"));
  }
  absl::Status drained = spooled_store->Drain(options.shutdown_grace);
  if (!drained.ok()) Log(drained.message());
  const SpooledEventStoreStats stats = spooled_store->stats();
  if (stats.spooled_writes > 0 || stats.replayed_writes > 0 ||
      stats.pending_records > 0 || stats.lost_records > 0) {
    Log(absl::StrCat(
        "spool ", options.spool_dir, ": ", stats.spooled_writes, " writes (",
        stats.spooled_items, " items) spooled and ", stats.replayed_writes,
        " (", stats.replayed_items, " items) replayed in this run; ",
        stats.pending_records, " pending",
        stats.lost_records > 0
            ? absl::StrCat("; ", stats.lost_records,
                           " acknowledged writes LOST with the spool "
                           "directory (never in Redis)")
            : std::string(),
        stats.rejected_writes > 0
            ? absl::StrCat("; ", stats.rejected_writes, " set aside in ",
                           options.spool_dir, "/rejected")
            : std::string()));
  }
}

// The OpenFeature remote evaluation protocol's handler (server/ofrep/),
// counting into `metrics` as gRPC Assign counts.
std::unique_ptr<OfrepHandler> MakeOfrepHandler(ConfigStore* configs,
                                               const Recorder* recorder,
                                               StickyReader* sticky,
                                               const HttpAuthorizer* auth,
                                               ServerMetrics* metrics) {
  OfrepOptions ofrep;
  ofrep.configs = configs;
  ofrep.recorder = recorder;
  ofrep.sticky = sticky;
  ofrep.auth = auth;
  ofrep.requests = metrics->ofrep();
  ofrep.assignments = metrics->assignments();
  RecordCounters* records = metrics->records();
  ofrep.count_exposures = [records](const RecordBatchResult& batch) {
    CountRecords(batch, RecordCounters::Kind::kExposure, records);
  };
  return std::make_unique<OfrepHandler>(std::move(ofrep));
}

int RunServer(const ServerOptions& options) {
  // Before gRPC starts threads, so all of them inherit the mask.
  const sigset_t signals = BlockServerSignals();

  LoadResult loaded;
  absl::StatusOr<std::unique_ptr<ConfigStore>> store =
      ConfigStore::Open(options.config_path, &loaded);
  if (!store.ok()) {
    Log(store.status().message());
    Log("not starting: fix the config and start again");
    return 1;
  }
  LogWarnings(loaded.warnings);

  // Outlives the server, which reads the files it serves.
  std::unique_ptr<ServerTls> tls;
  if (!SetUpTls(options.tls, &tls)) return 1;
  bool tokens_failed = false;
  std::unique_ptr<TokenStore> tokens = OpenTokens(options, &tokens_failed);
  if (tokens_failed) return 1;
  const CallAuthorizer authorizer(tokens.get());

  std::unique_ptr<Spool> spool = OpenSpool(options);
  if (spool == nullptr) return 1;
  const int64_t spool_damaged = static_cast<int64_t>(spool->damage().size());
  const int64_t spool_torn_bytes = spool->torn_bytes_dropped();

  // Counted only when someone can scrape them (--http_listen).
  std::atomic<int64_t> http_refused{0};  // outlives metrics' samplers
  std::unique_ptr<ServerMetrics> metrics;
  if (!options.http_listen.empty()) {
    metrics = std::make_unique<ServerMetrics>(kAbexpVersion);
    metrics->config()->Loaded(*loaded.config, absl::Now());
  }
  RedisOptions recording_redis = options.redis;
  RedisOptions sticky_redis = StickyRedisOptions(options);
  if (metrics != nullptr) {
    recording_redis.metrics = metrics->RedisPool("recording");
    sticky_redis.metrics = metrics->RedisPool("sticky");
  }

  // Redis may be down now; the store connects when it can.
  const std::string redis_address = RedisAddress(options);
  DeferredEventStore event_store(RedisStoreFactory(options, recording_redis));
  ConnectToRedis(options, redis_address, &event_store);
  SpooledEventStoreOptions spooled_options;
  spooled_options.backend_name = absl::StrCat("Redis at ", redis_address);
  spooled_options.notify = [](const std::string& message) { Log(message); };
  SpooledEventStore spooled_store(&event_store, std::move(spool),
                                  spooled_options);
  Recorder recorder(&spooled_store);
  // Sticky reads go to Redis on connections of their own, whose timeouts
  // are the budget (not the spool: it holds writes, not recorded variants).
  DeferredEventStore sticky_store(RedisStoreFactory(options, sticky_redis));
  StickyOptions sticky;
  sticky.store = &sticky_store;
  sticky.log = Log;
  sticky.budget = options.sticky_read_budget;
  // OFREP's own reader (and circuit breaker) over the same store.
  StickyReader ofrep_sticky(sticky);
  // Reset below, once the server has stopped, while everything their tasks
  // use still exists.
  auto executor = std::make_unique<StorageExecutor>(options.storage);
  auto sticky_executor =
      std::make_unique<StorageExecutor>(options.sticky_reads);
  ServingCounters counters;
  if (metrics != nullptr) {
    counters.assignments = metrics->assignments();
    counters.records = metrics->records();
  }
  AssignmentServiceImpl service(store->get(), &recorder, std::move(sticky),
                                executor.get(), sticky_executor.get(),
                                &authorizer, counters);
  SpoolAdmission spool_admission(options.spool_admission);
  RecordingServiceImpl recording(store->get(), &recorder, executor.get(),
                                 &authorizer, &spool_admission,
                                 counters.records);
  // Results read Redis directly (not the spool): figures are what Redis has.
  ResultsServiceImpl results(store->get(), &event_store, executor.get(),
                             &authorizer);
  std::unique_ptr<ReflectionService> reflection =
      MakeReflectionService({v1::AssignmentService::service_full_name(),
                             v1::RecordingService::service_full_name(),
                             v1::ResultsService::service_full_name()},
                            &authorizer);
  int port = 0;
  std::unique_ptr<grpc::Server> server =
      StartServer(options, tls.get(), &service, &recording, &results,
                  reflection.get(), metrics.get(), &port);
  if (server == nullptr) return 1;
  RecordingHealth recording_health(&spooled_store,
                                   server->GetHealthCheckService(),
                                   kRecordingHealthInterval);
  const HttpAuthorizer http_auth(tokens.get());
  std::unique_ptr<OfrepHandler> ofrep;  // outlives the listener
  std::unique_ptr<HttpListener> http;
  if (metrics != nullptr) {
    AddRecordingSamplers(metrics.get(), &spooled_store, &recording_health);
    AddSpoolStartSamplers(metrics.get(), spool_damaged, spool_torn_bytes);
    AddHttpListenerSamplers(metrics.get(), &http_refused);
    AddSpoolAdmissionSamplers(metrics.get(), &spool_admission);
    ConfigStore* const config_store = store->get();
    HttpRoutes routes = OperatorRoutes(
        metrics.get(), &recording_health,
        [config_store] { return config_store->Snapshot()->version; });
    ofrep = MakeOfrepHandler(config_store, &recorder, &ofrep_sticky, &http_auth,
                             metrics.get());
    ofrep->AddRoutes(&routes);
    AddReportRoute(&routes,
                   {config_store, &event_store, &http_auth,
                    absl::StrCat("abexp-server (gRPC port ", port, ")")});
    HttpListenerOptions http_options = options.http;
    http_options.refused = &http_refused;
    http_options.observe = HttpRouteCounting(metrics.get());
    absl::StatusOr<std::unique_ptr<HttpListener>> listener =
        HttpListener::Start(options.http_listen, std::move(routes),
                            http_options);
    if (!listener.ok()) {
      Log(listener.status().message());
      Log("not starting: fix --http_listen and start again");
      server->Shutdown();
      return 1;
    }
    http = *std::move(listener);
  }
  LogTransport(options, port, tls.get());
  AnnounceServing(options, port, redis_address,
                  http == nullptr ? "" : http->address(), *loaded.config);

  std::function<int()> in_flight_calls = [&service, &recording, &results] {
    return service.in_flight_calls() + recording.in_flight_calls() +
           results.in_flight_calls();
  };
  std::thread signal_thread(
      HandleSignals, signals, store->get(), tls.get(), tokens.get(),
      metrics == nullptr ? nullptr : metrics->config(), &recording_health,
      server.get(), in_flight_calls, options.shutdown_grace);
  server->Wait();
  signal_thread.join();
  // Scrapes read the spool and the recording health: stop them first.
  http.reset();
  executor.reset();
  sticky_executor.reset();

  DrainSpool(options, &spooled_store);
  Log("shut down");
  return 0;
}

// Reads the flags of the limits block into *options; false after printing
// what is wrong.
// --spool_admit_rate, --spool_admit_share, --spool_admit_max_hold and
// --spool_admit_floor; false,
// having said why, for values out of range.
bool ReadSpoolAdmissionFlags(ServerOptions* options) {
  options->spool_admission.rate = absl::GetFlag(FLAGS_spool_admit_rate);
  options->spool_admission.floor = absl::GetFlag(FLAGS_spool_admit_floor);
  options->spool_admission.auto_share = absl::GetFlag(FLAGS_spool_admit_share);
  options->spool_admission.max_hold = absl::GetFlag(FLAGS_spool_admit_max_hold);
  if (!(options->spool_admission.max_hold >= absl::ZeroDuration())) {
    std::fprintf(
        stderr,
        "abexp-server: --spool_admit_max_hold=%s: pass a duration of "
        "0 or more, e.g. 250ms (the default); 0 refuses every call "
        "over --spool_admit_rate\n",
        absl::FormatDuration(options->spool_admission.max_hold).c_str());
    return false;
  }
  // Written so that NaN fails too.
  if (!(options->spool_admission.auto_share > 0 &&
        options->spool_admission.auto_share <= 1)) {
    std::fprintf(stderr,
                 "abexp-server: --spool_admit_share=%g: pass a share in (0, "
                 "1], e.g. 0.5 (the default) for half the rate Redis took\n",
                 options->spool_admission.auto_share);
    return false;
  }
  if (!(options->spool_admission.rate >= 0) ||
      !(options->spool_admission.floor > 0)) {
    std::fprintf(stderr,
                 "abexp-server: --spool_admit_rate=%g and "
                 "--spool_admit_floor=%g: pass a rate of 0 (automatic, the "
                 "default) or more records per second, and a floor above 0 "
                 "(default 1000)\n",
                 options->spool_admission.rate, options->spool_admission.floor);
    return false;
  }
  return true;
}

bool ReadLimitFlags(ServerOptions* options) {
  options->redis.user = absl::GetFlag(FLAGS_redis_user);
  if (options->redis.user.empty()) {
    if (const char* env = std::getenv("ABEXP_REDIS_USER")) {
      options->redis.user = env;
    }
  }
  options->store.max_config_versions = absl::GetFlag(FLAGS_max_config_versions);
  if (options->store.max_config_versions < 1 ||
      options->store.max_config_versions > 1000) {
    std::fprintf(stderr,
                 "abexp-server: --max_config_versions=%d; pass 1 to 1000 "
                 "(default %d)\n",
                 options->store.max_config_versions, kDefaultMaxConfigVersions);
    return false;
  }
  options->setup.max_concurrent_streams =
      absl::GetFlag(FLAGS_max_concurrent_streams);
  options->setup.max_request_memory_bytes =
      absl::GetFlag(FLAGS_max_request_memory_bytes);
  if (options->setup.max_concurrent_streams < 1 ||
      options->setup.max_request_memory_bytes <
          options->setup.max_receive_message_bytes) {
    std::fprintf(
        stderr,
        "abexp-server: --max_concurrent_streams=%d and "
        "--max_request_memory_bytes=%lld: pass at least 1 stream and at "
        "least %d bytes, the largest request (defaults 256 and 1073741824)\n",
        options->setup.max_concurrent_streams,
        static_cast<long long>(options->setup.max_request_memory_bytes),
        options->setup.max_receive_message_bytes);
    return false;
  }
  return true;
}

}  // namespace
}  // namespace abexp

int main(int argc, char** argv) {
  // --help lists this file's flags: by default absl lists those of a file
  // named like the program (abexp-server.cc), so it listed none.
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "server/main.cc");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  // --version: the project version and the git revision CMake configured.
  usage.version_string = [] {
    return std::string("abexp-server " ABEXP_VERSION " (git " ABEXP_GIT_REVISION
                       ")\n");
  };
  absl::SetFlagsUsageConfig(usage);
  absl::SetProgramUsageMessage(
      "Serves abexp experiment assignments and records exposures and events "
      "over gRPC.\n"
      "Usage: abexp-server --config=experiments.yaml "
      "[--listen=127.0.0.1:50051] [--redis=127.0.0.1:6379]\n"
      "       [--tls_cert_file=cert.pem --tls_key_file=key.pem "
      "[--tls_client_ca_file=clients-ca.pem]]");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() > 1) {
    std::fprintf(stderr,
                 "abexp-server: unexpected argument '%s'; flags are written "
                 "--name=value (see --help)\n",
                 args[1]);
    return 1;
  }
  abexp::ServerOptions options;
  options.config_path = absl::GetFlag(FLAGS_config);
  options.setup.listen_address = absl::GetFlag(FLAGS_listen);
  options.shutdown_grace = absl::GetFlag(FLAGS_shutdown_grace);
  if (absl::Status s =
          abexp::ParseRedisAddress(absl::GetFlag(FLAGS_redis), &options.redis);
      !s.ok()) {
    std::fprintf(stderr, "abexp-server: --redis: %s\n",
                 std::string(s.message()).c_str());
    return 1;
  }
  options.redis.password = absl::GetFlag(FLAGS_redis_password);
  if (options.redis.password.empty()) {
    if (const char* env = std::getenv("ABEXP_REDIS_PASSWORD")) {
      options.redis.password = env;
    }
  }
  options.redis.db = absl::GetFlag(FLAGS_redis_db);
  if (options.redis.db < 0) {
    std::fprintf(stderr,
                 "abexp-server: --redis_db=%d is negative; pass a database "
                 "index from 0 (the default)\n",
                 options.redis.db);
    return 1;
  }
  options.redis.key_prefix = absl::GetFlag(FLAGS_redis_prefix);
  options.redis.connect_timeout = absl::GetFlag(FLAGS_redis_connect_timeout);
  options.redis.command_timeout = absl::GetFlag(FLAGS_redis_command_timeout);
  options.redis.pool_size = absl::GetFlag(FLAGS_redis_pool_size);
  if (options.redis.connect_timeout <= absl::ZeroDuration() ||
      options.redis.command_timeout <= absl::ZeroDuration() ||
      options.redis.pool_size < 0) {
    std::fprintf(stderr,
                 "abexp-server: --redis_connect_timeout and "
                 "--redis_command_timeout must be positive (e.g. 500ms, 2s) "
                 "and --redis_pool_size 0 (twice the cores) or more\n");
    return 1;
  }
  options.storage.threads = absl::GetFlag(FLAGS_storage_threads);
  options.storage.max_calls = absl::GetFlag(FLAGS_storage_max_calls);
  // Recording and results yield the CPU to assignments when both want it.
  options.storage.nice = 10;
  if (options.storage.threads < 1 ||
      options.storage.max_calls < options.storage.threads) {
    std::fprintf(
        stderr,
        "abexp-server: --storage_threads=%d and --storage_max_calls=%d:"
        " pass at least 1 thread and at least as many calls as "
        "threads (defaults 16 and 256)\n",
        options.storage.threads, options.storage.max_calls);
    return 1;
  }
  options.sticky_read_budget = absl::GetFlag(FLAGS_sticky_read_budget);
  options.sticky_reads.threads = absl::GetFlag(FLAGS_sticky_read_threads);
  options.sticky_reads.max_calls = 8 * options.sticky_reads.threads;
  if (options.sticky_read_budget <= absl::ZeroDuration() ||
      options.sticky_reads.threads < 1) {
    std::fprintf(stderr,
                 "abexp-server: --sticky_read_budget must be positive (e.g. "
                 "5ms, the default) and --sticky_read_threads at least 1 "
                 "(default 8)\n");
    return 1;
  }
  options.auth_tokens_file = absl::GetFlag(FLAGS_auth_tokens_file);
  options.spool_dir = absl::GetFlag(FLAGS_spool_dir);
  options.spool_max_bytes = absl::GetFlag(FLAGS_spool_max_bytes);
  if (options.spool_dir.empty() || options.spool_max_bytes <= 0) {
    std::fprintf(stderr,
                 "abexp-server: --spool_dir must name a directory and "
                 "--spool_max_bytes be positive (e.g. 1073741824 for 1 GiB)\n");
    return 1;
  }
  options.tls.cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  options.tls.key_file = absl::GetFlag(FLAGS_tls_key_file);
  options.tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file);
  if (absl::Status s = abexp::CheckTlsFlags(options.tls); !s.ok()) {
    std::fprintf(stderr, "abexp-server: %s\n",
                 std::string(s.message()).c_str());
    return 1;
  }
  if (!abexp::ReadLimitFlags(&options)) return 1;
  if (!abexp::ReadClusterFlags(abexp::RedisFlagGiven(argc, argv), &options)) {
    return 1;
  }
  if (!abexp::ReadWaitFlags(&options)) return 1;
  options.http_listen = absl::GetFlag(FLAGS_http_listen);
  options.http.threads = absl::GetFlag(FLAGS_http_threads);
  if (options.http.threads < 1) {
    std::fprintf(stderr,
                 "abexp-server: --http_threads=%d must be at least 1; pass "
                 "the number of HTTP event loops (default 2)\n",
                 options.http.threads);
    return 1;
  }
  options.http.handler_threads = absl::GetFlag(FLAGS_http_handler_threads);
  if (options.http.handler_threads < 1 ||
      options.http.handler_threads > options.http.max_queued) {
    std::fprintf(stderr,
                 "abexp-server: --http_handler_threads=%d must be 1 to %d; "
                 "pass how many HTTP requests to answer at once (default "
                 "16)\n",
                 options.http.handler_threads, options.http.max_queued);
    return 1;
  }
  if (!abexp::ReadSpoolAdmissionFlags(&options)) return 1;
  if (options.config_path.empty()) {
    std::fprintf(
        stderr,
        "abexp-server: --config is required; pass --config=PATH of the "
        "experiments YAML file (see docs/config.md)\n");
    return 1;
  }
  return abexp::RunServer(options);
}
