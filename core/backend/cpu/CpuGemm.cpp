// CpuBackend::gemm on OpenBLAS (cblas_sgemm / cblas_dgemm), row-major. Batched GEMMs loop over
// the batch; when each GEMM is small the batches run in parallel on the OpenMP pool (OpenBLAS is
// single-threaded inside a parallel region), otherwise OpenBLAS threads each GEMM itself.
// The plain reference is cpu/ref/GemmRef.cpp. set_blas_kernels() re-runs OpenBLAS's kernel
// dispatch: on the AVX-512 dev machine (Zen 5), whose environment pins OPENBLAS_CORETYPE=Haswell,
// the SkylakeX kernels make a GPT-2 124M training step ~2.7x faster (measured 2.03 -> 0.73 s).
#include <omp.h>

#include <strings.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "core/backend/cpu/Blas.h"
#include "core/backend/cpu/CpuBackend.h"
#include "core/util/Env.h"

// Exported by every DYNAMIC_ARCH OpenBLAS build (not declared in its cblas.h).
extern "C" {
char* openblas_get_corename(void);
void gotoblas_dynamic_init(void);
void gotoblas_dynamic_quit(void);
}

namespace loom::cpu {

namespace {

// Below this many multiply-adds per GEMM, running whole GEMMs in parallel beats threading each.
constexpr int64_t kSmallGemmFlops = 96 * 96 * 96;

struct Operand {  // one gemm operand: base pointer, leading dim, batch stride (elements)
  int64_t ld = 0, batch_stride = 0, rows = 0, cols = 0;
};

// x (R,C) or (Bt,R,C) as stored; trans says whether the math uses x^T.
Operand describe(const Tensor& x, const char* name) {
  const int64_t d = x.dim();
  LOOM_INTERNAL_ASSERT(d == 2 || d == 3, "gemm: ", name, " must be 2-D or 3-D, got ", x.shape());
  Operand o;
  o.rows = x.size(d - 2);
  o.cols = x.size(d - 1);
  LOOM_INTERNAL_ASSERT(x.stride(d - 1) == 1 || o.cols <= 1, "gemm: ", name,
                       " needs unit stride in its last dim, got strides ", x.strides());
  // A single row (or empty rows) may carry any row stride; BLAS needs ld >= max(1, cols).
  o.ld = (o.rows <= 1 || o.cols == 0) ? std::max<int64_t>(1, o.cols) : x.stride(d - 2);
  LOOM_INTERNAL_ASSERT(o.ld >= std::max<int64_t>(1, o.cols), "gemm: ", name, " row stride ", o.ld,
                       " < cols ", o.cols);
  o.batch_stride = (d == 3 && x.size(0) > 1) ? x.stride(0) : 0;
  return o;
}

}  // namespace

void set_blas_kernels(const std::string& name) {
  LOOM_CHECK(!name.empty(), "set_blas_kernels: expected a kernel set name or \"auto\", got \"\"");
  const bool had = env::is_set("OPENBLAS_CORETYPE");  // OpenBLAS's own variable
  const std::string saved = env::get_string("OPENBLAS_CORETYPE", "");
  if (name == "auto") {
    unsetenv("OPENBLAS_CORETYPE");
  } else {
    setenv("OPENBLAS_CORETYPE", name.c_str(), 1);
  }
  gotoblas_dynamic_quit();
  gotoblas_dynamic_init();
  if (had) {
    setenv("OPENBLAS_CORETYPE", saved.c_str(), 1);
  } else {
    unsetenv("OPENBLAS_CORETYPE");
  }
  LOOM_CHECK(name == "auto" || strcasecmp(blas_kernels_name(), name.c_str()) == 0,
             "set_blas_kernels: expected a kernel set OpenBLAS supports on this CPU, got \"", name,
             "\" (OpenBLAS chose ", blas_kernels_name(), ")");
}

const char* blas_kernels_name() {
  const char* core = openblas_get_corename();
  return core ? core : "unknown";
}

void CpuBackend::gemm(const Tensor& c, const Tensor& a, const Tensor& b, bool trans_a,
                      bool trans_b, double alpha, double beta) {
  LOOM_CHECK(a.dtype() == c.dtype() && b.dtype() == c.dtype(), "gemm: expected a, b, c of one ",
             "dtype, got ", dtype_name(a.dtype()), ", ", dtype_name(b.dtype()), ", ",
             dtype_name(c.dtype()));
  const Operand oa = describe(a, "a"), ob = describe(b, "b"), oc = describe(c, "c");
  const int64_t M = oc.rows, N = oc.cols;
  const int64_t K = trans_a ? oa.rows : oa.cols;
  LOOM_CHECK((trans_a ? oa.cols : oa.rows) == M && (trans_b ? ob.cols : ob.rows) == K &&
                 (trans_b ? ob.rows : ob.cols) == N,
             "gemm: expected op(a) (", M, ",K) and op(b) (K,", N, "), got a ", a.shape(),
             (trans_a ? "^T" : ""), " and b ", b.shape(), (trans_b ? "^T" : ""));
  const int64_t batches = c.dim() == 3 ? c.size(0) : 1;
  LOOM_CHECK((a.dim() == 2 || a.size(0) == batches || a.size(0) == 1) &&
                 (b.dim() == 2 || b.size(0) == batches || b.size(0) == 1),
             "gemm: batch sizes differ: a ", a.shape(), " b ", b.shape(), " c ", c.shape());
  LOOM_INTERNAL_ASSERT(batches == 1 || oc.batch_stride != 0, "gemm: c batch stride is 0");
  if (M == 0 || N == 0 || batches == 0) return;
  visit_float(c.dtype(), "gemm", [&]<class T>() {
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    T* pc = c.data<T>();
    auto one = [&](int64_t i) {
      blas_gemm<T>(trans_a, trans_b, M, N, K, T(alpha), pa + i * oa.batch_stride, oa.ld,
                   pb + i * ob.batch_stride, ob.ld, T(beta), pc + i * oc.batch_stride, oc.ld);
    };
    const bool parallel_batches = batches > 1 && M * N * K < kSmallGemmFlops &&
                                  !omp_in_parallel() && num_threads() > 1;
    if (parallel_batches) {
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < batches; ++i) one(i);
    } else {
      for (int64_t i = 0; i < batches; ++i) one(i);
    }
  });
}

}  // namespace loom::cpu
