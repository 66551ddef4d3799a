// `namm tokenize`: text -> token ids (a JSON array) with a Hugging Face
// tokenizer.json or the builtin word vocabulary of models/lm, and with
// --decode ids -> text. For checking our tokenisation against any reference.
#include "apps/options.h"
#include "core/atomic_file.h"
#include "core/printable.h"
#include "text/tokenizer.h"
#include "tokenizers/hf_tokenizer.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>

namespace namm::app {
namespace {

std::string read_input(const std::string& path) {
  if (path == "-") return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  return read_file(path);
}

std::vector<int64_t> parse_ids(const std::string& text, const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {
    throw std::invalid_argument(path + ": not a JSON array of token ids");
  }
  if (!j.is_array()) throw std::invalid_argument(path + ": not a JSON array of token ids");
  std::vector<int64_t> ids;
  ids.reserve(j.size());
  for (std::size_t i = 0; i < j.size(); ++i) {
    if (!j[i].is_number_integer())
      throw std::invalid_argument(path + ": element " + std::to_string(i) + " is not an integer token id");
    ids.push_back(j[i].get<int64_t>());
  }
  return ids;
}

}  // namespace

int run_tokenize(const std::vector<std::string>& args) {
  std::string tokenizer_path, text_file, ids_file, out_path;
  po::options_description options("options");
  options.add_options()
      ("tokenizer", po::value(&tokenizer_path)->required(), "a tokenizer.json (Hugging Face, or the builtin word vocabulary's) or a model directory holding one")
      ("text-file", po::value(&text_file), "UTF-8 text to encode ('-': standard input)")
      ("add-special-tokens", "let the tokenizer add what its model expects around a sequence (e.g. <s>)")
      ("decode", "decode instead: read a JSON array of ids from --ids-file, print the text")
      ("ids-file", po::value(&ids_file), "with --decode: a JSON array of token ids ('-': standard input)")
      ("skip-special-tokens", "with --decode: leave special tokens out of the text")
      ("out", po::value(&out_path), "write the result here (atomically) instead of standard output");
  po::variables_map vm;
  if (!parse_options("tokenize", "--tokenizer FILE_OR_MODEL_DIR (--text-file F [--add-special-tokens] | --decode --ids-file F)",
                     options, args, vm))
    return 0;
  const bool decode = vm.count("decode") > 0;
  if (decode && ids_file.empty()) throw UsageError("--decode needs --ids-file");
  if (!decode && text_file.empty()) throw UsageError("give --text-file (or --decode --ids-file)");
  if (decode && !text_file.empty()) throw UsageError("--text-file and --decode do not go together");
  if (!decode && (!ids_file.empty() || vm.count("skip-special-tokens")))
    throw UsageError("--ids-file and --skip-special-tokens belong to --decode");
  if (decode && vm.count("add-special-tokens")) throw UsageError("--add-special-tokens belongs to encoding");
  const auto output_locks = claim_outputs({{"--out", out_path}});

  std::filesystem::path file = tokenizer_path;
  if (std::filesystem::is_directory(file)) file /= "tokenizer.json";
  const std::string input_name = decode ? ids_file : text_file;
  const std::string input = read_input(input_name);

  std::string result;
  // the builtin vocabulary's file says so near its start; anything else is
  // read as a Hugging Face tokenizer.json (whose loader names what is wrong)
  const bool builtin = [&] {
    std::ifstream in(file, std::ios::binary);
    std::string head(4096, '\0');
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    head.resize(static_cast<std::size_t>(in.gcount()));
    return head.find("\"namm-word-tokenizer\"") != std::string::npos;
  }();
  if (builtin) {
    const Tokenizer words = Tokenizer::load(file.string());
    if (decode) {
      result = words.decode(parse_ids(input, input_name), vm.count("skip-special-tokens") > 0);
    } else {
      std::vector<int64_t> ids;
      if (vm.count("add-special-tokens")) ids.push_back(Tokenizer::kBos);
      for (const int64_t id : words.encode(input)) ids.push_back(id);
      result = nlohmann::json(ids).dump() + "\n";
    }
  } else {
    const auto tokenizer = tokenizers::HfTokenizer::load(file);
    if (decode) {
      const auto ids64 = parse_ids(input, input_name);
      std::vector<int32_t> ids;
      ids.reserve(ids64.size());
      for (const int64_t id : ids64) {
        if (id < 0 || id >= tokenizer.vocab_size())
          throw std::invalid_argument(input_name + ": token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                                      std::to_string(tokenizer.vocab_size() - 1) + ")");
        ids.push_back(static_cast<int32_t>(id));
      }
      result = tokenizer.decode(ids, vm.count("skip-special-tokens") > 0);
    } else {
      try {
        result = nlohmann::json(tokenizer.encode(input, vm.count("add-special-tokens") > 0)).dump() + "\n";
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(input_name + ": " + e.what());
      }
    }
  }
  if (out_path.empty()) {
    std::cout << result << std::flush;
  } else {
    write_file_atomically(out_path, result);
  }
  return 0;
}

}  // namespace namm::app
