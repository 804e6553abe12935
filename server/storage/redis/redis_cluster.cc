#include "server/storage/redis/redis_cluster.h"

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "server/core/call_scope.h"
#include "server/metrics/metrics.h"
#include "server/storage/redis/cluster_slots.h"
#include "server/storage/redis/fan_out.h"

namespace abexp {
namespace {

using Type = RedisReply::Type;

// A burst of redirects asks for one refresh of the map, not one each.
constexpr absl::Duration kMinRefreshSpacing = absl::Milliseconds(50);

// The host of a "host:port" or "[v6]:port" address.
absl::string_view HostOf(absl::string_view address) {
  absl::string_view host = address.substr(0, address.rfind(':'));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  return host;
}

// Counts one into `counter` of the cluster's metrics, when it has some.
void Count(RedisPoolMetrics* metrics,
           prometheus::Counter* RedisPoolMetrics::*counter) {
  if (metrics != nullptr) (metrics->*counter)->Increment();
}

// What a reply asks the client to do.
struct Redirect {
  enum class Kind { kNone, kMoved, kAsk, kRetry };
  Kind kind = Kind::kNone;
  int slot = -1;
  std::string address;  // kMoved, kAsk
};

// Reads MOVED/ASK ("MOVED 3999 127.0.0.1:6381"; an empty host means the
// host of the node that answered, `asked`), TRYAGAIN and CLUSTERDOWN.
Redirect Classify(const RedisReply& reply, absl::string_view asked) {
  Redirect r;
  if (reply.type != Type::kError) return r;
  const absl::string_view text = reply.str;
  if (absl::StartsWith(text, "TRYAGAIN") ||
      absl::StartsWith(text, "CLUSTERDOWN")) {
    r.kind = Redirect::Kind::kRetry;
    return r;
  }
  const bool moved = absl::StartsWith(text, "MOVED ");
  if (!moved && !absl::StartsWith(text, "ASK ")) return r;
  const std::vector<absl::string_view> parts = absl::StrSplit(text, ' ');
  int port = 0;
  const size_t colon = parts.size() == 3 ? parts[2].rfind(':') : 0;
  if (parts.size() != 3 || !absl::SimpleAtoi(parts[1], &r.slot) || r.slot < 0 ||
      r.slot >= kClusterSlots || colon == absl::string_view::npos ||
      !absl::SimpleAtoi(parts[2].substr(colon + 1), &port)) {
    return r;  // not a redirect we understand: the caller gets the reply
  }
  r.kind = moved ? Redirect::Kind::kMoved : Redirect::Kind::kAsk;
  r.address = ClusterNodeAddress(parts[2].substr(0, colon), port, asked);
  return r;
}

// The items of one round bound for one node, and what it answered.
struct NodeBatch {
  std::string address;
  std::vector<size_t> direct;  // sent as they are
  std::vector<size_t> asked;   // each sent after ASKING
  absl::Status status;
  std::vector<RedisReply> direct_replies;
  std::vector<RedisReply> asked_replies;  // ASKING's reply, then the item's
};

// The items of `all` at `indices` (a node's share of a batch).
template <typename T>
std::vector<T> Pick(absl::Span<const T> all, absl::Span<const size_t> indices) {
  std::vector<T> out;
  out.reserve(indices.size());
  for (size_t i : indices) out.push_back(all[i]);
  return out;
}

bool IsScriptCommand(absl::string_view name) {
  static constexpr absl::string_view kScripts[] = {
      "eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"};
  const std::string lower = absl::AsciiStrToLower(name);
  return std::find(std::begin(kScripts), std::end(kScripts), lower) !=
         std::end(kScripts);
}

}  // namespace

struct RedisCluster::State {
  using SendDirect = absl::FunctionRef<absl::StatusOr<std::vector<RedisReply>>(
      RedisPool&, absl::Span<const size_t>)>;
  using AskForm = absl::FunctionRef<RedisCommand(size_t)>;

  explicit State(const RedisClusterOptions& o)
      : options(o), fan_out(o.fan_out_threads) {}

