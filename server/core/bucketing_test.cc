#include "server/core/bucketing.h"

#include <xxhash.h>

#include <set>
#include <string>

#include "gtest/gtest.h"

namespace abexp {
namespace {

TEST(Bucketing, HashInputIsLengthPrefixedPurposeSaltAndId) {
  const std::string expected = std::string("\x07\x00\x00\x00", 4) + "variant" +
                               std::string("\x04\x00\x00\x00", 4) + "exp1" +
                               std::string("\x02\x00\x00\x00", 4) + "23";
  EXPECT_EQ(HashInput(HashPurpose::kVariant, "exp1", "23"), expected);
}

TEST(Bucketing, FramingCannotCollideAcrossTheSaltIdBoundary) {
  EXPECT_NE(HashInput(HashPurpose::kVariant, "exp1", "23"),
            HashInput(HashPurpose::kVariant, "exp12", "3"));
  EXPECT_NE(HashInput(HashPurpose::kVariant, "", "ab"),
            HashInput(HashPurpose::kVariant, "a", "b"));
}

TEST(Bucketing, EmptyIdIsFramedWithAZeroLength) {
  const std::string input = HashInput(HashPurpose::kLayer, "s", "");
  EXPECT_EQ(input.size(), 4 + 5 + 4 + 1 + 4u);
  EXPECT_EQ(input.substr(input.size() - 4), std::string(4, '\0'));
}

TEST(Bucketing, BucketIsXxh3OfTheFrameModuloTenThousand) {
  const std::string long_id(600, 'x');  // longer than the stack buffer
  for (const std::string& id :
       {std::string("u-1"), std::string("用户42"),
        std::string("\xF0\x9F\x98\x80"), std::string(), long_id}) {
    const std::string input =
        HashInput(HashPurpose::kRollout, "flag.rule0", id);
    const uint64_t expected = XXH3_64bits(input.data(), input.size());
    EXPECT_EQ(BucketHash(HashPurpose::kRollout, "flag.rule0", id), expected);
    EXPECT_EQ(Bucket(HashPurpose::kRollout, "flag.rule0", id),
              expected % 10000);
    const BucketTrace trace =
        TraceBucket(HashPurpose::kRollout, "flag.rule0", id);
    EXPECT_EQ(trace.input, input);
    EXPECT_EQ(trace.hash, expected);
    EXPECT_EQ(trace.bucket, expected % 10000);
  }
}

// Assignment hashes through a prefix computed at config load; it must give
// the bucket of the spec's frame for every purpose, salt and id, including
// empty ones and frames too long for the stack buffer.
TEST(Bucketing, PrecomputedPrefixGivesTheSpecBucket) {
  const std::string long_salt(300, 's');
  const std::string long_id(kMaxUnitIdBytes, 'x');
  for (HashPurpose p : {HashPurpose::kVariant, HashPurpose::kLayer,
                        HashPurpose::kHoldout, HashPurpose::kRollout}) {
    for (const std::string& salt :
         {std::string(), std::string("exp1"), long_salt}) {
      const std::string prefix = HashPrefix(p, salt);
      EXPECT_EQ(prefix + std::string(4, '\0'), HashInput(p, salt, ""));
      for (const std::string& id : {std::string(), std::string("23"),
                                    std::string("u-\0-\t", 5), long_id}) {
        const std::string input = HashInput(p, salt, id);
        const uint64_t expected = XXH3_64bits(input.data(), input.size());
        EXPECT_EQ(BucketHashWithPrefix(prefix, id), expected)
            << salt.size() << " " << id;
        EXPECT_EQ(BucketWithPrefix(prefix, id), expected % 10000);
      }
    }
  }
}

TEST(Bucketing, PurposesAreHashedApart) {
  std::set<uint64_t> hashes;
  for (HashPurpose p : {HashPurpose::kVariant, HashPurpose::kLayer,
                        HashPurpose::kHoldout, HashPurpose::kRollout}) {
    hashes.insert(BucketHash(p, "same-salt", "same-id"));
  }
  EXPECT_EQ(hashes.size(), 4u);
}

TEST(Bucketing, FullTrafficRangesTileTheBucketSpace) {
  const VariantRanges r = ComputeVariantRanges({1, 1, 1}, kNumBuckets);
  ASSERT_EQ(r.full.size(), 3u);
  // floor(10000 * k / 3) for k = 0..3.
  EXPECT_EQ(r.full[0], (BucketRange{0, 3333}));
  EXPECT_EQ(r.full[1], (BucketRange{3333, 6666}));
  EXPECT_EQ(r.full[2], (BucketRange{6666, 10000}));
  EXPECT_EQ(r.active, r.full);
}

TEST(Bucketing, DecimalWeightsSplitByTheirExactShare) {
  // 33.3 / 33.3 / 33.4 scaled by 10^4.
  const VariantRanges r =
      ComputeVariantRanges({333000, 333000, 334000}, kNumBuckets);
  EXPECT_EQ(r.full[0], (BucketRange{0, 3330}));
  EXPECT_EQ(r.full[1], (BucketRange{3330, 6660}));
  EXPECT_EQ(r.full[2], (BucketRange{6660, 10000}));
}

TEST(Bucketing, PartialTrafficKeepsEachRangeStart) {
  const VariantRanges r = ComputeVariantRanges({50, 50}, 2500);
  EXPECT_EQ(r.active[0], (BucketRange{0, 1250}));
  EXPECT_EQ(r.active[1], (BucketRange{5000, 6250}));
}

TEST(Bucketing, ZeroWeightVariantGetsNoBuckets) {
  const VariantRanges r = ComputeVariantRanges({0, 1}, kNumBuckets);
  EXPECT_TRUE(r.full[0].empty());
  EXPECT_EQ(r.full[1], (BucketRange{0, 10000}));
}

TEST(Bucketing, RaisingTrafficNeverMovesAnAssignedUnit) {
  const std::vector<std::vector<uint64_t>> weight_sets = {
      {50, 50},
      {1, 1, 1},
      {10, 20, 70},
      {333000, 333000, 334000},
      {1, 0, 3, 7, 2}};
  for (const auto& weights : weight_sets) {
    for (uint32_t low = 0; low <= kNumBuckets; low += 700) {
      for (uint32_t high = low; high <= kNumBuckets; high += 1300) {
        const VariantRanges before = ComputeVariantRanges(weights, low);
        const VariantRanges after = ComputeVariantRanges(weights, high);
        for (uint32_t b = 0; b < kNumBuckets; ++b) {
          const int was = FindRange(before.active, b);
          if (was >= 0) {
            ASSERT_EQ(FindRange(after.active, b), was)
                << "bucket " << b << " moved when traffic rose " << low
                << " -> " << high;
          }
        }
      }
    }
  }
}

TEST(Bucketing, ActiveShareMatchesTrafficTimesWeight) {
  const VariantRanges r = ComputeVariantRanges({1, 3}, 4000);
  // Full ranges are 2500 and 7500 buckets; 40% of each.
  EXPECT_EQ(r.active[0].size(), 1000u);
  EXPECT_EQ(r.active[1].size(), 3000u);
}

}  // namespace
}  // namespace abexp
