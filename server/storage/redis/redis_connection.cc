#include "server/storage/redis/redis_connection.h"

#include <hiredis/hiredis.h>
#include <openssl/sha.h>
#include <sys/time.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "server/core/call_scope.h"
#include "server/metrics/metrics.h"

namespace abexp {
namespace {

struct ContextDeleter {
  void operator()(redisContext* c) const {
    if (c != nullptr) redisFree(c);
  }
};
using ContextPtr = std::unique_ptr<redisContext, ContextDeleter>;

// Owns a top-level reply only: hiredis frees sub-replies with their parent.
struct ReplyDeleter {
  void operator()(redisReply* r) const {
    if (r != nullptr) freeReplyObject(r);
  }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

timeval TimeoutTimeval(absl::Duration d) {
  timeval tv = absl::ToTimeval(d);
  if (tv.tv_sec == 0 && tv.tv_usec == 0)
    tv.tv_usec = 1;  // 0 would mean "block forever"
  return tv;
}

RedisReply CopyReply(const redisReply& r) {
  RedisReply out;
  switch (r.type) {
    case REDIS_REPLY_STRING:
      out.type = RedisReply::Type::kString;
      out.str.assign(r.str, r.len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = RedisReply::Type::kStatus;
      out.str.assign(r.str, r.len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = RedisReply::Type::kError;
      out.str.assign(r.str, r.len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::kInteger;
      out.integer = r.integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::kArray;
      out.elements.reserve(r.elements);
      for (size_t i = 0; i < r.elements; ++i)
        out.elements.push_back(CopyReply(*r.element[i]));
      break;
    case REDIS_REPLY_NIL:
    default:
      out.type = RedisReply::Type::kNil;
      break;
  }
  return out;
}

std::string Endpoint(const RedisOptions& o) {
  return absl::StrCat(o.host, ":", o.port);
}

// How long a round trip may wait for Redis's answer, and why that long.
struct ReplyWait {
  absl::Duration timeout;
  bool call_deadline = false;  // the call's deadline, not command_timeout
};

// Turns a failed context into a status. A socket timeout surfaces in hiredis
// as an I/O error with EAGAIN.
absl::Status ContextError(const redisContext& c, int saved_errno,
                          const RedisOptions& o, absl::string_view during,
                          const ReplyWait& wait) {
  std::string what =
      c.errstr[0] != '\0' ? std::string(c.errstr) : "unknown error";
  if (c.err == REDIS_ERR_IO &&
      (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK ||
       absl::StrContains(what, "temporarily unavailable"))) {
    if (wait.call_deadline) {
      return absl::DeadlineExceededError(absl::StrFormat(
          "Redis at %s did not answer %s before the call's deadline (%s "
          "left); the connection was dropped",
          Endpoint(o), during, absl::FormatDuration(wait.timeout)));
    }
    return absl::DeadlineExceededError(absl::StrFormat(
        "Redis at %s did not answer %s within command_timeout (%s); the "
        "connection was "
        "dropped. Check that Redis is not overloaded, or raise command_timeout",
        Endpoint(o), during, absl::FormatDuration(o.command_timeout)));
  }
  if (c.err == REDIS_ERR_OOM) {
    return absl::ResourceExhaustedError(
        absl::StrCat("out of memory while talking to Redis at ", Endpoint(o)));
  }
  return absl::UnavailableError(
      absl::StrFormat("lost the connection to Redis at %s during %s: %s; it "
                      "will be re-made on a later call",
                      Endpoint(o), during, what));
}

}  // namespace

absl::Status ParseRedisAddress(const std::string& address,
                               RedisOptions* options) {
  const auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "Redis address \"%s\" %s; write it as host:port, e.g. 127.0.0.1:6379",
        address, why));
  };
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return bad("has no port");
  std::string host = address.substr(0, colon);
  const std::string port_text = address.substr(colon + 1);
  // "[::1]:6379" for IPv6 literals.
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string::npos) {
    return bad("is ambiguous; put an IPv6 host in brackets, e.g. [::1]:6379");
  }
  if (host.empty()) return bad("has no host");
  int port = 0;
  const char* end = port_text.data() + port_text.size();
  const auto [ptr, ec] = std::from_chars(port_text.data(), end, port);
  if (port_text.empty() || ec != std::errc() || ptr != end || port < 1 ||
      port > 65535) {
    return bad("has no valid port (1-65535)");
  }
  options->host = std::move(host);
  options->port = port;
  return absl::OkStatus();
}

absl::Status RedisErrorStatus(absl::string_view error, absl::string_view what) {
  static constexpr absl::string_view kTransient[] = {
      "LOADING", "BUSY",       "OOM",      "READONLY",   "MASTERDOWN",
      "MISCONF", "NOREPLICAS", "TRYAGAIN", "CLUSTERDOWN"};
  const absl::string_view code = error.substr(0, error.find(' '));
  if (code == "NOPERM") {
    return absl::PermissionDeniedError(absl::StrCat(
        "Redis refused ", what, " to abexp's ACL user (it said: ", error,
        "); grant that user the key pattern of abexp's key prefix (e.g. "
        "~abexp:*) and the command categories @read @write @scripting "
        "@connection (docs/storage.md, \"Redis user\")"));
  }
  for (absl::string_view transient : kTransient) {
    if (code == transient) {
      return absl::UnavailableError(absl::StrCat(
          "Redis cannot take ", what, " right now (it said: ", error,
          "); abexp retries, or spools the writes until it can"));
    }
  }
  return absl::InternalError(absl::StrCat("Redis failed ", what, ": ", error));
}

namespace {

std::string Sha1Hex(const std::string& data) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(data.data()), data.size(),
       digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * SHA_DIGEST_LENGTH);
  for (unsigned char b : digest) {
    hex.push_back(kHex[b >> 4]);
    hex.push_back(kHex[b & 0xf]);
  }
  return hex;
}

}  // namespace

