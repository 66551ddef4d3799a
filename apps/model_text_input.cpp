// model_text_input: see model_text_input.h
#include "apps/model_text_input.h"

#include "core/atomic_file.h"
#include "core/hf_checkpoint.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <stdexcept>

namespace namm::app {

c10::ScalarType parse_dtype_option(const std::string& text) {
  if (text == "float32" || text == "f32" || text == "fp32") return c10::kFloat;
  if (text == "bfloat16" || text == "bf16") return c10::kBFloat16;
  if (text == "float16" || text == "f16" || text == "fp16") return c10::kHalf;
  throw UsageError("--dtype must be float32, bfloat16 or float16, got '" + text + "'");
}

ModelForText ModelForText::open(const std::string& dir) {
  const std::string config_path = (std::filesystem::path(dir) / "config.json").string();
  if (!std::filesystem::is_directory(dir)) throw UsageError("--model " + dir + ": not a directory");
  ModelForText out{dir, read_llama_config(config_path), TextTokenizer::load(dir), {}};
  out.tokenizer.check_fits(out.config.vocab_size, config_path);
  out.end_ids = out.tokenizer.end_ids();
  // config.json's eos_token_id: an id, or a list of them (Llama 3 instruct)
  const nlohmann::json config = nlohmann::json::parse(read_file(config_path), nullptr, false);
  if (config.is_object() && config.contains("eos_token_id")) {
    const nlohmann::json& eos = config["eos_token_id"];
    const auto add = [&](const nlohmann::json& id) {
      if (id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<int64_t>() < out.config.vocab_size)
        out.end_ids.push_back(id.get<int64_t>());
    };
    if (eos.is_array()) {
      for (const auto& id : eos) add(id);
    } else {
      add(eos);
    }
  }
  return out;
}

LlamaCheckpoint ModelForText::load(c10::ScalarType dtype) const {
  std::cerr << "loading " << dir << " (" << config.summary() << "; " << tokenizer.describe() << ")" << std::endl;
  const auto start = std::chrono::steady_clock::now();
  // a line per weight file: a sharded model of many GB never sits silent
  LlamaCheckpoint checkpoint = load_llama_checkpoint_reporting(
      dir, dtype, c10::kCPU, [&](std::size_t done, std::size_t files, int64_t bytes) {
        if (files > 1)
          std::cerr << "  weight file " << done << "/" << files << " read (" << bytes / (1 << 20) << " MiB so far)" << std::endl;
      });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cerr << "loaded in " << seconds << " s" << std::endl;
  return checkpoint;
}

std::vector<int64_t> read_text_tokens(const ModelForText& model, const std::string& path, bool add_special_tokens) {
  const std::string text = path == "-" ? std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>())
                                       : read_file(path);
  std::vector<int64_t> ids;
  try {
    ids = model.tokenizer.encode(text, add_special_tokens);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(path + ": " + e.what());
  }
  if (ids.empty()) throw std::invalid_argument(path + ": the text holds no tokens");
  return ids;
}

}  // namespace namm::app
