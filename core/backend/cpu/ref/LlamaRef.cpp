// Reference kernels of the Llama family's ops (see LlamaRef.h): the textbook formulas, one element
// at a time, in double. Slow on purpose; they define what the fast kernels must compute.
#include "core/backend/cpu/ref/LlamaRef.h"

#include <cmath>
#include <vector>

namespace loom::cpu::ref {

void rmsnorm_forward(const Tensor& y, const Tensor& rstd, const Tensor& x, const Tensor& weight,
                     double eps) {
  const int64_t C = x.size(-1), N = C == 0 ? 0 : x.numel() / C;
  visit_float(x.dtype(), "ref rmsnorm_forward", [&]<class T>() {
    const T* in = x.data<T>();
    const T* w = weight.defined() ? weight.data<T>() : nullptr;
    for (int64_t i = 0; i < N; ++i) {
      double ss = 0;
      for (int64_t c = 0; c < C; ++c) ss += double(in[i * C + c]) * double(in[i * C + c]);
      const double rs = 1.0 / std::sqrt(ss / double(C) + eps);
      for (int64_t c = 0; c < C; ++c)
        y.data<T>()[i * C + c] = T(double(in[i * C + c]) * rs * (w ? double(w[c]) : 1.0));
      if (rstd.defined()) rstd.data<T>()[i] = T(rs);
    }
  });
}

// With xhat = x * rstd and g = dy * w: dx = rstd * (g - xhat * mean(g * xhat)),
// dweight = sum over rows of dy * xhat.
void rmsnorm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dy, const Tensor& x,
                      const Tensor& weight, const Tensor& rstd) {
  const int64_t C = x.size(-1), N = C == 0 ? 0 : x.numel() / C;
  visit_float(x.dtype(), "ref rmsnorm_backward", [&]<class T>() {
    const T* in = x.data<T>();
    const T* d = dy.data<T>();
    const T* w = weight.defined() ? weight.data<T>() : nullptr;
    std::vector<double> dw(size_t(C), 0.0);
    for (int64_t i = 0; i < N; ++i) {
      const double rs = rstd.data<T>()[i];
      double mean_gx = 0;
      for (int64_t c = 0; c < C; ++c) {
        const double xhat = in[i * C + c] * rs, g = d[i * C + c] * (w ? double(w[c]) : 1.0);
        mean_gx += g * xhat;
        dw[size_t(c)] += double(d[i * C + c]) * xhat;
      }
      mean_gx /= double(C);
      if (!dx.defined()) continue;
      for (int64_t c = 0; c < C; ++c) {
        const double xhat = in[i * C + c] * rs, g = d[i * C + c] * (w ? double(w[c]) : 1.0);
        dx.data<T>()[i * C + c] = T(rs * (g - xhat * mean_gx));
      }
    }
    if (dweight.defined())
      for (int64_t c = 0; c < C; ++c) dweight.data<T>()[c] = T(dw[size_t(c)]);
  });
}

void rope(const Tensor& y, const Tensor& x, const Tensor& cos, const Tensor& sin, bool inverse) {
  const int64_t B = x.size(0), T_ = x.size(1), H = x.size(2), D = x.size(3), h = D / 2;
  const double sign = inverse ? -1.0 : 1.0;
  visit_float(x.dtype(), "ref rope", [&]<class T>() {
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = 0; t < T_; ++t) {
        for (int64_t hd = 0; hd < H; ++hd) {
          const int64_t row = ((b * T_ + t) * H + hd) * D;
          for (int64_t j = 0; j < h; ++j) {
            const double c = cos.data<T>()[t * h + j], s = sign * sin.data<T>()[t * h + j];
            const double x1 = x.data<T>()[row + j], x2 = x.data<T>()[row + j + h];
            y.data<T>()[row + j] = T(x1 * c - x2 * s);
            y.data<T>()[row + j + h] = T(x2 * c + x1 * s);
          }
        }
      }
    }
  });
}

namespace {
double sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }
}  // namespace

void swiglu_forward(const Tensor& y, const Tensor& a) {
  const int64_t F = y.size(-1), N = F == 0 ? 0 : y.numel() / F;
  visit_float(a.dtype(), "ref swiglu_forward", [&]<class T>() {
    for (int64_t i = 0; i < N; ++i) {
      for (int64_t j = 0; j < F; ++j) {
        const double g = a.data<T>()[i * 2 * F + j], u = a.data<T>()[i * 2 * F + F + j];
        y.data<T>()[i * F + j] = T(g * sigmoid(g) * u);
      }
    }
  });
}

// silu'(g) = s + g s (1 - s) with s = sigmoid(g).
void swiglu_backward(const Tensor& da, const Tensor& dy, const Tensor& a) {
  const int64_t F = dy.size(-1), N = F == 0 ? 0 : dy.numel() / F;
  visit_float(a.dtype(), "ref swiglu_backward", [&]<class T>() {
    for (int64_t i = 0; i < N; ++i) {
      for (int64_t j = 0; j < F; ++j) {
        const double g = a.data<T>()[i * 2 * F + j], u = a.data<T>()[i * 2 * F + F + j];
        const double d = dy.data<T>()[i * F + j], s = sigmoid(g);
        da.data<T>()[i * 2 * F + j] = T(d * u * (s + g * s * (1.0 - s)));
        da.data<T>()[i * 2 * F + F + j] = T(d * g * s);
      }
    }
  });
}

}  // namespace loom::cpu::ref
