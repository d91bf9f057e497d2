// The CUDA backend: one compute stream and one caching allocator per device, cuBLASLt GEMM and
// hand-written kernels (elementwise, reductions, softmax, layernorm, flash attention, fused
// cross-entropy, deterministic indexing, AdamW). Kernel families live in Cuda<Family>.cu; the CPU
// backend is the oracle they are tested against (tests/gpu/). All host<->device copies are
// synchronous for now. Only core/backend/cuda/ includes this header.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/backend/Backend.h"

namespace loom::cuda {

// Size-bucketed caching allocator for one device. Blocks are only ever used on the device's one
// compute stream, so a freed block can be handed out again at once: later kernels on that stream
// run after earlier ones that used it (stream order). Using a block on another stream would need
// a record_stream-style event, which Loom does not do yet.
class CachingAllocator {
 public:
  explicit CachingAllocator(int device) : device_(device) {}
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  void* allocate(size_t nbytes);  // throws OutOfMemoryError
  void deallocate(void* ptr);
  void empty_cache();  // cudaFree every cached (unused) block
  size_t allocated() const;  // bytes requested by live blocks
  size_t peak() const;
  size_t reserved() const;  // bytes held from cudaMalloc (live + cached)
  void reset_peak();
  // Rounded block size: 512-byte multiples below 1 MiB, 2 MiB multiples above.
  static size_t round_size(size_t nbytes);

 private:
  void free_cached_locked();
  struct Block { size_t size; size_t requested; };
  int device_;
  mutable std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;  // rounded size -> cached blocks
  std::unordered_map<void*, Block> live_;
  size_t allocated_ = 0, peak_ = 0, reserved_ = 0;
};

// Per-device state: allocator, compute stream, cuBLASLt handle and workspace, error flag.
struct DeviceState;
DeviceState& device_state(int device);
cudaStream_t compute_stream(int device);

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device_count);
  ~CudaBackend() override;
  DeviceType device_type() const override { return DeviceType::CUDA; }
  const char* name() const override { return "cuda"; }
  int device_count() const { return device_count_; }

  void* allocate(size_t nbytes, int device_index) override;
  void deallocate(void* ptr, size_t nbytes, int device_index) override;
  void copy_from_host(void* dst, const void* src, size_t nbytes, int device_index) override;
  void copy_to_host(void* dst, const void* src, size_t nbytes, int device_index) override;
  void synchronize(int device_index) override;
  size_t allocated_bytes(int device_index) const override;
  size_t peak_allocated_bytes(int device_index) const override;
  void reset_peak(int device_index) override;
  // Frees cached blocks of one device (e.g. before measuring free memory).
  void empty_cache(int device_index);

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
  int device_count_;
};

}  // namespace loom::cuda
