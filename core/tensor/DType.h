// Element types and the one dtype switch of the code base: visit_dtype(dt, [&]<class T>() { ... }).
// A kernel that supports only some dtypes says so with visit_float / visit_dtype_of and everything
// else throws a ValueError naming the op and the dtype.
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor/Half.h"
#include "core/util/Check.h"

namespace loom {

enum class DType : uint8_t { F32, F64, BF16, F16, I32, I64, Bool };

inline constexpr int kNumDTypes = 7;

inline const char* dtype_name(DType dt) {
  switch (dt) {
    case DType::F32: return "f32";
    case DType::F64: return "f64";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
    case DType::I32: return "i32";
    case DType::I64: return "i64";
    case DType::Bool: return "bool";
  }
  return "?";
}

inline size_t dtype_size(DType dt) {
  switch (dt) {
    case DType::F32: return 4;
    case DType::F64: return 8;
    case DType::BF16: return 2;
    case DType::F16: return 2;
    case DType::I32: return 4;
    case DType::I64: return 8;
    case DType::Bool: return 1;
  }
  return 0;
}

inline bool is_floating(DType dt) {
  return dt == DType::F32 || dt == DType::F64 || dt == DType::BF16 || dt == DType::F16;
}

// Parses "f32", "float32", "bf16", ... ; throws ValueError listing the allowed names.
DType dtype_from_name(const std::string& name);

template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::F32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::F64; };
template <> struct dtype_of<BFloat16> { static constexpr DType value = DType::BF16; };
template <> struct dtype_of<Half> { static constexpr DType value = DType::F16; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::I32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::I64; };
template <> struct dtype_of<bool> { static constexpr DType value = DType::Bool; };
template <class T> inline constexpr DType dtype_of_v = dtype_of<T>::value;

// Calls fn.template operator()<T>() with T the C++ type of dt.
template <class Fn>
decltype(auto) visit_dtype(DType dt, Fn&& fn) {
  switch (dt) {
    case DType::F32: return fn.template operator()<float>();
    case DType::F64: return fn.template operator()<double>();
    case DType::BF16: return fn.template operator()<BFloat16>();
    case DType::F16: return fn.template operator()<Half>();
    case DType::I32: return fn.template operator()<int32_t>();
    case DType::I64: return fn.template operator()<int64_t>();
    case DType::Bool: return fn.template operator()<bool>();
  }
  throw InternalError("visit_dtype: bad dtype");
}

// f32 and f64 only: the compute dtypes of the CPU kernels (bf16/f16 tensors are converted first).
template <class Fn>
decltype(auto) visit_float(DType dt, const char* op, Fn&& fn) {
  switch (dt) {
    case DType::F32: return fn.template operator()<float>();
    case DType::F64: return fn.template operator()<double>();
    default: break;
  }
  throw ValueError(detail::str_cat(op, ": expected dtype f32 or f64, got ", dtype_name(dt),
                                   "; hint: convert with .to(DType::F32)"));
}

}  // namespace loom
