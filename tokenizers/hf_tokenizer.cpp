#include "tokenizers/hf_tokenizer.h"

#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "core/printable.h"
#include "tokenizers/bpe.h"
#include "tokenizers/component_json.h"
#include "tokenizers/components.h"
#include "tokenizers/unicode_text.h"

namespace namm::tokenizers {
namespace {

// Gemma 3's tokenizer.json, the largest in use, is 33 MB.
constexpr std::uintmax_t kMaxTokenizerFileBytes = 512ull << 20;
constexpr std::size_t kMaxAddedTokens = 1'000'000;

std::string read_bounded(const std::filesystem::path& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) throw std::invalid_argument(path.string() + ": " + std::strerror(errno));
  if (!S_ISREG(info.st_mode)) throw std::invalid_argument(path.string() + ": not a regular file");
  if (static_cast<std::uintmax_t>(info.st_size) > kMaxTokenizerFileBytes)
    throw std::invalid_argument(path.string() + ": " + std::to_string(info.st_size) +
                                " bytes, more than any tokenizer file (limit 512 MiB)");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument(path.string() + ": cannot open: " + std::strerror(errno));
  std::string bytes(static_cast<std::size_t>(info.st_size), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (in.gcount() != static_cast<std::streamsize>(bytes.size()))
    throw std::invalid_argument(path.string() + ": short read (file changed while reading?)");
  return bytes;
}

std::filesystem::path tokenizer_file(const std::filesystem::path& file_or_dir) {
  std::error_code ec;
  if (std::filesystem::is_directory(file_or_dir, ec)) return file_or_dir / "tokenizer.json";
  return file_or_dir;
}

// bos_token / eos_token in tokenizer_config.json: "tok" or {"content": "tok"}.
std::optional<std::string> config_token(const nlohmann::json& config, const char* key) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) return (*it)["content"].get<std::string>();
  throw json_field::error(std::string("tokenizer_config.json: ") + key, "is neither a string nor {\"content\": ...}");
}

bool is_word_byte(unsigned char c) { return std::isalnum(c) || c == '_' || c >= 0x80; }

}  // namespace

struct HfTokenizer::Impl {
  struct AddedToken {
    std::string content;
    int32_t id;
    bool lstrip, rstrip, single_word, special;
  };

  BpeModel model;
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<PostProcessor> post_processor;
  std::unique_ptr<Decoder> decoder;
  std::vector<AddedToken> added;
  std::unordered_set<std::string> added_contents;
  std::unordered_set<int32_t> special_ids;
  std::optional<int32_t> bos, eos;

  // Trie of the added tokens over bytes: edge (node << 8 | byte) -> child.
  std::unordered_map<uint64_t, int32_t> trie_edges;
  std::vector<int32_t> trie_token;  // node -> index into added, or -1

  void build_trie() {
    trie_token.assign(1, -1);
    for (std::size_t t = 0; t < added.size(); ++t) {
      int32_t node = 0;
      for (const char c : added[t].content) {
        const uint64_t key = (static_cast<uint64_t>(node) << 8) | static_cast<unsigned char>(c);
        const auto it = trie_edges.find(key);
        if (it == trie_edges.end()) {
          trie_edges.emplace(key, static_cast<int32_t>(trie_token.size()));
          node = static_cast<int32_t>(trie_token.size());
          trie_token.push_back(-1);
        } else {
          node = it->second;
        }
      }
      trie_token[node] = static_cast<int32_t>(t);
    }
  }

  // The longest added token starting at pos (-1 if none); a single_word
  // token counts only with no word character on either side.
  int32_t added_at(std::string_view text, std::size_t pos) const {
    int32_t node = 0, best = -1;
    for (std::size_t j = pos; j < text.size(); ++j) {
      const auto it = trie_edges.find((static_cast<uint64_t>(node) << 8) | static_cast<unsigned char>(text[j]));
      if (it == trie_edges.end()) break;
      node = it->second;
      const int32_t token = trie_token[node];
      if (token < 0) continue;
      if (added[token].single_word) {
        const bool word_before = pos > 0 && is_word_byte(static_cast<unsigned char>(text[pos - 1]));
        const bool word_after = j + 1 < text.size() && is_word_byte(static_cast<unsigned char>(text[j + 1]));
        if (word_before || word_after) continue;
      }
      best = token;
    }
    return best;
  }

  struct Section {
    std::string_view text;
    int32_t added = -1;  // index into added, or -1 for plain text
  };

