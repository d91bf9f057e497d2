// GEMM through cuBLASLt: c = alpha * op(a) @ op(b) + beta * c on row-major tensors, batched over
// dim 0 with per-operand batch strides (stride 0 broadcasts). f32 uses CUBLAS_COMPUTE_32F (TF32
// off, so results match the CPU to fp32 rounding), bf16 multiplies bf16 inputs with f32
// accumulation, f64 uses CUBLAS_COMPUTE_64F. bf16 inputs may also write an f32 c (the f32 scores
// of the bf16 attention path). Row-major C = A B is computed as column-major C^T = B^T A^T, which
// is the same memory.
#include <cublasLt.h>

#include <mutex>

#include "core/backend/cuda/CudaCommon.cuh"

#define CUBLAS_CHECK(expr) ::loom::cuda::check_cublas((expr), #expr, __FILE__, __LINE__)

namespace loom::cuda {

namespace {
void check_cublas(cublasStatus_t st, const char* expr, const char* file, int line) {
  if (st == CUBLAS_STATUS_SUCCESS) return;
  throw Error(detail::str_cat("cuBLASLt error ", int(st), " (", cublasLtGetStatusString(st),
                              ") in ", expr, " at ", file, ":", line));
}

constexpr size_t kWorkspaceBytes = size_t(32) << 20;

// RAII: one cuBLASLt handle and workspace per device.
class LtContext {
 public:
  explicit LtContext(int device) : device_(device) {
    CUBLAS_CHECK(cublasLtCreate(&handle_));
    workspace_ = cuda_backend()->allocate(kWorkspaceBytes, device);
  }
  ~LtContext() {
    if (handle_) cublasLtDestroy(handle_);
    if (workspace_) cuda_backend()->deallocate(workspace_, kWorkspaceBytes, device_);
  }
  LtContext(const LtContext&) = delete;
  LtContext& operator=(const LtContext&) = delete;
  cublasLtHandle_t handle() const { return handle_; }
  void* workspace() const { return workspace_; }

 private:
  int device_;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
};

LtContext& lt_context(int device) {
  static std::mutex mu;
  static auto* ctxs = new std::vector<std::unique_ptr<LtContext>>(64);  // NOLINT: process lifetime
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = (*ctxs)[size_t(device)];
  if (!slot) slot = std::make_unique<LtContext>(device);
  return *slot;
}

// RAII wrappers for the descriptor objects of one call.
struct MatmulDesc {
  cublasLtMatmulDesc_t d = nullptr;
  MatmulDesc(cublasComputeType_t ct, cudaDataType_t st) { CUBLAS_CHECK(cublasLtMatmulDescCreate(&d, ct, st)); }
  ~MatmulDesc() { if (d) cublasLtMatmulDescDestroy(d); }
  MatmulDesc(const MatmulDesc&) = delete;
  MatmulDesc& operator=(const MatmulDesc&) = delete;
};
struct Layout {
  cublasLtMatrixLayout_t l = nullptr;
  Layout(cudaDataType_t t, uint64_t rows, uint64_t cols, int64_t ld, int batch, int64_t bstride) {
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, t, rows, cols, ld));
    if (batch > 1) {
      CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof(batch)));
      CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &bstride, sizeof(bstride)));
    }
  }
  ~Layout() { if (l) cublasLtMatrixLayoutDestroy(l); }
  Layout(const Layout&) = delete;
  Layout& operator=(const Layout&) = delete;
};
struct Preference {
  cublasLtMatmulPreference_t p = nullptr;
  Preference() { CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&p)); }
  ~Preference() { if (p) cublasLtMatmulPreferenceDestroy(p); }
  Preference(const Preference&) = delete;
  Preference& operator=(const Preference&) = delete;
  void set(cublasLtMatmulPreferenceAttributes_t a, uint64_t v) {
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p, a, &v, sizeof(v)));
  }
  void set32(cublasLtMatmulPreferenceAttributes_t a, uint32_t v) {
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p, a, &v, sizeof(v)));
  }
};

uint32_t alignment_of(const void* p) {
  uintptr_t v = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && v % a != 0) a /= 2;
  return a;
}

// One row-major operand: rows x cols with leading dim ld (>= cols), batch stride in elements.
struct Operand {
  const void* ptr;
  int64_t rows, cols, ld, bstride;
};

Operand operand_of(const Tensor& t) {
  const int64_t d = t.dim();
  LOOM_CHECK((d == 2 || d == 3) && (t.stride(d - 1) == 1 || t.size(d - 1) == 1),
             "gemm: expected 2-D/3-D operands with unit stride in the last dim, got shape ",
             t.shape(), " strides ", t.strides());
  Operand o{t.raw_data(), t.size(d - 2), t.size(d - 1), t.stride(d - 2), d == 3 ? t.stride(0) : 0};
  if (o.rows <= 1 || o.ld < o.cols) o.ld = o.cols < 1 ? 1 : o.cols;
  if (d == 3 && t.size(0) == 1) o.bstride = 0;
  return o;
}

struct GemmTypes {
  cudaDataType_t data, scale;
  cublasComputeType_t compute;
  size_t elem;
  cudaDataType_t out;  // c's type
  size_t out_elem;
};

GemmTypes gemm_types(DType dt) {
  switch (dt) {
    case DType::F32: return {CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F, 4, CUDA_R_32F, 4};
    case DType::BF16: return {CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F, 2, CUDA_R_16BF, 2};
    case DType::F64: return {CUDA_R_64F, CUDA_R_64F, CUBLAS_COMPUTE_64F, 8, CUDA_R_64F, 8};
    default: break;
  }
  throw ValueError(detail::str_cat("gemm: expected dtype f32, bf16 or f64 on device cuda, got ",
                                   dtype_name(dt)));
}

