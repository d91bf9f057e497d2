// Gradcheck and allclose (see GradCheck.h).
#include "tests/support/GradCheck.h"

#include <cmath>
#include <sstream>

#include "core/autograd/GradMode.h"

namespace loom::testing {

::testing::AssertionResult allclose(const Tensor& actual, const Tensor& expected, double atol,
                                    double rtol) {
  if (actual.shape() != expected.shape()) {
    return ::testing::AssertionFailure()
           << "shape mismatch: actual " << shape_str(actual.shape()) << " vs expected "
           << shape_str(expected.shape());
  }
  std::vector<double> a = actual.to_vector<double>(), b = expected.to_vector<double>();
  for (size_t i = 0; i < a.size(); ++i) {
    bool both_nan = std::isnan(a[i]) && std::isnan(b[i]);
    bool same_inf = std::isinf(a[i]) && a[i] == b[i];
    if (both_nan || same_inf) continue;
    if (!(std::abs(a[i] - b[i]) <= atol + rtol * std::abs(b[i]))) {
      return ::testing::AssertionFailure()
             << "element " << i << " of " << a.size() << " (shape " << shape_str(actual.shape())
             << "): actual " << a[i] << " vs expected " << b[i] << " (|diff| " << std::abs(a[i] - b[i])
             << " > atol " << atol << " + rtol " << rtol << " * |expected|)";
    }
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult gradcheck(const GradFn& fn, const std::vector<Tensor>& inputs,
                                     const GradCheckOptions& opt) {
  std::vector<Tensor> leaves;
  for (const Tensor& in : inputs) {
    if (in.dtype() != DType::F64)
      return ::testing::AssertionFailure() << "gradcheck needs f64 inputs, got "
                                           << dtype_name(in.dtype());
    leaves.push_back(in.detach().contiguous().clone());
    if (in.requires_grad()) leaves.back().set_requires_grad(true);
  }
  Tensor out0;
  {
    NoGradGuard g;
    out0 = fn(leaves).contiguous();
  }
  const int64_t n_out = out0.numel();
  // Analytical Jacobian: row j = gradient of output element j w.r.t. every input element.
  std::vector<std::vector<std::vector<double>>> analytic(leaves.size());
  for (size_t k = 0; k < leaves.size(); ++k)
    analytic[k].assign(size_t(n_out), std::vector<double>(size_t(leaves[k].numel()), 0.0));
  for (int64_t j = 0; j < n_out; ++j) {
    for (const Tensor& l : leaves) l.set_grad(Tensor());
    Tensor out = fn(leaves);
    if (!out.requires_grad()) return ::testing::AssertionFailure() << "output does not require grad";
    std::vector<double> onehot(size_t(n_out), 0.0);
    onehot[size_t(j)] = 1.0;
    out.backward(Tensor::from_vector(onehot, out.shape()));
    for (size_t k = 0; k < leaves.size(); ++k) {
      if (!leaves[k].requires_grad()) continue;
      Tensor g = leaves[k].grad();
      if (g.defined()) analytic[k][size_t(j)] = g.to_vector<double>();
    }
  }
  // Numerical Jacobian by central differences.
  for (size_t k = 0; k < leaves.size(); ++k) {
    if (!leaves[k].requires_grad()) continue;
    double* x = leaves[k].data<double>();
    for (int64_t i = 0; i < leaves[k].numel(); ++i) {
      double orig = x[i];
      std::vector<double> plus, minus;
      {
        NoGradGuard g;
        x[i] = orig + opt.eps;
        plus = fn(leaves).to_vector<double>();
        x[i] = orig - opt.eps;
        minus = fn(leaves).to_vector<double>();
        x[i] = orig;
      }
      for (int64_t j = 0; j < n_out; ++j) {
        double num = (plus[size_t(j)] - minus[size_t(j)]) / (2 * opt.eps);
        double ana = analytic[k][size_t(j)][size_t(i)];
        if (!(std::abs(num - ana) <= opt.atol + opt.rtol * std::abs(num))) {
          return ::testing::AssertionFailure()
                 << "Jacobian mismatch for input " << k << " (shape "
                 << shape_str(leaves[k].shape()) << "), d out[" << j << "] / d in[" << i
                 << "]: analytical " << ana << " vs numerical " << num;
        }
      }
    }
  }
  return ::testing::AssertionSuccess();
}

}  // namespace loom::testing
