// Shared by shim.cpp and dist.cpp: the error convention of the C++ shim (every function returns
// nullptr or a malloc'd message, freed by tv_free_error) and tch's tensor lists.
#pragma once

#include <ATen/ATen.h>

#include <cstdlib>
#include <cstring>
#include <vector>

// Runs the body; a C++ exception becomes its message (libtorch's without its backtrace).
#define TV_TRY(...)                              \
  try {                                          \
    __VA_ARGS__;                                 \
    return nullptr;                              \
  } catch (const c10::Error& e) {                \
    return strdup(e.what_without_backtrace());   \
  } catch (const std::exception& e) {            \
    return strdup(e.what());                     \
  }

namespace tv {

// tch's C_tensor is a torch::Tensor*: n of them as a list of handles.
inline std::vector<at::Tensor> list(at::Tensor** ts, size_t n) {
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (size_t i = 0; i < n; ++i) v.push_back(*ts[i]);
  return v;
}

}  // namespace tv
