#include "text/tokenizer.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <set>
#include <string>
#include <unistd.h>

namespace namm {
namespace {

std::vector<std::string> words_of(const Tokenizer& t, const std::vector<int64_t>& ids) {
  std::vector<std::string> out;
  for (int64_t id : ids) out.push_back(t.token(id));
  return out;
}

TEST(Tokenizer, BuiltinVocabularyIsSmallWithFixedSpecials) {
  const Tokenizer& t = builtin_tokenizer();
  EXPECT_GE(t.vocab_size(), 600);
  EXPECT_LE(t.vocab_size(), 1200);
  EXPECT_EQ(t.id("<pad>"), Tokenizer::kPad);
  EXPECT_EQ(t.id("<unk>"), Tokenizer::kUnk);
  EXPECT_EQ(t.id("<bos>"), Tokenizer::kBos);
  EXPECT_EQ(t.id("<eos>"), Tokenizer::kEos);
  EXPECT_EQ(t.id("<sep>"), Tokenizer::kSep);
  EXPECT_EQ(t.id("<q>"), Tokenizer::kQ);
  EXPECT_EQ(t.id("<a>"), Tokenizer::kA);
  EXPECT_EQ(builtin_vocabulary().names.size(), 384u);
  for (const std::string& name : builtin_vocabulary().names) EXPECT_TRUE(t.contains(name)) << name;
}

TEST(Tokenizer, NumbersAreSpelledDigitByDigitAndPunctuationSplits) {
  const Tokenizer& t = builtin_tokenizer();
  const auto ids = t.encode("Key 412: value.");
  EXPECT_EQ(words_of(t, ids),
            (std::vector<std::string>{"key", "4", "1", "2", ":", "value", "."}));
}

TEST(Tokenizer, SpecialTokensAreRecognisedAsWritten) {
  const Tokenizer& t = builtin_tokenizer();
  const auto ids = t.encode("<bos>the dog<q> 7 <a>");
  EXPECT_EQ(ids, (std::vector<int64_t>{Tokenizer::kBos, t.id("the"), t.id("dog"), Tokenizer::kQ,
                                       t.id("7"), Tokenizer::kA}));
}

TEST(Tokenizer, UnknownWordThrowsNamingItOrMapsToUnk) {
  const Tokenizer& t = builtin_tokenizer();
  try {
    t.encode("the xyzzy dog");
    FAIL() << "expected a throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'xyzzy'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("character 4"), std::string::npos) << e.what();
  }
  EXPECT_EQ(t.encode("the xyzzy dog", UnknownWord::kMapToUnk),
            (std::vector<int64_t>{t.id("the"), Tokenizer::kUnk, t.id("dog")}));
  EXPECT_THROW(t.encode("a <nope> b"), std::invalid_argument);
}

TEST(Tokenizer, DecodeThenEncodeReturnsTheSameIds) {
  const Tokenizer& t = builtin_tokenizer();
  std::mt19937_64 rng(7);
  std::vector<int64_t> ids;
  for (int i = 0; i < 5000; ++i) ids.push_back(static_cast<int64_t>(rng() % t.vocab_size()));
  EXPECT_EQ(t.encode(t.decode(ids)), ids);
  const std::string text = "the secret of baran is 4 1 2 7 . <q> what is it ? <a>";
  EXPECT_EQ(t.decode(t.encode(text)), text);
}

TEST(Tokenizer, DecodeCanSkipSpecialsAndRejectsBadIds) {
  const Tokenizer& t = builtin_tokenizer();
  EXPECT_EQ(t.decode({Tokenizer::kBos, t.id("dog"), Tokenizer::kEos}, true), "dog");
  EXPECT_THROW(t.decode({t.vocab_size()}), std::out_of_range);
  EXPECT_THROW(t.decode({-1}), std::out_of_range);
}

TEST(Tokenizer, JsonRoundTripKeepsTheVocabulary) {
  const Tokenizer& t = builtin_tokenizer();
  const Tokenizer back = Tokenizer::from_json(t.to_json());
  EXPECT_EQ(back.tokens(), t.tokens());
  EXPECT_EQ(back.fingerprint(), t.fingerprint());
  EXPECT_NO_THROW(t.check_same_vocabulary(back));
}

TEST(Tokenizer, SaveLoadRoundTripsThroughAFile) {
  const std::string path = ::testing::TempDir() + "tokenizer_" + std::to_string(::getpid()) + ".json";
  builtin_tokenizer().save(path);
  const Tokenizer back = Tokenizer::load(path);
  EXPECT_EQ(back.tokens(), builtin_tokenizer().tokens());
  std::remove(path.c_str());
  try {
    Tokenizer::load(path);
    FAIL() << "expected a throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, LoadingRejectsEditedOrForeignJson) {
  const std::string json = builtin_tokenizer().to_json();
  std::string edited = json;
  edited.replace(edited.find("\"river\""), 7, "\"rivet\"");
  EXPECT_THROW(Tokenizer::from_json(edited), std::invalid_argument);  // fingerprint
  std::string foreign = json;
  foreign.replace(foreign.find("namm-word-tokenizer"), 19, "some-other-tokenize");
  EXPECT_THROW(Tokenizer::from_json(foreign), std::invalid_argument);
  EXPECT_THROW(Tokenizer::from_json("{not json"), std::invalid_argument);
  EXPECT_THROW(Tokenizer::from_json("{\"format\": \"namm-word-tokenizer\"}"), std::invalid_argument);
}

TEST(Tokenizer, ConstructorRejectsMalformedVocabularies) {
  std::vector<std::string> tokens = builtin_tokenizer().tokens();
  auto duplicate = tokens;
  duplicate.push_back("river");
  EXPECT_THROW(Tokenizer{duplicate}, std::invalid_argument);
  auto moved = tokens;
  std::swap(moved[0], moved[1]);
  EXPECT_THROW(Tokenizer{moved}, std::invalid_argument);
  auto upper = tokens;
  upper.push_back("River");
  EXPECT_THROW(Tokenizer{upper}, std::invalid_argument);
  std::vector<std::string> no_digits(tokens.begin(), tokens.begin() + Tokenizer::kNumSpecial);
  EXPECT_THROW(Tokenizer{no_digits}, std::invalid_argument);
}

TEST(Tokenizer, CheckSameVocabularyNamesTheFirstDifference) {
  std::vector<std::string> tokens = builtin_tokenizer().tokens();
  tokens[20] = "zzzz";
  const Tokenizer other(tokens);
  try {
    builtin_tokenizer().check_same_vocabulary(other);
    FAIL() << "expected a throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("id 20"), std::string::npos) << e.what();
  }
  EXPECT_NE(other.fingerprint(), builtin_tokenizer().fingerprint());
}

}  // namespace
}  // namespace namm
