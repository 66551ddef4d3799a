// The Decision Transformer (Chen et al. 2021) as Hugging Face's
// DecisionTransformerModel computes it, on adapters' prunable attention.
//
// Each environment step t contributes three tokens, in this order:
// return-to-go R_t, state s_t, action a_t. Each is a linear embedding of its
// value plus a learned timestep embedding (embed_timestep[t]); the
// interleaved sequence goes through embed_ln, then Hugging Face's GPT-2 body
// (which adds its position embedding wpe[0] to EVERY token, because the DT
// passes all-zero position ids; the timestep embedding is the only notion
// of time), pre-LN blocks with Conv1D projections (weights [in, out]) and
// the configured MLP activation (relu by default), ln_f. The action a_t is
// predicted from the hidden state of the state token s_t: tanh(Linear).
//
// Two paths share the weights:
//   forward(batch)          plain batched causal attention with an optional
//                           padding mask and autograd (training, and the
//                           standard K-step sliding-window evaluation);
//   embed() + feed(state)   incremental inference over a per-episode
//                           SequenceState whose per-layer LayerKvCache is kept
//                           across the whole episode and pruned by a memory
//                           policy: the model is a CachedHost
//                           (adapters/cached_host.h). A cached token's
//                           position is its index in the episode's token
//                           stream (3 t + kind), so position % 3 names its kind.
//
// Parameter names are Hugging Face's ("encoder.h.0.attn.c_attn.weight",
// "predict_action.0.bias", ...), so checkpoints map one to one
// (rl/dt_checkpoint.h).
//
// Not here: checkpoint files (dt_checkpoint.h), training (train_dt.h),
// environments and rollouts (rollout.h).
//
// Shape letters: B batch, T timesteps, n tokens, D hidden width, Dh head
// width, Hd heads, I MLP width, O state size, A action size.
#pragma once

#include "adapters/cached_host.h"

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <vector>

namespace namm {

class MemoryController;

/// Hyper-parameters; field names and defaults as Hugging Face's
/// DecisionTransformerConfig (its GPT-2 body reads hidden_size, not n_embd).
struct DtConfig {
  int64_t state_dim = 17;               ///< O.
  int64_t act_dim = 4;                  ///< A.
  int64_t hidden_size = 128;            ///< D.
  int64_t max_ep_len = 4096;            ///< rows of embed_timestep; later timesteps use the last row.
  bool action_tanh = true;              ///< tanh on the action head.
  int64_t vocab_size = 1;               ///< rows of the (unused) GPT-2 token embedding wte.
  int64_t n_positions = 1024;           ///< rows of wpe (only row 0 is used).
  int64_t n_layer = 3;                  ///< GPT-2 blocks L.
  int64_t n_head = 1;                   ///< attention heads Hd.
  int64_t n_inner = 0;                  ///< I; 0 (Hugging Face: null) means 4 * hidden_size.
  std::string activation_function = "relu";  ///< relu|gelu|gelu_new|gelu_pytorch_tanh|gelu_fast|quick_gelu|silu|swish|tanh.
  double resid_pdrop = 0.1;             ///< dropout after attention / MLP (training only).
  double embd_pdrop = 0.1;              ///< dropout on the embedded sequence (training only).
  double attn_pdrop = 0.1;              ///< dropout on attention probabilities (training only).
  double layer_norm_epsilon = 1e-5;     ///< eps of the blocks' LayerNorms and ln_f (embed_ln uses 1e-5).
  double initializer_range = 0.02;      ///< std of fresh weights.
  bool scale_attn_weights = true;       ///< divide scores by sqrt(Dh).
  bool scale_attn_by_inverse_layer_idx = false;  ///< also divide layer l's scores by l + 1.

