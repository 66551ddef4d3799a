#include "tokenizers/unicode_text.h"

#include <gtest/gtest.h>

#include "tokenizers/components.h"

namespace namm::tokenizers {
namespace {

TEST(Utf8, RejectsOverlongsSurrogatesAndTruncatedSequences) {
  EXPECT_TRUE(utf8_is_valid("plain ascii, é, 中, 😀"));
  EXPECT_FALSE(utf8_is_valid("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(utf8_is_valid("\xED\xA0\x80"));      // a surrogate
  EXPECT_FALSE(utf8_is_valid("\xF4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_FALSE(utf8_is_valid("ab\xE4\xB8"));        // cut in the middle
  EXPECT_EQ(utf8_first_invalid("ab\xE4\xB8"), 2u);
}

TEST(Utf8, LossyDecodingReplacesEachMaximalInvalidSubpartOnce) {
  // E4 B8 is a truncated 3-byte sequence: one U+FFFD; FF alone: another
  EXPECT_EQ(utf8_lossy("a\xE4\xB8" "b\xFF" "c"), "a\xEF\xBF\xBD" "b\xEF\xBF\xBD" "c");
  EXPECT_EQ(utf8_lossy("\xE4\xB8\xAD"), "中");
}

TEST(Unicode, NfcComposesAndNfdDecomposes) {
  EXPECT_EQ(unicode_normalize("e\xCC\x81", NormalForm::kNfc), "\xC3\xA9");
  EXPECT_EQ(unicode_normalize("\xC3\xA9", NormalForm::kNfd), "e\xCC\x81");
  EXPECT_EQ(unicode_normalize("\xEF\xAC\x81", NormalForm::kNfkc), "fi");  // the fi ligature
}

TEST(Unicode, TrimsWhiteSpacePropertyCodePointsOnly) {
  EXPECT_EQ(trim_whitespace("\t \xE3\x80\x80x y\xC2\xA0\n", true, true), "x y");
  EXPECT_EQ(trim_whitespace("  x  ", true, false), "x  ");
  EXPECT_EQ(trim_whitespace("\xE2\x80\x8Bx", true, true), "\xE2\x80\x8Bx");  // zero width space is not White_Space
}

TEST(ByteLevelTable, MapsEveryByteToADistinctCodePointAndBack) {
  EXPECT_EQ(byte_to_unicode(' '), "\xC4\xA0");  // U+0120, GPT-2's space
  EXPECT_EQ(byte_to_unicode('A'), "A");
  for (int b = 0; b < 256; ++b) {
    std::size_t n;
    EXPECT_EQ(unicode_to_byte(utf8_decode_at(byte_to_unicode(static_cast<unsigned char>(b)), 0, &n)), b);
  }
}

}  // namespace
}  // namespace namm::tokenizers
