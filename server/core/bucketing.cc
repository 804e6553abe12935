#include "server/core/bucketing.h"

#include <xxhash.h>

#include <array>
#include <cstring>

namespace abexp {
namespace {

// Appends a 4-byte little-endian length and the bytes; returns the new end.
char* AppendField(char* out, absl::string_view field) {
  const uint32_t n = static_cast<uint32_t>(field.size());
  out[0] = static_cast<char>(n & 0xff);
  out[1] = static_cast<char>((n >> 8) & 0xff);
  out[2] = static_cast<char>((n >> 16) & 0xff);
  out[3] = static_cast<char>((n >> 24) & 0xff);
  if (!field.empty()) std::memcpy(out + 4, field.data(), field.size());
  return out + 4 + field.size();
}

size_t FramedSize(absl::string_view tag, absl::string_view salt,
                  absl::string_view unit_id) {
  return 12 + tag.size() + salt.size() + unit_id.size();
}

// Frames of up to this many bytes are built on the stack. Ids are at most
// kMaxUnitIdBytes and salts are short, so longer frames are rare.
constexpr size_t kStackFrameBytes = 512;

}  // namespace

absl::string_view HashPurposeTag(HashPurpose purpose) {
  switch (purpose) {
    case HashPurpose::kVariant:
      return "variant";
    case HashPurpose::kLayer:
      return "layer";
    case HashPurpose::kHoldout:
      return "holdout";
    case HashPurpose::kRollout:
      return "rollout";
  }
  return "variant";
}

std::string HashInput(HashPurpose purpose, absl::string_view salt,
                      absl::string_view unit_id) {
  const absl::string_view tag = HashPurposeTag(purpose);
  std::string out(FramedSize(tag, salt, unit_id), '\0');
  char* p = out.data();
  p = AppendField(p, tag);
  p = AppendField(p, salt);
  AppendField(p, unit_id);
  return out;
}

uint64_t BucketHash(HashPurpose purpose, absl::string_view salt,
                    absl::string_view unit_id) {
  const absl::string_view tag = HashPurposeTag(purpose);
  const size_t size = FramedSize(tag, salt, unit_id);
  std::array<char, kStackFrameBytes> stack;
  if (size <= stack.size()) {
    char* p = stack.data();
    p = AppendField(p, tag);
    p = AppendField(p, salt);
    AppendField(p, unit_id);
    return XXH3_64bits(stack.data(), size);
  }
  const std::string input = HashInput(purpose, salt, unit_id);
  return XXH3_64bits(input.data(), input.size());
}

std::string HashPrefix(HashPurpose purpose, absl::string_view salt) {
  const absl::string_view tag = HashPurposeTag(purpose);
  std::string out(8 + tag.size() + salt.size(), '\0');
  AppendField(AppendField(out.data(), tag), salt);
  return out;
}

uint64_t BucketHashWithPrefix(absl::string_view prefix,
                              absl::string_view unit_id) {
  const size_t size = prefix.size() + 4 + unit_id.size();
  std::array<char, kStackFrameBytes> stack;
  if (size <= stack.size()) {
    std::memcpy(stack.data(), prefix.data(), prefix.size());
    AppendField(stack.data() + prefix.size(), unit_id);
    return XXH3_64bits(stack.data(), size);
  }
  std::string input(size, '\0');
  std::memcpy(input.data(), prefix.data(), prefix.size());
  AppendField(input.data() + prefix.size(), unit_id);
  return XXH3_64bits(input.data(), input.size());
}

BucketTrace TraceBucket(HashPurpose purpose, absl::string_view salt,
                        absl::string_view unit_id) {
  BucketTrace trace;
  trace.input = HashInput(purpose, salt, unit_id);
  trace.hash = XXH3_64bits(trace.input.data(), trace.input.size());
  trace.bucket = static_cast<uint32_t>(trace.hash % kNumBuckets);
  return trace;
}

VariantRanges ComputeVariantRanges(const std::vector<uint64_t>& weights,
                                   uint32_t traffic_bp) {
  uint64_t total = 0;
  for (uint64_t w : weights) total += w;
  VariantRanges ranges;
  ranges.full.reserve(weights.size());
  ranges.active.reserve(weights.size());
  uint64_t cumulative = 0;
  for (uint64_t w : weights) {
    const uint32_t start =
        static_cast<uint32_t>(kNumBuckets * cumulative / total);
    cumulative += w;
    const uint32_t end =
        static_cast<uint32_t>(kNumBuckets * cumulative / total);
    const uint32_t active_len =
        static_cast<uint32_t>(uint64_t{end - start} * traffic_bp / kNumBuckets);
    ranges.full.push_back({start, end});
    ranges.active.push_back({start, start + active_len});
  }
  return ranges;
}

int FindRange(const std::vector<BucketRange>& ranges, uint32_t bucket) {
  for (size_t i = 0; i < ranges.size(); ++i) {
    if (ranges[i].Contains(bucket)) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace abexp
