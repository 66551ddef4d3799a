// Pins vision/vision_tower.h, vision/video_model.h and vision/llava_checkpoint.h
// against tiny checkpoints written by tests/fixtures/make_llava_fixture.py,
// whose reference outputs come from an independent plain-torch forward pass
// of Hugging Face's CLIP tower, LLaVA-NeXT-Video pooler/projector and Llama.
#include "vision/llava_checkpoint.h"

#include "adapters/memory_controller.h"
#include "core/baselines.h"
#include "core/npy.h"
#include "core/safetensors.h"
#include "text/tokenizer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>

#include <unistd.h>

namespace namm {
namespace {

namespace fs = std::filesystem;

const std::string kFixtures = std::string(NAMM_FIXTURES_DIR) + "/llava";

// a fresh directory under the system temp dir, removed at scope exit
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name) {
    path = fs::temp_directory_path() / ("namm_vision_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string str() const { return path.string(); }
};

// runs f and returns the message of the std::runtime_error it throws ("" if none)
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

at::Tensor fixture_pixels() { return read_npy(kFixtures + "/pixels.npy"); }      // [F, 3, S, S]
at::Tensor fixture_question() { return read_npy(kFixtures + "/question.npy"); }  // [Q]

// <q> question <a>: the text after the visual tokens, [Q + 2]
at::Tensor question_text(const at::Tensor& question) {
  return at::cat({at::full({1}, Tokenizer::kQ, at::kLong), question, at::full({1}, Tokenizer::kA, at::kLong)});
}

double max_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

const LlavaCheckpoint& classic() {
  static const LlavaCheckpoint checkpoint = load_llava_checkpoint(kFixtures + "/classic_f32");
  return checkpoint;
}

// ---------------------------------------------------------------------------
// numerics against the Python reference

TEST(LlavaCheckpoint, ClassicLayoutMatchesPythonReference) {
  at::set_num_threads(2);
  const LlavaCheckpoint& checkpoint = classic();
  EXPECT_EQ(checkpoint.config.vision_feature_layer, -2);
  EXPECT_EQ(checkpoint.config.vision.hidden_act, "quick_gelu");
  EXPECT_EQ(checkpoint.config.tokens_per_frame(), 4);
  EXPECT_EQ(checkpoint.metadata.at("format"), "pt");
  at::NoGradGuard no_grad;
  const at::Tensor visual = checkpoint.model->encode_frames(fixture_pixels()).flatten(0, 1);  // [F*P', D]
  const at::Tensor expected_visual = read_npy(kFixtures + "/visual_classic.npy");
  ASSERT_EQ(visual.sizes(), expected_visual.sizes());
  EXPECT_LT(max_diff(visual, expected_visual), 1e-4);

  const at::Tensor logits =
      checkpoint.model->forward(fixture_pixels().unsqueeze(0), question_text(fixture_question()).unsqueeze(0)).squeeze(0);
  const at::Tensor expected = read_npy(kFixtures + "/logits_classic.npy");  // [T, V]
  ASSERT_EQ(logits.sizes(), expected.sizes());
  EXPECT_LT(max_diff(logits, expected), 1e-4) << "logits std " << expected.std().item<double>();
}

TEST(LlavaCheckpoint, ShardedNewerLayoutMatchesPythonReference) {
  at::set_num_threads(2);
  const LlavaCheckpoint checkpoint = load_llava_checkpoint(kFixtures + "/sharded_new");
  EXPECT_TRUE(checkpoint.config.text.tie_word_embeddings);
  EXPECT_FALSE(checkpoint.config.multimodal_projector_bias);
  EXPECT_EQ(checkpoint.config.vision_feature_layer, -1);
  EXPECT_EQ(checkpoint.config.vision.hidden_act, "gelu");
  at::NoGradGuard no_grad;
  const at::Tensor logits =
      checkpoint.model->forward(fixture_pixels().unsqueeze(0), question_text(fixture_question()).unsqueeze(0)).squeeze(0);
  const at::Tensor expected = read_npy(kFixtures + "/logits_sharded.npy");
  ASSERT_EQ(logits.sizes(), expected.sizes());
  EXPECT_LT(max_diff(logits, expected), 1e-4);
}

TEST(VideoModel, CachedPrefillEqualsFullForwardWithFullCache) {
  at::set_num_threads(2);
  const VideoModel& model = classic().model;
  const at::Tensor embeds = model->prompt_embeddings(fixture_pixels(), fixture_question()).detach();  // [T, D]
  const at::Tensor expected = read_npy(kFixtures + "/logits_classic.npy");                          // [T, V]
  ASSERT_EQ(embeds.size(0), expected.size(0));
  SequenceState state = model->language_model->new_state();
  // chunks of 7 cut through frames and the question
  const at::Tensor logits = prefill_embeddings(*model->language_model, state, embeds, 7, nullptr, /*all_logits=*/true);
  EXPECT_LT(max_diff(logits, expected), 1e-4);
  EXPECT_EQ(state.next_position, expected.size(0));
  EXPECT_DOUBLE_EQ(state.mean_cached_tokens(0), static_cast<double>(expected.size(0)));
}

TEST(VideoModel, GreedyAnswerWithFullCacheEqualsRepeatedFullForward) {
  at::set_num_threads(2);
  const VideoModel& model = classic().model;
  GenerationOptions options;
  options.max_new_tokens = 6;
  options.prompt_chunk = 5;
  const VideoAnswer answer = answer_video_question(model, fixture_pixels(), fixture_question(), options);
  ASSERT_EQ(answer.tokens.size(), 6u);

  at::NoGradGuard no_grad;
  at::Tensor text = question_text(fixture_question());
  for (int64_t expected_token : answer.tokens) {
    const at::Tensor logits = model->forward(fixture_pixels().unsqueeze(0), text.unsqueeze(0));  // [1, T, V]
    const int64_t token = logits[0][-1].argmax().item<int64_t>();
    EXPECT_EQ(token, expected_token);
    text = at::cat({text, at::full({1}, token, at::kLong)});
  }
  EXPECT_EQ(answer.layout.length(), 20);
  EXPECT_EQ(answer.policy_updates, 0);
  EXPECT_TRUE(at::all(answer.kept_per_frame == 1.0).item<bool>());
}

// ---------------------------------------------------------------------------
// pruning and the position -> frame map

TEST(VideoPromptLayout, MapsVisualPositionsToTheirFrameAndTextToMinusOne) {
  VideoPromptLayout layout;
  layout.num_frames = 3;
  layout.tokens_per_frame = 4;
  layout.question_words = 5;
  EXPECT_EQ(layout.visual_tokens(), 12);
  EXPECT_EQ(layout.visual_end(), 13);
  EXPECT_EQ(layout.answer_marker(), 19);
  EXPECT_EQ(layout.length(), 20);
  EXPECT_EQ(layout.text_tokens(), 8);
  const std::vector<int64_t> expected = {-1, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, -1, -1, -1, -1, -1, -1, -1};
  EXPECT_EQ(layout.frame_of_positions(), expected);
  EXPECT_EQ(layout.frame_of(20), -1);  // a generated token
  EXPECT_EQ(layout.frame_of(-1), -1);
}

TEST(VideoModel, KeptFractionPerFrameCountsEachFramesCachedTokens) {
  const VideoModel& model = classic().model;
  const VideoPromptLayout layout = model->layout(3, fixture_question().size(0));
  SequenceState state = model->language_model->new_state();
  prefill_embeddings(*model->language_model, state, model->prompt_embeddings(fixture_pixels(), fixture_question()), 64);
  // layer 1: drop frame 1 (positions 5..8) and one token of frame 2 (position 9)
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < layout.length(); ++i) {
    if (i < 5 || i > 9) keep.push_back(i);
  }
  state.caches[1].keep(0, at::tensor(keep, at::kLong));
  const at::Tensor kept = kept_fraction_per_frame(state, layout);  // [L, F]
  ASSERT_EQ(kept.sizes(), (at::IntArrayRef{2, 3}));
  EXPECT_TRUE(at::allclose(kept[0], at::ones({3}, at::kDouble)));
  EXPECT_DOUBLE_EQ(kept[1][0].item<double>(), 1.0);
  EXPECT_DOUBLE_EQ(kept[1][1].item<double>(), 0.0);
  EXPECT_DOUBLE_EQ(kept[1][2].item<double>(), 0.75);
  const std::vector<double> text = kept_text_fraction(state, layout);
  EXPECT_DOUBLE_EQ(text[0], 1.0);
  EXPECT_DOUBLE_EQ(text[1], 1.0);
}

TEST(VideoModel, RecencyPolicyShrinksTheCacheAndDropsTheOldestFrames) {
  at::set_num_threads(2);
  const VideoModel& model = classic().model;
  GenerationOptions options;
  options.max_new_tokens = 5;
  const VideoAnswer full = answer_video_question(model, fixture_pixels(), fixture_question(), options);

  ControllerOptions controller_options;
  controller_options.delay = 8;
  MemoryController controller(std::make_unique<RecencyPolicy>(Budget{0, 0.5}), 2, controller_options);
  SequenceState state;
  const VideoAnswer pruned =
      answer_video_question(model, fixture_pixels(), fixture_question(), options, &controller, &state);
  EXPECT_EQ(pruned.tokens.size(), 5u);
  // 20 prompt + 4 fed answer tokens: updates after 8, 16 and 24 tokens, each keeping half
  EXPECT_EQ(pruned.policy_updates, 3);
  for (int64_t l = 0; l < 2; ++l) {
    EXPECT_DOUBLE_EQ(pruned.cached_tokens_per_layer[static_cast<size_t>(l)], 12.0);
    EXPECT_DOUBLE_EQ(full.cached_tokens_per_layer[static_cast<size_t>(l)], 24.0);
    // recency keeps positions 12..23: frames 0 and 1 gone, one token of frame 2 left
    EXPECT_DOUBLE_EQ(pruned.kept_per_frame[l][0].item<double>(), 0.0);
    EXPECT_DOUBLE_EQ(pruned.kept_per_frame[l][1].item<double>(), 0.0);
    EXPECT_DOUBLE_EQ(pruned.kept_per_frame[l][2].item<double>(), 0.25);
    EXPECT_DOUBLE_EQ(pruned.kept_text[static_cast<size_t>(l)], 7.0 / 8.0);  // all but <bos>
  }
  EXPECT_LT(pruned.cache_used_bytes, full.cache_used_bytes);
  EXPECT_EQ(state.caches[0].position_list(0).front(), 12);
}

// ---------------------------------------------------------------------------
// training path

TEST(VideoModel, BatchedForwardMatchesEachClipAlone) {
  at::set_num_threads(2);
  const VideoModel& model = classic().model;
  const at::Tensor pixels = fixture_pixels();
  const at::Tensor clips = at::stack({pixels, pixels.flip(0)});  // [2, F, 3, S, S]
  const VideoQaBatch batch = make_video_qa_batch(clips, {{9, 12}, {20, 11, 31, 8}}, {{14}, {15, 16}});
  at::NoGradGuard no_grad;
  const at::Tensor logits = model->forward(batch.pixels, batch.text);  // [2, T, V]
  // clip 0's text is shorter: its padding comes after everything it predicts
  const int64_t own = 2 + 2 + 1 + 1;  // <q> 2 words <a> answer <eos>
  const at::Tensor alone = model->forward(pixels.unsqueeze(0), batch.text[0].narrow(0, 0, own).unsqueeze(0));
  const int64_t t = alone.size(1);
  EXPECT_LT(max_diff(logits[0].narrow(0, 0, t), alone[0]), 1e-5);
  const at::Tensor second = model->forward(clips[1].unsqueeze(0), batch.text[1].unsqueeze(0));
  EXPECT_LT(max_diff(logits[1], second[0]), 1e-5);
}

TEST(VideoModel, QaBatchSupervisesAnswerAndEosOnly) {
  const at::Tensor clips = fixture_pixels().unsqueeze(0).repeat({2, 1, 1, 1, 1});
  const VideoQaBatch batch = make_video_qa_batch(clips, {{9}, {9, 10, 11}}, {{20, 21}, {22}});
  ASSERT_EQ(batch.text.sizes(), (at::IntArrayRef{2, 7}));
  const std::vector<int64_t> text0 = {Tokenizer::kQ, 9, Tokenizer::kA, 20, 21, Tokenizer::kEos, Tokenizer::kPad};
  const std::vector<int64_t> text1 = {Tokenizer::kQ, 9, 10, 11, Tokenizer::kA, 22, Tokenizer::kEos};
  EXPECT_TRUE(at::equal(batch.text[0], at::tensor(text0, at::kLong)));
  EXPECT_TRUE(at::equal(batch.text[1], at::tensor(text1, at::kLong)));
  EXPECT_EQ(batch.target_mask.sum().item<int64_t>(), 3 + 2);
  EXPECT_TRUE(batch.target_mask[0][3].item<bool>());
  EXPECT_FALSE(batch.target_mask[0][2].item<bool>());
  EXPECT_FALSE(batch.target_mask[0][6].item<bool>());
  EXPECT_THROW(make_video_qa_batch(clips, {{9}}, {{1}}), std::invalid_argument);
  EXPECT_THROW(make_video_qa_batch(clips, {{9}, {9}}, {{1}, {}}), std::invalid_argument);
}

TEST(VideoModel, AnswerLossMatchesLogitsAndTrainsEveryPart) {
  at::set_num_threads(2);
  VideoModelConfig config = classic().config;
  VideoModel model(config);
  const at::Tensor clips = at::stack({fixture_pixels(), fixture_pixels().flip(0)});
  const VideoQaBatch batch = make_video_qa_batch(clips, {{9, 12}, {9, 12}}, {{20}, {21}});
  VideoLoss loss = model->answer_loss(batch);
  EXPECT_EQ(loss.tokens, 4);
  // the same loss from the full logits
  {
    at::NoGradGuard no_grad;
    const at::Tensor logits = model->forward(batch.pixels, batch.text);  // [2, T, V]
    const int64_t first = 3 * config.tokens_per_frame();                 // predicts text[0]
    double total = 0.0;
    for (int64_t b = 0; b < 2; ++b) {
      for (int64_t j = 0; j < batch.text.size(1); ++j) {
        if (!batch.target_mask[b][j].item<bool>()) continue;
        total -= at::log_softmax(logits[b][first + j], -1)[batch.text[b][j].item<int64_t>()].item<double>();
      }
    }
    EXPECT_NEAR(loss.loss.item<double>(), total / 4.0, 1e-5);
  }
  loss.loss.backward();
  EXPECT_GT(model->vision_tower->embeddings->patch_embedding->weight.grad().abs().sum().item<double>(), 0.0);
  EXPECT_GT(model->multi_modal_projector->linear_1->weight.grad().abs().sum().item<double>(), 0.0);
  EXPECT_GT(model->language_model->layers[0]->self_attn->q_proj->weight.grad().abs().sum().item<double>(), 0.0);
  // plain gradient steps on the two clips bring the loss down
  const double before = loss.loss.item<double>();
  for (int step = 0; step < 10; ++step) {
    model->zero_grad();
    VideoLoss l = model->answer_loss(batch);
    l.loss.backward();
    at::NoGradGuard no_grad;
    for (at::Tensor& p : model->parameters()) {
      if (p.grad().defined()) p.sub_(p.grad() * 0.2);
    }
  }
  const VideoLoss after = model->answer_loss(batch);
  EXPECT_LT(after.loss.item<double>(), before * 0.5) << "before " << before;
}

// ---------------------------------------------------------------------------
// preprocessing

TEST(VideoModel, PreprocessFramesMatchesTorchResizeCropNormalise) {
  const at::Tensor frames = read_npy(kFixtures + "/frames_rgb.npy").to(at::kByte);  // [2, 18, 24, 3]
  const at::Tensor expected = read_npy(kFixtures + "/preprocessed.npy");            // [2, 3, 16, 16]
  const at::Tensor pixels = preprocess_frames(frames, 16);
  ASSERT_EQ(pixels.sizes(), expected.sizes());
  EXPECT_LT(max_diff(pixels, expected), 1e-4);
  // the byte-vector overload gives the same
  std::vector<std::vector<uint8_t>> bytes;
  for (int64_t f = 0; f < 2; ++f) {
    const at::Tensor frame = frames[f].contiguous();
    bytes.emplace_back(frame.data_ptr<uint8_t>(), frame.data_ptr<uint8_t>() + frame.numel());
  }
  EXPECT_TRUE(at::equal(preprocess_frames(bytes, 24, 18, 16), pixels));
  EXPECT_THROW(preprocess_frames(bytes, 24, 17, 16), std::invalid_argument);
}

TEST(VideoModel, SpatialPoolAveragesTwoByTwoBlocksRowMajor) {
  const at::Tensor features = at::arange(16, at::kFloat).view({1, 16, 1});  // a 4x4 grid 0..15
  const at::Tensor pooled = spatial_pool(features, 2);                       // [1, 4, 1]
  EXPECT_TRUE(at::equal(pooled.flatten(), at::tensor({2.5f, 4.5f, 10.5f, 12.5f})));
  EXPECT_THROW(spatial_pool(at::zeros({1, 15, 1}), 2), c10::Error);
}

// ---------------------------------------------------------------------------
// checkpoint files

TEST(LlavaCheckpoint, MissingTensorErrorNamesFileAndTensor) {
  TempDir dir("missing");
  fs::copy_file(kFixtures + "/classic_f32/config.json", dir.path / "config.json");
  SafetensorsFile file = read_safetensors(kFixtures + "/classic_f32/model.safetensors");
  file.tensors.erase("multi_modal_projector.linear_2.bias");
  const std::string path = (dir.path / "model.safetensors").string();
  write_safetensors(path, file.tensors, file.metadata);
  const std::string message = error_of([&] { load_llava_checkpoint(dir.str()); });
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find("missing tensor multi_modal_projector.linear_2.bias"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos);
}

TEST(LlavaCheckpoint, WrongShapeErrorNamesFileTensorAndShapes) {
  TempDir dir("shape");
  fs::copy_file(kFixtures + "/classic_f32/config.json", dir.path / "config.json");
  SafetensorsFile file = read_safetensors(kFixtures + "/classic_f32/model.safetensors");
  const std::string name = "vision_tower.vision_model.encoder.layers.1.mlp.fc1.weight";
  file.tensors[name] = at::zeros({33, 16});
  const std::string path = (dir.path / "model.safetensors").string();
  write_safetensors(path, file.tensors, file.metadata);
  const std::string message = error_of([&] { load_llava_checkpoint(dir.str()); });
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find(name + " has shape [33, 16]"), std::string::npos) << message;
  EXPECT_NE(message.find("[32, 16]"), std::string::npos) << message;
}

