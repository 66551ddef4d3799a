// Tokenizer speed: tokenizers/HfTokenizer::encode against the reference
// implementation (@lenml/tokenizers, transformers.js, under Node) on the
// same text, side by side in one run, for each real tokenizer.json.
//
// The text: the parity corpus (tests/fixtures/tokenizers/corpus.json: prose
// in twelve scripts, code, emoji, numbers, whitespace runs) concatenated and
// repeated to about `megabytes` MB. Per tokenizer: load seconds, then the
// best of `reps` encodes: MB/s, million tokens/s, and ours / reference. The
// reference column needs `node` and the npm packages
// (tests/fixtures/make_tokenizer_fixtures.mjs says how to install them);
// without them only our figures print.
//
//   namm_bench_tokenizer TOKENIZERS_DIR [NODE_MODULES_DIR] [megabytes=2] [reps=3]
//   (TOKENIZERS_DIR: build/tests/tokenizers/fixtures, unpacked at configure)
#include "tokenizers/hf_tokenizer.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

namespace {

namespace fs = std::filesystem;

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::string read(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The reference, timed in its own process: prints "load_s encode_s tokens".
const char* const kNodeScript = R"JS(
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
const [modules, dir, textFile, reps] = process.argv.slice(2);
const { TokenizerLoader } = await import(pathToFileURL(path.join(modules, "@lenml/tokenizers/dist/main.mjs")).href);
const text = fs.readFileSync(textFile, "utf8");
let t = performance.now();
const tok = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8")),
  tokenizerConfig: JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")),
});
const load = (performance.now() - t) / 1000;
let best = Infinity, n = 0;
for (let r = 0; r < Number(reps); ++r) {
  t = performance.now();
  n = tok.encode(text, { add_special_tokens: false }).length;
  best = Math.min(best, (performance.now() - t) / 1000);
}
console.log(`${load} ${best} ${n}`);
)JS";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: namm_bench_tokenizer TOKENIZERS_DIR [NODE_MODULES_DIR] [megabytes=2] [reps=3]\n");
    return 2;
  }
  const fs::path root = argv[1];
  const std::string node_modules = argc > 2 ? argv[2] : "";
  const double megabytes = argc > 3 ? std::atof(argv[3]) : 2.0;
  const int reps = argc > 4 ? std::atoi(argv[4]) : 3;
  if (!(megabytes > 0 && megabytes < 1000) || reps < 1) {
    std::fprintf(stderr, "megabytes must be in (0, 1000) and reps >= 1\n");
    return 2;
  }

  const auto corpus = nlohmann::json::parse(read(fs::path(NAMM_SOURCE_DIR) / "tests/fixtures/tokenizers/corpus.json"));
  std::string one_pass;
  for (const auto& text : corpus) one_pass += text.get<std::string>() + "\n";
  std::string text;
  while (text.size() < megabytes * 1e6) text += one_pass;
  const fs::path text_file = fs::temp_directory_path() / "namm_bench_tokenizer_text.txt";
  const fs::path script_file = fs::temp_directory_path() / "namm_bench_tokenizer_reference.mjs";
  std::ofstream(text_file, std::ios::binary) << text;
  std::ofstream(script_file) << kNodeScript;
  const bool with_reference = !node_modules.empty() && std::system("node --version > /dev/null 2>&1") == 0;

  std::printf("tokenizer bench: %.2f MB of text (%zu passes over the parity corpus), best of %d encodes; reference %s\n",
              text.size() / 1e6, text.size() / one_pass.size(), reps,
              with_reference ? "@lenml/tokenizers under node" : "not run (give NODE_MODULES_DIR, install node)");
  std::printf("%-8s %8s %9s %10s %9s | %9s %9s %10s | %8s %6s\n", "file", "load s", "tokens", "MB/s", "Mtok/s",
              "ref load", "ref MB/s", "ref tokens", "ours/ref", "same n");
  for (const char* name : {"llama3", "qwen3", "llama2", "gemma3"}) {
    const fs::path dir = root / name;
    double t = now();
    const auto tokenizer = namm::tokenizers::HfTokenizer::load(dir);
    const double load = now() - t;
    double best = 1e30;
    std::size_t tokens = 0;
    for (int r = 0; r < reps; ++r) {
      t = now();
      tokens = tokenizer.encode(text, false).size();
      best = std::min(best, now() - t);
    }
    const double mbps = text.size() / 1e6 / best;
    std::printf("%-8s %8.2f %9zu %10.2f %9.3f |", name, load, tokens, mbps, tokens / 1e6 / best);
    if (with_reference) {
      const std::string command = "node " + script_file.string() + " " + node_modules + " " + dir.string() + " " +
                                  text_file.string() + " " + std::to_string(reps);
      FILE* pipe = popen(command.c_str(), "r");
      double ref_load = 0, ref_best = 0;
      std::size_t ref_tokens = 0;
      const bool ok = pipe && std::fscanf(pipe, "%lf %lf %zu", &ref_load, &ref_best, &ref_tokens) == 3;
      if (pipe) pclose(pipe);
      if (ok) {
        const double ref_mbps = text.size() / 1e6 / ref_best;
        std::printf(" %9.2f %9.2f %10zu | %8.2f %6s\n", ref_load, ref_mbps, ref_tokens, mbps / ref_mbps,
                    ref_tokens == tokens ? "yes" : "NO");
      } else {
        std::printf(" reference failed\n");
      }
    } else {
      std::printf("\n");
    }
  }
  fs::remove(text_file);
  fs::remove(script_file);
  return 0;
}
