#include "core/safetensors.h"
#include "tests/temp_files.h"

#include "core/atomic_file.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace namm {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test, removed afterwards.
class Safetensors : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    dir_ = fs::temp_directory_path() /
           ("namm_safetensors_" + std::to_string(::getpid()) + "_" + std::to_string(rd()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // Writes a file from a header text and data bytes, with an honest length prefix.
  std::string make(const std::string& name, const std::string& header,
                   const std::string& data = "") const {
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
    return make_raw(name, bytes + header + data);
  }
  std::string make_raw(const std::string& name, const std::string& bytes) const {
    const std::string p = path(name);
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }

  // Reading p must fail with a message naming the file and the problem.
  static void expect_error(const std::string& p, const std::string& problem) {
    try {
      read_safetensors(p);
      ADD_FAILURE() << "no error for " << p << " (expected: " << problem << ")";
    } catch (const std::runtime_error& e) {
      const std::string message = e.what();
      EXPECT_EQ(message.rfind(p + ": ", 0), 0u) << message;
      EXPECT_NE(message.find(problem), std::string::npos)
          << "message: " << message << "\nexpected to contain: " << problem;
      EXPECT_EQ(message.find('\n'), std::string::npos) << "not one line: " << message;
    }
  }

  fs::path dir_;
};

// core/atomic_file has no test file of its own; its behaviour is pinned here.
TEST_F(Safetensors, AtomicWriteJoinsPiecesAndReadReturnsBytesExactly) {
  const std::string binary("a\0b\xff", 4);
  write_file_atomically(path("f"), std::vector<std::string_view>{binary, "", "tail"});
  EXPECT_EQ(read_file(path("f")), binary + "tail");
  write_file_atomically(path("f"), "");
  EXPECT_EQ(read_file(path("f")), "");
  EXPECT_FALSE(test_support::has_temporary(path("f")));
}

TEST_F(Safetensors, AtomicWriteThatFailsKeepsTargetAndRemovesTemporary) {
  // a directory at the target is refused before any temporary is made
  fs::create_directories(path("target/child"));
  try {
    write_file_atomically(path("target"), "bytes");
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), path("target") + ": is a directory") << e.what();
  }
  EXPECT_TRUE(fs::is_directory(path("target/child")));
  // a directory that cannot be written: creating the temporary fails, nothing is left
  fs::create_directories(path("locked"));
  fs::permissions(path("locked"), fs::perms::owner_read | fs::perms::owner_exec);
  if (::access(path("locked").c_str(), W_OK) != 0) {  // root writes anyway
    try {
      write_file_atomically(path("locked/f"), "bytes");
      ADD_FAILURE() << "no error";
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()).rfind(path("locked/f") + ": cannot create ", 0), 0u) << e.what();
    }
  }
  fs::permissions(path("locked"), fs::perms::owner_all);
  for (const auto& entry : fs::recursive_directory_iterator(dir_))
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();
}

TEST_F(Safetensors, ReadFileNamesMissingFileAndDirectory) {
  try {
    read_file(path("absent"));
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), path("absent") + ": no such file");
  }
  try {
    read_file(dir_.string());
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), dir_.string() + ": is a directory");
  }
}

std::map<std::string, at::Tensor> every_dtype() {
  at::manual_seed(3);
  std::map<std::string, at::Tensor> t;
  t["f64"] = at::randn({2, 3}, at::kDouble);
  t["f32"] = at::randn({4, 1, 5});
  t["f16"] = at::randn({7}).to(at::kHalf);
  t["bf16"] = at::randn({3, 2}).to(at::kBFloat16);
  t["i64"] = at::tensor({std::numeric_limits<int64_t>::min(), int64_t{0},
                         std::numeric_limits<int64_t>::max()});
  t["i32"] = at::randint(-1000, 1000, {2, 2}, at::kInt);
  t["i16"] = at::randint(-300, 300, {5}, at::kShort);
  t["i8"] = at::randint(-128, 128, {3}, at::kChar);
  t["u8"] = at::randint(0, 256, {9}, at::kByte);
  t["bool"] = at::rand({6}) > 0.5;
  t["scalar_f32"] = at::scalar_tensor(2.5);
  t["scalar_i64"] = at::scalar_tensor(-9, at::kLong);
  t["empty_f32"] = at::empty({0, 4});
  t["empty_u8"] = at::empty({3, 0}, at::kByte);
  return t;
}

