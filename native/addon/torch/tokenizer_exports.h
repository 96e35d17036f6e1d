// The MM-RQ-VAE tokenizer's exports of mmesid_torch.node (training on its own thread, the libtorch
// encoding path, and test-only probes). Argument conversion and workers only; the maths lives in
// native/torch/models/mm_rqvae.h and native/torch/train/tokenizer_trainer.h. The exported functions
// and their options are documented in typings/native.d.ts (NativeRqvae*).
#pragma once

#include <napi.h>

namespace mmesid::addon {

/// Adds tokenizerTrain, tokenizerEncode, _tokenizerSinkhorn, _tokenizerRqProbe and _tokenizerKmeans to
/// `exports`.
void register_tokenizer_exports(Napi::Env env, Napi::Object exports);

}  // namespace mmesid::addon
