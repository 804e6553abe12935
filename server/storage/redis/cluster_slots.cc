#include "server/storage/redis/cluster_slots.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace abexp {
namespace {

// The CRC table of polynomial 0x1021, most significant bit first.
constexpr std::array<uint16_t, 256> MakeCrc16Table() {
  std::array<uint16_t, 256> table{};
  for (int byte = 0; byte < 256; ++byte) {
    uint16_t crc = static_cast<uint16_t>(byte << 8);
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000) != 0 ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                                : static_cast<uint16_t>(crc << 1);
    }
    table[byte] = crc;
  }
  return table;
}

constexpr std::array<uint16_t, 256> kCrc16Table = MakeCrc16Table();

using Type = RedisReply::Type;

absl::Status Malformed(absl::string_view command, absl::string_view what) {
  return absl::InternalError(
      absl::StrCat("the cluster's ", command, " reply is malformed (", what,
                   "); is this a Redis Cluster node of Redis 6 or later?"));
}

// Records that `address` serves slots [first, last].
absl::Status AddRange(SlotMap& map, int64_t first, int64_t last,
                      const std::string& address, absl::string_view command) {
  if (first < 0 || last >= kClusterSlots || first > last) {
    return Malformed(command, absl::StrFormat("slot range %d-%d is not within "
                                              "0-16383",
                                              first, last));
  }
  for (int64_t slot = first; slot <= last; ++slot)
    map.Assign(static_cast<int>(slot), address);
  return absl::OkStatus();
}

// The value after `field` in a RESP2 map reply (a flat key/value array),
// or null.
const RedisReply* Field(const RedisReply& map, absl::string_view field) {
  if (map.type != Type::kArray) return nullptr;
  for (size_t i = 0; i + 1 < map.elements.size(); i += 2) {
    const RedisReply& key = map.elements[i];
    if ((key.type == Type::kString || key.type == Type::kStatus) &&
        key.str == field) {
      return &map.elements[i + 1];
    }
  }
  return nullptr;
}

bool IsText(const RedisReply* r) {
  return r != nullptr && (r->type == Type::kString || r->type == Type::kStatus);
}

// The address of one node of a CLUSTER SHARDS shard.
absl::StatusOr<std::string> ShardNodeAddress(const RedisReply& node,
                                             absl::string_view asked_host) {
  const RedisReply* port = Field(node, "port");
  if (port == nullptr || port->type != Type::kInteger)
    return Malformed("CLUSTER SHARDS", "a node has no integer port");
  const RedisReply* endpoint = Field(node, "endpoint");
  const RedisReply* ip = Field(node, "ip");
  absl::string_view host;
  if (IsText(endpoint) && !endpoint->str.empty() && endpoint->str != "?") {
    host = endpoint->str;
  } else if (IsText(ip)) {
    host = ip->str;
  }
  return ClusterNodeAddress(host, port->integer, asked_host);
}

}  // namespace

uint16_t ClusterCrc16(absl::string_view data) {
  uint16_t crc = 0;
  for (unsigned char byte : data) {
    crc = static_cast<uint16_t>((crc << 8) ^
                                kCrc16Table[((crc >> 8) ^ byte) & 0xff]);
  }
  return crc;
}

absl::string_view ClusterHashTag(absl::string_view key) {
  const size_t open = key.find('{');
  if (open == absl::string_view::npos) return key;
  const size_t close = key.find('}', open + 1);
  if (close == absl::string_view::npos || close == open + 1) return key;
  return key.substr(open + 1, close - open - 1);
}

int ClusterKeySlot(absl::string_view key) {
  return ClusterCrc16(ClusterHashTag(key)) & (kClusterSlots - 1);
}

namespace {

// The first slot of range `range` of `ranges` equal ranges.
int RangeStart(int range, int ranges) {
  return static_cast<int>(int64_t{range} * kClusterSlots / ranges);
}

}  // namespace

