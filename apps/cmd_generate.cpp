// `namm generate`: your own text through any supported model with a memory
// policy pruning its KV cache; the generated text streams to standard output
// as it is produced, progress and the closing figures go to standard error
// (and --stats-json).
#include "adapters/memory_controller.h"
#include "apps/model_text_input.h"
#include "apps/options.h"
#include "core/atomic_file.h"
#include "core/namm_model.h"
#include "text/generation.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>

namespace namm::app {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Prints the decoded continuation as it grows: decodes everything generated
// so far and writes what is new, holding back a trailing U+FFFD (a character
// whose bytes are split over tokens not all generated yet).
class StreamPrinter {
 public:
  explicit StreamPrinter(const TextTokenizer& tokenizer) : tokenizer_(tokenizer) {}
  void add(int64_t token) {
    ids_.push_back(token);
    std::string text = tokenizer_.decode(ids_, /*skip_special_tokens=*/true);
    const std::string replacement = "\xEF\xBF\xBD";
    if (text.size() >= replacement.size() && text.compare(text.size() - 3, 3, replacement) == 0) return;
    if (text.size() > printed_ && text.compare(0, printed_, printed_text_) == 0) {
      std::cout << text.substr(printed_) << std::flush;
    } else if (text != printed_text_) {
      // a decoder that rewrites earlier text (rare): print the whole new tail
      std::cout << text.substr(std::min(printed_, text.size())) << std::flush;
    }
    printed_text_ = text;
    printed_ = text.size();
  }
  void finish() {
    const std::string text = tokenizer_.decode(ids_, true);
    if (text.size() > printed_) std::cout << text.substr(printed_);
    std::cout << std::endl;
  }

 private:
  const TextTokenizer& tokenizer_;
  std::vector<int64_t> ids_;
  std::string printed_text_;
  std::size_t printed_ = 0;
};

}  // namespace

