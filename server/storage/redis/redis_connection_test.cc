#include "server/storage/redis/redis_connection.h"

#include <signal.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/call_scope.h"
#include "server/testing/redis_process.h"

namespace abexp {
namespace {

using ::abexp::testing::RedisProcess;
using ::abexp::testing::RedisProcessOptions;
using Type = RedisReply::Type;
using ::testing::HasSubstr;

std::unique_ptr<RedisProcess> StartRedis(RedisProcessOptions options = {}) {
  auto redis = RedisProcess::Start(std::move(options));
  EXPECT_TRUE(redis.ok()) << redis.status();
  return redis.ok() ? *std::move(redis) : nullptr;
}

RedisOptions OptionsFor(const RedisProcess& redis) {
  RedisOptions o;
  o.host = "127.0.0.1";
  o.port = redis.port();
  o.pool_size = 4;
  o.initial_backoff = absl::Milliseconds(20);
  o.max_backoff = absl::Milliseconds(200);
  return o;
}

std::unique_ptr<RedisPool> Connect(const RedisOptions& options) {
  auto pool = RedisPool::Create(options);
  EXPECT_TRUE(pool.ok()) << pool.status();
  return pool.ok() ? *std::move(pool) : nullptr;
}

// Runs one command and returns its reply (a failed call fails the test).
RedisReply One(RedisPool& pool, RedisCommand cmd) {
  auto replies = pool.Pipeline({std::move(cmd)});
  EXPECT_TRUE(replies.ok()) << replies.status();
  if (!replies.ok() || replies->size() != 1) return RedisReply{};
  return (*replies)[0];
}

// Retries PING until it succeeds or `timeout` passes.
absl::Status WaitForPing(RedisPool& pool, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status last;
  while (absl::Now() < deadline) {
    auto r = pool.Pipeline({{"PING"}});
    if (r.ok()) return absl::OkStatus();
    last = r.status();
    absl::SleepFor(absl::Milliseconds(10));
  }
  return last;
}

TEST(RedisPool, PipelineReturnsRepliesInOrderInOneRoundTrip) {
  auto redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  auto pool = Connect(OptionsFor(*redis));
  ASSERT_NE(pool, nullptr);

  const int64_t trips = pool->round_trips();
  const int64_t sent = pool->commands_sent();
  auto replies = pool->Pipeline({{"SET", "k", "v1"},
                                 {"GET", "k"},
                                 {"INCRBY", "n", "41"},
                                 {"INCR", "n"},
                                 {"GET", "missing"},
                                 {"RPUSH", "l", "a", "b", "c"},
                                 {"LRANGE", "l", "0", "-1"}});
  ASSERT_TRUE(replies.ok()) << replies.status();
  EXPECT_EQ(pool->round_trips() - trips, 1);
  EXPECT_EQ(pool->commands_sent() - sent, 7);
  ASSERT_EQ(replies->size(), 7u);
  EXPECT_EQ((*replies)[0].type, Type::kStatus);
  EXPECT_EQ((*replies)[0].str, "OK");
  EXPECT_EQ((*replies)[1].type, Type::kString);
  EXPECT_EQ((*replies)[1].str, "v1");
  EXPECT_EQ((*replies)[2].type, Type::kInteger);
  EXPECT_EQ((*replies)[2].integer, 41);
  EXPECT_EQ((*replies)[3].integer, 42);
  EXPECT_EQ((*replies)[4].type, Type::kNil);
  EXPECT_EQ((*replies)[5].integer, 3);
  ASSERT_EQ((*replies)[6].type, Type::kArray);
  ASSERT_EQ((*replies)[6].elements.size(), 3u);
  EXPECT_EQ((*replies)[6].elements[0].str, "a");
  EXPECT_EQ((*replies)[6].elements[2].str, "c");
}

TEST(RedisPool, TenThousandCommandsTakeOneRoundTrip) {
  auto redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  auto pool = Connect(OptionsFor(*redis));
  ASSERT_NE(pool, nullptr);

  std::vector<RedisCommand> commands;
  for (int i = 0; i < 10000; ++i) commands.push_back({"INCR", "counter"});
  const int64_t trips = pool->round_trips();
  auto replies = pool->Pipeline(commands);
  ASSERT_TRUE(replies.ok()) << replies.status();
  EXPECT_EQ(pool->round_trips() - trips, 1);
  ASSERT_EQ(replies->size(), 10000u);
  for (int i = 0; i < 10000; ++i)
    ASSERT_EQ((*replies)[i].integer, i + 1) << "reply " << i;
}

TEST(RedisPool, ErrorReplyIsAReplyNotAFailedCall) {
  auto redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  auto pool = Connect(OptionsFor(*redis));
  ASSERT_NE(pool, nullptr);

  auto replies = pool->Pipeline({{"SET", "k", "not a number"},
                                 {"INCR", "k"},
                                 {"NOSUCHCOMMAND"},
                                 {"GET", "k"}});
  ASSERT_TRUE(replies.ok()) << replies.status();
  ASSERT_EQ(replies->size(), 4u);
  EXPECT_EQ((*replies)[1].type, Type::kError);
  EXPECT_TRUE(absl::StartsWith((*replies)[1].str, "ERR")) << (*replies)[1].str;
  EXPECT_EQ((*replies)[2].type, Type::kError);
  EXPECT_EQ((*replies)[3].str, "not a number");
  // The connection stays usable.
  EXPECT_EQ(One(*pool, {"PING"}).str, "PONG");
}

TEST(RedisPool, EmptyCommandIsInvalidArgumentAndSendsNothing) {
  auto redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  RedisOptions options = OptionsFor(*redis);
  options.pool_size = 1;
  auto pool = Connect(options);
  ASSERT_NE(pool, nullptr);

  auto replies = pool->Pipeline({{"SET", "k", "v"}, {}});
  EXPECT_EQ(replies.status().code(), absl::StatusCode::kInvalidArgument)
      << replies.status();
  // Nothing of the rejected batch reached Redis, and the connection is clean.
  auto after = pool->Pipeline({{"EXISTS", "k"}, {"PING"}});
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ((*after)[0].integer, 0);
  EXPECT_EQ((*after)[1].str, "PONG");
}

TEST(RedisPool, ArgumentsAreBinarySafe) {
  auto redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  auto pool = Connect(OptionsFor(*redis));
  ASSERT_NE(pool, nullptr);

  const std::string key("user\0id\r\n*1\r\n", 13);
  const std::string value("\xff\xfe\x00\x80 not utf-8 \x00\r\nSET x y\r\n", 27);
  const std::string field("\x00\x01\x02", 3);
  auto replies = pool->Pipeline({{"SET", key, value},
                                 {"GET", key},
                                 {"HSET", "h", field, value},
                                 {"HGET", "h", field},
                                 {"EXISTS", "x"},
                                 {"STRLEN", key}});
  ASSERT_TRUE(replies.ok()) << replies.status();
  EXPECT_EQ((*replies)[1].str, value);
  EXPECT_EQ((*replies)[3].str, value);
  EXPECT_EQ((*replies)[4].integer, 0)
      << "an argument was interpreted as a command";
  EXPECT_EQ((*replies)[5].integer, static_cast<int64_t>(value.size()));
}

TEST(RedisPool, AuthenticatesWithThePassword) {
  RedisProcessOptions ro;
  ro.password = "s3cret pass";
  auto redis = StartRedis(ro);
  ASSERT_NE(redis, nullptr);

  RedisOptions options = OptionsFor(*redis);
  options.password = "s3cret pass";
  auto pool = Connect(options);
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(One(*pool, {"SET", "k", "v"}).str, "OK");
  EXPECT_EQ(One(*pool, {"GET", "k"}).str, "v");
}

TEST(RedisPool, WrongOrMissingPasswordIsPermissionDenied) {
  RedisProcessOptions ro;
  ro.password = "right";
  auto redis = StartRedis(ro);
  ASSERT_NE(redis, nullptr);

  RedisOptions options = OptionsFor(*redis);
  options.password = "wrong";
  auto wrong = RedisPool::Create(options);
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kPermissionDenied)
      << wrong.status();
  EXPECT_TRUE(absl::StrContains(wrong.status().message(), "password"))
      << wrong.status();

