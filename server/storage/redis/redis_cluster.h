// A Redis Cluster client over RedisPool (hiredis 0.14 has none): one pool
// per master, commands and Lua scripts routed by their keys' hash slot
// (cluster_slots.h), redirects followed.
//
// The slot map comes from CLUSTER SHARDS (CLUSTER SLOTS on Redis 6) of any
// node that answers, the known masters first, then the seeds. It is read at
// Create(), every refresh_interval by a background thread, and soon after
// any redirect, CLUSTERDOWN or lost connection.
//
// A batch (Pipeline, RunScripts) is grouped by master and sent as one
// pipeline per master, the masters' pipelines in parallel (on long-lived
// threads, fan_out.h; fan_out_threads below). Replies then:
//   MOVED slot host:port   the map's entry for the slot is updated at once
//                          and the command sent there (a full refresh
//                          follows in the background);
//   ASK slot host:port     ASKING and the command, pipelined on one
//                          connection to that node, for this command only
//                          (the slot is being migrated);
//   TRYAGAIN, CLUSTERDOWN  the command is retried with a doubling backoff
//                          until command_timeout (or the call's deadline,
//                          CallScope) has passed, then the call fails with
//                          UNAVAILABLE saying why.
// Each master's pool loads scripts into that master and reloads them on
// its NOSCRIPT. The commands of one slot are sent in their order, but a
// redirected command runs after the others of its batch that were not
// redirected; commands of different slots are not ordered.
//
// Thread-safe: all methods may be called concurrently.
#ifndef ABEXP_SERVER_STORAGE_REDIS_REDIS_CLUSTER_H_
#define ABEXP_SERVER_STORAGE_REDIS_REDIS_CLUSTER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "server/storage/redis/redis_connection.h"

namespace abexp {

struct RedisClusterOptions {
  // Nodes to read the slot map from, "host:port" each; any one reachable
  // node of the cluster is enough. Required.
  std::vector<std::string> seeds;
  // Options of the connection pool to each master (user, password,
  // timeouts, pool_size, backoff, key_prefix); host and port are each
  // master's. db must be 0: a cluster has no other.
  RedisOptions node;
  // How often the slot map is read again without any redirect.
  // Default: 10s.
  absl::Duration refresh_interval = absl::Seconds(10);
  // Redirects (MOVED, ASK) one command may follow before the call fails
  // with UNAVAILABLE. Default: 5.
  int max_redirects = 5;
  // The backoff between retries after TRYAGAIN or CLUSTERDOWN doubles from
  // initial to max. Defaults: 10ms, 200ms.
  absl::Duration initial_retry_backoff = absl::Milliseconds(10);
  absl::Duration max_retry_backoff = absl::Milliseconds(200);
  // Threads that send a call's commands to its other masters while the
  // calling thread sends to the first (server/storage/redis/fan_out.h):
  // started when a call finds none idle, kept, at most this many. Past
  // them a call sends to its masters one after another. 0: always one after
  // another. Default: 16, one per storage thread of abexp-server's default.
  int fan_out_threads = 16;
};

class RedisCluster final : public RedisClient {
 public:
  // Reads the slot map from the first seed that answers. Errors:
  // INVALID_ARGUMENT for bad options or seed addresses; FAILED_PRECONDITION
  // when a seed is not a cluster node (cluster-enabled no) or the cluster
  // serves no slot yet; UNAVAILABLE, naming each seed and its error, when
  // none answers; PERMISSION_DENIED when AUTH fails.
  static absl::StatusOr<std::unique_ptr<RedisCluster>> Create(
      RedisClusterOptions options);

  // Stops the refresh thread and closes every connection.
  ~RedisCluster() override;
  RedisCluster(const RedisCluster&) = delete;
  RedisCluster& operator=(const RedisCluster&) = delete;

  const RedisClusterOptions& options() const { return options_; }
  const std::string& key_prefix() const override {
    return options_.node.key_prefix;
  }
  bool is_cluster() const override { return true; }

  // Sends each command to the master of its key's slot, where the key is
  // argv[1] (as in every data command: GET, HGET, HINCRBY, HMGET, MGET ...;
  // a multi-key command's keys must share a slot, else Redis answers
  // CROSSSLOT), and returns the replies in the commands' order. Error
  // replies other than the redirects above are replies, as in
  // RedisPool::Pipeline. INVALID_ARGUMENT, sending nothing, for a command
  // without a key or a script command (EVAL, EVALSHA: use RunScripts).
  // UNAVAILABLE or DEADLINE_EXCEEDED, naming the node, when a master cannot
  // be reached or does not answer, when no master serves a slot, or when
  // redirects or TRYAGAIN/CLUSTERDOWN do not end; some commands may have
  // run then.
  absl::StatusOr<std::vector<RedisReply>> Pipeline(
      absl::Span<const RedisCommand> commands) override;

  // Runs each script call on the master of its keys' slot (all its keys
  // must share one, and there must be at least one: INVALID_ARGUMENT
  // otherwise, sending nothing), with RedisPool::RunScripts per master. A
  // call redirected by ASK is sent as ASKING + EVAL of the source. Errors
  // as Pipeline's.
  absl::StatusOr<std::vector<RedisReply>> RunScripts(
      absl::Span<const RedisScriptCall> calls) override;

  // Reads the slot map again now (as Create does), replacing the current
  // one; the current one stays when no node answers (and the error is
  // returned).
  absl::Status Refresh();

  // The address ("host:port") of the master that serves `key` according to
  // the current map; "" when none does.
  std::string MasterFor(absl::string_view key) const;
  // The masters of the current map.
  std::vector<std::string> Masters() const;
  // Masters().size(), at least 1.
  int MasterCount() const override;

 private:
  struct State;
  explicit RedisCluster(RedisClusterOptions options);

  const RedisClusterOptions options_;
  std::unique_ptr<State> state_;
};

}  // namespace abexp

#endif  // ABEXP_SERVER_STORAGE_REDIS_REDIS_CLUSTER_H_
