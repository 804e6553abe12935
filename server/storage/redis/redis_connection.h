// Redis access over hiredis: a pool of connections with AUTH, SELECT,
// timeouts, reconnection with backoff, pipelining and Lua scripts run with
// EVALSHA (reloaded on NOSCRIPT).
//
// Commands are always sent as argv (redisAppendCommandArgv), never by
// formatting user strings into a command line.
//
// Thread-safe: a RedisPool may be used from any number of threads; each call
// borrows one connection for its duration.
#ifndef ABEXP_SERVER_STORAGE_REDIS_REDIS_CONNECTION_H_
#define ABEXP_SERVER_STORAGE_REDIS_REDIS_CONNECTION_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace abexp {

struct RedisPoolMetrics;  // server/metrics/metrics.h

struct RedisOptions {
  std::string host = "127.0.0.1";  // Default: 127.0.0.1
  int port = 6379;                 // Default: 6379
  // An ACL user (Redis 6+): when set, every connection authenticates with
  // AUTH user password; else with AUTH password when a password is set (the
  // default user). Default: none.
  std::string user;
  std::string password;  // Default: none
  int db = 0;            // SELECT index. Default: 0
  // Prepended to every key abexp writes. Default: "abexp".
  std::string key_prefix = "abexp";
  absl::Duration connect_timeout = absl::Milliseconds(500);  // Default: 500ms
  absl::Duration command_timeout = absl::Seconds(2);         // Default: 2s
  // Connections kept open. Default: 0, meaning twice the number of cores.
  int pool_size = 0;
  // How long a call waits for a connection when all pool_size are busy
  // (Redis slow or stuck) before it fails with DEADLINE_EXCEEDED, so that
  // no caller queues for a connection without limit. Default: 0, meaning
  // command_timeout.
  absl::Duration pool_wait_timeout = absl::ZeroDuration();
  // Reconnect backoff: doubles from initial to max between failed attempts.
  absl::Duration initial_backoff = absl::Milliseconds(50);  // Default: 50ms
  absl::Duration max_backoff = absl::Seconds(2);            // Default: 2s
  // Replicas that must have every write before a call returns: when > 0,
  // each Pipeline and RunScripts sends WAIT wait_replicas wait_timeout on
  // its connection after its commands, and fails with UNAVAILABLE (the
  // commands did run on the master) when fewer replicas acknowledged them
  // in time. With Redis's asynchronous replication this is what keeps an
  // acknowledged write through a failover to a replica. Default: 0, no WAIT.
  int wait_replicas = 0;
  // How long WAIT waits; less than command_timeout. Default: 1s.
  absl::Duration wait_timeout = absl::Seconds(1);
  // Where the pool counts its commands, round trips, errors and
  // connections. Default: null, not counted. REQUIRES: outlives the pool.
  RedisPoolMetrics* metrics = nullptr;
};

// Parses "host:port" into options.host/port. INVALID_ARGUMENT on bad input.
absl::Status ParseRedisAddress(const std::string& address,
                               RedisOptions* options);

// A reply, copied out of hiredis so it outlives the connection.
struct RedisReply {
  enum class Type { kNil, kInteger, kString, kStatus, kArray, kError };
  Type type = Type::kNil;
  int64_t integer = 0;
  std::string str;                   // kString, kStatus, kError
  std::vector<RedisReply> elements;  // kArray
};

// The status for an error reply `error` (e.g. "OOM command not allowed
// ...") to `what` (e.g. "abexp's Redis script"). Replies that mean Redis
// cannot take writes right now but will again without anyone changing
// abexp's data are UNAVAILABLE, so callers retry or spool: LOADING (still
// reading its AOF after a restart), BUSY (a slow script), OOM (maxmemory
// reached), READONLY (a replica), MASTERDOWN, MISCONF (RDB save failing),
// NOREPLICAS, TRYAGAIN and CLUSTERDOWN. NOPERM (the ACL user may not run a
// command or touch a key) is PERMISSION_DENIED, saying what to grant. Any
// other error reply is INTERNAL.
absl::Status RedisErrorStatus(absl::string_view error, absl::string_view what);

