// Run-time CUDA device detection (declared in kernels_cuda.h).
#include <cuda_runtime.h>

#include "kernels_cuda.h"

namespace mmesid::kernels::cuda {

/// True when the CUDA runtime reports at least one device. Any runtime error (no driver, no device,
/// driver older than the runtime) reads as "no device"; the error is cleared so it cannot surface
/// from a later, unrelated CUDA call. Never throws.
bool device_available() {
  try {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    return count > 0;
  } catch (...) {
    return false;
  }
}

}  // namespace mmesid::kernels::cuda
