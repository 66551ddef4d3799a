// Decoders of tokenizer.json (ByteLevel, Replace, ByteFallback, Fuse, Strip,
// Metaspace, BPEDecoder, Sequence) and its post-processors
// (TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing,
// Sequence).
#include <nlohmann/json.hpp>

#include "tokenizers/component_json.h"
#include "tokenizers/components.h"
#include "tokenizers/unicode_text.h"

namespace namm::tokenizers {
namespace {

class ByteLevelDecoder : public Decoder {
 public:
  // Added tokens pass through as written; runs of other tokens map each
  // code point back to its byte, then the bytes decode as (lossy) UTF-8, so
  // a character split over two tokens comes back whole.
  std::vector<std::string> decode_chain(std::vector<std::string> tokens, const IsAdded& is_added) const override {
    std::vector<std::string> out;
    std::string bytes;
    const auto flush = [&] {
      if (!bytes.empty()) out.push_back(utf8_lossy(bytes));
      bytes.clear();
    };
    for (const auto& token : tokens) {
      if (is_added && is_added(token)) {
        flush();
        out.push_back(token);
        continue;
      }
      for (std::size_t pos = 0; pos < token.size();) {
        std::size_t n;
        const char32_t cp = utf8_decode_at(token, pos, &n);
        const int byte = unicode_to_byte(cp);
        if (byte >= 0) {
          bytes += static_cast<char>(byte);
        } else {
          bytes.append(token, pos, n);
        }
        pos += n;
      }
    }
    flush();
    return out;
  }
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(Pattern pattern, std::string content) : pattern_(std::move(pattern)), content_(std::move(content)) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens, const IsAdded&) const override {
    for (auto& token : tokens) token = pattern_.replace_all(token, content_);
    return tokens;
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class ByteFallbackDecoder : public Decoder {
 public:
  // Runs of <0xXX> tokens become the text their bytes spell; a run that is
  // not valid UTF-8 becomes one U+FFFD per byte (the tokenizers crate's rule).
  std::vector<std::string> decode_chain(std::vector<std::string> tokens, const IsAdded&) const override {
    std::vector<std::string> out;
    std::string bytes;
    const auto flush = [&] {
      if (bytes.empty()) return;
      if (utf8_is_valid(bytes)) {
        out.push_back(bytes);
      } else {
        for (std::size_t i = 0; i < bytes.size(); ++i) out.push_back("\xEF\xBF\xBD");
      }
      bytes.clear();
    };
    for (auto& token : tokens) {
      int byte = -1;
      if (token.size() == 6 && token.compare(0, 3, "<0x") == 0 && token[5] == '>') byte = hex_byte(token[3], token[4]);
      if (byte >= 0) {
        bytes += static_cast<char>(byte);
      } else {
        flush();
        out.push_back(std::move(token));
      }
    }
    flush();
    return out;
  }

 private:
  static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  }
  static int hex_byte(char high, char low) {
    const int h = hex_digit(high), l = hex_digit(low);
    return h < 0 || l < 0 ? -1 : h * 16 + l;
  }
};

class FuseDecoder : public Decoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens, const IsAdded&) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    return {all};
  }
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(std::string content, std::size_t start, std::size_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  // Removes up to start_ leading and stop_ trailing copies of content_ (one
  // code point) from each token.
  std::vector<std::string> decode_chain(std::vector<std::string> tokens, const IsAdded&) const override {
    for (auto& token : tokens) {
      std::size_t begin = 0, end = token.size();
      for (std::size_t i = 0; i < start_ && token.compare(begin, content_.size(), content_) == 0; ++i)
        begin += content_.size();
      for (std::size_t i = 0; i < stop_ && end >= begin + content_.size() &&
                              token.compare(end - content_.size(), content_.size(), content_) == 0;
           ++i)
        end -= content_.size();
      token = token.substr(begin, end - begin);
    }
    return tokens;
  }

 private:
  std::string content_;
  std::size_t start_, stop_;
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first_space)
      : replacement_(Pattern::literal(std::move(replacement))), strip_first_space_(strip_first_space) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens, const IsAdded&) const override {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      tokens[i] = replacement_.replace_all(tokens[i], " ");
      if (i == 0 && strip_first_space_ && !tokens[i].empty() && tokens[i][0] == ' ') tokens[i].erase(0, 1);
    }
    return tokens;
  }

 private:
  Pattern replacement_;
  bool strip_first_space_;
};

