// llama: see llama.h
#include "text/llama.h"

#include "adapters/memory_controller.h"
#include "adapters/prunable_attention.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/nn/init.h>

#include <cmath>
#include <algorithm>
#include <limits>
#include <sstream>
#include <stdexcept>

namespace namm {
namespace {

// queries per block of the training path's attention
constexpr int64_t kTrainQueryBlock = 256;

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument("LlamaConfig: " + message);
}

torch::nn::Linear make_linear(int64_t in, int64_t out, bool bias = false) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
}

// x [..., in] through a projection, with its bias when it has one: [..., out]
at::Tensor project(const torch::nn::Linear& linear, const at::Tensor& x) {
  return linear->bias.defined() ? at::linear(x, linear->weight, linear->bias) : at::linear(x, linear->weight);
}

// the Hugging Face inverse frequencies, in float32 as it computes them so
// angles match its checkpoints bit for bit, with its rope_scaling: [Dh/2]
at::Tensor rope_inverse_frequencies(int64_t head_dim, double theta, const RopeScaling& scaling) {
  const at::Tensor exponents = at::arange(0, head_dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(head_dim);
  at::Tensor inv_freq = 1.0 / at::pow(theta, exponents);
  switch (scaling.kind) {
    case RopeScaling::Kind::kNone:
      return inv_freq;
    case RopeScaling::Kind::kLinear:
      return inv_freq / scaling.factor;
    case RopeScaling::Kind::kLlama3: {
      // Llama 3.1's rule: long wavelengths are stretched by `factor`, short
      // ones kept, and the band between blends the two smoothly.
      const double old_context = static_cast<double>(scaling.original_max_position_embeddings);
      const double low_freq_wavelen = old_context / scaling.low_freq_factor;
      const double high_freq_wavelen = old_context / scaling.high_freq_factor;
      const at::Tensor wavelen = 2.0 * M_PI / inv_freq;
      at::Tensor scaled = at::where(wavelen > low_freq_wavelen, inv_freq / scaling.factor, inv_freq);
      const at::Tensor smooth = (old_context / wavelen - scaling.low_freq_factor) /
                                (scaling.high_freq_factor - scaling.low_freq_factor);
      const at::Tensor smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled;
      const at::Tensor medium = (wavelen >= high_freq_wavelen).logical_and(wavelen <= low_freq_wavelen);
      return at::where(medium, smoothed, scaled);
    }
  }
  return inv_freq;
}

}  // namespace

// ---------------------------------------------------------------------------
// LlamaConfig

