// Reference kernels (see NnRef.h): the textbook formulas, one element at a time, accumulated in
// double. Slow on purpose; they define what the fast kernels must compute.
#include "core/backend/cpu/ref/NnRef.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace loom::cpu::ref {

namespace {

void check_index(int64_t idx, int64_t n, const char* op) {
  LOOM_CHECK(idx >= 0 && idx < n, op, ": expected index in [0, ", n, "), got ", idx);
}

}  // namespace

void softmax_forward(const Tensor& y, const Tensor& x, bool log) {
  const int64_t cols = x.dim() == 0 ? 1 : x.size(-1), rows = cols == 0 ? 0 : x.numel() / cols;
  visit_float(x.dtype(), "ref softmax_forward", [&]<class T>() {
    const T* in = x.data<T>();
    T* out = y.data<T>();
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = in + r * cols;
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t c = 0; c < cols; ++c) mx = std::max(mx, double(xr[c]));
      double sum = 0;
      for (int64_t c = 0; c < cols; ++c) sum += std::exp(double(xr[c]) - mx);
      for (int64_t c = 0; c < cols; ++c) {
        double z = double(xr[c]) - mx;
        out[r * cols + c] = T(log ? z - std::log(sum) : std::exp(z) / sum);
      }
    }
  });
}

void softmax_backward(const Tensor& dx, const Tensor& dy, const Tensor& y, bool log) {
  const int64_t cols = y.dim() == 0 ? 1 : y.size(-1), rows = cols == 0 ? 0 : y.numel() / cols;
  visit_float(y.dtype(), "ref softmax_backward", [&]<class T>() {
    const T* g = dy.data<T>();
    const T* p = y.data<T>();
    T* o = dx.data<T>();
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t b = r * cols;
      double s = 0;  // log: sum(dy); softmax: sum(dy * y)
      for (int64_t c = 0; c < cols; ++c) s += log ? double(g[b + c]) : double(g[b + c]) * p[b + c];
      for (int64_t c = 0; c < cols; ++c) {
        double gi = g[b + c], yi = p[b + c];
        o[b + c] = T(log ? gi - std::exp(yi) * s : yi * (gi - s));
      }
    }
  });
}

void layernorm_forward(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                       const Tensor& weight, const Tensor& bias, double eps) {
  const int64_t C = x.size(-1), N = C == 0 ? 0 : x.numel() / C;
  visit_float(x.dtype(), "ref layernorm_forward", [&]<class T>() {
    const T* in = x.data<T>();
    const T* w = weight.defined() ? weight.data<T>() : nullptr;
    const T* bs = bias.defined() ? bias.data<T>() : nullptr;
    for (int64_t i = 0; i < N; ++i) {
      const T* xr = in + i * C;
      double m = 0, v = 0;
      for (int64_t c = 0; c < C; ++c) m += xr[c];
      m /= double(C);
      for (int64_t c = 0; c < C; ++c) v += (xr[c] - m) * (xr[c] - m);
      v /= double(C);
      double rs = 1.0 / std::sqrt(v + eps);
      for (int64_t c = 0; c < C; ++c) {
        double o = (xr[c] - m) * rs;
        if (w) o *= w[c];
        if (bs) o += bs[c];
        y.data<T>()[i * C + c] = T(o);
      }
      if (mean.defined()) mean.data<T>()[i] = T(m);
      if (rstd.defined()) rstd.data<T>()[i] = T(rs);
    }
  });
}

void layernorm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                        const Tensor& dy, const Tensor& x, const Tensor& weight,
                        const Tensor& mean, const Tensor& rstd) {
  const int64_t C = x.size(-1), N = C == 0 ? 0 : x.numel() / C;
  visit_float(x.dtype(), "ref layernorm_backward", [&]<class T>() {
    const T* in = x.data<T>();
    const T* g = dy.data<T>();
    const T* w = weight.defined() ? weight.data<T>() : nullptr;
    std::vector<double> dw(size_t(C), 0.0), db(size_t(C), 0.0);
    for (int64_t i = 0; i < N; ++i) {
      const double m = mean.data<T>()[i], rs = rstd.data<T>()[i];
      double mean_dn = 0, mean_dn_xhat = 0;  // mean of dnorm and of dnorm * xhat
      for (int64_t c = 0; c < C; ++c) {
        double xhat = (in[i * C + c] - m) * rs, dn = g[i * C + c] * (w ? double(w[c]) : 1.0);
        mean_dn += dn;
        mean_dn_xhat += dn * xhat;
        dw[size_t(c)] += g[i * C + c] * xhat;
        db[size_t(c)] += g[i * C + c];
      }
      mean_dn /= double(C);
      mean_dn_xhat /= double(C);
      if (!dx.defined()) continue;
      for (int64_t c = 0; c < C; ++c) {
        double xhat = (in[i * C + c] - m) * rs, dn = g[i * C + c] * (w ? double(w[c]) : 1.0);
        dx.data<T>()[i * C + c] = T((dn - mean_dn - xhat * mean_dn_xhat) * rs);
      }
    }
    for (int64_t c = 0; c < C; ++c) {
      if (dweight.defined()) dweight.data<T>()[c] = T(dw[size_t(c)]);
      if (dbias.defined()) dbias.data<T>()[c] = T(db[size_t(c)]);
    }
  });
}

