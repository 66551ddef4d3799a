// A Llama-style decoder (RMSNorm, RoPE, SwiGLU, optional grouped-query
// attention): the language host NAMMs are evolved on.
//
// Two paths share the same weights:
//   forward(tokens [B, T])   plain causal attention with autograd, for
//                            training and as the reference;
//   forward_layers(state, ..) inference over a per-sequence SequenceState
//                            whose per-layer LayerKvCache a memory policy
//                            prunes: the model is a CausalLm
//                            (adapters/cached_host.h), so the shared
//                            prefill/decode loop runs it under any policy.
// The math follows Hugging Face's LlamaForCausalLM (rotate_half RoPE over
// the two halves of the head width, RMSNorm computed in float32, SiLU gate),
// so its checkpoints load as they are (text/llama_checkpoint.h). Parameter
// names mirror it too: named_parameters() yields "layers.0.self_attn.q_proj.weight",
// i.e. the Hugging Face name without the leading "model.".
//
// Not here: checkpoint files (llama_checkpoint.h), sampling (generation.h),
// tokenisation, the policy schedule (adapters/memory_controller.h).
//
// Shape letters: B batch, T tokens, n new tokens, D hidden width, Dh head
// width, Hq query heads, Hkv KV heads, V vocabulary, I MLP width, P positions.
#pragma once

#include "adapters/cached_host.h"

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <vector>

namespace namm {

class MemoryController;

/// RoPE frequency scaling of Hugging Face's config.json "rope_scaling".
struct RopeScaling {
  enum class Kind { kNone, kLinear, kLlama3 };
  Kind kind = Kind::kNone;
  double factor = 1.0;                           ///< linear and llama3: wavelengths grow by this much
  double low_freq_factor = 1.0;                  ///< llama3: wavelengths above original / this are scaled fully
  double high_freq_factor = 4.0;                 ///< llama3: wavelengths below original / this are kept
  int64_t original_max_position_embeddings = 8192;  ///< llama3: the pre-training context
};

/// Hyper-parameters of a Llama-family model; field names as in Hugging Face's
/// LlamaConfig. The family covers Llama 1-3 and Mistral (model_type "llama",
/// "mistral"), Qwen2 (biases on q/k/v) and Qwen3 (RMSNorm of each head's
/// queries and keys before RoPE).
struct LlamaConfig {
  std::string model_type = "llama";      ///< "llama", "mistral", "qwen2" or "qwen3" (config.json and messages).
  int64_t vocab_size = 32000;            ///< V.
  int64_t hidden_size = 4096;            ///< D.
  int64_t intermediate_size = 11008;     ///< I, the SwiGLU width.
  int64_t num_hidden_layers = 32;        ///< decoder layers L.
  int64_t num_attention_heads = 32;      ///< query heads Hq.
  int64_t num_key_value_heads = 32;      ///< KV heads Hkv (< Hq: grouped-query attention).
  int64_t head_dim = 0;                  ///< Dh; 0 means hidden_size / num_attention_heads.
  double rms_norm_eps = 1e-6;            ///< RMSNorm epsilon.
  double rope_theta = 10000.0;           ///< RoPE base.
  int64_t max_position_embeddings = 2048;  ///< RoPE table length (positions beyond are computed on the fly).
  bool tie_word_embeddings = false;      ///< lm_head shares embed_tokens' weight.
  double initializer_range = 0.02;       ///< std of the normal initialisation of fresh weights.
  RopeScaling rope_scaling;              ///< none, linear or llama3.
  bool qkv_bias = false;                 ///< q_proj, k_proj, v_proj carry biases [out] (Qwen2; Llama's attention_bias).
  bool o_bias = false;                   ///< o_proj carries a bias [D] (Llama's and Qwen3's attention_bias).
  bool qk_norm = false;                  ///< q_norm, k_norm: RMSNorm [Dh] over each head (Qwen3).

  /// Dh as used: head_dim, or hidden_size / num_attention_heads when 0.
  int64_t resolved_head_dim() const { return head_dim > 0 ? head_dim : hidden_size / num_attention_heads; }

  /// Throws std::invalid_argument naming the first inconsistent field and its value.
  void validate() const;

