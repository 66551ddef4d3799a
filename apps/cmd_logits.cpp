// `namm logits`: the float32 logits [T or N, V] a model gives a text file,
// as NumPy, so anyone can check our forward pass against their own
// reference (transformers, llama.cpp, ...) on their own checkpoint.
#include "apps/model_text_input.h"
#include "apps/options.h"
#include "core/memory_budget.h"
#include "core/npy.h"

#include <ATen/ATen.h>

#include <chrono>
#include <iostream>

namespace namm::app {

int run_logits(const std::vector<std::string>& args) {
  std::string model_dir, text_file, out_path, dtype_text = "float32";
  int64_t last = 0, chunk = 512;
  int threads = 2;
  po::options_description options("options");
  // clang-format off
  options.add_options()
      ("model", po::value(&model_dir)->required(), "model directory: config.json, safetensors weights, tokenizer.json")
      ("text-file", po::value(&text_file)->required(), "UTF-8 text ('-': standard input)")
      ("out", po::value(&out_path)->required(), "output .npy: float32 logits [T, V], or [N, V] with --last N")
      ("last", po::value(&last)->default_value(last), "keep only the last N positions (0: all)")
      ("no-special-tokens", "tokenise without the tokens the model expects around a sequence (e.g. <s>)")
      ("dtype", po::value(&dtype_text)->default_value(dtype_text), "compute in float32, bfloat16 or float16 (weights are converted)")
      ("chunk", po::value(&chunk)->default_value(chunk), "tokens fed at once")
      ("threads", po::value(&threads)->default_value(threads), "torch threads");
  // clang-format on
  po::variables_map vm;
  if (!parse_options("logits", "--model DIR --text-file F --out L.npy [--last N] [--dtype bfloat16]", options, args, vm)) return 0;
  const auto output_locks = claim_outputs({{"--out", out_path}});
  if (last < 0) throw UsageError("--last must be >= 0, got " + std::to_string(last));
  if (chunk < 1 || chunk > 65536) throw UsageError("--chunk must be in [1, 65536], got " + std::to_string(chunk));
  if (threads < 1) throw UsageError("--threads must be >= 1, got " + std::to_string(threads));
  const c10::ScalarType dtype = parse_dtype_option(dtype_text);

  const ModelForText model = ModelForText::open(model_dir);
  const std::vector<int64_t> ids = read_text_tokens(model, text_file, !vm.count("no-special-tokens"));
  const int64_t total = static_cast<int64_t>(ids.size());
  const int64_t rows = last > 0 ? std::min(last, total) : total;
  const int64_t vocab = model.config.vocab_size;
  require_memory(static_cast<double>(rows) * static_cast<double>(vocab) * 4.0,
                 "--out: logits [" + std::to_string(rows) + ", " + std::to_string(vocab) + "] float32");

  at::set_num_threads(threads);
  const LlamaCheckpoint checkpoint = model.load(dtype);
  const at::Tensor tokens = at::tensor(ids, at::kLong);  // [T]
  at::Tensor out = at::empty({rows, vocab}, at::kFloat);  // [rows, V]
  SequenceState state = checkpoint.model->new_state();
  const auto start = std::chrono::steady_clock::now();
  auto last_report = start;
  for (int64_t begin = 0; begin < total; begin += chunk) {
    const int64_t n = std::min(chunk, total - begin);
    const at::Tensor logits = checkpoint.model->feed(state, tokens.narrow(0, begin, n), nullptr, /*all_logits=*/true);  // [n, V]
    // rows of this chunk that fall in the last `rows` positions
    const int64_t first_kept = std::max(begin, total - rows);
    if (first_kept < begin + n) {
      out.narrow(0, first_kept - (total - rows), begin + n - first_kept)
          .copy_(logits.narrow(0, first_kept - begin, begin + n - first_kept).to(at::kFloat));
    }
    const auto now = std::chrono::steady_clock::now();
    if (std::chrono::duration<double>(now - last_report).count() > 5.0 && begin + n < total) {
      const double seconds = std::chrono::duration<double>(now - start).count();
      std::cerr << "  " << begin + n << "/" << total << " tokens, " << static_cast<int64_t>((begin + n) / seconds)
                << " tokens/s" << std::endl;
      last_report = now;
    }
  }
  if (!at::isfinite(out).all().item<bool>()) {
    throw std::runtime_error(model_dir + ": the logits hold NaN or infinity (a broken checkpoint, or float16 overflow)");
  }
  write_npy(out_path, out);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << total << " tokens (" << model.tokenizer.describe() << "), wrote logits [" << rows << ", " << vocab
            << "] to " << out_path << "; " << static_cast<int64_t>(total / std::max(seconds, 1e-9)) << " tokens/s"
            << std::endl;
  return 0;
}

}  // namespace namm::app