  const RedisClusterOptions& options;
  // Sends a call's batches to their masters in parallel (SendAll).
  FanOut fan_out;

  absl::Mutex refresh_mu;  // one refresh at a time
  absl::Mutex mu;
  absl::CondVar wake;  // a refresh was requested, or stopping
  SlotMap map ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, std::shared_ptr<RedisPool>> pools
      ABSL_GUARDED_BY(mu);
  bool refresh_wanted ABSL_GUARDED_BY(mu) = false;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  std::thread refresher;

  // The pool of the node at `address`, connecting it on first use.
  absl::StatusOr<std::shared_ptr<RedisPool>> Pool(const std::string& address)
      ABSL_LOCKS_EXCLUDED(mu);
  // The slot map as the node at `address` sees it.
  absl::StatusOr<SlotMap> FetchMap(const std::string& address)
      ABSL_LOCKS_EXCLUDED(mu);
  absl::Status Refresh() ABSL_LOCKS_EXCLUDED(mu, refresh_mu);
  void RequestRefresh() ABSL_LOCKS_EXCLUDED(mu);
  void RefreshLoop() ABSL_LOCKS_EXCLUDED(mu);

  // Routes items (their slots given) until each has a final reply; see the
  // header for redirects and retries.
  absl::StatusOr<std::vector<RedisReply>> Execute(absl::Span<const int> slots,
                                                  SendDirect send,
                                                  AskForm ask_form);
  // Sends every batch, each on its own thread but the first.
  void SendAll(std::vector<NodeBatch>& batches, SendDirect send,
               AskForm ask_form);
  void Send(NodeBatch& batch, SendDirect send, AskForm ask_form);
};

absl::StatusOr<std::shared_ptr<RedisPool>> RedisCluster::State::Pool(
    const std::string& address) {
  {
    absl::MutexLock lock(&mu);
    auto it = pools.find(address);
    if (it != pools.end()) return it->second;
  }
  RedisOptions node = options.node;
  if (absl::Status s = ParseRedisAddress(address, &node); !s.ok()) {
    return absl::InternalError(absl::StrCat(
        "the Redis Cluster named a node whose address abexp cannot read: ",
        s.message()));
  }
  absl::StatusOr<std::unique_ptr<RedisPool>> created =
      RedisPool::Create(std::move(node));
  if (!created.ok()) return created.status();
  absl::MutexLock lock(&mu);
  // Another call may have connected it meanwhile: keep one pool per node.
  auto [it, inserted] = pools.try_emplace(
      address, std::shared_ptr<RedisPool>(*std::move(created)));
  return it->second;
}

absl::StatusOr<SlotMap> RedisCluster::State::FetchMap(
    const std::string& address) {
  absl::StatusOr<std::shared_ptr<RedisPool>> pool = Pool(address);
  if (!pool.ok()) return pool.status();
  bool shards = true;
  absl::StatusOr<std::vector<RedisReply>> replies =
      (*pool)->Pipeline({{"CLUSTER", "SHARDS"}});
  if (replies.ok() && (*replies)[0].type == Type::kError &&
      absl::StrContains(absl::AsciiStrToLower((*replies)[0].str),
                        "unknown subcommand")) {
    shards = false;  // before Redis 7
    replies = (*pool)->Pipeline({{"CLUSTER", "SLOTS"}});
  }
  if (!replies.ok()) return replies.status();
  const RedisReply& reply = (*replies)[0];
  const char* command = shards ? "CLUSTER SHARDS" : "CLUSTER SLOTS";
  if (reply.type == Type::kError) {
    if (absl::StrContains(reply.str, "cluster support disabled")) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "Redis at %s is not a cluster node (%s said: %s); name nodes of a "
          "Redis Cluster, or use a single Redis (--redis) instead",
          address, command, reply.str));
    }
    return RedisErrorStatus(reply.str, absl::StrCat(command, " at ", address));
  }
  absl::StatusOr<SlotMap> map = shards
                                    ? ParseClusterShards(reply, HostOf(address))
                                    : ParseClusterSlots(reply, HostOf(address));
  if (map.ok() && map->masters.empty()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "Redis Cluster node %s knows no master that serves a slot: the "
        "cluster has not been created yet; create it (redis-cli --cluster "
        "create) or name nodes of a cluster that serves its slots",
        address));
  }
  return map;
}

