// Text from files and command lines made safe to print in a message: bytes
// that are control characters (terminal escapes) or not UTF-8 (raw header
// bytes) are written as \xNN, and long text is cut, so an error line stays one line.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace namm {

/// text with control bytes (C0, DEL, and the C1 controls U+0080-U+009F) and
/// bytes that are not valid UTF-8 written as "\xNN"; other UTF-8 (names in
/// any script) is kept. Cut after max_bytes bytes of input (then "...").
inline std::string printable(std::string_view text, size_t max_bytes = 200) {
  static const char kHex[] = "0123456789abcdef";
  const auto escape = [](std::string& out, unsigned char c) {
    out += "\\x";
    out += kHex[c >> 4];
    out += kHex[c & 15];
  };
  std::string out;
  const size_t n = text.size() < max_bytes ? text.size() : max_bytes;
  for (size_t i = 0; i < n;) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    // a well-formed multi-byte UTF-8 sequence that is not a C1 control stays
    const size_t length = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    bool ok = length > 0 && i + length <= n;
    for (size_t k = 1; ok && k < length; ++k) ok = (static_cast<unsigned char>(text[i + k]) & 0xc0) == 0x80;
    if (ok && c == 0xc2 && static_cast<unsigned char>(text[i + 1]) < 0xa0) ok = false;  // U+0080-U+009F
    if (ok) {
      out.append(text.substr(i, length));
      i += length;
    } else {
      escape(out, c);
      ++i;
    }
  }
  if (text.size() > max_bytes) out += "...";
  return out;
}

}  // namespace namm
