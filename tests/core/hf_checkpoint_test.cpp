// Pins core/hf_checkpoint: config.json field readers, the weight-file list of
// a checkpoint directory, the checked copy into parameters and the save. The
// model-specific loaders (Llama, LLaVA, Decision Transformer) have their own
// tests; these use two or three named tensors written inline.
#include "core/hf_checkpoint.h"

#include "core/atomic_file.h"
#include "core/safetensors.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>

namespace namm {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

// A fresh checkpoint directory per test, removed afterwards.
class HfCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    dir_ = fs::temp_directory_path() / ("namm_hf_checkpoint_" + std::to_string(::getpid()) + "_" + std::to_string(rd()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string dir() const { return dir_.string(); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // two parameters, w [2, 3] and b [3], filled with value
  static HfNamedTensors parameters(float value) {
    return {{"w", at::full({2, 3}, value)}, {"b", at::full({3}, value)}};
  }

  fs::path dir_;
};

TEST(HfField, WrongTypeNamesFileAndNestedField) {
  const json config = {{"hidden_size", "big"}};
  const std::string message =
      error_of([&] { hf_field<int64_t>(config, "hidden_size", 0, "m/config.json", "vision_config."); });
  EXPECT_EQ(message, "m/config.json: field 'vision_config.hidden_size' has the wrong type: \"big\"");
}

TEST(HfField, AbsentOrNullGivesFallbackAndDoubleTakesAnInteger) {
  const json config = {{"eps", 1}, {"act", nullptr}};
  EXPECT_EQ(hf_field<std::string>(config, "act", "silu", "config.json"), "silu");
  EXPECT_EQ(hf_field<int64_t>(config, "layers", 4, "config.json"), 4);
  EXPECT_EQ(hf_field<double>(config, "eps", 0.5, "config.json"), 1.0);
  // a bool is not an integer, though C++ calls bool integral
  EXPECT_NE(error_of([&] { hf_field<bool>(config, "eps", false, "config.json"); }).find("field 'eps' has the wrong type"),
            std::string::npos);
}

TEST(HfRequiredInt, MissingAndMistypedFieldsAreNamed) {
  const json config = {{"state_dim", 11.5}};
  EXPECT_EQ(error_of([&] { hf_required_int(config, "act_dim", "c.json"); }),
            "c.json: required field 'act_dim' is missing");
  EXPECT_EQ(error_of([&] { hf_required_int(config, "state_dim", "c.json"); }),
            "c.json: field 'state_dim' must be an integer, got 11.5");
}

TEST(HfParseJson, NotAnObjectNamesFileAndType) {
  EXPECT_EQ(error_of([] { hf_parse_json_object("[1, 2]", "x/config.json"); }),
            "x/config.json: expected a JSON object, got array");
  EXPECT_EQ(error_of([] { hf_parse_json("{", "x/config.json"); }).rfind("x/config.json: not valid JSON: ", 0), 0u);
}

TEST(HfDtypeName, RefusesIntegerWeights) {
  EXPECT_EQ(hf_dtype_name(c10::kBFloat16, "Llama"), "bfloat16");
  EXPECT_EQ(error_of([] { hf_dtype_name(c10::kLong, "Llama"); }),
            "Llama checkpoints hold floating-point weights, not Long");
}

TEST_F(HfCheckpoint, SaveThenLoadRoundTripsAndRemovesAStaleIndex) {
  write_file_atomically(path(kHfIndexFile), R"({"weight_map": {"w": "old-00001-of-00001.safetensors"}})");
  HfNamedTensors saved = parameters(0.0f);
  saved[0].second = at::arange(6, at::kFloat).reshape({2, 3});
  const c10::ScalarType dtype = hf_save_weights(dir(), saved, {{"step", "7"}});
  EXPECT_EQ(dtype, c10::kFloat);
  EXPECT_FALSE(fs::exists(path(kHfIndexFile)));

  const std::vector<HfWeightFile> files = hf_weight_files(dir());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].path, path(kHfWeightsFile));
  HfNamedTensors loaded = parameters(-1.0f);
  const auto metadata = hf_load_weights(dir(), files, loaded, HfWeightRules{});
  EXPECT_EQ(metadata.at("format"), "pt");
  EXPECT_EQ(metadata.at("step"), "7");
  EXPECT_TRUE(at::equal(loaded[0].second, saved[0].second));
  EXPECT_TRUE(at::equal(loaded[1].second, saved[1].second));
}

TEST_F(HfCheckpoint, SaveConvertsToTheGivenDtype) {
  const c10::ScalarType dtype = hf_save_weights(dir(), parameters(0.5f), {}, c10::kBFloat16);
  EXPECT_EQ(dtype, c10::kBFloat16);
  EXPECT_EQ(read_safetensors(path(kHfWeightsFile)).at("w").scalar_type(), c10::kBFloat16);
}

TEST_F(HfCheckpoint, IndexNamingAMissingShardFailsNamingIt) {
  write_safetensors(path("model-00001-of-00002.safetensors"), {{"w", at::zeros({2, 3})}});
  write_file_atomically(path(kHfIndexFile), R"({"weight_map": {"w": "model-00001-of-00002.safetensors",
                                                               "b": "model-00002-of-00002.safetensors"}})");
  const std::string message = error_of([&] { hf_weight_files(dir()); });
  EXPECT_EQ(message, path("model-00002-of-00002.safetensors") + ": shard not found (listed in " + path(kHfIndexFile) +
                         " for 1 tensors, e.g. b)");
}