RedisScript::RedisScript(std::string source)
    : source_(std::move(source)), sha1_(Sha1Hex(source_)) {}

namespace {

// One open connection and what this connection has loaded into Redis's
// script cache (the cache is server-wide and dies with the server, which also
// kills the connection).
struct Connection {
  ContextPtr ctx;
  absl::flat_hash_set<std::string> loaded_scripts;
  // The socket's read/write timeout now: command_timeout, or less for a
  // call whose deadline was sooner.
  absl::Duration timeout;
};

// While a call that is waiting for a pool connection checks whether it was
// cancelled.
constexpr absl::Duration kCancelCheckInterval = absl::Milliseconds(50);

// Counts one round trip into RedisPoolMetrics (when there are some): its
// commands, and when it ends its time and how it failed.
class RoundTripTimer {
 public:
  RoundTripTimer(RedisPoolMetrics* metrics, size_t commands)
      : metrics_(metrics),
        start_(metrics == nullptr ? absl::InfinitePast() : absl::Now()) {
    if (metrics_ == nullptr) return;
    metrics_->commands->Increment(static_cast<double>(commands));
    metrics_->round_trips->Increment();
  }
  RoundTripTimer(const RoundTripTimer&) = delete;
  RoundTripTimer& operator=(const RoundTripTimer&) = delete;
  ~RoundTripTimer() {
    if (metrics_ == nullptr) return;
    metrics_->round_trip_seconds->Observe(
        absl::ToDoubleSeconds(absl::Now() - start_));
  }

  // A command answered with an error reply.
  void ErrorReply() {
    if (metrics_ != nullptr) metrics_->reply_errors->Increment();
  }
  // The round trip failed with `status` (returned).
  absl::Status Failed(absl::Status status) {
    if (metrics_ == nullptr) return status;
    (absl::IsDeadlineExceeded(status) ? metrics_->timeout_errors
                                      : metrics_->connection_errors)
        ->Increment();
    return status;
  }