class SuffixDecoder : public Decoder {  // "BPEDecoder": end-of-word suffix -> space
 public:
  explicit SuffixDecoder(std::string suffix) : suffix_(Pattern::literal(std::move(suffix))) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens, const IsAdded&) const override {
    for (std::size_t i = 0; i < tokens.size(); ++i)
      tokens[i] = suffix_.replace_all(tokens[i], i + 1 == tokens.size() ? "" : " ");
    return tokens;
  }

 private:
  Pattern suffix_;
};

class DecoderSequence : public Decoder {
 public:
  explicit DecoderSequence(std::vector<std::unique_ptr<Decoder>> steps) : steps_(std::move(steps)) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens, const IsAdded& is_added) const override {
    for (const auto& step : steps_) tokens = step->decode_chain(std::move(tokens), is_added);
    return tokens;
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

// Post-processors: what surrounds one encoded sequence.
class Template : public PostProcessor {
 public:
  struct Item {
    bool is_sequence;
    std::vector<int32_t> special_ids;  // when !is_sequence
  };
  explicit Template(std::vector<Item> items) : items_(std::move(items)) {}
  std::vector<int32_t> process(std::vector<int32_t> ids, bool add_special_tokens) const override {
    if (!add_special_tokens) return ids;
    std::vector<int32_t> out;
    out.reserve(ids.size() + 4);
    for (const auto& item : items_) {
      if (item.is_sequence) {
        out.insert(out.end(), ids.begin(), ids.end());
      } else {
        out.insert(out.end(), item.special_ids.begin(), item.special_ids.end());
      }
    }
    return out;
  }

 private:
  std::vector<Item> items_;
};

class Passthrough : public PostProcessor {  // ByteLevel: trims offsets only
 public:
  std::vector<int32_t> process(std::vector<int32_t> ids, bool) const override { return ids; }
};

class PostProcessorSequence : public PostProcessor {
 public:
  explicit PostProcessorSequence(std::vector<std::unique_ptr<PostProcessor>> steps) : steps_(std::move(steps)) {}
  std::vector<int32_t> process(std::vector<int32_t> ids, bool add_special_tokens) const override {
    for (const auto& step : steps_) ids = step->process(std::move(ids), add_special_tokens);
    return ids;
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> steps_;
};

std::unique_ptr<PostProcessor> make_template(const nlohmann::json& config, const std::string& field,
                                             const TokenLookup& lookup, const IdCheck& known_id) {
  using namespace json_field;
  const auto& single = require(config, "single", field);
  if (!single.is_array()) throw error(field + ".single", "is not an array");
  const nlohmann::json* specials = nullptr;
  if (const auto it = config.find("special_tokens"); it != config.end() && it->is_object()) specials = &*it;
  std::vector<Template::Item> items;
  for (std::size_t i = 0; i < single.size(); ++i) {
    const std::string where = field + ".single[" + std::to_string(i) + "]";
    const auto& item = single[i];
    if (item.contains("Sequence")) {
      if (string_of(item["Sequence"], "id", where + ".Sequence") != "A")
        throw error(where + ".Sequence.id", "a single-sequence template can only name sequence A");
      items.push_back({true, {}});
    } else if (item.contains("SpecialToken")) {
      const std::string name = string_of(item["SpecialToken"], "id", where + ".SpecialToken");
      std::vector<int32_t> ids;
      if (specials && specials->contains(name)) {
        const auto& entry = (*specials)[name];
        const std::string entry_field = field + ".special_tokens[\"" + name + "\"]";
        const auto& list = require(entry, "ids", entry_field);
        if (!list.is_array()) throw error(entry_field + ".ids", "is not an array");
        for (const auto& id : list) {
          if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
            throw error(entry_field + ".ids", "holds something that is not a token id");
          if (!known_id(id.get<int32_t>()))
            throw error(entry_field + ".ids", "id " + std::to_string(id.get<int64_t>()) + " names no token");
          ids.push_back(id.get<int32_t>());
        }
      } else {
        ids.push_back(lookup(name, where + ".SpecialToken.id"));
      }
      items.push_back({false, std::move(ids)});
    } else {
      throw error(where, "is neither a Sequence nor a SpecialToken");
    }
  }
  return std::make_unique<Template>(std::move(items));
}

// RobertaProcessing / BertProcessing: cls A sep, with "cls": [token, id].
std::unique_ptr<PostProcessor> make_cls_sep(const nlohmann::json& config, const std::string& field, const IdCheck& known_id) {
  using namespace json_field;
  const auto id_of = [&](const char* key) {
    const auto& pair = require(config, key, field);
    if (!pair.is_array() || pair.size() != 2 || !pair[1].is_number_integer() || pair[1].get<int64_t>() < 0 ||
        pair[1].get<int64_t>() > INT32_MAX)
      throw error(field + "." + key, "is not [token, id]");
    if (!known_id(pair[1].get<int32_t>())) throw error(field + "." + key, "id " + std::to_string(pair[1].get<int64_t>()) + " names no token");
    return pair[1].get<int32_t>();
  };
  return std::make_unique<Template>(std::vector<Template::Item>{{false, {id_of("cls")}}, {true, {}}, {false, {id_of("sep")}}});
}

}  // namespace

std::unique_ptr<Decoder> make_decoder(const nlohmann::json& config, const std::string& field) {
  using namespace json_field;
  if (config.is_null()) return nullptr;
  const std::string type = type_of(config, field);
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Replace") return std::make_unique<ReplaceDecoder>(pattern_of(config, "pattern", field), string_of(config, "content", field));
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    const std::string content = string_of(config, "content", field);
    const int64_t start = int_or(config, "start", 0, field), stop = int_or(config, "stop", 0, field);
    if (content.empty() || utf8_char_length(content, 0) != content.size()) throw error(field + ".content", "is not one character");
    if (start < 0 || stop < 0 || start > 1'000'000 || stop > 1'000'000) throw error(field, "start/stop out of range");
    return std::make_unique<StripDecoder>(content, static_cast<std::size_t>(start), static_cast<std::size_t>(stop));
  }
  if (type == "Metaspace") {
    bool strip = bool_or(config, "add_prefix_space", true, field);
    if (const auto it = config.find("prepend_scheme"); it != config.end() && it->is_string())
      strip = it->get<std::string>() != "never";
    return std::make_unique<MetaspaceDecoder>(string_of(config, "replacement", field), strip);
  }
  if (type == "BPEDecoder") return std::make_unique<SuffixDecoder>(string_of(config, "suffix", field));
  if (type == "Sequence") {
    const auto& list = require(config, "decoders", field);
    if (!list.is_array()) throw error(field + ".decoders", "is not an array");
    std::vector<std::unique_ptr<Decoder>> steps;
    for (std::size_t i = 0; i < list.size(); ++i) {
      auto step = make_decoder(list[i], field + ".decoders[" + std::to_string(i) + "]");
      if (step) steps.push_back(std::move(step));
    }
    return std::make_unique<DecoderSequence>(std::move(steps));
  }
  throw error(field + ".type", "unknown or unsupported decoder '" + type +
                                   "' (supported: ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, BPEDecoder, Sequence)");
}

std::unique_ptr<PostProcessor> make_post_processor(const nlohmann::json& config, const std::string& field,
                                                   const TokenLookup& lookup, const IdCheck& known_id) {
  using namespace json_field;
  if (config.is_null()) return nullptr;
  const std::string type = type_of(config, field);
  if (type == "TemplateProcessing") return make_template(config, field, lookup, known_id);
  if (type == "ByteLevel") return std::make_unique<Passthrough>();
  if (type == "RobertaProcessing" || type == "BertProcessing") return make_cls_sep(config, field, known_id);
  if (type == "Sequence") {
    const auto& list = require(config, "processors", field);
    if (!list.is_array()) throw error(field + ".processors", "is not an array");
    std::vector<std::unique_ptr<PostProcessor>> steps;
    for (std::size_t i = 0; i < list.size(); ++i) {
      auto step = make_post_processor(list[i], field + ".processors[" + std::to_string(i) + "]", lookup, known_id);
      if (step) steps.push_back(std::move(step));
    }
    return std::make_unique<PostProcessorSequence>(std::move(steps));
  }
  throw error(field + ".type", "unknown or unsupported post-processor '" + type +
                                   "' (supported: TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence)");
}

}  // namespace namm::tokenizers
