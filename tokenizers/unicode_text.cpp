#include "tokenizers/unicode_text.h"

#include <utf8proc.h>

#include <cstdlib>
#include <memory>
#include <stdexcept>

namespace namm::tokenizers {
namespace {

// Length and validity of the sequence at pos, per the Unicode table of
// well-formed UTF-8 byte sequences (Table 3-7). Returns 0 when ill-formed;
// *maximal_subpart is then how many bytes form the maximal invalid prefix
// (at least 1), which is what one U+FFFD replaces.
std::size_t well_formed_length(std::string_view text, std::size_t pos,
                               std::size_t* maximal_subpart) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char b0 = byte(pos);
  const std::size_t left = text.size() - pos;
  *maximal_subpart = 1;
  if (b0 < 0x80) return 1;
  std::size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;  // nothing past U+10FFFF
  } else {
    return 0;
  }
  for (std::size_t k = 1; k < need; ++k) {
    if (k >= left) return 0;
    const unsigned char b = byte(pos + k);
    const unsigned char want_lo = k == 1 ? lo : 0x80;
    const unsigned char want_hi = k == 1 ? hi : 0xBF;
    if (b < want_lo || b > want_hi) return 0;
    *maximal_subpart = k + 1;
  }
  return need;
}

}  // namespace

std::size_t utf8_char_length(std::string_view text, std::size_t pos) {
  std::size_t subpart;
  const std::size_t n = well_formed_length(text, pos, &subpart);
  return n == 0 ? 1 : n;
}

char32_t utf8_decode_at(std::string_view text, std::size_t pos, std::size_t* length) {
  std::size_t subpart;
  const std::size_t n = well_formed_length(text, pos, &subpart);
  if (n == 0) {
    *length = 1;
    return 0xFFFD;
  }
  *length = n;
  const auto b = [&](std::size_t i) { return static_cast<char32_t>(static_cast<unsigned char>(text[pos + i])); };
  switch (n) {
    case 1: return b(0);
    case 2: return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
    case 3: return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    default: return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  }
}

void utf8_append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::size_t utf8_first_invalid(std::string_view text) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t subpart;
    const std::size_t n = well_formed_length(text, pos, &subpart);
    if (n == 0) return pos;
    pos += n;
  }
  return std::string_view::npos;
}

bool utf8_is_valid(std::string_view text) { return utf8_first_invalid(text) == std::string_view::npos; }

std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    std::size_t subpart;
    const std::size_t n = well_formed_length(bytes, pos, &subpart);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      pos += subpart;
    } else {
      out.append(bytes.substr(pos, n));
      pos += n;
    }
  }
  return out;
}

std::string unicode_normalize(std::string_view text, NormalForm form) {
  int options = UTF8PROC_STABLE;
  switch (form) {
    case NormalForm::kNfc: options |= UTF8PROC_COMPOSE; break;
    case NormalForm::kNfd: options |= UTF8PROC_DECOMPOSE; break;
    case NormalForm::kNfkc: options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    case NormalForm::kNfkd: options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
  }
  utf8proc_uint8_t* mapped = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                          static_cast<utf8proc_ssize_t>(text.size()), &mapped,
                                          static_cast<utf8proc_option_t>(options));
  if (n < 0) throw std::invalid_argument(std::string("Unicode normalisation failed: ") + utf8proc_errmsg(n));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(mapped, &std::free);
  return std::string(reinterpret_cast<const char*>(mapped), static_cast<std::size_t>(n));
}

std::string unicode_lowercase(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t n;
    const char32_t cp = utf8_decode_at(text, pos, &n);
    utf8_append(out, static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))));
    pos += n;
  }
  return out;
}

bool is_unicode_whitespace(char32_t cp) {
  // PropList.txt, White_Space: a fixed list since Unicode 6.3.
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

std::string_view trim_whitespace(std::string_view text, bool left, bool right) {
  std::size_t begin = 0, end = text.size();
  if (left) {
    while (begin < end) {
      std::size_t n;
      if (!is_unicode_whitespace(utf8_decode_at(text, begin, &n))) break;
      begin += n;
    }
  }
  if (right) {
    while (end > begin) {
      std::size_t start = end - 1;
      while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
      std::size_t n;
      if (!is_unicode_whitespace(utf8_decode_at(text, start, &n)) || start + n != end) break;
      end = start;
    }
  }
  return text.substr(begin, end - begin);
}

}  // namespace namm::tokenizers