  /// One line such as "vocab 64, hidden 32, 2 layers, 4 heads (2 KV, Dh 8), MLP 48, tied".
  std::string summary() const;
};

/// Root-mean-square norm with a learned scale: y = w * x / sqrt(mean(x^2) + eps), in float32.
class RmsNormImpl : public torch::nn::Module {
 public:
  RmsNormImpl(int64_t dim, double eps);
  /// x: [..., D] -> [..., D] in x's dtype.
  at::Tensor forward(const at::Tensor& x) const;

  at::Tensor weight;  ///< [D]
  double eps;
};
TORCH_MODULE(RmsNorm);

/// Self-attention projections of one layer (biases and per-head q/k norms
/// only where the config asks for them).
class LlamaAttentionImpl : public torch::nn::Module {
 public:
  explicit LlamaAttentionImpl(const LlamaConfig& config);

  /// Queries [..., Hq*Dh] and keys [..., Hkv*Dh] of normed hidden states h
  /// [..., D], viewed as [..., H, Dh], q/k-normed when configured (before RoPE).
  std::pair<at::Tensor, at::Tensor> queries_keys(const at::Tensor& h, int64_t hq, int64_t hkv, int64_t dh) const;

  torch::nn::Linear q_proj{nullptr};  ///< weight [Hq*Dh, D] (bias [Hq*Dh] with qkv_bias)
  torch::nn::Linear k_proj{nullptr};  ///< weight [Hkv*Dh, D]
  torch::nn::Linear v_proj{nullptr};  ///< weight [Hkv*Dh, D]
  torch::nn::Linear o_proj{nullptr};  ///< weight [D, Hq*Dh] (bias [D] with o_bias)
  RmsNorm q_norm{nullptr};            ///< weight [Dh]; null unless qk_norm
  RmsNorm k_norm{nullptr};            ///< weight [Dh]; null unless qk_norm
};
TORCH_MODULE(LlamaAttention);

/// The SwiGLU feed-forward block: down(silu(gate(x)) * up(x)).
class LlamaMlpImpl : public torch::nn::Module {
 public:
  explicit LlamaMlpImpl(const LlamaConfig& config);
  /// x: [..., D] -> [..., D].
  at::Tensor forward(const at::Tensor& x) const;

  torch::nn::Linear gate_proj{nullptr};  ///< weight [I, D]
  torch::nn::Linear up_proj{nullptr};    ///< weight [I, D]
  torch::nn::Linear down_proj{nullptr};  ///< weight [D, I]
};
TORCH_MODULE(LlamaMlp);

/// One pre-norm decoder layer: x + attn(norm(x)), then x + mlp(norm(x)).
class LlamaDecoderLayerImpl : public torch::nn::Module {
 public:
  explicit LlamaDecoderLayerImpl(const LlamaConfig& config);

  LlamaAttention self_attn{nullptr};
  LlamaMlp mlp{nullptr};
  RmsNorm input_layernorm{nullptr};           ///< weight [D]
  RmsNorm post_attention_layernorm{nullptr};  ///< weight [D]
};
TORCH_MODULE(LlamaDecoderLayer);

/// The causal language model (LlamaForCausalLM). Parameters start with
/// Hugging Face's initialisation (normal, std 0.02; norms at 1).
class LlamaImpl : public torch::nn::Module, public CausalLm {
 public:
  /// Validates config; parameters are float32 on the CPU (use to() to move or convert).
  explicit LlamaImpl(const LlamaConfig& config);

  const LlamaConfig& config() const { return config_; }

  /// Training / reference path: tokens [B, T] int64 -> logits [B, T, V], plain
  /// causal attention at positions 0..T-1, differentiable.
  at::Tensor forward(const at::Tensor& tokens) const;

  /// forward() from input embeddings instead of ids (multimodal hosts splice
  /// visual embeddings into the sequence): embeds [B, T, D] -> logits [B, T, V],
  /// positions 0..T-1, differentiable.
  at::Tensor forward_embeddings(const at::Tensor& embeds) const;

  /// The final hidden states (after the last RMSNorm, before the output
  /// projection): embeds [B, T, D] -> [B, T, D], differentiable; lets a
  /// trainer project only the positions its loss needs.
  at::Tensor forward_hidden(const at::Tensor& embeds) const;