TEST_F(Safetensors, RoundTripKeepsEveryDtypeShapeAndValue) {
  const auto tensors = every_dtype();
  const std::map<std::string, std::string> metadata{
      {"format", "pt"}, {"empty", ""}, {"unicode", "ünïcode ✓"}, {"json", "{\"a\": [1, 2]}"}};
  write_safetensors(path("all.safetensors"), tensors, metadata);
  const SafetensorsFile file = read_safetensors(path("all.safetensors"));
  EXPECT_EQ(file.source, path("all.safetensors"));
  EXPECT_EQ(file.metadata, metadata);
  ASSERT_EQ(file.tensors.size(), tensors.size());
  for (const auto& [name, expected] : tensors) {
    const at::Tensor& got = file.at(name);
    EXPECT_EQ(got.scalar_type(), expected.scalar_type()) << name;
    EXPECT_EQ(got.sizes(), expected.sizes()) << name;
    EXPECT_TRUE(got.device().is_cpu()) << name;
    EXPECT_TRUE(at::equal(got, expected)) << name;
  }
}

TEST_F(Safetensors, EmptyMapRoundTripsAndOmitsMetadataKey) {
  write_safetensors(path("none.safetensors"), {});
  const std::string bytes = read_file(path("none.safetensors"));
  EXPECT_EQ(bytes.find("__metadata__"), std::string::npos);
  const SafetensorsFile file = read_safetensors(path("none.safetensors"));
  EXPECT_TRUE(file.tensors.empty());
  EXPECT_TRUE(file.metadata.empty());
}

TEST_F(Safetensors, WriterPadsHeaderToEightBytesAndLaysDataOutByName) {
  write_safetensors(path("p.safetensors"),
                    {{"b", at::ones({3}, at::kByte)}, {"a", at::full({1}, 2.0f)}},
                    {{"k", "v"}});
  const std::string bytes = read_file(path("p.safetensors"));
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ(n % 8, 0u);
  ASSERT_EQ(bytes.size(), 8 + n + 4 + 3);
  const std::string header = bytes.substr(8, n);
  EXPECT_NE(header.find("\"a\":{\"data_offsets\":[0,4]"), std::string::npos) << header;
  EXPECT_NE(header.find("\"b\":{\"data_offsets\":[4,7]"), std::string::npos) << header;
  EXPECT_EQ(header.back() == ' ' || header.back() == '}', true);
  // data: "a" (float 2.0) then "b" (three 1s).
  float a;
  std::memcpy(&a, bytes.data() + 8 + n, 4);
  EXPECT_EQ(a, 2.0f);
  EXPECT_EQ(bytes.substr(8 + n + 4), std::string("\x01\x01\x01", 3));
}

TEST_F(Safetensors, WriterStoresNonContiguousTensorInLogicalOrder) {
  const at::Tensor base = at::arange(6, at::kFloat).reshape({2, 3});
  write_safetensors(path("t.safetensors"), {{"t", base.t()}, {"s", base.select(1, 1)}});
  const SafetensorsFile file = read_safetensors(path("t.safetensors"));
  EXPECT_TRUE(at::equal(file.at("t"), base.t().contiguous()));
  EXPECT_TRUE(at::equal(file.at("s"), at::tensor({1.0f, 4.0f})));
}

TEST_F(Safetensors, WriteReplacesExistingFileAndLeavesNoTemporary) {
  write_safetensors(path("w.safetensors"), {{"x", at::zeros({100})}});
  write_safetensors(path("w.safetensors"), {{"y", at::ones({2})}});
  const SafetensorsFile file = read_safetensors(path("w.safetensors"));
  EXPECT_EQ(file.tensors.count("x"), 0u);
  EXPECT_TRUE(at::equal(file.at("y"), at::ones({2})));
  EXPECT_FALSE(test_support::has_temporary(path("w.safetensors")));
}

