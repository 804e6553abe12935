#include "server/storage/redis/cluster_slots.h"

#include <random>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
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
