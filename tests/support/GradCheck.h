// Gradcheck: compares the full Jacobian from autograd with central finite differences in f64
// (PyTorch gradcheck defaults: eps 1e-6, atol 1e-5, rtol 1e-3; TESTPLAN U2).
//   auto fn = [](const std::vector<Tensor>& in) { return loom::gelu(in[0].t()); };  // view inside
//   EXPECT_TRUE(gradcheck(fn, {Tensor::randn({3, 4}, gen, DType::F64)}));
// The inputs are the leaves that get perturbed; build transposed or broadcast views *inside* fn so
// each leaf element is perturbed once and the op sees non-contiguous inputs.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/tensor/Tensor.h"

namespace loom::testing {

struct GradCheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
};

using GradFn = std::function<Tensor(const std::vector<Tensor>&)>;

// Returns success, or failure naming the input, the output/input element and both values.
// Inputs must be f64; those with requires_grad == false are held constant.
::testing::AssertionResult gradcheck(const GradFn& fn, const std::vector<Tensor>& inputs,
                                     const GradCheckOptions& opt = {});

// Max |a-b| - (atol + rtol*|b|) check over all elements, with the first mismatch in the message.
::testing::AssertionResult allclose(const Tensor& actual, const Tensor& expected, double atol,
                                    double rtol);

}  // namespace loom::testing