TEST_F(Safetensors, WriteIntoMissingDirectoryNamesThePath) {
  const std::string p = path("no/such/dir/x.safetensors");
  try {
    write_safetensors(p, {{"x", at::zeros({1})}});
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(p + ": ", 0), 0u) << e.what();
    EXPECT_NE(std::string(e.what()).find("No such file or directory"), std::string::npos)
        << e.what();
  }
}

TEST_F(Safetensors, WriterRejectsUnsupportedDtypeAndReservedName) {
  EXPECT_THROW(write_safetensors(path("c.safetensors"), {{"c", at::zeros({2}, at::kComplexFloat)}}),
               std::invalid_argument);
  EXPECT_THROW(write_safetensors(path("m.safetensors"), {{"__metadata__", at::zeros({2})}}),
               std::invalid_argument);
  EXPECT_THROW(write_safetensors(path("u.safetensors"), {{"u", at::Tensor()}}),
               std::invalid_argument);
  EXPECT_FALSE(fs::exists(path("c.safetensors")));
}

TEST_F(Safetensors, TensorsOutliveTheFileAndAreIndependent) {
  write_safetensors(path("o.safetensors"), {{"a", at::ones({4})}, {"b", at::ones({4})}});
  at::Tensor a, b;
  {
    SafetensorsFile file = read_safetensors(path("o.safetensors"));
    a = file.at("a");
    b = file.at("b");
  }
  fs::remove(path("o.safetensors"));
  a.add_(1);  // a and b share one buffer but not bytes
  EXPECT_TRUE(at::equal(a, at::full({4}, 2.0f)));
  EXPECT_TRUE(at::equal(b, at::ones({4})));
}

// Values written by tests/fixtures/make_safetensors_fixtures.py (numpy, by hand).
TEST_F(Safetensors, ReadsPythonWrittenFileWithKnownValues) {
  const SafetensorsFile file =
      read_safetensors(std::string(NAMM_FIXTURES_DIR) + "/safetensors/all_dtypes.safetensors");
  EXPECT_EQ(file.metadata.at("creator"), "make_safetensors_fixtures.py");
  EXPECT_EQ(file.metadata.at("note"), "ünïcode ✓");
  ASSERT_EQ(file.tensors.size(), 12u);

  const at::Tensor f64 = file.at("f64");
  ASSERT_EQ(f64.scalar_type(), at::kDouble);
  ASSERT_EQ(f64.sizes(), at::IntArrayRef({2, 3}));
  EXPECT_EQ(f64[0][1].item<double>(), -2.25);
  EXPECT_EQ(f64[1][0].item<double>(), 1e300);
  EXPECT_TRUE(std::signbit(f64[1][1].item<double>()));
  EXPECT_EQ(f64[1][2].item<double>(), 5e-324);

  EXPECT_TRUE(at::equal(file.at("f32"),
                        at::tensor({1.0f, -2.5f, std::numeric_limits<float>::max(),
                                    std::numeric_limits<float>::min()})));
  EXPECT_EQ(file.at("f16").scalar_type(), at::kHalf);
  EXPECT_TRUE(at::equal(file.at("f16").to(at::kFloat),
                        at::tensor({1.0f, -2.0f, 65504.0f, std::ldexp(1.0f, -14)})));
  EXPECT_EQ(file.at("bf16").scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(file.at("bf16").to(at::kFloat),
                        at::tensor({1.0f, -2.0f, 3.140625f, std::ldexp(1.0f, 100)})));
  EXPECT_TRUE(at::equal(file.at("i64"),
                        at::tensor({std::numeric_limits<int64_t>::min(),
                                    std::numeric_limits<int64_t>::max(), int64_t{0}, int64_t{42}})));
  EXPECT_TRUE(at::equal(file.at("i32"),
                        at::tensor({std::numeric_limits<int32_t>::min(),
                                    std::numeric_limits<int32_t>::max()}).reshape({2, 1})));
  EXPECT_TRUE(at::equal(file.at("i16"), at::tensor({-32768, 32767, 7}).to(at::kShort)));
  EXPECT_TRUE(at::equal(file.at("i8"), at::tensor({-128, 127}).to(at::kChar)));
  EXPECT_TRUE(at::equal(file.at("u8"), at::tensor({0, 255, 128}).to(at::kByte)));
  EXPECT_TRUE(at::equal(file.at("bool"), at::tensor({1, 0, 1}).to(at::kBool)));
  EXPECT_EQ(file.at("scalar").dim(), 0);
  EXPECT_EQ(file.at("scalar").item<float>(), 7.5f);
  EXPECT_EQ(file.at("empty").sizes(), at::IntArrayRef({0, 3}));
}

