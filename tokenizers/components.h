// The pipeline stages of a Hugging Face tokenizer.json around its model:
//   normalizer      text -> text           (NFC, Replace, Prepend, ...)
//   pre_tokenizer   text -> pieces         (Split, ByteLevel, Metaspace, ...)
//   post_processor  ids  -> ids            (TemplateProcessing adds <s>, ...)
//   decoder         tokens -> text pieces  (ByteLevel, ByteFallback, ...)
// Each make_* reads one JSON object (null: the stage is absent) and throws
// std::invalid_argument naming the field path and the problem, e.g.
// "pre_tokenizer.pretokenizers[1].type: unknown pre-tokenizer 'Foo'".
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace namm::tokenizers {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string normalize(std::string text) const = 0;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  /// Splits each piece further. section: index of the text section (the
  /// spans between added tokens) the pieces come from; Metaspace's
  /// prepend_scheme "first" prepends only in section 0.
  virtual std::vector<std::string> split(std::vector<std::string> pieces, std::size_t section) const = 0;
};

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  /// The final ids of one encoded sequence; with add_special_tokens false
  /// only the sequence itself.
  virtual std::vector<int32_t> process(std::vector<int32_t> ids, bool add_special_tokens) const = 0;
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  /// is_added: whether a token string is an added token (ByteLevel passes
  /// those through verbatim instead of mapping them back to bytes).
  using IsAdded = std::function<bool(const std::string&)>;
  virtual std::vector<std::string> decode_chain(std::vector<std::string> tokens, const IsAdded& is_added) const = 0;
};

/// token string -> id, for post-processors that name special tokens.
using TokenLookup = std::function<int32_t(const std::string& token, const std::string& field)>;
/// Whether an id names a token (post-processors' ids are checked at load).
using IdCheck = std::function<bool(int32_t id)>;

std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& config, const std::string& field);
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& config, const std::string& field);
std::unique_ptr<PostProcessor> make_post_processor(const nlohmann::json& config, const std::string& field,
                                                   const TokenLookup& lookup, const IdCheck& known_id);
std::unique_ptr<Decoder> make_decoder(const nlohmann::json& config, const std::string& field);

/// GPT-2's byte <-> printable code point table (ByteLevel pre-tokenizer and
/// decoder): bytes 33-126, 161-172 and 174-255 map to themselves, the other
/// 68 to U+0100 onwards, in order.
const std::string& byte_to_unicode(unsigned char byte);
/// -1 when cp is not one of the 256 table entries.
int unicode_to_byte(char32_t cp);

}  // namespace namm::tokenizers
