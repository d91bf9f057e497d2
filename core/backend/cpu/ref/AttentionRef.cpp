// Reference attention (see AttentionRef.h): one head at a time, full (T,T) matrices, double
// accumulation, no blocking and no threads.
#include "core/backend/cpu/ref/AttentionRef.h"

#include <cmath>
#include <limits>
#include <vector>

namespace loom::cpu::ref {

namespace {

void check_args(const Tensor& q, const Tensor& k, const Tensor& v, const char* op) {
  LOOM_CHECK(q.dim() == 4 && q.shape() == k.shape() && q.shape() == v.shape(), op,
             ": expected q, k, v of one shape (B,H,T,D), got ", q.shape(), ", ", k.shape(), ", ",
             v.shape());
  LOOM_CHECK(q.is_contiguous() && k.is_contiguous() && v.is_contiguous(), op,
             ": expected contiguous q, k, v");
}

// P (T,T) = softmax of the scores of one head, recomputed from q, k; masked entries are 0.
template <class T>
std::vector<double> probs(const T* q, const T* k, int64_t Tn, int64_t D, double scale,
                          bool causal, std::vector<double>* lse) {
  std::vector<double> p(size_t(Tn * Tn), 0.0);
  for (int64_t i = 0; i < Tn; ++i) {
    const int64_t kend = causal ? i + 1 : Tn;
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < kend; ++j) {
      double s = 0.0;
      for (int64_t d = 0; d < D; ++d) s += double(q[i * D + d]) * double(k[j * D + d]);
      p[size_t(i * Tn + j)] = s * scale;
      mx = std::max(mx, s * scale);
    }
    double sum = 0.0;
    for (int64_t j = 0; j < kend; ++j) sum += std::exp(p[size_t(i * Tn + j)] - mx);
    for (int64_t j = 0; j < kend; ++j)
      p[size_t(i * Tn + j)] = std::exp(p[size_t(i * Tn + j)] - mx) / sum;
    if (lse) (*lse)[size_t(i)] = mx + std::log(sum);
  }
  return p;
}

}  // namespace

void attention_forward_ref(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                           const Tensor& v, double scale, bool causal) {
  check_args(q, k, v, "attention_forward_ref");
  const int64_t BH = q.size(0) * q.size(1), Tn = q.size(2), D = q.size(3);
  visit_float(q.dtype(), "attention_forward_ref", [&]<class T>() {
    for (int64_t h = 0; h < BH; ++h) {
      const int64_t off = h * Tn * D;
      std::vector<double> row_lse(static_cast<size_t>(Tn));
      std::vector<double> p = probs(q.data<T>() + off, k.data<T>() + off, Tn, D, scale, causal,
                                    &row_lse);
      const T* vh = v.data<T>() + off;
      T* oh = out.data<T>() + off;
      for (int64_t i = 0; i < Tn; ++i) {
        lse.data<T>()[h * Tn + i] = T(row_lse[size_t(i)]);
        for (int64_t d = 0; d < D; ++d) {
          double acc = 0.0;
          for (int64_t j = 0; j < Tn; ++j) acc += p[size_t(i * Tn + j)] * double(vh[j * D + d]);
          oh[i * D + d] = T(acc);
        }
      }
    }
  });
}

void attention_backward_ref(const Tensor& dq, const Tensor& dk, const Tensor& dv,
                            const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                            const Tensor& out, const Tensor& lse, double scale, bool causal) {
  check_args(q, k, v, "attention_backward_ref");
  const int64_t BH = q.size(0) * q.size(1), Tn = q.size(2), D = q.size(3);
  visit_float(q.dtype(), "attention_backward_ref", [&]<class T>() {
    for (int64_t h = 0; h < BH; ++h) {
      const int64_t off = h * Tn * D;
      const T *qh = q.data<T>() + off, *kh = k.data<T>() + off, *vh = v.data<T>() + off;
      const T *oh = out.data<T>() + off, *doh = dout.data<T>() + off;
      std::vector<double> p = probs(qh, kh, Tn, D, scale, causal, nullptr);
      std::vector<double> ds(size_t(Tn * Tn));
      for (int64_t i = 0; i < Tn; ++i) {
        double di = 0.0;
        for (int64_t d = 0; d < D; ++d) di += double(doh[i * D + d]) * double(oh[i * D + d]);
        for (int64_t j = 0; j < Tn; ++j) {
          double dp = 0.0;
          for (int64_t d = 0; d < D; ++d) dp += double(doh[i * D + d]) * double(vh[j * D + d]);
          ds[size_t(i * Tn + j)] = p[size_t(i * Tn + j)] * (dp - di);
        }
      }
      for (int64_t r = 0; r < Tn; ++r) {
        for (int64_t d = 0; d < D; ++d) {
          double aq = 0.0, ak = 0.0, av = 0.0;
          for (int64_t x = 0; x < Tn; ++x) {
            aq += ds[size_t(r * Tn + x)] * double(kh[x * D + d]);
            ak += ds[size_t(x * Tn + r)] * double(qh[x * D + d]);
            av += p[size_t(x * Tn + r)] * double(doh[x * D + d]);
          }
          dq.data<T>()[off + r * D + d] = T(aq * scale);
          dk.data<T>()[off + r * D + d] = T(ak * scale);
          dv.data<T>()[off + r * D + d] = T(av);
        }
      }
    }
  });
}

}  // namespace loom::cpu::ref
