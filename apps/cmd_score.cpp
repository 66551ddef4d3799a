// `namm score`: a NAMM's score for every cached token of an attention stack,
// as one update of one layer from an empty state.
#include "apps/attention_input.h"
#include "apps/options.h"
#include "core/namm_model.h"
#include "core/namm_policy.h"
#include "core/npy.h"

#include <ATen/ATen.h>

namespace namm::app {

int run_score(const std::vector<std::string>& args) {
  std::string attention_path, model_path, out_path;
  po::options_description options("options");
  options.add_options()
      ("attention", po::value(&attention_path)->required(), "float32 .npy [heads, queries, keys]; queries a multiple of the model's hop; the last `queries` keys are the new tokens, positions are 0..keys-1")
      ("model", po::value(&model_path)->required(), "NAMM checkpoint (.safetensors)")
      ("out", po::value(&out_path)->required(), "output .npy: float32 scores [heads, keys]; >= 0 means kept");
  po::variables_map vm;
  if (!parse_options("score", "--attention A.npy --model M.safetensors --out S.npy", options, args, vm)) return 0;
  const auto output_locks = claim_outputs({{"--out", out_path}});

  // the model is loaded first: a bad checkpoint is reported before any work.
  NammModel model = NammModel::load(model_path);
  model.normalizer.freeze();  // score with the stored statistics, never learn from this input
  const int64_t hop = model.config.spectrogram.hop;

  const at::Tensor attention = read_attention_stack(attention_path, hop);  // [H, Q, K]
  const int64_t heads = attention.size(0), queries = attention.size(1), keys = attention.size(2);

  NammPolicy policy(std::make_shared<const NammModel>(std::move(model)));
  LayerObservation observation;
  observation.layer = 0;
  observation.num_new_tokens = queries;
  observation.tokens_seen = keys;
  const at::Tensor positions = at::arange(keys, at::kLong);
  for (int64_t h = 0; h < heads; ++h) {
    observation.heads.push_back(HeadObservation{attention[h].contiguous(), positions, at::Tensor()});
  }
  const LayerDecision decision = policy.update(observation);
  std::vector<at::Tensor> scores;
  for (const HeadDecision& head : decision.heads) scores.push_back(head.scores);
  write_npy(out_path, at::stack(scores).contiguous());  // [H, K]
  return 0;
}

}  // namespace namm::app