 private:
  RedisPoolMetrics* const metrics_;  // not owned; may be null
  const absl::Time start_;
};

}  // namespace

struct RedisPool::Impl {
  explicit Impl(RedisOptions o) : options(std::move(o)) {}

  const RedisOptions options;
  int max_connections = 1;
  // How long Acquire waits for a busy pool: options.pool_wait_timeout, or
  // the command timeout when that is 0.
  absl::Duration pool_wait;

  std::atomic<int64_t> round_trips{0};
  std::atomic<int64_t> commands_sent{0};

  absl::Mutex mu;
  absl::CondVar freed;  // signalled when a connection slot frees up
  std::vector<std::unique_ptr<Connection>> idle ABSL_GUARDED_BY(mu);
  int open ABSL_GUARDED_BY(mu) = 0;  // idle + borrowed + being connected
  // Reconnect backoff: no new connection is attempted before retry_at.
  absl::Time retry_at ABSL_GUARDED_BY(mu) = absl::InfinitePast();
  absl::Duration backoff ABSL_GUARDED_BY(mu) = absl::ZeroDuration();
  std::string last_connect_error ABSL_GUARDED_BY(mu);

  // Opens, authenticates and selects a new connection. No locks held.
  absl::StatusOr<std::unique_ptr<Connection>> Connect();
  // Borrows an idle connection or makes a new one (outside the lock).
  absl::StatusOr<std::unique_ptr<Connection>> Acquire();
  // Waits until a connection is idle or may be opened: at most pool_wait,
  // and not past the call's deadline or once it is cancelled (CallScope).
  absl::Status WaitForFreeConnection() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // How long a round trip on `conn` may wait for the answer, with the
  // socket's timeout set to it: command_timeout, or what is left of the
  // call's deadline (at least 1ms: Acquire refused calls past it).
  absl::StatusOr<ReplyWait> SetReplyWait(Connection& conn);
  // Returns a healthy connection; a null one releases its slot.
  void Release(std::unique_ptr<Connection> conn, bool healthy);
  // Counts a connection borrowed (+1) or given back (-1) in
  // options.metrics, and sets the open connections there.
  void CountBorrowed(int change) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // Sends commands in one round trip on conn, counted in round_trips and
  // commands_sent when `count` (handshakes are not, so counts stay
  // deterministic). On a non-OK status other than INVALID_ARGUMENT the
  // connection must be discarded.
  absl::StatusOr<std::vector<RedisReply>> RoundTrip(
      Connection& conn, absl::Span<const RedisCommand> commands,
      bool count = true);
  absl::StatusOr<std::vector<RedisReply>> RunScriptsOn(
      Connection& conn, absl::Span<const RedisScriptCall> calls);
  // Returns conn to the pool and `replies` to the caller, after WAIT for
  // options.wait_replicas replicas to have what conn wrote when that is > 0
  // (UNAVAILABLE when fewer acknowledge in wait_timeout). A failed call
  // keeps its connection when `error_keeps_connection`.
  absl::StatusOr<std::vector<RedisReply>> Finish(
      std::unique_ptr<Connection> conn,
      absl::StatusOr<std::vector<RedisReply>> replies,
      bool error_keeps_connection);
};

