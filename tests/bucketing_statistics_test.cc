// Statistical properties of the bucketing spec (docs/bucketing.md) over a
// million ids: variants get their weights, separate experiments are
// independent, and raising traffic never moves an assigned unit.
//
// The ids are fixed (sequential ids and a seeded std::mt19937_64, whose
// output the C++ standard defines), so each test is deterministic. Each
// asserts p > 0.001: a fair hash fails one such check in a thousand seeds.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "server/core/bucketing.h"
#include "stats/chi_square.h"

namespace abexp {
namespace {

constexpr int kNumIds = 1000000;
constexpr double kAlpha = 0.001;

// "u-0", "u-1", ...: the ids real systems hand out, and the hardest case for
// a weak hash.
std::vector<std::string> SequentialIds(int n) {
  std::vector<std::string> ids;
  ids.reserve(n);
  for (int i = 0; i < n; ++i) ids.push_back(absl::StrCat("u-", i));
  return ids;
}

// Random 16-hex-digit device ids from a fixed seed.
std::vector<std::string> RandomIds(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::string> ids;
  ids.reserve(n);
  for (int i = 0; i < n; ++i) ids.push_back(absl::StrFormat("d-%016x", rng()));
  return ids;
}

// Which variant each id lands in at the given traffic; -1 for none.
std::vector<double> CountVariants(const std::vector<std::string>& ids,
                                  absl::string_view salt,
                                  const std::vector<uint64_t>& weights,
                                  uint32_t traffic_bp, double* unassigned) {
  const VariantRanges ranges = ComputeVariantRanges(weights, traffic_bp);
  std::vector<double> counts(weights.size(), 0.0);
  *unassigned = 0;
  for (const std::string& id : ids) {
    const int v =
        FindRange(ranges.active, Bucket(HashPurpose::kVariant, salt, id));
    if (v < 0) {
      ++*unassigned;
    } else {
      ++counts[v];
    }
  }
  return counts;
}

std::vector<double> ToDoubles(const std::vector<uint64_t>& v) {
  return std::vector<double>(v.begin(), v.end());
}

TEST(BucketingStatistics, FiftyFiftyVariantsEachGetHalfOfSequentialIds) {
  double unassigned = 0;
  const std::vector<double> counts =
      CountVariants(SequentialIds(kNumIds), "one_page_checkout", {50, 50},
                    kNumBuckets, &unassigned);
  EXPECT_EQ(unassigned, 0) << "at full traffic every unit gets a variant";
  auto r = stats::ChiSquareGoodnessOfFit(counts, {50, 50});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(r->p_value, kAlpha) << "counts " << counts[0] << " / " << counts[1]
                                << ", chi2 " << r->statistic;
}

TEST(BucketingStatistics, UnevenWeightsAreHonouredForRandomIds) {
  const std::vector<uint64_t> weights = {20, 30, 50};
  double unassigned = 0;
  const std::vector<double> counts =
      CountVariants(RandomIds(kNumIds, 20261101), "landing_headline", weights,
                    kNumBuckets, &unassigned);
  EXPECT_EQ(unassigned, 0);
  auto r = stats::ChiSquareGoodnessOfFit(counts, ToDoubles(weights));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(r->p_value, kAlpha)
      << "counts " << counts[0] << " / " << counts[1] << " / " << counts[2]
      << ", chi2 " << r->statistic;
}

TEST(BucketingStatistics, PartialTrafficAdmitsItsShareInEveryVariant) {
  // At 10% traffic with 20/30/50 weights the active ranges hold 200, 300 and
  // 500 buckets, and the other 9,000 buckets get no variant.
  const std::vector<uint64_t> weights = {20, 30, 50};
  const VariantRanges ranges = ComputeVariantRanges(weights, 1000);
  double unassigned = 0;
  std::vector<double> observed = CountVariants(
      SequentialIds(kNumIds), "recall_push_copy", weights, 1000, &unassigned);
  std::vector<double> expected;
  uint32_t active_buckets = 0;
  for (const BucketRange& r : ranges.active) {
    expected.push_back(r.size());
    active_buckets += r.size();
  }
  ASSERT_EQ(active_buckets, 1000u);
  observed.push_back(unassigned);
  expected.push_back(kNumBuckets - active_buckets);
  auto r = stats::ChiSquareGoodnessOfFit(observed, expected);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(r->p_value, kAlpha) << "chi2 " << r->statistic;
}

TEST(BucketingStatistics,
     AllTenThousandBucketsAreEquallyLikelyForEveryPurpose) {
  const std::vector<std::string> ids = SequentialIds(kNumIds);
  const std::vector<double> uniform(kNumBuckets, 1.0);
  for (HashPurpose purpose : {HashPurpose::kVariant, HashPurpose::kLayer,
                              HashPurpose::kHoldout, HashPurpose::kRollout}) {
    SCOPED_TRACE(HashPurposeTag(purpose));
    std::vector<double> counts(kNumBuckets, 0.0);
    for (const std::string& id : ids) ++counts[Bucket(purpose, "checkout", id)];
    auto r = stats::ChiSquareGoodnessOfFit(counts, uniform);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->degrees_of_freedom, 9999);
    EXPECT_GT(r->p_value, kAlpha) << "chi2 " << r->statistic;
  }
}

TEST(BucketingStatistics, TwoExperimentsWithDifferentSaltsAreIndependent) {
  // A 2 x 3 table: variant in a 50/50 experiment by variant in a 20/30/50
  // one. Independence means being in one experiment's treatment says nothing
  // about the other.
  const VariantRanges a = ComputeVariantRanges({50, 50}, kNumBuckets);
  const VariantRanges b = ComputeVariantRanges({20, 30, 50}, kNumBuckets);
  std::vector<std::vector<double>> table(2, std::vector<double>(3, 0.0));
  for (const std::string& id : RandomIds(kNumIds, 7)) {
    const int va = FindRange(
        a.active, Bucket(HashPurpose::kVariant, "one_page_checkout", id));
    const int vb = FindRange(
        b.active, Bucket(HashPurpose::kVariant, "new_user_onboarding", id));
    ASSERT_GE(va, 0);
    ASSERT_GE(vb, 0);
    ++table[va][vb];
  }
  auto r = stats::ChiSquareIndependence(table);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->degrees_of_freedom, 2);
  EXPECT_GT(r->p_value, kAlpha) << "chi2 " << r->statistic;
}

