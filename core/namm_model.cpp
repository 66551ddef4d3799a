// NAMM checkpoints: a safetensors file with the parameters and feature
// statistics as tensors and everything else as string metadata, so any
// safetensors reader (Python included) can open it. Loading checks every
// field, because a bad checkpoint should fail at load with the file's name,
// not later as a shape error deep inside scoring.
#include "core/namm_model.h"

#include "core/safetensors.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <stdexcept>

namespace namm {
namespace {

using json = nlohmann::json;

constexpr char kFormat[] = "namm";
constexpr char kFormatVersion[] = "1";

// Shortest text that parses back to the same double.
std::string format_double(double value) {
  char buf[32];
  for (int precision = 6; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, value);
    if (std::strtod(buf, nullptr) == value) break;
  }
  return buf;
}

// Reads config fields by dotted name, checking type and rejecting strays.
class ConfigReader {
 public:
  explicit ConfigReader(const json& root) : root_(root) {}

  const json& field(const std::string& dotted) {
    const json* node = &root_;
    size_t start = 0;
    for (;;) {
      const size_t dot = dotted.find('.', start);
      const std::string key = dotted.substr(start, dot - start);
      const std::string prefix = dotted.substr(0, dot);
      if (!node->is_object())
        fail(prefix.substr(0, start == 0 ? 0 : start - 1), "is not an object");
      if (!node->contains(key)) fail(prefix, "is missing");
      node = &(*node)[key];
      seen_.insert(prefix);
      if (dot == std::string::npos) return *node;
      start = dot + 1;
    }
  }
  int64_t integer(const std::string& dotted) {
    const json& v = field(dotted);
    if (!v.is_number_integer()) fail(dotted, "must be an integer, got " + v.dump());
    if (v.is_number_unsigned() && v.get<uint64_t>() > INT64_MAX) fail(dotted, "is too large: " + v.dump());
    return v.get<int64_t>();
  }
  double number(const std::string& dotted) {
    const json& v = field(dotted);
    if (!v.is_number()) fail(dotted, "must be a number, got " + v.dump());
    return v.get<double>();
  }
  bool has(const std::string& key) const { return root_.contains(key); }
  std::string string(const std::string& dotted) {
    const json& v = field(dotted);
    if (!v.is_string()) fail(dotted, "must be a string, got " + v.dump());
    return v.get<std::string>();
  }
  // Every key present must have been read: a misspelt field is an error, not a default.
  void reject_unknown() const { reject_unknown(root_, ""); }

