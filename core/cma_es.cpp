// CMA-ES after Hansen's tutorial (arXiv:1604.00772, 2016); equation numbers
// below are the tutorial's. Per generation the work is a few [lambda, n] x
// [n, n] matmuls and one rank-lambda update of C, O(n^2 lambda); the O(n^3)
// eigendecomposition runs only every lambda / (c_1 + c_mu) / n / 10
// evaluations, as the tutorial prescribes (about every 25 generations for
// a 4,172-parameter NAMM with lambda = 32).
#include "core/cma_es.h"

#include "core/safetensors.h"
#include "core/seed_mix.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>

namespace namm {
namespace {

constexpr char kFormat[] = "namm.cma_es";
constexpr char kVersion[] = "1";

const at::TensorOptions kF64 = at::TensorOptions().dtype(at::kDouble);

// 17 significant digits: parses back to the same double.
std::string exact(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

[[noreturn]] void fail_file(const std::string& path, const std::string& problem) {
  throw std::runtime_error(path + ": " + problem);
}

std::string shape_of(const at::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

// mix64 (core/seed_mix.h) turns (seed, generation) into a well-mixed
// generator seed, so the samples of a generation need no stream state to be saved.
uint64_t mix(uint64_t x) { return mix64(x); }

// standard normals by Box-Muller from 53-bit uniforms in (0, 1]: the same
// numbers on every platform, unlike std::normal_distribution.
void fill_standard_normal(double* out, int64_t count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const double two_pi = 2.0 * M_PI;
  auto uniform = [&rng] { return (static_cast<double>(rng() >> 11) + 1.0) * 0x1.0p-53; };
  for (int64_t i = 0; i < count; i += 2) {
    const double radius = std::sqrt(-2.0 * std::log(uniform()));
    const double angle = two_pi * uniform();
    out[i] = radius * std::cos(angle);
    if (i + 1 < count) out[i + 1] = radius * std::sin(angle);
  }
}

}  // namespace

void CmaEsOptions::validate() const {
  if (dimension < 1)
    throw std::invalid_argument("CmaEsOptions: dimension must be >= 1, got " +
                                std::to_string(dimension));
  if (population != 0 && population < 2)
    throw std::invalid_argument("CmaEsOptions: population must be 0 (default) or >= 2, got " +
                                std::to_string(population));
  if (!(initial_sigma > 0) || !std::isfinite(initial_sigma))
    throw std::invalid_argument("CmaEsOptions: initial_sigma must be finite and > 0, got " +
                                exact(initial_sigma));
  if (!initial_mean.empty()) {
    if (static_cast<int64_t>(initial_mean.size()) != dimension)
      throw std::invalid_argument("CmaEsOptions: initial_mean has " +
                                  std::to_string(initial_mean.size()) +
                                  " values, expected dimension " + std::to_string(dimension));
    for (size_t i = 0; i < initial_mean.size(); ++i)
      if (!std::isfinite(initial_mean[i]))
        throw std::invalid_argument("CmaEsOptions: initial_mean[" + std::to_string(i) + "] is " +
                                    exact(initial_mean[i]));
  }
}

CmaEsParameters CmaEsParameters::defaults(int64_t dimension, int64_t population, bool active) {
  if (dimension < 1)
    throw std::invalid_argument("CmaEsParameters: dimension must be >= 1, got " +
                                std::to_string(dimension));
  const double n = static_cast<double>(dimension);
  const int64_t lambda =
      population != 0 ? population : 4 + static_cast<int64_t>(std::floor(3.0 * std::log(n)));
  if (lambda < 2)
    throw std::invalid_argument("CmaEsParameters: population must be >= 2, got " +
                                std::to_string(lambda));
  CmaEsParameters p;
  p.dimension = dimension;
  p.population = lambda;
  p.parents = lambda / 2;

  // raw weights (49): w'_i = ln((lambda + 1) / 2) - ln i, positive for i <= mu.
  std::vector<double> raw(lambda);
  for (int64_t i = 0; i < lambda; ++i)
    raw[i] = std::log((lambda + 1) / 2.0) - std::log(static_cast<double>(i + 1));
  double pos_sum = 0, pos_sq = 0, neg_sum = 0, neg_sq = 0;
  for (double w : raw) {
    if (w > 0) { pos_sum += w; pos_sq += w * w; }
    else { neg_sum += w; neg_sq += w * w; }
  }
  // (50), over the first mu and the remaining lambda - mu raw weights.
  p.mu_eff = pos_sum * pos_sum / pos_sq;
  p.mu_eff_minus = neg_sq > 0 ? neg_sum * neg_sum / neg_sq : 0.0;

  // selection and recombination, step-size control, covariance adaptation (Table 1).
  const double alpha_cov = 2.0;
  p.c_m = 1.0;
  p.c_sigma = (p.mu_eff + 2.0) / (n + p.mu_eff + 5.0);
  p.d_sigma = 1.0 + 2.0 * std::max(0.0, std::sqrt((p.mu_eff - 1.0) / (n + 1.0)) - 1.0) + p.c_sigma;
  p.c_c = (4.0 + p.mu_eff / n) / (n + 4.0 + 2.0 * p.mu_eff / n);
  p.c_1 = alpha_cov / ((n + 1.3) * (n + 1.3) + p.mu_eff);
  // the 2016 tutorial's c_mu (later revisions add 1/4 to the numerator's sum).
  p.c_mu = std::min(1.0 - p.c_1, alpha_cov * (p.mu_eff - 2.0 + 1.0 / p.mu_eff) /
                                     ((n + 2.0) * (n + 2.0) + alpha_cov * p.mu_eff / 2.0));
  p.chi_n = std::sqrt(n) * (1.0 - 1.0 / (4.0 * n) + 1.0 / (21.0 * n * n));

  // (53): positive weights sum to 1; negative ones sum to -min(alpha_mu^-,
  // alpha_mueff^-, alpha_posdef^-), which keeps C positive definite.
  const double alpha_mu_minus = 1.0 + p.c_1 / p.c_mu;
  const double alpha_mueff_minus = 1.0 + 2.0 * p.mu_eff_minus / (p.mu_eff + 2.0);
  const double alpha_posdef_minus = (1.0 - p.c_1 - p.c_mu) / (n * p.c_mu);
  const double neg_scale = std::min({alpha_mu_minus, alpha_mueff_minus, alpha_posdef_minus});
  p.weights.resize(lambda);
  for (int64_t i = 0; i < lambda; ++i) {
    if (raw[i] >= 0) p.weights[i] = raw[i] / pos_sum;
    else p.weights[i] = active ? neg_scale * raw[i] / -neg_sum : 0.0;
  }
  p.eigen_interval_evaluations = lambda / (p.c_1 + p.c_mu) / n / 10.0;
  return p;
}

CmaEs::CmaEs(CmaEsOptions options, StateFollows) : options_(std::move(options)) {
  options_.validate();
  params_ = CmaEsParameters::defaults(options_.dimension, options_.population, options_.active);
  options_.population = params_.population;
}

CmaEs::CmaEs(CmaEsOptions options) : CmaEs(std::move(options), StateFollows{}) {
  const int64_t n = options_.dimension;
  mean_ = options_.initial_mean.empty()
              ? at::zeros({n}, kF64)
              : at::tensor(options_.initial_mean, kF64).clone();
  sigma_ = options_.initial_sigma;
  cov_ = at::eye(n, kF64);
  basis_ = at::eye(n, kF64);
  axes_ = at::ones({n}, kF64);
  p_sigma_ = at::zeros({n}, kF64);
  p_c_ = at::zeros({n}, kF64);
}

void CmaEs::sample() {
  if (sampled_generation_ == generation_) return;
  const int64_t lambda = params_.population, n = params_.dimension;
  z_ = at::empty({lambda, n}, kF64);
  fill_standard_normal(z_.data_ptr<double>(), lambda * n,
                       mix(mix(options_.seed) ^ static_cast<uint64_t>(generation_)));
  // y_k = B D z_k, all rows at once: [lambda, n] = ([lambda, n] * D) @ B^T.
  y_ = at::matmul(z_ * axes_, basis_.t());
  sampled_generation_ = generation_;
}

at::Tensor CmaEs::ask() {
  sample();
  // x_k = m + sigma y_k  (38-40): [lambda, n]
  return mean_.unsqueeze(0) + sigma_ * y_;
}

void CmaEs::tell(const at::Tensor& fitness) {
  const int64_t lambda = params_.population, n = params_.dimension, mu = params_.parents;
  if (!fitness.defined() || fitness.dim() != 1 || fitness.size(0) != lambda)
    throw std::invalid_argument(
        "CmaEs::tell: fitness has shape " + (fitness.defined() ? shape_of(fitness) : "undefined") +
        ", expected [" + std::to_string(lambda) + "] (one value per candidate)");
  const at::Tensor f = fitness.to(at::kCPU).to(at::kDouble).contiguous();
  const double* fv = f.data_ptr<double>();
  for (int64_t k = 0; k < lambda; ++k)
    if (!std::isfinite(fv[k]))
      throw std::invalid_argument("CmaEs::tell: fitness[" + std::to_string(k) + "] is " +
                                  exact(fv[k]) + " at generation " + std::to_string(generation_));
  sample();  // the same samples ask() returned (also after a load between ask and tell)

  // rank best first; ties keep the order of ask() so results stay deterministic.
  std::vector<int64_t> order(lambda);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [fv](int64_t a, int64_t b) { return fv[a] > fv[b]; });
  if (fv[order[0]] > best_f_) {
    best_f_ = fv[order[0]];
    best_x_ = mean_ + sigma_ * y_[order[0]];
  }
  const at::Tensor index = at::tensor(order, at::kLong);
  const at::Tensor y = y_.index_select(0, index);  // [lambda, n] best first
  const at::Tensor z = z_.index_select(0, index);  // [lambda, n]
  const at::Tensor w = at::tensor(params_.weights, kF64);  // [lambda]
  const at::Tensor w_pos = w.slice(0, 0, mu);               // [mu]

  // selection and recombination (41-42): <y>_w over the mu best.
  const at::Tensor y_w = at::matmul(w_pos, y.slice(0, 0, mu));  // [n]
  const at::Tensor z_w = at::matmul(w_pos, z.slice(0, 0, mu));  // [n]
  mean_ = mean_ + params_.c_m * sigma_ * y_w;

  // step-size path (43): C^{-1/2} <y>_w = B D^{-1} B^T B D <z>_w = B <z>_w.
  const double cs = params_.c_sigma;
  p_sigma_ = (1.0 - cs) * p_sigma_ +
             std::sqrt(cs * (2.0 - cs) * params_.mu_eff) * at::matmul(basis_, z_w);
  const double p_sigma_norm = p_sigma_.norm().item<double>();

  // stall rule: h_sigma = 1 unless ||p_sigma|| is large, which would make
  // p_c grow too fast after a step-size increase.
  const double correction =
      std::sqrt(1.0 - std::pow(1.0 - cs, 2.0 * static_cast<double>(generation_ + 1)));
  const double h_sigma =
      p_sigma_norm / correction < (1.4 + 2.0 / (n + 1.0)) * params_.chi_n ? 1.0 : 0.0;

  // rank-one path (45).
  const double cc = params_.c_c;
  p_c_ = (1.0 - cc) * p_c_ + h_sigma * std::sqrt(cc * (2.0 - cc) * params_.mu_eff) * y_w;

  // active weights (46): negative ones rescaled by n / ||C^{-1/2} y_i||^2 =
  // n / ||z_i||^2, so unlikely bad directions are not penalised without bound.
  std::vector<double> w_circ(params_.weights);
  const at::Tensor z_sq = z.pow(2).sum(1);  // [lambda]
  const double* z_sq_v = z_sq.data_ptr<double>();
  double w_sum = 0;
  for (int64_t i = 0; i < lambda; ++i) {
    w_sum += params_.weights[i];
    if (params_.weights[i] < 0) w_circ[i] *= static_cast<double>(n) / z_sq_v[i];
  }

  // covariance (47): C <- (1 + c_1 delta(h) - c_1 - c_mu sum w_j) C
  //                        + c_1 p_c p_c^T + c_mu sum w°_i y_i y_i^T.
  const double c1 = params_.c_1, cmu = params_.c_mu;
  const double delta_h = (1.0 - h_sigma) * cc * (2.0 - cc);
  const double decay = 1.0 + c1 * delta_h - c1 - cmu * w_sum;
  const at::Tensor y_weighted = y * at::tensor(w_circ, kF64).unsqueeze(1);  // [lambda, n]
  cov_.addmm_(y_weighted.t(), y, decay, cmu);  // [n, n]
  cov_.addr_(p_c_, p_c_, 1.0, c1);

  // step size (44).
  sigma_ *= std::exp(cs / params_.d_sigma * (p_sigma_norm / params_.chi_n - 1.0));
  if (!std::isfinite(sigma_) || !(sigma_ > 0))
    throw std::runtime_error("CmaEs::tell: step size became " + exact(sigma_) +
                             " at generation " + std::to_string(generation_));

  ++generation_;
  evaluations_ += lambda;
  if (static_cast<double>(evaluations_ - eigen_evaluations_) > params_.eigen_interval_evaluations)
    decompose();
}

void CmaEs::decompose() {
  // keep C exactly symmetric: the rank-lambda update rounds (i, j) and (j, i)
  // differently, so mirror the upper triangle before decomposing.
  cov_ = at::triu(cov_) + at::triu(cov_, 1).t();
  auto [eigenvalues, eigenvectors] = at::linalg_eigh(cov_);  // ascending
  const double smallest = eigenvalues[0].item<double>();
  if (!(smallest > 0))
    throw std::runtime_error("CmaEs: covariance is not positive definite at generation " +
                             std::to_string(generation_) + " (smallest eigenvalue " +
                             exact(smallest) + ")");
  axes_ = eigenvalues.sqrt();
  basis_ = eigenvectors.contiguous();
  eigen_evaluations_ = evaluations_;
  sampled_generation_ = -1;
}

void CmaEs::save(const std::string& path) const {
  std::map<std::string, at::Tensor> tensors = {
      {"mean", mean_},         {"covariance", cov_}, {"eigenvectors", basis_},
      {"axis_lengths", axes_}, {"path_sigma", p_sigma_}, {"path_c", p_c_},
      {"initial_mean", at::tensor(options_.initial_mean.empty()
                                      ? std::vector<double>(options_.dimension, 0.0)
                                      : options_.initial_mean, kF64)},
  };
  if (best_x_.defined()) tensors["best_candidate"] = best_x_;
  const std::map<std::string, std::string> metadata = {
      {"format", kFormat},
      {"version", kVersion},
      {"dimension", std::to_string(options_.dimension)},
      {"population", std::to_string(params_.population)},
      {"initial_sigma", exact(options_.initial_sigma)},
      {"seed", std::to_string(options_.seed)},
      {"active", options_.active ? "1" : "0"},
      {"sigma", exact(sigma_)},
      {"generation", std::to_string(generation_)},
      {"evaluations", std::to_string(evaluations_)},
      {"eigen_evaluations", std::to_string(eigen_evaluations_)},
      {"best_fitness", exact(best_f_)},
  };
  write_safetensors(path, tensors, metadata);
}

CmaEs CmaEs::load(const std::string& path) {
  const SafetensorsFile file = read_safetensors(path);
  auto fail = [&path](const std::string& problem) { fail_file(path, problem); };
  auto meta = [&](const std::string& key) -> const std::string& {
    const auto it = file.metadata.find(key);
    if (it == file.metadata.end()) fail("not a CMA-ES state: metadata \"" + key + "\" missing");
    return it->second;
  };
  auto integer = [&](const std::string& key) -> int64_t {
    const std::string& text = meta(key);
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno != 0 || v < 0)
      fail("metadata \"" + key + "\" is \"" + text + "\", not a non-negative integer");
    return v;
  };
  auto real = [&](const std::string& key) -> double {
    const std::string& text = meta(key);
    char* end = nullptr;
    const double v = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0') fail("metadata \"" + key + "\" is \"" + text + "\", not a number");
    return v;
  };
  if (meta("format") != kFormat)
    fail("format is \"" + meta("format") + "\", expected \"" + kFormat + "\"");
  if (meta("version") != kVersion)
    fail("version is \"" + meta("version") + "\", this build reads \"" + kVersion + "\"");