void LlamaConfig::validate() const {
  require(vocab_size >= 1, "vocab_size must be >= 1, got " + std::to_string(vocab_size));
  require(hidden_size >= 1, "hidden_size must be >= 1, got " + std::to_string(hidden_size));
  require(intermediate_size >= 1, "intermediate_size must be >= 1, got " + std::to_string(intermediate_size));
  require(num_hidden_layers >= 1, "num_hidden_layers must be >= 1, got " + std::to_string(num_hidden_layers));
  require(num_attention_heads >= 1, "num_attention_heads must be >= 1, got " + std::to_string(num_attention_heads));
  require(num_key_value_heads >= 1, "num_key_value_heads must be >= 1, got " + std::to_string(num_key_value_heads));
  require(num_attention_heads % num_key_value_heads == 0,
          "num_attention_heads " + std::to_string(num_attention_heads) + " is not a multiple of num_key_value_heads " +
              std::to_string(num_key_value_heads));
  require(head_dim >= 0, "head_dim must be >= 0 (0 = hidden_size / num_attention_heads), got " +
                             std::to_string(head_dim));
  require(head_dim > 0 || hidden_size % num_attention_heads == 0,
          "hidden_size " + std::to_string(hidden_size) + " is not a multiple of num_attention_heads " +
              std::to_string(num_attention_heads));
  require(resolved_head_dim() % 2 == 0, "the head width must be even for RoPE, got " +
                                            std::to_string(resolved_head_dim()));
  require(rms_norm_eps > 0 && std::isfinite(rms_norm_eps), "rms_norm_eps must be > 0, got " + std::to_string(rms_norm_eps));
  require(rope_theta > 0 && std::isfinite(rope_theta), "rope_theta must be > 0, got " + std::to_string(rope_theta));
  require(max_position_embeddings >= 1,
          "max_position_embeddings must be >= 1, got " + std::to_string(max_position_embeddings));
  require(initializer_range >= 0, "initializer_range must be >= 0, got " + std::to_string(initializer_range));
  if (rope_scaling.kind != RopeScaling::Kind::kNone) {
    require(rope_scaling.factor > 0 && std::isfinite(rope_scaling.factor),
            "rope_scaling.factor must be > 0, got " + std::to_string(rope_scaling.factor));
  }
  if (rope_scaling.kind == RopeScaling::Kind::kLlama3) {
    require(rope_scaling.low_freq_factor > 0 && rope_scaling.high_freq_factor > rope_scaling.low_freq_factor &&
                std::isfinite(rope_scaling.high_freq_factor),
            "rope_scaling needs 0 < low_freq_factor < high_freq_factor, got " + std::to_string(rope_scaling.low_freq_factor) +
                " and " + std::to_string(rope_scaling.high_freq_factor));
    require(rope_scaling.original_max_position_embeddings >= 1,
            "rope_scaling.original_max_position_embeddings must be >= 1, got " +
                std::to_string(rope_scaling.original_max_position_embeddings));
  }
}

std::string LlamaConfig::summary() const {
  std::ostringstream out;
  out << "vocab " << vocab_size << ", hidden " << hidden_size << ", " << num_hidden_layers << " layers, "
      << num_attention_heads << " heads (" << num_key_value_heads << " KV, Dh " << resolved_head_dim() << "), MLP "
      << intermediate_size << (tie_word_embeddings ? ", tied" : ", untied");
  if (model_type != "llama") out << ", " << model_type;
  if (qkv_bias || o_bias) out << (qkv_bias && o_bias ? ", attention biases" : qkv_bias ? ", q/k/v biases" : ", o bias");
  if (qk_norm) out << ", q/k norm";
  if (rope_scaling.kind == RopeScaling::Kind::kLinear) out << ", RoPE linear x" << rope_scaling.factor;
  if (rope_scaling.kind == RopeScaling::Kind::kLlama3) out << ", RoPE llama3 x" << rope_scaling.factor;
  return out.str();
}

// ---------------------------------------------------------------------------
// modules

RmsNormImpl::RmsNormImpl(int64_t dim, double eps) : eps(eps) {
  weight = register_parameter("weight", at::ones({dim}));
}

