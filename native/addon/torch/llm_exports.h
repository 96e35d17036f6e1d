// The LLM's exports of mmesid_torch.node (the Llama of native/torch/models/llama.h, its LoRA adapters,
// generation, and test-only probes). Argument conversion and workers only. The exported functions and
// their options are documented in typings/native.d.ts (NativeLlm*).
#pragma once

#include <napi.h>

namespace mmesid::addon {

/// Adds llmLoad and _safetensorsParse to `exports`.
void register_llm_exports(Napi::Env env, Napi::Object exports);

}  // namespace mmesid::addon
