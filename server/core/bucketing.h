// Deterministic bucketing: the versioned spec in docs/bucketing.md.
//
// A unit is mapped to one of kNumBuckets buckets by hashing a length-prefixed
// frame of (purpose, salt, unit id) with XXH3-64 and taking the hash modulo
// kNumBuckets. Each purpose hashes independently, so layer membership,
// holdout and variant choice do not correlate.
//
// Thread-safe: every function here is pure.
#ifndef ABEXP_SERVER_CORE_BUCKETING_H_
#define ABEXP_SERVER_CORE_BUCKETING_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace abexp {

// Version of the bucketing spec this code implements. Changing anything in
// this file that alters a bucket requires a new version (and moves users).
inline constexpr absl::string_view kBucketingSpecVersion = "abexp-bucketing-v1";

// 10,000 buckets: 0.01% resolution.
inline constexpr uint32_t kNumBuckets = 10000;

// Longest unit id accepted, in bytes.
inline constexpr size_t kMaxUnitIdBytes = 256;

// What a hash decides. The purpose is part of the hashed bytes.
enum class HashPurpose {
  kVariant,  // which variant of an experiment ("variant")
  kLayer,    // which slice of a layer ("layer")
  kHoldout,  // whether the unit is in the global holdout ("holdout")
  kRollout,  // whether a feature rule's percentage rollout includes the unit
             // ("rollout")
};

// The purpose tag as hashed: "variant", "layer", "holdout", "rollout".
absl::string_view HashPurposeTag(HashPurpose purpose);

// A half-open range of buckets [start, end).
struct BucketRange {
  uint32_t start = 0;
  uint32_t end = 0;

  bool Contains(uint32_t bucket) const {
    return bucket >= start && bucket < end;
  }
  uint32_t size() const { return end > start ? end - start : 0; }
  bool empty() const { return end <= start; }
  bool Overlaps(const BucketRange& o) const {
    return !empty() && !o.empty() && start < o.end && o.start < end;
  }
  bool operator==(const BucketRange& o) const {
    return start == o.start && end == o.end;
  }
};

// The exact bytes hashed: for each of (purpose tag, salt, unit id), its
// length as a 4-byte little-endian unsigned integer followed by its bytes.
std::string HashInput(HashPurpose purpose, absl::string_view salt,
                      absl::string_view unit_id);

// XXH3-64 (seed 0) of HashInput(...), without building a std::string for
// short inputs.
uint64_t BucketHash(HashPurpose purpose, absl::string_view salt,
                    absl::string_view unit_id);

// BucketHash(...) % kNumBuckets.
inline uint32_t Bucket(HashPurpose purpose, absl::string_view salt,
                       absl::string_view unit_id) {
  return static_cast<uint32_t>(BucketHash(purpose, salt, unit_id) %
                               kNumBuckets);
}

// The (purpose tag, salt) fields that start HashInput(purpose, salt, ...),
// which depend on the config only: computed once at config load, they
// leave only the unit id to frame on the hot path.
std::string HashPrefix(HashPurpose purpose, absl::string_view salt);

// BucketHash(purpose, salt, unit_id) and Bucket(...), given
// prefix == HashPrefix(purpose, salt).
uint64_t BucketHashWithPrefix(absl::string_view prefix,
                              absl::string_view unit_id);
inline uint32_t BucketWithPrefix(absl::string_view prefix,
                                 absl::string_view unit_id) {
  return static_cast<uint32_t>(BucketHashWithPrefix(prefix, unit_id) %
                               kNumBuckets);
}

// Every step of one bucketing, for Explain.
struct BucketTrace {
  std::string input;  // raw bytes hashed
  uint64_t hash = 0;
  uint32_t bucket = 0;
};
BucketTrace TraceBucket(HashPurpose purpose, absl::string_view salt,
                        absl::string_view unit_id);

// Variant ranges for integer weights (at least one positive) at a traffic
// share in basis points.
//
// Variant i owns full[i] = [S_i, S_{i+1}) with S_i = floor(kNumBuckets *
// (w_0 + ... + w_{i-1}) / (w_0 + ... + w_{n-1})). At traffic t it serves
// active[i] = [S_i, S_i + floor((S_{i+1} - S_i) * t / 10000)): every range
// grows from a fixed start, so raising traffic only adds units.
struct VariantRanges {
  std::vector<BucketRange> full;
  std::vector<BucketRange> active;
};
// REQUIRES: the sum of weights is positive and below 2^50; traffic_bp <= 10000.
VariantRanges ComputeVariantRanges(const std::vector<uint64_t>& weights,
                                   uint32_t traffic_bp);

// Index of the range containing bucket, or -1.
int FindRange(const std::vector<BucketRange>& ranges, uint32_t bucket);

}  // namespace abexp

#endif  // ABEXP_SERVER_CORE_BUCKETING_H_