at::Tensor RmsNormImpl::forward(const at::Tensor& x) const {
  // Hugging Face normalises in float32 and scales after casting back
  const at::Tensor x32 = x.to(at::kFloat);
  const at::Tensor normed = x32 * at::rsqrt(x32.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * normed.to(x.scalar_type());
}

LlamaAttentionImpl::LlamaAttentionImpl(const LlamaConfig& config) {
  const int64_t d = config.hidden_size;
  const int64_t dh = config.resolved_head_dim();
  q_proj = register_module("q_proj", make_linear(d, config.num_attention_heads * dh, config.qkv_bias));
  k_proj = register_module("k_proj", make_linear(d, config.num_key_value_heads * dh, config.qkv_bias));
  v_proj = register_module("v_proj", make_linear(d, config.num_key_value_heads * dh, config.qkv_bias));
  o_proj = register_module("o_proj", make_linear(config.num_attention_heads * dh, d, config.o_bias));
  if (config.qk_norm) {
    q_norm = register_module("q_norm", RmsNorm(dh, config.rms_norm_eps));
    k_norm = register_module("k_norm", RmsNorm(dh, config.rms_norm_eps));
  }
}

std::pair<at::Tensor, at::Tensor> LlamaAttentionImpl::queries_keys(const at::Tensor& h, int64_t hq, int64_t hkv,
                                                                   int64_t dh) const {
  std::vector<int64_t> q_shape(h.sizes().begin(), h.sizes().end() - 1), k_shape = q_shape;
  q_shape.insert(q_shape.end(), {hq, dh});
  k_shape.insert(k_shape.end(), {hkv, dh});
  at::Tensor q = project(q_proj, h).view(q_shape);  // [..., Hq, Dh]
  at::Tensor k = project(k_proj, h).view(k_shape);  // [..., Hkv, Dh]
  if (q_norm) {
    q = q_norm->forward(q);
    k = k_norm->forward(k);
  }
  return {q, k};
}

LlamaMlpImpl::LlamaMlpImpl(const LlamaConfig& config) {
  gate_proj = register_module("gate_proj", make_linear(config.hidden_size, config.intermediate_size));
  up_proj = register_module("up_proj", make_linear(config.hidden_size, config.intermediate_size));
  down_proj = register_module("down_proj", make_linear(config.intermediate_size, config.hidden_size));
}

at::Tensor LlamaMlpImpl::forward(const at::Tensor& x) const {
  at::Tensor gate = at::silu(at::linear(x, gate_proj->weight));  // [..., I]
  return at::linear(gate * at::linear(x, up_proj->weight), down_proj->weight);
}

LlamaDecoderLayerImpl::LlamaDecoderLayerImpl(const LlamaConfig& config) {
  self_attn = register_module("self_attn", LlamaAttention(config));
  mlp = register_module("mlp", LlamaMlp(config));
  input_layernorm = register_module("input_layernorm", RmsNorm(config.hidden_size, config.rms_norm_eps));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RmsNorm(config.hidden_size, config.rms_norm_eps));
}

// ---------------------------------------------------------------------------
// LlamaImpl

LlamaImpl::LlamaImpl(const LlamaConfig& config) : config_(config) {
  config_.validate();
  head_dim_ = config_.resolved_head_dim();
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(config_.vocab_size, config_.hidden_size));
  layers_list = register_module("layers", torch::nn::ModuleList());
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    layers.push_back(LlamaDecoderLayer(config_));
    layers_list->push_back(layers.back());
  }
  norm = register_module("norm", RmsNorm(config_.hidden_size, config_.rms_norm_eps));
  if (!config_.tie_word_embeddings) {
    lm_head = register_module("lm_head", make_linear(config_.hidden_size, config_.vocab_size));
  }

  // Hugging Face's _init_weights: every Linear and the embedding ~ N(0, initializer_range)
  {
    at::NoGradGuard no_grad;
    for (auto& item : named_parameters(/*recurse=*/true)) {
      const std::string& name = item.key();
      if (name.find("layernorm") != std::string::npos || name.find("norm.weight") != std::string::npos) continue;
      if (name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0) {
        item.value().zero_();  // Hugging Face starts Linear biases at zero
        continue;
      }
      item.value().normal_(0.0, config_.initializer_range);
    }
  }

  // cos/sin tables once per model: per-token calls only index them
  const int64_t table = std::min(config_.max_position_embeddings, kRopeTableLimit);
  const at::Tensor angles =
      at::outer(at::arange(table, at::kLong).to(at::kFloat),
                rope_inverse_frequencies(head_dim_, config_.rope_theta, config_.rope_scaling));
  rope_cos_ = register_buffer("rope_cos", angles.cos());  // [P, Dh/2]
  rope_sin_ = register_buffer("rope_sin", angles.sin());  // [P, Dh/2]
}

const at::Tensor& LlamaImpl::output_weight() const {
  return config_.tie_word_embeddings ? embed_tokens->weight : lm_head->weight;
}

std::vector<std::pair<std::string, at::Tensor>> LlamaImpl::hf_named_parameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : named_parameters(/*recurse=*/true)) {
    const std::string& name = item.key();
    out.emplace_back(name.rfind("lm_head.", 0) == 0 ? name : "model." + name, item.value());
  }
  return out;
}

