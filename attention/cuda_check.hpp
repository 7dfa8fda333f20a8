// Shared by the CUDA sources of attention/ and model/: a failed CUDA runtime call
// becomes an ldqa::Error naming the call.
#pragma once

#include <cuda_runtime.h>

#include "ldqa/error.hpp"

#define LDQA_CUDA_CHECK(expr)                                                                           \
  do {                                                                                                  \
    const cudaError_t status_ = (expr);                                                                 \
    if (status_ != cudaSuccess) ::ldqa::fail("CUDA error: ", #expr, ": ", cudaGetErrorString(status_)); \
  } while (0)
