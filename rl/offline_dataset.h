// An offline RL dataset in D4RL's layout: flat per-step arrays, episodes
// delimited by terminals (the robot fell) or timeouts (truncated at the time
// limit or the end of collection). Stored as one safetensors file whose
// metadata carries the provenance (env, behaviour policy, seeds, return
// statistics, command, commit).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace namm {

/// One episode's [begin, end) step range in an OfflineDataset.
struct EpisodeRange {
  int64_t begin = 0;
  int64_t end = 0;
  double episode_return = 0.0;  ///< sum of rewards[begin, end).
  bool terminated = false;      ///< ended by a terminal (not a timeout).
};

/// D4RL-style flat arrays; N steps, O observation and A action values per step.
struct OfflineDataset {
  std::string env;                  ///< "hopper" or "walker2d".
  int64_t observation_size = 0;     ///< O.
  int64_t action_size = 0;          ///< A.
  std::vector<float> observations;  ///< [N * O] row-major: the observation the action was taken in.
  std::vector<float> actions;       ///< [N * A] row-major, in [-1, 1].
  std::vector<float> rewards;       ///< [N].
  std::vector<uint8_t> terminals;   ///< [N] 1 where the step ended the episode by termination.
  std::vector<uint8_t> timeouts;    ///< [N] 1 where the episode was cut (time limit / end of collection).
  std::string metadata_json;        ///< provenance record (a JSON object as text).

  int64_t size() const { return static_cast<int64_t>(rewards.size()); }
  /// The episodes in order; the last one ends at size() even if unmarked.
  std::vector<EpisodeRange> episodes() const;
  /// Throws std::runtime_error (naming `source`) if the arrays disagree in length,
  /// hold a non-finite value, or the sizes are not positive.
  void validate(const std::string& source) const;
};

/// Writes the dataset atomically as safetensors (observations [N,O] F32,
/// actions [N,A] F32, rewards [N] F32, terminals [N] U8, timeouts [N] U8;
/// __metadata__: env, observation_size, action_size, provenance).
void save_offline_dataset(const OfflineDataset& dataset, const std::string& path);

/// Reads what save_offline_dataset wrote; one-line std::runtime_error naming
/// the path for a missing file, a wrong layout, mismatched shapes or NaNs.
OfflineDataset load_offline_dataset(const std::string& path);

}  // namespace namm