absl::StatusOr<std::vector<RedisReply>> RedisPool::Impl::Finish(
    std::unique_ptr<Connection> conn,
    absl::StatusOr<std::vector<RedisReply>> replies,
    bool error_keeps_connection) {
  if (!replies.ok() || options.wait_replicas <= 0) {
    Release(std::move(conn), replies.ok() || error_keeps_connection);
    return replies;
  }
  absl::StatusOr<std::vector<RedisReply>> waited = RoundTrip(
      *conn, {{"WAIT", absl::StrCat(options.wait_replicas),
               absl::StrCat(absl::ToInt64Milliseconds(options.wait_timeout))}});
  Release(std::move(conn), waited.ok());
  if (!waited.ok()) return waited.status();
  const RedisReply& reply = (*waited)[0];
  if (reply.type == RedisReply::Type::kError)
    return RedisErrorStatus(reply.str, "WAIT for replicas");
  if (reply.type == RedisReply::Type::kInteger &&
      reply.integer >= options.wait_replicas) {
    return replies;
  }
  return absl::UnavailableError(absl::StrFormat(
      "Redis at %s has the writes on %d of the %d replicas required "
      "(--redis_wait_replicas) after %s, so they are not acknowledged (the "
      "server spools them and retries); check that the master's replicas "
      "are up and connected (INFO replication)",
      Endpoint(options), reply.integer, options.wait_replicas,
      absl::FormatDuration(options.wait_timeout)));
}

absl::StatusOr<std::unique_ptr<Connection>> RedisPool::Impl::Connect() {
  const RedisOptions& o = options;
  errno = 0;
  ContextPtr ctx(redisConnectWithTimeout(o.host.c_str(), o.port,
                                         TimeoutTimeval(o.connect_timeout)));
  if (ctx == nullptr) {
    return absl::ResourceExhaustedError(
        "cannot allocate a Redis connection context");
  }
  if (ctx->err != 0) {
    return absl::UnavailableError(
        absl::StrFormat("cannot connect to Redis at %s: %s; check that "
                        "redis-server is running and the "
                        "address is right",
                        Endpoint(o), ctx->errstr));
  }
  if (redisSetTimeout(ctx.get(), TimeoutTimeval(o.command_timeout)) !=
      REDIS_OK) {
    return absl::UnavailableError(absl::StrFormat(
        "cannot set the command timeout on the Redis connection to %s: %s",
        Endpoint(o), ctx->errstr));
  }
  auto conn = std::make_unique<Connection>();
  conn->ctx = std::move(ctx);
  conn->timeout = o.command_timeout;

  // Handshake in one round trip: [AUTH] [SELECT] PING.
  std::vector<RedisCommand> hello;
  const bool auth = !o.user.empty() || !o.password.empty();
  if (!o.user.empty()) {
    hello.push_back({"AUTH", o.user, o.password});
  } else if (!o.password.empty()) {
    hello.push_back({"AUTH", o.password});
  }
  if (o.db != 0) hello.push_back({"SELECT", absl::StrCat(o.db)});
  hello.push_back({"PING"});
  auto replies = RoundTrip(*conn, hello, /*count=*/false);
  if (!replies.ok()) {
    return absl::UnavailableError(
        absl::StrCat("Redis handshake failed: ", replies.status().message()));
  }
  size_t i = 0;
  if (auth) {
    const RedisReply& r = (*replies)[i++];
    if (r.type == RedisReply::Type::kError && !o.user.empty()) {
      return absl::PermissionDeniedError(absl::StrFormat(
          "Redis at %s rejected user '%s' with the password given (AUTH "
          "said: %s); set the name and password of an ACL user that is on "
          "in that server (ACL LIST shows them)",
          Endpoint(o), o.user, r.str));
    }
    if (r.type == RedisReply::Type::kError) {
      return absl::PermissionDeniedError(
          absl::StrFormat("Redis at %s rejected the password (AUTH said: %s); "
                          "set the password to the "
                          "server's requirepass, or name the ACL user it "
                          "belongs to",
                          Endpoint(o), r.str));
    }
  }
  if (o.db != 0) {
    const RedisReply& r = (*replies)[i++];
    if (r.type == RedisReply::Type::kError) {
      return absl::InvalidArgumentError(
          absl::StrFormat("Redis at %s rejected db %d (SELECT said: %s); use a "
                          "db index below the server's "
                          "'databases' setting",
                          Endpoint(o), o.db, r.str));
    }
  }
  const RedisReply& ping = (*replies)[i];
  if (ping.type == RedisReply::Type::kError) {
    if (absl::StartsWith(ping.str, "NOAUTH")) {
      return absl::PermissionDeniedError(absl::StrFormat(
          "Redis at %s requires a password (%s); set the password option",
          Endpoint(o), ping.str));
    }
    if (absl::StartsWith(ping.str, "LOADING")) {
      return absl::UnavailableError(absl::StrFormat(
          "Redis at %s is still loading its data set; retry shortly",
          Endpoint(o)));
    }
    return absl::UnavailableError(absl::StrFormat(
        "Redis at %s answered PING with an error: %s", Endpoint(o), ping.str));
  }
  return conn;
}

