// UTF-8 text helpers for the Hugging Face tokenizer pipeline: walking code
// points, Unicode normalisation forms and case (utf8proc), the White_Space
// property, and lossy UTF-8 decoding (invalid bytes become U+FFFD, as
// Rust's String::from_utf8_lossy and the WHATWG TextDecoder do).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace namm::tokenizers {

/// Length in bytes of the UTF-8 sequence starting at text[pos] (1 for an
/// invalid byte, so a walk always advances). pos < text.size().
std::size_t utf8_char_length(std::string_view text, std::size_t pos);

/// Decodes the code point at text[pos]; sets *length to its byte length.
/// An invalid sequence decodes as U+FFFD with length 1.
char32_t utf8_decode_at(std::string_view text, std::size_t pos, std::size_t* length);

/// Appends the UTF-8 encoding of code point cp to out.
void utf8_append(std::string& out, char32_t cp);

/// True when text is well-formed UTF-8 (no overlongs, surrogates or values
/// past U+10FFFF). Input text is checked with it before tokenising.
bool utf8_is_valid(std::string_view text);

/// Byte offset of the first ill-formed sequence, or npos.
std::size_t utf8_first_invalid(std::string_view text);

/// Replaces every ill-formed subsequence by U+FFFD (maximal-subpart rule).
std::string utf8_lossy(std::string_view bytes);

enum class NormalForm { kNfc, kNfd, kNfkc, kNfkd };
/// The Unicode normalisation form of valid UTF-8 text (utf8proc).
std::string unicode_normalize(std::string_view text, NormalForm form);

/// Lower-cases every code point (simple case mapping, utf8proc).
std::string unicode_lowercase(std::string_view text);

/// The Unicode White_Space property (what Rust's char::is_whitespace tests).
bool is_unicode_whitespace(char32_t cp);

/// text without leading (and/or trailing) White_Space code points.
std::string_view trim_whitespace(std::string_view text, bool left, bool right);

}  // namespace namm::tokenizers
