// `abexp token create`: makes an access token for a client and the line
// that lets abexp-server accept it.
//
// Thread-safe: no shared state.
#ifndef ABEXP_CLIENT_CLI_TOKEN_COMMAND_H_
#define ABEXP_CLIENT_CLI_TOKEN_COMMAND_H_

#include <string>
#include <vector>

namespace abexp::cli {

// Runs `abexp token ARGS...` (argv without "token") and returns the exit
// code: 0 with the token and the token-file line on stdout, 2 for a usage
// error (an unknown role, a bad name), 1 when no random bytes were to be had.
int RunToken(const std::vector<std::string>& argv);

}  // namespace abexp::cli

#endif  // ABEXP_CLIENT_CLI_TOKEN_COMMAND_H_