absl::StatusOr<std::unique_ptr<Connection>> RedisPool::Impl::Acquire() {
  if (const absl::Time deadline = CallScope::Deadline();
      deadline != absl::InfiniteFuture() && deadline <= absl::Now()) {
    return absl::DeadlineExceededError(absl::StrFormat(
        "the call's deadline passed before it could send anything to Redis "
        "at %s; nothing of it was sent",
        Endpoint(options)));
  }
  {
    absl::MutexLock lock(&mu);
    if (idle.empty() && open >= max_connections) {
      if (absl::Status s = WaitForFreeConnection(); !s.ok()) {
        if (options.metrics != nullptr && absl::IsDeadlineExceeded(s)) {
          options.metrics->pool_wait_errors->Increment();
        }
        return s;
      }
    }
    if (!idle.empty()) {
      std::unique_ptr<Connection> conn = std::move(idle.back());
      idle.pop_back();
      CountBorrowed(+1);
      return conn;
    }
    const absl::Time now = absl::Now();
    if (now < retry_at) {
      return absl::UnavailableError(absl::StrFormat(
          "Redis at %s is unreachable (%s); next reconnect attempt in %s",
          Endpoint(options), last_connect_error,
          absl::FormatDuration(
              absl::Ceil(retry_at - now, absl::Milliseconds(1)))));
    }
    ++open;
  }
  absl::StatusOr<std::unique_ptr<Connection>> conn = Connect();
  absl::MutexLock lock(&mu);
  if (conn.ok()) {
    backoff = absl::ZeroDuration();
    retry_at = absl::InfinitePast();
    CountBorrowed(+1);
    return conn;
  }
  if (options.metrics != nullptr) options.metrics->connect_errors->Increment();
  --open;
  CountBorrowed(0);
  freed.Signal();
  backoff = backoff == absl::ZeroDuration()
                ? options.initial_backoff
                : std::min(backoff * 2, options.max_backoff);
  retry_at = absl::Now() + backoff;
  last_connect_error = std::string(conn.status().message());
  return conn.status();
}

absl::Status RedisPool::Impl::WaitForFreeConnection() {
  // Only a call that must wait reads the clock.
  const absl::Time call_deadline = CallScope::Deadline();
  const absl::Time give_up = std::min(absl::Now() + pool_wait, call_deadline);
  while (idle.empty() && open >= max_connections) {
    if (CallScope::Cancelled()) {
      return absl::CancelledError(absl::StrFormat(
          "the call was cancelled while it waited for a connection to Redis "
          "at %s; nothing of it was sent",
          Endpoint(options)));
    }
    const absl::Time now = absl::Now();
    if (now >= give_up) {
      if (give_up == call_deadline) {
        return absl::DeadlineExceededError(absl::StrFormat(
            "the call's deadline passed while it waited for a connection to "
            "Redis at %s (all %d are busy: Redis is slow or stuck); nothing "
            "of it was sent",
            Endpoint(options), max_connections));
      }
      return absl::DeadlineExceededError(absl::StrFormat(
          "no connection to Redis at %s became free within %s: all %d "
          "are busy, so Redis is slow or stuck (or --redis_pool_size is "
          "too small for the load)",
          Endpoint(options), absl::FormatDuration(pool_wait), max_connections));
    }
    // Wakes to look at cancellation now and then, when the call has a scope.
    const absl::Time wake = call_deadline == absl::InfiniteFuture()
                                ? give_up
                                : std::min(give_up, now + kCancelCheckInterval);
    freed.WaitWithDeadline(&mu, wake);
  }
  return absl::OkStatus();
}