 private:
  void reject_unknown(const json& node, const std::string& prefix) const {
    for (const auto& [key, value] : node.items()) {
      const std::string name = prefix.empty() ? key : prefix + "." + key;
      if (seen_.count(name) == 0) fail(name, "is not a known field");
      if (value.is_object()) reject_unknown(value, name);
    }
  }
  [[noreturn]] static void fail(const std::string& name, const std::string& problem) {
    throw std::invalid_argument("NammConfig JSON: field \"" + name + "\" " + problem);
  }
  const json& root_;
  std::set<std::string> seen_;
};

// Empty if text is valid JSON, else the parser's one-line message.
std::string json_error(const std::string& text) {
  try {
    const json parsed = json::parse(text);
  } catch (const json::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

const char* to_string(FeatureScaling scaling) {
  switch (scaling) {
    case FeatureScaling::kFrozenStats: return "frozen_stats";
    case FeatureScaling::kPerHead: return "per_head";
  }
  return "?";
}

FeatureScaling parse_feature_scaling(const std::string& text) {
  if (text == "frozen_stats" || text == "frozen-stats") return FeatureScaling::kFrozenStats;
  if (text == "per_head" || text == "per-head") return FeatureScaling::kPerHead;
  throw std::invalid_argument("unknown feature scaling '" + text + "' (choose frozen_stats or per_head)");
}

void NammConfig::validate() const {
  const auto fail = [](const std::string& problem) {
    throw std::invalid_argument("NammConfig: " + problem);
  };
  const SpectrogramOptions& s = spectrogram;
  if (s.n_fft <= 0 || s.n_fft % 2 != 0)
    fail("spectrogram.n_fft must be even and positive, got " + std::to_string(s.n_fft));
  if (s.hop <= 0 || s.hop >= s.n_fft)
    fail("spectrogram.hop must be in (0, n_fft " + std::to_string(s.n_fft) + "), got " +
         std::to_string(s.hop));
  if (!(s.ema_gamma > 0.0 && s.ema_gamma < 1.0))
    fail("spectrogram.ema_gamma must be in (0, 1), got " + format_double(s.ema_gamma));
  if (recency_dim < 0 || recency_dim % 2 != 0)
    fail("recency_dim must be even and >= 0, got " + std::to_string(recency_dim));
  if (!(recency_max_freq > 0.0 && std::isfinite(recency_max_freq)))
    fail("recency_max_freq must be positive and finite, got " + format_double(recency_max_freq));
  if (bam.input_dim != recency_dim + s.num_freqs())
    fail("bam.input_dim " + std::to_string(bam.input_dim) + " != recency_dim " +
         std::to_string(recency_dim) + " + spectrogram.num_freqs() " +
         std::to_string(s.num_freqs()) + " (n_fft " + std::to_string(s.n_fft) + ")");
  if (bam.hidden_dim <= 0)
    fail("bam.hidden_dim must be positive, got " + std::to_string(bam.hidden_dim));
  if (selection.cap < 0) fail("selection.cap must be >= 0, got " + std::to_string(selection.cap));
  if (delay <= 0 || delay % s.hop != 0)
    fail("delay must be a positive multiple of spectrogram.hop " + std::to_string(s.hop) +
         ", got " + std::to_string(delay));
}

std::string NammConfig::to_json() const {
  const json j = {
      {"spectrogram",
       {{"n_fft", spectrogram.n_fft}, {"hop", spectrogram.hop}, {"ema_gamma", spectrogram.ema_gamma}}},
      {"recency_dim", recency_dim},
      {"recency_max_freq", recency_max_freq},
      {"bam", {{"input_dim", bam.input_dim}, {"hidden_dim", bam.hidden_dim}}},
      {"selection", {{"cap", selection.cap}, {"layout", to_string(selection.layout)}}},
      {"delay", delay},
      {"feature_scaling", to_string(feature_scaling)},
  };
  return j.dump();
}

NammConfig NammConfig::from_json(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw std::invalid_argument(std::string("NammConfig JSON: not valid JSON: ") + e.what());
  }
  if (!j.is_object())
    throw std::invalid_argument(std::string("NammConfig JSON: a JSON ") + j.type_name() +
                                ", not an object");
  ConfigReader r(j);
  NammConfig c;
  c.spectrogram.n_fft = r.integer("spectrogram.n_fft");
  c.spectrogram.hop = r.integer("spectrogram.hop");
  c.spectrogram.ema_gamma = r.number("spectrogram.ema_gamma");
  c.recency_dim = r.integer("recency_dim");
  c.recency_max_freq = r.number("recency_max_freq");
  c.bam.input_dim = r.integer("bam.input_dim");
  c.bam.hidden_dim = r.integer("bam.hidden_dim");
  c.selection.cap = r.integer("selection.cap");
  const std::string layout = r.string("selection.layout");
  try {
    c.selection.layout = parse_cache_layout(layout);
  } catch (const std::exception& e) {
    throw std::invalid_argument(std::string("NammConfig JSON: field \"selection.layout\": ") +
                                e.what());
  }
  c.delay = r.integer("delay");
  if (r.has("feature_scaling")) {
    const std::string scaling = r.string("feature_scaling");
    try {
      c.feature_scaling = parse_feature_scaling(scaling);
    } catch (const std::exception& e) {
      throw std::invalid_argument(std::string("NammConfig JSON: field \"feature_scaling\": ") + e.what());
    }
  }
  r.reject_unknown();
  c.validate();
  return c;
}

NammModel NammModel::zeros(const NammConfig& config) {
  config.validate();
  NammModel model;
  model.config = config;
  model.params = at::zeros({config.bam.param_count()}, at::kFloat);
  model.normalizer = FeatureNormalizer(config.spectrogram.num_freqs());
  return model;
}

void NammModel::save(const std::string& path) const {
  const auto fail = [&](const std::string& problem) {
    throw std::invalid_argument(path + ": cannot save: " + problem);
  };
  try {
    config.validate();
  } catch (const std::invalid_argument& e) {
    fail(e.what());
  }
  const int64_t p = config.bam.param_count();
  const int64_t f = config.spectrogram.num_freqs();
  if (!params.defined() || params.dim() != 1 || params.size(0) != p ||
      params.scalar_type() != at::kFloat)
    fail("params must be float32 [" + std::to_string(p) + "], got " +
         (params.defined() ? std::string(c10::toString(params.scalar_type())) + " " +
                                 c10::str(params.sizes())
                           : std::string("undefined")));
  if (normalizer.frozen() == false && normalizer.count() > 0)
    // FeatureNormalizer::set() always freezes, so load could not restore this state.
    fail("the feature normalizer holds statistics of " + format_double(normalizer.count()) +
         " rows but is not frozen; freeze it first");
  if (const std::string error = json_error(provenance_json); !error.empty())
    fail("provenance is not valid JSON: " + error);
  // before any statistics the normalizer may hold none: store the identity.
  at::Tensor mean = normalizer.mean(), var = normalizer.variance();
  if (!mean.defined()) mean = at::zeros({f}, at::kDouble);
  if (!var.defined()) var = at::zeros({f}, at::kDouble);
  if (mean.dim() != 1 || mean.size(0) != f || var.dim() != 1 || var.size(0) != f)
    fail("normalizer statistics must be [" + std::to_string(f) + "], got mean " +
         c10::str(mean.sizes()) + ", variance " + c10::str(var.sizes()));

  write_safetensors(path,
                    {{"params", params.detach()},
                     {"norm_mean", mean.detach().to(at::kDouble)},
                     {"norm_var", var.detach().to(at::kDouble)}},
                    {{"format", kFormat},
                     {"format_version", kFormatVersion},
                     {"config", config.to_json()},
                     {"norm_count", format_double(normalizer.count())},
                     {"norm_frozen", normalizer.frozen() ? "true" : "false"},
                     {"norm_eps", format_double(normalizer.eps)},
                     {"provenance", provenance_json}});
}

NammModel NammModel::load(const std::string& path) {
  const SafetensorsFile file = read_safetensors(path);
  const auto fail = [&](const std::string& problem) {
    throw std::runtime_error(path + ": " + problem);
  };
  const auto meta = [&](const std::string& key) -> const std::string& {
    auto it = file.metadata.find(key);
    if (it == file.metadata.end()) fail("not a NAMM checkpoint: no metadata \"" + key + "\"");
    return it->second;
  };
  const auto number = [&](const std::string& key) {
    const std::string& text = meta(key);
    char* end = nullptr;
    const double value = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || !std::isfinite(value))
      fail("metadata \"" + key + "\" is not a finite number: \"" + text + "\"");
    return value;
  };
  const auto tensor = [&](const std::string& name, at::ScalarType dtype, int64_t length) {
    auto it = file.tensors.find(name);
    if (it == file.tensors.end()) fail("missing tensor \"" + name + "\"");
    const at::Tensor& t = it->second;
    if (t.scalar_type() != dtype)
      fail("tensor \"" + name + "\" has dtype " + c10::toString(t.scalar_type()) + ", expected " +
           c10::toString(dtype));
    if (t.dim() != 1 || t.size(0) != length)
      fail("tensor \"" + name + "\" has shape " + c10::str(t.sizes()) + ", expected [" +
           std::to_string(length) + "]");
    const at::Tensor bad = t.isfinite().logical_not().nonzero();
    if (bad.numel() > 0)
      fail("tensor \"" + name + "\" holds " + std::to_string(bad.size(0)) +
           " non-finite values, the first at index " + std::to_string(bad[0][0].item<int64_t>()) +
           " (" + c10::str(t[bad[0][0].item<int64_t>()].item<double>()) + ")");
    return t;
  };

  if (meta("format") != kFormat)
    fail("not a NAMM checkpoint: metadata \"format\" is \"" + meta("format") + "\", expected \"" +
         kFormat + "\"");
  if (meta("format_version") != kFormatVersion)
    fail("unsupported NAMM format_version \"" + meta("format_version") + "\" (this build reads \"" +
         kFormatVersion + "\")");

  NammModel model;
  try {
    model.config = NammConfig::from_json(meta("config"));
  } catch (const std::invalid_argument& e) {
    fail(std::string("metadata \"config\": ") + e.what());
  }
  const int64_t f = model.config.spectrogram.num_freqs();
  model.params = tensor("params", at::kFloat, model.config.bam.param_count());
  const at::Tensor mean = tensor("norm_mean", at::kDouble, f);
  const at::Tensor var = tensor("norm_var", at::kDouble, f);
  if ((var < 0).any().item<bool>())
    fail("tensor \"norm_var\" has negative entries: " + c10::str(var.min().item<double>()));

  const double count = number("norm_count");
  if (count < 0) fail("metadata \"norm_count\" is negative: " + meta("norm_count"));
  const std::string& frozen = meta("norm_frozen");
  if (frozen != "true" && frozen != "false")
    fail("metadata \"norm_frozen\" must be \"true\" or \"false\", got \"" + frozen + "\"");
  const double eps = number("norm_eps");
  if (!(eps > 0)) fail("metadata \"norm_eps\" must be positive, got " + meta("norm_eps"));
  model.normalizer = FeatureNormalizer(f);
  if (frozen == "true") {
    model.normalizer.set(mean, var, count);  // set() freezes
  } else if (count > 0) {
    fail("metadata \"norm_frozen\" is \"false\" with norm_count " + meta("norm_count") +
         " > 0; only frozen statistics can be restored");
  }
  model.normalizer.eps = eps;

  model.provenance_json = meta("provenance");
  if (const std::string error = json_error(model.provenance_json); !error.empty())
    fail("metadata \"provenance\" is not valid JSON: " + error);
  return model;
}

}  // namespace namm
