#include "core/namm_model.h"
#include "tests/temp_files.h"

#include "core/atomic_file.h"
#include "core/safetensors.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>

namespace namm {
namespace {

namespace fs = std::filesystem;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A valid config with every field away from its default.
NammConfig small_config() {
  NammConfig c;
  c.spectrogram.n_fft = 8;
  c.spectrogram.hop = 4;
  c.spectrogram.ema_gamma = 0.95;
  c.recency_dim = 2;
  c.recency_max_freq = 1000.0;
  c.bam.input_dim = 7;
  c.bam.hidden_dim = 4;
  c.selection.cap = 64;
  c.selection.layout = CacheLayout::kRectangular;
  c.delay = 32;
  c.feature_scaling = FeatureScaling::kPerHead;
  return c;
}

void expect_same_config(const NammConfig& a, const NammConfig& b) {
  EXPECT_EQ(a.spectrogram.n_fft, b.spectrogram.n_fft);
  EXPECT_EQ(a.spectrogram.hop, b.spectrogram.hop);
  EXPECT_EQ(a.spectrogram.ema_gamma, b.spectrogram.ema_gamma);
  EXPECT_EQ(a.recency_dim, b.recency_dim);
  EXPECT_EQ(a.recency_max_freq, b.recency_max_freq);
  EXPECT_EQ(a.bam.input_dim, b.bam.input_dim);
  EXPECT_EQ(a.bam.hidden_dim, b.bam.hidden_dim);
  EXPECT_EQ(a.selection.cap, b.selection.cap);
  EXPECT_EQ(a.selection.layout, b.selection.layout);
  EXPECT_EQ(a.delay, b.delay);
  EXPECT_EQ(a.feature_scaling, b.feature_scaling);
}

// The message of what f throws as E, or a test failure.
template <typename E>
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "nothing thrown";
  return "";
}

TEST(NammConfig, DefaultsAreThePublishedMethodAndValid) {
  const NammConfig c;
  EXPECT_NO_THROW(c.validate());
  EXPECT_EQ(c.bam.input_dim, c.recency_dim + c.spectrogram.num_freqs());
  EXPECT_EQ(c.bam.param_count(), 4172);
  EXPECT_NO_THROW(small_config().validate());
}

TEST(NammConfig, ValidateRejectsEachInconsistencyWithItsValues) {
  struct Case {
    std::function<void(NammConfig&)> mutate;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {[](NammConfig& c) { c.bam.input_dim = 24; },
       "bam.input_dim 24 != recency_dim 8 + spectrogram.num_freqs() 17"},
      {[](NammConfig& c) { c.spectrogram.n_fft = 31; }, "spectrogram.n_fft must be even and positive, got 31"},
      {[](NammConfig& c) { c.spectrogram.hop = 32; }, "spectrogram.hop must be in (0, n_fft 32), got 32"},
      {[](NammConfig& c) { c.spectrogram.hop = 0; }, "spectrogram.hop must be in (0, n_fft 32), got 0"},
      {[](NammConfig& c) { c.delay = 520; }, "delay must be a positive multiple of spectrogram.hop 16, got 520"},
      {[](NammConfig& c) { c.delay = 0; }, "delay must be a positive multiple of spectrogram.hop 16, got 0"},
      {[](NammConfig& c) { c.spectrogram.ema_gamma = 1.0; }, "spectrogram.ema_gamma must be in (0, 1), got 1"},
      {[](NammConfig& c) { c.spectrogram.ema_gamma = 0.0; }, "spectrogram.ema_gamma must be in (0, 1), got 0"},
      {[](NammConfig& c) { c.spectrogram.ema_gamma = std::nan(""); }, "spectrogram.ema_gamma must be in (0, 1), got nan"},
      {[](NammConfig& c) { c.recency_dim = 7; c.bam.input_dim = 24; }, "recency_dim must be even and >= 0, got 7"},
      {[](NammConfig& c) { c.recency_dim = -2; c.bam.input_dim = 15; }, "recency_dim must be even and >= 0, got -2"},
      {[](NammConfig& c) { c.recency_max_freq = 0; }, "recency_max_freq must be positive and finite, got 0"},
      {[](NammConfig& c) { c.selection.cap = -1; }, "selection.cap must be >= 0, got -1"},
      {[](NammConfig& c) { c.bam.hidden_dim = 0; }, "bam.hidden_dim must be positive, got 0"},
  };
  for (const Case& k : cases) {
    NammConfig c;
    k.mutate(c);
    const std::string message = error_of<std::invalid_argument>([&] { c.validate(); });
    EXPECT_TRUE(contains(message, k.expected)) << message << "\nexpected: " << k.expected;
  }
  NammConfig no_recency;
  no_recency.recency_dim = 0;
  no_recency.bam.input_dim = 17;
  EXPECT_NO_THROW(no_recency.validate());
}

TEST(NammConfig, JsonRoundTripKeepsEveryField) {
  const NammConfig c = small_config();
  expect_same_config(NammConfig::from_json(c.to_json()), c);
  NammConfig d;  // defaults, and a gamma that needs all 17 digits
  d.spectrogram.ema_gamma = 0.1 + 0.2;
  expect_same_config(NammConfig::from_json(d.to_json()), d);
}

TEST(NammConfig, FromJsonNamesMissingField) {
  std::string text = small_config().to_json();
  const std::string hop = "\"hop\":4,";
  ASSERT_TRUE(contains(text, hop)) << text;
  text.erase(text.find(hop), hop.size());
  const std::string message = error_of<std::invalid_argument>([&] { NammConfig::from_json(text); });
  EXPECT_TRUE(contains(message, "field \"spectrogram.hop\" is missing")) << message;

  const std::string no_bam = R"({"spectrogram": {"n_fft": 32, "hop": 16, "ema_gamma": 0.99},
      "recency_dim": 8, "recency_max_freq": 50000.0})";
  EXPECT_TRUE(contains(error_of<std::invalid_argument>([&] { NammConfig::from_json(no_bam); }),
                       "field \"bam\" is missing"));
}

