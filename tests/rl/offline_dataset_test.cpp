// OfflineDataset: the safetensors round trip, every corrupt-file case
// failing with one line naming the path, and episode splitting.
#include "rl/offline_dataset.h"

#include "core/atomic_file.h"
#include "core/safetensors.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

namespace namm {
namespace {

namespace fs = std::filesystem;

std::string temp_path(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / "namm_offline_dataset_test";
  fs::create_directories(dir);
  return (dir / name).string();
}

/// 5 steps, O = 2, A = 1: an episode of 2 ending in a terminal, one of 2
/// cut by a timeout, and an unmarked last step.
OfflineDataset small_dataset() {
  OfflineDataset d;
  d.env = "hopper";
  d.observation_size = 2;
  d.action_size = 1;
  d.observations = {0.f, 1.f, 2.f, 3.f, 4.f, 5.f, 6.f, 7.f, 8.f, 9.f};
  d.actions = {0.1f, -0.2f, 0.3f, -0.4f, 0.5f};
  d.rewards = {1.f, 2.f, 3.f, 4.f, 5.f};
  d.terminals = {0, 1, 0, 0, 0};
  d.timeouts = {0, 0, 0, 1, 0};
  d.metadata_json = R"({"kind":"test"})";
  return d;
}

/// The message of what f throws as std::runtime_error; fails the test if nothing is thrown.
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no std::runtime_error thrown";
  return "";
}

void expect_one_line_naming(const std::string& message, const std::string& path, const std::string& problem) {
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find(problem), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

TEST(OfflineDataset, RoundTripKeepsEveryArrayAndTheMetadata) {
  const std::string path = temp_path("round_trip.safetensors");
  const OfflineDataset d = small_dataset();
  save_offline_dataset(d, path);
  const OfflineDataset r = load_offline_dataset(path);
  EXPECT_EQ(r.env, d.env);
  EXPECT_EQ(r.observation_size, 2);
  EXPECT_EQ(r.action_size, 1);
  EXPECT_EQ(r.observations, d.observations);
  EXPECT_EQ(r.actions, d.actions);
  EXPECT_EQ(r.rewards, d.rewards);
  EXPECT_EQ(r.terminals, d.terminals);
  EXPECT_EQ(r.timeouts, d.timeouts);
  EXPECT_EQ(r.metadata_json, d.metadata_json);
  // the documented layout: [N, O] observations, U8 flags.
  const SafetensorsFile f = read_safetensors(path);
  EXPECT_EQ(f.at("observations").sizes().vec(), (std::vector<int64_t>{5, 2}));
  EXPECT_EQ(f.at("actions").sizes().vec(), (std::vector<int64_t>{5, 1}));
  EXPECT_EQ(f.at("terminals").scalar_type(), at::kByte);
  EXPECT_EQ(f.metadata.at("env"), "hopper");
}

TEST(OfflineDataset, MissingFileGivesOneLineNamingThePath) {
  const std::string path = temp_path("does_not_exist.safetensors");
  fs::remove(path);
  const std::string m = error_of([&] { load_offline_dataset(path); });
  expect_one_line_naming(m, path, "no such file");
}

TEST(OfflineDataset, TruncatedFileGivesOneLineNamingThePath) {
  const std::string path = temp_path("truncated.safetensors");
  save_offline_dataset(small_dataset(), path);
  fs::resize_file(path, fs::file_size(path) - 7);
  const std::string m = error_of([&] { load_offline_dataset(path); });
  expect_one_line_naming(m, path, path);
}

TEST(OfflineDataset, WrongShapeGivesOneLineNamingThePathAndTensor) {
  const std::string path = temp_path("wrong_shape.safetensors");
  const OfflineDataset d = small_dataset();
  std::map<std::string, at::Tensor> tensors = {
      {"observations", at::zeros({5, 2})}, {"actions", at::zeros({5, 3})},  // A is 1 in the metadata
      {"rewards", at::zeros({5})},         {"terminals", at::zeros({5}, at::kByte)},
      {"timeouts", at::zeros({5}, at::kByte)}};
  write_safetensors(path, tensors, {{"env", "hopper"}, {"observation_size", "2"}, {"action_size", "1"}});
  const std::string m = error_of([&] { load_offline_dataset(path); });
  expect_one_line_naming(m, path, "'actions' has shape [5, 3]");

  tensors["actions"] = at::zeros({5, 1});
  tensors["terminals"] = at::zeros({4}, at::kByte);  // one flag short
  write_safetensors(path, tensors, {{"env", "hopper"}, {"observation_size", "2"}, {"action_size", "1"}});
  expect_one_line_naming(error_of([&] { load_offline_dataset(path); }), path, "'terminals'");

  tensors["terminals"] = at::zeros({5}, at::kFloat);  // wrong dtype
  write_safetensors(path, tensors, {{"env", "hopper"}, {"observation_size", "2"}, {"action_size", "1"}});
  expect_one_line_naming(error_of([&] { load_offline_dataset(path); }), path, "dtype");
}

TEST(OfflineDataset, MissingTensorOrMetadataGivesOneLineNamingThePath) {
  const std::string path = temp_path("missing_tensor.safetensors");
  write_safetensors(path, {{"rewards", at::zeros({5})}}, {{"env", "hopper"}, {"observation_size", "2"}, {"action_size", "1"}});
  expect_one_line_naming(error_of([&] { load_offline_dataset(path); }), path, "missing tensor 'observations'");
  write_safetensors(path, {{"rewards", at::zeros({5})}}, {{"env", "hopper"}});
  expect_one_line_naming(error_of([&] { load_offline_dataset(path); }), path, "observation_size");
}

TEST(OfflineDataset, NanRewardGivesOneLineNamingThePathAndStep) {
  const std::string path = temp_path("nan.safetensors");
  at::Tensor rewards = at::ones({5});
  rewards[3] = std::numeric_limits<float>::quiet_NaN();
  write_safetensors(path,
                    {{"observations", at::zeros({5, 2})}, {"actions", at::zeros({5, 1})}, {"rewards", rewards},
                     {"terminals", at::zeros({5}, at::kByte)}, {"timeouts", at::zeros({5}, at::kByte)}},
                    {{"env", "hopper"}, {"observation_size", "2"}, {"action_size", "1"}});
  expect_one_line_naming(error_of([&] { load_offline_dataset(path); }), path, "rewards holds a non-finite value (nan) at step 3");
}

TEST(OfflineDataset, SaveRefusesAnInconsistentDataset) {
  const std::string path = temp_path("refused.safetensors");
  OfflineDataset d = small_dataset();
  d.actions.pop_back();
  expect_one_line_naming(error_of([&] { save_offline_dataset(d, path); }), path, "actions has 4 values, expected 5");
  d = small_dataset();
  d.observations[3] = std::numeric_limits<float>::infinity();
  expect_one_line_naming(error_of([&] { save_offline_dataset(d, path); }), path, "step 1, element 1");
  d = small_dataset();
  d.terminals[0] = 2;
  expect_one_line_naming(error_of([&] { save_offline_dataset(d, path); }), path, "terminals holds 2");
  d = OfflineDataset();
  d.observation_size = 2;
  d.action_size = 1;
  expect_one_line_naming(error_of([&] { d.validate("empty"); }), "empty", "no steps");
}

TEST(OfflineDataset, EpisodesSplitOnTerminalsAndTimeouts) {
  const std::vector<EpisodeRange> e = small_dataset().episodes();
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(e[0].begin, 0);
  EXPECT_EQ(e[0].end, 2);
  EXPECT_TRUE(e[0].terminated);
  EXPECT_DOUBLE_EQ(e[0].episode_return, 3.0);
  EXPECT_EQ(e[1].begin, 2);
  EXPECT_EQ(e[1].end, 4);
  EXPECT_FALSE(e[1].terminated);
  EXPECT_DOUBLE_EQ(e[1].episode_return, 7.0);
  // the unmarked last step still closes an episode at size().
  EXPECT_EQ(e[2].begin, 4);
  EXPECT_EQ(e[2].end, 5);
  EXPECT_DOUBLE_EQ(e[2].episode_return, 5.0);
}

TEST(OfflineDataset, EpisodesOfAFullyMarkedDatasetHaveNoEmptyTail) {
  OfflineDataset d = small_dataset();
  d.timeouts[4] = 1;
  const std::vector<EpisodeRange> e = d.episodes();
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(e.back().end, 5);
  EXPECT_EQ(e.back().begin, 4);
}

}  // namespace
}  // namespace namm
