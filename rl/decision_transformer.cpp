// decision_transformer: see decision_transformer.h
#include "rl/decision_transformer.h"

#include "adapters/memory_controller.h"
#include "adapters/prunable_attention.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>

namespace namm {
namespace {

// additive score of a padded key: finite, so a padded query whose every
// visible key is padded still gets a proper softmax (its output is never
// used), while exp() of it underflows to exactly 0 next to any real key
constexpr double kPaddedKeyScore = -1e9;

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument("DtConfig: " + message);
}

bool known_activation(const std::string& name) {
  for (const char* known : {"relu", "gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "quick_gelu", "silu",
                            "swish", "tanh"}) {
    if (name == known) return true;
  }
  return false;
}

at::Tensor layer_norm(const torch::nn::LayerNorm& norm, const at::Tensor& x) {
  return at::layer_norm(x, {x.size(-1)}, norm->weight, norm->bias, norm->options.eps());
}

at::Tensor linear(const torch::nn::Linear& layer, const at::Tensor& x) {
  return at::linear(x, layer->weight, layer->bias);
}

// inverted dropout, as torch.nn.functional.dropout, drawing from generator
at::Tensor dropout(const at::Tensor& x, double p, bool train, const c10::optional<at::Generator>& generator) {
  if (!train || p <= 0.0) return x;
  const at::Tensor keep = at::empty_like(x, at::MemoryFormat::Contiguous).bernoulli_(1.0 - p, generator);
  return x * keep * (1.0 / (1.0 - p));
}

}  // namespace

// ---------------------------------------------------------------------------
// DtConfig

double DtConfig::attention_scale(int64_t layer) const {
  double scale = scale_attn_weights ? 1.0 / std::sqrt(static_cast<double>(head_dim())) : 1.0;
  if (scale_attn_by_inverse_layer_idx) scale /= static_cast<double>(layer + 1);
  return scale;
}

void DtConfig::validate() const {
  require(state_dim >= 1, "state_dim must be >= 1, got " + std::to_string(state_dim));
  require(act_dim >= 1, "act_dim must be >= 1, got " + std::to_string(act_dim));
  require(hidden_size >= 1, "hidden_size must be >= 1, got " + std::to_string(hidden_size));
  require(max_ep_len >= 1, "max_ep_len must be >= 1, got " + std::to_string(max_ep_len));
  require(vocab_size >= 1, "vocab_size must be >= 1, got " + std::to_string(vocab_size));
  require(n_positions >= 1, "n_positions must be >= 1, got " + std::to_string(n_positions));
  require(n_layer >= 1, "n_layer must be >= 1, got " + std::to_string(n_layer));
  require(n_head >= 1, "n_head must be >= 1, got " + std::to_string(n_head));
  require(hidden_size % n_head == 0, "hidden_size " + std::to_string(hidden_size) +
                                         " is not a multiple of n_head " + std::to_string(n_head));
  require(n_inner >= 0, "n_inner must be >= 0 (0 = 4 * hidden_size), got " + std::to_string(n_inner));
  require(known_activation(activation_function),
          "activation_function '" + activation_function +
              "' is not supported (relu, gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, quick_gelu, silu, swish, tanh)");
  for (const auto& [name, p] : {std::pair<const char*, double>{"resid_pdrop", resid_pdrop},
                                {"embd_pdrop", embd_pdrop},
                                {"attn_pdrop", attn_pdrop}}) {
    require(p >= 0.0 && p < 1.0, std::string(name) + " must be in [0, 1), got " + std::to_string(p));
  }
  require(layer_norm_epsilon > 0 && std::isfinite(layer_norm_epsilon),
          "layer_norm_epsilon must be > 0, got " + std::to_string(layer_norm_epsilon));
  require(initializer_range >= 0, "initializer_range must be >= 0, got " + std::to_string(initializer_range));
}

std::string DtConfig::summary() const {
  std::ostringstream out;
  out << "state " << state_dim << ", action " << act_dim << ", hidden " << hidden_size << ", " << n_layer
      << (n_layer == 1 ? " layer, " : " layers, ") << n_head << (n_head == 1 ? " head, " : " heads, ") << "MLP "
      << inner_dim() << " " << activation_function << ", max_ep_len " << max_ep_len;
  return out.str();
}