std::string SpreadShardTag(absl::string_view tag0, int shard, int shards) {
  if (shard == 0) return std::string(tag0);
  // The range of shard 0's slot is taken; shard k gets the k-th of the rest.
  const int slot0 = ClusterCrc16(tag0) & (kClusterSlots - 1);
  int range0 = 0;
  while (range0 + 1 < shards && RangeStart(range0 + 1, shards) <= slot0)
    ++range0;
  const int range = shard - 1 < range0 ? shard - 1 : shard;
  const int first = RangeStart(range, shards);
  const int end = RangeStart(range + 1, shards);
  const std::string stem = absl::StrCat(tag0, ":s", shard, ".");
  // CRC16 spreads these tags evenly, so a range of 16384/S slots is hit
  // after about S tries; 1024 shards need a few thousand at most.
  for (int64_t salt = 0;; ++salt) {
    std::string tag = absl::StrCat(stem, salt);
    const int slot = ClusterCrc16(tag) & (kClusterSlots - 1);
    if (slot >= first && slot < end) return tag;
  }
}

const std::string& SlotMap::MasterOf(int slot) const {
  static const std::string* const kNone = new std::string();
  const int16_t index = owner[slot];
  return index < 0 ? *kNone : masters[index];
}

void SlotMap::Assign(int slot, const std::string& address) {
  auto it = std::find(masters.begin(), masters.end(), address);
  if (it == masters.end()) it = masters.insert(masters.end(), address);
  owner[slot] = static_cast<int16_t>(it - masters.begin());
}

std::string ClusterNodeAddress(absl::string_view endpoint, int64_t port,
                               absl::string_view asked_host) {
  absl::string_view host =
      endpoint.empty() || endpoint == "?" ? asked_host : endpoint;
  if (host.find(':') != absl::string_view::npos && host.front() != '[')
    return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

absl::StatusOr<SlotMap> ParseClusterShards(const RedisReply& reply,
                                           absl::string_view asked_host) {
  static constexpr absl::string_view kCommand = "CLUSTER SHARDS";
  if (reply.type != Type::kArray) return Malformed(kCommand, "not an array");
  SlotMap map;
  for (const RedisReply& shard : reply.elements) {
    const RedisReply* slots = Field(shard, "slots");
    const RedisReply* nodes = Field(shard, "nodes");
    if (slots == nullptr || slots->type != Type::kArray || nodes == nullptr ||
        nodes->type != Type::kArray || slots->elements.size() % 2 != 0) {
      return Malformed(kCommand,
                       "a shard lacks its 'slots' pairs or its 'nodes'");
    }
    const RedisReply* master = nullptr;
    for (const RedisReply& node : nodes->elements) {
      const RedisReply* role = Field(node, "role");
      if (IsText(role) && role->str == "master") master = &node;
    }
    if (master == nullptr) continue;
    absl::StatusOr<std::string> address = ShardNodeAddress(*master, asked_host);
    if (!address.ok()) return address.status();
    for (size_t i = 0; i < slots->elements.size(); i += 2) {
      const RedisReply& first = slots->elements[i];
      const RedisReply& last = slots->elements[i + 1];
      if (first.type != Type::kInteger || last.type != Type::kInteger)
        return Malformed(kCommand, "a slot bound is not an integer");
      if (absl::Status s =
              AddRange(map, first.integer, last.integer, *address, kCommand);
          !s.ok()) {
        return s;
      }
    }
  }
  return map;
}

absl::StatusOr<SlotMap> ParseClusterSlots(const RedisReply& reply,
                                          absl::string_view asked_host) {
  static constexpr absl::string_view kCommand = "CLUSTER SLOTS";
  if (reply.type != Type::kArray) return Malformed(kCommand, "not an array");
  SlotMap map;
  for (const RedisReply& range : reply.elements) {
    if (range.type != Type::kArray || range.elements.size() < 3 ||
        range.elements[0].type != Type::kInteger ||
        range.elements[1].type != Type::kInteger) {
      return Malformed(kCommand, "a range lacks its bounds or its master");
    }
    const RedisReply& master = range.elements[2];
    if (master.type != Type::kArray || master.elements.size() < 2 ||
        master.elements[1].type != Type::kInteger) {
      return Malformed(kCommand, "a master lacks its endpoint and port");
    }
    // A nil endpoint means "unknown": the host that answered.
    const RedisReply& endpoint = master.elements[0];
    const std::string address =
        ClusterNodeAddress(IsText(&endpoint) ? absl::string_view(endpoint.str)
                                             : absl::string_view(),
                           master.elements[1].integer, asked_host);
    if (absl::Status s = AddRange(map, range.elements[0].integer,
                                  range.elements[1].integer, address, kCommand);
        !s.ok()) {
      return s;
    }
  }
  return map;
}

}  // namespace abexp
