// The tokenizer.json pipeline on tiny handmade files: merge order, byte
// fallback, unk fusing, added tokens, split behaviours, and the errors for
// bad files and bad input.
#include "tokenizers/hf_tokenizer.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "tests/test_dir.h"

namespace namm::tokenizers {
namespace {

using nlohmann::json;
using test_support::message_of;

// A BPE over the letters a, b, c with merges "a b" (rank 0), "b c", "ab c".
json tiny_bpe() {
  return json{{"type", "BPE"},
              {"vocab", {{"<unk>", 0}, {"a", 1}, {"b", 2}, {"c", 3}, {"ab", 4}, {"bc", 5}, {"abc", 6}, {" ", 7}}},
              {"merges", {"a b", "b c", "ab c"}},
              {"unk_token", "<unk>"}};
}

json file_with(json model, json extra = json::object()) {
  json j{{"version", "1.0"}, {"added_tokens", json::array()}, {"normalizer", nullptr},
         {"pre_tokenizer", nullptr}, {"post_processor", nullptr}, {"decoder", nullptr}, {"model", std::move(model)}};
  for (auto& [key, value] : extra.items()) j[key] = value;
  return j;
}

HfTokenizer parse(const json& j) { return HfTokenizer::parse(j.dump(), "", "tiny.json"); }

TEST(Bpe, AppliesTheLowestRankedMergeFirst) {
  const auto tok = parse(file_with(tiny_bpe()));
  // "abc": a+b (rank 0) wins over b+c (rank 1), then ab+c
  EXPECT_EQ(tok.encode("abc", false), (std::vector<int32_t>{6}));
  // "bca": b+c, then a stays
  EXPECT_EQ(tok.encode("bca", false), (std::vector<int32_t>{5, 1}));
}

TEST(Bpe, BreaksRankTiesTowardsTheLeft) {
  json model = tiny_bpe();
  model["vocab"]["aa"] = 8;
  model["merges"] = {"a a"};
  const auto tok = parse(file_with(model));
  EXPECT_EQ(tok.encode("aaa", false), (std::vector<int32_t>{8, 1}));
}

TEST(Bpe, UnknownCharactersFallBackToBytesOrFuseIntoOneUnk) {
  json model = tiny_bpe();
  model["fuse_unk"] = true;
  EXPECT_EQ(parse(file_with(model)).encode("a\xC3\xA9\xC3\xA9" "b", false), (std::vector<int32_t>{1, 0, 2}));

  model["byte_fallback"] = true;
  model["vocab"]["<0xC3>"] = 20;
  model["vocab"]["<0xA9>"] = 21;
  json with_decoder = file_with(model, {{"decoder", {{"type", "Sequence"}, {"decoders", {{{"type", "ByteFallback"}}, {{"type", "Fuse"}}}}}}});
  const auto tok = parse(with_decoder);
  const auto ids = tok.encode("a\xC3\xA9" "b", false);
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 20, 21, 2}));
  EXPECT_EQ(tok.decode(ids, false), "a\xC3\xA9" "b");
}

TEST(Bpe, IgnoreMergesTakesAWholeWordFromTheVocabulary) {
  json model = tiny_bpe();
  model["vocab"]["ca"] = 9;  // no merge builds "ca"
  model["ignore_merges"] = true;
  EXPECT_EQ(parse(file_with(model)).encode("ca", false), (std::vector<int32_t>{9}));
  model["ignore_merges"] = false;
  EXPECT_EQ(parse(file_with(model)).encode("ca", false), (std::vector<int32_t>{3, 1}));
}

TEST(AddedTokens, MatchLongestFirstAndStripWhitespaceWhenAsked) {
  json j = file_with(tiny_bpe());
  j["added_tokens"] = {{{"id", 30}, {"content", "<x>"}, {"special", true}},
                       {{"id", 31}, {"content", "<x>>"}, {"special", false}, {"lstrip", true}}};
  const auto tok = parse(j);
  EXPECT_EQ(tok.encode("a<x>b", false), (std::vector<int32_t>{1, 30, 2}));
  EXPECT_EQ(tok.encode("a  <x>>b", false), (std::vector<int32_t>{1, 31, 2}));  // spaces swallowed
  EXPECT_TRUE(tok.is_special(30));
  EXPECT_FALSE(tok.is_special(31));
  EXPECT_EQ(tok.decode({1, 30, 2}, true), "a b");  // no decoder: tokens joined by spaces
}

