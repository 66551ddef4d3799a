// prunable_attention: see prunable_attention.h
#include "adapters/prunable_attention.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace namm {

AttentionRecorder::AttentionRecorder(int64_t num_heads) { set_num_heads(num_heads); }

void AttentionRecorder::set_num_heads(int64_t num_heads) {
  TORCH_CHECK(num_heads >= 0, "AttentionRecorder: num_heads must be >= 0, got ", num_heads);
  for (int64_t count : counts_) {
    TORCH_CHECK(count == 0, "AttentionRecorder::set_num_heads: cannot resize while ", count, " rows are buffered");
  }
  heads_.assign(static_cast<size_t>(num_heads), {});
  counts_.assign(static_cast<size_t>(num_heads), 0);
}

void AttentionRecorder::record(int64_t head, const at::Tensor& rows, int64_t epoch) {
  TORCH_CHECK(head >= 0 && head < num_heads(), "AttentionRecorder::record: head ", head, " out of range [0, ",
              num_heads(), ")");
  TORCH_CHECK(rows.dim() == 2, "AttentionRecorder::record: rows must be [n, T], got ", rows.sizes());
  heads_[static_cast<size_t>(head)].push_back({rows.to(at::kFloat), epoch});
  counts_[static_cast<size_t>(head)] += rows.size(0);
}

int64_t AttentionRecorder::num_rows(int64_t head) const {
  TORCH_CHECK(head >= 0 && head < num_heads(), "AttentionRecorder::num_rows: head ", head,
              " out of range [0, ", num_heads(), ")");
  return counts_[static_cast<size_t>(head)];
}

int64_t AttentionRecorder::num_rows() const {
  if (counts_.empty()) return 0;
  for (size_t h = 1; h < counts_.size(); ++h) {
    TORCH_CHECK(counts_[h] == counts_[0], "AttentionRecorder: head 0 holds ", counts_[0], " rows but head ", h,
                " holds ", counts_[h]);
  }
  return counts_[0];
}

at::Tensor AttentionRecorder::rows(int64_t head, const LayerKvCache& cache) const {
  const int64_t total = num_rows(head);
  const int64_t tokens = cache.length(head);
  const std::vector<Chunk>& chunks = heads_[static_cast<size_t>(head)];
  const auto float_options = chunks.empty() ? at::TensorOptions().dtype(at::kFloat).device(cache.options().device)
                                            : chunks.front().rows.options();
  // a single chunk over the whole cache (one-shot prefill) needs no copy
  if (chunks.size() == 1 && chunks.front().rows.size(1) == tokens &&
      chunks.front().epoch == cache.eviction_epoch()) {
    return chunks.front().rows;
  }
  // every row is written once: the chunk's columns copied, the keys appended
  // after it (which it could not see) zeroed; no separate zero-fill pass.
  at::Tensor out = at::empty({total, tokens}, float_options);  // [Q, T]
  int64_t row = 0;
  for (const Chunk& chunk : chunks) {
    TORCH_CHECK(chunk.epoch == cache.eviction_epoch(), "AttentionRecorder::rows: head ", head,
                " rows were recorded at cache epoch ", chunk.epoch, " but the cache is at epoch ",
                cache.eviction_epoch(), " (tokens were evicted since)");
    const int64_t n = chunk.rows.size(0);
    const int64_t seen = chunk.rows.size(1);
    TORCH_CHECK(seen <= tokens, "AttentionRecorder::rows: head ", head, " rows cover ", seen,
                " tokens but the cache holds only ", tokens);
    at::Tensor rows_out = out.narrow(0, row, n);
    rows_out.narrow(1, 0, seen).copy_(chunk.rows);
    if (seen < tokens) rows_out.narrow(1, seen, tokens - seen).zero_();
    row += n;
  }
  return out;
}

void AttentionRecorder::clear() {
  for (auto& chunks : heads_) chunks.clear();
  std::fill(counts_.begin(), counts_.end(), 0);
}

