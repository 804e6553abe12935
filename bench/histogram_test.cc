#include "bench/histogram.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace abexp::bench {
namespace {

// The nearest-rank percentile of `values`, computed by sorting: the
// reference the histogram is checked against.
int64_t SortedPercentile(std::vector<int64_t> values, double percentile) {
  std::sort(values.begin(), values.end());
  // ceil(p/100 * n) in integers: p is given in hundredths of a percent.
  const int64_t hundredths = std::llround(percentile * 100);
  const int64_t n = static_cast<int64_t>(values.size());
  const int64_t rank = std::max<int64_t>(1, (hundredths * n + 9999) / 10000);
  return values[rank - 1];
}

// What a user of the histogram relies on: a reported percentile is never
// below the true one and at most kRelativePrecision above it.
void ExpectWithinPrecision(const Histogram& h,
                           const std::vector<int64_t>& values) {
  for (double p : {1.0, 10.0, 50.0, 90.0, 99.0, 99.9, 99.99}) {
    const int64_t want = SortedPercentile(values, p);
    const int64_t got = h.ValueAtPercentile(p);
    EXPECT_GE(got, want) << "p" << p;
    EXPECT_LE(got, want + want * Histogram::kRelativePrecision) << "p" << p;
  }
}

TEST(Histogram, EmptyHistogramReportsZeros) {
  Histogram h;
  EXPECT_EQ(h.count(), 0);
  EXPECT_EQ(h.ValueAtPercentile(50), 0);
  EXPECT_EQ(h.ValueAtPercentile(99.9), 0);
  EXPECT_EQ(h.min(), 0);
  EXPECT_EQ(h.max(), 0);
  EXPECT_EQ(h.mean(), 0);
}

TEST(Histogram, ValuesBelowTheLinearLimitAreExact) {
  Histogram h;
  for (int64_t v = 1; v <= 100; ++v) h.Record(v);
  // 100 values 1..100: the k-th percentile is the ceil(k)-th value, k.
  EXPECT_EQ(h.ValueAtPercentile(50), 50);
  EXPECT_EQ(h.ValueAtPercentile(90), 90);
  EXPECT_EQ(h.ValueAtPercentile(99), 99);
  EXPECT_EQ(h.ValueAtPercentile(99.5), 100);  // rank ceil(99.5) = 100
  EXPECT_EQ(h.min(), 1);
  EXPECT_EQ(h.max(), 100);
  EXPECT_DOUBLE_EQ(h.mean(), 50.5);  // (1 + 100) / 2
}

TEST(Histogram, NearestRankDoesNotRoundUpOnFloatingPointNoise) {
  Histogram h;
  for (int64_t v = 1; v <= 1000; ++v) h.Record(v);
  // 99.9% of 1000 is rank 999 exactly, though 99.9 / 100 * 1000 is
  // 999.0000000000001 in doubles. Near 1000 the buckets are 4 wide:
  // [996, 999] and [1000, 1003], so rank 999 reads back as 999 and rank
  // 1000 would read back as 1000.
  EXPECT_EQ(h.ValueAtPercentile(99.9), 999);
}

TEST(Histogram, EveryBucketIsContiguousAndNarrowerThanThePrecision) {
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int> bits(0, Histogram::kMaxValueBits - 1);
  for (int i = 0; i < 200000; ++i) {
    const int b = bits(rng);
    const int64_t v = static_cast<int64_t>(rng() >> (64 - b - 1)) |
                      (b == 0 ? 0 : int64_t{1} << b);
    ASSERT_LE(v, Histogram::kMaxValue);
    const int bucket = Histogram::BucketOf(v);
    ASSERT_GE(bucket, 0);
    ASSERT_LT(bucket, Histogram::kBuckets);
    const int64_t highest = Histogram::HighestInBucket(bucket);
    ASSERT_GE(highest, v) << v;
    ASSERT_LE(highest, v + v * Histogram::kRelativePrecision) << v;
    if (bucket > 0) {
      ASSERT_LT(Histogram::HighestInBucket(bucket - 1), v) << v;
    }
  }
  EXPECT_EQ(Histogram::HighestInBucket(Histogram::kBuckets - 1),
            Histogram::kMaxValue);
}

TEST(Histogram, PercentilesOfAUniformRangeAreWithinPrecision) {
  // 1 us to 100 ms in 1 us steps, in nanoseconds. Nearest rank over
  // 100,000 values: p50 is the 50,000th value (50 ms), p99.9 the 99,900th.
  Histogram h;
  std::vector<int64_t> values;
  for (int64_t k = 1; k <= 100000; ++k) values.push_back(k * 1000);
  std::shuffle(values.begin(), values.end(), std::mt19937_64(1));
  for (int64_t v : values) h.Record(v);
  ExpectWithinPrecision(h, values);
  const int64_t p50 = h.ValueAtPercentile(50);
  EXPECT_GE(p50, 50000000);
  EXPECT_LE(p50, 50000000 + 50000000 / 128);
  const int64_t p999 = h.ValueAtPercentile(99.9);
  EXPECT_GE(p999, 99900000);
  EXPECT_LE(p999, 99900000 + 99900000 / 128);
  EXPECT_EQ(h.max(), 100000000);
  EXPECT_EQ(h.min(), 1000);
  EXPECT_DOUBLE_EQ(h.mean(), 50000500.0);  // 1000 * (1 + 100000) / 2
}

TEST(Histogram, PercentilesOfAHeavyTailedSampleAreWithinPrecision) {
  // Log-normal latencies spanning 1 us to 60 s: most near 1 ms, a long tail.
  std::mt19937_64 rng(42);
  std::lognormal_distribution<double> dist(std::log(1e6), 2.5);
  Histogram h;
  std::vector<int64_t> values;
  for (int i = 0; i < 300000; ++i) {
    int64_t v = std::llround(std::clamp(dist(rng), 1e3, 6e10));
    values.push_back(v);
    h.Record(v);
  }
  ExpectWithinPrecision(h, values);
  EXPECT_EQ(h.max(), *std::max_element(values.begin(), values.end()));
  EXPECT_EQ(h.min(), *std::min_element(values.begin(), values.end()));
}

TEST(Histogram, MergedPerThreadHistogramsAnswerLikeOneOverAllValues) {
  // Four threads with different latency profiles, as abexp-loadgen's
  // poller threads would record them.
  constexpr int kThreads = 4;
  std::vector<std::vector<int64_t>> values(kThreads);
  std::vector<Histogram> per_thread(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t, &values, &per_thread] {
      std::mt19937_64 rng(100 + t);
      std::exponential_distribution<double> dist(1.0 / (20000.0 * (t + 1)));
      for (int i = 0; i < 50000; ++i) {
        int64_t v = 1000 + std::llround(dist(rng));
        values[t].push_back(v);
        per_thread[t].Record(v);
      }
    });
  }
  for (std::thread& t : threads) t.join();

  Histogram merged;
  Histogram single;
  std::vector<int64_t> all;
  for (int t = 0; t < kThreads; ++t) {
    merged.Merge(per_thread[t]);
    for (int64_t v : values[t]) {
      single.Record(v);
      all.push_back(v);
    }
  }
  EXPECT_EQ(merged.count(), 200000);
  EXPECT_EQ(merged.min(), *std::min_element(all.begin(), all.end()));
  EXPECT_EQ(merged.max(), *std::max_element(all.begin(), all.end()));
  EXPECT_DOUBLE_EQ(merged.mean(), single.mean());
  for (double p : {50.0, 90.0, 99.0, 99.9}) {
    EXPECT_EQ(merged.ValueAtPercentile(p), single.ValueAtPercentile(p))
        << "p" << p;
  }
  ExpectWithinPrecision(merged, all);
}

TEST(Histogram, MergingIntoAnEmptyHistogramKeepsTheOthersMinimum) {
  Histogram a;
  Histogram b;
  b.Record(5000);
  b.Record(7000);
  a.Merge(b);
  EXPECT_EQ(a.min(), 5000);
  EXPECT_EQ(a.max(), 7000);
  a.Merge(Histogram());  // an empty one changes nothing
  EXPECT_EQ(a.count(), 2);
  EXPECT_EQ(a.min(), 5000);
}

TEST(Histogram, ValuesBeyondTheRangeKeepAnExactMaximum) {
  Histogram h;
  h.Record(-5);  // a clock step backwards counts as 0
  const int64_t huge = Histogram::kMaxValue * 4;
  h.Record(huge);
  EXPECT_EQ(h.min(), 0);
  EXPECT_EQ(h.max(), huge);
  EXPECT_EQ(h.ValueAtPercentile(100), huge);
  EXPECT_EQ(h.ValueAtPercentile(50), 0);
}

}  // namespace
}  // namespace abexp::bench
