// A CLIP-style vision transformer (Hugging Face CLIPVisionModel): the vision
// tower of the LLaVA-NeXT-Video style video model (vision/video_model.h).
//
// pixels [N, 3, S, S] -> patch embedding (a conv of kernel = stride = patch
// size, no bias) -> class token + learned position embedding -> pre_layrnorm
// -> encoder layers (pre-norm: x + attn(layer_norm1(x)), x + mlp(layer_norm2(x)))
// -> the hidden states after a chosen layer (LLaVA: the penultimate, -2),
// CLS token dropped. post_layernorm is held so checkpoints round-trip, but
// LLaVA never applies it to the features it takes.
//
// Parameter names mirror Hugging Face: named_parameters() yields
// "embeddings.patch_embedding.weight", "encoder.layers.0.self_attn.q_proj.weight",
// ...; hf_named_parameters() prefixes "vision_model.".
//
// Not here: pooling and projection (video_model.h), checkpoint files
// (llava_checkpoint.h), image resizing (video_model.h's preprocess_frames).
//
// Shape letters: N images (frames), S image side, C width, P patches per
// image (g x g grid), I MLP width, Hv heads.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace namm {

/// Hyper-parameters of the tower; field names and defaults as in Hugging Face's CLIPVisionConfig.
struct VisionTowerConfig {
  int64_t hidden_size = 768;          ///< C.
  int64_t intermediate_size = 3072;   ///< I.
  int64_t num_hidden_layers = 12;     ///< encoder layers.
  int64_t num_attention_heads = 12;   ///< Hv.
  int64_t num_channels = 3;           ///< input channels.
  int64_t image_size = 224;           ///< S: input side in pixels.
  int64_t patch_size = 32;            ///< patch side in pixels; S must be a multiple.
  std::string hidden_act = "quick_gelu";  ///< quick_gelu | gelu | gelu_new | gelu_pytorch_tanh | relu.
  double layer_norm_eps = 1e-5;       ///< LayerNorm epsilon.
  double initializer_range = 0.02;    ///< std of the normal initialisation of fresh weights.

  /// g, patches per image side: image_size / patch_size.
  int64_t grid() const { return image_size / patch_size; }
  /// P = g * g.
  int64_t num_patches() const { return grid() * grid(); }

  /// Throws std::invalid_argument naming the first inconsistent field and its value.
  void validate() const;
  /// One line such as "96 px, patch 8 (12x12), width 128, 4 layers, 4 heads, MLP 512, quick_gelu".
  std::string summary() const;
};

/// Applies a Hugging Face activation by name (see VisionTowerConfig::hidden_act)
/// to x [...]; throws std::invalid_argument for an unknown name.
at::Tensor apply_activation(const std::string& name, const at::Tensor& x);
/// Whether apply_activation knows name.
bool is_known_activation(const std::string& name);

/// Self-attention of one encoder layer (all projections with bias), no mask.
class ClipAttentionImpl : public torch::nn::Module {
 public:
  explicit ClipAttentionImpl(const VisionTowerConfig& config);
  /// x: [N, T, C] -> [N, T, C].
  at::Tensor forward(const at::Tensor& x) const;

  torch::nn::Linear k_proj{nullptr};    ///< weight [C, C], bias [C]
  torch::nn::Linear v_proj{nullptr};    ///< weight [C, C], bias [C]
  torch::nn::Linear q_proj{nullptr};    ///< weight [C, C], bias [C]
  torch::nn::Linear out_proj{nullptr};  ///< weight [C, C], bias [C]
  int64_t num_heads = 1;
};
TORCH_MODULE(ClipAttention);

/// The feed-forward block: fc2(act(fc1(x))).
class ClipMlpImpl : public torch::nn::Module {
 public:
  explicit ClipMlpImpl(const VisionTowerConfig& config);
  /// x: [..., C] -> [..., C].
  at::Tensor forward(const at::Tensor& x) const;

  torch::nn::Linear fc1{nullptr};  ///< weight [I, C], bias [I]
  torch::nn::Linear fc2{nullptr};  ///< weight [C, I], bias [C]
  std::string act;
};
TORCH_MODULE(ClipMlp);

/// One pre-norm encoder layer.
class ClipEncoderLayerImpl : public torch::nn::Module {
 public:
  explicit ClipEncoderLayerImpl(const VisionTowerConfig& config);
  /// x: [N, T, C] -> [N, T, C].
  at::Tensor forward(const at::Tensor& x) const;

  ClipAttention self_attn{nullptr};
  torch::nn::LayerNorm layer_norm1{nullptr};  ///< weight, bias [C]
  ClipMlp mlp{nullptr};
  torch::nn::LayerNorm layer_norm2{nullptr};  ///< weight, bias [C]
};
TORCH_MODULE(ClipEncoderLayer);

/// Patch, class and position embeddings.
class ClipEmbeddingsImpl : public torch::nn::Module {
 public:
  explicit ClipEmbeddingsImpl(const VisionTowerConfig& config);
  /// pixels [N, 3, S, S] -> [N, 1 + P, C] (CLS first, then patches in row-major grid order).
  at::Tensor forward(const at::Tensor& pixels) const;

  at::Tensor class_embedding;                   ///< [C]
  torch::nn::Conv2d patch_embedding{nullptr};   ///< weight [C, 3, patch, patch], no bias
  torch::nn::Embedding position_embedding{nullptr};  ///< weight [1 + P, C]
};
TORCH_MODULE(ClipEmbeddings);

/// The encoder's layer list (a module so names read "encoder.layers.i.*").
class ClipEncoderImpl : public torch::nn::Module {
 public:
  explicit ClipEncoderImpl(const VisionTowerConfig& config);

  torch::nn::ModuleList layers_list{nullptr};  ///< registered as "layers"
  std::vector<ClipEncoderLayer> layers;        ///< typed handles into layers_list
};
TORCH_MODULE(ClipEncoder);

/// The CLIP vision transformer. Parameters start as Hugging Face initialises
/// them closely enough for training from scratch (normal std
/// initializer_range for linears and embeddings, LayerNorms at 1/0).
class VisionTowerImpl : public torch::nn::Module {
 public:
  /// Validates config; parameters are float32 on the CPU (use to() to move or convert).
  explicit VisionTowerImpl(const VisionTowerConfig& config);

  const VisionTowerConfig& config() const { return config_; }

  /// The hidden states of one layer, Hugging Face's hidden_states[feature_layer]:
  /// 0 is the embedding output after pre_layrnorm, k the output of layer k,
  /// negative counts from the end (-1 = last layer, -2 = penultimate). Only
  /// the layers needed run. pixels [N, 3, S, S] (any float dtype/device,
  /// converted) -> [N, 1 + P, C], or [N, P, C] when drop_cls. Differentiable.
  at::Tensor forward(const at::Tensor& pixels, int64_t feature_layer = -2, bool drop_cls = true) const;

  /// The parameters under their Hugging Face CLIPVisionModel names
  /// ("vision_model.embeddings.class_embedding", ...), registration order.
  std::vector<std::pair<std::string, at::Tensor>> hf_named_parameters() const;

  ClipEmbeddings embeddings{nullptr};
  torch::nn::LayerNorm pre_layrnorm{nullptr};    ///< weight, bias [C] (Hugging Face's spelling)
  ClipEncoder encoder{nullptr};
  torch::nn::LayerNorm post_layernorm{nullptr};  ///< weight, bias [C]; unused by forward()

 private:
  VisionTowerConfig config_;
};
TORCH_MODULE(VisionTower);

}  // namespace namm
