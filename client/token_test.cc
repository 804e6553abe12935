#include "client/token.h"

#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace abexp {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(Token, MadeTokensHaveTheContractsFormAnd32RandomBytes) {
  absl::StatusOr<std::string> token = MakeToken();
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(token->size(), 49u);
  EXPECT_TRUE(absl::StartsWith(*token, "abexp_"));
  EXPECT_TRUE(CheckTokenForm(*token, "--token").ok());
  std::string bytes;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(token->substr(6), &bytes));
  EXPECT_EQ(bytes.size(), 32u);
}

TEST(Token, TwoTokensDiffer) {
  absl::StatusOr<std::string> a = MakeToken();
  absl::StatusOr<std::string> b = MakeToken();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
}

TEST(Token, FileHashIsSha256InLowercaseHex) {
  // FIPS 180-2's example: SHA-256("abc").
  EXPECT_EQ(TokenFileHash("abc"),
            "sha256:"
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Token, MalformedTokensAreRefusedNamingTheSourceNotTheToken) {
  const std::string good = "abexp_" + std::string(43, 'A');
  ASSERT_TRUE(CheckTokenForm(good, "ABEXP_TOKEN").ok());
  struct Case {
    std::string token;
    std::string why;
  };
  const Case cases[] = {
      {"", "it is empty"},
      {"secret_" + std::string(43, 'A'), "does not start with 'abexp_'"},
      {"Bearer " + good, "pass the token alone"},
      {good + "\n", "white space"},
      {"abexp_" + std::string(42, 'A') + "=", "outside A-Z a-z 0-9 - _"},
      {"abexp_" + std::string(42, 'A'), "it has 48 characters"},
      {good + "A", "it has 50 characters"},
  };
  for (const Case& c : cases) {
    const absl::Status s = CheckTokenForm(c.token, "ABEXP_TOKEN");
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.token;
    EXPECT_THAT(s.message(), HasSubstr("ABEXP_TOKEN is not an abexp token"));
    EXPECT_THAT(s.message(), HasSubstr(c.why));
    EXPECT_THAT(s.message(), HasSubstr("'abexp_' followed by 43 characters"));
    if (c.token.size() > 20) {
      EXPECT_THAT(s.message(), Not(HasSubstr(c.token.substr(6, 20))));
    }
  }
}

}  // namespace
}  // namespace abexp
