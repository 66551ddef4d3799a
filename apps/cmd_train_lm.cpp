// `namm train-lm`: trains the language host from scratch on the synthetic
// long-context task suite (text/train_lm.h), resuming from the out
// directory's checkpoint when there is one; or, with --eval-only, evaluates
// the model already there.
#include "apps/options.h"
#include "apps/stop_signal.h"
#include "core/atomic_file.h"
#include "text/llama_checkpoint.h"
#include "text/tasks.h"
#include "text/tokenizer.h"
#include "text/train_lm.h"

#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <iostream>
#include <sstream>

namespace namm::app {
namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw UsageError(message);
}

}  // namespace

int run_train_lm(const std::vector<std::string>& args) {
  TrainLmOptions o;
  std::string tasks_text = "all", lengths_text = "1024,2048,4096";
  int64_t seed = 0;
  po::options_description options("options");
  // clang-format off
  options.add_options()
      ("out", po::value(&o.out_dir)->required(), "out directory: model, checkpoint, logs, evaluation (resumes from it); a folder that holds a model but no trainer state is refused")
      ("force", po::bool_switch(&o.force), "start afresh in --out even when it holds a model but no trainer state (replaces it)")
      ("steps", po::value(&o.steps)->default_value(o.steps), "optimizer steps of the whole run")
      ("init-from", po::value(&o.init_from), "start from this Llama checkpoint directory's weights (e.g. a first stage); model-shape options not given are taken from its config.json; a larger --layers grows it (new layers start as identity blocks)")
      ("follow-ups", po::value(&o.follow_ups)->default_value(o.follow_ups), "extra questions about each training context (0-64)")
      ("batch-tokens", po::value(&o.batch_tokens)->default_value(o.batch_tokens), "tokens per step (batch_tokens / context sequences)")
      ("min-context", po::value(&o.min_context)->default_value(o.min_context), "prompt tokens at the start of the curriculum")
      ("max-context", po::value(&o.max_context)->default_value(o.max_context), "prompt tokens at the end of the curriculum")
      ("long-fraction", po::value(&o.long_fraction)->default_value(o.long_fraction), "share of steps with prompts between the current length and --long-context")
      ("long-context", po::value(&o.long_context)->default_value(o.long_context), "longest prompts of the occasional long steps")
      ("tasks", po::value(&tasks_text)->default_value(tasks_text), "comma-separated task names, or all (the evaluated suite); a task named twice is drawn twice as often; variable_lookup is a training-only bridge to variable_tracking (models/lm/README.md); needle_boilerplate and kv_repeated are the redundant-context tasks")
      ("lr", po::value(&o.lr)->default_value(o.lr), "peak AdamW learning rate")
      ("min-lr-ratio", po::value(&o.min_lr_ratio)->default_value(o.min_lr_ratio), "cosine floor as a fraction of --lr")
      ("warmup", po::value(&o.warmup_steps)->default_value(o.warmup_steps), "linear warm-up steps")
      ("weight-decay", po::value(&o.weight_decay)->default_value(o.weight_decay), "AdamW weight decay on matrices")
      ("grad-clip", po::value(&o.grad_clip)->default_value(o.grad_clip), "max global gradient norm (0: off)")
      ("context-loss-weight", po::value(&o.context_loss_weight)->default_value(o.context_loss_weight), "weight of the next-token loss on prompt tokens")
      ("seed", po::value(&seed)->default_value(seed), "seed of the weights and the data")
      ("threads", po::value(&o.threads)->default_value(o.threads), "torch threads")
      ("layers", po::value(&o.layers)->default_value(o.layers), "decoder layers")
      ("hidden", po::value(&o.hidden)->default_value(o.hidden), "hidden width")
      ("heads", po::value(&o.heads)->default_value(o.heads), "query heads")
      ("kv-heads", po::value(&o.kv_heads)->default_value(o.kv_heads), "KV heads (fewer than --heads: grouped-query attention)")
      ("intermediate", po::value(&o.intermediate)->default_value(o.intermediate), "SwiGLU width")
      ("rope-theta", po::value(&o.rope_theta)->default_value(o.rope_theta), "RoPE base")
      ("max-positions", po::value(&o.max_positions)->default_value(o.max_positions), "max_position_embeddings")
      ("log-every", po::value(&o.log_every)->default_value(o.log_every), "steps per progress line")
      ("checkpoint-every", po::value(&o.checkpoint_every)->default_value(o.checkpoint_every), "steps per checkpoint")
      ("eval-every", po::value(&o.eval_every)->default_value(o.eval_every), "steps per evaluation during training (0: only at the end)")
      ("eval-examples", po::value(&o.eval_examples)->default_value(o.eval_examples), "validation examples per task and length")
      ("eval-lengths", po::value(&lengths_text)->default_value(lengths_text), "comma-separated prompt lengths of the evaluation")
      ("no-eval", "skip the evaluation at the end")
      ("eval-only", "evaluate the model in --out and exit");
  // clang-format on
  po::variables_map vm;
  if (!parse_options("train-lm", "--out DIR [--steps N] [--eval-only] ...", options, args, vm)) return 0;

  // a later stage is the same model: shape options left unset come from
  // the checkpoint it starts from, so only what changes needs repeating
  if (!o.init_from.empty()) {
    const LlamaConfig start = read_llama_config((std::filesystem::path(o.init_from) / "config.json").string());
    const auto unset = [&vm](const char* name) { return vm[name].defaulted(); };
    if (unset("layers")) o.layers = start.num_hidden_layers;
    if (unset("hidden")) o.hidden = start.hidden_size;
    if (unset("heads")) o.heads = start.num_attention_heads;
    if (unset("kv-heads")) o.kv_heads = start.num_key_value_heads;
    if (unset("intermediate")) o.intermediate = start.intermediate_size;
    if (unset("rope-theta")) o.rope_theta = start.rope_theta;
    if (unset("max-positions")) o.max_positions = start.max_position_embeddings;
  }
  require(seed >= 0, "--seed must be >= 0, got " + std::to_string(seed));
  o.seed = static_cast<uint64_t>(seed);
  if (tasks_text != "all") {
    o.tasks = split_list(tasks_text);
    require(!o.tasks.empty(), "--tasks is empty");
    for (const std::string& task : o.tasks) {
      const auto& known = training_task_names();
      if (std::find(known.begin(), known.end(), task) == known.end()) {
        std::string names;
        for (const std::string& k : known) names += (names.empty() ? "" : ", ") + k;
        throw UsageError("--tasks: unknown task '" + task + "' (known: " + names + ")");
      }
    }
  }
  o.eval_lengths.clear();
  for (const std::string& item : split_list(lengths_text)) {
    size_t used = 0;
    int64_t length = -1;
    try {
      length = std::stoll(item, &used);
    } catch (const std::exception&) {
    }
    require(used == item.size() && length >= 96, "--eval-lengths: bad length '" + item + "' (integers >= 96)");
    o.eval_lengths.push_back(length);
  }
  require(o.steps >= 1, "--steps must be >= 1, got " + std::to_string(o.steps));
  require(o.batch_tokens >= 1, "--batch-tokens must be >= 1, got " + std::to_string(o.batch_tokens));
  require(o.lr > 0, "--lr must be > 0, got " + std::to_string(o.lr));
  require(o.threads >= 1, "--threads must be >= 1, got " + std::to_string(o.threads));
  require(o.max_context >= o.min_context, "--max-context " + std::to_string(o.max_context) +
                                              " is below --min-context " + std::to_string(o.min_context));
  o.command_line = command_line("train-lm", args);
  try {
    o.validate();
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }

  if (vm.count("eval-only")) {
    at::set_num_threads(o.threads);
    const LlamaCheckpoint checkpoint = load_llama_checkpoint(o.out_dir);
    const std::string tokenizer_path = (std::filesystem::path(o.out_dir) / "tokenizer.json").string();
    if (std::filesystem::exists(tokenizer_path))
      builtin_tokenizer().check_same_vocabulary(Tokenizer::load(tokenizer_path));
    EvalReport report = evaluate_lm(checkpoint.model, o.distinct_tasks(), o.eval_lengths, o.eval_examples);
    const auto step = checkpoint.metadata.find("namm.step");
    if (step != checkpoint.metadata.end()) report.step = std::stoll(step->second);
    write_file_atomically((std::filesystem::path(o.out_dir) / "eval.json").string(), report.to_json() + "\n");
    write_file_atomically((std::filesystem::path(o.out_dir) / "eval.md").string(), report.to_markdown());
    std::cout << report.to_markdown();
    return 0;
  }

  Trainer trainer(o, &std::cout);
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
  if (!vm.count("no-eval") && o.eval_examples > 0) {
    const EvalReport report = trainer.evaluate_and_record();
    std::cout << report.to_markdown();
  }
  return 0;
}

}  // namespace namm::app