const char* dt_token_kind_name(DtTokenKind kind) {
  switch (kind) {
    case DtTokenKind::kReturn: return "return";
    case DtTokenKind::kState: return "state";
    case DtTokenKind::kAction: return "action";
  }
  return "?";
}

// ---------------------------------------------------------------------------
// modules

Conv1DImpl::Conv1DImpl(int64_t in, int64_t out) {
  weight = register_parameter("weight", at::empty({in, out}));
  bias = register_parameter("bias", at::zeros({out}));
}

at::Tensor Conv1DImpl::forward(const at::Tensor& x) const {
  const int64_t in = weight.size(0);
  std::vector<int64_t> out_shape(x.sizes().begin(), x.sizes().end());
  out_shape.back() = weight.size(1);
  return at::addmm(bias, x.reshape({-1, in}), weight).view(out_shape);  // [..., out]
}

Gpt2AttentionImpl::Gpt2AttentionImpl(const DtConfig& config) {
  c_attn = register_module("c_attn", Conv1D(config.hidden_size, 3 * config.hidden_size));
  c_proj = register_module("c_proj", Conv1D(config.hidden_size, config.hidden_size));
}

Gpt2MlpImpl::Gpt2MlpImpl(const DtConfig& config) {
  c_fc = register_module("c_fc", Conv1D(config.hidden_size, config.inner_dim()));
  c_proj = register_module("c_proj", Conv1D(config.inner_dim(), config.hidden_size));
}

namespace {
torch::nn::LayerNorm make_layer_norm(int64_t dim, double eps) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(eps));
}
}  // namespace

Gpt2BlockImpl::Gpt2BlockImpl(const DtConfig& config) {
  ln_1 = register_module("ln_1", make_layer_norm(config.hidden_size, config.layer_norm_epsilon));
  attn = register_module("attn", Gpt2Attention(config));
  ln_2 = register_module("ln_2", make_layer_norm(config.hidden_size, config.layer_norm_epsilon));
  mlp = register_module("mlp", Gpt2Mlp(config));
}

Gpt2BodyImpl::Gpt2BodyImpl(const DtConfig& config) {
  wte = register_module("wte", torch::nn::Embedding(config.vocab_size, config.hidden_size));
  wpe = register_module("wpe", torch::nn::Embedding(config.n_positions, config.hidden_size));
  h_list = register_module("h", torch::nn::ModuleList());
  for (int64_t l = 0; l < config.n_layer; ++l) {
    h.push_back(Gpt2Block(config));
    h_list->push_back(h.back());
  }
  ln_f = register_module("ln_f", make_layer_norm(config.hidden_size, config.layer_norm_epsilon));
}

// ---------------------------------------------------------------------------
// DecisionTransformerImpl

DecisionTransformerImpl::DecisionTransformerImpl(const DtConfig& config) : config_(config) {
  config_.validate();
  const int64_t d = config_.hidden_size;
  encoder = register_module("encoder", Gpt2Body(config_));
  embed_timestep = register_module("embed_timestep", torch::nn::Embedding(config_.max_ep_len, d));
  embed_return = register_module("embed_return", torch::nn::Linear(1, d));
  embed_state = register_module("embed_state", torch::nn::Linear(config_.state_dim, d));
  embed_action = register_module("embed_action", torch::nn::Linear(config_.act_dim, d));
  // Hugging Face builds embed_ln with nn.LayerNorm's default eps, not layer_norm_epsilon
  embed_ln = register_module("embed_ln", make_layer_norm(d, 1e-5));
  predict_state = register_module("predict_state", torch::nn::Linear(d, config_.state_dim));
  predict_action = register_module("predict_action", torch::nn::ModuleList());
  action_linear_ = torch::nn::Linear(d, config_.act_dim);
  predict_action->push_back(action_linear_);
  predict_return = register_module("predict_return", torch::nn::Linear(d, 1));

  // Hugging Face's _init_weights: weights ~ N(0, initializer_range), biases 0,
  // LayerNorms 1/0, and GPT-2's residual projections (c_proj) scaled by 1/sqrt(2 L)
  at::NoGradGuard no_grad;
  const double std_dev = config_.initializer_range;
  const double proj_std = std_dev / std::sqrt(2.0 * static_cast<double>(config_.n_layer));
  for (auto& item : named_parameters(/*recurse=*/true)) {
    const std::string& name = item.key();
    at::Tensor& p = item.value();
    const bool is_norm = name.find("ln_") != std::string::npos || name.find("embed_ln") != std::string::npos;
    const bool is_bias = name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
    if (is_norm) {
      is_bias ? p.zero_() : p.fill_(1.0);
    } else if (is_bias) {
      p.zero_();
    } else if (name.find("c_proj.weight") != std::string::npos) {
      p.normal_(0.0, proj_std);
    } else {
      p.normal_(0.0, std_dev);
    }
  }
}