TEST(NammConfig, ConfigWithoutFeatureScalingIsTheFrozenStatsOfOlderModels) {
  std::string text = small_config().to_json();
  const std::string field = ",\"feature_scaling\":\"per_head\"";
  ASSERT_TRUE(contains(text, field)) << text;
  text.erase(text.find(field), field.size());
  EXPECT_EQ(NammConfig::from_json(text).feature_scaling, FeatureScaling::kFrozenStats);
  EXPECT_EQ(NammConfig().feature_scaling, FeatureScaling::kFrozenStats);  // the published method
}

TEST(NammConfig, FromJsonRejectsUnknownFeatureScaling) {
  std::string text = small_config().to_json();
  text.replace(text.find("per_head"), 8, "per_layer");
  const std::string message = error_of<std::invalid_argument>([&] { NammConfig::from_json(text); });
  EXPECT_TRUE(contains(message, "feature_scaling")) << message;
  EXPECT_TRUE(contains(message, "per_layer")) << message;
}

TEST(NammConfig, FromJsonRejectsUnknownLayout) {
  std::string text = small_config().to_json();
  text.replace(text.find("rectangular"), 11, "diagonal");
  const std::string message = error_of<std::invalid_argument>([&] { NammConfig::from_json(text); });
  EXPECT_TRUE(contains(message, "selection.layout")) << message;
  EXPECT_TRUE(contains(message, "diagonal")) << message;
}

