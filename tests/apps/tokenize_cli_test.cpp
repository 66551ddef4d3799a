// `namm tokenize`: ids as a JSON array, --decode back, both tokenizer
// formats, and one clear line for a bad tokenizer or bad text.
#include "tests/run_command.h"
#include "tests/temp_files.h"
#include "tests/test_dir.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>

namespace namm {
namespace {

namespace fs = std::filesystem;
using test_support::read_text;
using test_support::run_namm;
using test_support::RunResult;
using test_support::write_text;

class TokenizeCli : public test_support::TempDirTest {
 protected:
  TokenizeCli() : TempDirTest("namm_tokenize_cli") {}
};

const std::string kTokenizers = NAMM_TOKENIZER_FILES;

TEST_F(TokenizeCli, EncodesToAJsonArrayAndDecodesBack) {
  write_text(path("text.txt"), "Hello, world! 123 \xE4\xB8\xAD\xE6\x96\x87");
  const RunResult encoded = run_namm("tokenize --tokenizer " + kTokenizers + "/llama2 --add-special-tokens --text-file " +
                                     path("text.txt") + " --out " + path("ids.json"));
  ASSERT_EQ(encoded.exit_code, 0) << encoded.output;
  const std::string ids = read_text(path("ids.json"));
  EXPECT_EQ(ids.rfind("[1,", 0), 0u) << ids;  // Llama 2 adds <s> = 1
  const RunResult decoded = run_namm("tokenize --tokenizer " + kTokenizers + "/llama2/tokenizer.json --decode --skip-special-tokens --ids-file " +
                                     path("ids.json"));
  ASSERT_EQ(decoded.exit_code, 0) << decoded.output;
  EXPECT_EQ(decoded.output, "Hello, world! 123 \xE4\xB8\xAD\xE6\x96\x87");
}

TEST_F(TokenizeCli, ReadsTheBuiltinWordVocabularyToo) {
  write_text(path("text.txt"), "what is the secret code ?");
  const RunResult result = run_namm("tokenize --tokenizer " NAMM_MODELS_DIR "/lm --text-file " + path("text.txt"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output.front(), '[');
  EXPECT_EQ(std::count(result.output.begin(), result.output.end(), ','), 5) << result.output;
}

TEST_F(TokenizeCli, BadTokenizerOrTextFailsWithOneLineNamingIt) {
  write_text(path("text.txt"), "fine text");
  fs::create_directories(path("model"));
  write_text(path("model/tokenizer.json"), R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                                               "normalizer": {"type": "Precompiled"}})");
  RunResult result = run_namm("tokenize --tokenizer " + path("model") + " --text-file " + path("text.txt") + " --out " + path("ids.json"));
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find(path("model/tokenizer.json") + ": normalizer.type: unknown or unsupported normalizer 'Precompiled'"),
            std::string::npos) << result.output;
  EXPECT_EQ(std::count(result.output.begin(), result.output.end(), '\n'), 1) << result.output;
  EXPECT_FALSE(fs::exists(path("ids.json")));
  EXPECT_FALSE(test_support::has_temporary(path("ids.json")));

  write_text(path("bad.txt"), "cut \xE4\xB8");
  result = run_namm("tokenize --tokenizer " + kTokenizers + "/qwen3 --text-file " + path("bad.txt"));
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find(path("bad.txt") + ": text is not valid UTF-8 (byte 4)"), std::string::npos) << result.output;

  write_text(path("ids.json"), "[1, 2, 999999]");
  result = run_namm("tokenize --tokenizer " + kTokenizers + "/llama2 --decode --ids-file " + path("ids.json"));
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("token id 999999 is outside the vocabulary"), std::string::npos) << result.output;

  result = run_namm("tokenize --tokenizer " + kTokenizers + "/llama2 --decode");
  EXPECT_EQ(result.exit_code, 2) << result.output;
}

}  // namespace
}  // namespace namm
