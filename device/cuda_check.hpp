// The CUDA sources' one way to check a call (attention/ and model/): a failed CUDA
// runtime or cuBLAS call becomes an ldqa::Error naming the call. The cuBLAS macro
// expands where <cublas_v2.h> is included; this header does not need it.
#pragma once

#include <cuda_runtime.h>

#include "ldqa/error.hpp"

#define LDQA_CUDA_CHECK(expr)                                                                           \
  do {                                                                                                  \
    const cudaError_t status_ = (expr);                                                                 \
    if (status_ != cudaSuccess) ::ldqa::fail("CUDA error: ", #expr, ": ", cudaGetErrorString(status_)); \
  } while (0)

#define LDQA_CUBLAS_CHECK(expr)                                                                                        \
  do {                                                                                                                 \
    const cublasStatus_t status_ = (expr);                                                                             \
    if (status_ != CUBLAS_STATUS_SUCCESS) ::ldqa::fail("cuBLAS error: ", #expr, ": ", cublasGetStatusString(status_)); \
  } while (0)