  CmaEsOptions options;
  options.dimension = integer("dimension");
  options.population = integer("population");
  options.initial_sigma = real("initial_sigma");
  {
    const std::string& text = meta("seed");
    char* end = nullptr;
    errno = 0;
    options.seed = std::strtoull(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno != 0 || text[0] == '-')
      fail("metadata \"seed\" is \"" + text + "\", not an unsigned integer");
  }
  if (meta("active") != "0" && meta("active") != "1")
    fail("metadata \"active\" is \"" + meta("active") + "\", expected 0 or 1");
  options.active = meta("active") == "1";
  const int64_t n = options.dimension;

  auto tensor = [&](const std::string& name, std::vector<int64_t> shape) -> at::Tensor {
    const at::Tensor& t = file.at(name);
    if (t.scalar_type() != at::kDouble || t.sizes() != at::IntArrayRef(shape))
      fail("tensor \"" + name + "\" is " + std::string(c10::toString(t.scalar_type())) + " " +
           shape_of(t) + ", expected Double " + shape_of(at::empty(shape, at::kByte)));
    return t;  // shares the file's buffer, which the tensors keep alive
  };
  const at::Tensor initial_mean = tensor("initial_mean", {n});
  options.initial_mean.assign(initial_mean.data_ptr<double>(),
                              initial_mean.data_ptr<double>() + n);
  try {
    options.validate();
  } catch (const std::invalid_argument& e) {
    fail(e.what());
  }