absl::Status RedisCluster::State::Refresh() {
  absl::MutexLock serial(&refresh_mu);
  std::vector<std::string> candidates;
  {
    absl::MutexLock lock(&mu);
    candidates = map.masters;
  }
  for (const std::string& seed : options.seeds) {
    if (std::find(candidates.begin(), candidates.end(), seed) ==
        candidates.end()) {
      candidates.push_back(seed);
    }
  }
  std::vector<std::string> errors;
  absl::Status refusal;  // a node that answered but will not serve a map
  for (const std::string& address : candidates) {
    absl::StatusOr<SlotMap> fetched = FetchMap(address);
    if (fetched.ok()) {
      Count(options.node.metrics, &RedisPoolMetrics::cluster_refreshes);
      absl::MutexLock lock(&mu);
      map = *std::move(fetched);
      // Pools of nodes that are no longer masters (and of seeds) close once
      // the calls that hold them end.
      const std::vector<std::string>& masters = map.masters;
      absl::erase_if(pools, [&](const auto& entry) {
        return std::find(masters.begin(), masters.end(), entry.first) ==
               masters.end();
      });
      return absl::OkStatus();
    }
    if (refusal.ok() && (absl::IsFailedPrecondition(fetched.status()) ||
                         absl::IsPermissionDenied(fetched.status()))) {
      refusal = fetched.status();
    }
    errors.push_back(std::string(fetched.status().message()));
  }
  Count(options.node.metrics, &RedisPoolMetrics::cluster_refresh_failures);
  if (!refusal.ok()) return refusal;
  return absl::UnavailableError(absl::StrCat(
      "no node of the Redis Cluster answered CLUSTER SHARDS (",
      absl::StrJoin(errors, "; "),
      "); check that the seed addresses name reachable cluster nodes"));
}

void RedisCluster::State::RequestRefresh() {
  absl::MutexLock lock(&mu);
  refresh_wanted = true;
  wake.Signal();
}

void RedisCluster::State::RefreshLoop() {
  mu.Lock();
  absl::Time last = absl::Now();
  while (!stopping) {
    const absl::Time next = last + options.refresh_interval;
    while (!stopping && !refresh_wanted && absl::Now() < next)
      wake.WaitWithDeadline(&mu, next);
    if (stopping) break;
    refresh_wanted = false;
    mu.Unlock();
    // A failure keeps the map; the calls that fail meanwhile say why.
    Refresh().IgnoreError();
    mu.Lock();
    last = absl::Now();
    const absl::Time calm =
        last + std::min(kMinRefreshSpacing, options.refresh_interval);
    while (!stopping && absl::Now() < calm) wake.WaitWithDeadline(&mu, calm);
  }
  mu.Unlock();
}

void RedisCluster::State::Send(NodeBatch& batch, SendDirect send,
                               AskForm ask_form) {
  absl::StatusOr<std::shared_ptr<RedisPool>> pool = Pool(batch.address);
  if (!pool.ok()) {
    batch.status = pool.status();
    return;
  }
  if (!batch.direct.empty()) {
    absl::StatusOr<std::vector<RedisReply>> replies =
        send(**pool, batch.direct);
    if (!replies.ok()) {
      batch.status = replies.status();
      return;
    }
    batch.direct_replies = *std::move(replies);
  }
  if (!batch.asked.empty()) {
    // ASKING lets the next command on its connection into an importing
    // slot, so each pair travels together in one pipeline.
    std::vector<RedisCommand> commands;
    for (size_t index : batch.asked) {
      commands.push_back({"ASKING"});
      commands.push_back(ask_form(index));
    }
    absl::StatusOr<std::vector<RedisReply>> replies =
        (*pool)->Pipeline(commands);
    if (!replies.ok()) {
      batch.status = replies.status();
      return;
    }
    batch.asked_replies = *std::move(replies);
  }
}

