// Redis Cluster's key space: which of the 16384 hash slots a key belongs to,
// and which master serves each slot (the slot map a client reads with
// CLUSTER SHARDS, or CLUSTER SLOTS before Redis 7).
//
// A key's slot is CRC16 (the XMODEM variant: polynomial 0x1021, initial
// value 0, no reflection; CRC16("123456789") is 0x31C3) of the key modulo
// 16384. A hash tag narrows what is hashed: when the key has a '{' and,
// after it, a '}' with at least one byte between the two, only the bytes
// between the first '{' and the first '}' after it are hashed. So
// "{user1000}.following" and "{user1000}.followers" share a slot, while
// "foo{}{bar}" hashes whole (the first tag is empty) and "foo{{bar}}"
// hashes "{bar".
//
// Thread-safe: the functions are pure; a SlotMap is a value.
#ifndef ABEXP_SERVER_STORAGE_REDIS_CLUSTER_SLOTS_H_
#define ABEXP_SERVER_STORAGE_REDIS_CLUSTER_SLOTS_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/storage/redis/redis_connection.h"

namespace abexp {

inline constexpr int kClusterSlots = 16384;

// CRC16-XMODEM of `data`, as the cluster specification defines it.
uint16_t ClusterCrc16(absl::string_view data);

// The part of `key` that decides its slot: the hash tag when it has a
// non-empty one, else the whole key.
absl::string_view ClusterHashTag(absl::string_view key);

// The slot of `key`, 0 to 16383: CLUSTER KEYSLOT's answer.
int ClusterKeySlot(absl::string_view key);

// The hash tag of shard `shard` of `shards` key spaces whose shard 0 has
// the tag `tag0`, chosen so that the S shards' slots fall one into each of
// S equal ranges of the slot space, [j·16384/S, (j+1)·16384/S): any split
// of the slots into M contiguous ranges of about equal size (what
// `redis-cli --cluster create` and `rebalance` make) then gives each master
// about S/M of the shards, where tags hashed at random leave one master far
// fewer. Shard 0 keeps `tag0` (its range is the one its slot falls in);
// shard k ≥ 1 takes the k-th of the other ranges, in order, with the tag
// "<tag0>:s<k>.<n>" for the smallest n ≥ 0 whose slot lies in that range
// (about S tries). Deterministic: every process picks the same tags.
// REQUIRES: 0 <= shard < shards <= kClusterSlots.
std::string SpreadShardTag(absl::string_view tag0, int shard, int shards);

// Which master serves each slot. Addresses are "host:port".
struct SlotMap {
  // slot -> index into masters, or -1 when no master serves the slot.
  std::array<int16_t, kClusterSlots> owner;
  std::vector<std::string> masters;

  SlotMap() { owner.fill(-1); }
  // The address of the master of `slot`, or "" when none serves it.
  const std::string& MasterOf(int slot) const;
  // Makes `address` the master of `slot` (after a MOVED redirect).
  void Assign(int slot, const std::string& address);
};

// A node's address from a slot map or a redirect: `endpoint` (an IP or
// hostname) and `port`, where an empty or "?" endpoint (the node does not
// know its own address) means the host of the node that answered,
// `asked_host`. IPv6 hosts are bracketed ("[::1]:7000") so that
// ParseRedisAddress reads them back.
std::string ClusterNodeAddress(absl::string_view endpoint, int64_t port,
                               absl::string_view asked_host);

// The slot map in a CLUSTER SHARDS reply (Redis 7+) from the node at
// `asked_host`: for each shard, its master's endpoint (else ip) and port
// and its slot ranges (a shard without a master serves nothing). INTERNAL,
// saying what is malformed, for a reply that is not of that shape.
absl::StatusOr<SlotMap> ParseClusterShards(const RedisReply& reply,
                                           absl::string_view asked_host);

// The same from a CLUSTER SLOTS reply: per slot range, the first node
// listed is its master.
absl::StatusOr<SlotMap> ParseClusterSlots(const RedisReply& reply,
                                          absl::string_view asked_host);

}  // namespace abexp

#endif  // ABEXP_SERVER_STORAGE_REDIS_CLUSTER_SLOTS_H_