absl::StatusOr<ReplyWait> RedisPool::Impl::SetReplyWait(Connection& conn) {
  ReplyWait wait{options.command_timeout, false};
  const absl::Time deadline = CallScope::Deadline();
  if (deadline != absl::InfiniteFuture()) {
    const absl::Duration left = deadline - absl::Now();
    if (left < wait.timeout) {
      wait = ReplyWait{std::max(left, absl::Milliseconds(1)), true};
    }
  }
  if (wait.timeout != conn.timeout) {
    if (redisSetTimeout(conn.ctx.get(), TimeoutTimeval(wait.timeout)) !=
        REDIS_OK) {
      return absl::UnavailableError(absl::StrFormat(
          "cannot set the timeout on the Redis connection to %s: %s",
          Endpoint(options), conn.ctx->errstr));
    }
    conn.timeout = wait.timeout;
  }
  return wait;
}

void RedisPool::Impl::CountBorrowed(int change) {
  if (options.metrics == nullptr) return;
  if (change != 0) options.metrics->connections_in_use->Increment(change);
  options.metrics->connections_open->Set(open);
}

void RedisPool::Impl::Release(std::unique_ptr<Connection> conn, bool healthy) {
  absl::MutexLock lock(&mu);
  if (healthy) {
    idle.push_back(std::move(conn));
    freed.Signal();
    CountBorrowed(-1);
    return;
  }
  // A dead connection usually means Redis went away (restart, failover), and
  // then every idle connection is dead too: drop them all rather than let
  // each fail one more call.
  conn.reset();
  --open;
  open -= static_cast<int>(idle.size());
  idle.clear();
  freed.SignalAll();
  CountBorrowed(-1);
}

absl::StatusOr<std::vector<RedisReply>> RedisPool::Impl::RoundTrip(
    Connection& conn, absl::Span<const RedisCommand> commands, bool count) {
  // Validate first: nothing may be queued on the connection unless all of it is
  // sent.
  for (const RedisCommand& cmd : commands) {
    if (cmd.empty())
      return absl::InvalidArgumentError(
          "empty Redis command; argv[0] must name it");
  }
  absl::StatusOr<ReplyWait> wait = SetReplyWait(conn);
  if (!wait.ok()) return wait.status();
  redisContext* c = conn.ctx.get();
  std::vector<const char*> argv;
  std::vector<size_t> argvlen;
  for (const RedisCommand& cmd : commands) {
    argv.clear();
    argvlen.clear();
    for (const std::string& arg : cmd) {
      argv.push_back(arg.data());
      argvlen.push_back(arg.size());
    }
    if (redisAppendCommandArgv(c, static_cast<int>(argv.size()), argv.data(),
                               argvlen.data()) != REDIS_OK) {
      return ContextError(*c, errno, options, "queueing a command", *wait);
    }
  }
  if (count) {
    round_trips.fetch_add(1, std::memory_order_relaxed);
    commands_sent.fetch_add(static_cast<int64_t>(commands.size()),
                            std::memory_order_relaxed);
  }
  RoundTripTimer timer(count ? options.metrics : nullptr, commands.size());
  std::vector<RedisReply> out;
  out.reserve(commands.size());
  for (size_t i = 0; i < commands.size(); ++i) {
    void* raw = nullptr;
    errno = 0;
    const int rc = redisGetReply(c, &raw);
    const int saved_errno = errno;
    ReplyPtr reply(static_cast<redisReply*>(raw));
    if (rc != REDIS_OK || reply == nullptr) {
      return timer.Failed(
          ContextError(*c, saved_errno, options, "a pipelined command", *wait));
    }
    if (reply->type == REDIS_REPLY_ERROR) timer.ErrorReply();
    out.push_back(CopyReply(*reply));
  }
  return out;
}

