// CUDA twins of the CPU kernels. Same maths and contracts as the CPU headers (rq_encode.h, mmd.h,
// infonce.h, lora.h), on DEVICE pointers, enqueued on `stream` (a cudaStream_t; nullptr = the legacy
// default stream). Functions that return a loss synchronise the stream to read it back.
//
// Status: compiled by nvcc when the toolkit is present (MMESID_CUDA=AUTO|ON), for the architectures in
// CMAKE_CUDA_ARCHITECTURES. The build machines have no GPU, so these are compile-checked only; the
// scalar maths they share with the CPU path (common.h MMESID_HD helpers) is tested on the CPU.
// Errors are reported as std::runtime_error carrying cudaGetErrorString.
#pragma once

#include <cstdint>

#include "../infonce.h"
#include "../lora.h"
#include "../mmd.h"
#include "../rq_encode.h"

namespace mmesid::kernels::cuda {

/// True when a CUDA device is visible at run time.
bool device_available();

void rq_encode(const float* x, const float* codebooks, const RqEncodeShape& shape, int32_t* codes,
               float* sq_error, void* stream);

double mmd_gaussian(const float* x, const float* y, int64_t n, int64_t dim,
                    const GaussianBandwidth& bandwidth, float* grad_x, float* grad_y, void* stream);

double info_nce(const float* a, const float* b, int64_t n, int64_t dim, double temperature, bool symmetric,
                float* grad_a, float* grad_b, void* stream);

void lora_linear_forward(const float* x, const float* x_lora, const float* weight, const float* bias,
                         const float* lora_a, const float* lora_b, const LoraShape& shape, float* y,
                         float* xa_out, void* stream);

void lora_linear_backward(const float* x, const float* x_lora, const float* weight, const float* lora_a,
                          const float* lora_b, const float* grad_y, const float* xa, const LoraShape& shape,
                          float* grad_x, float* grad_x_lora, float* grad_a, float* grad_b, float* grad_bias,
                          void* stream);

}  // namespace mmesid::kernels::cuda
