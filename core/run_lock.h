// Who may write where: an advisory lock per run folder and per output file,
// so two runs into one place never mix their files, and the guard that keeps
// a fresh training run from overwriting a folder that already holds a
// trained model.
//
// A lock is flock(2) on a small lock file holding the holder's pid and
// command line (for the refusal message). The kernel drops it when the
// process ends however it ends (kill -9 included), so a lock never outlives
// its run. The lock file is removed on release; taking a lock re-checks that
// the file locked is still the one at the path, so removal races are safe.
#pragma once

#include <memory>
#include <set>
#include <string>

namespace namm {

/// An exclusive advisory lock, held for the object's life. Exclusive between
/// processes; within one process, holders of the same path share it.
class FileLock {
 public:
  /// Takes the lock on lock_path (created if needed). what names the thing
  /// locked in messages ("--out models/lm"). Throws std::runtime_error
  /// "<what>: in use by another run (pid N: <command>); wait for it to end or
  /// choose another path" when another process holds it.
  FileLock(const std::string& lock_path, const std::string& what);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;  // absolute: the key of this process's held locks
};

/// The lock file of a run folder: dir/.namm.lock.
std::string run_folder_lock_path(const std::string& dir);

/// The lock file of an output file: ".<name>.lock" beside it (after following symlinks).
std::string output_lock_path(const std::string& path);

/// Creates dir (and parents) and locks it for this run: throws naming option
/// and dir when it cannot be created or another run holds it.
std::unique_ptr<FileLock> lock_run_folder(const std::string& dir, const std::string& option = "--out");

/// Checks path as an output (core/atomic_file.h check_output_file) and locks
/// it for this run. Throws "<option> <path>: ..." naming the option.
std::unique_ptr<FileLock> lock_output_file(const std::string& path, const std::string& option);

/// Refuses to start a fresh run in dir when dir already holds files but no
/// resume_file (a trained model, say): throws std::runtime_error
/// "<option> <dir>: holds <names> but no <resume_file> to resume from;
/// refusing to overwrite it (choose another <option>, or pass --force to
/// replace it)". Files in may_exist (what the run writes before its first
/// checkpoint) and lock/temporary files do not count. Does nothing when dir
/// does not exist, holds resume_file, or force is set.
void refuse_to_overwrite(const std::string& dir, const std::string& resume_file,
                         const std::set<std::string>& may_exist, bool force, const std::string& option = "--out");

}  // namespace namm

namespace namm {

/// The trainer state file every trainer resumes from.
inline constexpr char kTrainerStateFile[] = "trainer_state.safetensors";

/// What every trainer does before touching its out folder: creates and locks
/// it, then refuses (refuse_to_overwrite) a folder that holds a model but no
/// trainer state, unless force is set or the folder is the run's own
/// init_from (continuing a model in place, named twice on purpose). Returns
/// the lock, held for the run.
std::unique_ptr<FileLock> claim_training_folder(const std::string& out_dir, const std::string& init_from, bool force);

}  // namespace namm
