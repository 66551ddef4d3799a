// What every long job (training, evolution, data generation) records about
// itself: wall-clock helpers for progress lines and the facts a provenance
// record names (UTC time, git commit). Shared so that every job reports
// them the same way.
#pragma once

#include "core/seed_mix.h"

#include <cstdint>
#include <string>

namespace namm {

/// Seconds on a monotonic clock (differences only).
double now_seconds();

/// "H:MM:SS" for a progress line's elapsed time or ETA; "?" when not finite or negative.
std::string format_duration(double seconds);

/// The current UTC time as ISO 8601, e.g. "2026-11-29T09:04:00Z".
std::string utc_now();

/// `git rev-parse HEAD` run in `directory`, with "+dirty" when tracked files
/// differ from it; "" outside a repository or without git. When directory is
/// empty: the current directory, else the running executable's directory
/// (a build tree inside the work tree), so a run started elsewhere still
/// records the commit of the code it ran.
std::string git_commit(const std::string& directory = "");


/// A hash of (seed, step, slot) under a per-trainer salt: what a training
/// step draws is a pure function of these, never of earlier steps, so a
/// resumed run sees the same data as an uninterrupted one.
uint64_t step_hash(uint64_t salt, uint64_t seed, int64_t step, int64_t slot);

/// Rewrites a JSONL training log (atomically) keeping the records whose
/// key ("step"; evolution logs: "generation") is <= step: on resume, the records a killed run wrote past its
/// last checkpoint are dropped (they will be redone), and so is a half-written
/// last line. Nothing happens when the file does not exist.
void keep_log_records_up_to(const std::string& log_path, int64_t step, const std::string& key = "step");

}  // namespace namm