  CmaEs es(options, StateFollows{});
  es.mean_ = tensor("mean", {n});
  es.cov_ = tensor("covariance", {n, n});
  es.basis_ = tensor("eigenvectors", {n, n});
  es.axes_ = tensor("axis_lengths", {n});
  es.p_sigma_ = tensor("path_sigma", {n});
  es.p_c_ = tensor("path_c", {n});
  es.sigma_ = real("sigma");
  es.generation_ = integer("generation");
  es.evaluations_ = integer("evaluations");
  es.eigen_evaluations_ = integer("eigen_evaluations");
  es.best_f_ = real("best_fitness");
  if (file.tensors.count("best_candidate")) es.best_x_ = tensor("best_candidate", {n});

  if (!(es.sigma_ > 0) || !std::isfinite(es.sigma_)) fail("sigma is " + exact(es.sigma_));
  if (es.evaluations_ != es.generation_ * es.params_.population ||
      es.eigen_evaluations_ > es.evaluations_)
    fail("inconsistent counters: generation " + std::to_string(es.generation_) + ", evaluations " +
         std::to_string(es.evaluations_) + ", eigen_evaluations " +
         std::to_string(es.eigen_evaluations_) + " with population " +
         std::to_string(es.params_.population));
  if (es.best_x_.defined() != (es.generation_ > 0))
    fail("best_candidate " + std::string(es.best_x_.defined() ? "present" : "missing") +
         " at generation " + std::to_string(es.generation_));
  for (const auto& [name, t] : std::map<std::string, at::Tensor>{
           {"mean", es.mean_}, {"covariance", es.cov_}, {"eigenvectors", es.basis_},
           {"axis_lengths", es.axes_}, {"path_sigma", es.p_sigma_}, {"path_c", es.p_c_}})
    // a sum is NaN or infinite if any element is (and no valid state overflows it).
    if (!std::isfinite(t.sum().item<double>()))
      fail("tensor \"" + name + "\" has non-finite values");
  if (!(es.axes_ > 0).all().item<bool>()) fail("tensor \"axis_lengths\" has values <= 0");
  return es;
}

}  // namespace namm