  /// I as used: n_inner, or 4 * hidden_size when 0.
  int64_t inner_dim() const { return n_inner > 0 ? n_inner : 4 * hidden_size; }
  /// Dh = hidden_size / n_head.
  int64_t head_dim() const { return hidden_size / n_head; }
  /// Softmax temperature of layer l: (1/sqrt(Dh) or 1) / (l + 1 when scale_attn_by_inverse_layer_idx).
  double attention_scale(int64_t layer) const;
  /// Throws std::invalid_argument naming the first bad field and its value.
  void validate() const;
  /// One line such as "state 11, action 3, hidden 128, 3 layers, 1 head, MLP 512 relu, max_ep_len 1000".
  std::string summary() const;
};

/// What a token of the interleaved stream holds.
enum class DtTokenKind : int { kReturn = 0, kState = 1, kAction = 2 };

/// Tokens per environment step (return, state, action).
constexpr int64_t kDtTokensPerStep = 3;

/// The kind of the token at stream position p (positions are 3 t + kind).
inline DtTokenKind dt_token_kind(int64_t position) { return static_cast<DtTokenKind>(position % kDtTokensPerStep); }

/// "return", "state" or "action".
const char* dt_token_kind_name(DtTokenKind kind);

/// One batch of trajectory windows, Hugging Face's forward() arguments.
struct DtBatch {
  at::Tensor states;          ///< [B, T, O] float32, already normalised.
  at::Tensor actions;         ///< [B, T, A] float32.
  at::Tensor returns_to_go;   ///< [B, T, 1] float32, already scaled.
  at::Tensor timesteps;       ///< [B, T] int64.
  at::Tensor attention_mask;  ///< [B, T] (any dtype, nonzero = real step) or undefined = all real.
};

/// What forward() returns.
struct DtOutput {
  at::Tensor action_preds;  ///< [B, T, A] from the state tokens.
  at::Tensor state_preds;   ///< [B, T, O] from the action tokens (Hugging Face's predict_state).
  at::Tensor return_preds;  ///< [B, T, 1] from the action tokens (predict_return).
  at::Tensor hidden;        ///< [B, 3T, D] after ln_f.
};

/// GPT-2's Conv1D: y = x W + b with W stored [in, out] (transposed from nn.Linear).
class Conv1DImpl : public torch::nn::Module {
 public:
  Conv1DImpl(int64_t in, int64_t out);
  /// x: [..., in] -> [..., out].
  at::Tensor forward(const at::Tensor& x) const;

  at::Tensor weight;  ///< [in, out]
  at::Tensor bias;    ///< [out]
};
TORCH_MODULE(Conv1D);

/// Self-attention projections of one block.
class Gpt2AttentionImpl : public torch::nn::Module {
 public:
  explicit Gpt2AttentionImpl(const DtConfig& config);

  Conv1D c_attn{nullptr};  ///< [D, 3D]: q, k, v side by side
  Conv1D c_proj{nullptr};  ///< [D, D]
};
TORCH_MODULE(Gpt2Attention);

/// The feed-forward block: c_proj(act(c_fc(x))).
class Gpt2MlpImpl : public torch::nn::Module {
 public:
  explicit Gpt2MlpImpl(const DtConfig& config);

  Conv1D c_fc{nullptr};    ///< [D, I]
  Conv1D c_proj{nullptr};  ///< [I, D]
};
TORCH_MODULE(Gpt2Mlp);

/// One pre-LN block: x + attn(ln_1(x)), then x + mlp(ln_2(x)).
class Gpt2BlockImpl : public torch::nn::Module {
 public:
  explicit Gpt2BlockImpl(const DtConfig& config);

  torch::nn::LayerNorm ln_1{nullptr};  ///< [D]
  Gpt2Attention attn{nullptr};
  torch::nn::LayerNorm ln_2{nullptr};  ///< [D]
  Gpt2Mlp mlp{nullptr};
};
TORCH_MODULE(Gpt2Block);

/// Hugging Face's DecisionTransformerGPT2Model: wte (unused), wpe, blocks, ln_f.
class Gpt2BodyImpl : public torch::nn::Module {
 public:
  explicit Gpt2BodyImpl(const DtConfig& config);

