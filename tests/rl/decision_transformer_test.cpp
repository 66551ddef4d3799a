// Pins rl/decision_transformer, rl/dt_checkpoint and rl/train_dt: the
// Hugging Face golden fixture, cached == full forward, padding, checkpoint
// round trip and corrupt files, training that learns, bitwise resume.
#include "adapters/memory_controller.h"
#include "core/atomic_file.h"
#include "core/npy.h"
#include "core/policy_registry.h"
#include "core/safetensors.h"
#include "rl/decision_transformer.h"
#include "rl/dt_checkpoint.h"
#include "rl/mujoco_env.h"
#include "rl/offline_dataset.h"
#include "rl/train_dt.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <unistd.h>
#include <random>
#include <sstream>
#include <string>

namespace namm {
namespace {

namespace fs = std::filesystem;

const std::string kFixtureDir = std::string(NAMM_FIXTURES_DIR) + "/dt";

DtConfig tiny_config(int64_t state_dim = 4, int64_t act_dim = 2) {
  DtConfig c;
  c.state_dim = state_dim;
  c.act_dim = act_dim;
  c.hidden_size = 16;
  c.n_layer = 2;
  c.n_head = 2;
  c.max_ep_len = 64;
  c.n_positions = 8;
  return c;
}

DecisionTransformer tiny_model(const DtConfig& config, uint64_t seed = 1) {
  at::manual_seed(seed);
  DecisionTransformer model(config);
  // larger weights than the 0.02 initialisation so differences show
  at::NoGradGuard no_grad;
  for (auto& p : model->parameters()) p.normal_(0.0, 0.3);
  return model;
}

DtBatch random_batch(const DtConfig& config, int64_t b, int64_t t, uint64_t seed) {
  at::manual_seed(seed);
  DtBatch batch;
  batch.states = at::randn({b, t, config.state_dim});
  batch.actions = at::tanh(at::randn({b, t, config.act_dim}));
  batch.returns_to_go = at::randn({b, t, 1});
  batch.timesteps = at::arange(t, at::kLong).unsqueeze(0).repeat({b, 1}) + 3;
  return batch;
}

// actions predicted step by step over the cached path: a_{t-1}, R_t, s_t per step
at::Tensor cached_actions(const DecisionTransformer& model, const DtBatch& batch, int64_t row,
                          MemoryController* controller = nullptr, SequenceState* state_out = nullptr) {
  SequenceState state = model->new_state();
  const int64_t t = batch.states.size(1);
  std::vector<at::Tensor> actions;
  for (int64_t i = 0; i < t; ++i) {
    const at::Tensor step = batch.timesteps[row].narrow(0, i, 1);  // [1]
    std::vector<at::Tensor> tokens;
    if (i > 0) {
      tokens.push_back(model->embed(DtTokenKind::kAction, batch.actions[row].narrow(0, i - 1, 1),
                                    batch.timesteps[row].narrow(0, i - 1, 1)));
    }
    tokens.push_back(model->embed(DtTokenKind::kReturn, batch.returns_to_go[row].narrow(0, i, 1), step));
    tokens.push_back(model->embed(DtTokenKind::kState, batch.states[row].narrow(0, i, 1), step));
    const at::Tensor hidden = model->feed(state, at::cat(tokens, 0), controller);
    actions.push_back(model->predict_action_from(hidden[hidden.size(0) - 1]));
  }
  if (state_out != nullptr) *state_out = std::move(state);
  return at::stack(actions);  // [T, A]
}

std::string read_text(const std::string& path) { return read_file(path); }

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// a fresh temporary directory per test
std::string temp_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("namm_dt_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// episodes of Hopper under a fixed noisy linear policy: something a DT can learn
std::shared_ptr<OfflineDataset> hopper_dataset(int episodes, int max_steps, uint64_t seed) {
  auto env = make_env("hopper");
  env->set_max_episode_steps(max_steps);
  auto data = std::make_shared<OfflineDataset>();
  data->env = "hopper";
  data->observation_size = env->observation_size();
  data->action_size = env->action_size();
  data->metadata_json = "{\"made_by\": \"decision_transformer_test\"}";
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> noise(0.0, 0.1);
  for (int e = 0; e < episodes; ++e) {
    env->seed(seed + static_cast<uint64_t>(e));
    std::vector<double> obs = env->reset();
    while (true) {
      std::vector<double> action(static_cast<size_t>(env->action_size()));
      for (size_t j = 0; j < action.size(); ++j) {
        action[j] = std::tanh(0.8 * obs[j + 1] - 0.5 * obs[(j + 5) % obs.size()] + noise(rng));
      }
      for (double v : obs) data->observations.push_back(static_cast<float>(v));
      for (double v : action) data->actions.push_back(static_cast<float>(v));
      const StepResult r = env->step(action);
      data->rewards.push_back(static_cast<float>(r.reward));
      data->terminals.push_back(r.terminated ? 1 : 0);
      data->timeouts.push_back(r.truncated && !r.terminated ? 1 : 0);
      obs = r.observation;
      if (r.terminated || r.truncated) break;
    }
  }
  return data;
}

TrainDtOptions tiny_train_options(const std::string& out_dir) {
  TrainDtOptions o;
  o.hidden = 32;
  o.layers = 1;
  o.heads = 2;
  o.context = 5;
  o.batch_size = 16;
  o.steps = 60;
  o.lr = 1e-3;
  o.warmup_steps = 5;
  o.weight_decay = 1e-4;
  o.threads = 1;
  o.log_every = 1000;
  o.checkpoint_every = 1000;
  o.eval_episodes = 0;
  o.data_path = "in-memory";
  o.out_dir = out_dir;
  return o;
}

// ---------------------------------------------------------------------------

TEST(DtCheckpoint, HuggingFaceFixtureMatchesIndependentReference) {
  at::set_num_threads(1);
  const DtCheckpoint ckpt = load_dt_checkpoint(kFixtureDir + "/model");
  EXPECT_FALSE(ckpt.has_sidecar);
  EXPECT_EQ(ckpt.config.inner_dim(), 64);  // n_inner null -> 4 * hidden
  DtBatch batch;
  batch.states = read_npy(kFixtureDir + "/states.npy");
  batch.actions = read_npy(kFixtureDir + "/actions.npy");
  batch.returns_to_go = read_npy(kFixtureDir + "/returns.npy");
  batch.timesteps = read_npy(kFixtureDir + "/timesteps.npy");
  batch.attention_mask = read_npy(kFixtureDir + "/mask.npy");
  const DtOutput out = ckpt.model->forward(batch);
  const at::Tensor real = batch.attention_mask.to(at::kBool);  // [B, T]
  auto check = [&](const at::Tensor& ours, const std::string& file) {
    const at::Tensor ref = read_npy(kFixtureDir + "/" + file);
    ASSERT_EQ(ours.sizes(), ref.sizes()) << file;
    const double diff = (ours - ref).abs().amax(-1).masked_select(real).max().item<double>();
    EXPECT_LT(diff, 1e-5) << file;
  };
  check(out.action_preds, "action_preds.npy");
  check(out.state_preds, "state_preds.npy");
  check(out.return_preds, "return_preds.npy");
}

TEST(DtCheckpoint, FixtureCachedPathMatchesReferenceActions) {
  at::set_num_threads(1);
  const DtCheckpoint ckpt = load_dt_checkpoint(kFixtureDir + "/model");
  DtBatch batch;
  batch.states = read_npy(kFixtureDir + "/states.npy");
  batch.actions = read_npy(kFixtureDir + "/actions.npy");
  batch.returns_to_go = read_npy(kFixtureDir + "/returns.npy");
  batch.timesteps = read_npy(kFixtureDir + "/timesteps.npy");
  const at::Tensor ref = read_npy(kFixtureDir + "/action_preds.npy")[0];  // [T, A], row 0 has no padding
  EXPECT_LT((cached_actions(ckpt.model, batch, 0) - ref).abs().max().item<double>(), 1e-5);
}

TEST(DecisionTransformer, CachedFeedMatchesFullForward) {
  at::set_num_threads(1);
  const DtConfig config = tiny_config();
  const DecisionTransformer model = tiny_model(config);
  const DtBatch batch = random_batch(config, 1, 12, 7);
  const at::Tensor full = model->forward(batch).action_preds[0];  // [T, A]
  SequenceState state;
  const at::Tensor cached = cached_actions(model, batch, 0, nullptr, &state);
  EXPECT_LT((full - cached).abs().max().item<double>(), 1e-5);
  EXPECT_EQ(state.next_position, 3 * 12 - 1);
  EXPECT_EQ(state.caches[0].length(0), 3 * 12 - 1);
}

TEST(DecisionTransformer, FullPolicyControllerWithOddDelayMatchesForward) {
  at::set_num_threads(1);
  const DtConfig config = tiny_config();
  const DecisionTransformer model = tiny_model(config);
  const DtBatch batch = random_batch(config, 1, 10, 8);
  const at::Tensor full = model->forward(batch).action_preds[0];
  PolicySpec spec;
  spec.name = "full";
  ControllerOptions options;
  options.delay = 7;  // not a multiple of 3: feed() must split steps across updates
  MemoryController controller(make_policy(spec), static_cast<int>(config.n_layer), options);
  const at::Tensor cached = cached_actions(model, batch, 0, &controller);
  EXPECT_LT((full - cached).abs().max().item<double>(), 1e-5);
  EXPECT_EQ(controller.num_updates(), (3 * 10 - 1) / 7);
}

TEST(DecisionTransformer, PruningPolicyShrinksCacheAndKeepsRunning) {
  at::set_num_threads(1);
  const DtConfig config = tiny_config();
  const DecisionTransformer model = tiny_model(config);
  const DtBatch batch = random_batch(config, 1, 20, 9);
  PolicySpec spec;
  spec.name = "h2o";
  spec.budget = Budget::parse("12");
  ControllerOptions options;
  options.delay = 6;
  MemoryController controller(make_policy(spec), static_cast<int>(config.n_layer), options);
  SequenceState state;
  const at::Tensor cached = cached_actions(model, batch, 0, &controller, &state);
  EXPECT_TRUE(at::isfinite(cached).all().item<bool>());
  for (const LayerKvCache& cache : state.caches) {
    for (int64_t h = 0; h < cache.num_heads(); ++h) EXPECT_LE(cache.length(h), 12 + 6);
  }
  EXPECT_LT(state.mean_cached_tokens(), 3 * 20 - 1);
  // and the pruned context changes the predictions
  const at::Tensor full = model->forward(batch).action_preds[0];
  EXPECT_GT((full - cached).abs().max().item<double>(), 1e-4);
}

TEST(DecisionTransformer, LeftPaddingDoesNotChangeRealSteps) {
  at::set_num_threads(1);
  const DtConfig config = tiny_config();
  const DecisionTransformer model = tiny_model(config);
  DtBatch padded = random_batch(config, 1, 8, 10);
  padded.attention_mask = at::ones({1, 8});
  padded.attention_mask.narrow(1, 0, 3).zero_();
  DtBatch tail;
  tail.states = padded.states.narrow(1, 3, 5);
  tail.actions = padded.actions.narrow(1, 3, 5);
  tail.returns_to_go = padded.returns_to_go.narrow(1, 3, 5);
  tail.timesteps = padded.timesteps.narrow(1, 3, 5);
  const at::Tensor a = model->forward(padded).action_preds.narrow(1, 3, 5);
  const at::Tensor b = model->forward(tail).action_preds;
  EXPECT_LT((a - b).abs().max().item<double>(), 1e-5);
}

TEST(DecisionTransformer, DropoutOnlyWhenTrainingAndDrawnFromTheGivenGenerator) {
  at::set_num_threads(1);
  const DtConfig config = tiny_config();
  const DecisionTransformer model = tiny_model(config);
  const DtBatch batch = random_batch(config, 2, 5, 11);
  const at::Tensor eval1 = model->forward(batch).action_preds;
  const at::Tensor eval2 = model->forward(batch).action_preds;
  EXPECT_TRUE(eval1.equal(eval2));
  at::Generator g1 = at::detail::createCPUGenerator(5);
  at::Generator g2 = at::detail::createCPUGenerator(5);
  const at::Tensor train1 = model->forward(batch, true, g1).action_preds;
  const at::Tensor train2 = model->forward(batch, true, g2).action_preds;
  EXPECT_TRUE(train1.equal(train2));
  EXPECT_FALSE(train1.equal(eval1));
}

TEST(DecisionTransformer, TimestepsBeyondMaxEpLenUseTheLastRow) {
  const DtConfig config = tiny_config();
  const DecisionTransformer model = tiny_model(config);
  const at::Tensor values = at::randn({1, config.state_dim});
  const at::Tensor last = model->embed(DtTokenKind::kState, values, at::full({1}, config.max_ep_len - 1, at::kLong));
  const at::Tensor beyond = model->embed(DtTokenKind::kState, values, at::full({1}, config.max_ep_len + 500, at::kLong));
  EXPECT_TRUE(last.equal(beyond));
}

TEST(DtConfig, RejectsUnsupportedSettingsByName) {
  DtConfig c = tiny_config();
  c.activation_function = "mish";
  EXPECT_NE(error_of([&] { c.validate(); }).find("activation_function 'mish'"), std::string::npos);
  c = tiny_config();
  c.n_head = 3;
  EXPECT_NE(error_of([&] { c.validate(); }).find("not a multiple of n_head 3"), std::string::npos);
  const std::string cross = error_of([] {
    parse_dt_config(R"({"state_dim": 3, "act_dim": 1, "hidden_size": 8, "add_cross_attention": true})", "x/config.json");
  });
  EXPECT_NE(cross.find("x/config.json: add_cross_attention"), std::string::npos) << cross;
  const std::string missing = error_of([] { parse_dt_config(R"({"act_dim": 1, "hidden_size": 8})", "c.json"); });
  EXPECT_NE(missing.find("c.json: required field 'state_dim'"), std::string::npos) << missing;
  const std::string gpt2 = error_of([] { parse_dt_config(R"({"model_type": "gpt2", "state_dim": 1, "act_dim": 1, "hidden_size": 8})", "g.json"); });
  EXPECT_NE(gpt2.find("model_type 'gpt2'"), std::string::npos) << gpt2;
}

TEST(DtCheckpoint, RoundTripPreservesWeightsConfigAndSidecar) {
  const DtConfig config = tiny_config(11, 3);
  const DecisionTransformer model = tiny_model(config);
  DtSidecar sidecar;
  sidecar.env = "hopper";
  sidecar.state_mean.assign(11, 0.5);
  sidecar.state_std.assign(11, 2.0);
  sidecar.return_scale = 500.0;
  sidecar.target_return = 1800.0;
  sidecar.context = 7;
  sidecar.provenance_json = R"({"seed": 3})";
  const std::string dir = temp_dir("roundtrip");
  save_dt_checkpoint(dir, model, sidecar, {{"namm.step", "12"}});
  const DtCheckpoint loaded = load_dt_checkpoint(dir);
  ASSERT_TRUE(loaded.has_sidecar);
  EXPECT_EQ(loaded.metadata.at("namm.step"), "12");
  EXPECT_EQ(loaded.metadata.at("format"), "pt");
  EXPECT_EQ(loaded.config.summary(), config.summary());
  EXPECT_EQ(loaded.sidecar.env, "hopper");
  EXPECT_EQ(loaded.sidecar.state_std, sidecar.state_std);
  EXPECT_EQ(loaded.sidecar.return_scale, 500.0);
  EXPECT_EQ(loaded.sidecar.target_return, 1800.0);
  EXPECT_EQ(loaded.sidecar.context, 7);
  const auto a = model->hf_named_parameters();
  const auto b = loaded.model->hf_named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(a[i].second.equal(b[i].second)) << a[i].first;
  }
  // Conv1D weights are stored [in, out], as GPT-2 writes them
  const SafetensorsFile file = read_safetensors(dir + "/model.safetensors");
  EXPECT_EQ(file.at("encoder.h.0.attn.c_attn.weight").sizes(), (std::vector<int64_t>{16, 48}));
  EXPECT_EQ(file.at("encoder.h.0.mlp.c_proj.weight").sizes(), (std::vector<int64_t>{64, 16}));
  EXPECT_EQ(file.at("predict_action.0.weight").sizes(), (std::vector<int64_t>{3, 16}));
  fs::remove_all(dir);
}

TEST(DtCheckpoint, CorruptFilesFailWithOneLineNamingFileAndTensor) {
  const DtConfig config = tiny_config(11, 3);
  const DecisionTransformer model = tiny_model(config);
  DtSidecar sidecar;
  const std::string dir = temp_dir("corrupt");
  save_dt_checkpoint(dir, model, sidecar);
  const std::string weights = dir + "/model.safetensors";
  const std::string good = read_text(weights);
  std::map<std::string, at::Tensor> tensors;
  for (const auto& [name, t] : model->hf_named_parameters()) tensors[name] = t.detach();

  auto expect_error = [&](const std::string& needle) {
    const std::string message = error_of([&] { load_dt_checkpoint(dir); });
    EXPECT_NE(message.find(needle), std::string::npos) << "got: " << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  };

  auto wrong_shape = tensors;
  wrong_shape["encoder.h.1.attn.c_attn.weight"] = at::zeros({48, 16});  // nn.Linear layout instead of Conv1D
  write_safetensors(weights, wrong_shape);
  expect_error(weights + ": tensor encoder.h.1.attn.c_attn.weight has shape [48, 16] but config.json implies [16, 48]");

  auto missing = tensors;
  missing.erase("embed_ln.bias");
  write_safetensors(weights, missing);
  expect_error(weights + ": missing tensor embed_ln.bias");

  auto extra = tensors;
  extra["encoder.h.0.attn.q_proj.weight"] = at::zeros({2});
  write_safetensors(weights, extra);
  expect_error(weights + ": unexpected tensor encoder.h.0.attn.q_proj.weight");

  auto nan = tensors;
  nan["embed_state.weight"] = at::full({16, 11}, NAN);
  write_safetensors(weights, nan);
  expect_error("tensor embed_state.weight holds NaN");

  write_text(weights, good.substr(0, good.size() / 2));
  expect_error(weights + ":");

  fs::remove(weights);
  write_text(dir + "/pytorch_model.bin", "pickle");
  expect_error("pytorch_model.bin (a Python pickle) is not read");

  write_text(weights, good);
  write_text(dir + "/dt_sidecar.json", R"({"state_std": [1, 1, 1]})");
  expect_error(dir + "/dt_sidecar.json: state_std has 3 values, the model's state_dim is 11");
  write_text(dir + "/dt_sidecar.json", R"({"return_scale": 0})");
  expect_error("return_scale must be finite and > 0");

  fs::remove(dir + "/dt_sidecar.json");
  write_text(dir + "/config.json", R"({"state_dim": 11, "act_dim": 3, "hidden_size": "big"})");
  expect_error(dir + "/config.json: field 'hidden_size' must be an integer");
  fs::remove_all(dir);
}

// ---------------------------------------------------------------------------
// training

TEST(TrainDt, WindowsArePureFunctionsOfSeedAndStepAndStayInOneEpisode) {
  const auto dataset = hopper_dataset(4, 40, 3);
  const DtTrainingData data = DtTrainingData::from_dataset(*dataset, 1000.0);
  const DtTrainBatch a = make_dt_batch(data, 6, 32, 9, 17);
  const DtTrainBatch b = make_dt_batch(data, 6, 32, 9, 17);
  const DtTrainBatch c = make_dt_batch(data, 6, 32, 9, 18);
  EXPECT_TRUE(a.batch.states.equal(b.batch.states));
  EXPECT_NE(a.starts, c.starts);
  for (int64_t row = 0; row < 32; ++row) {
    const int64_t start = a.starts[static_cast<size_t>(row)];
    const at::Tensor m = a.batch.attention_mask[row];  // [K]
    const int64_t real = m.sum().item<int64_t>();
    EXPECT_EQ(real, std::min<int64_t>(6, data.episode_end[static_cast<size_t>(start)] - start));
    // left padding: zeros first, then ones
    EXPECT_TRUE(m.narrow(0, 6 - real, real).eq(1).all().item<bool>());
    // timesteps run on inside the episode
    const at::Tensor steps = a.batch.timesteps[row].narrow(0, 6 - real, real);
    EXPECT_EQ(steps[0].item<int64_t>(), data.timesteps[start].item<int64_t>());
    EXPECT_TRUE((steps.diff() == 1).all().item<bool>());
  }
  // returns-to-go of an episode's last step is its last reward / scale
  const std::vector<EpisodeRange> episodes = dataset->episodes();
  const int64_t last = episodes[0].end - 1;
  EXPECT_NEAR(data.returns_to_go[last].item<double>(), dataset->rewards[static_cast<size_t>(last)] / 1000.0, 1e-7);
  EXPECT_NEAR(data.returns_to_go[0].item<double>(), episodes[0].episode_return / 1000.0, 1e-5);
}

TEST(TrainDt, LossDecreasesOnTinyDataset) {
  const auto dataset = hopper_dataset(6, 60, 4);
  const std::string dir = temp_dir("learn");
  DtTrainer trainer(tiny_train_options(dir), nullptr, dataset);
  double first = 0, last = 0;
  for (int i = 0; i < 60; ++i) {
    const double loss = trainer.train_step().loss;
    if (i < 5) first += loss / 5;
    if (i >= 55) last += loss / 5;
  }
  EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;
  fs::remove_all(dir);
}

TEST(TrainDt, ResumeReachesBitwiseTheSameWeights) {
  const auto dataset = hopper_dataset(3, 40, 5);
  const std::string straight_dir = temp_dir("straight");
  const std::string resumed_dir = temp_dir("resumed");
  TrainDtOptions options = tiny_train_options(straight_dir);
  options.steps = 10;
  options.checkpoint_every = 4;
  DtTrainer straight(options, nullptr, dataset);
  straight.train();

  options.out_dir = resumed_dir;
  {
    DtTrainer first(options, nullptr, dataset);
    int calls = 0;
    first.train([&] { return ++calls > 6; });  // stops after 6 steps (checkpointed at stop)
    EXPECT_EQ(first.step(), 6);
  }
  at::manual_seed(12345);  // a disturbed global generator must not matter
  DtTrainer second(options, nullptr, dataset);
  EXPECT_TRUE(second.resumed());
  EXPECT_EQ(second.step(), 6);
  second.train();
  const auto a = straight.model()->hf_named_parameters();
  const auto b = second.model()->hf_named_parameters();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(a[i].second.equal(b[i].second)) << a[i].first;
  // the saved model directory loads and carries the dataset normalisation
  const DtCheckpoint saved = load_dt_checkpoint(resumed_dir);
  EXPECT_TRUE(saved.has_sidecar);
  EXPECT_EQ(saved.sidecar.env, "hopper");
  EXPECT_EQ(saved.sidecar.state_mean.size(), 11u);
  EXPECT_EQ(saved.sidecar.context, 5);
  EXPECT_TRUE(fs::exists(resumed_dir + "/provenance.json"));

  // other (resume) options are refused with the differing field named
  options.lr = 5e-4;
  const std::string message = error_of([&] { DtTrainer third(options, nullptr, dataset); });
  EXPECT_NE(message.find("lr: saved"), std::string::npos) << message;
  fs::remove_all(straight_dir);
  fs::remove_all(resumed_dir);
}

TEST(TrainDt, BadOptionsFailNamingTheField) {
  TrainDtOptions o;
  o.context = 0;
  EXPECT_NE(error_of([&] { o.validate(); }).find("context must be >= 1, got 0"), std::string::npos);
  o = TrainDtOptions();
  o.schedule = "step";
  EXPECT_NE(error_of([&] { o.validate(); }).find("schedule must be constant, linear or cosine, got 'step'"),
            std::string::npos);
  o = TrainDtOptions();
  o.heads = 3;
  EXPECT_NE(error_of([&] { o.validate(); }).find("heads must divide hidden 128, got 3"), std::string::npos);
}

TEST(TrainDt, LearningRateWarmsUpThenDecays) {
  TrainDtOptions o;
  o.lr = 1e-3;
  o.steps = 100;
  o.warmup_steps = 10;
  o.min_lr_ratio = 0.1;
  EXPECT_NEAR(dt_learning_rate(o, 0), 1e-4, 1e-12);
  EXPECT_NEAR(dt_learning_rate(o, 9), 1e-3, 1e-12);
  EXPECT_NEAR(dt_learning_rate(o, 10), 1e-3, 1e-12);
  EXPECT_NEAR(dt_learning_rate(o, 100), 1e-4, 1e-12);
  o.schedule = "linear";
  EXPECT_NEAR(dt_learning_rate(o, 55), 1e-3 * (1 - 0.9 * 0.5), 1e-12);
  o.schedule = "constant";
  EXPECT_NEAR(dt_learning_rate(o, 99), 1e-3, 1e-12);
}

}  // namespace
}  // namespace namm
