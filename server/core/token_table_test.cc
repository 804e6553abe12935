#include "server/core/token_table.h"

#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/token_store.h"

namespace abexp {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// Tokens of the right form: "abexp_" and 43 base64url characters.
const std::string kCheckoutToken =
    "abexp_" + std::string(40, 'A') + "x-_";  // assign,record
const std::string kAnalystToken =
    "abexp_" + std::string(42, 'b') + "9";                      // results
const std::string kOpsToken = "abexp_" + std::string(43, 'Z');  // admin
const std::string kUnknownToken = "abexp_" + std::string(43, 'q');

constexpr char kRpc[] = "abexp.v1.ResultsService/GetResults";

std::string Line(const std::string& name, const std::string& roles,
                 const std::string& token) {
  return absl::StrCat(name, " ", roles, " sha256:", TokenSha256Hex(token),
                      "\n");
}

std::string GoodFile() {
  return absl::StrCat(
      "# callers of abexp\n", "\n",
      Line("checkout-service", "assign,record", kCheckoutToken),
      "   # an indented comment\n",
      // Tabs separate fields as spaces do.
      "analyst.team_1\tresults\tsha256:", TokenSha256Hex(kAnalystToken), "\r\n",
      Line("ops", "admin", kOpsToken));
}

TokenTable MustParse(const std::string& text) {
  absl::StatusOr<TokenTable> table = TokenTable::Parse(text, "tokens.txt");
  EXPECT_TRUE(table.ok()) << table.status();
  return *std::move(table);
}

std::string ParseError(const std::string& text) {
  absl::StatusOr<TokenTable> table = TokenTable::Parse(text, "tokens.txt");
  EXPECT_FALSE(table.ok());
  EXPECT_EQ(table.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(table.status().message());
}

std::string Bearer(const std::string& token) { return "Bearer " + token; }

TEST(TokenSha256Hex, IsTheStandardSha256InLowercaseHex) {
  // FIPS 180-2's example for "abc".
  EXPECT_EQ(TokenSha256Hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(LooksLikeToken, AcceptsOnlyThePrefixAnd43Base64UrlCharacters) {
  EXPECT_TRUE(LooksLikeToken(kCheckoutToken));
  EXPECT_FALSE(LooksLikeToken(kCheckoutToken.substr(1)));
  EXPECT_FALSE(LooksLikeToken(kCheckoutToken + "A"));
  EXPECT_FALSE(LooksLikeToken("abexp_" + std::string(42, 'A') + "="));
  EXPECT_FALSE(LooksLikeToken("abexq_" + std::string(43, 'A')));
}

TEST(TokenTable, ParsesNamesRolesAndHashesSkippingCommentsAndBlankLines) {
  TokenTable table = MustParse(GoodFile());
  ASSERT_EQ(table.entries().size(), 3u);
  EXPECT_EQ(table.entries()[0].name, "checkout-service");
  EXPECT_EQ(table.entries()[0].roles, kRoleAssign | kRoleRecord);
  EXPECT_EQ(table.entries()[1].name, "analyst.team_1");
  EXPECT_EQ(table.entries()[1].roles, kRoleResults);
  EXPECT_EQ(table.entries()[2].roles, kRoleAdmin);
  EXPECT_EQ(table.Summary(),
            "3 tokens: assign 1, record 1, results 1, admin 1");
}

TEST(TokenTable, AllowsAKnownTokenWithTheRolesTheCallNeeds) {
  TokenTable table = MustParse(GoodFile());
  EXPECT_TRUE(
      table.Check(Bearer(kCheckoutToken), kRoleAssign | kRoleRecord, kRpc)
          .ok());
  EXPECT_TRUE(table.Check(Bearer(kAnalystToken), kRoleResults, kRpc).ok());
  // The scheme is case-insensitive (RFC 7235).
  EXPECT_TRUE(table.Check("bearer " + kAnalystToken, kRoleResults, kRpc).ok());
}

TEST(TokenTable, AdminMayCallEverything) {
  TokenTable table = MustParse(GoodFile());
  EXPECT_TRUE(table
                  .Check(Bearer(kOpsToken),
                         kRoleAssign | kRoleRecord | kRoleResults | kRoleAdmin,
                         kRpc)
                  .ok());
}

TEST(TokenTable, AKnownTokenWithoutTheRoleIsDeniedNamingTokenRpcAndRole) {
  TokenTable table = MustParse(GoodFile());
  absl::Status status = table.Check(Bearer(kCheckoutToken), kRoleResults, kRpc);
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(status.message(),
              AllOf(HasSubstr("checkout-service"), HasSubstr(kRpc),
                    HasSubstr("lacks the role results"),
                    HasSubstr("--auth_tokens_file")));
  // Only the missing role is named.
  status = table.Check(Bearer(kAnalystToken), kRoleAssign | kRoleResults,
                       "abexp.v1.AssignmentService/Assign");
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(status.message(), HasSubstr("lacks the role assign ("));
  status = table.Check(Bearer(kAnalystToken), kRoleAssign | kRoleRecord,
                       "abexp.v1.AssignmentService/Assign");
  EXPECT_THAT(status.message(), HasSubstr("lacks the roles assign,record"));
}

TEST(TokenTable, AMissingMalformedOrUnknownTokenIsUnauthenticated) {
  TokenTable table = MustParse(GoodFile());
  absl::Status missing = table.Check(std::nullopt, kRoleResults, kRpc);
  EXPECT_EQ(missing.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(missing.message(),
              AllOf(HasSubstr("authorization: Bearer"), HasSubstr("results")));
  for (const std::string& bad :
       {std::string("Basic dXNlcjpwYXNz"), kAnalystToken, std::string("Bearer"),
        Bearer("abexp_short"), Bearer(kAnalystToken + "A")}) {
    absl::Status status = table.Check(bad, kRoleResults, kRpc);
    EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated) << bad;
  }
  absl::Status unknown = table.Check(Bearer(kUnknownToken), kRoleResults, kRpc);
  EXPECT_EQ(unknown.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(unknown.message(), HasSubstr("not known"));
  // A message never repeats the token.
  EXPECT_THAT(unknown.message(), Not(HasSubstr(kUnknownToken)));
}

TEST(TokenTable, ReportsEveryProblemWithFileAndLine) {
  const std::string hash = TokenSha256Hex(kCheckoutToken);
  std::string upper = hash;
  for (char& c : upper) c = static_cast<char>(toupper(c));
  const std::string text = absl::StrCat(
      Line("checkout-service", "assign", kCheckoutToken),            // 1
      "bad!name assign sha256:", TokenSha256Hex("x"), "\n",          // 2
      "a1 assign,publish sha256:", TokenSha256Hex("y"), "\n",        // 3
      "a2 assign sha256:", upper, "\n",                              // 4
      "a3 assign sha256:abc\n",                                      // 5
      "checkout-service record sha256:", TokenSha256Hex("z"), "\n",  // 6
      "a4 assign ", TokenSha256Hex("w"), "\n",                       // 7
      "a5 assign\n",                                                 // 8
      "a6 assign ", kAnalystToken, "\n",                             // 9
      "a7 record sha256:", hash, "\n");                              // 10
  const std::string message = ParseError(text);
  EXPECT_THAT(message, HasSubstr("9 errors"));
  EXPECT_THAT(message,
              HasSubstr("tokens.txt:2: name \"bad!name\" is not 1 to 64"));
  EXPECT_THAT(message,
              AllOf(HasSubstr("tokens.txt:3: unknown role \"publish\""),
                    HasSubstr("assign, record, results and admin")));
  EXPECT_THAT(message,
              HasSubstr("tokens.txt:4: the hash after sha256: has 64 "
                        "characters; it must be exactly 64 lowercase"));
  EXPECT_THAT(message, HasSubstr("tokens.txt:5: the hash after sha256: has 3"));
  EXPECT_THAT(message, HasSubstr("tokens.txt:6: name checkout-service is "
                                 "already used on line 1"));
  EXPECT_THAT(message, HasSubstr("tokens.txt:7: the third field must be "
                                 "sha256:"));
  EXPECT_THAT(message, HasSubstr("tokens.txt:8: expected 3 fields"));
  EXPECT_THAT(message,
              AllOf(HasSubstr("tokens.txt:9: this line holds a token itself"),
                    HasSubstr("abexp token create")));
  EXPECT_THAT(message, HasSubstr("tokens.txt:10: this hash is already on "
                                 "line 1"));
  // The line with the raw token is reported without the token.
  EXPECT_THAT(message, Not(HasSubstr(kAnalystToken)));
}

TEST(TokenTable, ARawTokenAloneOnALineIsCaughtAsSuch) {
  EXPECT_THAT(ParseError(kOpsToken + "\n"),
              HasSubstr("tokens.txt:1: this line holds a token itself"));
}

TEST(TokenTable, AFileWithNoTokenIsAnError) {
  EXPECT_THAT(ParseError("# nobody yet\n\n"),
              HasSubstr("holds no token, so every call would be refused"));
}

// ---- TokenStore: the file, and reloads ----

class TokenStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           absl::StrCat(
               "token_store_test_", getpid(), "_",
               ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "tokens.txt").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void Write(const std::string& text, mode_t mode = 0600) {
    std::ofstream(path_, std::ios::trunc) << text;
    chmod(path_.c_str(), mode);
  }

  std::filesystem::path dir_;
  std::string path_;
};

TEST_F(TokenStoreTest, ReloadSwapsTheTableAndAnInvalidFileKeepsTheOldOne) {
  Write(Line("checkout-service", "assign", kCheckoutToken));
  TokenLoad load;
  absl::StatusOr<std::unique_ptr<TokenStore>> store =
      TokenStore::Open(path_, &load);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_TRUE(load.warnings.empty());
  const std::string assign = "abexp.v1.AssignmentService/Assign";
  EXPECT_TRUE((*store)
                  ->Snapshot()
                  ->Check(Bearer(kCheckoutToken), kRoleAssign, assign)
                  .ok());

  Write(Line("analyst", "results", kAnalystToken));
  ASSERT_TRUE((*store)->Reload().ok());
  std::shared_ptr<const TokenTable> table = (*store)->Snapshot();
  EXPECT_EQ(table->Check(Bearer(kCheckoutToken), kRoleAssign, assign).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(table->Check(Bearer(kAnalystToken), kRoleResults, kRpc).ok());

  Write("analyst results sha256:nothex\n");
  absl::StatusOr<TokenLoad> failed = (*store)->Reload();
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(failed.status().message(), HasSubstr("tokens.txt:1:"));
  EXPECT_TRUE((*store)
                  ->Snapshot()
                  ->Check(Bearer(kAnalystToken), kRoleResults, kRpc)
                  .ok());
}

TEST_F(TokenStoreTest, WarnsWhenOtherUsersMayReadTheFile) {
  Write(Line("ops", "admin", kOpsToken), 0644);
  TokenLoad load;
  ASSERT_TRUE(TokenStore::Open(path_, &load).ok());
  ASSERT_EQ(load.warnings.size(), 1u);
  EXPECT_THAT(load.warnings[0],
              AllOf(HasSubstr("may be read by other users (mode 0644)"),
                    HasSubstr("chmod 600")));
}

TEST_F(TokenStoreTest, AMissingFileIsAnErrorNamingTheFlag) {
  absl::StatusOr<std::unique_ptr<TokenStore>> store =
      TokenStore::Open(path_ + ".missing");
  EXPECT_EQ(store.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(store.status().message(), HasSubstr("--auth_tokens_file"));
}

}  // namespace
}  // namespace abexp