  options.password = "";
  auto missing = RedisPool::Create(options);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kPermissionDenied)
      << missing.status();
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "password"))
      << missing.status();
}

// An ACL user limited to keys under "abexp:" and the command categories
// docs/storage.md asks for.
RedisProcessOptions WithAclUser() {
  RedisProcessOptions ro;
  ro.extra_args = {"--user",   "recorder",      "on",          ">rec pass",
                   "~abexp:*", "resetchannels", "-@all",       "+@read",
                   "+@write",  "+@scripting",   "+@connection"};
  return ro;
}

// Options that connect as WithAclUser()'s user with `password`.
RedisOptions AsRecorder(const RedisProcess& redis,
                        const std::string& password) {
  RedisOptions options = OptionsFor(redis);
  options.user = "recorder";
  options.password = password;
  return options;
}

// Every connection authenticates as the ACL user; a key or command the user
// may not use is PERMISSION_DENIED saying what to grant, not INTERNAL.
TEST(RedisPool, ConnectsAsAnAclUserAndWhatItMayNotDoIsPermissionDenied) {
  auto redis = StartRedis(WithAclUser());
  ASSERT_NE(redis, nullptr);
  auto pool = Connect(AsRecorder(*redis, "rec pass"));
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(One(*pool, {"SET", "abexp:k", "v"}).str, "OK");
  // The connection is the restricted user's, not the default user's.
  RedisReply refused = One(*pool, {"SET", "elsewhere:k", "v"});
  ASSERT_EQ(refused.type, RedisReply::Type::kError);
  EXPECT_THAT(refused.str, ::testing::StartsWith("NOPERM"));
  const absl::Status status = RedisErrorStatus(refused.str, "a write");
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
  EXPECT_THAT(std::string(status.message()),
              ::testing::HasSubstr("@scripting"));
}