void RedisCluster::State::SendAll(std::vector<NodeBatch>& batches,
                                  SendDirect send, AskForm ask_form) {
  // One batch's send. The fan-out's threads keep the call's deadline; only
  // the calling thread can ask whether the call was cancelled.
  struct Part {
    State* state;
    NodeBatch* batch;
    SendDirect send;
    AskForm ask_form;
    absl::Time deadline;
    std::thread::id caller;
    void operator()() const {
      if (std::this_thread::get_id() == caller) {
        state->Send(*batch, send, ask_form);
      } else {
        CallScope scope(deadline, nullptr);
        state->Send(*batch, send, ask_form);
      }
    }
  };
  const absl::Time deadline = CallScope::Deadline();
  std::vector<Part> sends;
  sends.reserve(batches.size());
  for (size_t i = 0; i < batches.size(); ++i) {
    sends.push_back({this, &batches[i], send, ask_form, deadline,
                     std::this_thread::get_id()});
  }
  std::vector<absl::FunctionRef<void()>> parts(sends.begin(), sends.end());
  fan_out.RunAll(parts);
}

absl::StatusOr<std::vector<RedisReply>> RedisCluster::State::Execute(
    absl::Span<const int> slots, SendDirect send, AskForm ask_form) {
  struct Item {
    size_t index;
    std::string ask_node;  // after ASK: where to send it with ASKING
  };
  std::vector<RedisReply> out(slots.size());
  std::vector<Item> pending;
  pending.reserve(slots.size());
  for (size_t i = 0; i < slots.size(); ++i) pending.push_back({i, ""});
  const absl::Time give_up = std::min(
      absl::Now() + options.node.command_timeout, CallScope::Deadline());
  absl::Duration backoff = options.initial_retry_backoff;
  int redirect_rounds = 0;
  bool refreshed = false;  // for a slot no master served
  while (!pending.empty()) {
    std::vector<NodeBatch> batches;
    int unserved = -1;
    {
      absl::flat_hash_map<std::string, size_t> batch_of;
      absl::MutexLock lock(&mu);
      for (const Item& item : pending) {
        const bool asked = !item.ask_node.empty();
        const std::string& address =
            asked ? item.ask_node : map.MasterOf(slots[item.index]);
        if (address.empty()) {
          unserved = slots[item.index];
          break;
        }
        auto [it, inserted] = batch_of.try_emplace(address, batches.size());
        if (inserted) {
          batches.emplace_back();
          batches.back().address = address;
        }
        NodeBatch& batch = batches[it->second];
        (asked ? batch.asked : batch.direct).push_back(item.index);
      }
    }
    if (unserved >= 0) {
      if (!refreshed) {
        refreshed = true;
        if (Refresh().ok()) continue;
      }
      return absl::UnavailableError(absl::StrFormat(
          "no master of the Redis Cluster serves slot %d; assign it to one "
          "(redis-cli --cluster fix) so that its keys can be written",
          unserved));
    }

    SendAll(batches, send, ask_form);

    std::vector<Item> next;
    bool redirected = false;
    std::string retry_error;  // the last TRYAGAIN/CLUSTERDOWN, with its node
    for (NodeBatch& batch : batches) {
      if (!batch.status.ok()) {
        RequestRefresh();
        return absl::Status(
            batch.status.code(),
            absl::StrCat("Redis Cluster: ", batch.status.message(),
                         "; abexp re-reads the slot map in case the node's "
                         "slots moved or a replica took its place"));
      }
      const auto handle = [&](size_t index, RedisReply& reply) {
        const Redirect r = Classify(reply, HostOf(batch.address));
        switch (r.kind) {
          case Redirect::Kind::kNone:
            out[index] = std::move(reply);
            return;
          case Redirect::Kind::kMoved: {
            Count(options.node.metrics, &RedisPoolMetrics::cluster_moved);
            absl::MutexLock lock(&mu);
            map.Assign(r.slot, r.address);
            refresh_wanted = true;
            wake.Signal();
            redirected = true;
            next.push_back({index, ""});
            return;
          }
          case Redirect::Kind::kAsk:
            Count(options.node.metrics, &RedisPoolMetrics::cluster_ask);
            redirected = true;
            next.push_back({index, r.address});
            return;
          case Redirect::Kind::kRetry:
            if (absl::StartsWith(reply.str, "CLUSTERDOWN")) {
              Count(options.node.metrics,
                    &RedisPoolMetrics::cluster_clusterdown);
              RequestRefresh();
            } else {
              Count(options.node.metrics, &RedisPoolMetrics::cluster_tryagain);
            }
            retry_error =
                absl::StrFormat("%s answered \"%s\" for slot %d", batch.address,
                                reply.str, slots[index]);
            next.push_back({index, ""});
            return;
        }
      };
      for (size_t j = 0; j < batch.direct.size(); ++j)
        handle(batch.direct[j], batch.direct_replies[j]);
      for (size_t j = 0; j < batch.asked.size(); ++j)
        handle(batch.asked[j], batch.asked_replies[2 * j + 1]);
    }
    pending = std::move(next);
    if (pending.empty()) break;
    if (redirected) {
      if (++redirect_rounds > options.max_redirects) {
        return absl::UnavailableError(absl::StrFormat(
            "Redis Cluster: a command was redirected (MOVED/ASK) more than "
            "%d times; the cluster's slots are moving or its nodes disagree "
            "about them; retry once resharding ends",
            options.max_redirects));
      }
      continue;
    }
    if (CallScope::Cancelled()) {
      return absl::CancelledError(absl::StrCat(
          "the call was cancelled while the Redis Cluster could not serve it "
          "(",
          retry_error, ")"));
    }
    if (absl::Now() + backoff > give_up) {
      return absl::UnavailableError(absl::StrCat(
          "Redis Cluster: ", retry_error,
          " until the command timed out; TRYAGAIN means a slot migration "
          "split the command's keys between two nodes, CLUSTERDOWN that a "
          "slot has no reachable master (check CLUSTER INFO on the nodes); "
          "abexp retries, or spools the writes until it can"));
    }
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, options.max_retry_backoff);
  }
  return out;
}

