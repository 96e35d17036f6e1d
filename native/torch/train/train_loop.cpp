#include "train_loop.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Dict.h>
#include <c10/core/GradMode.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "torch/train/cancelled.h"

namespace mmesid::train {
namespace {

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::vector<at::Tensor> tensors_of(const std::vector<std::pair<std::string, at::Tensor>>& params) {
  std::vector<at::Tensor> out;
  for (const auto& [_, p] : params) out.push_back(p);
  return out;
}

}  // namespace

EpochOrder::EpochOrder(int64_t count, int64_t batch, uint64_t seed)
    : count_(count), batch_(batch), per_epoch_((count + batch - 1) / batch), seed_(seed) {
  if (count < 1 || batch < 1)
    throw std::invalid_argument("train: the data order needs count >= 1 and batch >= 1");
}

std::vector<int64_t> EpochOrder::micro_batch(int64_t g) {
  const int64_t epoch = g / per_epoch_, slice = g % per_epoch_;
  if (epoch != cached_epoch_) {
    order_.resize(static_cast<size_t>(count_));
    std::iota(order_.begin(), order_.end(), 0);
    std::mt19937_64 shuffle(seed_ + static_cast<uint64_t>(epoch));
    std::shuffle(order_.begin(), order_.end(), shuffle);
    cached_epoch_ = epoch;
  }
  const int64_t first = slice * batch_, n = std::min(batch_, count_ - first);
  return std::vector<int64_t>(order_.begin() + first, order_.begin() + first + n);
}

double lr_multiplier(const ScheduleConfig& schedule, int64_t step, int64_t total_steps) {
  const int64_t warmup = schedule.warmup_steps;
  if (step < warmup) return static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup));
  switch (schedule.type) {
    case LrSchedule::Constant:
      return 1.0;
    case LrSchedule::Linear:
      return std::max(0.0, static_cast<double>(total_steps - step) /
                               static_cast<double>(std::max<int64_t>(1, total_steps - warmup)));
    case LrSchedule::Cosine: {
      const double progress = static_cast<double>(step - warmup) /
                              static_cast<double>(std::max<int64_t>(1, total_steps - warmup));
      return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * 2.0 * 0.5 * progress)));
    }
  }
  return 1.0;
}

double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm) {
  double total = 0.0;
  for (const at::Tensor& p : params) {
    if (!p.grad().defined()) continue;
    const double n = p.grad().to(at::kDouble).norm().item<double>();
    total += n * n;
  }
  total = std::sqrt(total);
  if (max_norm > 0.0 && std::isfinite(total)) {
    const double coef = max_norm / (total + 1e-6);
    if (coef < 1.0) {
      for (const at::Tensor& p : params)
        if (p.grad().defined()) p.mutable_grad().mul_(coef);
    }
  }
  return total;
}

bool LossScaler::unscale(const std::vector<at::Tensor>& params) const {
  bool finite = true;
  for (const at::Tensor& p : params) {
    if (!p.grad().defined()) continue;
    p.mutable_grad().div_(scale);
    finite = finite && p.grad().isfinite().all().item<bool>();
  }
  return finite;
}

void LossScaler::update(bool finite) {
  if (!finite) {
    scale *= kBackoff;
    clean_steps = 0;
  } else if (++clean_steps >= kInterval) {
    scale *= kGrowth;
    clean_steps = 0;
  }
}

