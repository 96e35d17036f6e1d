// The step loop shared by the LLM trainers (LoRA language-model fine-tuning now, MME-SID next): AdamW with
// decoupled weight decay, a learning-rate schedule with warmup, gradient accumulation, gradient-norm
// clipping, fp16 dynamic loss scaling, a progress report every optimizer step, cancellation, and atomic
// checkpoints with exact resume.
//
// One optimizer step s (0-based) = `accumulation_steps` micro-batches: for each micro m the caller's
// `micro_loss(s, m, rng)` returns that micro-batch's mean loss; the loop back-propagates loss /
// accumulation_steps (times the loss scale under fp16), then unscales, clips, sets lr = base ·
// lr_multiplier(s) and steps. The caller chooses the data from (s, m) and may draw from `rng`, so a
// resumed run sees the same batches: a checkpoint holds the parameters, AdamW's moments and step count,
// the loop's step, the loss scaler, `rng` and ATen's default CPU generator (dropout), so N steps straight
// and N/2 steps + a checkpoint + resume + N/2 steps give bit-identical parameters on CPU.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "torch/train/adamw.h"
#include "torch/train/checkpoint.h"

namespace mmesid::train {

/// Learning-rate schedules (Hugging Face transformers' get_*_schedule_with_warmup).
enum class LrSchedule { Constant, Linear, Cosine };

struct ScheduleConfig {
  LrSchedule type = LrSchedule::Cosine;
  int64_t warmup_steps = 0;
};

/// The multiplier of the base learning rate for optimizer step `step` (0-based: the number of steps
/// already taken) of `total_steps`, as HF's LambdaLR schedules compute it: step / warmup during warmup
/// (so the very first step has lr 0 when warmup > 0), then constant 1, linear decay to 0 at
/// total_steps, or cosine: 0.5·(1 + cos(π·progress)), progress = (step − warmup) / (total − warmup).
double lr_multiplier(const ScheduleConfig& schedule, int64_t step, int64_t total_steps);

/// torch.nn.utils.clip_grad_norm_: the L2 norm of all gradients together (float64 accumulation); when it
/// exceeds max_norm every gradient is scaled by max_norm / (norm + 1e-6). max_norm <= 0: no clipping,
/// the norm is still returned. Parameters without a gradient are skipped.
double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm);

/// fp16 dynamic loss scaling with torch.cuda.amp.GradScaler's defaults: scale 2^16, halved on a step
/// whose gradients overflow (that step is skipped), doubled after 2000 clean steps.
struct LossScaler {
  bool enabled = false;
  double scale = 65536.0;
  int64_t clean_steps = 0;
  static constexpr double kGrowth = 2.0, kBackoff = 0.5;
  static constexpr int64_t kInterval = 2000;
  /// Divides every gradient by the scale; false when any gradient holds a NaN or an infinity.
  bool unscale(const std::vector<at::Tensor>& params) const;
  /// Updates the scale after a step whose gradients were `finite`.
  void update(bool finite);
};

/// Options of run_train_loop.
struct LoopOptions {
  int64_t total_steps = 0;         ///< optimizer steps of the whole run (>= 1)
  int64_t accumulation_steps = 1;  ///< micro-batches per optimizer step (>= 1)
  AdamWConfig adam;                ///< adam.lr is the base learning rate
  ScheduleConfig schedule;
  double max_grad_norm = 0.0;  ///< <= 0: no clipping
  bool fp16_loss_scaling = false;
  uint64_t seed = 0;             ///< seeds `rng` and ATen's default generator at the start of a fresh run
  std::string checkpoint_path;   ///< empty: no checkpoints
  int64_t checkpoint_every = 0;  ///< also write one every this many steps (0: only on cancel and at the end)
  bool resume = false;           ///< continue from checkpoint_path when it exists
  int64_t stop_at = 0;      ///< > 0: return after this step (checkpointed), e.g. to validate; 0 = total_steps
  CheckpointKind kind;      ///< the trainer's checkpoint format
  std::string fingerprint;  ///< the run's identity; a checkpoint of another run is refused
};

/// What each optimizer step reports.
struct StepReport {
  int64_t step = 0;  ///< 1-based: steps done, including this one
  int64_t total_steps = 0;
  double loss = 0.0;       ///< mean of the micro-batch losses (unscaled)
  double lr = 0.0;         ///< the learning rate this step used
  double grad_norm = 0.0;  ///< before clipping (after unscaling)
  bool skipped = false;    ///< fp16 overflow: no update
  double seconds = 0.0;    ///< wall time of this step
};

struct LoopResult {
  int64_t steps = 0;           ///< steps done at the end (== total_steps)
  int64_t resumed_from = 0;    ///< the checkpoint's step, 0 for a fresh run
  std::vector<double> losses;  ///< the loss of every step run in this call
};

/// The data order every trainer uses: micro-batch g of the run is the (g mod B)-th slice of `batch`
/// examples of epoch ⌊g / B⌋ (B = ⌈count / batch⌉), each epoch a permutation drawn from
/// std::mt19937_64(seed + epoch) — a function of (seed, g) alone, so a resumed run reads the same data.
class EpochOrder {
 public:
  EpochOrder(int64_t count, int64_t batch, uint64_t seed);
  /// The example indices of micro-batch g (the last slice of an epoch may be shorter).
  std::vector<int64_t> micro_batch(int64_t g);
  int64_t batches_per_epoch() const { return per_epoch_; }

 private:
  int64_t count_, batch_, per_epoch_;
  uint64_t seed_;
  int64_t cached_epoch_ = -1;
  std::vector<int64_t> order_;
};

/// The micro-batch loss: (step, micro, rng) → scalar float tensor requiring grad.
using MicroLoss = std::function<at::Tensor(int64_t step, int64_t micro, std::mt19937_64& rng)>;

/// Runs optimizer steps until total_steps (from a checkpoint's step when resuming). `params` are the
/// trainable tensors (requires_grad), by stable name. `cancelled` is polled before every micro-batch; on
/// cancellation the last completed step is checkpointed (when a path is set) and TrainingCancelled is
/// thrown.
/// @throws std::invalid_argument for bad options; std::runtime_error naming the step when a loss or the
///         gradient norm is not finite (without fp16 loss scaling); TrainingCancelled; c10::Error for a
///         checkpoint of another run.
LoopResult run_train_loop(const std::vector<std::pair<std::string, at::Tensor>>& params,
                          const LoopOptions& options, const MicroLoss& micro_loss,
                          const std::function<void(const StepReport&)>& on_step,
                          const std::function<bool()>& cancelled);

}  // namespace mmesid::train