at::Tensor prunable_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& positions, LayerKvCache& cache, AttentionRecorder* recorder,
                              const AttentionOptions& options) {
  const int64_t kv_heads = cache.num_heads();
  const int64_t dim = cache.head_dim();
  TORCH_CHECK(q.dim() == 3 && q.size(2) == dim, "prunable_attention: q must be [Hq, n, ", dim, "], got ",
              q.sizes());
  const int64_t q_heads = q.size(0);
  const int64_t n = q.size(1);
  TORCH_CHECK(q_heads % kv_heads == 0, "prunable_attention: ", q_heads, " query heads are not a multiple of ",
              kv_heads, " KV heads");
  TORCH_CHECK(k.dim() == 3 && k.size(0) == kv_heads && k.size(1) == n && k.size(2) == dim,
              "prunable_attention: k must be [", kv_heads, ", ", n, ", ", dim, "], got ", k.sizes());
  if (recorder != nullptr && recorder->num_heads() == 0) recorder->set_num_heads(kv_heads);
  TORCH_CHECK(recorder == nullptr || recorder->num_heads() == kv_heads, "prunable_attention: recorder has ",
              recorder ? recorder->num_heads() : 0, " heads, cache has ", kv_heads);
  TORCH_CHECK(options.extra_mask.empty() || static_cast<int64_t>(options.extra_mask.size()) == kv_heads,
              "prunable_attention: extra_mask has ", options.extra_mask.size(), " tensors for ", kv_heads,
              " KV heads");
  const int64_t group = q_heads / kv_heads;
  const at::Device device = cache.options().device;
  const at::ScalarType dtype = cache.options().dtype;

  cache.append(k, v, positions);

  const at::Tensor q_pos_cpu = positions.to(at::kCPU, at::kLong).contiguous();  // [n]
  const int64_t first_query_position = n > 0 ? q_pos_cpu.data_ptr<int64_t>()[0] : 0;
  const at::Tensor q_pos = q_pos_cpu.to(device);
  const double scale = options.scale > 0 ? options.scale : 1.0 / std::sqrt(static_cast<double>(dim));
  // scaling the queries is n*D multiplies instead of n*T on the scores
  const at::Tensor q_scaled = (q.to(device, dtype) * scale).contiguous();  // [Hq, n, D]
  at::Tensor out = at::empty({q_heads, n, dim}, q_scaled.options());      // [Hq, n, D]
  if (n == 0) return out;

  for (int64_t h = 0; h < kv_heads; ++h) {
    const at::Tensor keys = cache.keys(h);      // [T, D]
    const at::Tensor values = cache.values(h);  // [T, D]
    const int64_t tokens = keys.size(0);
    const at::Tensor q_group = q_scaled.narrow(0, h * group, group).reshape({group * n, dim});  // [G*n, D]
    at::Tensor scores = at::mm(q_group, keys.t());  // [G*n, T]
    at::Tensor scores_3d = scores.view({group, n, tokens});  // [G, n, T]

    // positions ascend, so keys up to the first query's position are visible
    // to every query: only the tail of later keys needs a causal mask
    const std::vector<int64_t>& key_positions = cache.position_list(h);
    const int64_t tail_start = static_cast<int64_t>(
        std::upper_bound(key_positions.begin(), key_positions.end(), first_query_position) -
        key_positions.begin());
    if (tail_start < tokens) {
      const int64_t tail = tokens - tail_start;
      at::Tensor tail_positions = at::empty({tail}, at::kLong);  // [tail]
      std::copy(key_positions.begin() + tail_start, key_positions.end(), tail_positions.data_ptr<int64_t>());
      const at::Tensor hidden = tail_positions.to(device).unsqueeze(0) > q_pos.unsqueeze(1);  // [n, tail]
      scores_3d.narrow(2, tail_start, tail).masked_fill_(hidden, -std::numeric_limits<double>::infinity());
    }
    if (!options.extra_mask.empty() && options.extra_mask[static_cast<size_t>(h)].defined()) {
      const at::Tensor& extra = options.extra_mask[static_cast<size_t>(h)];
      TORCH_CHECK(extra.dim() == 2 && extra.size(0) == n && extra.size(1) == tokens,
                  "prunable_attention: extra_mask[", h, "] must be [", n, ", ", tokens, "], got ", extra.sizes());
      scores_3d.add_(extra.to(device, dtype).unsqueeze(0));
    }

    const at::Tensor probs = scores.softmax(-1);  // [G*n, T]
    at::Tensor out_group = out.narrow(0, h * group, group).view({group * n, dim});  // [G*n, D]
    at::mm_out(out_group, probs, values);

    if (recorder != nullptr) {
      // queries of one group are averaged into their KV head
      const at::Tensor rows = group == 1 ? probs : probs.view({group, n, tokens}).mean(0);  // [n, T]
      recorder->record(h, rows, cache.eviction_epoch());
    }
  }
  return out;
}

}  // namespace namm
