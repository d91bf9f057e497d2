// The device interface: one Backend per device kind (CPU, CUDA), one virtual method per kernel.
// Ops (core/ops/) allocate outputs, check shapes and dtypes, then dispatch once through
// backend_for(device). Kernels follow llm.c's argument order: outputs first, then inputs, then
// scalars. Unless a comment says "strided", every tensor argument must be contiguous (the op layer
// calls .contiguous()). A kernel that does not support a dtype throws ValueError naming itself,
// the dtype and the device. Every fast kernel has a plain reference in core/backend/cpu/ref/*Ref.h
// that is its spec and test oracle.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/tensor/ReduceOp.h"
#include "core/tensor/Tensor.h"

namespace loom {

enum class UnaryOp : uint8_t {
  Neg, Exp, Log, Tanh, Sqrt, Rsqrt, Relu, Gelu, Abs, Sigmoid, Square,
  AddScalar,   // x + alpha
  MulScalar,   // x * alpha
  PowScalar,   // x ^ alpha
  RSubScalar,  // alpha - x
  RDivScalar,  // alpha / x
  Clamp,       // min(max(x, alpha), beta)
};

enum class BinaryOp : uint8_t {
  Add, Sub, Mul, Div, Pow, Maximum, Minimum,
  Eq, Ne, Lt, Le, Gt, Ge,  // output dtype Bool
  GeluBackward,            // out = a * gelu'(b)   (a = dy, b = x; tanh form)
  ReluBackward,            // out = b > 0 ? a : 0  (a = dy, b = x)
  TanhBackward,            // out = a * (1 - b^2)  (a = dy, b = y = tanh(x))
};

enum class RandomKind : uint8_t { Uniform, Normal, Bernoulli };

const char* unary_op_name(UnaryOp op);
const char* binary_op_name(BinaryOp op);

class Backend {
 public:
  virtual ~Backend() = default;
  virtual DeviceType device_type() const = 0;
  virtual const char* name() const = 0;

  // ---- memory ---------------------------------------------------------------------------------
  // Throws OutOfMemoryError (with requested / free / reserved bytes and the device) on failure.
  virtual void* allocate(size_t nbytes, int device_index) = 0;
  virtual void deallocate(void* ptr, size_t nbytes, int device_index) = 0;
  virtual void copy_from_host(void* dst, const void* src, size_t nbytes, int device_index) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t nbytes, int device_index) = 0;
  virtual void synchronize(int device_index) = 0;
  virtual size_t allocated_bytes(int device_index) const = 0;
  virtual size_t peak_allocated_bytes(int device_index) const = 0;
  virtual void reset_peak(int device_index) = 0;

