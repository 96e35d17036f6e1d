// Bench-only export of mmesid_torch.node: `_tokenizeEager(options)` → Promise, the libtorch eager
// baseline of the tokenization service (native/torch/bench/tokenize_eager.h); see
// NativeTokenizeEagerOptions in typings/native.d.ts.
#pragma once

#include <napi.h>

namespace mmesid::addon {

/// Adds `_tokenizeEager` to the torch addon's exports.
void register_tokenize_bench_exports(Napi::Env env, Napi::Object exports);

}  // namespace mmesid::addon
