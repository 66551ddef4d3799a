// CMA-ES, the evolution strategy that trains a NAMM's parameter vector: an
// ask/tell optimiser that MAXIMISES a fitness. It follows Hansen, "The CMA
// Evolution Strategy: A Tutorial" (arXiv:1604.00772, 2016) to the letter:
// log-rank weights with the active (negative-weight) covariance update, the
// tutorial's default learning rates from n and mu_eff, c_m = 1, the h_sigma
// stall rule, and a lazily updated eigendecomposition of the full covariance.
// It does not evaluate anything, parallelise, restart or handle bounds; the
// caller evaluates the candidates (and, per the NAMM method, the mean).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace namm {

/// What the user chooses; everything else follows from the tutorial.
struct CmaEsOptions {
  int64_t dimension = 0;              ///< n, the number of parameters (>= 1).
  int64_t population = 0;             ///< lambda (>= 2); 0 means 4 + floor(3 ln n).
  double initial_sigma = 0.065;       ///< step size sigma at generation 0 (> 0).
  std::vector<double> initial_mean;   ///< [n]; empty means all zeros.
  uint64_t seed = 0;                  ///< sampling is a function of (seed, generation).
  bool active = true;                 ///< false: negative weights are zero (classic CMA-ES).

  /// Throws std::invalid_argument naming the offending value.
  void validate() const;
};

/// The strategy parameters the tutorial derives from n and lambda (its
/// Table 1 defaults); fixed for a run.
struct CmaEsParameters {
  int64_t dimension = 0;       ///< n.
  int64_t population = 0;      ///< lambda.
  int64_t parents = 0;         ///< mu = floor(lambda / 2), the positive weights.
  std::vector<double> weights; ///< [lambda] w_i, best first: sum of the first mu is 1, the rest <= 0.
  double mu_eff = 0;           ///< (sum w'_i)^2 / sum w'_i^2 over i <= mu.
  double mu_eff_minus = 0;     ///< the same over i > mu.
  double c_sigma = 0;          ///< cumulation rate of the step-size path.
  double d_sigma = 0;          ///< step-size damping.
  double c_c = 0;              ///< cumulation rate of the rank-one path.
  double c_1 = 0;              ///< rank-one learning rate.
  double c_mu = 0;             ///< rank-mu learning rate.
  double c_m = 1;              ///< mean learning rate.
  double chi_n = 0;            ///< E||N(0, I_n)||, approximated as in the tutorial.
  /// Evaluations between eigendecompositions: lambda / (c_1 + c_mu) / n / 10.
  double eigen_interval_evaluations = 0;

  /// The tutorial's defaults; active = false zeroes the negative weights.
  static CmaEsParameters defaults(int64_t dimension, int64_t population, bool active = true);
};

/// A running CMA-ES. Call ask() for the population, evaluate it, tell() the
/// fitnesses (higher is better), repeat. Double precision throughout.
class CmaEs {
 public:
  explicit CmaEs(CmaEsOptions options);

  /// The population of this generation: [lambda, n] float64, row k is
  /// mean + sigma * B D z_k. The samples depend only on (seed, generation),
  /// so asking twice before tell() returns the same candidates.
  at::Tensor ask();

  /// Updates the distribution from fitness: [lambda], one value per row of
  /// ask() in order, HIGHER is better. Throws std::invalid_argument on a
  /// wrong shape or a non-finite value.
  void tell(const at::Tensor& fitness);

  /// The distribution mean m: [n] float64 (the NAMM method evaluates this).
  const at::Tensor& mean() const { return mean_; }
  /// The step size sigma.
  double sigma() const { return sigma_; }
  /// Completed generations (tell() calls).
  int64_t generation() const { return generation_; }
  /// Candidates told so far (generation * lambda).
  int64_t evaluations() const { return evaluations_; }
  /// The covariance matrix C: [n, n] float64.
  const at::Tensor& covariance() const { return cov_; }
  /// The axis lengths D (square roots of C's eigenvalues at the last
  /// decomposition): [n] float64, ascending.
  const at::Tensor& axis_lengths() const { return axes_; }
  /// The best candidate ever told: [n] float64; undefined before the first tell().
  const at::Tensor& best_candidate() const { return best_x_; }
  /// Its fitness; -infinity before the first tell().
  double best_fitness() const { return best_f_; }
  /// Evolution paths: [n] float64 each.
  const at::Tensor& path_sigma() const { return p_sigma_; }
  const at::Tensor& path_c() const { return p_c_; }

  const CmaEsOptions& options() const { return options_; }
  const CmaEsParameters& parameters() const { return params_; }

  /// Writes the complete state (options, mean, sigma, C, B, D, both paths,
  /// counters, best-ever) as safetensors, atomically (about 280 MB at
  /// n = 4,172: C and B are stored in full). Resuming from it gives bitwise
  /// the same trajectory as never stopping, on the same BLAS and thread count.
  void save(const std::string& path) const;
  /// Reads a file written by save(); throws std::runtime_error("<path>: ...")
  /// if it is not one, is corrupt, or is inconsistent.
  static CmaEs load(const std::string& path);

 private:
  // constructs options and parameters only; load() fills in the state.
  struct StateFollows {};
  CmaEs(CmaEsOptions options, StateFollows);

  // draws z for the current generation into z_ and y = B D z into y_.
  void sample();
  // recomputes B and D from C (symmetrised from its upper triangle).
  void decompose();

  CmaEsOptions options_;
  CmaEsParameters params_;

  at::Tensor mean_;       // [n]
  double sigma_ = 0;
  at::Tensor cov_;        // [n, n] C
  at::Tensor basis_;      // [n, n] B, eigenvectors of C as columns
  at::Tensor axes_;       // [n] D
  at::Tensor p_sigma_;    // [n]
  at::Tensor p_c_;        // [n]
  int64_t generation_ = 0;
  int64_t evaluations_ = 0;
  int64_t eigen_evaluations_ = 0;  // evaluations_ at the last decomposition
  at::Tensor best_x_;     // [n] or undefined
  double best_f_ = -std::numeric_limits<double>::infinity();

  // samples of generation sampled_generation_ (derived, never saved).
  int64_t sampled_generation_ = -1;
  at::Tensor z_;          // [lambda, n] standard normal
  at::Tensor y_;          // [lambda, n] B D z
};

}  // namespace namm