TEST(LlavaCheckpoint, MissingShardAndUnexpectedTensorAreNamed) {
  TempDir dir("shard");
  for (const char* name : {"config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors"}) {
    fs::copy_file(kFixtures + "/sharded_new/" + name, dir.path / name);
  }
  std::string message = error_of([&] { load_llava_checkpoint(dir.str()); });
  EXPECT_NE(message.find("model-00002-of-00002.safetensors: shard not found"), std::string::npos) << message;

  TempDir extra("extra");
  fs::copy_file(kFixtures + "/classic_f32/config.json", extra.path / "config.json");
  SafetensorsFile file = read_safetensors(kFixtures + "/classic_f32/model.safetensors");
  file.tensors["vision_tower.vision_model.encoder.layers.2.mlp.fc1.weight"] = at::zeros({32, 16});
  write_safetensors((extra.path / "model.safetensors").string(), file.tensors, file.metadata);
  message = error_of([&] { load_llava_checkpoint(extra.str()); });
  EXPECT_NE(message.find("unexpected tensor vision_tower.vision_model.encoder.layers.2.mlp.fc1.weight"),
            std::string::npos)
      << message;
}

TEST(LlavaCheckpoint, SaveThenLoadRoundTripsEveryTensorInTheClassicLayout) {
  TempDir dir("roundtrip");
  const VideoModel& model = classic().model;
  save_llava_checkpoint(dir.str(), model, {{"note", "test"}});
  const SafetensorsFile file = read_safetensors((dir.path / "model.safetensors").string());
  EXPECT_TRUE(file.tensors.count("vision_tower.vision_model.embeddings.patch_embedding.weight"));
  EXPECT_TRUE(file.tensors.count("vision_tower.vision_model.pre_layrnorm.weight"));
  EXPECT_TRUE(file.tensors.count("multi_modal_projector.linear_1.weight"));
  EXPECT_TRUE(file.tensors.count("language_model.model.layers.0.self_attn.q_proj.weight"));
  EXPECT_TRUE(file.tensors.count("language_model.lm_head.weight"));
  EXPECT_TRUE(file.tensors.count("image_newline"));
  const LlavaCheckpoint loaded = load_llava_checkpoint(dir.str());
  EXPECT_EQ(loaded.metadata.at("note"), "test");
  const auto a = model->hf_named_parameters();
  const auto b = loaded.model->hf_named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(at::equal(a[i].second, b[i].second)) << a[i].first;
  }
  EXPECT_EQ(loaded.config.vision.summary(), model->config().vision.summary());
  EXPECT_EQ(loaded.config.text.summary(), model->config().text.summary());
}