absl::StatusOr<std::vector<RedisReply>> RedisPool::Impl::RunScriptsOn(
    Connection& conn, absl::Span<const RedisScriptCall> calls) {
  // Scripts this connection has not loaded yet are loaded in the same round
  // trip, ahead of the calls, so a fresh server never reorders calls through
  // NOSCRIPT retries.
  std::vector<RedisCommand> commands;
  std::vector<const RedisScript*> preloaded;
  for (const RedisScriptCall& call : calls) {
    if (call.script == nullptr)
      return absl::InvalidArgumentError("RedisScriptCall has no script");
    if (conn.loaded_scripts.contains(call.script->sha1()) ||
        std::find(preloaded.begin(), preloaded.end(), call.script) !=
            preloaded.end()) {
      continue;
    }
    preloaded.push_back(call.script);
    commands.push_back({"SCRIPT", "LOAD", call.script->source()});
  }
  const auto evalsha = [](const RedisScriptCall& call) {
    RedisCommand cmd;
    cmd.reserve(3 + call.keys.size() + call.args.size());
    cmd.push_back("EVALSHA");
    cmd.push_back(call.script->sha1());
    cmd.push_back(absl::StrCat(call.keys.size()));
    cmd.insert(cmd.end(), call.keys.begin(), call.keys.end());
    cmd.insert(cmd.end(), call.args.begin(), call.args.end());
    return cmd;
  };
  for (const RedisScriptCall& call : calls) commands.push_back(evalsha(call));

  const auto check_load = [&](const RedisReply& r,
                              const RedisScript& script) -> absl::Status {
    if (r.type == RedisReply::Type::kError) {
      return RedisErrorStatus(
          r.str, absl::StrCat("loading Lua script ", script.sha1()));
    }
    conn.loaded_scripts.insert(script.sha1());
    return absl::OkStatus();
  };

  absl::StatusOr<std::vector<RedisReply>> replies = RoundTrip(conn, commands);
  if (!replies.ok()) return replies.status();
  for (size_t i = 0; i < preloaded.size(); ++i) {
    if (absl::Status s = check_load((*replies)[i], *preloaded[i]); !s.ok())
      return s;
  }
  std::vector<RedisReply> out(
      std::make_move_iterator(replies->begin() + preloaded.size()),
      std::make_move_iterator(replies->end()));

  // NOSCRIPT means the call did not run (e.g. SCRIPT FLUSH): load and retry.
  std::vector<size_t> retry;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i].type == RedisReply::Type::kError &&
        absl::StartsWith(out[i].str, "NOSCRIPT")) {
      retry.push_back(i);
    }
  }
  if (retry.empty()) return out;
  commands.clear();
  preloaded.clear();
  for (size_t i : retry) {
    const RedisScript* script = calls[i].script;
    if (std::find(preloaded.begin(), preloaded.end(), script) !=
        preloaded.end())
      continue;
    preloaded.push_back(script);
    commands.push_back({"SCRIPT", "LOAD", script->source()});
  }
  for (size_t i : retry) commands.push_back(evalsha(calls[i]));
  replies = RoundTrip(conn, commands);
  if (!replies.ok()) return replies.status();
  for (size_t i = 0; i < preloaded.size(); ++i) {
    if (absl::Status s = check_load((*replies)[i], *preloaded[i]); !s.ok())
      return s;
  }
  for (size_t j = 0; j < retry.size(); ++j) {
    out[retry[j]] = std::move((*replies)[preloaded.size() + j]);
  }
  return out;
}