TEST_F(HfCheckpoint, ShardsLoadTogetherAndAMissingTensorNamesTheDirectory) {
  write_safetensors(path("a.safetensors"), {{"w", at::ones({2, 3})}});
  write_safetensors(path("b.safetensors"), {{"b", at::ones({3})}});
  write_file_atomically(path(kHfIndexFile), R"({"weight_map": {"w": "a.safetensors", "b": "b.safetensors"}})");
  HfNamedTensors loaded = parameters(0.0f);
  hf_load_weights(dir(), hf_weight_files(dir()), loaded, HfWeightRules{});
  EXPECT_TRUE(at::equal(loaded[1].second, at::ones({3})));

  loaded.push_back({"extra", at::zeros({4})});
  EXPECT_EQ(error_of([&] { hf_load_weights(dir(), hf_weight_files(dir()), loaded, HfWeightRules{}); }),
            dir() + ": missing tensor extra (expected shape [4])");
  HfWeightRules rules;
  rules.optional = {"extra"};  // left out: keeps its value
  hf_load_weights(dir(), hf_weight_files(dir()), loaded, rules);
  EXPECT_TRUE(at::equal(loaded[2].second, at::zeros({4})));
}

TEST_F(HfCheckpoint, TensorsAreCheckedByShapeNameAndValue) {
  const std::string file = path(kHfWeightsFile);
  HfNamedTensors model = parameters(0.0f);
  HfWeightRules rules;
  rules.model = "a tiny model";

  write_safetensors(file, {{"w", at::zeros({3, 2})}, {"b", at::zeros({3})}});
  EXPECT_EQ(error_of([&] { hf_load_weights(dir(), hf_weight_files(dir()), model, rules); }),
            file + ": tensor w has shape [3, 2] but config.json implies [2, 3]");

  write_safetensors(file, {{"w", at::zeros({2, 3})}, {"b", at::zeros({3})}, {"buffer", at::zeros({1})}});
  EXPECT_EQ(error_of([&] { hf_load_weights(dir(), hf_weight_files(dir()), model, rules); }),
            file + ": unexpected tensor buffer [1] for a tiny model");
  rules.ignorable = [](const std::string& name) { return name == "buffer"; };
  hf_load_weights(dir(), hf_weight_files(dir()), model, rules);

  write_safetensors(file, {{"w", at::full({2, 3}, NAN)}, {"b", at::zeros({3})}});
  rules.require_finite = true;
  EXPECT_EQ(error_of([&] { hf_load_weights(dir(), hf_weight_files(dir()), model, rules); }),
            file + ": tensor w holds NaN or Inf");
}

TEST_F(HfCheckpoint, TwoNamesForOneParameterAreRefused) {
  const std::string file = path(kHfWeightsFile);
  write_safetensors(file, {{"w", at::zeros({2, 3})}, {"model.w", at::zeros({2, 3})}, {"b", at::zeros({3})}});
  HfWeightRules rules;
  rules.canonical = [](const std::string& name) { return name.rfind("model.", 0) == 0 ? name.substr(6) : name; };
  HfNamedTensors model = parameters(0.0f);
  EXPECT_EQ(error_of([&] { hf_load_weights(dir(), hf_weight_files(dir()), model, rules); }),
            file + ": tensor w is given twice (also as model.w)");
}

}  // namespace
}  // namespace namm
