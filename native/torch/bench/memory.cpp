#include "memory.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <algorithm>
#include <atomic>
#include <mutex>

namespace mmesid::torch_bench {
namespace {

std::atomic<int64_t> g_live{0}, g_peak{0};

struct Counted {
  c10::DataPtr inner;
  int64_t bytes;
};

void release(void* context) {
  auto* counted = static_cast<Counted*>(context);
  g_live.fetch_sub(counted->bytes);
  delete counted;  // frees the wrapped allocation through its own deleter
}

class CountingAllocator final : public c10::Allocator {
 public:
  explicit CountingAllocator(c10::Allocator* inner) : inner_(inner) {}

  c10::DataPtr allocate(size_t bytes) const override {
    c10::DataPtr inner = inner_->allocate(bytes);
    void* data = inner.get();
    const c10::Device device = inner.device();
    auto* counted = new Counted{std::move(inner), static_cast<int64_t>(bytes)};
    const int64_t live = g_live.fetch_add(counted->bytes) + counted->bytes;
    int64_t peak = g_peak.load();
    while (live > peak && !g_peak.compare_exchange_weak(peak, live)) {
    }
    return {data, counted, &release, device};
  }

  c10::DeleterFnPtr raw_deleter() const override { return nullptr; }

 private:
  c10::Allocator* inner_;
};

}  // namespace

void start_peak_measurement() {
  static std::once_flag installed;
  std::call_once(installed, [] {
    static CountingAllocator allocator(c10::GetDefaultCPUAllocator());
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