TEST_F(Safetensors, ReadsTensorAtMisalignedOffset) {
  const SafetensorsFile file =
      read_safetensors(std::string(NAMM_FIXTURES_DIR) + "/safetensors/misaligned.safetensors");
  EXPECT_TRUE(at::equal(file.at("a_bytes"), at::tensor({1, 2, 3}).to(at::kByte)));
  EXPECT_TRUE(at::equal(file.at("b_floats"), at::tensor({0.5f, -1.25f, 1e-3f})));
}

TEST_F(Safetensors, MissingTensorErrorNamesFileAndTensor) {
  write_safetensors(path("m.safetensors"), {{"present", at::zeros({1})}});
  const SafetensorsFile file = read_safetensors(path("m.safetensors"));
  try {
    file.at("absent");
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(path("m.safetensors")), std::string::npos) << message;
    EXPECT_NE(message.find("\"absent\""), std::string::npos) << message;
    EXPECT_NE(message.find("present"), std::string::npos) << message;
  }
}

TEST_F(Safetensors, MissingFileIsNamed) {
  expect_error(path("nothing.safetensors"), "no such file");
}

TEST_F(Safetensors, ShorterThanLengthPrefixFails) {
  expect_error(make_raw("short", std::string("\x02\x00\x00", 3)),
               "file is 3 bytes, shorter than the 8-byte header length");
}

TEST_F(Safetensors, HeaderLengthPastEndOfFileFails) {
  std::string bytes(8, '\0');
  bytes[0] = 100;
  expect_error(make_raw("long", bytes + "{}"), "header length 100 exceeds the 2 bytes");
}

TEST_F(Safetensors, AbsurdHeaderLengthFails) {
  std::string bytes(8, '\0');
  bytes[6] = 1;  // 2^48
  expect_error(make_raw("absurd", bytes + "{}"),
               "header length 281474976710656 exceeds the limit of 100000000 bytes");
}

TEST_F(Safetensors, HeaderThatIsNotJsonFails) {
  write_safetensors(path("good.safetensors"), {{"x", at::ones({2})}});
  std::string bytes = read_file(path("good.safetensors"));
  bytes[8] = 'X';  // the opening brace
  expect_error(make_raw("flipped", bytes), "header is not valid JSON: ");
}

TEST_F(Safetensors, HeaderThatIsNotAnObjectFails) {
  expect_error(make("array", "[1, 2]"), "header is a JSON array, not an object");
}

TEST_F(Safetensors, EntryMissingAFieldFails) {
  expect_error(make("no_dtype", R"({"x": {"shape": [1], "data_offsets": [0, 4]}})", "abcd"),
               "tensor \"x\": missing \"dtype\"");
  expect_error(make("no_shape", R"({"x": {"dtype": "F32", "data_offsets": [0, 4]}})", "abcd"),
               "tensor \"x\": missing \"shape\"");
  expect_error(make("no_offsets", R"({"x": {"dtype": "F32", "shape": [1]}})", "abcd"),
               "tensor \"x\": missing \"data_offsets\"");
  expect_error(make("not_object", R"({"x": [1, 2]})"),
               "tensor \"x\": entry is a JSON array, not an object");
}

