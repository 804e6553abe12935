// The Lua scripts RedisEventStore runs with EVALSHA. Each call applies a
// chunk of exposures or events of one experiment phase atomically, item by
// item in order, exactly as if each item were its own call; the aggregate
// increments of the chunk are summed in the script and written once per
// field at its end. docs/storage.md describes the keys and the packed unit
// records they read and write.
//
// Both check every argument before their first write (integers in range,
// 8-byte hash fields, times that fit a record, values finite and within
// ±kMaxEventValue, the argument count) and fail with an error
// "ABEXP_ARGS ARGV[i] (...) is ...; expected ..." that wrote nothing, so a
// chunk is applied whole or not at all whatever the arguments.
#ifndef ABEXP_SERVER_STORAGE_REDIS_REDIS_SCRIPTS_H_
#define ABEXP_SERVER_STORAGE_REDIS_REDIS_SCRIPTS_H_

#include <string>

namespace abexp::redis_scripts {

// Arguments per item of WriteExposures and WriteEvents.
inline constexpr int kExposureItemArgs = 7;
inline constexpr int kEventItemArgs = 7;
// Arguments per metric of an event group.
inline constexpr int kMetricArgs = 6;

// KEYS[1]: the experiment's meta hash.
// ARGV: base prefix, idempotency generation g, expiry (Unix s) of
// generation g's hashes, variant keys ('\n'-joined), unit buckets,
// idempotency buckets, item count N, then N groups of kExposureItemArgs:
// idempotency bucket, idempotency field, unit bucket, unit field, variant
// index, time (ms), config version.
// Returns an array of N outcomes (0 recorded, 1 duplicate, 2 ignored,
// 3 conflict), or an error "ABEXP_VARIANTS ..." before writing anything when
// the variant keys are incompatible with the stored ones (meta field
// `variants`).
const std::string& WriteExposures();

// KEYS[1]: the experiment's meta hash.
// ARGV: base prefix, idempotency generation g, expiry (Unix s) of generation
// g's hashes, metric group count G, then per group: metric count M and M
// groups of kMetricArgs (signature, type: b binomial, s sum, r ratio,
// t retention; source/numerator aggregation: 0 not this event, 1 count,
// 2 value; denominator aggregation; window (ms); retention day); then item
// count N and N groups of kEventItemArgs: metric group (1-based),
// idempotency bucket, idempotency field, unit bucket, unit field, time (ms),
// value ("" for none).
// Returns an array of N outcomes (0 recorded, 1 duplicate, 2 ignored), or an
// error before writing anything: "ABEXP_METRICS" when the phase ran out of
// metric ids, "ABEXP_STATE" when an item's unit record holds a total beyond
// ±1e150 (left by a version that did not bound values). Each item's unit record is checked before its idempotency
// key: an event of a unit not exposed (or multi-exposed, or before its
// first exposure) is ignored without remembering its key.
const std::string& WriteEvents();

}  // namespace abexp::redis_scripts

#endif  // ABEXP_SERVER_STORAGE_REDIS_REDIS_SCRIPTS_H_
