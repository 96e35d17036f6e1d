#include "composites.h"

#include <torch/torch.h>

#include <cstring>

namespace mmesid::torch_bench {
namespace {

torch::Tensor view(const float* data, at::IntArrayRef shape) {
  return torch::from_blob(const_cast<float*>(data), shape, torch::kFloat);
}

void copy_to(const torch::Tensor& t, float* out) {
  const torch::Tensor c = t.contiguous();
  std::memcpy(out, c.data_ptr<float>(), static_cast<size_t>(c.numel()) * sizeof(float));
}

}  // namespace

void rq_greedy(const float* x, const float* codebooks, int64_t n, int64_t dim, int64_t levels, int64_t size,
               int32_t* codes) {
  torch::NoGradGuard no_grad;
  torch::Tensor residual = view(x, {n, dim}).clone();
  const torch::Tensor books = view(codebooks, {levels, size, dim});
  std::vector<torch::Tensor> chosen;
  for (int64_t l = 0; l < levels; ++l) {
    const torch::Tensor c = books[l];
    const torch::Tensor dist =
        residual.pow(2).sum(1, true) - 2 * residual.matmul(c.t()) + c.pow(2).sum(1).unsqueeze(0);
    const torch::Tensor idx = dist.argmin(1);
    residual -= c.index_select(0, idx);
    chosen.push_back(idx);
  }
  const torch::Tensor all = torch::stack(chosen, 1).to(torch::kInt32).contiguous();
  std::memcpy(codes, all.data_ptr<int32_t>(), static_cast<size_t>(all.numel()) * sizeof(int32_t));
}

double mmd_forward_backward(const float* x, const float* y, int64_t n, int64_t dim,
                            const std::vector<double>& alphas, float* grad_x, float* grad_y) {
  torch::Tensor tx = view(x, {n, dim}).detach().requires_grad_(true);
  torch::Tensor ty = view(y, {n, dim}).detach().requires_grad_(true);
  const torch::Tensor z = torch::cat({tx, ty}, 0);
  const torch::Tensor sq = z.pow(2).sum(1);
  const torch::Tensor d2 = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * z.matmul(z.t())).clamp_min(0);
  const torch::Tensor mean = d2.detach().mean();
  torch::Tensor k = torch::zeros_like(d2);
  for (double a : alphas) k = k + torch::exp(-d2 / (2 * a * mean));
  // Index matrix of the unbiased estimator: 1/(n(n−1)) within sets off the diagonal, −1/n² across.
  torch::Tensor w = torch::full({2 * n, 2 * n}, 1.0 / (n * (n - 1.0)));
  w.slice(0, 0, n).slice(1, n, 2 * n).fill_(-1.0 / (n * n));
  w.slice(0, n, 2 * n).slice(1, 0, n).fill_(-1.0 / (n * n));
  w.fill_diagonal_(0);
  const torch::Tensor loss = (k * w).sum() + 2.0 / (n - 1);
  loss.backward();
  copy_to(tx.grad(), grad_x);
  copy_to(ty.grad(), grad_y);
  return loss.item<double>();
}

double info_nce_forward_backward(const float* a, const float* b, int64_t n, int64_t dim, double temperature,
                                 bool symmetric, float* grad_a, float* grad_b) {
  namespace F = torch::nn::functional;
  torch::Tensor ta = view(a, {n, dim}).detach().requires_grad_(true);
  torch::Tensor tb = view(b, {n, dim}).detach().requires_grad_(true);
  const torch::Tensor logits = F::normalize(ta, F::NormalizeFuncOptions().dim(1))
                                   .matmul(F::normalize(tb, F::NormalizeFuncOptions().dim(1)).t()) /
                               temperature;
  const torch::Tensor labels = torch::arange(n, torch::kLong);
  torch::Tensor loss = F::cross_entropy(logits, labels);
  if (symmetric) loss = 0.5 * (loss + F::cross_entropy(logits.t(), labels));
  loss.backward();
  copy_to(ta.grad(), grad_a);
  copy_to(tb.grad(), grad_b);
  return loss.item<double>();
}

void linear_forward_backward(const float* x, const float* weight, const float* grad_y, int64_t rows,
                             int64_t in_dim, int64_t out_dim, float* grad_x) {
  torch::Tensor tx = view(x, {rows, in_dim}).detach().requires_grad_(true);
  const torch::Tensor y = torch::nn::functional::linear(tx, view(weight, {out_dim, in_dim}));
  y.backward(view(grad_y, {rows, out_dim}));
  copy_to(tx.grad(), grad_x);
}

void lora_forward_backward(const float* x, const float* weight, const float* lora_a, const float* lora_b,
                           const float* grad_y, int64_t rows, int64_t in_dim, int64_t out_dim, int64_t rank,
                           double scale, float* grad_x, float* grad_a, float* grad_b) {
  namespace F = torch::nn::functional;
  torch::Tensor tx = view(x, {rows, in_dim}).detach().requires_grad_(true);
  torch::Tensor ta = view(lora_a, {rank, in_dim}).detach().requires_grad_(true);
  torch::Tensor tb = view(lora_b, {out_dim, rank}).detach().requires_grad_(true);
  const torch::Tensor y =
      F::linear(tx, view(weight, {out_dim, in_dim})) + scale * F::linear(F::linear(tx, ta), tb);
  y.backward(view(grad_y, {rows, out_dim}));
  copy_to(tx.grad(), grad_x);
  copy_to(ta.grad(), grad_a);
  copy_to(tb.grad(), grad_b);
}

}  // namespace mmesid::torch_bench
