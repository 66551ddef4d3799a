// Sizes checked before they are allocated: a job that would need more memory
// than the machine has fails at once with the figure and what asked for it,
// not with the kernel's OOM killer or a bare std::bad_alloc minutes later.
#pragma once

#include <cstdint>
#include <string>

namespace namm {

/// Bytes the machine can still give: MemAvailable from /proc/meminfo plus
/// free swap; -1 when unknown (then nothing is refused). NAMM_MEMORY_LIMIT
/// (bytes) in the environment caps it, for tests and shared machines.
double available_memory_bytes();

/// "1.5 GB", "320 MB", "12 KB", "7 bytes" (powers of 1000).
std::string format_bytes(double bytes);

/// Throws std::runtime_error("<what> needs about <X> of memory, <Y> is
/// available") when bytes (an estimate; may be inf or nan for an overflowed
/// product, which is refused too) exceeds available_memory_bytes().
void require_memory(double bytes, const std::string& what);

}  // namespace namm