TEST(RedisPool, WrongAclPasswordIsPermissionDeniedNamingTheUser) {
  auto redis = StartRedis(WithAclUser());
  ASSERT_NE(redis, nullptr);
  auto wrong = RedisPool::Create(AsRecorder(*redis, "wrong"));
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kPermissionDenied)
      << wrong.status();
  EXPECT_THAT(std::string(wrong.status().message()),
              ::testing::AllOf(::testing::HasSubstr("rejected user 'recorder'"),
                               ::testing::HasSubstr("WRONGPASS"),
                               ::testing::HasSubstr("ACL")));
  EXPECT_THAT(std::string(wrong.status().message()),
              ::testing::Not(::testing::HasSubstr("wrong")))
      << "the password is not logged";
}

TEST(RedisPool, DbIndexIsHonoured) {
  auto redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  RedisOptions options = OptionsFor(*redis);
  options.db = 3;
  auto db3 = Connect(options);
  options.db = 0;
  auto db0 = Connect(options);
  ASSERT_NE(db3, nullptr);
  ASSERT_NE(db0, nullptr);

  EXPECT_EQ(One(*db3, {"SET", "k", "in three"}).str, "OK");
  EXPECT_EQ(One(*db0, {"GET", "k"}).type, Type::kNil);
  EXPECT_EQ(One(*db3, {"GET", "k"}).str, "in three");
  // Every pooled connection selects the db, not just the first one.
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        auto r = db3->Pipeline({{"GET", "k"}});
        if (!r.ok() || (*r)[0].str != "in three") wrong.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(RedisPool, DbIndexOutOfRangeIsInvalidArgument) {
  auto redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  RedisOptions options = OptionsFor(*redis);
  options.db = 16;  // redis-server defaults to 16 databases: 0..15
  auto pool = RedisPool::Create(options);
  EXPECT_EQ(pool.status().code(), absl::StatusCode::kInvalidArgument)
      << pool.status();
  EXPECT_TRUE(absl::StrContains(pool.status().message(), "db 16"))
      << pool.status();
}

TEST(RedisPool, CreateFailsWithUnavailableWhenNothingListens) {
  int port;
  {
    auto redis = StartRedis();
    ASSERT_NE(redis, nullptr);
    port = redis->port();
  }  // stopped: the port is closed now
  RedisOptions options;
  options.port = port;
  const absl::Time start = absl::Now();
  auto pool = RedisPool::Create(options);
  EXPECT_EQ(pool.status().code(), absl::StatusCode::kUnavailable)
      << pool.status();
  EXPECT_TRUE(absl::StrContains(pool.status().message(),
                                absl::StrCat("127.0.0.1:", port)))
      << pool.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST(RedisPool, CreateRejectsBadOptions) {
  RedisOptions options;
  options.port = 0;
  EXPECT_EQ(RedisPool::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options = RedisOptions();
  options.db = -1;
  EXPECT_EQ(RedisPool::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options = RedisOptions();
  options.command_timeout = absl::ZeroDuration();
  EXPECT_EQ(RedisPool::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options = RedisOptions();
  options.max_backoff = absl::Milliseconds(1);
  EXPECT_EQ(RedisPool::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RedisScript, Sha1IsTheOneRedisComputes) {
  auto redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  auto pool = Connect(OptionsFor(*redis));
  ASSERT_NE(pool, nullptr);
  const RedisScript script("return redis.call('INCRBY', KEYS[1], ARGV[1])");
  const RedisReply loaded = One(*pool, {"SCRIPT", "LOAD", script.source()});
  EXPECT_EQ(loaded.str, script.sha1());
  EXPECT_EQ(script.sha1().size(), 40u);
}

TEST(RedisPool, RunScriptsPassesKeysAndArgsInOneRoundTrip) {
  auto redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  RedisOptions options = OptionsFor(*redis);
  options.pool_size = 1;
  auto pool = Connect(options);
  ASSERT_NE(pool, nullptr);
  const RedisScript incr("return redis.call('INCRBY', KEYS[1], ARGV[1])");
  const RedisScript echo("return {KEYS[1], KEYS[2], ARGV[1]}");

  const int64_t trips = pool->round_trips();
  auto replies =
      pool->RunScripts({{&incr, {"a"}, {"5"}},
                        {&echo, {"k1", std::string("k\0 2", 4)}, {"x"}},
                        {&incr, {"a"}, {"-2"}},
                        {&incr, {"a"}, {"not a number"}}});
  ASSERT_TRUE(replies.ok()) << replies.status();
  EXPECT_EQ(pool->round_trips() - trips, 1);
  ASSERT_EQ(replies->size(), 4u);
  EXPECT_EQ((*replies)[0].integer, 5);
  ASSERT_EQ((*replies)[1].elements.size(), 3u);
  EXPECT_EQ((*replies)[1].elements[0].str, "k1");
  EXPECT_EQ((*replies)[1].elements[1].str, std::string("k\0 2", 4));
  EXPECT_EQ((*replies)[1].elements[2].str, "x");
  EXPECT_EQ((*replies)[2].integer, 3);
  EXPECT_EQ((*replies)[3].type, Type::kError);  // a script error is a reply too

  // Once loaded, later calls send only EVALSHA.
  const int64_t sent = pool->commands_sent();
  replies = pool->RunScripts({{&incr, {"a"}, {"1"}}});
  ASSERT_TRUE(replies.ok()) << replies.status();
  EXPECT_EQ((*replies)[0].integer, 4);
  EXPECT_EQ(pool->commands_sent() - sent, 1);
}

TEST(RedisPool, RunScriptsReloadsScriptsAfterScriptFlush) {
  auto redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  RedisOptions options = OptionsFor(*redis);
  options.pool_size = 1;  // the same connection sees the flush
  auto pool = Connect(options);
  ASSERT_NE(pool, nullptr);
  const RedisScript incr("return redis.call('INCRBY', KEYS[1], ARGV[1])");
  const RedisScript get("return redis.call('GET', KEYS[1])");

  auto first = pool->RunScripts({{&incr, {"c"}, {"10"}}});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ((*first)[0].integer, 10);

  EXPECT_EQ(One(*pool, {"SCRIPT", "FLUSH"}).str, "OK");
  auto exists = One(*pool, {"SCRIPT", "EXISTS", incr.sha1()});
  ASSERT_EQ(exists.elements.size(), 1u);
  EXPECT_EQ(exists.elements[0].integer, 0);

  auto replies = pool->RunScripts(
      {{&incr, {"c"}, {"1"}}, {&get, {"c"}, {}}, {&incr, {"c"}, {"1"}}});
  ASSERT_TRUE(replies.ok()) << replies.status();
  ASSERT_EQ(replies->size(), 3u);
  // Each call ran exactly once despite NOSCRIPT.
  EXPECT_EQ((*replies)[0].integer, 11);
  EXPECT_EQ((*replies)[2].integer, 12);
  EXPECT_EQ(One(*pool, {"GET", "c"}).str, "12");
  exists = One(*pool, {"SCRIPT", "EXISTS", incr.sha1(), get.sha1()});
  ASSERT_EQ(exists.elements.size(), 2u);
  EXPECT_EQ(exists.elements[0].integer, 1);
  EXPECT_EQ(exists.elements[1].integer, 1);
}

TEST(RedisPool, RunScriptsRejectsABrokenScriptWithItsError) {
  auto redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  auto pool = Connect(OptionsFor(*redis));
  ASSERT_NE(pool, nullptr);
  const RedisScript broken("this is not lua (");
  auto replies = pool->RunScripts({{&broken, {}, {}}});
  EXPECT_FALSE(replies.ok());
  EXPECT_TRUE(absl::StrContains(replies.status().message(), broken.sha1()))
      << replies.status();
  EXPECT_EQ(One(*pool, {"PING"}).str, "PONG");
}

TEST(RedisPool, RedisKilledFailsFastThenReconnectsAfterRestart) {
  RedisProcessOptions ro;
  ro.appendfsync = "always";
  auto redis = StartRedis(ro);
  ASSERT_NE(redis, nullptr);
  auto pool = Connect(OptionsFor(*redis));
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(One(*pool, {"SET", "kept", "yes"}).str, "OK");

  ASSERT_TRUE(redis->Kill().ok());
  // Every call fails with UNAVAILABLE, quickly, while Redis is down; in
  // backoff, the call says when the pool will try again.
  int in_backoff = 0;
  for (int i = 0; i < 20; ++i) {
    const absl::Time start = absl::Now();
    auto r = pool->Pipeline({{"GET", "kept"}});
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
    EXPECT_LT(absl::Now() - start, absl::Milliseconds(500)) << r.status();
    if (absl::StrContains(r.status().message(), "next reconnect attempt in"))
      ++in_backoff;
  }
  EXPECT_GT(in_backoff, 0);

  ASSERT_TRUE(redis->Restart().ok()) << redis->Log();
  // No action needed by the caller: the pool reconnects on a later call.
  ASSERT_TRUE(WaitForPing(*pool, absl::Seconds(5)).ok());
  EXPECT_EQ(One(*pool, {"GET", "kept"}).str,
            "yes");  // AOF with appendfsync always
  const RedisScript seven("return 7");
  auto scripted = pool->RunScripts({{&seven, {}, {}}});
  ASSERT_TRUE(scripted.ok()) << scripted.status();
  EXPECT_EQ((*scripted)[0].integer, 7);
}

TEST(RedisPool, ManyThreadsShareThePoolWithoutMixingReplies) {
  auto redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  RedisOptions options = OptionsFor(*redis);
  options.pool_size = 3;
  auto pool = Connect(options);
  ASSERT_NE(pool, nullptr);

  constexpr int kThreads = 12;
  constexpr int kRounds = 200;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string key = absl::StrCat("thread:", t);
      for (int i = 0; i < kRounds; ++i) {
        const std::string value = absl::StrCat(t, "/", i);
        auto r = pool->Pipeline(
            {{"SET", key, value}, {"INCR", "total"}, {"GET", key}});
        if (!r.ok() || (*r)[2].str != value) failures.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(One(*pool, {"GET", "total"}).str, absl::StrCat(kThreads * kRounds));

  // No more than pool_size connections were opened (plus none leaked).
  const std::string info = One(*pool, {"INFO", "clients"}).str;
  const size_t at = info.find("connected_clients:");
  ASSERT_NE(at, std::string::npos) << info;
  int clients = 0;
  ASSERT_TRUE(absl::SimpleAtoi(
      info.substr(at + 18, info.find('\r', at) - at - 18), &clients));
  EXPECT_LE(clients, 3);
}

TEST(RedisPool, SlowCommandTimesOutAndThePoolRecovers) {
  auto redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  RedisOptions options = OptionsFor(*redis);
  options.command_timeout = absl::Milliseconds(200);
  auto pool = Connect(options);
  ASSERT_NE(pool, nullptr);

  const absl::Time start = absl::Now();
  auto r = pool->Pipeline({{"DEBUG", "SLEEP", "1.5"}});
  const absl::Duration took = absl::Now() - start;
  EXPECT_TRUE(absl::IsDeadlineExceeded(r.status()) ||
              absl::IsUnavailable(r.status()))
      << r.status();
  EXPECT_LT(took, absl::Seconds(1))
      << "the call waited for Redis instead of timing out";

  ASSERT_TRUE(WaitForPing(*pool, absl::Seconds(10)).ok());
  EXPECT_EQ(One(*pool, {"SET", "after", "1"}).str, "OK");
}

// With every connection held by a call Redis does not answer, another call
// does not queue for a connection without limit: it fails after the pool
// wait (DEADLINE_EXCEEDED, saying why), and the held call still completes
// once Redis answers.
TEST(RedisPool, WaitForABusyPoolIsBounded) {
  auto redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  RedisOptions options = OptionsFor(*redis);
  options.pool_size = 1;
  options.command_timeout = absl::Seconds(120);
  options.pool_wait_timeout = absl::Milliseconds(300);
  auto pool = Connect(options);
  ASSERT_NE(pool, nullptr);
  ASSERT_EQ(One(*pool, {"SET", "before", "1"}).str, "OK");

  ASSERT_TRUE(redis->Signal(SIGSTOP).ok());
  absl::Mutex mu;
  std::vector<absl::Status> finished;
  std::vector<std::thread> calls;
  for (int i = 0; i < 2; ++i) {
    calls.emplace_back([&, i] {
      auto r = pool->Pipeline({{"SET", absl::StrCat("k", i), "v"}});
      absl::MutexLock lock(&mu);
      finished.push_back(r.status());
    });
  }
  {
    // One call holds the only connection on the frozen Redis; the other
    // gives up waiting for it.
    absl::MutexLock lock(&mu);
    auto one_finished = [&] {
      mu.AssertHeld();
      return !finished.empty();
    };
    ASSERT_TRUE(
        mu.AwaitWithTimeout(absl::Condition(&one_finished), absl::Seconds(60)))
        << "a call waited for a connection for over 60s";
    EXPECT_TRUE(absl::IsDeadlineExceeded(finished[0])) << finished[0];
    EXPECT_THAT(finished[0].message(), HasSubstr("no connection to Redis at"));
    EXPECT_THAT(finished[0].message(), HasSubstr("all 1 are busy"));
  }
  ASSERT_TRUE(redis->Signal(SIGCONT).ok());
  for (std::thread& t : calls) t.join();
  ASSERT_EQ(finished.size(), 2u);
  EXPECT_TRUE(finished[1].ok()) << finished[1];
}

// A frozen Redis holds a one-connection pool whose waits (the answer, a
// free connection) are all 120s; calls in a CallScope stop waiting when
// their call ends instead.
class RedisPoolCallScopeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    redis_ = StartRedis();
    ASSERT_NE(redis_, nullptr);
    RedisOptions options = OptionsFor(*redis_);
    options.pool_size = 1;
    options.command_timeout = absl::Seconds(120);
    pool_ = Connect(options);
    ASSERT_NE(pool_, nullptr);
    ASSERT_EQ(One(*pool_, {"SET", "before", "1"}).str, "OK");
    ASSERT_TRUE(redis_->Signal(SIGSTOP).ok());
  }

  void TearDown() override {
    if (redis_ != nullptr) EXPECT_TRUE(redis_->Signal(SIGCONT).ok());
    if (holder_.joinable()) holder_.join();
  }

  // Takes the pool's one connection with a SET the frozen Redis does not
  // answer until SIGCONT (no scope: the 120s timeout), and returns once the
  // connection is taken.
  void HoldTheConnection() {
    holder_ = std::thread([&] {
      absl::StatusOr<std::vector<RedisReply>> r =
          pool_->Pipeline({{"SET", "held", "1"}});
      EXPECT_TRUE(r.ok()) << r.status();
    });
    // The pool counts a round trip once it has the connection, just before
    // it sends.
    const absl::Time give_up = absl::Now() + absl::Seconds(60);
    while (pool_->round_trips() < 2 && absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    ASSERT_GE(pool_->round_trips(), 2) << "the SET never took the connection";
  }

  std::unique_ptr<RedisProcess> redis_;
  std::unique_ptr<RedisPool> pool_;
  std::thread holder_;
};

TEST_F(RedisPoolCallScopeTest, TheAnswerIsAwaitedOnlyUntilTheCallsDeadline) {
  CallScope scope(absl::Now() + absl::Milliseconds(500), nullptr);
  absl::StatusOr<std::vector<RedisReply>> r =
      pool_->Pipeline({{"SET", "k", "v"}});
  EXPECT_TRUE(absl::IsDeadlineExceeded(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("before the call's deadline"));
}

TEST_F(RedisPoolCallScopeTest, ACallPastItsDeadlineSendsNothing) {
  CallScope scope(absl::Now() - absl::Milliseconds(1), nullptr);
  absl::StatusOr<std::vector<RedisReply>> r =
      pool_->Pipeline({{"SET", "k", "v"}});
  EXPECT_TRUE(absl::IsDeadlineExceeded(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("nothing of it was sent"));
  EXPECT_EQ(pool_->round_trips(), 1);  // the SET before the freeze only
}

TEST_F(RedisPoolCallScopeTest, TheWaitForAConnectionEndsAtTheCallsDeadline) {
  ASSERT_NO_FATAL_FAILURE(HoldTheConnection());
  CallScope scope(absl::Now() + absl::Milliseconds(500), nullptr);
  absl::StatusOr<std::vector<RedisReply>> r =
      pool_->Pipeline({{"SET", "k", "v"}});
  EXPECT_TRUE(absl::IsDeadlineExceeded(r.status())) << r.status();
  EXPECT_THAT(r.status().message(),
              HasSubstr("deadline passed while it waited for a connection"));
}

TEST_F(RedisPoolCallScopeTest, ACancelledCallStopsWaitingForAConnection) {
  ASSERT_NO_FATAL_FAILURE(HoldTheConnection());
  std::atomic<bool> cancelled{false};
  absl::Status status;
  std::thread waiter([&] {
    CallScope scope(absl::Now() + absl::Seconds(600),
                    [&] { return cancelled.load(); });
    status = pool_->Pipeline({{"SET", "k", "v"}}).status();
  });
  cancelled = true;
  waiter.join();
  EXPECT_TRUE(absl::IsCancelled(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("nothing of it was sent"));
}

TEST(RedisPool, HungRedisTimesOutInsteadOfHanging) {
  auto redis = StartRedis();
  ASSERT_NE(redis, nullptr);
  RedisOptions options = OptionsFor(*redis);
  options.command_timeout = absl::Milliseconds(200);
  options.connect_timeout = absl::Milliseconds(200);
  auto pool = Connect(options);
  ASSERT_NE(pool, nullptr);

  ASSERT_TRUE(redis->Signal(SIGSTOP).ok());
  for (int i = 0; i < 3; ++i) {
    const absl::Time start = absl::Now();
    auto r = pool->Pipeline({{"PING"}});
    EXPECT_FALSE(r.ok());
    EXPECT_LT(absl::Now() - start, absl::Seconds(1)) << r.status();
  }
  ASSERT_TRUE(redis->Signal(SIGCONT).ok());
  EXPECT_TRUE(WaitForPing(*pool, absl::Seconds(5)).ok());
}

TEST(ParseRedisAddress, AcceptsHostAndPort) {
  RedisOptions o;
  ASSERT_TRUE(ParseRedisAddress("redis.internal:6380", &o).ok());
  EXPECT_EQ(o.host, "redis.internal");
  EXPECT_EQ(o.port, 6380);
  ASSERT_TRUE(ParseRedisAddress("[::1]:7000", &o).ok());
  EXPECT_EQ(o.host, "::1");
  EXPECT_EQ(o.port, 7000);
}

TEST(ParseRedisAddress, RejectsBadAddressesAndLeavesOptionsAlone) {
  for (const char* bad : {"", "localhost", ":6379", "host:", "host:0",
                          "host:65536", "host:63x9", "::1:6379", "host:-1"}) {
    RedisOptions o;
    absl::Status s = ParseRedisAddress(bad, &o);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_TRUE(absl::StrContains(s.message(), "host:port")) << s;
    EXPECT_EQ(o.host, "127.0.0.1") << bad;
    EXPECT_EQ(o.port, 6379) << bad;
  }
}

TEST(RedisErrorStatus, RepliesThatPassAreUnavailableOthersInternal) {
  for (const char* reply :
       {"LOADING Redis is loading the dataset in memory",
        "BUSY Redis is busy running a script.",
        "OOM command not allowed when used memory > 'maxmemory'.",
        "READONLY You can't write against a read only replica.",
        "MASTERDOWN Link with MASTER is down",
        "MISCONF Redis is configured to save RDB snapshots",
        "TRYAGAIN Multiple keys request during rehashing of slot",
        "CLUSTERDOWN The cluster is down",
        "NOREPLICAS Not enough good replicas"}) {
    absl::Status s = RedisErrorStatus(reply, "the write");
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << reply;
    EXPECT_THAT(std::string(s.message()), HasSubstr(reply));
  }
  for (const char* reply :
       {"ERR wrong number of arguments",
        "WRONGTYPE Operation against a key holding the wrong kind of value",
        "NOSCRIPT No matching script", "LOADINGX not a code we know"}) {
    EXPECT_EQ(RedisErrorStatus(reply, "the write").code(),
              absl::StatusCode::kInternal)
        << reply;
  }
}

}  // namespace
}  // namespace abexp
