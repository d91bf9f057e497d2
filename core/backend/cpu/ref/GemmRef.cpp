// Reference GEMM (see GemmRef.h): element by element, double accumulation, any strides.
#include "core/backend/cpu/ref/GemmRef.h"

namespace loom::cpu::ref {

namespace {

struct MatRef {  // one operand seen as a (possibly batched) strided matrix
  int64_t batch_stride, row_stride, col_stride, rows, cols;
};

MatRef describe(const Tensor& x, bool trans) {
  const int64_t d = x.dim();
  MatRef m{};
  m.batch_stride = d == 3 ? (x.size(0) == 1 ? 0 : x.stride(0)) : 0;
  m.row_stride = x.stride(d - 2);
  m.col_stride = x.stride(d - 1);
  m.rows = x.size(d - 2);
  m.cols = x.size(d - 1);
  if (trans) {
    std::swap(m.row_stride, m.col_stride);
    std::swap(m.rows, m.cols);
  }
  return m;
}

}  // namespace

void gemm_ref(const Tensor& c, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b,
              double alpha, double beta) {
  LOOM_CHECK(c.dim() == 2 || c.dim() == 3, "gemm_ref: expected c 2-D or 3-D, got ", c.shape());
  LOOM_CHECK(a.dtype() == c.dtype() && b.dtype() == c.dtype(), "gemm_ref: dtype mismatch");
  const MatRef ma = describe(a, trans_a), mb = describe(b, trans_b), mc = describe(c, false);
  const int64_t batches = c.dim() == 3 ? c.size(0) : 1;
  const int64_t M = mc.rows, N = mc.cols, K = ma.cols;
  LOOM_CHECK(ma.rows == M && mb.rows == K && mb.cols == N, "gemm_ref: expected op(a) (", M, ",K) ",
             "and op(b) (K,", N, "), got a ", a.shape(), " b ", b.shape());
  visit_float(c.dtype(), "gemm_ref", [&]<class T>() {
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    T* pc = c.data<T>();
    for (int64_t bt = 0; bt < batches; ++bt) {
      for (int64_t i = 0; i < M; ++i) {
        for (int64_t j = 0; j < N; ++j) {
          double acc = 0.0;
          for (int64_t k = 0; k < K; ++k) {
            acc += double(pa[bt * ma.batch_stride + i * ma.row_stride + k * ma.col_stride]) *
                   double(pb[bt * mb.batch_stride + k * mb.row_stride + j * mb.col_stride]);
          }
          T& out = pc[bt * mc.batch_stride + i * mc.row_stride + j * mc.col_stride];
          // NB: beta == 0 ignores c entirely (it may hold NaN from an uninitialised buffer).
          out = T(alpha * acc + (beta == 0.0 ? 0.0 : beta * double(out)));
        }
      }
    }
  });
}

}  // namespace loom::cpu::ref