std::vector<std::pair<std::string, at::Tensor>> DecisionTransformerImpl::hf_named_parameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : named_parameters(/*recurse=*/true)) out.emplace_back(item.key(), item.value());
  return out;
}

at::Tensor DecisionTransformerImpl::activation(const at::Tensor& x) const {
  const std::string& name = config_.activation_function;
  if (name == "relu") return at::relu(x);
  if (name == "gelu") return at::gelu(x);
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast") return at::gelu(x, "tanh");
  if (name == "quick_gelu") return x * at::sigmoid(1.702 * x);
  if (name == "silu" || name == "swish") return at::silu(x);
  return at::tanh(x);  // validate() admits nothing else
}

at::Tensor DecisionTransformerImpl::predict_action_from(const at::Tensor& hidden) const {
  at::Tensor out = linear(action_linear_, hidden);  // [..., A]
  return config_.action_tanh ? at::tanh(out) : out;
}

DtOutput DecisionTransformerImpl::forward(const DtBatch& batch, bool train,
                                          c10::optional<at::Generator> generator) const {
  TORCH_CHECK(batch.states.dim() == 3 && batch.states.size(2) == config_.state_dim,
              "DecisionTransformer::forward: states must be [B, T, ", config_.state_dim, "], got ",
              batch.states.sizes());
  const int64_t b = batch.states.size(0);
  const int64_t t = batch.states.size(1);
  TORCH_CHECK(t >= 1, "DecisionTransformer::forward: need at least one timestep");
  TORCH_CHECK(batch.actions.dim() == 3 && batch.actions.size(0) == b && batch.actions.size(1) == t &&
                  batch.actions.size(2) == config_.act_dim,
              "DecisionTransformer::forward: actions must be [", b, ", ", t, ", ", config_.act_dim, "], got ",
              batch.actions.sizes());
  TORCH_CHECK(batch.returns_to_go.dim() == 3 && batch.returns_to_go.size(0) == b && batch.returns_to_go.size(1) == t &&
                  batch.returns_to_go.size(2) == 1,
              "DecisionTransformer::forward: returns_to_go must be [", b, ", ", t, ", 1], got ",
              batch.returns_to_go.sizes());
  TORCH_CHECK(batch.timesteps.dim() == 2 && batch.timesteps.size(0) == b && batch.timesteps.size(1) == t,
              "DecisionTransformer::forward: timesteps must be [", b, ", ", t, "], got ", batch.timesteps.sizes());
  const at::Tensor& weight = embed_state->weight;
  const at::Device device = weight.device();
  const at::ScalarType dtype = weight.scalar_type();
  const int64_t d = config_.hidden_size;
  const int64_t heads = config_.n_head;
  const int64_t dh = config_.head_dim();
  const int64_t n = kDtTokensPerStep * t;

  const at::Tensor steps = batch.timesteps.to(device, at::kLong).clamp(0, config_.max_ep_len - 1);  // [B, T]
  const at::Tensor time = at::embedding(embed_timestep->weight, steps);                              // [B, T, D]
  const at::Tensor r = linear(embed_return, batch.returns_to_go.to(device, dtype)) + time;           // [B, T, D]
  const at::Tensor s = linear(embed_state, batch.states.to(device, dtype)) + time;                   // [B, T, D]
  const at::Tensor a = linear(embed_action, batch.actions.to(device, dtype)) + time;                 // [B, T, D]
  // (R_1, s_1, a_1, R_2, ...): [B, T, 3, D] -> [B, 3T, D]
  at::Tensor x = layer_norm(embed_ln, at::stack({r, s, a}, 2).reshape({b, n, d}));
  x = x + encoder->wpe->weight[0];  // the DT passes position id 0 for every token
  x = dropout(x, config_.embd_pdrop, train, generator);

  // masks: future keys -inf; padded keys a large negative (see kPaddedKeyScore)
  const at::Tensor future = at::ones({n, n}, at::TensorOptions().dtype(at::kBool).device(device)).triu(1);  // [n, n]
  at::Tensor padded_keys;  // [B, 1, 1, n] true where the key's step is padding
  if (batch.attention_mask.defined()) {
    TORCH_CHECK(batch.attention_mask.dim() == 2 && batch.attention_mask.size(0) == b &&
                    batch.attention_mask.size(1) == t,
                "DecisionTransformer::forward: attention_mask must be [", b, ", ", t, "], got ",
                batch.attention_mask.sizes());
    const at::Tensor real = batch.attention_mask.to(device) != 0;  // [B, T]
    if (!real.all().item<bool>()) {
      padded_keys = real.logical_not().repeat_interleave(kDtTokensPerStep, 1).view({b, 1, 1, n});
    }
  }

  for (int64_t l = 0; l < config_.n_layer; ++l) {
    const Gpt2BlockImpl& block = *encoder->h[static_cast<size_t>(l)];
    const at::Tensor qkv = block.attn->c_attn->forward(layer_norm(block.ln_1, x));  // [B, n, 3D]
    const at::Tensor q = qkv.narrow(2, 0, d).view({b, n, heads, dh}).transpose(1, 2);      // [B, Hd, n, Dh]
    const at::Tensor k = qkv.narrow(2, d, d).view({b, n, heads, dh}).transpose(1, 2);      // [B, Hd, n, Dh]
    const at::Tensor v = qkv.narrow(2, 2 * d, d).view({b, n, heads, dh}).transpose(1, 2);  // [B, Hd, n, Dh]
    // queries scaled before the product, as prunable_attention does
    at::Tensor scores = at::matmul(q * config_.attention_scale(l), k.transpose(-1, -2));  // [B, Hd, n, n]
    if (padded_keys.defined()) scores = scores.masked_fill(padded_keys, kPaddedKeyScore);
    scores = scores.masked_fill(future, -std::numeric_limits<double>::infinity());
    const at::Tensor probs = dropout(at::softmax(scores, -1), config_.attn_pdrop, train, generator);
    const at::Tensor context = at::matmul(probs, v).transpose(1, 2).reshape({b, n, d});  // [B, n, D]
    x = x + dropout(block.attn->c_proj->forward(context), config_.resid_pdrop, train, generator);
    const at::Tensor inner = activation(block.mlp->c_fc->forward(layer_norm(block.ln_2, x)));  // [B, n, I]
    x = x + dropout(block.mlp->c_proj->forward(inner), config_.resid_pdrop, train, generator);
  }
  x = layer_norm(encoder->ln_f, x);  // [B, 3T, D]

  DtOutput out;
  out.hidden = x;
  const at::Tensor by_kind = x.view({b, t, kDtTokensPerStep, d});  // [B, T, 3, D]
  out.action_preds = predict_action_from(by_kind.select(2, 1));   // [B, T, A] from the state tokens
  const at::Tensor action_tokens = by_kind.select(2, 2);          // [B, T, D]
  out.state_preds = linear(predict_state, action_tokens);         // [B, T, O]
  out.return_preds = linear(predict_return, action_tokens);       // [B, T, 1]
  return out;
}

