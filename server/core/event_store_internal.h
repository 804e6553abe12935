// Helpers shared by the event stores (not part of the public API): how a
// metric definition is named in stored data, and how times become days.
// Both stores must agree on these so they pass the same conformance tests.
#ifndef ABEXP_SERVER_CORE_EVENT_STORE_INTERNAL_H_
#define ABEXP_SERVER_CORE_EVENT_STORE_INTERNAL_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "server/core/config.h"
#include "server/core/event_store.h"

namespace abexp::internal {

// Stores work in whole milliseconds since the Unix epoch (rounded down).
inline int64_t StoreMillis(absl::Time t) { return absl::ToUnixMillis(t); }

inline constexpr int64_t kMillisPerDay = 86400000;

// The UTC day number of a millisecond time (days since 1970-01-01).
inline int64_t DayOfMillis(int64_t ms) {
  return ms >= 0 ? ms / kMillisPerDay
                 : -((-ms + kMillisPerDay - 1) / kMillisPerDay);
}

// "2026-11-23" for a day number.
std::string FormatDay(int64_t day);

// "<metric key>@<8 hex digits>": the metric's key and a fingerprint of the
// parts of its definition that decide what is counted (type, events,
// aggregation, window, retention day). Stored figures are keyed by it, so
// changing a metric's definition starts its figures afresh instead of
// mixing two definitions; guardrail and description changes do not.
std::string MetricSignature(const Metric& metric);

// Variant keys as remembered by a store: joined by '\n'.
std::string JoinVariantKeys(const std::vector<std::string>& keys);

// Checks the layout's variant keys against those stored at the first write
// of the experiment phase (`stored`, joined). Appending variants, or
// dropping trailing ones, keeps every index meaning the same variant and is
// allowed; *merged gets the longer list. Anything else (reorder, rename,
// insert) is FAILED_PRECONDITION saying to restore the order or bump phase.
absl::Status CheckVariantKeys(const ExperimentLayout& layout,
                              const std::string& stored, std::string* merged);

// INVALID_ARGUMENT unless the layout has 1 to kMaxVariants variants and
// every exposure's variant index is in it and its config version is 1 to
// kMaxStoredConfigVersionBytes bytes.
absl::Status CheckExposures(const ExperimentLayout& layout,
                            absl::Span<const Exposure> exposures);

// The segment a unit with these dimension values (Exposure::dimensions) is
// in for `attribute`, before the max_values limit: kNoneSegment when it has
// no value or an empty one, kOtherSegment when the value is longer than
// kMaxDimensionValueBytes or spelled "(other)", else the value.
std::string SegmentOf(const std::map<std::string, std::string>& values,
                      const std::string& attribute);

// Removes the segments without an exposed unit in any variant (those
// whose units all became multi-exposed), and dimensions left without one,
// so that every store reports the same segments.
void DropEmptySegments(
    std::map<std::string, std::map<std::string, std::vector<VariantAggregate>>>*
        segments);

// Counts an exposure under `version` in `counts` (a phase's exposures per
// config version), keeping at most `max_versions` distinct versions: a
// version not yet counted once that many are is counted under
// kOtherConfigVersion. Phases that hold more from before the limit keep
// them, and only versions already there are counted apart.
void CountConfigVersion(const std::string& version, int max_versions,
                        std::map<std::string, int64_t>* counts);

}  // namespace abexp::internal

#endif  // ABEXP_SERVER_CORE_EVENT_STORE_INTERNAL_H_