  std::vector<Section> split_added(std::string_view text) const {
    std::vector<Section> sections;
    std::size_t start = 0, pos = 0;
    while (pos < text.size()) {
      const int32_t token = trie_edges.empty() ? -1 : added_at(text, pos);
      if (token < 0) {
        ++pos;
        continue;
      }
      if (pos > start) sections.push_back({text.substr(start, pos - start), -1});
      sections.push_back({text.substr(pos, added[token].content.size()), token});
      pos += added[token].content.size();
      start = pos;
    }
    if (start < text.size()) sections.push_back({text.substr(start), -1});
    // lstrip / rstrip: an added token swallows the whitespace beside it
    for (std::size_t i = 0; i < sections.size(); ++i) {
      if (sections[i].added < 0) continue;
      const AddedToken& token = added[sections[i].added];
      if (token.lstrip && i > 0 && sections[i - 1].added < 0)
        sections[i - 1].text = trim_whitespace(sections[i - 1].text, false, true);
      if (token.rstrip && i + 1 < sections.size() && sections[i + 1].added < 0)
        sections[i + 1].text = trim_whitespace(sections[i + 1].text, true, false);
    }
    return sections;
  }
};

HfTokenizer::HfTokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HfTokenizer::HfTokenizer(HfTokenizer&&) noexcept = default;
HfTokenizer& HfTokenizer::operator=(HfTokenizer&&) noexcept = default;
HfTokenizer::~HfTokenizer() = default;

HfTokenizer HfTokenizer::load(const std::filesystem::path& file_or_dir) {
  const std::filesystem::path file = tokenizer_file(file_or_dir);
  const std::string json = read_bounded(file);
  std::string config;
  const std::filesystem::path config_file = file.parent_path() / "tokenizer_config.json";
  std::error_code ec;
  if (std::filesystem::exists(config_file, ec)) {
    config = read_bounded(config_file);
    if (!nlohmann::json::accept(config)) throw std::invalid_argument(config_file.string() + ": not valid JSON");
  }
  return parse(json, config, file.string());
}

bool HfTokenizer::looks_like_hf_tokenizer(const std::filesystem::path& file_or_dir) {
  try {
    const nlohmann::json j = nlohmann::json::parse(read_bounded(tokenizer_file(file_or_dir)));
    return j.is_object() && j.contains("model") && j["model"].is_object();
  } catch (const std::exception&) {
    return false;
  }
}

HfTokenizer HfTokenizer::parse(std::string_view tokenizer_json, std::string_view config_json, const std::string& name) {
  using namespace json_field;
  auto impl = std::make_unique<Impl>();
  try {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(tokenizer_json);
    } catch (const nlohmann::json::exception& e) {
      throw std::invalid_argument(std::string("not valid JSON: ") + e.what());
    }
    if (!j.is_object()) throw std::invalid_argument("not a JSON object");
    const auto& model = require(j, "model", "");
    const std::string type = model.is_object() && model.contains("type") && model["type"].is_string()
                                 ? model["type"].get<std::string>() : "";
    if (type != "BPE")
      throw error("model.type", type.empty() ? "missing (supported: BPE)" : "unsupported model '" + type + "' (supported: BPE)");
    impl->model = BpeModel::from_json(model);

    const auto& added = j.contains("added_tokens") ? j["added_tokens"] : nlohmann::json::array();
    if (!added.is_array()) throw error("added_tokens", "is not an array");
    if (added.size() > kMaxAddedTokens) throw error("added_tokens", "more than a million entries");
    for (std::size_t i = 0; i < added.size(); ++i) {
      const std::string field = "added_tokens[" + std::to_string(i) + "]";
      const auto& a = added[i];
      if (!a.is_object()) throw error(field, "is not an object");
      const int64_t id = int_or(a, "id", -1, field);
      if (id < 0 || id > INT32_MAX) throw error(field + ".id", "missing or out of range");
      Impl::AddedToken token{string_of(a, "content", field), static_cast<int32_t>(id), bool_or(a, "lstrip", false, field),
                             bool_or(a, "rstrip", false, field), bool_or(a, "single_word", false, field),
                             bool_or(a, "special", false, field)};
      if (token.content.empty()) throw error(field + ".content", "is empty");
      if (!utf8_is_valid(token.content)) throw error(field + ".content", "is not valid UTF-8");
      try {
        impl->model.add_token(token.content, token.id);
      } catch (const std::invalid_argument& e) {
        throw error(field, e.what());
      }
      impl->added_contents.insert(token.content);
      if (token.special) impl->special_ids.insert(token.id);
      impl->added.push_back(std::move(token));
    }
    impl->build_trie();

    const auto stage = [&](const char* key) -> const nlohmann::json& {
      static const nlohmann::json null_json;
      return j.contains(key) ? j[key] : null_json;
    };
    impl->normalizer = make_normalizer(stage("normalizer"), "normalizer");
    impl->pre_tokenizer = make_pre_tokenizer(stage("pre_tokenizer"), "pre_tokenizer");
    BpeModel* bpe = &impl->model;
    impl->post_processor = make_post_processor(stage("post_processor"), "post_processor",
                                               [bpe](const std::string& token, const std::string& field) {
                                                 const auto id = bpe->token_to_id(token);
                                                 if (!id) throw error(field, "\"" + printable(token) + "\" is not a token");
                                                 return *id;
                                               },
                                               [bpe](int32_t id) { return bpe->id_to_token(id) != nullptr; });
    impl->decoder = make_decoder(stage("decoder"), "decoder");

    if (!config_json.empty()) {
      const nlohmann::json config = nlohmann::json::parse(config_json);
      if (config.is_object()) {
        if (const auto it = config.find("additional_special_tokens"); it != config.end() && it->is_array()) {
          for (const auto& t : *it) {
            const std::string content = t.is_string() ? t.get<std::string>()
                                        : t.is_object() && t.contains("content") && t["content"].is_string()
                                            ? t["content"].get<std::string>() : "";
            if (const auto id = impl->model.token_to_id(content); id && !content.empty()) impl->special_ids.insert(*id);
          }
        }
        for (const auto& [key, slot] : {std::pair{"bos_token", &impl->bos}, std::pair{"eos_token", &impl->eos}}) {
          const auto token = config_token(config, key);
          if (!token) continue;
          const auto id = impl->model.token_to_id(*token);
          if (!id)
            throw error(std::string("tokenizer_config.json: ") + key, "\"" + printable(*token) + "\" is not a token of tokenizer.json");
          *slot = *id;
        }
      }
    }
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(name + ": " + printable(e.what(), 400));
  }
  return HfTokenizer(std::move(impl));
}