SequenceState DecisionTransformerImpl::new_state() const {
  KvCacheOptions options;
  options.num_heads = config_.n_head;
  options.head_dim = config_.head_dim();
  options.dtype = embed_state->weight.scalar_type();
  options.device = embed_state->weight.device();
  return SequenceState::with_layers(config_.n_layer, options);
}

at::Tensor DecisionTransformerImpl::embed(DtTokenKind kind, const at::Tensor& values,
                                          const at::Tensor& timesteps) const {
  at::NoGradGuard no_grad;
  const torch::nn::Linear& layer =
      kind == DtTokenKind::kReturn ? embed_return : kind == DtTokenKind::kState ? embed_state : embed_action;
  const int64_t width = layer->weight.size(1);
  TORCH_CHECK(values.dim() == 2 && values.size(1) == width, "DecisionTransformer::embed: ",
              dt_token_kind_name(kind), " values must be [n, ", width, "], got ", values.sizes());
  TORCH_CHECK(timesteps.dim() == 1 && timesteps.size(0) == values.size(0), "DecisionTransformer::embed: timesteps must be [",
              values.size(0), "], got ", timesteps.sizes());
  const at::Tensor& weight = layer->weight;
  const at::Tensor steps = timesteps.to(weight.device(), at::kLong).clamp(0, config_.max_ep_len - 1);  // [n]
  const at::Tensor e = linear(layer, values.to(weight.device(), weight.scalar_type())) +
                       at::embedding(embed_timestep->weight, steps);  // [n, D]
  return layer_norm(embed_ln, e) + encoder->wpe->weight[0];
}

