#include "core/npy.h"
#include "tests/temp_files.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace namm {
namespace {

namespace fs = std::filesystem;

class NpyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("namm_npy_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // Writes a hand-made .npy: magic, version, header (padded to 64) and data bytes.
  std::string write_raw(const std::string& name, int major, const std::string& dict,
                        const std::string& data) const {
    const size_t len_bytes = major == 1 ? 2 : 4;
    std::string header = dict;
    const size_t total = 8 + len_bytes + header.size() + 1;
    header.append((64 - total % 64) % 64, ' ');
    header.push_back('\n');
    std::string bytes("\x93NUMPY", 6);
    bytes.push_back(static_cast<char>(major));
    bytes.push_back(0);
    for (size_t i = 0; i < len_bytes; ++i) {
      bytes.push_back(static_cast<char>((header.size() >> (8 * i)) & 0xff));
    }
    bytes += header + data;
    const std::string p = path(name);
    std::ofstream(p, std::ios::binary).write(bytes.data(), bytes.size());
    return p;
  }

  // Asserts read_npy(p) throws a message naming p and containing needle.
  static void expect_error(const std::string& p, const std::string& needle) {
    try {
      read_npy(p);
      FAIL() << "read_npy(" << p << ") did not throw";
    } catch (const std::runtime_error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(p), std::string::npos) << message;
      EXPECT_NE(message.find(needle), std::string::npos) << message;
      EXPECT_EQ(message.find('\n'), std::string::npos) << "one line: " << message;
    }
  }

  static std::string floats(std::initializer_list<float> values) {
    std::string out;
    for (float v : values) out.append(reinterpret_cast<const char*>(&v), sizeof v);
    return out;
  }

  fs::path dir_;
};

TEST_F(NpyTest, RoundTripKeepsValuesShapeAndDtypeForEveryDtype) {
  at::manual_seed(0);
  const std::vector<at::Tensor> tensors = {
      at::randn({3, 4, 5}, at::kFloat),
      at::randn({7}, at::kDouble),
      at::randint(-1000000000000LL, 1000000000000LL, {2, 3}, at::kLong),
      at::randint(-100000, 100000, {4, 1, 2}, at::kInt),
      at::zeros({0, 3}, at::kFloat),
      at::scalar_tensor(2.5, at::kDouble),
  };
  for (size_t i = 0; i < tensors.size(); ++i) {
    const std::string p = path("a" + std::to_string(i) + ".npy");
    write_npy(p, tensors[i]);
    const at::Tensor back = read_npy(p);
    EXPECT_EQ(back.scalar_type(), tensors[i].scalar_type()) << i;
    EXPECT_EQ(back.sizes(), tensors[i].sizes()) << i;
    EXPECT_TRUE(at::equal(back, tensors[i])) << i;
    EXPECT_FALSE(test_support::has_temporary(p)) << "temporary left behind";
  }
}

TEST_F(NpyTest, WriteMakesNonContiguousTensorsContiguousInCOrder) {
  const at::Tensor t = at::arange(12, at::kFloat).view({3, 4}).t();
  const std::string p = path("t.npy");
  write_npy(p, t);
  EXPECT_TRUE(at::equal(read_npy(p), t.contiguous()));
}

TEST_F(NpyTest, WriteReplacesAnExistingFile) {
  const std::string p = path("x.npy");
  write_npy(p, at::ones({100}, at::kDouble));
  write_npy(p, at::zeros({2}, at::kInt));
  EXPECT_TRUE(at::equal(read_npy(p), at::zeros({2}, at::kInt)));
}

TEST_F(NpyTest, WriteRejectsUnsupportedDtype) {
  EXPECT_THROW(write_npy(path("h.npy"), at::ones({2}, at::kHalf)), std::invalid_argument);
}

TEST_F(NpyTest, ReadsVersion2And3Headers) {
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  for (int major : {2, 3}) {
    const at::Tensor t = read_npy(write_raw("v" + std::to_string(major) + ".npy", major, dict,
                                            floats({1.5f, -2.0f})));
    ASSERT_EQ(t.sizes(), at::IntArrayRef({2}));
    EXPECT_FLOAT_EQ(t[0].item<float>(), 1.5f);
    EXPECT_FLOAT_EQ(t[1].item<float>(), -2.0f);
  }
}

TEST_F(NpyTest, ReadsDictKeysInAnyOrder) {
  const at::Tensor t = read_npy(write_raw(
      "o.npy", 1, "{'shape': (1, 2), 'fortran_order': False, 'descr': '<f4'}", floats({3, 4})));
  EXPECT_EQ(t.sizes(), at::IntArrayRef({1, 2}));
  EXPECT_FLOAT_EQ(t[0][1].item<float>(), 4.0f);
}

TEST_F(NpyTest, RejectsBadMagic) {
  const std::string p = path("bad.npy");
  std::ofstream(p, std::ios::binary) << "PK\x03\x04 this is a zip, not an array";
  expect_error(p, "bad magic");
}

TEST_F(NpyTest, RejectsTruncatedData) {
  const std::string p = write_raw(
      "trunc.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", floats({1, 2}));
  expect_error(p, "truncated data");
}

TEST_F(NpyTest, RejectsTruncatedHeader) {
  const std::string full = write_raw(
      "full.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", floats({1}));
  std::ifstream in(full, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string p = path("cut.npy");
  std::ofstream(p, std::ios::binary).write(bytes.data(), 30);
  expect_error(p, "truncated header");
}

TEST_F(NpyTest, RejectsFortranOrder) {
  const std::string p = write_raw(
      "f.npy", 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (1, 2), }", floats({1, 2}));
  expect_error(p, "fortran_order");
}

TEST_F(NpyTest, RejectsBigEndian) {
  const std::string p = write_raw(
      "be.npy", 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", floats({1}));
  expect_error(p, "big-endian");
}

TEST_F(NpyTest, RejectsUnsupportedDtype) {
  const std::string p = write_raw(
      "u8.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (4,), }", "abcd");
  expect_error(p, "not supported");
}

TEST_F(NpyTest, RejectsHeaderWithoutDescr) {
  const std::string p =
      write_raw("nod.npy", 1, "{'fortran_order': False, 'shape': (1,), }", floats({1}));
  expect_error(p, "bad header");
}

TEST_F(NpyTest, RejectsMalformedShape) {
  const std::string p = write_raw(
      "shape.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (a, 1), }", floats({1}));
  expect_error(p, "bad header");
}

TEST_F(NpyTest, RejectsUnknownVersion) {
  const std::string p = write_raw(
      "v9.npy", 9, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", floats({1}));
  expect_error(p, "version");
}

TEST_F(NpyTest, MissingFileErrorNamesThePath) { expect_error(path("nope.npy"), "no such file"); }

}  // namespace
}  // namespace namm
