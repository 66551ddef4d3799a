// Pins vision/video_qa.h and vision/train_video.h (and, from outside, the
// train-video / video-qa / eval-video commands) on tiny models and tiny
// scenes: frames sampled as the decoder samples them, answers and memory
// accounting under a policy, the picture's size, the evaluation's rows and
// eviction shares, training that learns and resumes bitwise, and one-line
// errors that leave no output behind.
#include "vision/train_video.h"
#include "vision/video_qa.h"
#include "tests/temp_files.h"

#include "core/atomic_file.h"
#include "core/namm_model.h"
#include "tests/run_command.h"
#include "vision/llava_checkpoint.h"
#include "vision/video_decoder.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

namespace namm {
namespace {

namespace fs = std::filesystem;

const std::string kDemo = std::string(NAMM_FIXTURES_DIR) + "/../../scenes/video/demo";

// a fresh directory under the system temp dir, removed at scope exit
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name) {
    path = fs::temp_directory_path() / ("namm_videoqa_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// tiny everything: 32 px frames, patch 8 -> 4x4 grid pooled to 2x2 = 4 tokens per frame
TrainVideoOptions tiny_options(const std::string& out) {
  TrainVideoOptions o;
  o.lm_layers = 2;
  o.lm_hidden = 32;
  o.lm_heads = 2;
  o.lm_kv_heads = 2;
  o.lm_intermediate = 64;
  o.vision_layers = 2;
  o.vision_width = 32;
  o.vision_heads = 2;
  o.vision_mlp = 64;
  o.image_size = 32;
  o.patch_size = 8;
  o.scene_size = 32;
  o.frames = 16;
  o.batch = 4;
  o.steps = 30;
  o.lr = 2e-2;
  o.warmup_steps = 2;
  // one thread: tiny ops in two OpenMP threads crawl on a loaded machine (every region waits for both)
  o.threads = 1;
  o.log_every = 1000;
  o.checkpoint_every = 1000;
  o.eval_count = 0;
  o.out_dir = out;
  return o;
}

VideoModel tiny_model() {
  const TrainVideoOptions o = tiny_options("unused");
  at::manual_seed(3);
  return VideoModel(o.model_config(o.fresh_lm_config()));
}

// a NAMM with random (seeded) weights: it evicts some tokens and keeps others
std::shared_ptr<const NammModel> random_namm() {
  NammModel model = NammModel::zeros(NammConfig{});
  at::manual_seed(11);
  model.params = at::randn({model.params.size(0)}) * 0.5;
  return std::make_shared<const NammModel>(std::move(model));
}

std::string demo_clip() { return kDemo + "/appear_colour_test_000000.mp4"; }

// width and height from a PNG's IHDR chunk; {-1, -1} if it is not a PNG
std::pair<int, int> png_size(const std::string& path) {
  const std::string bytes = read_file(path);
  if (bytes.size() < 24 || bytes.compare(1, 3, "PNG") != 0) return {-1, -1};
  auto be32 = [&](size_t at) {
    return (static_cast<uint8_t>(bytes[at]) << 24) | (static_cast<uint8_t>(bytes[at + 1]) << 16) |
           (static_cast<uint8_t>(bytes[at + 2]) << 8) | static_cast<uint8_t>(bytes[at + 3]);
  };
  return {static_cast<int>(be32(16)), static_cast<int>(be32(20))};
}

// ---------------------------------------------------------------------------
// frames

TEST(UniformFrameIndices, PicksTheFrameOnScreenAtEachSampleTime) {
  // 36 frames, 16 samples: t_i = (i + 0.5) * 36 / 16 frames
  const std::vector<int64_t> expected = {1, 3, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34};
  EXPECT_EQ(uniform_frame_indices(36, 16), expected);
  // fewer frames than samples: a frame repeats, never skips past the end
  EXPECT_EQ(uniform_frame_indices(3, 6), (std::vector<int64_t>{0, 0, 1, 1, 2, 2}));
  EXPECT_THROW(uniform_frame_indices(0, 4), std::invalid_argument);
}

TEST(UniformFrameIndices, MatchesTheDecoderOnTheDemoClip) {
  const SceneIndex index = read_scene_index(kDemo + "/index.json");
  const SceneIndexEntry& entry = index.clips.front();
  const SampledClip clip = read_clip(kDemo + "/" + entry.clip, 16, &entry.informative_frames);
  EXPECT_EQ(clip.frame_indices, uniform_frame_indices(entry.num_frames, 16));
  // and the rendered twin of that clip samples the same frames with the same marks
  const VideoScene scene = make_scene(entry.kind, entry.split, entry.index, index.options);
  const SampledClip rendered = sample_scene(scene, 16);
  EXPECT_EQ(rendered.frame_indices, clip.frame_indices);
  EXPECT_EQ(rendered.informative, clip.informative);
  EXPECT_NE(std::count(clip.informative.begin(), clip.informative.end(), true), 0);
}

TEST(EncodeQuestion, NamesTheUnknownWord) {
  EXPECT_FALSE(encode_question("which star arrived ?").empty());
  try {
    encode_question("which zebra arrived ?");
    FAIL() << "no error for an unknown word";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("zebra"), std::string::npos) << e.what();
  }
}

TEST(NammTunedOnVideo, ReadsDomainAndTasks) {
  EXPECT_FALSE(namm_tuned_on_video(R"({"tasks": ["kv_retrieval", "passkey"]})"));
  EXPECT_TRUE(namm_tuned_on_video(R"({"domain": "video"})"));
  EXPECT_TRUE(namm_tuned_on_video(R"({"tasks": ["flash_count"]})"));
  EXPECT_FALSE(namm_tuned_on_video("not json"));
}

// ---------------------------------------------------------------------------
// answering

TEST(AnswerClip, FullCacheKeepsEveryTokenAndReportsTheFields) {
  at::set_num_threads(1);
  const VideoModel model = tiny_model();
  const SampledClip clip = read_clip(demo_clip(), 16);
  VideoQaOptions qa;
  qa.policy.name = "full";
  const std::vector<int64_t> question = encode_question("which house arrived ?");
  const VideoQaOutcome out = answer_clip(model, clip, question, qa);
  EXPECT_EQ(out.layout.visual_tokens(), 16 * 4);
  EXPECT_GE(out.tokens_seen, out.layout.length());
  EXPECT_DOUBLE_EQ(out.final_cache_fraction, 1.0);
  EXPECT_EQ(out.evicted_visual, 0);
  EXPECT_EQ(out.kv_bytes_used, out.kv_bytes_full);
  EXPECT_EQ(out.kept_per_frame.sizes(), (at::IntArrayRef{2, 16}));
  EXPECT_GT(out.seconds, 0.0);
}

TEST(AnswerClip, BudgetedPolicyEvictsAndCountsUninformativeEvictions) {
  at::set_num_threads(1);
  const VideoModel model = tiny_model();
  const SceneIndex index = read_scene_index(kDemo + "/index.json");
  const SceneIndexEntry& entry = index.clips.front();
  const SampledClip clip = read_clip(kDemo + "/" + entry.clip, 16, &entry.informative_frames);
  VideoQaOptions qa;
  qa.policy.name = "recency";
  qa.policy.budget = Budget{0, 0.25};
  qa.delay = 16;
  const VideoQaOutcome out = answer_clip(model, clip, encode_question(entry.question), qa);
  EXPECT_GT(out.policy_updates, 0);
  EXPECT_LT(out.final_cache_fraction, 0.6);
  EXPECT_LT(out.kv_bytes_used, out.kv_bytes_full);
  EXPECT_GT(out.evicted_visual, 0);
  EXPECT_GT(out.evicted_uninformative, 0);
  EXPECT_LE(out.evicted_uninformative, out.evicted_visual);
  // recency drops the oldest frames first: frame 0 goes, the last frame stays
  EXPECT_LT(out.kept_per_frame[0][0].item<double>(), out.kept_per_frame[0][15].item<double>());
}

TEST(AnswerClip, NammDelayMustBeAMultipleOfItsHop) {
  const VideoModel model = tiny_model();
  VideoQaOptions qa;
  qa.policy.name = "namm";
  qa.policy.namm_model = random_namm();
  qa.delay = 24;
  EXPECT_THROW(qa.validate(), std::invalid_argument);
  qa.delay = 32;
  EXPECT_NO_THROW(qa.validate());
}

TEST(VideoQaPicture, WritesAPngOfTheAnnouncedSize) {
  at::set_num_threads(1);
  TempDir dir("picture");
  const VideoModel model = tiny_model();
  const SampledClip clip = sample_scene(make_scene("flash_count", Split::kTest, 0), 16);
  VideoQaOptions qa;
  qa.policy.name = "h2o";
  qa.policy.budget = Budget{0, 0.3};
  qa.delay = 16;
  const VideoQaOutcome out = answer_clip(model, clip, encode_question("how many times was the lamp bright ?"), qa);
  VideoQaPictureCaption caption;
  caption.policy = "h2o";
  caption.budget = "30%";
  caption.question = "how many times was the lamp bright ?";
  const std::string path = dir.file("viz.png");
  write_video_qa_picture(path, clip, out, caption);
  const auto [width, height] = video_qa_picture_size(16, 2);
  EXPECT_EQ(png_size(path), std::make_pair(width, height));
  EXPECT_GT(width, 16 * 112);
  EXPECT_FALSE(test_support::has_temporary(path));
}

// ---------------------------------------------------------------------------
// evaluation

TEST(EvaluateVideo, RowsForEveryPolicyWithSharesInTheUnitInterval) {
  at::set_num_threads(1);
  const VideoModel model = tiny_model();
  VideoEvalOptions o;
  o.kinds = {"appear_colour", "flash_count", "colour_change"};
  o.count = 1;
  o.scene.size = 32;
  o.qa.delay = 16;
  o.threads = 2;
  const VideoEvaluation result = evaluate_video(model, random_namm(), o);
  ASSERT_EQ(result.rows.size(), o.policies.size());
  for (size_t i = 0; i < o.policies.size(); ++i) EXPECT_EQ(result.rows[i].policy, o.policies[i]);
  EXPECT_EQ(result.clips, 3);
  EXPECT_GT(result.uninformative_visual_share, 0.3);
  EXPECT_LT(result.uninformative_visual_share, 1.0);
  int evicting = 0;
  for (const VideoEvalRow& row : result.rows) {
    EXPECT_EQ(row.kinds.size(), 3u) << row.policy;
    EXPECT_GE(row.accuracy, 0.0);
    EXPECT_LE(row.accuracy, 1.0);
    if (row.policy == "full") {
      EXPECT_EQ(row.evicted_visual, 0);
      EXPECT_TRUE(std::isnan(row.uninformative_eviction_share));
      continue;
    }
    if (row.evicted_visual == 0) continue;
    ++evicting;
    EXPECT_GE(row.uninformative_eviction_share, 0.0) << row.policy;
    EXPECT_LE(row.uninformative_eviction_share, 1.0) << row.policy;
  }
  EXPECT_GE(evicting, 5);
  // the baselines ran at the NAMM's measured memory
  EXPECT_GT(result.namm_retained_fraction, 0.0);
  EXPECT_LT(result.namm_retained_fraction, 1.0);
  const nlohmann::json json = nlohmann::json::parse(result.to_json());
  EXPECT_EQ(json["rows"].size(), o.policies.size());
  EXPECT_NE(result.to_markdown().find("| tova |"), std::string::npos);
}

TEST(EvaluateVideo, SameNumbersForOneAndTwoThreads) {
  const VideoModel model = tiny_model();
  VideoEvalOptions o;
  o.kinds = {"appear_shape", "move_direction"};
  o.count = 1;
  o.scene.size = 32;
  o.qa.delay = 16;
  o.policies = {"full", "h2o"};
  o.threads = 1;
  const VideoEvaluation one = evaluate_video(model, nullptr, o);
  o.threads = 2;
  const VideoEvaluation two = evaluate_video(model, nullptr, o);
  for (size_t i = 0; i < one.rows.size(); ++i) {
    EXPECT_EQ(one.rows[i].evicted_visual, two.rows[i].evicted_visual);
    EXPECT_EQ(one.rows[i].accuracy, two.rows[i].accuracy);
    EXPECT_EQ(one.rows[i].mean_retained_fraction, two.rows[i].mean_retained_fraction);
  }
}

// ---------------------------------------------------------------------------
// training

TEST(TrainVideo, BatchOfAStepIsAPureFunctionOfTheStep) {
  const TrainVideoOptions o = tiny_options("unused");
  const VideoTrainBatch a = make_video_train_batch(o, 5);
  const VideoTrainBatch b = make_video_train_batch(o, 5);
  const VideoTrainBatch c = make_video_train_batch(o, 6);
  EXPECT_EQ(a.indices, b.indices);
  EXPECT_TRUE(a.batch.pixels.equal(b.batch.pixels));
  EXPECT_NE(a.indices, c.indices);
  EXPECT_EQ(a.batch.pixels.sizes(), (at::IntArrayRef{4, 16, 3, 32, 32}));
}

TEST(TrainVideo, LossDecreasesOnATinyModel) {
  TempDir dir("train");
  VideoTrainer trainer(tiny_options(dir.path.string()));
  double first = 0, last = 0;
  for (int64_t s = 0; s < 30; ++s) {
    const VideoStepStats stats = trainer.train_step();
    if (s < 5) first += stats.loss;
    if (s >= 25) last += stats.loss;
  }
  // from about ln(V) = 6.5 towards the answer words: at least one nat lower per step on average
  EXPECT_LT(last / 5, first / 5 - 1.0) << "first 5 steps " << first / 5 << ", last 5 " << last / 5;
  // the checkpoint it wrote loads as a video model
  EXPECT_TRUE(fs::exists(dir.file("model.safetensors")));
  EXPECT_TRUE(fs::exists(dir.file("provenance.json")));
  const VideoModel loaded = load_video_model(dir.path.string());
  EXPECT_TRUE(loaded->language_model->embed_tokens->weight.equal(trainer.model()->language_model->embed_tokens->weight));
}

TEST(TrainVideo, StoppedAndResumedRunEndsWithBitwiseTheSameWeights) {
  TempDir dir("resume");
  TrainVideoOptions o = tiny_options(dir.file("straight"));
  o.steps = 6;
  o.checkpoint_every = 2;
  {
    VideoTrainer straight(o);
    straight.train();
  }
  TrainVideoOptions r = o;
  r.out_dir = dir.file("resumed");
  {
    VideoTrainer first(r);
    first.train([&] { return first.step() >= 3; });  // stops after step 3, checkpoints there
    EXPECT_EQ(first.step(), 3);
  }
  VideoTrainer second(r);
  EXPECT_TRUE(second.resumed());
  EXPECT_EQ(second.step(), 3);
  second.train();
  const VideoModel a = load_video_model(o.out_dir);
  for (const auto& [name, p] : second.model()->hf_named_parameters()) {
    bool found = false;
    for (const auto& [other, q] : a->hf_named_parameters()) {
      if (other != name) continue;
      found = true;
      EXPECT_TRUE(p.equal(q)) << name;
    }
    EXPECT_TRUE(found) << name;
  }
  // changing a (resume) field is refused with the field named
  TrainVideoOptions changed = r;
  changed.lr = 1e-2;
  try {
    VideoTrainer refused(changed);
    FAIL() << "resumed with another lr";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("lr"), std::string::npos) << e.what();
  }
}

TEST(TrainVideo, InitFromStartsFromAnEarlierStagesWeights) {
  TempDir dir("stages");
  TrainVideoOptions first = tiny_options(dir.file("stage1"));
  first.kinds = {"appear_colour"};
  first.steps = 2;
  VideoTrainer(first).train();
  TrainVideoOptions second = tiny_options(dir.file("stage2"));
  second.init_from = first.out_dir;
  VideoTrainer trainer(second);
  EXPECT_FALSE(trainer.resumed());
  const VideoModel stage1 = load_video_model(first.out_dir);
  const auto a = stage1->hf_named_parameters();
  const auto b = trainer.model()->hf_named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(a[i].second.equal(b[i].second)) << a[i].first;
  // a checkpoint of other shapes is refused, naming the tensor
  TrainVideoOptions wider = tiny_options(dir.file("stage2b"));
  wider.vision_width = 64;
  wider.init_from = first.out_dir;
  try {
    VideoTrainer refused(wider);
    FAIL() << "started from a checkpoint of other shapes";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("vision_tower"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------
// the commands, from outside (skipped when the namm binary is not built)

using test_support::run_namm;
using test_support::RunResult;

int line_count(const std::string& text) { return static_cast<int>(std::count(text.begin(), text.end(), '\n')); }

class VideoCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(NAMM_BINARY)) GTEST_SKIP() << "namm binary not built: " << NAMM_BINARY;
    dir_ = std::make_unique<TempDir>(std::string("cli_") +
                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    model_dir_ = dir_->file("model");
    save_llava_checkpoint(model_dir_, tiny_model());
  }
  std::string clip_args() const { return "--clip " + demo_clip() + " --model " + model_dir_ + " --threads 1"; }

  std::unique_ptr<TempDir> dir_;
  std::string model_dir_;
};

TEST_F(VideoCli, VideoQaPrintsTheAnswerAndMemoryAndDrawsThePicture) {
  const std::string viz = dir_->file("viz.png");
  const RunResult r = run_namm("video-qa " + clip_args() +
                               " --question \"which house arrived ?\" --memory h2o --budget 25% --viz " + viz);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* field : {"answer:", "tokens kept:", "% of the full cache", "KV bytes:", "time:"}) {
    EXPECT_NE(r.output.find(field), std::string::npos) << field << "\n" << r.output;
  }
  const auto [width, height] = video_qa_picture_size(16, 2);
  EXPECT_EQ(png_size(viz), std::make_pair(width, height));
}

TEST_F(VideoCli, VideoQaWithANammFileRefusesOneEvolvedOnVideo) {
  NammModel namm = *random_namm();
  namm.provenance_json = R"({"domain": "video", "tasks": ["flash_count"]})";
  const std::string path = dir_->file("namm.safetensors");
  namm.save(path);
  const RunResult refused =
      run_namm("video-qa " + clip_args() + " --question \"what arrived ?\" --memory namm --namm " + path);
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_NE(refused.output.find("allow-same-domain"), std::string::npos) << refused.output;
  const RunResult allowed = run_namm("video-qa " + clip_args() +
                                     " --question \"what arrived ?\" --memory namm --allow-same-domain --namm " + path);
  EXPECT_EQ(allowed.exit_code, 0) << allowed.output;
}

TEST_F(VideoCli, BadInputsGiveOneLineErrorsAndLeaveNoPicture) {
  const std::string viz = dir_->file("viz.png");
  const std::string not_video = dir_->file("notes.mp4");
  std::ofstream(not_video) << "this is not a video\n";
  struct Case {
    std::string args, needle;
    int exit_code;
  };
  const std::vector<Case> cases = {
      {"video-qa --clip " + not_video + " --model " + model_dir_ + " --question \"what arrived ?\" --memory full --threads 1",
       not_video, 1},
      {"video-qa " + clip_args() + " --question \"what zebra arrived ?\" --memory full", "zebra", 2},
      {"video-qa " + clip_args() + " --question \"what arrived ?\" --memory h2o --budget 150%", "budget", 2},
      {"video-qa " + clip_args() + " --question \"what arrived ?\" --memory h2o --budget 0", "budget", 2},
      {"video-qa " + clip_args() + " --question \"what arrived ?\" --memory lru", "lru", 2},
  };
  for (const Case& c : cases) {
    const RunResult r = run_namm(c.args + " --viz " + viz);
    EXPECT_EQ(r.exit_code, c.exit_code) << c.args << "\n" << r.output;
    EXPECT_EQ(line_count(r.output), 1) << r.output;
    EXPECT_NE(r.output.find(c.needle), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(viz)) << c.args;
    EXPECT_FALSE(test_support::has_temporary(viz)) << c.args;
  }
}

TEST_F(VideoCli, EvalVideoWritesARowPerPolicy) {
  NammModel namm = *random_namm();
  const std::string namm_path = dir_->file("namm.safetensors");
  namm.save(namm_path);
  const std::string json_path = dir_->file("eval.json");
  const std::string md_path = dir_->file("eval.md");
  const RunResult r = run_namm("eval-video --model " + model_dir_ + " --namm " + namm_path +
                               " --kinds appear_colour,flash_count --count 1 --scene-size 32 --delay 16 --threads 2"
                               " --out-json " + json_path + " --out-md " + md_path);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json json = nlohmann::json::parse(read_file(json_path));
  std::vector<std::string> policies;
  for (const auto& row : json["rows"]) policies.push_back(row["policy"]);
  EXPECT_EQ(policies, (std::vector<std::string>{"full", "namm", "h2o", "l2", "streaming", "tova", "recency", "random",
                                                "snapkv", "pyramidkv", "adakv", "keydiff"}));
  EXPECT_NE(read_file(md_path).find("| namm |"), std::string::npos);
  // a budget out of range is a one-line usage error and writes nothing
  const std::string other = dir_->file("other.json");
  const RunResult bad = run_namm("eval-video --model " + model_dir_ + " --budget 2.5 --count 1 --out-json " + other);
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_EQ(line_count(bad.output), 1) << bad.output;
  EXPECT_FALSE(fs::exists(other));
}

TEST_F(VideoCli, TrainVideoSmokeRunWritesModelLogAndProvenance) {
  const std::string out = dir_->file("trained");
  const RunResult r = run_namm("train-video --out " + out +
                               " --steps 3 --batch 2 --scene-size 32 --image-size 32 --patch-size 8 --vision-layers 2"
                               " --vision-width 32 --vision-heads 2 --vision-mlp 64 --lm-layers 2 --lm-hidden 32"
                               " --lm-heads 2 --lm-kv-heads 2 --lm-intermediate 64 --log-every 1 --eval-count 1"
                               " --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("step 3/3"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("eta"), std::string::npos) << r.output;
  for (const char* name : {"model.safetensors", "config.json", "tokenizer.json", "trainer_state.safetensors",
                           "train_log.jsonl", "provenance.json", "eval.json", "eval.md"}) {
    EXPECT_TRUE(fs::exists(fs::path(out) / name)) << name;
  }
  const nlohmann::json provenance = nlohmann::json::parse(read_file((fs::path(out) / "provenance.json").string()));
  EXPECT_EQ(provenance["steps_done"], 3);
  EXPECT_TRUE(provenance["metrics"].contains("accuracy"));
  EXPECT_TRUE(provenance["metrics"]["kinds"].contains("flash_count"));

  // a later stage names no shape: the tower, image and language sizes come from the checkpoint
  const std::string next = dir_->file("next");
  const RunResult stage = run_namm("train-video --out " + next + " --init-from " + out +
                                   " --steps 1 --batch 2 --scene-size 32 --eval-count 0 --threads 1");
  ASSERT_EQ(stage.exit_code, 0) << stage.output;
  EXPECT_EQ(read_file((fs::path(next) / "config.json").string()), read_file((fs::path(out) / "config.json").string()));
}

}  // namespace
}  // namespace namm