TEST(BucketingStatistics, PurposesWithTheSameSaltAreIndependent) {
  // A layer and an experiment may share a key, and so a salt; the purpose
  // tag keeps layer slice, holdout and variant uncorrelated. Compare bucket
  // deciles in a 10 x 10 table.
  const std::vector<std::string> ids = SequentialIds(kNumIds);
  for (HashPurpose other :
       {HashPurpose::kLayer, HashPurpose::kHoldout, HashPurpose::kRollout}) {
    SCOPED_TRACE(HashPurposeTag(other));
    std::vector<std::vector<double>> table(10, std::vector<double>(10, 0.0));
    for (const std::string& id : ids) {
      ++table[Bucket(HashPurpose::kVariant, "checkout", id) / 1000]
             [Bucket(other, "checkout", id) / 1000];
    }
    auto r = stats::ChiSquareIndependence(table);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->degrees_of_freedom, 81);
    EXPECT_GT(r->p_value, kAlpha) << "chi2 " << r->statistic;
  }
}

TEST(BucketingStatistics, RaisingTrafficNeverMovesAnAssignedUnit) {
  const std::vector<std::string> ids = RandomIds(200000, 42);
  for (const std::vector<uint64_t>& weights :
       std::vector<std::vector<uint64_t>>{
           {50, 50}, {20, 30, 50}, {1, 1, 1}, {333300, 666700}}) {
    SCOPED_TRACE(testing::PrintToString(weights));
    std::vector<int> previous(ids.size(), -1);
    size_t assigned = 0;
    for (uint32_t traffic_bp : {1000u, 5000u, 10000u}) {
      const VariantRanges ranges = ComputeVariantRanges(weights, traffic_bp);
      size_t now_assigned = 0;
      for (size_t i = 0; i < ids.size(); ++i) {
        const int v = FindRange(ranges.active,
                                Bucket(HashPurpose::kVariant, "ramp", ids[i]));
        if (previous[i] >= 0) {
          ASSERT_EQ(v, previous[i])
              << "unit " << ids[i] << " moved when traffic rose to "
              << traffic_bp << " bp";
        }
        previous[i] = v;
        if (v >= 0) ++now_assigned;
      }
      EXPECT_GE(now_assigned, assigned);
      assigned = now_assigned;
    }
    EXPECT_EQ(assigned, ids.size()) << "at 100% traffic everyone is assigned";
  }
}

TEST(BucketingStatistics, EveryOneBasisPointRampStepOnlyAddsUnits) {
  // The same property at every traffic level, on the bucket level: each
  // variant's active range at t is contained in its range at t + 1.
  for (const std::vector<uint64_t>& weights :
       std::vector<std::vector<uint64_t>>{
           {50, 50}, {20, 30, 50}, {1, 1, 1}, {7, 0, 3}}) {
    SCOPED_TRACE(testing::PrintToString(weights));
    VariantRanges prev = ComputeVariantRanges(weights, 0);
    for (const BucketRange& r : prev.active) EXPECT_TRUE(r.empty());
    for (uint32_t t = 1; t <= kNumBuckets; ++t) {
      const VariantRanges cur = ComputeVariantRanges(weights, t);
      for (size_t v = 0; v < weights.size(); ++v) {
        ASSERT_EQ(cur.active[v].start, prev.active[v].start) << "traffic " << t;
        ASSERT_GE(cur.active[v].end, prev.active[v].end) << "traffic " << t;
        ASSERT_LE(cur.active[v].end, cur.full[v].end) << "traffic " << t;
      }
      prev = cur;
    }
    EXPECT_EQ(prev.active, prev.full)
        << "at full traffic each variant serves its whole range";
  }
}

}  // namespace
}  // namespace abexp
