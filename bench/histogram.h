// A log-linear latency histogram in the manner of HdrHistogram: every value
// lands in a bucket no wider than 1/128 of the bucket's lower end, so a
// percentile read back from it is the true value (the nearest-rank
// percentile of what was recorded) or at most 0.79% above it, from 1 ns to
// about 73 minutes, with a fixed 36 KiB of counters and no allocation per
// value. Averages hide tails; this keeps them.
//
// Values are plain int64 counts of a unit the caller chooses; abexp-loadgen
// records nanoseconds.
//
// Thread safety: none. Give each thread its own Histogram and Merge() them
// when the threads are done.
#ifndef ABEXP_BENCH_HISTOGRAM_H_
#define ABEXP_BENCH_HISTOGRAM_H_

#include <array>
#include <cstdint>

namespace abexp::bench {

class Histogram {
 public:
  // Buckets per power of two above kLinearLimit: the precision.
  static constexpr int kSubBucketBits = 7;
  static constexpr int64_t kSubBuckets = int64_t{1} << kSubBucketBits;  // 128
  // Values below this each have a bucket of their own (exact).
  static constexpr int64_t kLinearLimit = kSubBuckets;
  // The largest value kept apart; larger values count in the top bucket
  // (max() still reports them exactly). 2^42 ns is about 73 minutes.
  static constexpr int kMaxValueBits = 42;
  static constexpr int64_t kMaxValue = (int64_t{1} << kMaxValueBits) - 1;
  // A percentile read back is at most this fraction above the true one.
  static constexpr double kRelativePrecision = 1.0 / kSubBuckets;

  Histogram() { Reset(); }

  // Counts one value. Negative values count as 0.
  void Record(int64_t value);

  // Adds every value `other` counted, as if they had been recorded here.
  void Merge(const Histogram& other);

  void Reset();

  int64_t count() const { return count_; }
  // Exact smallest and largest values recorded; 0 when empty.
  int64_t min() const { return count_ == 0 ? 0 : min_; }
  int64_t max() const { return count_ == 0 ? 0 : max_; }
  // Exact mean of the recorded values (after clamping negatives to 0).
  double mean() const;

  // The nearest-rank percentile: the smallest recorded value v such that at
  // least `percentile`% of the values are <= v, as the highest value of
  // v's bucket but never above max(). So for p in (0, 100]:
  //   true <= ValueAtPercentile(p) <= true * (1 + kRelativePrecision).
  // p <= 0 gives min(); p >= 100 gives max(); 0 when empty.
  int64_t ValueAtPercentile(double percentile) const;

  // The bucket a value counts in, and the highest value of a bucket. Public
  // so that tests can check the layout.
  static int BucketOf(int64_t value);
  static int64_t HighestInBucket(int bucket);

  static constexpr int kBuckets = static_cast<int>(
      kLinearLimit + (kMaxValueBits - kSubBucketBits) * kSubBuckets);

 private:
  std::array<int64_t, kBuckets> counts_;
  int64_t count_ = 0;
  int64_t min_ = 0;
  int64_t max_ = 0;
  // Sum of values as long double: nanoseconds over hours of calls overflow
  // no int64, but keep the mean exact-enough for any run length.
  long double sum_ = 0;
};

}  // namespace abexp::bench

#endif  // ABEXP_BENCH_HISTOGRAM_H_