TEST(LlavaCheckpoint, NewerLayoutNamesMapToTheClassicOnes) {
  EXPECT_EQ(canonical_llava_tensor_name("model.vision_tower.vision_model.pre_layrnorm.weight"),
            "vision_tower.vision_model.pre_layrnorm.weight");
  EXPECT_EQ(canonical_llava_tensor_name("model.multi_modal_projector.linear_1.bias"), "multi_modal_projector.linear_1.bias");
  EXPECT_EQ(canonical_llava_tensor_name("model.language_model.layers.3.mlp.up_proj.weight"),
            "language_model.model.layers.3.mlp.up_proj.weight");
  EXPECT_EQ(canonical_llava_tensor_name("lm_head.weight"), "language_model.lm_head.weight");
  EXPECT_EQ(canonical_llava_tensor_name("model.image_newline"), "image_newline");
  EXPECT_EQ(canonical_llava_tensor_name("language_model.lm_head.weight"), "language_model.lm_head.weight");
}

TEST(LlavaConfig, SparseConfigTakesHuggingFaceDefaults) {
  // what llava-hf/LLaVA-NeXT-Video-7B-hf stores: only the differences from the defaults
  const std::string text = R"({
    "model_type": "llava_next_video", "video_token_index": 32000, "image_token_index": 32001,
    "vision_config": {"hidden_size": 1024, "image_size": 336, "intermediate_size": 4096, "model_type": "clip_vision_model",
                      "num_attention_heads": 16, "num_hidden_layers": 24, "patch_size": 14, "projection_dim": 768},
    "text_config": {"model_type": "llama", "max_position_embeddings": 4096, "rms_norm_eps": 1e-05, "vocab_size": 32064}
  })";
  const VideoModelConfig config = parse_llava_config(text);
  EXPECT_EQ(config.text.hidden_size, 4096);
  EXPECT_EQ(config.text.num_hidden_layers, 32);
  EXPECT_EQ(config.text.vocab_size, 32064);
  EXPECT_EQ(config.vision.grid(), 24);
  EXPECT_EQ(config.tokens_per_frame(), 144);  // 24x24 pooled 2x2
  EXPECT_EQ(config.vision_feature_layer, -2);
  EXPECT_EQ(config.projector_hidden_act, "gelu");
  EXPECT_EQ(config.vision.hidden_act, "quick_gelu");
  EXPECT_EQ(config.video_token_index, 32000);
}

