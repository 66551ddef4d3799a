// `namm evolve`: evolves a NAMM with CMA-ES on the language tasks in
// incremental stages, checkpointing every generation; run it again with the
// same options to resume. Ctrl-C or SIGTERM drops the generation under way and
// keeps the last checkpoint (a second one kills at once; checkpoints are atomic).
#include "apps/options.h"
#include "core/atomic_file.h"
#include "core/run_lock.h"
#include "apps/stop_signal.h"
#include "core/cluster.h"
#include "core/run_record.h"
#include "text/evolution.h"
#include "text/text_eval.h"

#include <ATen/Parallel.h>

#include <cstdio>
#include <iostream>
#include <memory>

namespace namm::app {
int evolve_on_rank_zero(EvolutionOptions& evolution, const std::string& lm_dir, const std::string& out_path,
                        Cluster& cluster);

int run_evolve(const std::vector<std::string>& args) {
  std::string lm_dir, out_path, checkpoint_dir, log_path;
  std::vector<std::string> stage_texts;
  std::vector<int64_t> contexts;
  int64_t generations = 10, population = 32, prompts = 8, delay = 512, chunk = 128, answer_tokens = kMaxAnswerTokens, stop_after = 0;
  double sigma = 0.065;
  uint64_t seed = 0;
  int threads = 2;
  bool no_share = false;
  std::string cluster_kind = "auto";
  std::string scaling_text = "frozen_stats";
  int64_t screen_draws = 0;
  double kv_target = 1.0, kv_penalty = 0.0;
  po::options_description options("options");
  options.add_options()
      ("lm", po::value(&lm_dir)->required(), "language model checkpoint directory (Hugging Face Llama layout)")
      ("out", po::value(&out_path)->required(), "the evolved NAMM (.safetensors), written when every stage ran")
      ("stage", po::value(&stage_texts)->required(), "a stage: tasks joined by commas, optionally :GENERATIONS; repeat for incremental stages (e.g. --stage kv_retrieval --stage kv_retrieval,needle)")
      ("generations", po::value(&generations)->default_value(10), "generations of a stage that names none")
      ("population", po::value(&population)->default_value(32), "CMA-ES population (lambda)")
      ("sigma", po::value(&sigma)->default_value(0.065), "initial CMA-ES step size")
      ("seed", po::value(&seed)->default_value(0), "CMA-ES sampling seed")
      ("prompts-per-task", po::value(&prompts)->default_value(8), "fresh TRAIN prompts per task per generation (the paper: 64)")
      ("screen-prompts", po::value(&screen_draws)->default_value(0), "draw up to N x prompts-per-task prompts per task and keep those the full cache answers (0: keep all)")
      ("kv-target", po::value(&kv_target)->default_value(1.0), "retained KV fraction above which a candidate is penalised")
      ("kv-penalty", po::value(&kv_penalty)->default_value(0.0), "fitness lost per unit of retained fraction above --kv-target (0: no memory pressure)")
      ("context-tokens", po::value(&contexts)->multitoken(), "prompt lengths, cycled over a batch (default 1024)")
      ("delay", po::value(&delay)->default_value(512), "tokens between NAMM updates (a multiple of 16)")
      ("feature-scaling", po::value(&scaling_text)->default_value(scaling_text), "frozen_stats (the paper: statistics of this host, frozen after generation 1) or per_head (each head standardises its own tokens at each update)")
      ("prompt-chunk", po::value(&chunk)->default_value(128), "most prompt tokens fed at once")
      ("max-answer-tokens", po::value(&answer_tokens)->default_value(kMaxAnswerTokens), "greedy answer length limit")
      ("threads", po::value(&threads)->default_value(2), "worker threads (one torch thread each)")
      ("checkpoint-dir", po::value(&checkpoint_dir), "checkpoint directory (default: OUT.ckpt); an existing checkpoint is resumed")
      ("log", po::value(&log_path), "JSONL log, one line per generation (default: CHECKPOINT_DIR/log.jsonl)")
      ("stop-after", po::value(&stop_after)->default_value(0), "return after this many generations of this call (0: run to the end)")
      ("no-shared-prefix", po::bool_switch(&no_share), "feed every prompt from scratch for every candidate (slower, same results)")
      ("cluster", po::value(&cluster_kind)->default_value("auto"), "auto (MPI when started by mpirun/srun), single or mpi: the ranks share each generation's candidates");
  po::variables_map vm;
  if (!parse_options("evolve", "--lm DIR --out NAMM.safetensors --stage TASKS[:GENS] [--stage ...] [options]", options,
                     args, vm)) {
    return 0;
  }

  EvolutionOptions evolution;
  try {
    for (const std::string& text : stage_texts) evolution.stages.push_back(EvolutionStage::parse(text, generations));
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  evolution.population = population;
  evolution.initial_sigma = sigma;
  evolution.seed = seed;
  evolution.prompts_per_task = prompts;
  evolution.screen_draws = screen_draws;
  evolution.kv_target = kv_target;
  evolution.kv_penalty = kv_penalty;
  if (!contexts.empty()) evolution.context_tokens = contexts;
  evolution.namm.delay = delay;
  try {
    evolution.namm.feature_scaling = parse_feature_scaling(scaling_text);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--feature-scaling: ") + e.what());
  }
  evolution.fitness.answer.delay = delay;
  evolution.fitness.answer.prompt_chunk = chunk;
  evolution.fitness.answer.max_answer_tokens = answer_tokens;
  evolution.fitness.threads = threads;
  evolution.fitness.share_prefix = !no_share;
  evolution.checkpoint_dir = checkpoint_dir.empty() ? out_path + ".ckpt" : checkpoint_dir;
  evolution.output_path = out_path;
  evolution.log_path = log_path;
  evolution.lm_checkpoint = lm_dir;
  evolution.git_commit = git_commit();
  evolution.command_line = command_line("evolve", args);
  evolution.stop_after_generations = stop_after;
  try {
    evolution.validate();
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }

  if (cluster_kind != "auto" && cluster_kind != "single" && cluster_kind != "mpi") {
    throw UsageError("--cluster must be auto, single or mpi, got '" + cluster_kind + "'");
  }
  const bool use_mpi = cluster_kind == "mpi" || (cluster_kind == "auto" && launched_by_mpi() && built_with_mpi());
  const std::unique_ptr<Cluster> cluster = use_mpi ? mpi_cluster() : single_process_cluster();
  evolution.cluster = cluster.get();
  const int rank = cluster->rank();
  if (rank != 0) {
    // a worker: whatever goes wrong here must end the whole job, or rank 0 waits forever
    try {
      serve_evolution(*load_task_model(lm_dir), evolution);
    } catch (const std::exception& e) {
      std::string message = e.what();
      cluster->abort_job("namm evolve: rank " + std::to_string(rank) + ": error: " +
                             message.substr(0, message.find('\n')),
                         1);
    }
    return 0;
  }

  try {
    return evolve_on_rank_zero(evolution, lm_dir, out_path, *cluster);
  } catch (const std::exception& e) {
    if (cluster->size() <= 1) throw;
    std::string message = e.what();
    cluster->abort_job("namm evolve: error: " + message.substr(0, message.find('\n')), 1);
  }
  return 1;  // not reached: abort_job ends the process
}

int evolve_on_rank_zero(EvolutionOptions& evolution, const std::string& lm_dir, const std::string& out_path,
                        Cluster& cluster) {
  // outputs are checked and held before the work: a bad --out fails now, not after the run
  const std::unique_ptr<FileLock> out_lock = lock_output_file(out_path, "--out");
  if (!evolution.log_path.empty()) {
    try {
      check_output_file(evolution.log_path);
    } catch (const std::runtime_error& e) {
      throw UsageError(std::string("--log ") + e.what());
    }
  }
  const Llama model = load_task_model(lm_dir);
  std::cout << "language model: " << model->config().summary() << "\n"
            << "checkpoints: " << evolution.checkpoint_dir << "\n"
            << "processes: " << cluster.description();
  if (cluster.size() > 1) {
    std::cout << " (if a rank dies, mpirun ends the job; the last generation's checkpoint stays: run the same "
                 "command to resume, with any number of ranks)";
  }
  std::cout << "\n" << std::flush;
  evolution.progress = &std::cout;
  EvolutionResult result;
  bool stopped = false;
  {
    const StopSignal stop;
    evolution.stop = stop.flag();
    result = evolve(*model, evolution);
    stopped = stop.requested();
  }

  if (result.finished) {
    std::cout << "done: " << result.generations_done << " generations, mean fitness " << result.final_fitness
              << "; NAMM written to " << out_path << "\n";
    return 0;
  }
  std::cout << (stopped ? "interrupted" : "paused") << " after " << result.generations_done
            << " generations; run the same command again to resume from " << evolution.checkpoint_dir << "\n";
  return stopped ? 130 : 0;
}

}  // namespace namm::app