RedisCluster::RedisCluster(RedisClusterOptions options)
    : options_(std::move(options)), state_(std::make_unique<State>(options_)) {}

RedisCluster::~RedisCluster() {
  {
    absl::MutexLock lock(&state_->mu);
    state_->stopping = true;
    state_->wake.SignalAll();
  }
  if (state_->refresher.joinable()) state_->refresher.join();
}

absl::StatusOr<std::unique_ptr<RedisCluster>> RedisCluster::Create(
    RedisClusterOptions options) {
  if (options.seeds.empty()) {
    return absl::InvalidArgumentError(
        "no Redis Cluster seed node given; name at least one node of the "
        "cluster as host:port");
  }
  for (std::string& seed : options.seeds) {
    RedisOptions parsed;
    if (absl::Status s = ParseRedisAddress(seed, &parsed); !s.ok()) return s;
    seed = ClusterNodeAddress(parsed.host, parsed.port, parsed.host);
  }
  if (options.node.db != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "Redis db %d was given for a Redis Cluster, which only has db 0; "
        "drop the db setting",
        options.node.db));
  }
  if (options.refresh_interval <= absl::ZeroDuration() ||
      options.max_redirects < 0 ||
      options.initial_retry_backoff <= absl::ZeroDuration() ||
      options.max_retry_backoff < options.initial_retry_backoff ||
      options.fan_out_threads < 0) {
    return absl::InvalidArgumentError(
        "Redis Cluster options need refresh_interval > 0, max_redirects >= "
        "0, 0 < initial_retry_backoff <= max_retry_backoff and "
        "fan_out_threads >= 0");
  }
  std::unique_ptr<RedisCluster> cluster(new RedisCluster(std::move(options)));
  if (absl::Status s = cluster->state_->Refresh(); !s.ok()) return s;
  State* state = cluster->state_.get();
  state->refresher = std::thread([state] { state->RefreshLoop(); });
  return cluster;
}