void cross_entropy_forward(const Tensor& loss, const Tensor& lse, const Tensor& logits,
                           const Tensor& targets, int64_t ignore_index) {
  const int64_t N = logits.size(0), V = logits.size(1);
  const int64_t* t = targets.data<int64_t>();
  visit_float(logits.dtype(), "ref cross_entropy_forward", [&]<class T>() {
    for (int64_t i = 0; i < N; ++i) {
      const T* xr = logits.data<T>() + i * V;
      double mx = -std::numeric_limits<double>::infinity(), s = 0;
      for (int64_t c = 0; c < V; ++c) mx = std::max(mx, double(xr[c]));
      for (int64_t c = 0; c < V; ++c) s += std::exp(xr[c] - mx);
      double l = mx + std::log(s);
      lse.data<T>()[i] = T(l);
      if (t[i] == ignore_index) {
        loss.data<T>()[i] = T(0);
        continue;
      }
      check_index(t[i], V, "cross_entropy");
      loss.data<T>()[i] = T(l - xr[t[i]]);
    }
  });
}

void cross_entropy_backward(const Tensor& dlogits, const Tensor& dloss, const Tensor& logits,
                            const Tensor& targets, const Tensor& lse, int64_t ignore_index) {
  const int64_t N = logits.size(0), V = logits.size(1);
  const int64_t* t = targets.data<int64_t>();
  visit_float(logits.dtype(), "ref cross_entropy_backward", [&]<class T>() {
    for (int64_t i = 0; i < N; ++i) {
      T* o = dlogits.data<T>() + i * V;
      const T* xr = logits.data<T>() + i * V;
      const bool ignored = t[i] == ignore_index;
      if (!ignored) check_index(t[i], V, "cross_entropy");
      for (int64_t c = 0; c < V; ++c) {
        double p = std::exp(double(xr[c]) - double(lse.data<T>()[i]));
        o[c] = ignored ? T(0) : T(double(dloss.data<T>()[i]) * (p - (c == t[i] ? 1.0 : 0.0)));
      }
    }
  });
}

void index_select(const Tensor& out, const Tensor& x, const Tensor& index, int64_t outer,
                  int64_t n, int64_t inner) {
  const int64_t m = index.numel();
  const int64_t* idx = index.data<int64_t>();
  for (int64_t j = 0; j < m; ++j) check_index(idx[j], n, "index_select");
  visit_dtype(x.dtype(), [&]<class T>() {
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t j = 0; j < m; ++j)
        for (int64_t k = 0; k < inner; ++k)
          out.data<T>()[(o * m + j) * inner + k] = x.data<T>()[(o * n + idx[j]) * inner + k];
  });
}

void index_add(const Tensor& out, const Tensor& src, const Tensor& index, int64_t outer, int64_t n,
               int64_t inner) {
  const int64_t m = index.numel();
  const int64_t* idx = index.data<int64_t>();
  for (int64_t j = 0; j < m; ++j) check_index(idx[j], n, "index_add");
  visit_float(out.dtype(), "ref index_add", [&]<class T>() {
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t j = 0; j < m; ++j)
        for (int64_t k = 0; k < inner; ++k)
          out.data<T>()[(o * n + idx[j]) * inner + k] += src.data<T>()[(o * m + j) * inner + k];
  });
}

void gather(const Tensor& out, const Tensor& x, const Tensor& index, int64_t outer, int64_t n,
            int64_t inner) {
  const int64_t m = inner == 0 || outer == 0 ? 0 : index.numel() / (outer * inner);
  const int64_t* idx = index.data<int64_t>();
  visit_dtype(x.dtype(), [&]<class T>() {
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t j = 0; j < m; ++j)
        for (int64_t k = 0; k < inner; ++k) {
          int64_t p = (o * m + j) * inner + k;
          check_index(idx[p], n, "gather");
          out.data<T>()[p] = x.data<T>()[(o * n + idx[p]) * inner + k];
        }
  });
}

void scatter_add(const Tensor& out, const Tensor& src, const Tensor& index, int64_t outer,
                 int64_t n, int64_t inner) {
  const int64_t m = inner == 0 || outer == 0 ? 0 : index.numel() / (outer * inner);
  const int64_t* idx = index.data<int64_t>();
  visit_float(out.dtype(), "ref scatter_add", [&]<class T>() {
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t j = 0; j < m; ++j)
        for (int64_t k = 0; k < inner; ++k) {
          int64_t p = (o * m + j) * inner + k;
          check_index(idx[p], n, "scatter_add");
          out.data<T>()[(o * n + idx[p]) * inner + k] += src.data<T>()[p];
        }
  });
}

void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v,
                double lr, double beta1, double beta2, double eps, double weight_decay,
                double bias_correction1, double bias_correction2) {
  visit_float(param.dtype(), "ref adamw_step", [&]<class T>() {
    T* p = param.data<T>();
    const T* g = grad.data<T>();
    T* mm = m.data<T>();
    T* vv = v.data<T>();
    for (int64_t i = 0; i < param.numel(); ++i) {
      double pi = double(p[i]) - lr * weight_decay * double(p[i]);
      double mi = beta1 * double(mm[i]) + (1 - beta1) * double(g[i]);
      double vi = beta2 * double(vv[i]) + (1 - beta2) * double(g[i]) * double(g[i]);
      pi -= lr * (mi / bias_correction1) / (std::sqrt(vi / bias_correction2) + eps);
      p[i] = T(pi);
      mm[i] = T(mi);
      vv[i] = T(vi);
    }
  });
}

}  // namespace loom::cpu::ref
