// A program of a team outside abexp: it asks abexp-server which variant of
// an experiment each unit gets (abexp::Client) and records the exposure and
// an order for it (abexp::EventSender), then prints "UNIT VARIANT" per unit
// and the sender's counts. Exits 0 once the server acknowledged every
// record, 1 on any failure (with the reason on stderr), 2 on bad arguments.
//
// Usage: outside_app SERVER EXPERIMENT UNIT_PREFIX UNITS
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "client/client.h"
#include "client/event_sender.h"

int main(int argc, char** argv) {
  if (argc != 5 || std::atoi(argv[4]) <= 0) {
    std::fprintf(stderr,
                 "usage: outside_app SERVER EXPERIMENT UNIT_PREFIX UNITS\n");
    return 2;
  }
  const std::string server = argv[1];
  const std::string experiment = argv[2];
  const std::string prefix = argv[3];
  const int units = std::atoi(argv[4]);

  abexp::ClientOptions client_options;
  client_options.target = server;
  client_options.deadline = absl::Seconds(10);
  auto client = abexp::Client::Create(std::move(client_options));
  abexp::EventSenderOptions sender_options;
  sender_options.target = server;
  auto sender = abexp::EventSender::Create(std::move(sender_options));
  if (!client.ok() || !sender.ok()) {
    std::fprintf(stderr, "outside_app: %s %s\n",
                 client.status().ToString().c_str(),
                 sender.status().ToString().c_str());
    return 1;
  }
  for (int i = 0; i < units; ++i) {
    const std::string id = prefix + std::to_string(i);
    const abexp::v1::Unit unit = abexp::UnitBuilder().Id("user_id", id).Build();
    absl::StatusOr<abexp::Assignment> assignment =
        (*client)->Assign(unit, {experiment});
    if (!assignment.ok() || assignment->degraded()) {
      std::fprintf(stderr, "outside_app: Assign for %s: %s\n", id.c_str(),
                   assignment.ok() ? assignment->error().ToString().c_str()
                                   : assignment.status().ToString().c_str());
      return 1;
    }
    const std::optional<std::string> variant = assignment->variant(experiment);
    if (!variant) {
      std::fprintf(stderr, "outside_app: %s is in no variant of %s\n",
                   id.c_str(), experiment.c_str());
      return 1;
    }
    absl::Status exposed = (*sender)->Expose(
        experiment, unit, *variant, std::nullopt, assignment->config_version());
    absl::Status tracked = (*sender)->Track(unit, "order_completed", 2.5);
    if (!exposed.ok() || !tracked.ok()) {
      std::fprintf(stderr, "outside_app: queueing for %s: %s %s\n", id.c_str(),
                   exposed.ToString().c_str(), tracked.ToString().c_str());
      return 1;
    }
    std::printf("%s %s\n", id.c_str(), variant->c_str());
  }
  const absl::Status closed = (*sender)->Close(absl::Seconds(60));
  const abexp::EventSenderStats stats = (*sender)->stats();
  std::printf("sent %lld of %lld\n", static_cast<long long>(stats.sent),
              static_cast<long long>(stats.enqueued));
  if (!closed.ok()) {
    std::fprintf(stderr, "outside_app: Close: %s\n", closed.ToString().c_str());
    return 1;
  }
  return 0;
}