TEST(PreTokenizers, SplitBehavioursPlaceTheDelimiter) {
  const auto ids_for = [](const std::string& behavior) {
    json j = file_with(tiny_bpe(), {{"pre_tokenizer", {{"type", "Split"}, {"pattern", {{"String", "b"}}},
                                                        {"behavior", behavior}, {"invert", false}}}});
    return parse(j).encode("abc", false);
  };
  EXPECT_EQ(ids_for("Removed"), (std::vector<int32_t>{1, 3}));
  EXPECT_EQ(ids_for("Isolated"), (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(ids_for("MergedWithPrevious"), (std::vector<int32_t>{4, 3}));
  EXPECT_EQ(ids_for("MergedWithNext"), (std::vector<int32_t>{1, 5}));
}

TEST(PostProcessors, TemplateAddsBosOnlyWhenAsked) {
  json j = file_with(tiny_bpe(), {{"post_processor",
                                   {{"type", "TemplateProcessing"},
                                    {"single", {{{"SpecialToken", {{"id", "<unk>"}, {"type_id", 0}}}},
                                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
                                    {"special_tokens", {{"<unk>", {{"id", "<unk>"}, {"ids", {0}}, {"tokens", {"<unk>"}}}}}}}}});
  const auto tok = parse(j);
  EXPECT_EQ(tok.encode("ab", true), (std::vector<int32_t>{0, 4}));
  EXPECT_EQ(tok.encode("ab", false), (std::vector<int32_t>{4}));
}

TEST(BadFiles, NameTheFileAndTheField) {
  json unknown_normalizer = file_with(tiny_bpe(), {{"normalizer", {{"type", "Precompiled"}}}});
  std::string m = message_of([&] { parse(unknown_normalizer); });
  EXPECT_NE(m.find("tiny.json: normalizer.type: unknown or unsupported normalizer 'Precompiled'"), std::string::npos) << m;

  json nested = file_with(tiny_bpe(), {{"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", {{{"type", "Bert"}}}}}}});
  m = message_of([&] { parse(nested); });
  EXPECT_NE(m.find("pre_tokenizer.pretokenizers[0].type"), std::string::npos) << m;

  json unigram = file_with(json{{"type", "Unigram"}, {"vocab", json::array()}});
  m = message_of([&] { parse(unigram); });
  EXPECT_NE(m.find("model.type: unsupported model 'Unigram'"), std::string::npos) << m;

  json bad_merge = tiny_bpe();
  bad_merge["merges"] = {"a b", "a z"};
  m = message_of([&] { parse(file_with(bad_merge)); });
  EXPECT_NE(m.find("model.merges[1]: \"z\" is not in model.vocab"), std::string::npos) << m;

  json bad_regex = file_with(tiny_bpe(), {{"pre_tokenizer", {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}},
                                                              {"behavior", "Isolated"}}}});
  m = message_of([&] { parse(bad_regex); });
  EXPECT_NE(m.find("pre_tokenizer.pattern: regex does not compile"), std::string::npos) << m;

  json huge_id = tiny_bpe();
  huge_id["vocab"]["d"] = 2000000000;
  m = message_of([&] { parse(file_with(huge_id)); });
  EXPECT_NE(m.find("out of range"), std::string::npos) << m;

  json unknown_special = file_with(tiny_bpe(), {{"post_processor",
                                               {{"type", "TemplateProcessing"},
                                                {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}}},
                                                {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {20}}}}}}}}});
  m = message_of([&] { parse(unknown_special); });  // found by fuzz/fuzz_tokenizer_json
  EXPECT_NE(m.find("post_processor.special_tokens[\"<s>\"].ids: id 20 names no token"), std::string::npos) << m;

  m = message_of([&] { HfTokenizer::parse("{\"model\": {\"type\": \"BPE\", \"vocab\": {", "", "cut.json"); });
  EXPECT_NE(m.find("cut.json: not valid JSON"), std::string::npos) << m;
}

TEST(BadFiles, AMissingFileIsNamed) {
  const std::string m = message_of([] { HfTokenizer::load("/nonexistent/dir/tokenizer.json"); });
  EXPECT_NE(m.find("/nonexistent/dir/tokenizer.json: No such file"), std::string::npos) << m;
}

TEST(BadInput, InvalidUtf8AndUnknownIdsAreRefused) {
  const auto tok = parse(file_with(tiny_bpe()));
  EXPECT_NE(message_of([&] { tok.encode("ab\xFF", false); }).find("not valid UTF-8 (byte 2)"), std::string::npos);
  EXPECT_NE(message_of([&] { tok.decode({1, 99}, false); }).find("token id 99 is outside the vocabulary"), std::string::npos);
}

}  // namespace
}  // namespace namm::tokenizers