TEST(LlavaConfig, UnsupportedSettingsAreRefusedByName) {
  const std::string base = R"("vision_config": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
      "num_attention_heads": 2, "image_size": 16, "patch_size": 4},
      "text_config": {"vocab_size": 32, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 1,
      "num_attention_heads": 2})";
  auto error = [&](const std::string& extra) {
    return error_of([&] { parse_llava_config("{" + base + ", " + extra + "}", "cfg.json"); });
  };
  EXPECT_NE(error(R"("vision_feature_layer": [-2, -5])").find("vision_feature_layer [-2,-5]"), std::string::npos);
  EXPECT_NE(error(R"("spatial_pool_mode": "max")").find("spatial_pool_mode 'max'"), std::string::npos);
  EXPECT_NE(error(R"("vision_feature_select_strategy": "full")").find("'full'"), std::string::npos);
  EXPECT_NE(error(R"("model_type": "llava")").find("model_type 'llava'"), std::string::npos);
  EXPECT_NE(error(R"("vision_feature_layer": -4)").find("cfg.json: "), std::string::npos);
  EXPECT_EQ(error(R"("vision_feature_layer": -3)"), "");
}

// ---------------------------------------------------------------------------
// the default model and the Llama embedding paths

TEST(VideoModel, DefaultConfigIsTheSmallCpuModel) {
  const VideoModelConfig config = default_video_model_config();
  EXPECT_EQ(config.tokens_per_frame(), 16);
  EXPECT_EQ(config.vision.grid(), 8);
  EXPECT_EQ(config.text.vocab_size, builtin_tokenizer().vocab_size());
  EXPECT_EQ(config.text.hidden_size, 256);
  const VideoModel model(config);
  const VideoModelParameterCounts counts = model->parameter_counts();
  EXPECT_EQ(counts.projector, 128 * 256 + 256 + 256 * 256 + 256);
  EXPECT_EQ(counts.total(), [&] {
    int64_t total = 0;
    for (const at::Tensor& p : model->parameters()) total += p.numel();
    return total;
  }());
}

TEST(LlamaEmbeddings, EmbeddingPathsEqualTheTokenPaths) {
  at::set_num_threads(2);
  const Llama& lm = classic().model->language_model;
  const at::Tensor tokens = at::tensor({2, 7, 9, 30, 4, 4, 11, 6}, at::kLong);
  at::NoGradGuard no_grad;
  EXPECT_TRUE(at::equal(lm->forward_embeddings(lm->embed(tokens.unsqueeze(0))), lm->forward(tokens.unsqueeze(0))));
  SequenceState a = lm->new_state();
  SequenceState b = lm->new_state();
  lm->feed(a, tokens.narrow(0, 0, 3));
  lm->feed_embeddings(b, lm->embed(tokens.narrow(0, 0, 3)));
  EXPECT_TRUE(at::equal(lm->feed(a, tokens.narrow(0, 3, 5), nullptr, true),
                        lm->feed_embeddings(b, lm->embed(tokens.narrow(0, 3, 5)), nullptr, true)));
}

}  // namespace
}  // namespace namm
