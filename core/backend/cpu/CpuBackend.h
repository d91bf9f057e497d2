// The CPU backend: OpenBLAS GEMM, OpenMP threads, AVX2 kernels. Each kernel family lives in its own
// file (CpuElementwise.cpp, CpuReduce.cpp, CpuGemm.cpp, CpuAttention.cpp, CpuNn.cpp,
// CpuIndexing.cpp, CpuOptim.cpp) next to a plain reference version in cpu/ref/ that is its spec.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <type_traits>

#include "core/backend/Backend.h"

namespace loom::cpu {

// Elements below which a kernel's OpenMP loop stays on one thread (threads would cost more).
inline constexpr int64_t kParallelMinElems = 16384;
// Whether a kernel of element type T takes its AVX2 path (float) or the scalar one (double).
template <class T>
inline constexpr bool kVec = std::is_same_v<T, float>;

class CpuBackend final : public Backend {
 public:
  DeviceType device_type() const override { return DeviceType::CPU; }
  const char* name() const override { return "cpu"; }

  void* allocate(size_t nbytes, int device_index) override;
  void deallocate(void* ptr, size_t nbytes, int device_index) override;
  void copy_from_host(void* dst, const void* src, size_t nbytes, int device_index) override;
  void copy_to_host(void* dst, const void* src, size_t nbytes, int device_index) override;
  void synchronize(int) override {}
  size_t allocated_bytes(int) const override { return allocated_.load(); }
  size_t peak_allocated_bytes(int) const override { return peak_.load(); }
  void reset_peak(int) override { peak_.store(allocated_.load()); }
  // Caps CPU allocations (0 = no cap) so out-of-memory handling can be tested (TESTPLAN U10).
  void set_memory_limit(size_t bytes) { limit_.store(bytes); }
  // Bytes held in the cache of freed blocks (not counted by allocated_bytes), and a way to give
  // them back to the system.
  size_t cached_bytes() const;
  void release_cached();

  void fill(const Tensor& out, double value) override;
  void copy(const Tensor& dst, const Tensor& src) override;
  void unary(UnaryOp op, const Tensor& out, const Tensor& x, double alpha, double beta) override;
  void binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) override;
  void where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) override;
  void fill_random(const Tensor& out, RandomKind kind, uint64_t seed, uint64_t offset, double a,
                   double b) override;

  void reduce(ReduceOp op, const Tensor& out, const Tensor& indices, const Tensor& x,
              int64_t outer, int64_t n, int64_t inner) override;

  void gemm(const Tensor& c, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b,
            double alpha, double beta) override;

  void softmax_forward(const Tensor& y, const Tensor& x, bool log) override;
  void softmax_backward(const Tensor& dx, const Tensor& dy, const Tensor& y, bool log) override;
  void layernorm_forward(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                         const Tensor& weight, const Tensor& bias, double eps) override;
  void layernorm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                          const Tensor& dy, const Tensor& x, const Tensor& weight,
                          const Tensor& mean, const Tensor& rstd) override;
  void attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                         const Tensor& v, double scale, bool causal) override;
  void attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv,
                          const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                          const Tensor& out, const Tensor& lse, double scale,
                          bool causal) override;
  void rmsnorm_forward(const Tensor& y, const Tensor& rstd, const Tensor& x, const Tensor& weight,
                       double eps) override;
  void rmsnorm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dy, const Tensor& x,
                        const Tensor& weight, const Tensor& rstd) override;
  void rope(const Tensor& y, const Tensor& x, const Tensor& cos, const Tensor& sin,
            bool inverse) override;
  void swiglu_forward(const Tensor& y, const Tensor& a) override;
  void swiglu_backward(const Tensor& da, const Tensor& dy, const Tensor& a) override;
  void cross_entropy_forward(const Tensor& loss, const Tensor& lse, const Tensor& logits,
                             const Tensor& targets, int64_t ignore_index) override;
  void cross_entropy_backward(const Tensor& dlogits, const Tensor& dloss, const Tensor& logits,
                              const Tensor& targets, const Tensor& lse,
                              int64_t ignore_index) override;

  void index_select(const Tensor& out, const Tensor& x, const Tensor& index, int64_t outer,
                    int64_t n, int64_t inner) override;
  void index_add(const Tensor& out, const Tensor& src, const Tensor& index, int64_t outer,
                 int64_t n, int64_t inner) override;
  void gather(const Tensor& out, const Tensor& x, const Tensor& index, int64_t outer, int64_t n,
              int64_t inner) override;
  void scatter_add(const Tensor& out, const Tensor& src, const Tensor& index, int64_t outer,
                   int64_t n, int64_t inner) override;

  void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v,
                  double lr, double beta1, double beta2, double eps, double weight_decay,
                  double bias_correction1, double bias_correction2) override;

 private:
  std::atomic<size_t> allocated_{0};
  std::atomic<size_t> peak_{0};
  std::atomic<size_t> limit_{0};
};

CpuBackend& the_cpu_backend();

// Re-runs OpenBLAS's kernel dispatch: "auto" lets it detect the CPU (ignoring OPENBLAS_CORETYPE),
// any other name (e.g. "SkylakeX", "Haswell") forces that set. Call it before any GEMM runs.
// Throws ValueError when OpenBLAS does not end up on the named set. The environment is restored.
void set_blas_kernels(const std::string& name);
// The OpenBLAS kernel set in use (e.g. "Haswell", "SkylakeX"; OPENBLAS_CORETYPE overrides it).
const char* blas_kernels_name();

// Threads used by Loom's CPU kernels and OpenBLAS (both run on the same OpenMP pool).
int num_threads();
void set_num_threads(int n);

}  // namespace loom::cpu
