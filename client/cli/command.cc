#include "client/cli/command.h"

#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace abexp::cli {

int Usage(const Command& command, const std::string& message) {
  std::cerr << "abexp " << command.name << ": " << message << "\n"
            << "Run `abexp " << command.name << " --help` for usage.\n";
  return kExitUsage;
}

absl::Status ParseArgs(const Command& command,
                       const std::vector<std::string>& argv, Args* args) {
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (arg == "--") {
      args->positional.insert(args->positional.end(), argv.begin() + i + 1,
                              argv.end());
      break;
    }
    if (arg == "-h" || arg == "--help") {
      args->help = true;
      continue;
    }
    if (!absl::StartsWith(arg, "-") || arg == "-") {
      args->positional.push_back(arg);
      continue;
    }
    std::string name = arg.substr(absl::StartsWith(arg, "--") ? 2 : 1);
    std::string value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    if (command.value_flags.count(name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    if (!has_value) {
      if (i + 1 >= argv.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("flag --", name, " needs a value"));
      }
      value = argv[++i];
    }
    if (args->flags.count(name) > 0 && command.repeatable.count(name) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("flag --", name, " given more than once"));
    }
    args->flags.emplace(name, value);
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> JsonFormat(const Args& args) {
  const std::string format = args.Get("format", "text");
  if (format == "json") return true;
  if (format == "text") return false;
  return absl::InvalidArgumentError(
      absl::StrCat("--format must be text or json, not '", format, "'"));
}

std::optional<int> Start(const Command& command,
                         const std::vector<std::string>& argv, Args* args,
                         bool* json) {
  if (absl::Status s = ParseArgs(command, argv, args); !s.ok()) {
    return Usage(command, std::string(s.message()));
  }
  if (args->help) {
    std::cout << command.usage;
    return kExitOk;
  }
  absl::StatusOr<bool> format = JsonFormat(*args);
  if (!format.ok()) {
    return Usage(command, std::string(format.status().message()));
  }
  *json = *format;
  return std::nullopt;
}

}  // namespace abexp::cli
