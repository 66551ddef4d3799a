// vision_tower: see vision_tower.h
#include "vision/vision_tower.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <sstream>
#include <stdexcept>

namespace namm {
namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument("VisionTowerConfig: " + message);
}

torch::nn::LayerNorm make_layer_norm(int64_t dim, double eps) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(eps));
}

// LayerNormImpl::forward is not const
at::Tensor apply_layer_norm(const torch::nn::LayerNormImpl& norm, const at::Tensor& x) {
  return at::layer_norm(x, norm.options.normalized_shape(), norm.weight, norm.bias, norm.options.eps());
}

// which hidden state a (possibly negative) feature layer names: 0..L
int64_t resolve_feature_layer(int64_t feature_layer, int64_t num_layers) {
  const int64_t resolved = feature_layer < 0 ? num_layers + 1 + feature_layer : feature_layer;
  TORCH_CHECK(resolved >= 0 && resolved <= num_layers, "VisionTower: feature_layer ", feature_layer,
              " out of range for ", num_layers, " layers (hidden states 0..", num_layers, " or -", num_layers + 1,
              "..-1)");
  return resolved;
}

}  // namespace

bool is_known_activation(const std::string& name) {
  return name == "quick_gelu" || name == "gelu" || name == "gelu_new" || name == "gelu_pytorch_tanh" ||
         name == "relu";
}

at::Tensor apply_activation(const std::string& name, const at::Tensor& x) {
  if (name == "quick_gelu") return x * at::sigmoid(1.702 * x);
  if (name == "gelu") return at::gelu(x);  // exact (erf), as nn.GELU()
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return at::gelu(x, "tanh");
  if (name == "relu") return at::relu(x);
  throw std::invalid_argument("unknown activation '" + name +
                              "' (known: quick_gelu, gelu, gelu_new, gelu_pytorch_tanh, relu)");
}

// ---------------------------------------------------------------------------
// VisionTowerConfig

void VisionTowerConfig::validate() const {
  require(hidden_size >= 1, "hidden_size must be >= 1, got " + std::to_string(hidden_size));
  require(intermediate_size >= 1, "intermediate_size must be >= 1, got " + std::to_string(intermediate_size));
  require(num_hidden_layers >= 1, "num_hidden_layers must be >= 1, got " + std::to_string(num_hidden_layers));
  require(num_attention_heads >= 1, "num_attention_heads must be >= 1, got " + std::to_string(num_attention_heads));
  require(hidden_size % num_attention_heads == 0, "hidden_size " + std::to_string(hidden_size) +
                                                      " is not a multiple of num_attention_heads " +
                                                      std::to_string(num_attention_heads));
  require(num_channels >= 1, "num_channels must be >= 1, got " + std::to_string(num_channels));
  require(patch_size >= 1, "patch_size must be >= 1, got " + std::to_string(patch_size));
  require(image_size >= patch_size && image_size % patch_size == 0,
          "image_size " + std::to_string(image_size) + " is not a positive multiple of patch_size " +
              std::to_string(patch_size));
  require(is_known_activation(hidden_act), "hidden_act '" + hidden_act +
                                               "' is not supported (quick_gelu, gelu, gelu_new, gelu_pytorch_tanh, relu)");
  require(layer_norm_eps > 0 && std::isfinite(layer_norm_eps),
          "layer_norm_eps must be > 0, got " + std::to_string(layer_norm_eps));
  require(initializer_range >= 0, "initializer_range must be >= 0, got " + std::to_string(initializer_range));
}

std::string VisionTowerConfig::summary() const {
  std::ostringstream out;
  out << image_size << " px, patch " << patch_size << " (" << grid() << "x" << grid() << "), width " << hidden_size
      << ", " << num_hidden_layers << " layers, " << num_attention_heads << " heads, MLP " << intermediate_size << ", "
      << hidden_act;
  return out.str();
}

// ---------------------------------------------------------------------------
// modules

ClipAttentionImpl::ClipAttentionImpl(const VisionTowerConfig& config) : num_heads(config.num_attention_heads) {
  const int64_t c = config.hidden_size;
  k_proj = register_module("k_proj", torch::nn::Linear(c, c));
  v_proj = register_module("v_proj", torch::nn::Linear(c, c));
  q_proj = register_module("q_proj", torch::nn::Linear(c, c));
  out_proj = register_module("out_proj", torch::nn::Linear(c, c));
}

at::Tensor ClipAttentionImpl::forward(const at::Tensor& x) const {
  const int64_t n = x.size(0);
  const int64_t t = x.size(1);
  const int64_t c = x.size(2);
  const int64_t dh = c / num_heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(dh));
  const at::Tensor q = (at::linear(x, q_proj->weight, q_proj->bias) * scale).view({n, t, num_heads, dh}).transpose(1, 2);  // [N, Hv, T, Dh]
  const at::Tensor k = at::linear(x, k_proj->weight, k_proj->bias).view({n, t, num_heads, dh}).transpose(1, 2);  // [N, Hv, T, Dh]
  const at::Tensor v = at::linear(x, v_proj->weight, v_proj->bias).view({n, t, num_heads, dh}).transpose(1, 2);  // [N, Hv, T, Dh]
  const at::Tensor probs = at::softmax(at::matmul(q, k.transpose(-1, -2)), -1);  // [N, Hv, T, T]
  const at::Tensor context = at::matmul(probs, v).transpose(1, 2).reshape({n, t, c});  // [N, T, C]
  return at::linear(context, out_proj->weight, out_proj->bias);
}

