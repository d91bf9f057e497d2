// The one config header allowed to hold #ifdef (with backend/cuda/): portability macros shared by
// host C++ and CUDA code.
#pragma once

#if defined(__CUDACC__)
#define LOOM_HOST_DEVICE __host__ __device__
#else
#define LOOM_HOST_DEVICE
#endif
