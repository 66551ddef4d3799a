// The one seeded mixer of the project: splitmix64 (Steele, Lea and Flood
// 2014). Every counter-based seed (task examples, scenes, training batches,
// CMA-ES samples, behaviour-policy noise) comes from these, so a pinned task
// id or a resumed run depends on exactly this arithmetic.
#pragma once

#include <cmath>
#include <cstdint>

namespace namm {

/// splitmix64's finaliser: xor-shifts and odd multiplies, each invertible, so
/// distinct inputs give distinct outputs.
inline uint64_t splitmix64_finalize(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

/// The golden-ratio increment of splitmix64's counter.
constexpr uint64_t kSplitMix64Increment = 0x9e3779b97f4a7c15ull;

/// splitmix64's finaliser over x + the golden ratio: a bijective 64-bit mixer
/// for deriving independent seeds from counters.
inline uint64_t mix64(uint64_t x) { return splitmix64_finalize(x + kSplitMix64Increment); }

/// splitmix64 as a generator whose whole state is one counter (seed it with mix_seed).
struct SplitMix64 {
  uint64_t state = 0;
  uint64_t next() { return splitmix64_finalize(state += kSplitMix64Increment); }
  /// [0, 1), 53 bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  /// Standard normal by Box-Muller, one value per pair of uniforms: no cached
  /// second value, so the state is the counter alone.
  double normal() {
    const double u1 = 1.0 - uniform();  // (0, 1]
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
};

/// A 64-bit hash of (a, b): the second output of a SplitMix64 seeded from both.
inline uint64_t mix_seed(uint64_t a, uint64_t b) {
  SplitMix64 g{a ^ (b * 0xd1342543de82ef95ull + 0x2545f4914f6cdd1dull)};
  g.next();
  return g.next();
}

}  // namespace namm