absl::StatusOr<std::vector<RedisReply>> RedisCluster::Pipeline(
    absl::Span<const RedisCommand> commands) {
  std::vector<int> slots;
  slots.reserve(commands.size());
  for (const RedisCommand& command : commands) {
    if (command.size() < 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Redis command '", command.empty() ? "" : command[0],
          "' has no key; on a cluster each command goes to the master of its "
          "key (argv[1])"));
    }
    if (IsScriptCommand(command[0])) {
      return absl::InvalidArgumentError(absl::StrCat(
          command[0], " is routed by its keys, not argv[1]; use RunScripts"));
    }
    slots.push_back(ClusterKeySlot(command[1]));
  }
  if (commands.empty()) return std::vector<RedisReply>();
  const auto send = [&](RedisPool& pool, absl::Span<const size_t> indices) {
    return indices.size() == commands.size()
               ? pool.Pipeline(commands)
               : pool.Pipeline(Pick(commands, indices));
  };
  return state_->Execute(slots, send, [&](size_t i) { return commands[i]; });
}

absl::StatusOr<std::vector<RedisReply>> RedisCluster::RunScripts(
    absl::Span<const RedisScriptCall> calls) {
  std::vector<int> slots;
  slots.reserve(calls.size());
  for (const RedisScriptCall& call : calls) {
    if (call.script == nullptr)
      return absl::InvalidArgumentError("RedisScriptCall has no script");
    if (call.keys.empty()) {
      return absl::InvalidArgumentError(
          "a script call names no key; on a cluster each script runs on the "
          "master of its keys' slot, so pass its keys in KEYS");
    }
    const int slot = ClusterKeySlot(call.keys[0]);
    for (const std::string& key : call.keys) {
      if (ClusterKeySlot(key) != slot) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "a script call's keys '%s' and '%s' are in different cluster "
            "slots (%d and %d); give them one hash tag, e.g. {tag}",
            call.keys[0], key, slot, ClusterKeySlot(key)));
      }
    }
    slots.push_back(slot);
  }
  if (calls.empty()) return std::vector<RedisReply>();
  const auto send = [&](RedisPool& pool, absl::Span<const size_t> indices) {
    return indices.size() == calls.size()
               ? pool.RunScripts(calls)
               : pool.RunScripts(Pick(calls, indices));
  };
  // EVAL carries the source, so an importing node that never saw the
  // script needs no SCRIPT LOAD between ASKING and the call.
  const auto eval = [&](size_t i) {
    const RedisScriptCall& call = calls[i];
    RedisCommand command = {"EVAL", call.script->source(),
                            absl::StrCat(call.keys.size())};
    command.insert(command.end(), call.keys.begin(), call.keys.end());
    command.insert(command.end(), call.args.begin(), call.args.end());
    return command;
  };
  return state_->Execute(slots, send, eval);
}

absl::Status RedisCluster::Refresh() { return state_->Refresh(); }

std::string RedisCluster::MasterFor(absl::string_view key) const {
  absl::MutexLock lock(&state_->mu);
  return state_->map.MasterOf(ClusterKeySlot(key));
}

std::vector<std::string> RedisCluster::Masters() const {
  absl::MutexLock lock(&state_->mu);
  std::vector<std::string> out;
  for (int slot = 0; slot < kClusterSlots; ++slot) {
    const std::string& master = state_->map.MasterOf(slot);
    if (!master.empty() &&
        std::find(out.begin(), out.end(), master) == out.end()) {
      out.push_back(master);
    }
  }
  return out;
}

int RedisCluster::MasterCount() const {
  return std::max<int>(1, static_cast<int>(Masters().size()));
}

}  // namespace abexp
