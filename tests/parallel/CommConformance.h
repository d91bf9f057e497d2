// Communicator conformance checks (TESTPLAN R-1), shared by the Fake unit tests and the MPI
// multi-rank tests: every op, every dtype, uneven (prime) and zero sizes. Inputs are a pure
// function of (rank, index, salt), so each rank computes the expected result of the whole group
// itself. The reference reduction below is written independently of reduce_ordered: a plain
// left-to-right loop over ranks in the accumulation type, as a single process would sum them.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "parallel/comm/Communicator.h"

namespace loom::test {

inline const std::vector<DType> kAllDTypes = {DType::F32, DType::F64, DType::BF16, DType::F16,
                                              DType::I32, DType::I64, DType::Bool};
inline const std::vector<int64_t> kSizes = {0, 1, 7, 1031};  // zero, one, uneven primes

// Value of element i on rank r; floats use many mantissa bits so summation order shows.
inline double input_value(int r, int64_t i, DType dt, int salt) {
  if (dt == DType::Bool) return double((r + i + salt) % 3 == 0);
  if (dt == DType::I32 || dt == DType::I64) return double((r * 7919 + i * 31 + salt * 13) % 2001 - 1000);
  // NB: the argument is built in integers: a float expression like 0.37*i + 1.3*r may be
  // contracted into an FMA differently at different inlining sites (-mfma), changing the inputs.
  double arg = double((i * 37 + r * 130 + salt * 10) % 100003) / 100.0;
  return std::sin(arg) * (1.0 + r) * 1.000123;
}

inline Tensor make_input(int r, int64_t n, DType dt, int salt) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = input_value(r, i, dt, salt);
  return Tensor::from_vector(v, {n}).to(dt);
}

// Rank-ordered reference: ((x_0 op x_1) op x_2) ... in T's accumulation type, over inputs read
// back from tensors. NB: reading stored values (not recomputing input_value inline) keeps the
// compiler from contracting "acc + a*b" into an FMA, which would change the reference's rounding.
template <class T>
T reference_reduce(const std::vector<const T*>& xs, int64_t i, ReduceOp op) {
  if constexpr (std::is_same_v<T, bool>) {
    bool any = false, all = true;  // Sum and Max are "or", Min is "and"
    for (const T* x : xs) {
      any = any || x[i];
      all = all && x[i];
    }
    return op == ReduceOp::Min ? all : any;
  } else {
    using Acc = std::conditional_t<std::is_same_v<T, BFloat16> || std::is_same_v<T, Half>, float, T>;
    Acc acc = Acc(xs[0][i]);
    for (size_t r = 1; r < xs.size(); ++r) {
      Acc v = Acc(xs[r][i]);
      acc = op == ReduceOp::Sum   ? Acc(acc + v)
            : op == ReduceOp::Max ? (v > acc ? v : acc)
                                  : (v < acc ? v : acc);
    }
    return T(acc);
  }
}

// Byte-exact comparison (bitwise for floats), reporting the first differing element.
inline void expect_bytes_equal(const Tensor& got, const Tensor& want, const std::string& what) {
  ASSERT_EQ(got.nbytes(), want.nbytes()) << what;
  size_t es = got.element_size();
  const auto* a = static_cast<const uint8_t*>(got.raw_data());
  const auto* b = static_cast<const uint8_t*>(want.raw_data());
  for (size_t i = 0; i < got.nbytes(); i += es) {
    if (std::memcmp(a + i, b + i, es) != 0) {
      ADD_FAILURE() << what << ": first difference at element " << i / es << ": got "
                    << got.reshape({-1}).narrow(0, int64_t(i / es), 1).to(DType::F64).item()
                    << ", want " << want.reshape({-1}).narrow(0, int64_t(i / es), 1).to(DType::F64).item();
      return;
    }
  }
}

// Expected reduction of elements [offset, offset+n) of inputs make_input(q, total, dt, salt).
inline Tensor expected_reduction(int nranks, int64_t n, int64_t offset, int64_t total, DType dt,
                                 int salt, ReduceOp op) {
  Tensor want = Tensor::empty({n}, dt);
  std::vector<Tensor> inputs;
  for (int q = 0; q < nranks; ++q) inputs.push_back(make_input(q, total, dt, salt));
  visit_dtype(dt, [&]<class T>() {
    std::vector<const T*> xs;
    for (const Tensor& t : inputs) xs.push_back(t.data<T>());
    T* p = want.data<T>();
    for (int64_t i = 0; i < n; ++i) p[i] = reference_reduce<T>(xs, offset + i, op);
  });
  return want;
}

inline std::string what(const char* op, DType dt, int64_t n, const Communicator& c) {
  return detail::str_cat(op, " ", dtype_name(dt), " n=", n, " on rank ", c.rank(), "/", c.size());
}

// all ops x all dtypes x all sizes; results must equal the rank-ordered reference bitwise.
// Requires c.ordered_reduce() (or integer/bool/16-bit dtypes, which are always exact/ordered).
inline void run_conformance(Communicator& c) {
  const int n = c.size(), r = c.rank();
  int salt = 0;
  for (DType dt : kAllDTypes) {
    for (int64_t len : kSizes) {
      ++salt;
      for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min}) {
        Tensor t = make_input(r, len, dt, salt);
        c.all_reduce(t, op);
        expect_bytes_equal(t, expected_reduction(n, len, 0, len, dt, salt, op), what("all_reduce", dt, len, c));
        Tensor in = make_input(r, len * n, dt, salt);
        Tensor out = Tensor::empty({len}, dt);
        c.reduce_scatter(out, in, op);
        expect_bytes_equal(out, expected_reduction(n, len, r * len, len * n, dt, salt, op),
                           what("reduce_scatter", dt, len, c));
      }
      Tensor gathered = Tensor::empty({len * n}, dt);
      c.all_gather(gathered, make_input(r, len, dt, salt));
      for (int q = 0; q < n; ++q)
        expect_bytes_equal(gathered.narrow(0, q * len, len).contiguous(), make_input(q, len, dt, salt),
                           what("all_gather", dt, len, c));
      int root = salt % n;
      Tensor b = make_input(r, len, dt, salt);
      c.broadcast(b, root);
      expect_bytes_equal(b, make_input(root, len, dt, salt), what("broadcast", dt, len, c));
      if (n > 1) {  // ring: send to the right, receive from the left, both in flight at once
        Tensor got = Tensor::empty({len}, dt);
        auto rw = c.recv_async(got, (r + n - 1) % n, salt);
        auto sw = c.send_async(make_input(r, len, dt, salt), (r + 1) % n, salt);
        sw->wait();
        rw->wait();
        expect_bytes_equal(got, make_input((r + n - 1) % n, len, dt, salt), what("send/recv", dt, len, c));
      }
      c.barrier();
    }
  }
}

}  // namespace loom::test