  torch::nn::Embedding wte{nullptr};  ///< [vocab_size, D], never read (the DT feeds embeddings)
  torch::nn::Embedding wpe{nullptr};  ///< [n_positions, D], only row 0 is read
  torch::nn::ModuleList h_list{nullptr};  ///< registered as "h"
  std::vector<Gpt2Block> h;           ///< [L] typed handles into h_list
  torch::nn::LayerNorm ln_f{nullptr}; ///< [D]
};
TORCH_MODULE(Gpt2Body);

/// The Decision Transformer. Parameters start with Hugging Face's
/// initialisation (normal(0, initializer_range) for linear, Conv1D and
/// embedding weights, zero biases, c_proj weights scaled by 1/sqrt(2 L),
/// LayerNorms at 1/0). Immutable during inference: all per-episode state is in SequenceState.
class DecisionTransformerImpl : public torch::nn::Module, public CachedHost {
 public:
  /// Validates config; parameters are float32 on the CPU (use to() to move).
  explicit DecisionTransformerImpl(const DtConfig& config);

  const DtConfig& config() const { return config_; }

  /// Training / reference path over whole windows, plain causal attention with
  /// the padding mask (a real step never attends to a padded one), differentiable.
  /// Dropout (Hugging Face's three rates) only when `train`; draws come from
  /// `generator` (undefined = the default CPU generator).
  DtOutput forward(const DtBatch& batch, bool train = false, c10::optional<at::Generator> generator = c10::nullopt) const;

  // CachedHost (adapters/cached_host.h)
  int64_t num_layers() const override { return config_.n_layer; }
  int64_t embedding_width() const override { return config_.hidden_size; }
  /// A fresh inference state: L caches of Hd heads in the model's dtype and device.
  SequenceState new_state() const override;
  /// Every GPT-2 block over embeddings [n, D] at stream positions [n] -> [n, D] before ln_f.
  at::Tensor forward_layers(SequenceState& state, const at::Tensor& embeddings, const at::Tensor& positions,
                            const std::vector<AttentionRecorder*>& recorders) const override;
  /// config().summary().
  std::string summary() const override { return config_.summary(); }

  /// Input embeddings of n tokens of one kind, ready for feed(): values [n, F]
  /// (F = 1, O or A by kind; normalised / scaled as in training), timesteps
  /// [n] int64 (clamped to max_ep_len - 1) -> [n, D] = embed_ln(embed(values) +
  /// embed_timestep(t)) + wpe[0].
  at::Tensor embed(DtTokenKind kind, const at::Tensor& values, const at::Tensor& timesteps) const;

  /// Inference path: runs embeddings [n, D] (in stream order) at stream
  /// positions state.next_position + 0..n-1 through feed_sequence
  /// (adapters/cached_host.h): chunks of at most
  /// controller->tokens_until_update(), attention recorded for its policy,
  /// after_tokens per chunk (which may evict). Returns the final hidden
  /// states [n, D] (after ln_f). No autograd.
  at::Tensor feed(SequenceState& state, const at::Tensor& embeddings, MemoryController* controller = nullptr) const;

  /// The action head: hidden [..., D] -> action [..., A] (tanh when action_tanh).
  at::Tensor predict_action_from(const at::Tensor& hidden) const;

  /// The parameters under their Hugging Face names, in registration order.
  std::vector<std::pair<std::string, at::Tensor>> hf_named_parameters() const override;

  Gpt2Body encoder{nullptr};
  torch::nn::Embedding embed_timestep{nullptr};  ///< [max_ep_len, D]
  torch::nn::Linear embed_return{nullptr};       ///< weight [D, 1]
  torch::nn::Linear embed_state{nullptr};        ///< weight [D, O]
  torch::nn::Linear embed_action{nullptr};       ///< weight [D, A]
  torch::nn::LayerNorm embed_ln{nullptr};        ///< [D]
  torch::nn::Linear predict_state{nullptr};      ///< weight [O, D]
  torch::nn::ModuleList predict_action{nullptr}; ///< "predict_action.0": Linear weight [A, D]
  torch::nn::Linear predict_return{nullptr};     ///< weight [1, D]

 private:
  /// One block of the inference path over x [n, D] at positions [n].
  at::Tensor feed_block(int64_t layer, const at::Tensor& x, const at::Tensor& positions, SequenceState& state,
                        AttentionRecorder* recorder) const;
  /// The MLP activation named by the config.
  at::Tensor activation(const at::Tensor& x) const;

  DtConfig config_;
  torch::nn::Linear action_linear_{nullptr};  // predict_action[0]
};
TORCH_MODULE(DecisionTransformer);

}  // namespace namm
