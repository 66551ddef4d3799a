// Decision Transformer checkpoints in Hugging Face's DecisionTransformerModel
// layout: a directory with config.json (state_dim, act_dim, hidden_size,
// max_ep_len, n_layer, n_head, n_inner, activation_function, n_positions,
// ...) and model.safetensors with the names transformers writes
// (embed_timestep.weight, embed_return.weight, ..., encoder.wte.weight,
// encoder.wpe.weight, encoder.h.{i}.attn.c_attn.weight [D, 3D] (GPT-2 Conv1D:
// [in, out]), ..., encoder.ln_f.*, predict_state.*, predict_action.0.*,
// predict_return.*). Older GPT-2 mask buffers (attn.bias, attn.masked_bias)
// are skipped; any other unknown tensor, a missing one or a wrong shape is a
// one-line error naming the file and the tensor. Hugging Face's hub
// checkpoints that exist only as pytorch_model.bin (a pickle) are not read.
//
// Our own sidecar, dt_sidecar.json next to the weights, carries what the
// Hugging Face layout leaves to the model card: state mean/std, the return
// scale, the default target return, the environment, the training context
// and a provenance record. A checkpoint without it loads with identity
// normalisation (has_sidecar false); a user bringing a hub model can write
// the model card's numbers into such a file.
//
// Not here: the model (decision_transformer.h), the safetensors format (core/safetensors.h).
#pragma once

#include "rl/decision_transformer.h"

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <map>
#include <string>
#include <vector>

namespace namm {

/// What the Hugging Face layout leaves out: how to feed the model.
struct DtSidecar {
  std::string env;                 ///< "hopper" or "walker2d"; empty = not recorded.
  std::vector<double> state_mean;  ///< [O] subtracted from raw observations; empty = zeros.
  std::vector<double> state_std;   ///< [O] divides them (after the mean); empty = ones.
  double return_scale = 1000.0;    ///< returns-to-go fed to the model are raw returns / return_scale.
  double target_return = 0.0;      ///< default conditioning return (raw units); 0 = the env's default_target_return.
  int64_t context = 20;            ///< K, the window the model was trained on (the sliding baseline's default).
  std::string provenance_json = "{}";  ///< how the model was made (command, seed, commit, data, metrics).

  /// Throws std::runtime_error("<source>: ...") for a bad value or a size other than state_dim.
  void validate(int64_t state_dim, const std::string& source) const;
  /// (observations - mean) / std for observations [..., O] (float32 on their device).
  at::Tensor normalize(const at::Tensor& observations) const;
  /// The JSON text of every field (provenance nested as an object).
  std::string to_json() const;
  /// Parses to_json's output; missing fields keep their defaults. Throws naming source.
  static DtSidecar from_json(const std::string& text, const std::string& source);
};

/// The usual conditioning return of an environment: hopper 3600, walker2d 5000 (DT paper); throws for others.
double default_target_return(const std::string& env);

/// A loaded checkpoint.
struct DtCheckpoint {
  DtConfig config;
  DecisionTransformer model{nullptr};
  DtSidecar sidecar;
  bool has_sidecar = false;                      ///< whether dt_sidecar.json was there.
  std::map<std::string, std::string> metadata;  ///< "__metadata__" of model.safetensors.
};

/// Parses a Hugging Face DecisionTransformerConfig config.json (text; path names it in messages).
/// Required: state_dim, act_dim, hidden_size; others default as Hugging Face's.
/// Refuses add_cross_attention and model types other than decision_transformer.
DtConfig parse_dt_config(const std::string& json_text, const std::string& path = "config.json");

/// The config.json text for config (DecisionTransformerModel, float32).
std::string dt_config_json(const DtConfig& config);

/// Copies model.safetensors at path into model (shapes must match its config); returns the metadata.
std::map<std::string, std::string> load_dt_weights(const std::string& path, DecisionTransformer& model);

/// Loads directory dir (config.json, model.safetensors, optional dt_sidecar.json) onto device.
/// Throws std::runtime_error naming the file (and the tensor or field).
DtCheckpoint load_dt_checkpoint(const std::string& dir, c10::Device device = c10::kCPU);

/// Writes dir/model.safetensors (float32, metadata plus "format": "pt"), dir/config.json and
/// dir/dt_sidecar.json, each atomically; creates dir.
void save_dt_checkpoint(const std::string& dir, const DecisionTransformer& model, const DtSidecar& sidecar,
                        const std::map<std::string, std::string>& metadata = {});

}  // namespace namm
