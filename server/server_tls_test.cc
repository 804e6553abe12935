#include "server/server_tls.h"

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/openssl_ptr.h"
#include "server/testing/server_process.h"
#include "server/testing/test_certs.h"

namespace abexp {
namespace {

using ::abexp::testing::TempDir;
using ::abexp::testing::TestCertificates;
using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream text;
  text << f.rdbuf();
  return text.str();
}

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

class ServerTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<TestCertificates> certs = TestCertificates::Create(dir_);
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = *certs;
    files_.cert_file = dir_.Write("cert.pem", ReadFile(certs_.ca1.server.cert));
    files_.key_file = dir_.Write("key.pem", ReadFile(certs_.ca1.server.key));
  }

  std::string Identity(const ServerTls& tls) const {
    return ReadFile(absl::StrCat(tls.private_dir(), "/identity.pem"));
  }

  TempDir dir_;
  TestCertificates certs_;
  TlsFiles files_;
};

TEST(CheckTlsFlags, AcceptsNoneCertAndKeyOrAllThree) {
  EXPECT_TRUE(CheckTlsFlags({}).ok());
  EXPECT_TRUE(CheckTlsFlags({"c", "k", ""}).ok());
  EXPECT_TRUE(CheckTlsFlags({"c", "k", "ca"}).ok());
  EXPECT_FALSE(CheckTlsFlags({"c", "", ""}).ok());
  EXPECT_FALSE(CheckTlsFlags({"", "k", ""}).ok());
  EXPECT_FALSE(CheckTlsFlags({"", "", "ca"}).ok());
  EXPECT_FALSE(CheckTlsFlags({"c", "", "ca"}).ok());
}

// gRPC is given the one identity file as both key and certificate chain; it
// reads them with OpenSSL's PEM readers, which skip blocks of other types.
TEST_F(ServerTlsTest, TheOneIdentityFileYieldsTheKeyAndTheMatchingCertificate) {
  absl::StatusOr<std::unique_ptr<ServerTls>> tls = ServerTls::Create(files_);
  ASSERT_TRUE(tls.ok()) << tls.status();
  const std::string identity = Identity(**tls);
  ASSERT_THAT(identity, HasSubstr("-----BEGIN PRIVATE KEY-----"));

  // As gRPC reads them: the chain's first certificate, and the key.
  X509Ptr cert(PEM_read_bio_X509_AUX(MemoryBio(identity).get(), nullptr,
                                     nullptr, nullptr));
  ASSERT_NE(cert, nullptr);
  PkeyPtr key(PEM_read_bio_PrivateKey(MemoryBio(identity).get(), nullptr,
                                      nullptr, nullptr));
  ASSERT_NE(key, nullptr);
  EXPECT_EQ(X509_check_private_key(cert.get(), key.get()), 1);
  // It is the user's certificate, not just any.
  const std::string user_pem = ReadFile(certs_.ca1.server.cert);
  X509Ptr user_cert(
      PEM_read_bio_X509(MemoryBio(user_pem).get(), nullptr, nullptr, nullptr));
  ASSERT_NE(user_cert, nullptr);
  EXPECT_EQ(X509_cmp(cert.get(), user_cert.get()), 0);
}

TEST_F(ServerTlsTest, ServedFilesAreOnlyForThisUserAndGoneAfterwards) {
  files_.client_ca_file = certs_.ca1.cert;
  std::string dir;
  {
    absl::StatusOr<std::unique_ptr<ServerTls>> tls =
        ServerTls::Create(files_, dir_.path());
    ASSERT_TRUE(tls.ok()) << tls.status();
    dir = (*tls)->private_dir();
    EXPECT_THAT(dir, ::testing::StartsWith(dir_.path()));
    EXPECT_EQ(ModeOf(dir), 0700u);
    EXPECT_EQ(ModeOf(absl::StrCat(dir, "/identity.pem")), 0600u);
    EXPECT_EQ(ModeOf(absl::StrCat(dir, "/client_ca.pem")), 0600u);
  }
  struct stat st {};
  EXPECT_NE(stat(dir.c_str(), &st), 0) << dir << " is left behind";
}

TEST_F(ServerTlsTest, ReloadKeepsTheServedSetWhenTheNewOneIsBad) {
  absl::StatusOr<std::unique_ptr<ServerTls>> tls = ServerTls::Create(files_);
  ASSERT_TRUE(tls.ok()) << tls.status();
  const std::string served = Identity(**tls);
  const std::string description = (*tls)->Describe();

  dir_.Write("cert.pem", "garbage");
  absl::StatusOr<bool> garbage = (*tls)->Reload();
  EXPECT_THAT(std::string(garbage.status().message()),
              HasSubstr(absl::StrCat("--tls_cert_file=", files_.cert_file,
                                     " holds no PEM certificate")));
  EXPECT_EQ(Identity(**tls), served);

  dir_.Write("cert.pem", ReadFile(certs_.ca2.server.cert));
  absl::StatusOr<bool> mismatch = (*tls)->Reload();
  EXPECT_THAT(std::string(mismatch.status().message()),
              HasSubstr("does not belong to the certificate"));
  EXPECT_EQ(Identity(**tls), served);
  EXPECT_EQ((*tls)->Describe(), description);
}

// gRPC reads the identity file twice (as key, then as certificate) and
// rereads when its modification time, in seconds, changed in between: each
// generation must have a later one, even within the same second.
TEST_F(ServerTlsTest, AReloadServesANewSetWithALaterModificationTime) {
  absl::StatusOr<std::unique_ptr<ServerTls>> tls = ServerTls::Create(files_);
  ASSERT_TRUE(tls.ok()) << tls.status();
  const std::string path = absl::StrCat((*tls)->private_dir(), "/identity.pem");
  const std::string first = ReadFile(path);
  struct stat before {};
  ASSERT_EQ(stat(path.c_str(), &before), 0);

  absl::StatusOr<bool> same = (*tls)->Reload();
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_FALSE(*same);
  EXPECT_EQ(ReadFile(path), first);

  dir_.Write("cert.pem", ReadFile(certs_.ca2.server.cert));
  dir_.Write("key.pem", ReadFile(certs_.ca2.server.key));
  absl::StatusOr<bool> changed = (*tls)->Reload();
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_TRUE(*changed);
  EXPECT_NE(ReadFile(path), first);
  EXPECT_THAT((*tls)->Describe(), HasSubstr("issuer=\"CN=abexp test CA 2\""));
  struct stat after {};
  ASSERT_EQ(stat(path.c_str(), &after), 0);
  EXPECT_GT(after.st_mtime, before.st_mtime);
}

TEST(IsLoopbackListenAddress, OnlyAddressesThisMachineAloneReaches) {
  for (const char* local :
       {"127.0.0.1:50051", "127.8.9.10:1", "localhost:50051", "[::1]:50051",
        "[::ffff:127.0.0.1]:1", "unix:/run/abexp.sock", "ipv4:127.0.0.1:1"}) {
    EXPECT_TRUE(IsLoopbackListenAddress(local)) << local;
  }
  for (const char* network :
       {"0.0.0.0:50051", "[::]:50051", ":50051", "10.1.2.3:50051",
        "192.168.0.1:1", "abexp.example.com:50051", "128.0.0.1:1",
        "[2001:db8::1]:1"}) {
    EXPECT_FALSE(IsLoopbackListenAddress(network)) << network;
  }
}

}  // namespace
}  // namespace abexp
