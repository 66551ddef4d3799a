// `namm train-dt`: trains a Decision Transformer on an offline dataset
// (rl/train_dt.h), resuming from the out directory's checkpoint when there is one.
#include "apps/options.h"
#include "apps/stop_signal.h"
#include "rl/train_dt.h"

#include <filesystem>
#include <iostream>

namespace namm::app {
int run_train_dt(const std::vector<std::string>& args) {
  TrainDtOptions o;
  int64_t seed = 0;
  po::options_description options("options");
  // clang-format off
  options.add_options()
      ("data", po::value(&o.data_path)->required(), "offline dataset (.safetensors, as `namm gen-data` writes)")
      ("out", po::value(&o.out_dir)->required(), "out directory: model (Hugging Face layout), sidecar, checkpoint, logs (resumes from it); a folder that holds a model but no trainer state is refused")
      ("force", po::bool_switch(&o.force), "start afresh in --out even when it holds a model but no trainer state (replaces it)")
      ("context", po::value(&o.context)->default_value(o.context), "K, timesteps per training window (3K tokens)")
      ("steps", po::value(&o.steps)->default_value(o.steps), "optimizer steps of the whole run")
      ("batch", po::value(&o.batch_size)->default_value(o.batch_size), "windows per step")
      ("hidden", po::value(&o.hidden)->default_value(o.hidden), "hidden width")
      ("layers", po::value(&o.layers)->default_value(o.layers), "GPT-2 blocks")
      ("heads", po::value(&o.heads)->default_value(o.heads), "attention heads")
      ("inner", po::value(&o.inner)->default_value(o.inner), "MLP width (0: 4 x hidden)")
      ("activation", po::value(&o.activation)->default_value(o.activation), "MLP activation (relu, gelu, gelu_new, silu, tanh, ...)")
      ("dropout", po::value(&o.dropout)->default_value(o.dropout), "residual, embedding and attention dropout")
      ("max-ep-len", po::value(&o.max_ep_len)->default_value(o.max_ep_len), "timestep embedding rows")
      ("lr", po::value(&o.lr)->default_value(o.lr), "peak AdamW learning rate")
      ("weight-decay", po::value(&o.weight_decay)->default_value(o.weight_decay), "AdamW weight decay (every parameter)")
      ("warmup", po::value(&o.warmup_steps)->default_value(o.warmup_steps), "linear warm-up steps")
      ("schedule", po::value(&o.schedule)->default_value(o.schedule), "after warm-up: constant | linear | cosine")
      ("min-lr-ratio", po::value(&o.min_lr_ratio)->default_value(o.min_lr_ratio), "floor of the linear / cosine decay, as a fraction of --lr")
      ("grad-clip", po::value(&o.grad_clip)->default_value(o.grad_clip), "max global gradient norm (0: off)")
      ("return-scale", po::value(&o.return_scale)->default_value(o.return_scale), "returns-to-go are divided by it")
      ("target-return", po::value(&o.target_return)->default_value(o.target_return), "conditioning return of evaluations and the sidecar (0: hopper 3600, walker2d 5000)")
      ("seed", po::value(&seed)->default_value(seed), "seed of the weights, windows and dropout")
      ("threads", po::value(&o.threads)->default_value(o.threads), "torch threads")
      ("log-every", po::value(&o.log_every)->default_value(o.log_every), "steps per progress line")
      ("checkpoint-every", po::value(&o.checkpoint_every)->default_value(o.checkpoint_every), "steps per checkpoint")
      ("eval-every", po::value(&o.eval_every)->default_value(o.eval_every), "steps per evaluation rollout during training (0: only at the end)")
      ("eval-episodes", po::value(&o.eval_episodes)->default_value(o.eval_episodes), "episodes per evaluation, window and full-cache modes (0: none)")
      ("eval-max-steps", po::value(&o.eval_max_steps)->default_value(o.eval_max_steps), "step limit of evaluation episodes");
  // clang-format on
  po::variables_map vm;
  if (!parse_options("train-dt", "--data FILE.safetensors --out DIR [--context K] [--steps N] ...", options, args, vm)) {
    return 0;
  }
  if (seed < 0) throw UsageError("--seed must be >= 0, got " + std::to_string(seed));
  o.seed = static_cast<uint64_t>(seed);
  if (!std::filesystem::exists(o.data_path)) throw UsageError("--data " + o.data_path + ": no such file");
  o.command_line = command_line("train-dt", args);
  try {
    o.validate();
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }

  DtTrainer trainer(o, &std::cout);
  int64_t reached = 0;
  {
    const StopSignal stop;
    reached = trainer.train([&stop] { return stop.requested(); });
  }
  if (reached < o.steps) {
    std::cout << "stopped at step " << reached << "/" << o.steps << "; checkpoint in " << o.out_dir
              << "; run the same command to resume\n";
    return 130;
  }
  std::cout << "model in " << o.out_dir << " (config.json, model.safetensors, dt_sidecar.json, provenance.json)\n";
  return 0;
}

}  // namespace namm::app
