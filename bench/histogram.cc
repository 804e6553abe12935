#include "bench/histogram.h"

#include <algorithm>
#include <cmath>

namespace abexp::bench {

// Layout: values below kLinearLimit have one bucket each. Above it, each
// power of two [2^e, 2^(e+1)) is cut into kSubBuckets equal buckets of width
// 2^(e - kSubBucketBits), indexed by the value's top kSubBucketBits + 1
// bits. A bucket is thus at most 1/kSubBuckets of its lower end wide.
int Histogram::BucketOf(int64_t value) {
  if (value < kLinearLimit) return value < 0 ? 0 : static_cast<int>(value);
  if (value > kMaxValue) value = kMaxValue;
  const int e = 63 - __builtin_clzll(static_cast<uint64_t>(value));
  const int64_t top = value >> (e - kSubBucketBits);  // in [128, 256)
  return static_cast<int>((e - kSubBucketBits) * kSubBuckets + top);
}

int64_t Histogram::HighestInBucket(int bucket) {
  if (bucket < kLinearLimit) return bucket;
  const int shift = static_cast<int>(bucket / kSubBuckets) - 1;  // e - 7
  const int64_t top = bucket % kSubBuckets + kSubBuckets;
  return ((top + 1) << shift) - 1;
}

void Histogram::Record(int64_t value) {
  if (value < 0) value = 0;
  ++counts_[BucketOf(value)];
  if (count_ == 0 || value < min_) min_ = value;
  if (count_ == 0 || value > max_) max_ = value;
  ++count_;
  sum_ += value;
}

void Histogram::Merge(const Histogram& other) {
  if (other.count_ == 0) return;
  for (int i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
  min_ = count_ == 0 ? other.min_ : std::min(min_, other.min_);
  max_ = count_ == 0 ? other.max_ : std::max(max_, other.max_);
  count_ += other.count_;
  sum_ += other.sum_;
}

void Histogram::Reset() {
  counts_.fill(0);
  count_ = 0;
  min_ = 0;
  max_ = 0;
  sum_ = 0;
}

double Histogram::mean() const {
  return count_ == 0 ? 0.0 : static_cast<double>(sum_ / count_);
}

int64_t Histogram::ValueAtPercentile(double percentile) const {
  if (count_ == 0) return 0;
  if (percentile <= 0) return min_;
  if (percentile >= 100) return max_;
  // The rank of the nearest-rank percentile, ceil(p/100 * count). The small
  // relative nudge keeps products like 99.9/100 * 1000 = 999.0000000000001
  // from rounding up to the next rank.
  const double exact = percentile / 100.0 * static_cast<double>(count_);
  int64_t rank = static_cast<int64_t>(std::ceil(exact * (1 - 1e-12)));
  rank = std::clamp<int64_t>(rank, 1, count_);
  int64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      // The bucket's highest value may lie beyond anything recorded.
      return std::min(HighestInBucket(i), max_);
    }
  }
  return max_;
}

}  // namespace abexp::bench