// Runs one (possibly strided-batched) cuBLASLt matmul in row-major terms.
void lt_matmul(int device, cudaStream_t s, const GemmTypes& ty, Operand a, Operand b, Operand c,
               bool ta, bool tb, int64_t M, int64_t N, int64_t K, int batch, double alpha,
               double beta) {
  LtContext& ctx = lt_context(device);
  MatmulDesc desc(ty.compute, ty.scale);
  // Column-major: C^T (N,M) = op(B)^T (N,K) @ op(A)^T (K,M); B's memory is the "A" of cuBLASLt.
  cublasOperation_t op_a = tb ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc.d, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc.d, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
  Layout la(ty.data, uint64_t(b.cols), uint64_t(b.rows), b.ld, batch, b.bstride);
  Layout lb(ty.data, uint64_t(a.cols), uint64_t(a.rows), a.ld, batch, a.bstride);
  Layout lc(ty.out, uint64_t(N), uint64_t(M), c.ld, batch, c.bstride);
  Preference pref;
  pref.set(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, kWorkspaceBytes);
  pref.set32(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, alignment_of(b.ptr));
  pref.set32(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, alignment_of(a.ptr));
  pref.set32(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, alignment_of(c.ptr));
  pref.set32(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, alignment_of(c.ptr));
  cublasLtMatmulHeuristicResult_t heur{};
  int found = 0;
  CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(ctx.handle(), desc.d, la.l, lb.l, lc.l, lc.l,
                                              pref.p, 1, &heur, &found));
  LOOM_CHECK(found > 0, "gemm: cuBLASLt found no algorithm for M=", M, " N=", N, " K=", K,
             " batch=", batch);
  float af = float(alpha), bf = float(beta);
  const void* pa = ty.scale == CUDA_R_64F ? static_cast<const void*>(&alpha) : &af;
  const void* pb = ty.scale == CUDA_R_64F ? static_cast<const void*>(&beta) : &bf;
  void* cp = const_cast<void*>(c.ptr);
  CUBLAS_CHECK(cublasLtMatmul(ctx.handle(), desc.d, pa, b.ptr, la.l, a.ptr, lb.l, pb, cp, lc.l,
                              cp, lc.l, &heur.algo, ctx.workspace(), kWorkspaceBytes, s));
}

const void* advance(const void* p, int64_t elems, size_t elem) {
  return static_cast<const char*>(p) + elems * int64_t(elem);
}
}  // namespace

void CudaBackend::gemm(const Tensor& c, const Tensor& a, const Tensor& b, bool trans_a,
                       bool trans_b, double alpha, double beta) {
  const bool bf16_to_f32 = a.dtype() == DType::BF16 && c.dtype() == DType::F32;
  LOOM_CHECK(b.dtype() == a.dtype() && (a.dtype() == c.dtype() || bf16_to_f32),
             "gemm: expected one dtype (or bf16 inputs with an f32 output), got ",
             dtype_name(a.dtype()), ", ", dtype_name(b.dtype()), " -> ", dtype_name(c.dtype()));
  GemmTypes ty = gemm_types(a.dtype());
  if (bf16_to_f32) {
    ty.out = CUDA_R_32F;
    ty.out_elem = 4;
  }
  Operand oa = operand_of(a), ob = operand_of(b), oc = operand_of(c);
  const int64_t M = oc.rows, N = oc.cols, K = trans_a ? oa.rows : oa.cols;
  LOOM_CHECK((trans_a ? oa.cols : oa.rows) == M && (trans_b ? ob.cols : ob.rows) == K &&
                 (trans_b ? ob.rows : ob.cols) == N,
             "gemm: expected matching shapes, got c ", c.shape(), ", a ", a.shape(),
             (trans_a ? "^T" : ""), ", b ", b.shape(), (trans_b ? "^T" : ""));
  int64_t batch = c.dim() == 3 ? c.size(0) : 1;
  if (M == 0 || N == 0 || batch == 0) return;
  if (K == 0) {  // c = beta * c
    if (beta == 0.0) fill(c, 0.0);
    else unary(UnaryOp::MulScalar, c, c, beta, 0.0);
    return;
  }
  const int dev = c.device().index;
  cudaStream_t s = stream_for(c);
  // A weight shared by every batch (b stride 0) with dense a and c folds into one big matmul.
  if (batch > 1 && ob.bstride == 0 && !trans_a && oa.bstride == M * oa.ld &&
      oc.bstride == M * oc.ld) {
    oa.rows *= batch;
    oc.rows *= batch;
    lt_matmul(dev, s, ty, oa, ob, oc, trans_a, trans_b, M * batch, N, K, 1, alpha, beta);
    return;
  }
  if (batch > 1 && (oa.bstride == 0 || ob.bstride == 0 || oc.bstride == 0)) {
    // NB: cuBLASLt's strided batches do not promise support for a zero stride; loop instead.
    for (int64_t i = 0; i < batch; ++i) {
      Operand ai = oa, bi = ob, ci = oc;
      ai.ptr = advance(oa.ptr, i * oa.bstride, ty.elem);
      bi.ptr = advance(ob.ptr, i * ob.bstride, ty.elem);
      ci.ptr = advance(oc.ptr, i * oc.bstride, ty.out_elem);
      lt_matmul(dev, s, ty, ai, bi, ci, trans_a, trans_b, M, N, K, 1, alpha, beta);
    }
    return;
  }
  lt_matmul(dev, s, ty, oa, ob, oc, trans_a, trans_b, M, N, K, int(batch), alpha, beta);
}

}  // namespace loom::cuda