std::pair<at::Tensor, at::Tensor> LlamaImpl::rope(const at::Tensor& positions) const {
  TORCH_CHECK(positions.dim() == 1, "Llama::rope: positions must be [n], got ", positions.sizes());
  const int64_t table = rope_cos_.size(0);
  // bounds are checked on the host copy, so a device model syncs no more than the copy itself
  const at::Tensor pos_cpu = positions.to(at::kCPU, at::kLong).contiguous();  // [n]
  const int64_t n = pos_cpu.size(0);
  const int64_t* pos = pos_cpu.data_ptr<int64_t>();
  const int64_t lowest = n > 0 ? *std::min_element(pos, pos + n) : 0;
  const int64_t highest = n > 0 ? *std::max_element(pos, pos + n) : 0;
  TORCH_CHECK(lowest >= 0, "Llama::rope: negative position ", lowest);
  const at::Tensor pos_dev = pos_cpu.to(rope_cos_.device());
  if (highest < table) return {rope_cos_.index_select(0, pos_dev), rope_sin_.index_select(0, pos_dev)};  // [n, Dh/2]
  // beyond the table: the same float32 arithmetic, per call
  const at::Tensor angles =
      at::outer(pos_dev.to(at::kFloat),
                rope_inverse_frequencies(head_dim_, config_.rope_theta, config_.rope_scaling).to(pos_dev.device()));
  return {angles.cos().to(rope_cos_.scalar_type()), angles.sin().to(rope_sin_.scalar_type())};
}

at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  const at::Tensor x1 = x.narrow(-1, 0, half);     // [..., n, Dh/2]
  const at::Tensor x2 = x.narrow(-1, half, half);  // [..., n, Dh/2]
  // x * cat(cos, cos) + rotate_half(x) * cat(sin, sin), half by half
  return at::cat({x1 * cos - x2 * sin, x2 * cos + x1 * sin}, -1);  // [..., n, Dh]
}

at::Tensor LlamaImpl::embed(const at::Tensor& tokens) const {
  return at::embedding(embed_tokens->weight, tokens.to(embed_tokens->weight.device(), at::kLong));  // [..., D]
}

at::Tensor LlamaImpl::forward(const at::Tensor& tokens) const {
  TORCH_CHECK(tokens.dim() == 2, "Llama::forward: tokens must be [B, T], got ", tokens.sizes());
  return at::linear(forward_hidden(embed(tokens)), output_weight());  // [B, T, V]
}

at::Tensor LlamaImpl::forward_embeddings(const at::Tensor& embeds) const {
  return at::linear(forward_hidden(embeds), output_weight());  // [B, T, V]
}

