#include "apps/demo_language.h"

#include "adapters/memory_controller.h"
#include "core/namm_model.h"
#include "core/namm_policy.h"
#include "core/policy_registry.h"
#include "text/tasks.h"
#include "text/text_eval.h"
#include "text/tokenizer.h"

#include <ATen/ATen.h>

#include <cstdio>
#include <filesystem>
#include <memory>

namespace namm::app {
namespace {

// Test-split prompts of three tasks, the first example of each: no picking.
// The tasks and length are where the shipped host answers with the full
// cache (models/lm/README.md: 63-100% at 1,024 tokens), so what the NAMM
// keeps decides the answer.
struct DemoPrompt {
  const char* task;
  int64_t tokens;
};
constexpr DemoPrompt kPrompts[] = {{"needle", 1024}, {"kv_retrieval", 1024}, {"kv_update", 1024}};

struct Answer {
  ExampleOutcome outcome;
  std::vector<double> kept_per_layer;  // mean fraction kept at updates, per layer
};

Answer answer(const Llama& model, const TaskExample& example, std::unique_ptr<MemoryPolicy> policy,
              const AnswerOptions& options) {
  const int layers = static_cast<int>(model->config().num_hidden_layers);
  ControllerOptions controller_options;
  controller_options.delay = options.delay;
  controller_options.record_statistics = false;
  MemoryController controller(std::move(policy), layers, controller_options);
  Answer out;
  out.outcome = answer_with_controller(*model, example, controller, options);
  for (int l = 0; l < layers; ++l) out.kept_per_layer.push_back(controller.mean_retained_fraction(l));
  return out;
}

}  // namespace

bool demo_language(const std::string& lm_dir, const std::string& namm_path, int threads) {
  namespace fs = std::filesystem;
  std::printf("\nLanguage: long test prompts answered by the shipped host\n");
  if (!fs::exists(fs::path(lm_dir) / "config.json")) {
    std::printf("  not available: no language host in %s (train one with `namm train-lm --out %s`)\n",
                lm_dir.c_str(), lm_dir.c_str());
    return false;
  }
  at::set_num_threads(threads);
  const Llama model = load_task_model(lm_dir);
  std::shared_ptr<const NammModel> namm;
  if (fs::exists(namm_path)) namm = std::make_shared<const NammModel>(NammModel::load(namm_path));
  std::printf("  host: %s (%s)\n", lm_dir.c_str(), model->config().summary().c_str());
  std::printf("  NAMM: %s\n", namm ? namm_path.c_str() : (namm_path + " missing: full cache only").c_str());

  AnswerOptions options;
  if (namm) options.delay = namm->config.delay;
  const Tokenizer& tokenizer = builtin_tokenizer();
  for (const DemoPrompt& prompt : kPrompts) {
    const TaskExample example = make_example(prompt.task, Split::kTest, 0, prompt.tokens);
    const std::vector<int64_t> question(example.prompt.begin() + example.question_begin, example.prompt.end());
    std::printf("\n  %s, %lld-token prompt: %s  (expected: %s)\n", prompt.task,
                static_cast<long long>(prompt.tokens), tokenizer.decode(question).c_str(),
                example.answer_text.c_str());
    std::vector<std::pair<std::string, Answer>> runs;
    runs.emplace_back("full", answer(model, example, make_policy(PolicySpec{}), options));
    if (namm) runs.emplace_back("namm", answer(model, example, std::make_unique<NammPolicy>(namm), options));
    for (const auto& [name, run] : runs) {
      std::printf("    %-5s answer %-14s %-5s KV kept %5.1f%%  end cache %5.1f%%  %.2fs   kept per layer:", name.c_str(),
                  ("'" + tokenizer.decode(run.outcome.prediction) + "'").c_str(),
                  run.outcome.score >= 1.0 ? "right" : (run.outcome.score > 0 ? "part" : "wrong"),
                  100.0 * run.outcome.retained_fraction, 100.0 * run.outcome.final_cache_fraction,
                  run.outcome.seconds);
      for (double kept : run.kept_per_layer) std::printf(" %3.0f%%", 100.0 * kept);
      std::printf("\n");
    }
  }
  std::printf("\n  KV kept: mean fraction of the cache kept at each NAMM update; end cache: tokens cached after the\n"
              "  answer / tokens seen. `namm eval-text` compares every policy on the whole test split.\n");
  return true;
}

}  // namespace namm::app
