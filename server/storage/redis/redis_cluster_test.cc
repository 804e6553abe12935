#include "server/storage/redis/redis_cluster.h"

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/storage/redis/cluster_slots.h"
#include "server/testing/redis_cluster_process.h"
#include "server/testing/redis_process.h"

namespace abexp {
namespace {

using ::abexp::testing::RedisClusterProcess;
using ::abexp::testing::RedisClusterProcessOptions;
using ::abexp::testing::RedisCommandText;
using ::abexp::testing::RedisProcess;
using ::testing::HasSubstr;
using Type = RedisReply::Type;

RedisClusterOptions ClientOptions(const RedisClusterProcess& cluster) {
  RedisClusterOptions o;
  o.seeds = {cluster.addresses()[0]};
  o.node.pool_size = 4;
  o.node.initial_backoff = absl::Milliseconds(20);
  o.node.max_backoff = absl::Milliseconds(200);
  // Long, so that only redirects update the map unless a test shortens it.
  o.refresh_interval = absl::Minutes(10);
  return o;
}

class RedisClusterTest : public ::testing::Test {
 protected:
  void SetUp() override { StartCluster({}); }

  void StartCluster(RedisClusterProcessOptions options) {
    auto cluster = RedisClusterProcess::Start(std::move(options));
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = *std::move(cluster);
  }

