#include "server/core/spool_admission.h"

#include <algorithm>
#include <utility>

#include "absl/time/clock.h"

namespace abexp {

SpoolAdmission::SpoolAdmission(SpoolAdmissionOptions options)
    : options_(std::move(options)) {
  const size_t seconds = static_cast<size_t>(
      std::max<int64_t>(1, absl::ToInt64Seconds(options_.window)));
  absl::MutexLock lock(&mu_);
  second_.assign(seconds, -1);
  count_.assign(seconds, 0);
}

absl::Time SpoolAdmission::Now() const {
  return options_.clock ? options_.clock() : absl::Now();
}

std::optional<absl::Duration> SpoolAdmission::Admit(int64_t records) {
  const Decision d = Decide(records, absl::ZeroDuration());
  if (d.kind == Decision::Kind::kNow) return std::nullopt;
  return d.wait;
}

SpoolAdmission::Decision SpoolAdmission::Decide(int64_t records,
                                                absl::Duration max_hold) {
  if (!spooling()) return Decision{};
  const absl::Time now = Now();
  absl::MutexLock lock(&mu_);
  if (!spooling_.load(std::memory_order_relaxed)) return Decision{};
  const absl::Duration cost =
      absl::Seconds(static_cast<double>(std::max<int64_t>(records, 1)) / rate_);
  const absl::Time start = std::max(due_, now);
  const absl::Duration hold = start - options_.burst - now;
  if (hold <= absl::ZeroDuration()) {
    due_ = start + cost;
    return Decision{};
  }
  if (hold <= std::min(max_hold, options_.max_hold)) {
    due_ = start + cost;
    held_.fetch_add(1, std::memory_order_relaxed);
    return Decision{Decision::Kind::kHold,
                    std::max(hold, absl::Milliseconds(1))};
  }
  // The earliest this call would be admitted if nothing else came, or the
  // place after the last refused call's.
  const absl::Time place = std::max(next_place_, due_ - options_.burst);
  const absl::Duration wait = place - now;
  if (wait > options_.max_retry_delay) {
    return Decision{Decision::Kind::kRefuse, options_.max_retry_delay};
  }
  next_place_ = place + cost;
  return Decision{Decision::Kind::kRefuse,
                  std::max(wait, absl::Milliseconds(1))};
}

void SpoolAdmission::Note(int64_t direct, int64_t spooled) {
  if (direct <= 0 && spooled <= 0) return;
  const absl::Time now = Now();
  absl::MutexLock lock(&mu_);
  if (spooled > 0) {
    if (spooling_.load(std::memory_order_relaxed)) return;
    rate_ =
        options_.rate > 0
            ? options_.rate
            : std::max(options_.floor, options_.auto_share * AverageRate(now));
    due_ = now;
    next_place_ = now;
    spooling_.store(true, std::memory_order_relaxed);
    return;
  }
  spooling_.store(false, std::memory_order_relaxed);
  const int64_t second = absl::ToUnixSeconds(now);
  const size_t i = static_cast<size_t>(second) % second_.size();
  if (second_[i] != second) {
    second_[i] = second;
    count_[i] = 0;
  }
  count_[i] += direct;
}

double SpoolAdmission::rate() const {
  absl::MutexLock lock(&mu_);
  return spooling_.load(std::memory_order_relaxed) ? rate_ : 0;
}

double SpoolAdmission::AverageRate(absl::Time now) const {
  const int64_t second = absl::ToUnixSeconds(now);
  const int64_t oldest = second - static_cast<int64_t>(second_.size());
  int64_t records = 0;
  int64_t seconds = 0;
  for (size_t i = 0; i < second_.size(); ++i) {
    if (second_[i] > oldest && second_[i] <= second && count_[i] > 0) {
      records += count_[i];
      ++seconds;
    }
  }
  return seconds == 0 ? 0 : static_cast<double>(records) / seconds;
}

}  // namespace abexp