at::Tensor LlamaImpl::forward_hidden(const at::Tensor& embeds) const {
  TORCH_CHECK(embeds.dim() == 3 && embeds.size(2) == config_.hidden_size, "Llama::forward_hidden: embeds must be [B, T, ",
              config_.hidden_size, "], got ", embeds.sizes());
  const at::Device device = embed_tokens->weight.device();
  const int64_t batch = embeds.size(0);
  const int64_t t = embeds.size(1);
  const int64_t hq = config_.num_attention_heads;
  const int64_t hkv = config_.num_key_value_heads;
  const int64_t group = hq / hkv;
  const int64_t dh = head_dim_;
  const double scale = 1.0 / std::sqrt(static_cast<double>(dh));

  at::Tensor x = embeds.to(device, embed_tokens->weight.scalar_type());  // [B, T, D]
  const auto [cos, sin] = rope(at::arange(t, at::kLong));                            // [T, Dh/2]
  const at::Tensor steps = at::arange(t, at::TensorOptions().dtype(at::kLong).device(device));  // [T]
  const double neg_inf = -std::numeric_limits<double>::infinity();

  for (const LlamaDecoderLayer& layer : layers) {
    const LlamaAttentionImpl& attn = *layer->self_attn;
    const at::Tensor h = layer->input_layernorm->forward(x);  // [B, T, D]
    auto [q, k] = attn.queries_keys(h, hq, hkv, dh);  // [B, T, Hq, Dh], [B, T, Hkv, Dh]
    q = q.transpose(1, 2);                             // [B, Hq, T, Dh]
    k = k.transpose(1, 2);                             // [B, Hkv, T, Dh]
    at::Tensor v = project(attn.v_proj, h).view({batch, t, hkv, dh}).transpose(1, 2);  // [B, Hkv, T, Dh]
    q = apply_rope(q, cos, sin) * scale;
    k = apply_rope(k, cos, sin);
    // query heads of one group share a KV head: fold them into the query
    // axis instead of copying K/V G times. Queries go in blocks that only
    // score the keys up to the block's end, which skips most of the masked
    // upper triangle (about half the time and autograd memory at long T).
    const at::Tensor q_groups = q.reshape({batch, hkv, group, t, dh});  // [B, Hkv, G, T, Dh]
    std::vector<at::Tensor> blocks;
    for (int64_t start = 0; start < t; start += kTrainQueryBlock) {
      const int64_t len = std::min(kTrainQueryBlock, t - start);
      const int64_t end = start + len;
      const at::Tensor q_block = q_groups.narrow(3, start, len).reshape({batch, hkv, group * len, dh});  // [B, Hkv, G*len, Dh]
      at::Tensor scores = at::matmul(q_block, k.narrow(2, 0, end).transpose(-1, -2));  // [B, Hkv, G*len, end]
      // true where the key comes after the query
      const at::Tensor future = steps.narrow(0, 0, end).unsqueeze(0) > steps.narrow(0, start, len).unsqueeze(1);  // [len, end]
      scores.view({batch, hkv, group, len, end}).masked_fill_(future, neg_inf);
      const at::Tensor probs = x.scalar_type() == at::kFloat
                                   ? at::softmax(scores, -1)
                                   : at::softmax(scores, -1, at::kFloat).to(x.scalar_type());  // [B, Hkv, G*len, end]
      blocks.push_back(at::matmul(probs, v.narrow(2, 0, end)).view({batch, hkv, group, len, dh}));
    }
    const at::Tensor context = (blocks.size() == 1 ? blocks.front() : at::cat(blocks, 3))  // [B, Hkv, G, T, Dh]
                                   .view({batch, hq, t, dh})
                                   .transpose(1, 2)
                                   .reshape({batch, t, hq * dh});  // [B, T, Hq*Dh]
    x = x + project(attn.o_proj, context);
    x = x + layer->mlp->forward(layer->post_attention_layernorm->forward(x));
  }
  return norm->forward(x);  // [B, T, D]
}

SequenceState LlamaImpl::new_state() const {
  KvCacheOptions options;
  options.num_heads = config_.num_key_value_heads;
  options.head_dim = head_dim_;
  options.dtype = embed_tokens->weight.scalar_type();
  options.device = embed_tokens->weight.device();
  return SequenceState::with_layers(config_.num_hidden_layers, options);
}

