#include "server/testing/redis_cluster_process.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/testing/server_process.h"

namespace abexp::testing {

// The cluster bus listens on a second free port (cluster-port), so that the
// default, port + 10000, cannot land past 65535 or on a busy port.
absl::StatusOr<std::unique_ptr<RedisProcess>> RedisClusterProcess::StartNode(
    const RedisClusterProcessOptions& options) {
  absl::Status last;
  for (int attempt = 0; attempt < 5; ++attempt) {
    absl::StatusOr<int> bus_port = PickFreeLoopbackPort();
    if (!bus_port.ok()) return bus_port.status();
    RedisProcessOptions node;
    node.extra_args = {
        "--cluster-enabled",
        "yes",
        "--cluster-port",
        absl::StrCat(*bus_port),
        "--cluster-node-timeout",
        absl::StrCat(absl::ToInt64Milliseconds(options.node_timeout)),
        "--cluster-require-full-coverage",
        options.require_full_coverage ? "yes" : "no",
    };
    node.extra_args.insert(node.extra_args.end(), options.extra_args.begin(),
                           options.extra_args.end());
    absl::StatusOr<std::unique_ptr<RedisProcess>> process =
        RedisProcess::Start(std::move(node));
    if (process.ok()) return process;
    last = process.status();
    if (!absl::StrContains(last.message(), "Address already in use")) break;
  }
  return last;
}

absl::StatusOr<std::unique_ptr<RedisClusterProcess>> RedisClusterProcess::Start(
    RedisClusterProcessOptions options) {
  if (options.masters < 3) {
    return absl::InvalidArgumentError(
        "redis-cli --cluster create needs at least 3 masters");
  }
  if (FindRedisBinary("redis-cli").empty()) {
    return absl::FailedPreconditionError(
        "redis-cli is not on PATH or in /usr/bin; install redis-tools "
        "(scripts/install-deps.sh does)");
  }
  std::unique_ptr<RedisClusterProcess> cluster(new RedisClusterProcess());
  cluster->options_ = std::move(options);
  const int total =
      cluster->options_.masters * (1 + cluster->options_.replicas_per_master);
  for (int i = 0; i < total; ++i) {
    absl::StatusOr<std::unique_ptr<RedisProcess>> node =
        StartNode(cluster->options_);
    if (!node.ok()) return node.status();
    cluster->nodes_.push_back(*std::move(node));
  }
  if (absl::Status s = cluster->Create(); !s.ok()) return s;
  if (absl::Status s =
          cluster->WaitForState("ok", cluster->options_.startup_timeout);
      !s.ok()) {
    return s;
  }
  return cluster;
}

RedisClusterProcess::~RedisClusterProcess() = default;

std::vector<std::string> RedisClusterProcess::addresses() const {
  std::vector<std::string> out;
  for (const auto& node : nodes_) out.push_back(node->address());
  return out;
}

absl::StatusOr<std::string> RedisClusterProcess::NodeId(int i) const {
  return RedisCommandText(nodes_[i]->port(), {"CLUSTER", "MYID"});
}

absl::StatusOr<bool> RedisClusterProcess::IsMaster(int i) const {
  absl::StatusOr<std::string> info =
      RedisCommandText(nodes_[i]->port(), {"INFO", "replication"});
  if (!info.ok()) return info.status();
  return absl::StrContains(*info, "role:master");
}

absl::Status RedisClusterProcess::Create() {
  std::vector<std::string> argv = {FindRedisBinary("redis-cli"), "--cluster",
                                   "create"};
  for (const std::string& address : addresses()) argv.push_back(address);
  argv.push_back("--cluster-replicas");
  argv.push_back(absl::StrCat(options_.replicas_per_master));
  argv.push_back("--cluster-yes");
  std::string out;
  std::string err;
  absl::StatusOr<int> code =
      RunProcess(argv, &out, &err, options_.startup_timeout);
  if (!code.ok()) return code.status();
  if (*code != 0) {
    return absl::UnavailableError(absl::StrCat("`", absl::StrJoin(argv, " "),
                                               "` exited with ", *code,
                                               "; it said:\n", out, err));
  }
  return absl::OkStatus();
}

absl::Status RedisClusterProcess::WaitForState(absl::string_view state,
                                               absl::Duration timeout) {
  const std::string want = absl::StrCat("cluster_state:", state);
  const absl::Time deadline = absl::Now() + timeout;
  std::string last;
  while (true) {
    bool all = true;
    for (const auto& node : nodes_) {
      if (node->pid() < 0) continue;  // killed by the test
      absl::StatusOr<std::string> info =
          RedisCommandText(node->port(), {"CLUSTER", "INFO"});
      const bool reached =
          info.ok() && absl::StrContains(*info, want) &&
          (state != "ok" ||
           absl::StrContains(*info, "cluster_slots_assigned:16384"));
      if (!reached) {
        all = false;
        last = absl::StrCat(node->address(), ": ",
                            info.ok() ? *info : info.status().ToString());
        break;
      }
    }
    if (all) return absl::OkStatus();
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "the Redis Cluster did not reach cluster_state:", state, " within ",
          absl::FormatDuration(timeout), "; last CLUSTER INFO of ", last));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

}  // namespace abexp::testing