ClipMlpImpl::ClipMlpImpl(const VisionTowerConfig& config) : act(config.hidden_act) {
  fc1 = register_module("fc1", torch::nn::Linear(config.hidden_size, config.intermediate_size));
  fc2 = register_module("fc2", torch::nn::Linear(config.intermediate_size, config.hidden_size));
}

at::Tensor ClipMlpImpl::forward(const at::Tensor& x) const {
  return at::linear(apply_activation(act, at::linear(x, fc1->weight, fc1->bias)), fc2->weight, fc2->bias);
}

ClipEncoderLayerImpl::ClipEncoderLayerImpl(const VisionTowerConfig& config) {
  self_attn = register_module("self_attn", ClipAttention(config));
  layer_norm1 = register_module("layer_norm1", make_layer_norm(config.hidden_size, config.layer_norm_eps));
  mlp = register_module("mlp", ClipMlp(config));
  layer_norm2 = register_module("layer_norm2", make_layer_norm(config.hidden_size, config.layer_norm_eps));
}

at::Tensor ClipEncoderLayerImpl::forward(const at::Tensor& x) const {
  at::Tensor out = x + self_attn->forward(apply_layer_norm(*layer_norm1, x));  // [N, T, C]
  return out + mlp->forward(apply_layer_norm(*layer_norm2, out));
}

ClipEmbeddingsImpl::ClipEmbeddingsImpl(const VisionTowerConfig& config) {
  class_embedding = register_parameter("class_embedding", at::randn({config.hidden_size}));
  patch_embedding = register_module(
      "patch_embedding", torch::nn::Conv2d(torch::nn::Conv2dOptions(config.num_channels, config.hidden_size,
                                                                    config.patch_size)
                                               .stride(config.patch_size)
                                               .bias(false)));
  position_embedding =
      register_module("position_embedding", torch::nn::Embedding(config.num_patches() + 1, config.hidden_size));
}

at::Tensor ClipEmbeddingsImpl::forward(const at::Tensor& pixels) const {
  const int64_t n = pixels.size(0);
  const int64_t patch = patch_embedding->weight.size(-1);
  const std::vector<int64_t> stride = {patch, patch};
  const std::vector<int64_t> padding = {0, 0};
  const at::Tensor patches = at::conv2d(pixels, patch_embedding->weight, c10::nullopt, at::IntArrayRef(stride),
                                        at::IntArrayRef(padding))  // [N, C, g, g]
                                 .flatten(2)
                                 .transpose(1, 2);  // [N, P, C]
  const at::Tensor cls = class_embedding.view({1, 1, -1}).expand({n, 1, class_embedding.size(0)});  // [N, 1, C]
  return at::cat({cls, patches}, 1) + position_embedding->weight.unsqueeze(0);  // [N, 1 + P, C]
}

ClipEncoderImpl::ClipEncoderImpl(const VisionTowerConfig& config) {
  layers_list = register_module("layers", torch::nn::ModuleList());
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
    layers.push_back(ClipEncoderLayer(config));
    layers_list->push_back(layers.back());
  }
}

VisionTowerImpl::VisionTowerImpl(const VisionTowerConfig& config) : config_(config) {
  config_.validate();
  embeddings = register_module("embeddings", ClipEmbeddings(config_));
  pre_layrnorm = register_module("pre_layrnorm", make_layer_norm(config_.hidden_size, config_.layer_norm_eps));
  encoder = register_module("encoder", ClipEncoder(config_));
  post_layernorm = register_module("post_layernorm", make_layer_norm(config_.hidden_size, config_.layer_norm_eps));

  // fresh weights: normal(initializer_range) for every matrix and embedding, zero biases, LayerNorms at 1/0
  at::NoGradGuard no_grad;
  for (auto& item : named_parameters(/*recurse=*/true)) {
    const std::string& name = item.key();
    const bool norm = name.find("layer_norm") != std::string::npos || name.find("layrnorm") != std::string::npos ||
                      name.find("layernorm") != std::string::npos;
    if (norm) continue;  // LayerNorm's own init (1, 0)
    if (name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0) {
      item.value().zero_();
    } else {
      item.value().normal_(0.0, config_.initializer_range);
    }
  }
}

at::Tensor VisionTowerImpl::forward(const at::Tensor& pixels, int64_t feature_layer, bool drop_cls) const {
  const VisionTowerConfig& c = config_;
  TORCH_CHECK(pixels.dim() == 4 && pixels.size(1) == c.num_channels && pixels.size(2) == c.image_size &&
                  pixels.size(3) == c.image_size,
              "VisionTower: pixels must be [N, ", c.num_channels, ", ", c.image_size, ", ", c.image_size, "], got ",
              pixels.sizes());
  const int64_t depth = resolve_feature_layer(feature_layer, c.num_hidden_layers);
  const at::Tensor& weight = embeddings->patch_embedding->weight;
  at::Tensor x = embeddings->forward(pixels.to(weight.device(), weight.scalar_type()));  // [N, 1 + P, C]
  x = apply_layer_norm(*pre_layrnorm, x);
  for (int64_t l = 0; l < depth; ++l) x = encoder->layers[static_cast<size_t>(l)]->forward(x);
  return drop_cls ? x.narrow(1, 1, x.size(1) - 1) : x;  // [N, P, C] or [N, 1 + P, C]
}

std::vector<std::pair<std::string, at::Tensor>> VisionTowerImpl::hf_named_parameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : named_parameters(/*recurse=*/true)) out.emplace_back("vision_model." + item.key(), item.value());
  return out;
}

}  // namespace namm
