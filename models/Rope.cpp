// Rotary-embedding frequencies and tables (see Rope.h). The llama3 rule follows transformers'
// _compute_llama3_parameters: with wavelength w = 2 pi / f, low = original / low_freq_factor and
// high = original / high_freq_factor, f is kept when w < high, divided by factor when w > low,
// and otherwise mixed as (1 - s) f / factor + s f with s = (original / w - low_freq_factor) /
// (high_freq_factor - low_freq_factor).
#include "models/Rope.h"

#include <cmath>
#include <numbers>

#include "core/util/Check.h"

namespace loom::models {

namespace {

double llama3_scaled(double f, const RopeScaling& r) {
  const double w = 2.0 * std::numbers::pi / f;
  const double orig = double(r.original_max_positions);
  const double low_wavelen = orig / r.low_freq_factor, high_wavelen = orig / r.high_freq_factor;
  if (w < high_wavelen) return f;
  if (w > low_wavelen) return f / r.factor;
  const double s = (orig / w - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
  return (1.0 - s) * f / r.factor + s * f;
}

}  // namespace

std::vector<double> rope_inv_freq(const GPTConfig& c) {
  const int64_t D = c.head_dim(), half = D / 2;
  std::vector<double> f(static_cast<size_t>(half));
  for (int64_t j = 0; j < half; ++j) {
    double v = 1.0 / std::pow(c.rope_theta, double(2 * j) / double(D));
    switch (c.rope_scaling.kind) {
      case RopeScalingKind::Linear: v /= c.rope_scaling.factor; break;
      case RopeScalingKind::Llama3: v = llama3_scaled(v, c.rope_scaling); break;
      case RopeScalingKind::None: break;
    }
    f[size_t(j)] = v;
  }
  return f;
}

RopeTables rope_tables_at(const std::vector<double>& inv_freq,
                          const std::vector<int64_t>& positions, DType dtype, Device device) {
  const int64_t half = int64_t(inv_freq.size()), length = int64_t(positions.size());
  std::vector<double> c(size_t(length * half)), s(size_t(length * half));
  for (int64_t t = 0; t < length; ++t) {
    LOOM_CHECK(positions[size_t(t)] >= 0, "rope_tables: expected positions >= 0, got ",
               positions[size_t(t)]);
    for (int64_t j = 0; j < half; ++j) {
      const double angle = double(positions[size_t(t)]) * inv_freq[size_t(j)];
      c[size_t(t * half + j)] = std::cos(angle);
      s[size_t(t * half + j)] = std::sin(angle);
    }
  }
  const DType dt = dtype == DType::F64 ? DType::F64 : DType::F32;
  auto table = [&](const std::vector<double>& v) {
    return Tensor::from_vector(v, {length, half}).to(dt).to(device);
  };
  return {table(c), table(s)};
}

RopeTables rope_tables(const std::vector<double>& inv_freq, int64_t start, int64_t length,
                       DType dtype, Device device) {
  LOOM_CHECK(start >= 0 && length >= 0, "rope_tables: expected start, length >= 0, got ", start,
             ", ", length);
  std::vector<int64_t> positions(static_cast<size_t>(length));
  for (int64_t t = 0; t < length; ++t) positions[size_t(t)] = start + t;
  return rope_tables_at(inv_freq, positions, dtype, device);
}

}  // namespace loom::models
