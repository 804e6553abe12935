// The Lua scripts RedisEventStore runs with EVALSHA: the text of
// lua/write_exposures.lua and lua/write_events.lua in this folder, embedded
// byte for byte at build time (lua/embed_scripts.py), so a script runs the
// same under abexp-server and `redis-cli --eval` (docs/storage.md). Each
// file's header comment is its full contract (KEYS, ARGV, replies).
//
// Each call applies a chunk of exposures or events of one experiment phase
// atomically, item by item in order, exactly as if each item were its own
// call; the aggregate increments of the chunk are summed in the script and
// written once per field at its end. docs/storage.md describes the keys and
// the packed unit records they read and write.
//
// Both check every argument before their first write (integers in range,
// 8-byte hash fields, times that fit a record, values finite and within
// ±kMaxEventValue, the argument count) and fail with an error
// "ABEXP_ARGS ARGV[i] (...) is ...; expected ..." that wrote nothing, so a
// chunk is applied whole or not at all whatever the arguments.
//
// Thread-safe: the functions return immutable strings built once.
#ifndef ABEXP_SERVER_STORAGE_REDIS_REDIS_SCRIPTS_H_
#define ABEXP_SERVER_STORAGE_REDIS_REDIS_SCRIPTS_H_

#include <string>

namespace abexp::redis_scripts {

// Arguments per item of WriteExposures and WriteEvents.
inline constexpr int kExposureItemArgs = 9;
inline constexpr int kEventItemArgs = 7;
// Arguments per metric of an event group.
inline constexpr int kMetricArgs = 6;

// lua/write_exposures.lua. KEYS[1]: the phase's meta hash. ARGV: base
// prefix, idempotency generation, expiry, variant keys, unit buckets,
// idempotency buckets, the most config versions counted apart, the
// signatures of the metrics with a covariate ('\n'-joined), item count N,
// then N groups of kExposureItemArgs (the last two: the unit's covariates
// as little-endian doubles, NaN for missing, or '' for none; its segments as
// (dimension id, slot) byte pairs, or '' for none).
// Returns an array of N outcomes (0 recorded, 1 duplicate, 2 ignored,
// 3 conflict), or an error "ABEXP_VARIANTS ..." before writing anything when
// the variant keys are incompatible with the stored ones.
const std::string& WriteExposures();

// lua/write_events.lua. KEYS[1]: the phase's meta hash. ARGV: base
// prefix, idempotency generation, expiry, metric group count G, per group a
// metric count M and M groups of kMetricArgs, then item count N and N groups
// of kEventItemArgs. Returns an array of N outcomes (0 recorded,
// 1 duplicate, 2 ignored), or an error before writing anything:
// "ABEXP_METRICS" when the phase ran out of metric ids, "ABEXP_STATE" when an
// item's unit record holds a total beyond ±1e150.
const std::string& WriteEvents();

}  // namespace abexp::redis_scripts

#endif  // ABEXP_SERVER_STORAGE_REDIS_REDIS_SCRIPTS_H_
