// The resource limits ConfigureServerBuilder sets, on a real gRPC server and
// client over loopback: what one connection may make the server run at once.
#include "server/server_setup.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "abexp/v1/assignment.grpc.pb.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace abexp {
namespace {

constexpr absl::Duration kWait = absl::Seconds(30);

// Holds every Assign call until the test releases it, and remembers the
// most calls it held at once.
class HeldAssignService final : public v1::AssignmentService::CallbackService {
 public:
  grpc::ServerUnaryReactor* Assign(grpc::CallbackServerContext* context,
                                   const v1::AssignRequest* /*request*/,
                                   v1::AssignResponse* /*response*/) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    absl::MutexLock lock(&mu_);
    held_.push_back(reactor);
    most_held_ = std::max(most_held_, held_.size());
    return reactor;
  }

  // Waits until at least `n` calls are held; false after kWait.
  bool AwaitHeld(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return held_.size() >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), kWait);
  }

  // Answers every held call; returns how many.
  size_t ReleaseAll() {
    std::vector<grpc::ServerUnaryReactor*> held;
    {
      absl::MutexLock lock(&mu_);
      held.swap(held_);
    }
    for (grpc::ServerUnaryReactor* reactor : held) {
      reactor->Finish(grpc::Status::OK);
    }
    return held.size();
  }

  size_t most_held() {
    absl::MutexLock lock(&mu_);
    return most_held_;
  }

 private:
  absl::Mutex mu_;
  std::vector<grpc::ServerUnaryReactor*> held_ ABSL_GUARDED_BY(mu_);
  size_t most_held_ ABSL_GUARDED_BY(mu_) = 0;
};

// Client calls started with the callback API, and their outcomes.
class Calls {
 public:
  explicit Calls(v1::AssignmentService::Stub* stub) : stub_(stub) {}

  void Start() {
    auto call = std::make_unique<Call>();
    call->context.set_deadline(absl::ToChronoTime(absl::Now() + 2 * kWait));
    Call* c = call.get();
    {
      absl::MutexLock lock(&mu_);
      calls_.push_back(std::move(call));
    }
    stub_->async()->Assign(&c->context, &c->request, &c->response,
                           [this, c](grpc::Status status) {
                             absl::MutexLock lock(&mu_);
                             c->status = std::move(status);
                             ++done_;
                           });
  }

  // Waits until every started call has its answer; false after kWait.
  bool AwaitAll() {
    absl::MutexLock lock(&mu_);
    auto all = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return done_ == calls_.size();
    };
    return mu_.AwaitWithTimeout(absl::Condition(&all), 2 * kWait);
  }

  size_t ok() {
    absl::MutexLock lock(&mu_);
    return std::count_if(calls_.begin(), calls_.end(),
                         [](const auto& c) { return c->status.ok(); });
  }

 private:
  struct Call {
    grpc::ClientContext context;
    v1::AssignRequest request;
    v1::AssignResponse response;
    grpc::Status status = grpc::Status(grpc::StatusCode::UNKNOWN, "pending");
  };
  v1::AssignmentService::Stub* const stub_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<Call>> calls_ ABSL_GUARDED_BY(mu_);
  size_t done_ ABSL_GUARDED_BY(mu_) = 0;
};

// A server built the way abexp-server's is, with `setup` on a free
// loopback port, serving `service`; *address gets where it listens.
std::unique_ptr<grpc::Server> StartServer(ServerSetup setup,
                                          grpc::Service* service,
                                          std::string* address) {
  EnableServerPlugins();
  setup.listen_address = "127.0.0.1:0";
  grpc::ServerBuilder builder;
  int port = 0;
  ConfigureServerBuilder(setup, &builder, &port);
  builder.RegisterService(service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  EXPECT_NE(port, 0);
  *address = WithPort(setup.listen_address, port);
  return server;
}

// A client that opens more calls on one connection than
// max_concurrent_streams gets every one answered (the rest wait in the
// client), while the server never runs more than the limit at once.
TEST(ServerSetup, CallsPastTheStreamLimitOfAConnectionWaitAndAreAllAnswered) {
  ServerSetup setup;
  setup.max_concurrent_streams = 4;
  HeldAssignService service;
  std::string address;
  std::unique_ptr<grpc::Server> server = StartServer(setup, &service, &address);
  ASSERT_NE(server, nullptr);

  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  auto stub = v1::AssignmentService::NewStub(channel);
  // One call first, so the client knows the server's limit (HTTP/2
  // SETTINGS) before the burst.
  Calls first(stub.get());
  first.Start();
  ASSERT_TRUE(service.AwaitHeld(1));
  service.ReleaseAll();
  ASSERT_TRUE(first.AwaitAll());
  ASSERT_EQ(first.ok(), 1u);

  constexpr size_t kCalls = 22;
  Calls burst(stub.get());
  for (size_t i = 0; i < kCalls; ++i) burst.Start();
  // The server gets them 4 at a time: each group is answered to let the
  // next one in.
  size_t answered = 0;
  while (answered < kCalls) {
    ASSERT_TRUE(service.AwaitHeld(std::min<size_t>(4, kCalls - answered)))
        << answered << " answered; the rest never reached the server";
    answered += service.ReleaseAll();
  }
  ASSERT_TRUE(burst.AwaitAll());
  EXPECT_EQ(burst.ok(), kCalls);
  EXPECT_EQ(answered, kCalls);
  EXPECT_EQ(service.most_held(), 4u);

  server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
}

// Answers every Assign at once.
class AnsweringService final : public v1::AssignmentService::CallbackService {
 public:
  grpc::ServerUnaryReactor* Assign(grpc::CallbackServerContext* context,
                                   const v1::AssignRequest* /*request*/,
                                   v1::AssignResponse* /*response*/) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

// A request larger than the memory gRPC may hold is refused with
// RESOURCE_EXHAUSTED, and the server goes on serving the calls that fit.
TEST(ServerSetup, ARequestTheMemoryQuotaCannotHoldIsRefusedAndOthersServed) {
  ServerSetup setup;
  setup.max_request_memory_bytes = 4 << 20;
  AnsweringService service;
  std::string address;
  std::unique_ptr<grpc::Server> server = StartServer(setup, &service, &address);
  ASSERT_NE(server, nullptr);

  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(-1);
  auto stub = v1::AssignmentService::NewStub(grpc::CreateCustomChannel(
      address, grpc::InsecureChannelCredentials(), args));
  auto assign = [&](size_t id_bytes) {
    v1::AssignRequest request;
    (*request.mutable_unit()->mutable_ids())["user_id"] =
        std::string(id_bytes, 'u');
    v1::AssignResponse response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kWait));
    return stub->Assign(&context, request, &response);
  };
  EXPECT_TRUE(assign(1 << 20).ok());
  const grpc::Status big = assign(16 << 20);  // 16 MiB against 4 MiB
  EXPECT_EQ(big.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << big.error_message();
  EXPECT_TRUE(assign(100).ok());
  // gRPC gives the refused request's memory back to the quota
  // asynchronously: a call of the same size as before may be refused
  // (RESOURCE_EXHAUSTED) for a moment after, never for good.
  grpc::Status after;
  const absl::Time give_up = absl::Now() + kWait;
  do {
    after = assign(1 << 20);
  } while (after.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
           absl::Now() < give_up);
  EXPECT_TRUE(after.ok()) << after.error_code() << " " << after.error_message();

  server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
}

}  // namespace
}  // namespace abexp