std::vector<int32_t> HfTokenizer::encode(std::string_view text, bool add_special_tokens) const {
  if (const std::size_t bad = utf8_first_invalid(text); bad != std::string_view::npos)
    throw std::invalid_argument("text is not valid UTF-8 (byte " + std::to_string(bad) + ")");
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 8);
  const auto sections = impl_->split_added(text);
  std::vector<std::string> pieces;
  for (std::size_t s = 0; s < sections.size(); ++s) {
    const auto& section = sections[s];
    if (section.added >= 0) {
      ids.push_back(impl_->added[section.added].id);
      continue;
    }
    if (section.text.empty()) continue;
    std::string normalized(section.text);
    if (impl_->normalizer) normalized = impl_->normalizer->normalize(std::move(normalized));
    if (normalized.empty()) continue;
    pieces.clear();
    pieces.push_back(std::move(normalized));
    if (impl_->pre_tokenizer) pieces = impl_->pre_tokenizer->split(std::move(pieces), s);
    const std::size_t section_start = ids.size();
    for (const auto& piece : pieces) impl_->model.encode_piece(piece, ids);
    impl_->model.fuse_unknown(ids, section_start);
  }
  if (impl_->post_processor) ids = impl_->post_processor->process(std::move(ids), add_special_tokens);
  return ids;
}

std::string HfTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (const int32_t id : ids) {
    const std::string* token = impl_->model.id_to_token(id);
    if (token == nullptr)
      throw std::out_of_range("token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                              std::to_string(vocab_size() - 1) + ")");
    if (skip_special_tokens && impl_->special_ids.count(id)) continue;
    tokens.push_back(*token);
  }
  if (!impl_->decoder) {
    std::string joined;
    for (std::size_t i = 0; i < tokens.size(); ++i) joined += (i ? " " : "") + tokens[i];
    return joined;
  }
  const Impl* impl = impl_.get();
  const auto pieces = impl_->decoder->decode_chain(
      std::move(tokens), [impl](const std::string& token) { return impl->added_contents.count(token) > 0; });
  std::string text;
  for (const auto& p : pieces) text += p;
  return text;
}

int32_t HfTokenizer::vocab_size() const { return impl_->model.vocab_size(); }
std::optional<int32_t> HfTokenizer::token_to_id(std::string_view token) const { return impl_->model.token_to_id(token); }
std::string HfTokenizer::id_to_token(int32_t id) const {
  const std::string* token = impl_->model.id_to_token(id);
  if (token == nullptr) throw std::out_of_range("token id " + std::to_string(id) + " names no token");
  return *token;
}
bool HfTokenizer::is_special(int32_t id) const { return impl_->special_ids.count(id) > 0; }
std::optional<int32_t> HfTokenizer::bos_id() const { return impl_->bos; }
std::optional<int32_t> HfTokenizer::eos_id() const { return impl_->eos; }

}  // namespace namm::tokenizers
