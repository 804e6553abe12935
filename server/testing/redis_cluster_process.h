// Test support: a real Redis Cluster on loopback. Starts masters × (1 +
// replicas_per_master) `redis-server --cluster-enabled yes` processes
// (RedisProcess: each on a free port with its own temp dir, its cluster bus
// on a second free port), joins them with `redis-cli --cluster create`, and
// returns once every node reports cluster_state:ok with all 16384 slots
// assigned. The destructor stops every node and removes their dirs.
//
// Thread safety: the accessors may be called from any thread; node(i)'s
// Kill()/Restart()/Signal() and the destructor must not run concurrently.
#ifndef ABEXP_SERVER_TESTING_REDIS_CLUSTER_PROCESS_H_
#define ABEXP_SERVER_TESTING_REDIS_CLUSTER_PROCESS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/testing/redis_process.h"

namespace abexp::testing {

struct RedisClusterProcessOptions {
  int masters = 3;              // Default: 3
  int replicas_per_master = 0;  // Default: 0
  // cluster-node-timeout: how long a node may be unreachable before the
  // others mark it failed (and a replica takes over). Default: 5s.
  absl::Duration node_timeout = absl::Seconds(5);
  // Whether the cluster stops serving every slot while some slot has no
  // live master (cluster-require-full-coverage). Default: true, Redis's.
  bool require_full_coverage = true;
  // Extra redis-server arguments for every node. Default: none.
  std::vector<std::string> extra_args;
  // How long Start() waits for the cluster to form. Default: 60s.
  absl::Duration startup_timeout = absl::Seconds(60);
};

class RedisClusterProcess {
 public:
  // FAILED_PRECONDITION when redis-server or redis-cli is not installed;
  // UNAVAILABLE, with what redis-cli printed or the last CLUSTER INFO, when
  // the cluster does not form in time.
  static absl::StatusOr<std::unique_ptr<RedisClusterProcess>> Start(
      RedisClusterProcessOptions options = {});

  // One `redis-server --cluster-enabled yes` node with `options`' node
  // settings, joined to no cluster (it answers CLUSTER KEYSLOT, and CLUSTER
  // SHARDS with itself and no slot).
  static absl::StatusOr<std::unique_ptr<RedisProcess>> StartNode(
      const RedisClusterProcessOptions& options = {});

  RedisClusterProcess(const RedisClusterProcess&) = delete;
  RedisClusterProcess& operator=(const RedisClusterProcess&) = delete;
  ~RedisClusterProcess();

  int size() const { return static_cast<int>(nodes_.size()); }
  RedisProcess& node(int i) { return *nodes_[i]; }
  // "127.0.0.1:PORT" of every node, in node order.
  std::vector<std::string> addresses() const;

  // Node i's cluster node id (CLUSTER MYID).
  absl::StatusOr<std::string> NodeId(int i) const;
  // Whether node i is a master now (INFO replication's role).
  absl::StatusOr<bool> IsMaster(int i) const;

  // Waits until every node still running reports cluster_state `state`
  // ("ok" or "fail"), polling CLUSTER INFO until `timeout`. DEADLINE_EXCEEDED
  // with the last CLUSTER INFO otherwise.
  absl::Status WaitForState(absl::string_view state, absl::Duration timeout);

 private:
  RedisClusterProcess() = default;
  // Runs redis-cli --cluster create over every node.
  absl::Status Create();

  RedisClusterProcessOptions options_;
  std::vector<std::unique_ptr<RedisProcess>> nodes_;
};

}  // namespace abexp::testing

#endif  // ABEXP_SERVER_TESTING_REDIS_CLUSTER_PROCESS_H_