  // ---- elementwise (strided: any layout, stride-0 broadcast inputs allowed) ----------------
  virtual void fill(const Tensor& out, double value) = 0;
  // dst and src have the same shape and device; converts the dtype.
  virtual void copy(const Tensor& dst, const Tensor& src) = 0;
  virtual void unary(UnaryOp op, const Tensor& out, const Tensor& x, double alpha,
                     double beta) = 0;
  // a and b are already expanded to out's shape.
  virtual void binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) = 0;
  // out = cond ? a : b, all expanded to out's shape; cond is Bool.
  virtual void where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) = 0;
  // Contiguous out. Element i uses Philox counter (offset + i) under key `seed`, so values do not
  // depend on threads or device. Uniform in [a,b); Normal(mean a, std b); Bernoulli(p=a) as 0/1.
  virtual void fill_random(const Tensor& out, RandomKind kind, uint64_t seed, uint64_t offset,
                           double a, double b) = 0;

  // ---- reductions -----------------------------------------------------------------------------
  // x viewed as (outer, n, inner) -> out (outer, inner). indices (same shape as out, I64) may be
  // undefined; for Max/Min it receives the arg index in [0, n). The summation order is fixed and
  // independent of the thread count.
  virtual void reduce(ReduceOp op, const Tensor& out, const Tensor& indices, const Tensor& x,
                      int64_t outer, int64_t n, int64_t inner) = 0;

  // ---- GEMM -----------------------------------------------------------------------------------
  // c = alpha * op(a) @ op(b) + beta * c, batched over dim 0 when the tensors are 3-D.
  // Each tensor has stride 1 in its last dim; its row stride is the leading dimension; a batch
  // stride of 0 broadcasts (e.g. one weight for every batch). c must not alias a or b.
  virtual void gemm(const Tensor& c, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b,
                    double alpha, double beta) = 0;

  // ---- neural-network kernels (contiguous) --------------------------------------------------
  // Over the last dim of x (rows, cols). log=true gives log_softmax.
  virtual void softmax_forward(const Tensor& y, const Tensor& x, bool log) = 0;
  virtual void softmax_backward(const Tensor& dx, const Tensor& dy, const Tensor& y, bool log) = 0;
  // x (N,C), weight/bias (C) (bias may be undefined); mean/rstd (N) in x's dtype.
  virtual void layernorm_forward(const Tensor& y, const Tensor& mean, const Tensor& rstd,
                                 const Tensor& x, const Tensor& weight, const Tensor& bias,
                                 double eps) = 0;
  // Writes (does not accumulate) dx, dweight, dbias; any may be undefined (skipped).
  virtual void layernorm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                                  const Tensor& dy, const Tensor& x, const Tensor& weight,
                                  const Tensor& mean, const Tensor& rstd) = 0;
  // q,k,v,out (B,H,T,D); lse (B,H,T) = log-sum-exp of each score row (kept for backward).
  // Never stores the (T,T) probabilities; backward recomputes them block by block.
  virtual void attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q,
                                 const Tensor& k, const Tensor& v, double scale, bool causal) = 0;
  virtual void attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv,
                                  const Tensor& dout, const Tensor& q, const Tensor& k,
                                  const Tensor& v, const Tensor& out, const Tensor& lse,
                                  double scale, bool causal) = 0;
  // RMSNorm over the last dim: y = x * rstd * weight, rstd = 1 / sqrt(mean(x^2) + eps).
  // x, y (N,C); weight (C) may be undefined; rstd (N) in x's dtype (f32 for bf16 CUDA).
  virtual void rmsnorm_forward(const Tensor& y, const Tensor& rstd, const Tensor& x,
                               const Tensor& weight, double eps) = 0;
  // Writes (does not accumulate) dx and dweight; either may be undefined (skipped).
  virtual void rmsnorm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dy,
                                const Tensor& x, const Tensor& weight, const Tensor& rstd) = 0;
  // Rotary embedding, rotate-half form (Llama / Hugging Face): x, y (B,T,H,D) with D even;
  // cos, sin (T, D/2) the angles of each position t and frequency j (f32 for bf16 CUDA x).
  //   y[j]       = x[j] cos[t,j] - x[j+D/2] sin[t,j]
  //   y[j+D/2]   = x[j+D/2] cos[t,j] + x[j] sin[t,j]
  // inverse: the rotation by minus the angle (its transpose: RoPE's backward). y may be x.
  virtual void rope(const Tensor& y, const Tensor& x, const Tensor& cos, const Tensor& sin,
                    bool inverse) = 0;
  // SwiGLU: a (N, 2F) holds [gate | up] in each row; y (N,F) = silu(gate) * up.
  virtual void swiglu_forward(const Tensor& y, const Tensor& a) = 0;
  // da (N, 2F) = [dy * up * silu'(gate) | dy * silu(gate)].
  virtual void swiglu_backward(const Tensor& da, const Tensor& dy, const Tensor& a) = 0;
  // logits (N,V), targets (N) I64 -> loss (N) (0 where target == ignore_index), lse (N).
  // Throws ValueError for a target outside [0,V) that is not ignore_index.
  virtual void cross_entropy_forward(const Tensor& loss, const Tensor& lse, const Tensor& logits,
                                     const Tensor& targets, int64_t ignore_index) = 0;
  // dlogits (N,V) = dloss[i] * (softmax(logits[i]) - onehot(targets[i])); 0 on ignored rows.
  virtual void cross_entropy_backward(const Tensor& dlogits, const Tensor& dloss,
                                      const Tensor& logits, const Tensor& targets,
                                      const Tensor& lse, int64_t ignore_index) = 0;

  // ---- indexing (contiguous) ----------------------------------------------------------------
  // x viewed as (outer, n, inner), index (m) I64 -> out (outer, m, inner). Range-checked.
  virtual void index_select(const Tensor& out, const Tensor& x, const Tensor& index,
                            int64_t outer, int64_t n, int64_t inner) = 0;
  // out (outer, n, inner) += src (outer, m, inner) scattered by index (m). Deterministic order.
  virtual void index_add(const Tensor& out, const Tensor& src, const Tensor& index, int64_t outer,
                         int64_t n, int64_t inner) = 0;
  // x (outer, n, inner), index (outer, m, inner) I64 -> out (outer, m, inner).
  virtual void gather(const Tensor& out, const Tensor& x, const Tensor& index, int64_t outer,
                      int64_t n, int64_t inner) = 0;
  // out (outer, n, inner) += src (outer, m, inner) at index (outer, m, inner). Deterministic.
  virtual void scatter_add(const Tensor& out, const Tensor& src, const Tensor& index,
                           int64_t outer, int64_t n, int64_t inner) = 0;

  // ---- optimizer ------------------------------------------------------------------------------
  // One AdamW step on contiguous f32 tensors of equal size (PyTorch's decoupled formulation):
  //   p -= lr*wd*p; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
  //   p -= lr * (m/bc1) / (sqrt(v/bc2) + eps)      with bc1 = 1-b1^t, bc2 = 1-b2^t
  virtual void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& m,
                          const Tensor& v, double lr, double beta1, double beta2, double eps,
                          double weight_decay, double bias_correction1,
                          double bias_correction2) = 0;
};

// The backend for a device kind. Throws ValueError if Loom was built without it (e.g. CUDA with
// -DLOOM_CUDA=OFF) or, for CUDA, if no GPU is present.
Backend& backend_for(Device device);
Backend& backend_for(DeviceType type);
bool backend_available(DeviceType type);

// Provided by core/backend/cuda/ (nvcc builds) or core/backend/nocuda/ (others): null when absent.
Backend* cuda_backend();
Backend& cpu_backend();

}  // namespace loom