TEST_F(Safetensors, EntryFieldOfWrongTypeFails) {
  expect_error(make("dtype", R"({"x": {"dtype": 4, "shape": [1], "data_offsets": [0, 4]}})", "abcd"),
               "tensor \"x\": \"dtype\" is a JSON number, not a string");
  expect_error(make("shape", R"({"x": {"dtype": "F32", "shape": "1", "data_offsets": [0, 4]}})", "abcd"),
               "\"shape\" must be an array of non-negative integers, got \"1\"");
  expect_error(make("fshape", R"({"x": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})", "abcd"),
               "\"shape\" must be an array of non-negative integers, got [1.5]");
  expect_error(make("offs", R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", "abcd"),
               "\"data_offsets\" must be [begin, end] with non-negative integers, got [0]");
  expect_error(make("noffs", R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})", "abcd"),
               "\"data_offsets\" must be [begin, end] with non-negative integers, got [-4,0]");
}

TEST_F(Safetensors, UnknownDtypeFails) {
  expect_error(make("u16", R"({"x": {"dtype": "U16", "shape": [2], "data_offsets": [0, 4]}})", "abcd"),
               "tensor \"x\": unsupported dtype \"U16\" (supported: F64 F32 F16 BF16");
}

TEST_F(Safetensors, NegativeDimensionFails) {
  expect_error(make("neg", R"({"x": {"dtype": "F32", "shape": [2, -1], "data_offsets": [0, 4]}})", "abcd"),
               "tensor \"x\": \"shape\" must be an array of non-negative integers, got [2,-1]");
}

TEST_F(Safetensors, EndBeforeBeginFails) {
  expect_error(make("rev", R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}})", "abcd"),
               "tensor \"x\": data_offsets [4,0] end before begin");
}

TEST_F(Safetensors, ByteLengthThatDisagreesWithShapeFails) {
  expect_error(make("len", R"({"x": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}})",
                    std::string(12, 'a')),
               "tensor \"x\": data_offsets [0,12] hold 12 bytes but F32 [2,2] needs 16");
  expect_error(make("huge", R"({"x": {"dtype": "F64", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}})",
                    std::string(8, 'a')),
               "needs more than 2^64");
}

TEST_F(Safetensors, TruncatedFileFails) {
  write_safetensors(path("good.safetensors"), {{"a", at::ones({2})}, {"b", at::ones({3})}});
  const std::string bytes = read_file(path("good.safetensors"));
  expect_error(make_raw("cut.safetensors", bytes.substr(0, bytes.size() - 4)),
               "tensor \"b\": data_offsets [8, 20] run past the end of the 16-byte data section");
  // cut inside the header: the length now exceeds what is left.
  expect_error(make_raw("cut_header.safetensors", bytes.substr(0, 20)),
               "exceeds the 12 bytes after the length (file truncated?)");
}

TEST_F(Safetensors, OverlappingTensorsFail) {
  expect_error(make("overlap",
                    R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                    std::string(12, '\0')),
               "tensors \"a\" [0, 8] and \"b\" [4, 12] overlap");
}

TEST_F(Safetensors, EmptyTensorsMayShareAnOffset) {
  const SafetensorsFile file =
      read_safetensors(make("empties",
                            R"({"a": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]},
                                "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                "c": {"dtype": "I64", "shape": [0, 2], "data_offsets": [4, 4]}})",
                            std::string(4, '\0')));
  EXPECT_EQ(file.at("a").numel(), 0);
  EXPECT_EQ(file.at("c").sizes(), at::IntArrayRef({0, 2}));
  EXPECT_EQ(file.at("b").item<float>(), 0.0f);
}

TEST_F(Safetensors, MetadataThatIsNotStringsFails) {
  expect_error(make("meta_num", R"({"__metadata__": {"k": 3}})"),
               "\"__metadata__\" value of \"k\" is a JSON number, not a string");
  expect_error(make("meta_arr", R"({"__metadata__": ["k"]})"),
               "\"__metadata__\" is a JSON array, not an object");
}

TEST_F(Safetensors, BoolByteOtherThanZeroOrOneFails) {
  expect_error(make("bool", R"({"x": {"dtype": "BOOL", "shape": [3], "data_offsets": [0, 3]}})",
                    std::string("\x01\x00\x02", 3)),
               "tensor \"x\": BOOL element 2 is byte 2, not 0 or 1");
}

}  // namespace
}  // namespace namm
