// Peak tensor memory on the CPU, for the benchmarks: a c10::Allocator over c10's own alloc_cpu/free_cpu
// (what the default CPU allocator uses) that counts the bytes of live allocations. Installed on first use
// (process-wide, for the rest of the process) at a priority above the default; OpenBLAS's and other
// libraries' own buffers are not counted, only ATen tensor storage.
#pragma once

#include <cstdint>

namespace mmesid::torch_bench {

/// Installs the counting allocator (idempotent) and starts a measurement: the peak is reset to the
/// bytes live now. Not thread-safe against a concurrent measurement.
void start_peak_measurement();

/// Bytes of tensor storage live now, and the largest value since start_peak_measurement().
int64_t live_tensor_bytes();
int64_t peak_tensor_bytes();

}  // namespace mmesid::torch_bench
