// Test support: a small random Hopper-sized Decision Transformer and the
// sidecar that goes with it, shared by the rollout, render and eval-rl tests.
#pragma once

#include "rl/decision_transformer.h"
#include "rl/dt_checkpoint.h"

#include <ATen/ATen.h>

#include <cstdint>

namespace namm::test_support {

/// Larger weights than the default initialisation, so that actions depend
/// visibly on the context. Same seed, same weights.
inline DecisionTransformer tiny_hopper_model(uint64_t seed = 3) {
  DtConfig c;
  c.state_dim = 11;
  c.act_dim = 3;
  c.hidden_size = 32;
  c.n_layer = 2;
  c.n_head = 2;
  c.max_ep_len = 1000;
  at::manual_seed(seed);
  DecisionTransformer model(c);
  at::NoGradGuard no_grad;
  for (auto& p : model->parameters()) p.normal_(0.0, 0.2);
  return model;
}

/// Hopper conditioning at the usual target return, no state normalisation.
inline DtSidecar hopper_sidecar() {
  DtSidecar s;
  s.env = "hopper";
  s.target_return = 3600.0;
  return s;
}

}  // namespace namm::test_support