at::Tensor DecisionTransformerImpl::feed_block(int64_t layer, const at::Tensor& x, const at::Tensor& positions,
                                               SequenceState& state, AttentionRecorder* recorder) const {
  const Gpt2BlockImpl& block = *encoder->h[static_cast<size_t>(layer)];
  const int64_t n = x.size(0);
  const int64_t d = config_.hidden_size;
  const int64_t heads = config_.n_head;
  const int64_t dh = config_.head_dim();
  const at::Tensor qkv = block.attn->c_attn->forward(layer_norm(block.ln_1, x));            // [n, 3D]
  const at::Tensor q = qkv.narrow(1, 0, d).view({n, heads, dh}).transpose(0, 1);          // [Hd, n, Dh]
  const at::Tensor k = qkv.narrow(1, d, d).view({n, heads, dh}).transpose(0, 1);          // [Hd, n, Dh]
  const at::Tensor v = qkv.narrow(1, 2 * d, d).view({n, heads, dh}).transpose(0, 1);      // [Hd, n, Dh]
  AttentionOptions options;
  options.scale = config_.attention_scale(layer);
  const at::Tensor context =
      prunable_attention(q, k, v, positions, state.caches[static_cast<size_t>(layer)], recorder, options)  // [Hd, n, Dh]
          .transpose(0, 1)
          .reshape({n, d});  // [n, D]
  at::Tensor out = x + block.attn->c_proj->forward(context);                              // [n, D]
  out = out + block.mlp->c_proj->forward(activation(block.mlp->c_fc->forward(layer_norm(block.ln_2, out))));
  return out;
}

at::Tensor DecisionTransformerImpl::forward_layers(SequenceState& state, const at::Tensor& embeddings,
                                                   const at::Tensor& positions,
                                                   const std::vector<AttentionRecorder*>& recorders) const {
  at::NoGradGuard no_grad;
  TORCH_CHECK(state.num_layers() == config_.n_layer, "DecisionTransformer::forward_layers: state has ",
              state.num_layers(), " caches for ", config_.n_layer, " layers (use new_state())");
  TORCH_CHECK(recorders.empty() || static_cast<int64_t>(recorders.size()) == config_.n_layer,
              "DecisionTransformer::forward_layers: ", recorders.size(), " recorders for ", config_.n_layer, " layers");
  at::Tensor x = embeddings.to(embed_state->weight.device(), embed_state->weight.scalar_type());  // [n, D]
  for (int64_t l = 0; l < config_.n_layer; ++l) {
    x = feed_block(l, x, positions, state, recorders.empty() ? nullptr : recorders[static_cast<size_t>(l)]);
  }
  return x;
}

at::Tensor DecisionTransformerImpl::feed(SequenceState& state, const at::Tensor& embeddings,
                                         MemoryController* controller) const {
  // no autograd graph; not InferenceMode, whose tensors a later eviction
  // outside such a guard could not compact in place
  at::NoGradGuard no_grad;
  TORCH_CHECK(embeddings.dim() == 2 && embeddings.size(0) >= 1 && embeddings.size(1) == config_.hidden_size,
              "DecisionTransformer::feed: embeddings must be [n, ", config_.hidden_size, "] with n >= 1, got ",
              embeddings.sizes());
  const at::Tensor hidden = feed_sequence(*this, state, embeddings, /*max_chunk=*/0, controller);  // [n, D]
  return layer_norm(encoder->ln_f, hidden);
}

}  // namespace namm