int run_generate(const std::vector<std::string>& args) {
  std::string model_dir, prompt_file, memory = "full", budget_text = "25%", namm_path = "models/namm.safetensors",
                                      stats_path, dtype_text = "float32";
  int64_t max_new_tokens = 128, seed = 0, top_k = 0, delay = 0, chunk = 128;
  double temperature = 0.0;
  int threads = 2;
  PolicySpec tuning;
  po::options_description options("options");
  // clang-format off
  options.add_options()
      ("model", po::value(&model_dir)->required(), "model directory: config.json, safetensors weights, tokenizer.json (any Llama, Mistral, Qwen2 or Qwen3 layout, or models/lm)")
      ("prompt-file", po::value(&prompt_file)->required(), "UTF-8 prompt ('-': standard input)")
      ("memory", po::value(&memory)->default_value(memory), ("memory policy: " + policy_choices()).c_str())
      ("budget", po::value(&budget_text)->default_value(budget_text), "KV budget per head for the baselines: tokens (\"512\") or a share of the tokens so far (\"25%\")")
      ("namm", po::value(&namm_path)->default_value(namm_path), "NAMM checkpoint for --memory namm")
      ("delay", po::value(&delay)->default_value(delay), "tokens between memory updates (0: the NAMM's own, else 512)")
      ("max-new-tokens", po::value(&max_new_tokens)->default_value(max_new_tokens), "most tokens generated")
      ("temperature", po::value(&temperature)->default_value(temperature), "0: greedy; else sample softmax(logits / T)")
      ("top-k", po::value(&top_k)->default_value(top_k), "sample among the k likeliest tokens (0: all)")
      ("seed", po::value(&seed)->default_value(seed), "seed of the sampling and of the random policy")
      ("no-special-tokens", "tokenise the prompt without the tokens the model expects around a sequence")
      ("dtype", po::value(&dtype_text)->default_value(dtype_text), "compute in float32, bfloat16 or float16")
      ("chunk", po::value(&chunk)->default_value(chunk), "most prompt tokens fed at once")
      ("stats-json", po::value(&stats_path), "also write the closing figures here (JSON)")
      ("threads", po::value(&threads)->default_value(threads), "torch threads");
  // clang-format on
  add_policy_tuning_options(options, tuning);
  po::variables_map vm;
  if (!parse_options("generate", "--model DIR --prompt-file F [--memory POLICY --budget B --namm FILE] [--max-new-tokens N] [--temperature T --seed S] [--stats-json F]",
                     options, args, vm))
    return 0;
  const auto output_locks = claim_outputs({{"--stats-json", stats_path}});
  check_policy_name(memory);
  check_policy_tuning(tuning);
  if (max_new_tokens < 1 || max_new_tokens > 1'000'000)
    throw UsageError("--max-new-tokens must be in [1, 1000000], got " + std::to_string(max_new_tokens));
  if (!(temperature >= 0)) throw UsageError("--temperature must be >= 0");
  if (top_k < 0) throw UsageError("--top-k must be >= 0, got " + std::to_string(top_k));
  if (seed < 0) throw UsageError("--seed must be >= 0, got " + std::to_string(seed));
  if (delay < 0) throw UsageError("--delay must be >= 0, got " + std::to_string(delay));
  if (chunk < 1 || chunk > 65536) throw UsageError("--chunk must be in [1, 65536], got " + std::to_string(chunk));
  if (threads < 1) throw UsageError("--threads must be >= 1, got " + std::to_string(threads));
  const c10::ScalarType dtype = parse_dtype_option(dtype_text);

  PolicySpec policy = tuning;
  policy.name = memory;
  policy.seed = static_cast<uint64_t>(seed);
  try {
    policy.budget = Budget::parse(budget_text);
  } catch (const std::exception& e) {
    throw UsageError(std::string("--budget: ") + e.what());
  }
  if (memory == "namm") {
    if (!std::filesystem::exists(namm_path))
      throw UsageError("--namm " + namm_path + ": no such file (evolve one with `namm evolve`, or choose another --memory)");
    policy.namm_model = std::make_shared<const NammModel>(NammModel::load(namm_path));
  }
  const int64_t update_every = delay > 0 ? delay : policy.namm_model ? policy.namm_model->config.delay : 512;
  if (policy.namm_model && update_every % policy.namm_model->config.spectrogram.hop != 0)
    throw UsageError("--delay must be a multiple of the NAMM's hop (" +
                     std::to_string(policy.namm_model->config.spectrogram.hop) + "), got " + std::to_string(update_every));

  const ModelForText model = ModelForText::open(model_dir);
  const std::vector<int64_t> prompt = read_text_tokens(model, prompt_file, !vm.count("no-special-tokens"));
  at::set_num_threads(threads);
  const LlamaCheckpoint checkpoint = model.load(dtype);

  std::unique_ptr<MemoryController> controller;
  if (memory != "full") {
    ControllerOptions controller_options;
    controller_options.delay = update_every;
    controller_options.record_statistics = true;  // the peak of the cache is read from them
    controller = std::make_unique<MemoryController>(make_policy(policy), static_cast<int>(checkpoint.config.num_hidden_layers),
                                                    controller_options);
  }

  GenerationOptions generation;
  generation.max_new_tokens = max_new_tokens;
  generation.temperature = temperature;
  generation.top_k = top_k;
  generation.seed = static_cast<uint64_t>(seed);
  generation.stop_token_ids = model.end_ids;
  generation.prompt_chunk = chunk;
  StreamPrinter printer(model.tokenizer);
  generation.on_token = [&](int64_t token) { printer.add(token); };
  const auto start = std::chrono::steady_clock::now();
  const int64_t total = static_cast<int64_t>(prompt.size());
  generation.on_prefill = [&](int64_t fed, int64_t all) {
    if (all <= generation.progress_every) return;
    std::cerr << "  prompt " << fed << "/" << all << " tokens, " << static_cast<int64_t>(fed / std::max(seconds_since(start), 1e-9))
              << " tokens/s" << std::endl;
  };
  std::cerr << "prompt: " << total << " tokens; memory: " << memory
            << (memory != "full" && memory != "namm" ? " at budget " + policy.budget.to_string() : "")
            << (memory != "full" ? ", update every " + std::to_string(update_every) + " tokens" : "") << std::endl;
  const GenerationResult result = generate(*checkpoint.model, at::tensor(prompt, at::kLong), generation, controller.get());
  printer.finish();

  // K/V bytes per cached token and KV head; the peak is the most tokens held
  // at once: just before an update's eviction, or at the end
  const double bytes_per_token = 2.0 * static_cast<double>(checkpoint.config.resolved_head_dim()) *
                                 static_cast<double>(c10::elementSize(dtype));
  double peak_tokens = 0;
  for (double t : result.cached_tokens_per_layer) peak_tokens += t * static_cast<double>(checkpoint.config.num_key_value_heads);
  if (controller) {
    std::map<int64_t, double> held_before;  // update -> tokens over every layer and head
    for (const UpdateHeadStats& s : controller->statistics()) held_before[s.update] += static_cast<double>(s.tokens_before);
    for (const auto& [update, tokens] : held_before) peak_tokens = std::max(peak_tokens, tokens);
  }
  const int64_t generated = static_cast<int64_t>(result.tokens.size());
  const double prefill_rate = result.prompt_tokens / std::max(result.prefill_seconds, 1e-9);
  const double decode_rate = generated > 1 ? (generated - 1) / std::max(result.decode_seconds, 1e-9) : 0.0;
  std::cerr << "prompt " << result.prompt_tokens << " tokens, generated " << generated << (result.stopped ? " (stopped at an end token)" : "")
            << "; prefill " << static_cast<int64_t>(prefill_rate) << " tokens/s, decode " << decode_rate << " tokens/s\n"
            << "KV kept per layer (tokens, mean over KV heads):";
  for (double t : result.cached_tokens_per_layer) std::cerr << " " << static_cast<int64_t>(t + 0.5);
  std::cerr << " of " << result.prompt_tokens + generated - 1 << "; peak KV " << static_cast<int64_t>(peak_tokens * bytes_per_token)
            << " bytes; " << result.policy_updates << " memory updates" << std::endl;

  if (!stats_path.empty()) {
    nlohmann::json stats = {
        {"model", model_dir},
        {"memory", memory},
        {"budget", memory != "full" && memory != "namm" ? policy.budget.to_string() : "-"},
        {"update_every", memory != "full" ? update_every : 0},
        {"prompt_tokens", result.prompt_tokens},
        {"generated_tokens", generated},
        {"stopped_at_end_token", result.stopped},
        {"prefill_seconds", result.prefill_seconds},
        {"decode_seconds", result.decode_seconds},
        {"prefill_tokens_per_second", prefill_rate},
        {"decode_tokens_per_second", decode_rate},
        {"kv_tokens_per_layer", result.cached_tokens_per_layer},
        {"kv_bytes_end", result.cache_used_bytes},
        {"peak_kv_bytes", static_cast<int64_t>(peak_tokens * bytes_per_token)},
        {"memory_updates", result.policy_updates},
        {"generated_ids", result.tokens},
    };
    write_file_atomically(stats_path, stats.dump(2) + "\n");
  }
  return 0;
}

}  // namespace namm::app
