// One typed entry point to OpenBLAS's row-major GEMM for the CPU kernels (CpuGemm.cpp for whole
// matrices, CpuAttention.cpp for its tiles): c = alpha * op(a) @ op(b) + beta * c, f32 or f64.
#pragma once

#include <cblas.h>

#include <cstdint>
#include <type_traits>

namespace loom::cpu {

template <class T>
void blas_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* a,
               int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "blas_gemm: f32 or f64");
  const CBLAS_TRANSPOSE ca = ta ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE cb = tb ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, ca, cb, int(M), int(N), int(K), alpha, a, int(lda), b, int(ldb),
                beta, c, int(ldc));
  } else {
    cblas_dgemm(CblasRowMajor, ca, cb, int(M), int(N), int(K), alpha, a, int(lda), b, int(ldb),
                beta, c, int(ldc));
  }
}

}  // namespace loom::cpu