  std::unique_ptr<RedisCluster> Connect(RedisClusterOptions options) {
    auto client = RedisCluster::Create(std::move(options));
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  std::unique_ptr<RedisCluster> ConnectWithCommandTimeout(
      absl::Duration timeout) {
    RedisClusterOptions options = ClientOptions(*cluster_);
    options.node.command_timeout = timeout;
    return Connect(std::move(options));
  }

  // The cluster's node index of a "host:port" address.
  int NodeIndex(const std::string& address) const {
    const std::vector<std::string> all = cluster_->addresses();
    return static_cast<int>(std::find(all.begin(), all.end(), address) -
                            all.begin());
  }

  int Port(int node) { return cluster_->node(node).port(); }

  // A key the client's map puts on `master`, made from `stem`.
  static std::string KeyOn(const RedisCluster& client,
                           const std::string& master, const std::string& stem) {
    for (int i = 0;; ++i) {
      std::string key = absl::StrCat(stem, i);
      if (client.MasterFor(key) == master) return key;
    }
  }

  // Starts moving `slot` from node `from` to node `to`, as redis-cli
  // --cluster reshard does: IMPORTING on the target, MIGRATING on the
  // source.
  void BeginMigration(int slot, int from, int to) {
    auto from_id = cluster_->NodeId(from);
    auto to_id = cluster_->NodeId(to);
    ASSERT_TRUE(from_id.ok() && to_id.ok());
    ASSERT_TRUE(
        RedisCommandText(Port(to), {"CLUSTER", "SETSLOT", absl::StrCat(slot),
                                    "IMPORTING", *from_id})
            .ok());
    ASSERT_TRUE(
        RedisCommandText(Port(from), {"CLUSTER", "SETSLOT", absl::StrCat(slot),
                                      "MIGRATING", *to_id})
            .ok());
  }

  void MigrateKey(const std::string& key, int from, int to) {
    auto migrated = RedisCommandText(
        Port(from),
        {"MIGRATE", "127.0.0.1", absl::StrCat(Port(to)), key, "0", "5000"});
    ASSERT_TRUE(migrated.ok()) << migrated.status();
    ASSERT_EQ(*migrated, "OK");
  }

  // Ends the migration: every master learns that `to` serves `slot`.
  void FinishMigration(int slot, int to) {
    auto to_id = cluster_->NodeId(to);
    ASSERT_TRUE(to_id.ok());
    for (int node : {to, 0, 1, 2}) {
      auto set = RedisCommandText(
          Port(node),
          {"CLUSTER", "SETSLOT", absl::StrCat(slot), "NODE", *to_id});
      ASSERT_TRUE(set.ok()) << set.status();
    }
  }

  // Writes two keys `a` = "1" and `b` = "2" of one slot of node 1, and
  // moves `a` alone to node 0 in the middle of a migration of the slot, so
  // that a command on both answers TRYAGAIN.
  void SplitASlot(RedisCluster& client, std::string& a, std::string& b) {
    const std::string tag = KeyOn(client, cluster_->addresses()[1], "split-");
    a = absl::StrCat("{", tag, "}a");
    b = absl::StrCat("{", tag, "}b");
    ASSERT_TRUE(client.Pipeline({{"SET", a, "1"}, {"SET", b, "2"}}).ok());
    BeginMigration(ClusterKeySlot(a), 1, 0);
    MigrateKey(a, 1, 0);
  }

  std::unique_ptr<RedisClusterProcess> cluster_;
};

RedisReply Get(RedisCluster& client, const std::string& key) {
  auto replies = client.Pipeline({{"GET", key}});
  EXPECT_TRUE(replies.ok()) << replies.status();
  return replies.ok() ? (*replies)[0] : RedisReply{};
}

TEST_F(RedisClusterTest, ReadsAMapOfThreeMastersCoveringEverySlot) {
  auto client = Connect(ClientOptions(*cluster_));
  ASSERT_NE(client, nullptr);
  std::vector<std::string> masters = client->Masters();
  std::vector<std::string> nodes = cluster_->addresses();
  std::sort(masters.begin(), masters.end());
  std::sort(nodes.begin(), nodes.end());
  EXPECT_EQ(masters, nodes);
}

TEST_F(RedisClusterTest, ShardsAndSlotsRepliesGiveTheSameMap) {
  RedisOptions o;
  o.port = Port(1);
  auto pool = RedisPool::Create(o);
  ASSERT_TRUE(pool.ok()) << pool.status();
  auto replies =
      (*pool)->Pipeline({{"CLUSTER", "SHARDS"}, {"CLUSTER", "SLOTS"}});
  ASSERT_TRUE(replies.ok()) << replies.status();
  auto shards = ParseClusterShards((*replies)[0], "127.0.0.1");
  auto slots = ParseClusterSlots((*replies)[1], "127.0.0.1");
  ASSERT_TRUE(shards.ok()) << shards.status();
  ASSERT_TRUE(slots.ok()) << slots.status();
  for (int slot = 0; slot < kClusterSlots; ++slot) {
    ASSERT_NE(shards->MasterOf(slot), "") << slot;
    ASSERT_EQ(shards->MasterOf(slot), slots->MasterOf(slot)) << slot;
  }
}

TEST_F(RedisClusterTest, EachKeyGoesToTheMasterOfItsSlot) {
  auto client = Connect(ClientOptions(*cluster_));
  ASSERT_NE(client, nullptr);
  std::vector<RedisCommand> sets;
  std::vector<RedisCommand> gets;
  for (int i = 0; i < 300; ++i) {
    sets.push_back({"SET", absl::StrCat("key-", i), absl::StrCat("v", i)});
    gets.push_back({"GET", absl::StrCat("key-", i)});
  }
  auto set = client->Pipeline(sets);
  ASSERT_TRUE(set.ok()) << set.status();
  auto got = client->Pipeline(gets);
  ASSERT_TRUE(got.ok()) << got.status();
  std::vector<int> keys_per_node(cluster_->size());
  for (int i = 0; i < 300; ++i) {
    const std::string key = absl::StrCat("key-", i);
    EXPECT_EQ((*got)[i].str, absl::StrCat("v", i));
    // Only the slot's master answers a plain GET (others say MOVED).
    const int node = NodeIndex(client->MasterFor(key));
    ASSERT_LT(node, cluster_->size()) << key;
    auto direct = RedisCommandText(Port(node), {"GET", key});
    ASSERT_TRUE(direct.ok()) << key << ": " << direct.status();
    EXPECT_EQ(*direct, absl::StrCat("v", i));
    ++keys_per_node[node];
  }
  for (int n : keys_per_node) EXPECT_GT(n, 0);
}

TEST_F(RedisClusterTest, MovedAfterASlotMigrationIsFollowedAndUpdatesTheMap) {
  auto client = Connect(ClientOptions(*cluster_));
  ASSERT_NE(client, nullptr);
  const std::vector<std::string> nodes = cluster_->addresses();
  const std::string key = KeyOn(*client, nodes[0], "moving-");
  ASSERT_TRUE(client->Pipeline({{"SET", key, "before"}}).ok());
  const int slot = ClusterKeySlot(key);
  BeginMigration(slot, 0, 1);
  MigrateKey(key, 0, 1);
  FinishMigration(slot, 1);

  EXPECT_EQ(client->MasterFor(key), nodes[0]);  // stale until redirected
  EXPECT_EQ(Get(*client, key).str, "before");
  EXPECT_EQ(client->MasterFor(key), nodes[1]);
  auto set = client->Pipeline({{"SET", key, "after"}});
  ASSERT_TRUE(set.ok()) << set.status();
  auto direct = RedisCommandText(Port(1), {"GET", key});
  ASSERT_TRUE(direct.ok()) << direct.status();
  EXPECT_EQ(*direct, "after");
}

TEST_F(RedisClusterTest, TheMapIsReadAgainPeriodically) {
  RedisClusterOptions options = ClientOptions(*cluster_);
  options.refresh_interval = absl::Milliseconds(100);
  auto client = Connect(options);
  ASSERT_NE(client, nullptr);
  const std::vector<std::string> nodes = cluster_->addresses();
  const std::string key = KeyOn(*client, nodes[2], "refresh-");
  const int slot = ClusterKeySlot(key);
  BeginMigration(slot, 2, 0);
  FinishMigration(slot, 0);
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (client->MasterFor(key) != nodes[0] && absl::Now() < deadline)
    absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(client->MasterFor(key), nodes[0]);
}

TEST_F(RedisClusterTest, AskDuringAMigrationIsFollowedForCommandsAndScripts) {
  auto client = Connect(ClientOptions(*cluster_));
  ASSERT_NE(client, nullptr);
  const std::vector<std::string> nodes = cluster_->addresses();
  const std::string tag = KeyOn(*client, nodes[0], "asking-");
  const std::string moved = absl::StrCat("{", tag, "}moved");
  const std::string stays = absl::StrCat("{", tag, "}stays");
  const std::string fresh = absl::StrCat("{", tag, "}fresh");
  ASSERT_TRUE(
      client->Pipeline({{"SET", moved, "m"}, {"SET", stays, "s"}}).ok());
  const int slot = ClusterKeySlot(moved);
  BeginMigration(slot, 0, 2);
  MigrateKey(moved, 0, 2);

  // The source no longer has `moved` and answers ASK; the target serves it
  // only after ASKING (else it would answer MOVED back to the source).
  auto got = client->Pipeline({{"GET", moved}, {"GET", stays}});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ((*got)[0].str, "m");
  EXPECT_EQ((*got)[1].str, "s");
  // A new key of a migrating slot is written on the target.
  ASSERT_TRUE(client->Pipeline({{"SET", fresh, "f"}}).ok());
  RedisOptions target;
  target.port = Port(2);
  auto target_pool = RedisPool::Create(target);
  ASSERT_TRUE(target_pool.ok());
  auto on_target = (*target_pool)->Pipeline({{"ASKING"}, {"GET", fresh}});
  ASSERT_TRUE(on_target.ok()) << on_target.status();
  EXPECT_EQ((*on_target)[1].str, "f");

  RedisScript get("return redis.call('GET', KEYS[1])");
  auto scripted =
      client->RunScripts({{&get, {moved}, {}}, {&get, {stays}, {}}});
  ASSERT_TRUE(scripted.ok()) << scripted.status();
  EXPECT_EQ((*scripted)[0].str, "m");
  EXPECT_EQ((*scripted)[1].str, "s");
  // ASK is for one command: the map still names the source.
  EXPECT_EQ(client->MasterFor(moved), nodes[0]);
}

TEST_F(RedisClusterTest, TryAgainForKeysSplitByAMigrationEndsInUnavailable) {
  auto client = ConnectWithCommandTimeout(absl::Milliseconds(300));
  ASSERT_NE(client, nullptr);
  std::string a, b;
  SplitASlot(*client, a, b);
  const std::vector<std::string> nodes = cluster_->addresses();

  auto split = client->Pipeline({{"MGET", a, b}});
  EXPECT_EQ(split.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(split.status().message(), HasSubstr("TRYAGAIN"));
  EXPECT_THAT(split.status().message(), HasSubstr(nodes[1]));
}

TEST_F(RedisClusterTest, TryAgainIsRetriedUntilTheMigrationMovesTheLastKey) {
  auto client = ConnectWithCommandTimeout(absl::Seconds(30));
  ASSERT_NE(client, nullptr);
  std::string a, b;
  SplitASlot(*client, a, b);

  absl::StatusOr<std::vector<RedisReply>> result;
  std::thread reader([&] { result = client->Pipeline({{"MGET", a, b}}); });
  // Once the source has answered TRYAGAIN, move the other key.
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  bool tried = false;
  while (!tried && absl::Now() < deadline) {
    auto stats = RedisCommandText(Port(1), {"INFO", "errorstats"});
    tried = stats.ok() && absl::StrContains(*stats, "errorstat_TRYAGAIN");
    if (!tried) absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_TRUE(tried);
  MigrateKey(b, 1, 0);
  reader.join();
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ((*result)[0].elements.size(), 2u);
  EXPECT_EQ((*result)[0].elements[0].str, "1");
  EXPECT_EQ((*result)[0].elements[1].str, "2");
}

TEST_F(RedisClusterTest, ScriptsRunOnEachMasterAndReloadThereAfterAFlush) {
  auto client = Connect(ClientOptions(*cluster_));
  ASSERT_NE(client, nullptr);
  const std::vector<std::string> nodes = cluster_->addresses();
  RedisScript incr("return redis.call('INCR', KEYS[1])");
  std::vector<RedisScriptCall> calls;
  for (const std::string& node : nodes)
    calls.push_back({&incr, {KeyOn(*client, node, "counter-")}, {}});
  auto first = client->RunScripts(calls);
  ASSERT_TRUE(first.ok()) << first.status();
  for (const RedisReply& r : *first) EXPECT_EQ(r.integer, 1);
  for (int node = 0; node < 3; ++node) {
    auto flushed = RedisCommandText(Port(node), {"SCRIPT", "FLUSH"});
    ASSERT_TRUE(flushed.ok()) << flushed.status();
  }
  auto second = client->RunScripts(calls);
  ASSERT_TRUE(second.ok()) << second.status();
  for (const RedisReply& r : *second) EXPECT_EQ(r.integer, 2);
}

TEST_F(RedisClusterTest, CallsThatCannotBeRoutedAreRefusedSendingNothing) {
  auto client = Connect(ClientOptions(*cluster_));
  ASSERT_NE(client, nullptr);
  auto no_key = client->Pipeline({{"PING"}});
  EXPECT_EQ(no_key.status().code(), absl::StatusCode::kInvalidArgument);
  auto script = client->Pipeline({{"EVALSHA", "abc", "1", "k"}});
  EXPECT_EQ(script.status().code(), absl::StatusCode::kInvalidArgument);
  RedisScript get("return redis.call('GET', KEYS[1])");
  auto two_slots = client->RunScripts({{&get, {"{a}1", "{b}1"}, {}}});
  EXPECT_EQ(two_slots.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(two_slots.status().message(), HasSubstr("hash tag"));
  auto keyless = client->RunScripts({{&get, {}, {}}});
  EXPECT_EQ(keyless.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(RedisClusterTest, AKilledMasterFailsItsKeysNamingItWhileOthersServe) {
  cluster_.reset();
  RedisClusterProcessOptions options;
  options.require_full_coverage = false;
  StartCluster(options);
  auto client = Connect(ClientOptions(*cluster_));
  ASSERT_NE(client, nullptr);
  const std::vector<std::string> nodes = cluster_->addresses();
  const std::string dead_key = KeyOn(*client, nodes[2], "dead-");
  const std::string live_key = KeyOn(*client, nodes[0], "live-");
  ASSERT_TRUE(client->Pipeline({{"SET", dead_key, "x"}}).ok());
  ASSERT_TRUE(cluster_->node(2).Kill().ok());

  for (int attempt = 0; attempt < 2; ++attempt) {
    auto dead = client->Pipeline({{"GET", dead_key}});
    EXPECT_EQ(dead.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(dead.status().message(), HasSubstr(nodes[2]));
  }
  EXPECT_EQ(Get(*client, live_key).type, Type::kNil);
}

TEST_F(RedisClusterTest, ClusterDownIsRetriedThenUnavailableSayingSo) {
  cluster_.reset();
  RedisClusterProcessOptions options;
  options.node_timeout = absl::Milliseconds(500);
  StartCluster(options);
  auto client = ConnectWithCommandTimeout(absl::Milliseconds(300));
  ASSERT_NE(client, nullptr);
  const std::string live_key =
      KeyOn(*client, cluster_->addresses()[0], "live-");
  ASSERT_TRUE(cluster_->node(2).Kill().ok());
  ASSERT_TRUE(cluster_->WaitForState("fail", absl::Seconds(30)).ok());

  auto down = client->Pipeline({{"GET", live_key}});
  EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(down.status().message(), HasSubstr("CLUSTERDOWN"));
}

TEST_F(RedisClusterTest, CreateSaysWhatIsWrongWithTheSeeds) {
  RedisClusterOptions options = ClientOptions(*cluster_);
  options.seeds = {"no-port"};
  EXPECT_EQ(RedisCluster::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);

  auto plain = RedisProcess::Start();
  ASSERT_TRUE(plain.ok()) << plain.status();
  options.seeds = {(*plain)->address()};
  auto not_cluster = RedisCluster::Create(options);
  EXPECT_EQ(not_cluster.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(not_cluster.status().message(), HasSubstr("not a cluster node"));

  auto lone = RedisClusterProcess::StartNode();
  ASSERT_TRUE(lone.ok()) << lone.status();
  options.seeds = {(*lone)->address()};
  auto uncreated = RedisCluster::Create(options);
  EXPECT_EQ(uncreated.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(uncreated.status().message(), HasSubstr("redis-cli --cluster"));

  const std::string gone = (*plain)->address();
  ASSERT_TRUE((*plain)->Kill().ok());
  options.seeds = {gone};
  auto unreachable = RedisCluster::Create(options);
  EXPECT_EQ(unreachable.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(unreachable.status().message(), HasSubstr(gone));

  // One reachable seed is enough.
  options.seeds = {gone, cluster_->addresses()[1]};
  auto client = RedisCluster::Create(options);
  EXPECT_TRUE(client.ok()) << client.status();
}

}  // namespace
}  // namespace abexp
