// mmesid_core.node exports of the tokenization service (native/tokenizer): argument conversion and
// workers only.
//
//   tokenizerCreate({ modalities: [{ name, layers: [{ weight, bias, inDim, outDim }], codebooks, levels,
//                     codes, codeDim }] }) → handle (synchronous; copies every buffer, so the caller's
//                     arrays may be dropped afterwards)
//   handle.encode({ modality, x, n, codes, threads, rowOffset?, label?, _reference? }) → Promise<0>
//                     x float32 [n, inputDim] → codes int32 [n, levels], written in place
//   handle.dispose() frees the model once no encode still runs (each worker holds a shared_ptr);
//                     encode after dispose throws an Error with code ERR_MMESID_INVALID_ARGUMENT
//   handle.bytes     bytes of native weights held (0 after dispose)
#pragma once

#include <napi.h>

namespace mmesid::addon {

/// Adds `tokenizerCreate` to the core addon's exports.
void register_tokenizer_exports(Napi::Env env, Napi::Object exports);

}  // namespace mmesid::addon
