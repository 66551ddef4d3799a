// Our ids against an independent implementation's, on four real
// tokenizer.json files and a corpus of prose in many scripts, code, emoji,
// whitespace runs, numbers and special-token strings
// (tests/fixtures/make_tokenizer_fixtures.mjs wrote the expected ids).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "tests/test_dir.h"
#include "tokenizers/hf_tokenizer.h"

namespace namm::tokenizers {
namespace {

const std::string kFixtures = NAMM_FIXTURES_DIR "/tokenizers";
const std::string kFiles = NAMM_TOKENIZER_FILES;

class ReferenceParity : public ::testing::TestWithParam<std::string> {};

TEST_P(ReferenceParity, EveryTextGivesTheReferenceIdsAndDecodesBack) {
  const std::string name = GetParam();
  const auto corpus = nlohmann::json::parse(test_support::read_text(kFixtures + "/corpus.json"));
  const auto expected = nlohmann::json::parse(test_support::read_text(kFixtures + "/expected.json"));
  const auto& cases = expected["models"][name]["cases"];
  ASSERT_EQ(cases.size(), corpus.size());
  const HfTokenizer tokenizer = HfTokenizer::load(kFiles + "/" + name);

  std::size_t identical = 0, ids = 0;
  for (std::size_t i = 0; i < corpus.size(); ++i) {
    const std::string text = corpus[i].get<std::string>();
    const auto want = cases[i]["ids"].get<std::vector<int32_t>>();
    const auto want_special = cases[i]["ids_with_special"].get<std::vector<int32_t>>();
    const auto got = tokenizer.encode(text, false);
    const auto got_special = tokenizer.encode(text, true);
    EXPECT_EQ(got, want) << name << " text " << i << ": " << text;
    EXPECT_EQ(got_special, want_special) << name << " text " << i << " with special tokens";
    EXPECT_EQ(tokenizer.decode(got_special, false), cases[i]["decoded"].get<std::string>()) << name << " text " << i;
    EXPECT_EQ(tokenizer.decode(got_special, true), cases[i]["decoded_skipping_special"].get<std::string>())
        << name << " text " << i;
    identical += got == want;
    ids += want.size();
  }
  EXPECT_EQ(identical, corpus.size()) << name << ": " << identical << " of " << corpus.size() << " texts identical";
  EXPECT_GT(ids, 1500u);  // the corpus is not trivially small
}

INSTANTIATE_TEST_SUITE_P(RealTokenizers, ReferenceParity, ::testing::Values("llama3", "qwen3", "llama2", "gemma3"));

TEST(RealTokenizers, SpecialTokensComeFromTheFileAndItsConfig) {
  const HfTokenizer llama2 = HfTokenizer::load(kFiles + "/llama2");
  EXPECT_EQ(llama2.bos_id(), 1);
  EXPECT_EQ(llama2.eos_id(), 2);
  EXPECT_TRUE(llama2.is_special(1));
  EXPECT_EQ(llama2.encode("<s>", false), std::vector<int32_t>{1});  // written in the text, it is the token
  EXPECT_EQ(llama2.vocab_size(), 32000);

  const HfTokenizer llama3 = HfTokenizer::load(kFiles + "/llama3/tokenizer.json");
  EXPECT_EQ(llama3.vocab_size(), 128256);
  EXPECT_EQ(llama3.token_to_id("<|begin_of_text|>"), 128000);
  EXPECT_EQ(llama3.id_to_token(128001), "<|end_of_text|>");
}

}  // namespace
}  // namespace namm::tokenizers