LoopResult run_train_loop(const std::vector<std::pair<std::string, at::Tensor>>& params, const LoopOptions& o,
                          const MicroLoss& micro_loss, const std::function<void(const StepReport&)>& on_step,
                          const std::function<bool()>& cancelled) {
  if (o.total_steps < 1) throw std::invalid_argument("train: total_steps must be >= 1");
  if (o.accumulation_steps < 1) throw std::invalid_argument("train: accumulation_steps must be >= 1");
  if (o.schedule.warmup_steps < 0) throw std::invalid_argument("train: warmup_steps must be >= 0");
  if (!(o.adam.lr > 0.0) || !std::isfinite(o.adam.lr))
    throw std::invalid_argument("train: lr must be positive");
  if (params.empty()) throw std::invalid_argument("train: nothing to train (no parameters)");

  const std::vector<at::Tensor> tensors = tensors_of(params);
  AdamW adam(params, o.adam);
  std::mt19937_64 rng(o.seed);
  LossScaler scaler;
  scaler.enabled = o.fp16_loss_scaling;
  int64_t step = 0;
  LoopResult result;

  LoadedCheckpoint loaded;
  if (o.resume && !o.checkpoint_path.empty() && loaded.open(o.checkpoint_path, o.kind, o.fingerprint)) {
    loaded.restore(params, adam, rng);
    step = loaded.get("step").toInt();
    scaler.scale = loaded.get("loss_scale").toDouble();
    scaler.clean_steps = loaded.get("loss_scale_clean_steps").toInt();
    result.resumed_from = step;
  } else {
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_current_seed(o.seed);
  }

  auto save = [&]() {
    if (o.checkpoint_path.empty()) return;
    c10::impl::GenericDict dict = checkpoint_dict(o.kind, o.fingerprint, params, {}, adam, rng);
    dict.insert("step", step);
    dict.insert("loss_scale", scaler.scale);
    dict.insert("loss_scale_clean_steps", scaler.clean_steps);
    write_checkpoint(dict, o.checkpoint_path, o.kind);
  };

  at::Generator gen = at::detail::getDefaultCPUGenerator();
  auto generator_state = [&gen]() {
    std::lock_guard<std::mutex> lock(gen.mutex());
    return gen.get_state();
  };
  const int64_t stop = o.stop_at > 0 ? std::min(o.stop_at, o.total_steps) : o.total_steps;
  while (step < stop) {
    const auto started = std::chrono::steady_clock::now();
    // A cancellation between micro-batches checkpoints the state at the start of this step: the
    // parameters have not moved yet, but the generators have (dropout, the caller's draws).
    const at::Tensor step_generator = generator_state();
    const std::mt19937_64 step_rng = rng;
    adam.zero_grad();
    double loss_sum = 0.0;
    for (int64_t micro = 0; micro < o.accumulation_steps; ++micro) {
      if (cancelled && cancelled()) {
        {
          std::lock_guard<std::mutex> lock(gen.mutex());
          gen.set_state(step_generator);
        }
        rng = step_rng;
        save();
        throw TrainingCancelled(o.kind.what + " training was cancelled after step " + std::to_string(step));
      }
      const at::Tensor loss = micro_loss(step, micro, rng);
      const double value = loss.item<double>();
      if (!std::isfinite(value) && !scaler.enabled)
        throw std::runtime_error(o.kind.what + ": the loss is not finite at step " +
                                 std::to_string(step + 1) + " (micro-batch " + std::to_string(micro) +
                                 "); lower the learning rate or check the data");
      loss_sum += value;
      at::Tensor scaled = loss / static_cast<double>(o.accumulation_steps);
      if (scaler.enabled) scaled = scaled * scaler.scale;
      scaled.backward();
    }
    StepReport report;
    report.total_steps = o.total_steps;
    report.loss = loss_sum / static_cast<double>(o.accumulation_steps);
    bool finite = true;
    if (scaler.enabled) finite = scaler.unscale(tensors);
    report.grad_norm = finite ? clip_grad_norm(tensors, o.max_grad_norm) : std::nan("");
    if (finite && !std::isfinite(report.grad_norm)) {
      if (!scaler.enabled)
        throw std::runtime_error(o.kind.what + ": the gradient norm is not finite at step " +
                                 std::to_string(step + 1));
      finite = false;
    }
    report.lr = o.adam.lr * lr_multiplier(o.schedule, step, o.total_steps);
    if (finite) {
      adam.set_lr(report.lr);
      adam.step();
    }
    report.skipped = !finite;
    if (scaler.enabled) scaler.update(finite);
    ++step;
    report.step = step;
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    result.losses.push_back(report.loss);
    if (o.checkpoint_every > 0 && step % o.checkpoint_every == 0 && step < stop) save();
    if (on_step) on_step(report);
  }
  adam.zero_grad();
  save();
  result.steps = step;
  return result;
}

}  // namespace mmesid::train