at::Tensor LlamaImpl::feed_layer(int64_t layer_index, const at::Tensor& x, const at::Tensor& positions,
                                 const at::Tensor& cos, const at::Tensor& sin, SequenceState& state,
                                 AttentionRecorder* recorder) const {
  const LlamaDecoderLayerImpl& layer = *layers[static_cast<size_t>(layer_index)];
  const LlamaAttentionImpl& attn = *layer.self_attn;
  const int64_t n = x.size(0);
  const int64_t hq = config_.num_attention_heads;
  const int64_t hkv = config_.num_key_value_heads;
  const int64_t dh = head_dim_;

  const at::Tensor h = layer.input_layernorm->forward(x);                                  // [n, D]
  auto [q, k] = attn.queries_keys(h, hq, hkv, dh);  // [n, Hq, Dh], [n, Hkv, Dh]
  q = q.transpose(0, 1);                             // [Hq, n, Dh]
  k = k.transpose(0, 1);                             // [Hkv, n, Dh]
  const at::Tensor v = project(attn.v_proj, h).view({n, hkv, dh}).transpose(0, 1);  // [Hkv, n, Dh]
  // keys are cached after RoPE, so a kept token keeps its own position
  q = apply_rope(q, cos, sin);
  k = apply_rope(k, cos, sin);
  const at::Tensor context = prunable_attention(q, k, v, positions, state.caches[static_cast<size_t>(layer_index)],
                                                recorder)          // [Hq, n, Dh]
                                 .transpose(0, 1)
                                 .reshape({n, hq * dh});            // [n, Hq*Dh]
  at::Tensor out = x + project(attn.o_proj, context);   // [n, D]
  out += layer.mlp->forward(layer.post_attention_layernorm->forward(out));
  return out;
}

at::Tensor LlamaImpl::forward_layers(SequenceState& state, const at::Tensor& embeddings, const at::Tensor& positions,
                                     const std::vector<AttentionRecorder*>& recorders) const {
  at::NoGradGuard no_grad;
  TORCH_CHECK(state.num_layers() == config_.num_hidden_layers, "Llama::forward_layers: state has ", state.num_layers(),
              " caches for ", config_.num_hidden_layers, " layers (use new_state())");
  TORCH_CHECK(recorders.empty() || static_cast<int64_t>(recorders.size()) == config_.num_hidden_layers,
              "Llama::forward_layers: ", recorders.size(), " recorders for ", config_.num_hidden_layers, " layers");
  const auto [cos, sin] = rope(positions);  // [n, Dh/2]
  at::Tensor x = embeddings.to(embed_tokens->weight.device(), embed_tokens->weight.scalar_type());  // [n, D]
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    x = feed_layer(l, x, positions, cos, sin, state, recorders.empty() ? nullptr : recorders[static_cast<size_t>(l)]);
  }
  return x;
}

at::Tensor LlamaImpl::logits(const at::Tensor& hidden) const {
  at::NoGradGuard no_grad;
  return at::linear(norm->forward(hidden), output_weight());  // [m, V]
}

at::Tensor LlamaImpl::feed(SequenceState& state, const at::Tensor& tokens, MemoryController* controller,
                           bool all_logits, const at::Tensor& positions) const {
  at::NoGradGuard no_grad;
  TORCH_CHECK(tokens.dim() == 1 && tokens.size(0) >= 1, "Llama::feed: tokens must be [n] with n >= 1, got ",
              tokens.sizes());
  return feed_hidden(state, embed(tokens), controller, all_logits, positions);
}

at::Tensor LlamaImpl::feed_embeddings(SequenceState& state, const at::Tensor& embeds, MemoryController* controller,
                                      bool all_logits, const at::Tensor& positions) const {
  at::NoGradGuard no_grad;
  TORCH_CHECK(embeds.dim() == 2 && embeds.size(0) >= 1 && embeds.size(1) == config_.hidden_size,
              "Llama::feed_embeddings: embeds must be [n, ", config_.hidden_size, "] with n >= 1, got ", embeds.sizes());
  return feed_hidden(state, embeds.to(embed_tokens->weight.device(), embed_tokens->weight.scalar_type()), controller,
                     all_logits, positions);
}

at::Tensor LlamaImpl::feed_hidden(SequenceState& state, const at::Tensor& embeds, MemoryController* controller,
                                  bool all_logits, const at::Tensor& positions) const {
  const int64_t n = embeds.size(0);
  at::Tensor x = feed_chunk(*this, state, embeds, controller, positions);  // [n, D]
  if (!all_logits) x = x.narrow(0, n - 1, 1);                            // [1, D]
  const at::Tensor out = logits(x);                                       // [n or 1, V]
  return all_logits ? out : out.squeeze(0);
}

}  // namespace namm