RedisPool::RedisPool(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RedisPool::~RedisPool() = default;

const RedisOptions& RedisPool::options() const { return impl_->options; }

const std::string& RedisPool::key_prefix() const {
  return impl_->options.key_prefix;
}

absl::StatusOr<std::unique_ptr<RedisPool>> RedisPool::Create(
    RedisOptions options) {
  if (options.host.empty()) {
    return absl::InvalidArgumentError(
        "Redis host is empty; set it, e.g. 127.0.0.1");
  }
  if (options.port < 1 || options.port > 65535) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "Redis port %d is out of range; use 1-65535", options.port));
  }
  if (options.db < 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "Redis db %d is negative; use 0 or a higher index", options.db));
  }
  if (options.pool_size < 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "Redis pool_size %d is negative; use 0 for twice the number of cores",
        options.pool_size));
  }
  if (options.connect_timeout <= absl::ZeroDuration() ||
      options.command_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "Redis connect_timeout and command_timeout must be positive");
  }
  if (options.initial_backoff <= absl::ZeroDuration() ||
      options.max_backoff < options.initial_backoff) {
    return absl::InvalidArgumentError(
        "Redis backoff must satisfy 0 < initial_backoff <= max_backoff");
  }
  if (options.wait_replicas < 0 ||
      (options.wait_replicas > 0 &&
       (options.wait_timeout <= absl::ZeroDuration() ||
        options.wait_timeout >= options.command_timeout))) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "Redis wait_replicas is %d with wait_timeout %s; use 0 (no WAIT), or "
        "a replica count with 0 < wait_timeout < command_timeout (%s)",
        options.wait_replicas, absl::FormatDuration(options.wait_timeout),
        absl::FormatDuration(options.command_timeout)));
  }
  int max_connections = options.pool_size;
  if (max_connections == 0) {
    max_connections =
        2 * static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  auto impl = std::make_unique<Impl>(std::move(options));
  impl->max_connections = max_connections;
  impl->pool_wait = impl->options.pool_wait_timeout > absl::ZeroDuration()
                        ? impl->options.pool_wait_timeout
                        : impl->options.command_timeout;
  absl::StatusOr<std::unique_ptr<Connection>> first = impl->Connect();
  if (!first.ok()) return first.status();
  {
    absl::MutexLock lock(&impl->mu);
    impl->idle.push_back(*std::move(first));
    impl->open = 1;
    impl->CountBorrowed(0);
  }
  return std::unique_ptr<RedisPool>(new RedisPool(std::move(impl)));
}

absl::StatusOr<std::vector<RedisReply>> RedisPool::Pipeline(
    absl::Span<const RedisCommand> commands) {
  if (commands.empty()) return std::vector<RedisReply>();
  absl::StatusOr<std::unique_ptr<Connection>> conn = impl_->Acquire();
  if (!conn.ok()) return conn.status();
  absl::StatusOr<std::vector<RedisReply>> replies =
      impl_->RoundTrip(**conn, commands);
  // An error before anything was sent (an empty argv) leaves the connection
  // usable.
  const bool keep = absl::IsInvalidArgument(replies.status());
  return impl_->Finish(*std::move(conn), std::move(replies), keep);
}

absl::StatusOr<std::vector<RedisReply>> RedisPool::RunScripts(
    absl::Span<const RedisScriptCall> calls) {
  if (calls.empty()) return std::vector<RedisReply>();
  absl::StatusOr<std::unique_ptr<Connection>> conn = impl_->Acquire();
  if (!conn.ok()) return conn.status();
  absl::StatusOr<std::vector<RedisReply>> replies =
      impl_->RunScriptsOn(**conn, calls);
  const bool keep = absl::IsInvalidArgument(replies.status()) ||
                    absl::IsInternal(replies.status());
  return impl_->Finish(*std::move(conn), std::move(replies), keep);
}

int64_t RedisPool::round_trips() const {
  return impl_->round_trips.load(std::memory_order_relaxed);
}

int64_t RedisPool::commands_sent() const {
  return impl_->commands_sent.load(std::memory_order_relaxed);
}

}  // namespace abexp
