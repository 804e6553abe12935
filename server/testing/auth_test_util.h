// Test support for tests of tokens and roles (--auth_tokens_file) and of
// server reflection against real servers: token file lines, and
// reflection streams and health checks that carry an authorization header.
//
// Thread safety: the functions are thread-safe.
#ifndef ABEXP_SERVER_TESTING_AUTH_TEST_UTIL_H_
#define ABEXP_SERVER_TESTING_AUTH_TEST_UTIL_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "grpc/reflection/v1alpha/reflection.pb.h"
#include "grpcpp/grpcpp.h"

namespace abexp::testing {

// The "authorization" metadata value a call carries; nullopt: none.
using Authorization = std::optional<std::string>;

// "Bearer <token>".
std::string Bearer(const std::string& token);

// A well-formed token ("abexp_" and 43 base64url characters) made of `fill`
// and a short `tag` at its end, so that tests can tell tokens apart.
std::string MakeToken(char fill, const std::string& tag);

// The token file line for `token`: "NAME ROLES sha256:HEX\n", the hash
// computed by the `sha256sum` command (not by the code under test).
// Aborts the test binary when sha256sum cannot be run.
std::string TokenFileLine(const std::string& name, const std::string& roles,
                          const std::string& token);

// Adds the authorization metadata to `context` when there is one, and a
// 10s deadline.
void PrepareContext(const Authorization& authorization,
                    grpc::ClientContext* context);

// Sends `requests` on one grpc.reflection.v1alpha ServerReflectionInfo
// stream, reading the response to each before the next, and returns the
// stream's status; *responses gets the responses read.
grpc::Status Reflect(
    const std::shared_ptr<grpc::Channel>& channel,
    const Authorization& authorization,
    const std::vector<grpc::reflection::v1alpha::ServerReflectionRequest>&
        requests,
    std::vector<grpc::reflection::v1alpha::ServerReflectionResponse>*
        responses);

// Reflect with one list_services request: the service names listed.
grpc::Status ListServices(const std::shared_ptr<grpc::Channel>& channel,
                          const Authorization& authorization,
                          std::vector<std::string>* names);

// grpc.health.v1.Health/Check for the whole server, with `authorization`;
// *serving is whether it answered SERVING.
grpc::Status CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                         const Authorization& authorization, bool* serving);

}  // namespace abexp::testing

#endif  // ABEXP_SERVER_TESTING_AUTH_TEST_UTIL_H_