  // CausalLm (adapters/cached_host.h)
  int64_t num_layers() const override { return config_.num_hidden_layers; }
  int64_t embedding_width() const override { return config_.hidden_size; }
  int64_t vocab_size() const override { return config_.vocab_size; }
  /// Input embeddings of ids [...] int64 -> [..., D] (embed_tokens on the model's device).
  at::Tensor embed(const at::Tensor& tokens) const override;
  /// A fresh inference state: L caches of Hkv heads in the model's dtype and device.
  SequenceState new_state() const override;
  /// Every decoder layer over embeddings [n, D] at positions [n]: keys are
  /// cached after RoPE, so a kept token keeps its own position. -> [n, D] before the final norm.
  at::Tensor forward_layers(SequenceState& state, const at::Tensor& embeddings, const at::Tensor& positions,
                            const std::vector<AttentionRecorder*>& recorders) const override;
  /// The final RMSNorm and the output projection: hidden [m, D] -> logits [m, V].
  at::Tensor logits(const at::Tensor& hidden) const override;
  /// config().summary().
  std::string summary() const override { return config_.summary(); }

  /// One chunk of tokens [n] int64 through feed_chunk (adapters/cached_host.h):
  /// at positions [n] (undefined = state.next_position + 0..n-1), recording
  /// for controller's policy, then controller->after_tokens(n, ...) (which may
  /// evict); n must not exceed controller->tokens_until_update(). Returns
  /// logits [V] of the last token, or [n, V] when all_logits.
  /// Runs under a NoGradGuard, not InferenceMode: InferenceMode tensors in
  /// the caches could not be compacted by a later controller.flush() outside
  /// such a guard. A caller that keeps all cache work inside one
  /// c10::InferenceMode scope may add it (about 15% faster decoding).
  at::Tensor feed(SequenceState& state, const at::Tensor& tokens, MemoryController* controller = nullptr,
                  bool all_logits = false, const at::Tensor& positions = {}) const;

  /// feed() from input embeddings [n, D] (any dtype/device, converted to the
  /// model's) instead of ids; same protocol, positions and return value.
  at::Tensor feed_embeddings(SequenceState& state, const at::Tensor& embeds, MemoryController* controller = nullptr,
                             bool all_logits = false, const at::Tensor& positions = {}) const;

  /// RoPE cos and sin for positions [n] int64: two tensors [n, Dh/2] in the model's dtype and device.
  std::pair<at::Tensor, at::Tensor> rope(const at::Tensor& positions) const;

  /// The weight the output projection uses: lm_head's, or embed_tokens' when tied. [V, D]
  const at::Tensor& output_weight() const;

  /// The parameters under their Hugging Face names ("model.layers.0.mlp.up_proj.weight",
  /// "lm_head.weight" unless tied), in registration order.
  std::vector<std::pair<std::string, at::Tensor>> hf_named_parameters() const override;

  torch::nn::Embedding embed_tokens{nullptr};  ///< weight [V, D]
  torch::nn::ModuleList layers_list{nullptr};  ///< registered as "layers"
  std::vector<LlamaDecoderLayer> layers;       ///< [L] typed handles into layers_list
  RmsNorm norm{nullptr};                       ///< weight [D]
  torch::nn::Linear lm_head{nullptr};          ///< weight [V, D]; null when tied

 private:
  /// feed() after the embedding lookup: x [n, D] in the model's dtype and device.
  at::Tensor feed_hidden(SequenceState& state, const at::Tensor& x, MemoryController* controller, bool all_logits,
                         const at::Tensor& positions) const;

  /// One layer of the inference path: x [n, D] -> [n, D].
  at::Tensor feed_layer(int64_t layer, const at::Tensor& x, const at::Tensor& positions, const at::Tensor& cos,
                        const at::Tensor& sin, SequenceState& state, AttentionRecorder* recorder) const;

  LlamaConfig config_;
  int64_t head_dim_ = 0;  // config_.resolved_head_dim()
  at::Tensor rope_cos_;  ///< [P, Dh/2] buffer "rope_cos", P = min(max_position_embeddings, kRopeTableLimit)
  at::Tensor rope_sin_;  ///< [P, Dh/2] buffer "rope_sin"
};
TORCH_MODULE(Llama);

/// Positions whose RoPE cos/sin a model precomputes at most; later ones are computed per call.
constexpr int64_t kRopeTableLimit = 32768;

/// Applies RoPE to x [..., n, Dh] given cos, sin [n, Dh/2] (rotate_half convention:
/// pairs (i, i + Dh/2)); returns a new tensor.
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace namm
