#include "server/storage/redis/cluster_slots.h"

#include <random>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/storage/redis/redis_connection.h"
#include "server/testing/redis_cluster_process.h"

namespace abexp {
namespace {

using ::abexp::testing::RedisClusterProcess;
using Type = RedisReply::Type;

TEST(ClusterCrc16, MatchesTheSpecificationsCheckValue) {
  // The cluster specification's reference: CRC16("123456789") = 0x31C3.
  EXPECT_EQ(ClusterCrc16("123456789"), 0x31C3);
  EXPECT_EQ(ClusterCrc16(""), 0);
}

TEST(ClusterHashTag, FollowsTheSpecificationsRules) {
  // The specification's examples.
  EXPECT_EQ(ClusterHashTag("{user1000}.following"), "user1000");
  EXPECT_EQ(ClusterHashTag("{user1000}.followers"), "user1000");
  EXPECT_EQ(ClusterHashTag("foo{}{bar}"), "foo{}{bar}");
  EXPECT_EQ(ClusterHashTag("foo{{bar}}zap"), "{bar");
  EXPECT_EQ(ClusterHashTag("foo{bar}{zap}"), "bar");
  // No tag: no '{', no '}' after it, or nothing between.
  EXPECT_EQ(ClusterHashTag("plain"), "plain");
  EXPECT_EQ(ClusterHashTag("a}b{c"), "a}b{c");
  EXPECT_EQ(ClusterHashTag("{}"), "{}");
  EXPECT_EQ(ClusterHashTag("{"), "{");
  // abexp's keys: everything of one experiment phase shares a slot.
  EXPECT_EQ(ClusterKeySlot("abexp:{e:checkout:1}:meta"),
            ClusterKeySlot("abexp:{e:checkout:1}:u:17"));
  EXPECT_EQ(ClusterKeySlot("abexp:{e:checkout:1}:agg"),
            ClusterKeySlot("e:checkout:1"));
}

// Keys whose slot the test asks a real cluster node for: the specification's
// edge cases, then random bytes (with braces likely) of random lengths.
std::vector<std::string> KeysToCheck() {
  std::vector<std::string> keys = {"",
                                   "123456789",
                                   "foo",
                                   "{}",
                                   "{}a",
                                   "a{}",
                                   "{{a}}",
                                   "{{}}",
                                   "a{b}{c}",
                                   "a{{b}}c",
                                   "}{a}",
                                   "{a",
                                   "a}",
                                   "{a}",
                                   "a{b",
                                   "{}{a}",
                                   "{ }",
                                   "{\xff}",
                                   "{user1000}.following",
                                   "foo{}{bar}",
                                   "foo{{bar}}zap",
                                   "foo{bar}{zap}",
                                   "abexp:{e:checkout:1}:meta"};
  keys.push_back(std::string("\0{x}\0", 5));  // with its NUL bytes
  std::mt19937_64 rng(20240617);
  const std::string alphabet = std::string("{}ab\0\xff", 6);
  for (int i = 0; i < 5000; ++i) {
    std::string key;
    const int length = static_cast<int>(rng() % 12);
    for (int j = 0; j < length; ++j) {
      // Half the bytes from a small alphabet full of braces, half any byte.
      key.push_back(rng() % 2 == 0 ? alphabet[rng() % alphabet.size()]
                                   : static_cast<char>(rng() % 256));
    }
    keys.push_back(std::move(key));
  }
  for (int i = 0; i < 1000; ++i) keys.push_back(absl::StrCat("unit-", i));
  return keys;
}

TEST(ClusterKeySlot, AgreesWithClusterKeyslotOfARealNode) {
  auto node = RedisClusterProcess::StartNode();
  ASSERT_TRUE(node.ok()) << node.status();
  RedisOptions options;
  options.port = (*node)->port();
  auto pool = RedisPool::Create(options);
  ASSERT_TRUE(pool.ok()) << pool.status();

  const std::vector<std::string> keys = KeysToCheck();
  std::vector<RedisCommand> commands;
  for (const std::string& key : keys)
    commands.push_back({"CLUSTER", "KEYSLOT", key});
  auto replies = (*pool)->Pipeline(commands);
  ASSERT_TRUE(replies.ok()) << replies.status();
  ASSERT_EQ(replies->size(), keys.size());
  int mismatches = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    const RedisReply& r = (*replies)[i];
    ASSERT_EQ(r.type, Type::kInteger) << r.str;
    if (r.integer != ClusterKeySlot(keys[i]) && ++mismatches <= 10) {
      ADD_FAILURE() << "key \"" << absl::CHexEscape(keys[i])
                    << "\": Redis says slot " << r.integer << ", we say "
                    << ClusterKeySlot(keys[i]);
    }
  }
  EXPECT_EQ(mismatches, 0);
}

// Which of `shards` equal ranges of the slot space holds `slot`, by the
// definition: [j·16384/S, (j+1)·16384/S) with the bounds rounded down.
int RangeOfSlot(int slot, int shards) {
  for (int j = 0; j < shards; ++j) {
    if (slot < static_cast<int64_t>(j + 1) * kClusterSlots / shards) return j;
  }
  return -1;
}

TEST(SpreadShardTag, ShardZeroKeepsTheUnshardedTag) {
  EXPECT_EQ(SpreadShardTag("e:checkout:1", 0, 16), "e:checkout:1");
  EXPECT_EQ(SpreadShardTag("e:checkout:1", 0, 1), "e:checkout:1");
}

TEST(SpreadShardTag, PutsOneShardInEachEqualRangeOfSlots) {
  for (int shards : {2, 3, 7, 16, 100, 1024}) {
    for (int e = 0; e < 20; ++e) {
      const std::string tag0 = absl::StrCat("e:experiment_", e, ":", e % 3);
      std::vector<int> per_range(shards, 0);
      std::vector<std::string> tags;
      for (int k = 0; k < shards; ++k) {
        const std::string tag = SpreadShardTag(tag0, k, shards);
        if (k > 0) {
          EXPECT_TRUE(absl::StartsWith(tag, absl::StrCat(tag0, ":s", k, ".")))
              << tag;
        }
        // The slot a key of the shard really lands in (the key's hash tag).
        const int slot = ClusterKeySlot(absl::StrCat("abexp:{", tag, "}:agg"));
        ++per_range[RangeOfSlot(slot, shards)];
        tags.push_back(tag);
      }
      for (int j = 0; j < shards; ++j) {
        EXPECT_EQ(per_range[j], 1)
            << "range " << j << " of " << shards << " for " << tag0;
      }
      // Every process must choose the same tags.
      EXPECT_EQ(SpreadShardTag(tag0, shards - 1, shards), tags.back());
    }
  }
}

TEST(SpreadShardTag, SpreadsSixteenShardsOverThreeMastersAtLeastFourEach) {
  // The slots `redis-cli --cluster create` gives 3 masters.
  const int first_slot[] = {0, 5461, 10923, kClusterSlots};
  for (int e = 0; e < 200; ++e) {
    const std::string tag0 = absl::StrCat("e:exp", e, ":1");
    int per_master[3] = {0, 0, 0};
    for (int k = 0; k < 16; ++k) {
      const int slot =
          ClusterCrc16(SpreadShardTag(tag0, k, 16)) % kClusterSlots;
      for (int m = 0; m < 3; ++m) {
        if (slot >= first_slot[m] && slot < first_slot[m + 1]) ++per_master[m];
      }
    }
    for (int m = 0; m < 3; ++m) {
      EXPECT_GE(per_master[m], 4) << "master " << m << " of " << tag0;
    }
  }
}

TEST(ClusterNodeAddress, UnknownEndpointsMeanTheHostThatAnswered) {
  EXPECT_EQ(ClusterNodeAddress("10.0.0.5", 7001, "10.0.0.1"), "10.0.0.5:7001");
  EXPECT_EQ(ClusterNodeAddress("", 7001, "10.0.0.1"), "10.0.0.1:7001");
  EXPECT_EQ(ClusterNodeAddress("?", 7001, "10.0.0.1"), "10.0.0.1:7001");
  // Bracketed so that ParseRedisAddress reads it back.
  EXPECT_EQ(ClusterNodeAddress("::1", 7001, "x"), "[::1]:7001");
  RedisOptions parsed;
  ASSERT_TRUE(
      ParseRedisAddress(ClusterNodeAddress("::1", 7001, "x"), &parsed).ok());
  EXPECT_EQ(parsed.host, "::1");
  EXPECT_EQ(parsed.port, 7001);
}

RedisReply Text(std::string s) {
  RedisReply r;
  r.type = Type::kString;
  r.str = std::move(s);
  return r;
}

RedisReply Integer(int64_t n) {
  RedisReply r;
  r.type = Type::kInteger;
  r.integer = n;
  return r;
}

RedisReply Array(std::vector<RedisReply> elements) {
  RedisReply r;
  r.type = Type::kArray;
  r.elements = std::move(elements);
  return r;
}

// A CLUSTER SHARDS reply of one shard: a master at 127.0.0.1:`port` and
// one slot range.
RedisReply OneShard(int64_t first, int64_t last, int64_t port) {
  RedisReply master =
      Array({Text("id"), Text("a1b2"), Text("port"), Integer(port), Text("ip"),
             Text("127.0.0.1"), Text("endpoint"), Text("127.0.0.1"),
             Text("role"), Text("master"), Text("health"), Text("online")});
  return Array({Array({Text("slots"), Array({Integer(first), Integer(last)}),
                       Text("nodes"), Array({master})})});
}

TEST(ParseClusterShards, ReadsTheMastersSlotRanges) {
  auto map = ParseClusterShards(OneShard(100, 200, 7000), "127.0.0.1");
  ASSERT_TRUE(map.ok()) << map.status();
  EXPECT_EQ(map->MasterOf(99), "");
  EXPECT_EQ(map->MasterOf(100), "127.0.0.1:7000");
  EXPECT_EQ(map->MasterOf(200), "127.0.0.1:7000");
  EXPECT_EQ(map->MasterOf(201), "");
}

TEST(ParseClusterShards, RejectsAReplyOfAnotherShapeSayingWhat) {
  auto not_array = ParseClusterShards(Text("OK"), "127.0.0.1");
  EXPECT_EQ(not_array.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(not_array.status().message().find("CLUSTER SHARDS"),
            std::string::npos);

  auto past_the_end =
      ParseClusterShards(OneShard(0, kClusterSlots, 7000), "127.0.0.1");
  EXPECT_EQ(past_the_end.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(past_the_end.status().message().find("0-16384"), std::string::npos)
      << past_the_end.status();
}

}  // namespace
}  // namespace abexp
