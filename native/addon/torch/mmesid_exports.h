// The MME-SID head's exports of mmesid_torch.node (see mmesid_exports.cpp; typings: NativeMmesid*).
#pragma once

#include <napi.h>

namespace mmesid::addon {

/// Adds mmesidHead to `exports`.
void register_mmesid_exports(Napi::Env env, Napi::Object exports);

}  // namespace mmesid::addon
