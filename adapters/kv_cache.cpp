// kv_cache: see kv_cache.h
#include "adapters/kv_cache.h"

#include <ATen/ATen.h>

#include <algorithm>

namespace namm {

LayerKvCache::LayerKvCache(KvCacheOptions options) : options_(options) {
  TORCH_CHECK(options_.num_heads >= 1, "LayerKvCache: num_heads must be >= 1, got ", options_.num_heads);
  TORCH_CHECK(options_.head_dim >= 1, "LayerKvCache: head_dim must be >= 1, got ", options_.head_dim);
  TORCH_CHECK(options_.min_capacity >= 1, "LayerKvCache: min_capacity must be >= 1, got ",
              options_.min_capacity);
  heads_.resize(static_cast<size_t>(options_.num_heads));
}

LayerKvCache::LayerKvCache(const LayerKvCache& other)
    : options_(other.options_),
      heads_(other.heads_),
      newest_position_(other.newest_position_),
      tokens_appended_(other.tokens_appended_),
      eviction_epoch_(other.eviction_epoch_) {
  for (HeadStore& store : heads_) {
    // only the rows in use are copied: the copy is shrunk to fit
    const int64_t length = static_cast<int64_t>(store.positions.size());
    if (!store.k.defined()) continue;
    if (length == 0) {
      store.k = at::Tensor();
      store.v = at::Tensor();
    } else {
      store.k = store.k.narrow(0, 0, length).clone();
      store.v = store.v.narrow(0, 0, length).clone();
    }
  }
}

LayerKvCache& LayerKvCache::operator=(const LayerKvCache& other) {
  if (this != &other) *this = LayerKvCache(other);
  return *this;
}

void LayerKvCache::check_head(int64_t head) const {
  TORCH_CHECK(head >= 0 && head < options_.num_heads, "LayerKvCache: head ", head, " out of range [0, ",
              options_.num_heads, ")");
}

void LayerKvCache::reserve(HeadStore& store, int64_t rows) {
  const int64_t capacity = store.k.defined() ? store.k.size(0) : 0;
  if (rows <= capacity) return;
  // geometric growth keeps appends amortised O(n) even when decoding one token at a time
  const int64_t grown = std::max({rows, 2 * capacity, options_.min_capacity});
  const auto tensor_options = at::TensorOptions().dtype(options_.dtype).device(options_.device);
  at::Tensor k = at::empty({grown, options_.head_dim}, tensor_options);  // [capacity, D]
  at::Tensor v = at::empty({grown, options_.head_dim}, tensor_options);
  const int64_t length = static_cast<int64_t>(store.positions.size());
  if (length > 0) {
    k.narrow(0, 0, length).copy_(store.k.narrow(0, 0, length));
    v.narrow(0, 0, length).copy_(store.v.narrow(0, 0, length));
  }
  store.k = k;
  store.v = v;
}

void LayerKvCache::append(const at::Tensor& k, const at::Tensor& v, const at::Tensor& positions) {
  TORCH_CHECK(k.dim() == 3 && k.size(0) == options_.num_heads && k.size(2) == options_.head_dim,
              "LayerKvCache::append: k must be [", options_.num_heads, ", n, ", options_.head_dim, "], got ",
              k.sizes());
  TORCH_CHECK(v.sizes() == k.sizes(), "LayerKvCache::append: v ", v.sizes(), " must match k ", k.sizes());
  const int64_t n = k.size(1);
  TORCH_CHECK(positions.dim() == 1 && positions.size(0) == n, "LayerKvCache::append: positions must be [",
              n, "], got ", positions.sizes());
  if (n == 0) return;
  const at::Tensor pos_cpu = positions.to(at::kCPU, at::kLong).contiguous();
  const int64_t* pos = pos_cpu.data_ptr<int64_t>();
  TORCH_CHECK(pos[0] > newest_position_, "LayerKvCache::append: first new position ", pos[0],
              " must exceed the newest cached position ", newest_position_);
  for (int64_t i = 1; i < n; ++i) {
    TORCH_CHECK(pos[i] > pos[i - 1], "LayerKvCache::append: positions must be strictly ascending, got ",
                pos[i - 1], " then ", pos[i], " at index ", i);
  }
  const at::Tensor k_in = k.to(options_.device, options_.dtype);  // [H, n, D]
  const at::Tensor v_in = v.to(options_.device, options_.dtype);
  for (int64_t h = 0; h < options_.num_heads; ++h) {
    HeadStore& store = heads_[static_cast<size_t>(h)];
    const int64_t length = static_cast<int64_t>(store.positions.size());
    reserve(store, length + n);
    store.k.narrow(0, length, n).copy_(k_in[h]);
    store.v.narrow(0, length, n).copy_(v_in[h]);
    store.positions.insert(store.positions.end(), pos, pos + n);
  }
  newest_position_ = pos[n - 1];
  tokens_appended_ += n;
}

void LayerKvCache::keep(int64_t head, const at::Tensor& indices) {
  check_head(head);
  HeadStore& store = heads_[static_cast<size_t>(head)];
  const int64_t length = static_cast<int64_t>(store.positions.size());
  TORCH_CHECK(indices.dim() == 1, "LayerKvCache::keep: indices must be [K], got ", indices.sizes());
  const at::Tensor idx_cpu = indices.to(at::kCPU, at::kLong).contiguous();
  const int64_t kept = idx_cpu.size(0);
  const int64_t* idx = idx_cpu.data_ptr<int64_t>();
  std::vector<int64_t> kept_positions(static_cast<size_t>(kept));
  for (int64_t i = 0; i < kept; ++i) {
    TORCH_CHECK(idx[i] >= 0 && idx[i] < length, "LayerKvCache::keep: head ", head, " index ", idx[i],
                " out of range [0, ", length, ")");
    TORCH_CHECK(i == 0 || idx[i] > idx[i - 1], "LayerKvCache::keep: head ", head,
                " indices must be strictly ascending, got ", idx[i - 1], " then ", idx[i]);
    kept_positions[static_cast<size_t>(i)] = store.positions[static_cast<size_t>(idx[i])];
  }
  if (kept == length) return;  // strictly ascending and complete: nothing moves, rows still line up
  ++eviction_epoch_;
  store.positions = std::move(kept_positions);
  if (kept == 0) {
    store.k = at::Tensor();
    store.v = at::Tensor();
    return;
  }
  const at::Tensor idx_dev = idx_cpu.to(options_.device);
  // index_select allocates exactly [K, D]; reuse it as storage when the old
  // allocation would be mostly empty, else compact in place and keep the slack
  at::Tensor k = store.k.narrow(0, 0, length).index_select(0, idx_dev);  // [K, D]
  at::Tensor v = store.v.narrow(0, 0, length).index_select(0, idx_dev);
  if (2 * kept < store.k.size(0)) {
    store.k = k;
    store.v = v;
  } else {
    store.k.narrow(0, 0, kept).copy_(k);
    store.v.narrow(0, 0, kept).copy_(v);
  }
}

void LayerKvCache::keep_all_heads(const std::vector<at::Tensor>& indices) {
  TORCH_CHECK(static_cast<int64_t>(indices.size()) == options_.num_heads, "LayerKvCache::keep_all_heads: ",
              indices.size(), " index tensors for ", options_.num_heads, " heads");
  for (int64_t h = 0; h < options_.num_heads; ++h) keep(h, indices[static_cast<size_t>(h)]);
}

int64_t LayerKvCache::length(int64_t head) const {
  check_head(head);
  return static_cast<int64_t>(heads_[static_cast<size_t>(head)].positions.size());
}

int64_t LayerKvCache::max_length() const {
  int64_t longest = 0;
  for (const HeadStore& store : heads_) longest = std::max(longest, static_cast<int64_t>(store.positions.size()));
  return longest;
}

int64_t LayerKvCache::capacity(int64_t head) const {
  check_head(head);
  const HeadStore& store = heads_[static_cast<size_t>(head)];
  return store.k.defined() ? store.k.size(0) : 0;
}

at::Tensor LayerKvCache::positions(int64_t head) const {
  const std::vector<int64_t>& list = position_list(head);
  at::Tensor out = at::empty({static_cast<int64_t>(list.size())}, at::kLong);  // [T]
  std::copy(list.begin(), list.end(), out.data_ptr<int64_t>());
  return out;
}

const std::vector<int64_t>& LayerKvCache::position_list(int64_t head) const {
  check_head(head);
  return heads_[static_cast<size_t>(head)].positions;
}

at::Tensor LayerKvCache::keys(int64_t head) const {
  check_head(head);
  const HeadStore& store = heads_[static_cast<size_t>(head)];
  const int64_t length = static_cast<int64_t>(store.positions.size());
  if (!store.k.defined()) {
    return at::empty({0, options_.head_dim}, at::TensorOptions().dtype(options_.dtype).device(options_.device));
  }
  return store.k.narrow(0, 0, length);  // [T, D]
}

at::Tensor LayerKvCache::values(int64_t head) const {
  check_head(head);
  const HeadStore& store = heads_[static_cast<size_t>(head)];
  const int64_t length = static_cast<int64_t>(store.positions.size());
  if (!store.v.defined()) {
    return at::empty({0, options_.head_dim}, at::TensorOptions().dtype(options_.dtype).device(options_.device));
  }
  return store.v.narrow(0, 0, length);  // [T, D]
}

int64_t LayerKvCache::bytes() const {
  int64_t total = 0;
  for (const HeadStore& store : heads_) {
    if (store.k.defined()) total += static_cast<int64_t>(store.k.nbytes() + store.v.nbytes());
  }
  return total;
}

int64_t LayerKvCache::used_bytes() const {
  const int64_t element = static_cast<int64_t>(c10::elementSize(options_.dtype));
  int64_t total = 0;
  for (const HeadStore& store : heads_) {
    total += static_cast<int64_t>(store.positions.size()) * options_.head_dim * 2 * element;
  }
  return total;
}

void LayerKvCache::clear() {
  for (HeadStore& store : heads_) {
    store.positions.clear();
    store.positions.shrink_to_fit();
    store.k = at::Tensor();
    store.v = at::Tensor();
  }
  newest_position_ = -1;
  tokens_appended_ = 0;
  ++eviction_epoch_;
}

}  // namespace namm
