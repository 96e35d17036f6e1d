#include "memory.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <unordered_map>

namespace mmesid::torch_bench {
namespace {

std::atomic<int64_t> g_live{0}, g_peak{0};
std::mutex g_sizes_mutex;
std::unordered_map<void*, int64_t>& sizes() {
  static std::unordered_map<void*, int64_t> table;
  return table;
}

// The context is the data pointer itself (what raw_allocate/raw_deallocate callers require); sizes live in
// a side table.
void counted_free(void* data) {
  if (!data) return;
  {
    const std::lock_guard<std::mutex> lock(g_sizes_mutex);
    auto it = sizes().find(data);
    if (it != sizes().end()) {
      g_live.fetch_sub(it->second);
      sizes().erase(it);
    }
  }
  c10::free_cpu(data);
}

class CountingAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t bytes) const override {
    void* data = c10::alloc_cpu(bytes);
    if (data) {
      const std::lock_guard<std::mutex> lock(g_sizes_mutex);
      sizes()[data] = static_cast<int64_t>(bytes);
    }
    const int64_t live = g_live.fetch_add(static_cast<int64_t>(bytes)) + static_cast<int64_t>(bytes);
    int64_t peak = g_peak.load();
    while (live > peak && !g_peak.compare_exchange_weak(peak, live)) {
    }
    return {data, data, &counted_free, c10::Device(c10::kCPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &counted_free; }
};

}  // namespace

void start_peak_measurement() {
  static std::once_flag installed;
  std::call_once(installed, [] {
    static CountingAllocator allocator;
    c10::SetCPUAllocator(&allocator, /*priority=*/100);
  });
  g_peak.store(g_live.load());
}

int64_t live_tensor_bytes() {
  return g_live.load();
}
int64_t peak_tensor_bytes() {
  return g_peak.load();
}

}  // namespace mmesid::torch_bench