// A Lua script, identified by its SHA1 once loaded.
class RedisScript {
 public:
  explicit RedisScript(std::string source);
  const std::string& source() const { return source_; }
  const std::string& sha1() const { return sha1_; }  // hex

 private:
  std::string source_;
  std::string sha1_;
};

// One command: argv[0] is the command name.
using RedisCommand = std::vector<std::string>;

// One EVALSHA call of a script.
struct RedisScriptCall {
  const RedisScript* script = nullptr;
  std::vector<std::string> keys;
  std::vector<std::string> args;
};

// Where a store sends its commands: one Redis (RedisPool) or a Redis
// Cluster (RedisCluster, redis_cluster.h), which routes each command and
// script call to the master of its key's slot. A store written against this
// works on either as long as every command and script call names its keys
// (argv[1], RedisScriptCall::keys) and each touches one hash slot.
//
// Thread-safe: implementations may be called concurrently.
class RedisClient {
 public:
  virtual ~RedisClient() = default;

  // Prepended to every key abexp writes (RedisOptions::key_prefix).
  virtual const std::string& key_prefix() const = 0;
  // Whether the commands go to a Redis Cluster (several masters).
  virtual bool is_cluster() const = 0;
  // The masters the commands are spread over: 1 for one Redis, the masters
  // of the current slot map on a cluster (at least 1).
  virtual int MasterCount() const = 0;
  // Sends the commands and returns their replies in order; an error reply
  // is a kError reply, not a failed call. UNAVAILABLE or DEADLINE_EXCEEDED
  // when Redis cannot be reached or does not answer in time.
  virtual absl::StatusOr<std::vector<RedisReply>> Pipeline(
      absl::Span<const RedisCommand> commands) = 0;
  // Runs the script calls (EVALSHA, loading scripts where they are missing)
  // and returns their replies in order; errors as Pipeline's, after which
  // some calls may have run: make them idempotent.
  virtual absl::StatusOr<std::vector<RedisReply>> RunScripts(
      absl::Span<const RedisScriptCall> calls) = 0;
};

class RedisPool final : public RedisClient {
 public:
  // Connects the first connection to check the address, user, password
  // and db. Errors: UNAVAILABLE when Redis cannot be reached,
  // PERMISSION_DENIED when AUTH fails, INVALID_ARGUMENT for bad options.
  static absl::StatusOr<std::unique_ptr<RedisPool>> Create(
      RedisOptions options);

  ~RedisPool() override;
  RedisPool(const RedisPool&) = delete;
  RedisPool& operator=(const RedisPool&) = delete;

  const RedisOptions& options() const;
  const std::string& key_prefix() const override;
  bool is_cluster() const override { return false; }
  int MasterCount() const override { return 1; }

  // Sends every command in one round trip and returns their replies in
  // order. A Redis error reply for one command is a kError reply, not a
  // failed call. UNAVAILABLE when the connection fails (the connection is
  // discarded and re-made with backoff on a later call); DEADLINE_EXCEEDED
  // when Redis does not answer in command_timeout.
  absl::StatusOr<std::vector<RedisReply>> Pipeline(
      absl::Span<const RedisCommand> commands) override;

  // Runs the script calls with EVALSHA in one round trip; on NOSCRIPT it
  // loads the script (SCRIPT LOAD) and retries the calls that failed so.
  // A connection's first use of a script sends SCRIPT LOAD ahead of the calls
  // in the same round trip, so after a Redis restart calls are not reordered.
  // INTERNAL when Redis rejects a script's source. After UNAVAILABLE or
  // DEADLINE_EXCEEDED some calls may have run: make them idempotent.
  absl::StatusOr<std::vector<RedisReply>> RunScripts(
      absl::Span<const RedisScriptCall> calls) override;

  // Counts round trips made so far (for tests that show a read's cost does
  // not grow with the data).
  int64_t round_trips() const;
  // Counts commands sent so far (EVALSHA counts as one).
  int64_t commands_sent() const;

 private:
  struct Impl;
  explicit RedisPool(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace abexp

#endif  // ABEXP_SERVER_STORAGE_REDIS_REDIS_CONNECTION_H_
