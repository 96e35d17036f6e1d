// Recompute-in-backward (activation checkpointing) for any differentiable function of tensors: the
// forward runs `fn` without recording a graph and keeps only its inputs; the backward re-runs `fn` with
// grad enabled — on the inputs that are leaves (parameters) themselves, on detached copies of the others —
// replaying the state of the inputs'
// device's default generator, so dropout draws the same masks — and back-propagates the incoming gradient
// into them. Memory: the inputs (references, not copies) and the output instead of every intermediate.
// Used by the Llama's gradient checkpointing and the MME-SID head's chunked cross-entropy.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <vector>

namespace mmesid::train {

/// A function of tensors returning one tensor; it must be deterministic given its inputs and the
/// generator state. Every tensor requiring grad that it uses must be among `inputs` (leaves may also be
/// reached through captured members: they are recomputed as themselves); inputs must not be modified in
/// place between the forward and the backward.
using RecomputedFn = std::function<at::Tensor(const std::vector<at::Tensor>& inputs)>;

/// fn(inputs) as one autograd node that recomputes fn in its backward.
at::Tensor recompute_in_backward(RecomputedFn fn, const std::vector<at::Tensor>& inputs);

}  // namespace mmesid::train
