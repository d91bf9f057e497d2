// Rotary-embedding angles for a GPTConfig: the per-frequency inverse wavelengths inv_freq[j] =
// rope_theta^(-2j/D) (j < D/2), adjusted by the config's rope scaling exactly as Hugging Face's
// rope utilities do (linear: all divided by factor; llama3: low frequencies divided by factor,
// high ones kept, the band between interpolated), and the cos / sin tables of a range of
// positions that core/ops/Rope.h applies. Computed in double, then cast to the model's dtype.
//   std::vector<double> f = rope_inv_freq(config);
//   RopeTables r = rope_tables(f, /*start=*/past, /*length=*/T, DType::F32, Device::cpu());
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor/Tensor.h"
#include "models/GPTConfig.h"

namespace loom::models {

// The angles of positions [start, start + length): cos, sin (length, D/2), or of one position per
// (row, token) of a ragged batch: (B*T, D/2) (Block applies them row by row).
struct RopeTables {
  Tensor cos, sin;
};

// inv_freq (D/2) of config (head size D = n_embd / n_head), scaling applied.
std::vector<double> rope_inv_freq(const GPTConfig& config);
// cos / sin of (start + t) * inv_freq[j]; dtype f32 or f64 (bf16 gets f32 tables).
RopeTables rope_tables(const std::vector<double>& inv_freq, int64_t start, int64_t length,
                       DType dtype, Device device);
// The same for arbitrary positions: cos, sin (positions.size(), D/2).
RopeTables rope_tables_at(const std::vector<double>& inv_freq,
                          const std::vector<int64_t>& positions, DType dtype, Device device);

}  // namespace loom::models