TEST(NammConfig, FromJsonRejectsUnknownFieldsWrongTypesAndInvalidValues) {
  const std::string base = small_config().to_json();
  std::string extra = base;
  extra.insert(1, "\"dealy\":512,");
  EXPECT_TRUE(contains(error_of<std::invalid_argument>([&] { NammConfig::from_json(extra); }),
                       "field \"dealy\" is not a known field"));
  std::string real = base;
  real.replace(real.find("\"delay\":32"), 10, "\"delay\":32.5");
  EXPECT_TRUE(contains(error_of<std::invalid_argument>([&] { NammConfig::from_json(real); }),
                       "field \"delay\" must be an integer, got 32.5"));
  std::string invalid = base;
  invalid.replace(invalid.find("\"delay\":32"), 10, "\"delay\":30");
  EXPECT_TRUE(contains(error_of<std::invalid_argument>([&] { NammConfig::from_json(invalid); }),
                       "delay must be a positive multiple of spectrogram.hop 4, got 30"));
  EXPECT_TRUE(contains(error_of<std::invalid_argument>([&] { NammConfig::from_json("{oops"); }),
                       "not valid JSON"));
  EXPECT_TRUE(contains(error_of<std::invalid_argument>([&] { NammConfig::from_json("[1]"); }),
                       "a JSON array, not an object"));
}

class NammModelFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    dir_ = fs::temp_directory_path() /
           ("namm_model_" + std::to_string(::getpid()) + "_" + std::to_string(rd()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // A trained-looking model: random params, frozen statistics, provenance.
  static NammModel trained() {
    at::manual_seed(11);
    NammModel m = NammModel::zeros(small_config());
    m.params = at::randn({m.config.bam.param_count()});
    m.normalizer.set(at::rand({5}, at::kDouble), at::rand({5}, at::kDouble) + 0.5, 98765.25);
    m.normalizer.eps = 1e-3;
    m.provenance_json = R"({"command":"namm evolve","seed":3,"tasks":["qa"]})";
    return m;
  }

  // Saves a good checkpoint, lets edit change its parts, writes it back; returns the path.
  std::string tampered(const std::string& name,
                       const std::function<void(std::map<std::string, at::Tensor>&,
                                                std::map<std::string, std::string>&)>& edit) {
    const std::string p = path(name);
    trained().save(p);
    SafetensorsFile file = read_safetensors(p);
    edit(file.tensors, file.metadata);
    write_safetensors(p, file.tensors, file.metadata);
    return p;
  }

  static void expect_load_error(const std::string& p, const std::string& problem) {
    const std::string message = error_of<std::runtime_error>([&] { NammModel::load(p); });
    EXPECT_EQ(message.rfind(p + ": ", 0), 0u) << message;
    EXPECT_TRUE(contains(message, problem)) << message << "\nexpected: " << problem;
    EXPECT_FALSE(contains(message, "\n")) << message;
  }

  fs::path dir_;
};

TEST_F(NammModelFiles, ZerosHasZeroParamsOfTheRightLength) {
  const NammModel m = NammModel::zeros(NammConfig{});
  EXPECT_EQ(m.params.scalar_type(), at::kFloat);
  EXPECT_EQ(m.params.sizes(), at::IntArrayRef({4172}));
  EXPECT_EQ(m.params.abs().sum().item<float>(), 0.0f);
  EXPECT_FALSE(m.normalizer.frozen());
  EXPECT_EQ(m.normalizer.count(), 0.0);
  NammConfig bad;
  bad.delay = 3;
  EXPECT_THROW(NammModel::zeros(bad), std::invalid_argument);
}

TEST_F(NammModelFiles, SaveLoadRoundTripKeepsEveryField) {
  const NammModel m = trained();
  m.save(path("m.safetensors"));
  const NammModel l = NammModel::load(path("m.safetensors"));
  expect_same_config(l.config, m.config);
  EXPECT_EQ(l.params.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(l.params, m.params));
  EXPECT_TRUE(at::equal(l.normalizer.mean(), m.normalizer.mean()));
  EXPECT_TRUE(at::equal(l.normalizer.variance(), m.normalizer.variance()));
  EXPECT_EQ(l.normalizer.count(), m.normalizer.count());
  EXPECT_EQ(l.normalizer.frozen(), true);
  EXPECT_EQ(l.normalizer.eps, m.normalizer.eps);
  EXPECT_EQ(l.provenance_json, m.provenance_json);
  EXPECT_FALSE(test_support::has_temporary(path("m.safetensors")));
}

TEST_F(NammModelFiles, ZerosRoundTripKeepsAnUnfrozenEmptyNormalizer) {
  NammModel::zeros(NammConfig{}).save(path("z.safetensors"));
  const NammModel l = NammModel::load(path("z.safetensors"));
  expect_same_config(l.config, NammConfig{});
  EXPECT_EQ(l.params.abs().sum().item<float>(), 0.0f);
  EXPECT_FALSE(l.normalizer.frozen());
  EXPECT_EQ(l.normalizer.count(), 0.0);
  EXPECT_EQ(l.provenance_json, "{}");
  // the stored file is a plain safetensors file with the documented layout.
  const SafetensorsFile file = read_safetensors(path("z.safetensors"));
  EXPECT_EQ(file.metadata.at("format"), "namm");
  EXPECT_EQ(file.metadata.at("format_version"), "1");
  EXPECT_EQ(file.at("norm_mean").scalar_type(), at::kDouble);
  EXPECT_EQ(file.at("norm_var").sizes(), at::IntArrayRef({17}));
}

// Written by tests/fixtures/make_safetensors_fixtures.py, independently of save().
TEST_F(NammModelFiles, LoadsPythonWrittenCheckpoint) {
  const NammModel m =
      NammModel::load(std::string(NAMM_FIXTURES_DIR) + "/safetensors/namm_small.safetensors");
  NammConfig expected = small_config();
  expected.feature_scaling = FeatureScaling::kFrozenStats;  // the fixture's config predates the field
  expect_same_config(m.config, expected);
  const int64_t p = small_config().bam.param_count();
  ASSERT_EQ(m.params.sizes(), at::IntArrayRef({p}));
  EXPECT_TRUE(at::equal(m.params, (at::arange(p, at::kFloat) - p / 2.0f) * 0.01f));
  EXPECT_TRUE(at::equal(m.normalizer.mean(), at::tensor({0.1, 0.2, 0.3, 0.4, 0.5}, at::kDouble)));
  EXPECT_TRUE(at::equal(m.normalizer.variance(), at::tensor({1.0, 2.0, 3.0, 4.0, 5.0}, at::kDouble)));
  EXPECT_EQ(m.normalizer.count(), 1234.5);
  EXPECT_TRUE(m.normalizer.frozen());
  EXPECT_EQ(m.normalizer.eps, 1e-5);
  EXPECT_TRUE(contains(m.provenance_json, "\"seed\": 7"));
}

TEST_F(NammModelFiles, SaveRefusesWhatLoadCouldNotRestore) {
  NammModel m = NammModel::zeros(small_config());
  m.normalizer.observe(at::rand({10, 5}));
  EXPECT_TRUE(contains(error_of<std::invalid_argument>([&] { m.save(path("u.safetensors")); }),
                       "not frozen; freeze it first"));
  m.normalizer.freeze();
  m.params = at::zeros({3});
  EXPECT_TRUE(contains(error_of<std::invalid_argument>([&] { m.save(path("u.safetensors")); }),
                       "params must be float32 [174], got Float [3]"));
  m.params = at::zeros({174});
  m.provenance_json = "{not json";
  EXPECT_TRUE(contains(error_of<std::invalid_argument>([&] { m.save(path("u.safetensors")); }),
                       "provenance is not valid JSON"));
  EXPECT_FALSE(fs::exists(path("u.safetensors")));
}

TEST_F(NammModelFiles, WrongParamShapeFails) {
  expect_load_error(tampered("shape.safetensors", [](auto& t, auto&) { t["params"] = at::zeros({173}); }),
                    "tensor \"params\" has shape [173], expected [174]");
  expect_load_error(tampered("shape2.safetensors", [](auto& t, auto&) { t["params"] = at::zeros({2, 87}); }),
                    "tensor \"params\" has shape [2, 87], expected [174]");
}

TEST_F(NammModelFiles, WrongParamDtypeFails) {
  expect_load_error(
      tampered("dtype.safetensors", [](auto& t, auto&) { t["params"] = at::zeros({174}, at::kDouble); }),
      "tensor \"params\" has dtype Double, expected Float");
}

TEST_F(NammModelFiles, MissingTensorFails) {
  expect_load_error(tampered("missing.safetensors", [](auto& t, auto&) { t.erase("norm_var"); }),
                    "missing tensor \"norm_var\"");
}

TEST_F(NammModelFiles, NonFiniteParamsFail) {
  expect_load_error(tampered("nan.safetensors",
                             [](auto& t, auto&) {
                               t["params"] = t["params"].clone();
                               t["params"][5] = std::numeric_limits<float>::quiet_NaN();
                               t["params"][9] = std::numeric_limits<float>::infinity();
                             }),
                    "tensor \"params\" holds 2 non-finite values, the first at index 5 (nan)");
}

TEST_F(NammModelFiles, BadNormStatisticsFail) {
  expect_load_error(tampered("mean.safetensors", [](auto& t, auto&) { t["norm_mean"] = at::zeros({4}, at::kDouble); }),
                    "tensor \"norm_mean\" has shape [4], expected [5]");
  expect_load_error(tampered("var.safetensors", [](auto& t, auto&) { t["norm_var"] = -at::ones({5}, at::kDouble); }),
                    "tensor \"norm_var\" has negative entries: -1");
  expect_load_error(tampered("count.safetensors", [](auto&, auto& m) { m["norm_count"] = "many"; }),
                    "metadata \"norm_count\" is not a finite number: \"many\"");
  expect_load_error(tampered("frozen.safetensors", [](auto&, auto& m) { m["norm_frozen"] = "yes"; }),
                    "metadata \"norm_frozen\" must be \"true\" or \"false\", got \"yes\"");
}

TEST_F(NammModelFiles, BadConfigJsonFails) {
  expect_load_error(tampered("syntax.safetensors", [](auto&, auto& m) { m["config"] = "{\"spectrogram\":"; }),
                    "metadata \"config\": NammConfig JSON: not valid JSON");
  expect_load_error(tampered("invalid.safetensors",
                             [](auto&, auto& m) {
                               NammConfig c = small_config();
                               c.bam.input_dim = 8;
                               m["config"] = c.to_json();
                             }),
                    "metadata \"config\": NammConfig: bam.input_dim 8 != recency_dim 2");
  expect_load_error(tampered("layout.safetensors",
                             [](auto&, auto& m) {
                               const size_t at = m["config"].find("rectangular");
                               m["config"].replace(at, 11, "square");
                             }),
                    "selection.layout");
}

TEST_F(NammModelFiles, BadProvenanceFails) {
  expect_load_error(tampered("prov.safetensors", [](auto&, auto& m) { m["provenance"] = "seed=3"; }),
                    "metadata \"provenance\" is not valid JSON");
}

TEST_F(NammModelFiles, NotANammFileFails) {
  write_safetensors(path("plain.safetensors"), {{"weight", at::zeros({2})}});
  expect_load_error(path("plain.safetensors"), "not a NAMM checkpoint: no metadata \"format\"");
  expect_load_error(tampered("pt.safetensors", [](auto&, auto& m) { m["format"] = "pt"; }),
                    "not a NAMM checkpoint: metadata \"format\" is \"pt\", expected \"namm\"");
  expect_load_error(tampered("v2.safetensors", [](auto&, auto& m) { m["format_version"] = "2"; }),
                    "unsupported NAMM format_version \"2\"");
}

TEST_F(NammModelFiles, TruncatedFileFails) {
  trained().save(path("full.safetensors"));
  const std::string bytes = read_file(path("full.safetensors"));
  write_file_atomically(path("cut.safetensors"), std::string_view(bytes).substr(0, bytes.size() - 10));
  expect_load_error(path("cut.safetensors"), "run past the end");
  expect_load_error(path("absent.safetensors"), "no such file");
}

}  // namespace
}  // namespace namm
