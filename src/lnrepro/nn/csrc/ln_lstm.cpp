// The LN-LSTM recurrence (supplementary Eq. 20-22 of Ba, Kiros & Hinton 2016) over a whole
// sequence, and with its norms off the plain LSTM: the time loops of lnrepro.nn.fused_lstm,
// forward and hand-written backward.
//
// Per step the recurrent product is one GEMM (ATen); everything else of the step (LN over the
// 4H gate units, the gate nonlinearities, the cell update, LN over c_t, tanh, the output gate)
// is one pass over each case's row, and likewise the backward of the step. Gate order
// [i; f; g; o] as torch.nn.LSTM. Shapes: T steps, B cases, H units, N = 4H.
//
//   gates_t = (xin_t + b1) + b2 + g_hh * n_hh(h_{t-1} W_hh^T)   n(a) = (a - mean a) / sqrt(var a + eps)
//   c_t     = sig(f) c_{t-1} + sig(i) tanh(g)                     (biased variance, per case)
//   h_t     = sig(o) tanh(g_c * n_c(c_t) + b_c)
//
// center = false: RMSNorm (Zhang & Sennrich 2019) in both places, n(a) = a / sqrt(mean a^2 + eps).
//
// norm = false (the plain LSTM): gates_t = (xin_t + b1) + h_{t-1} W_hh^T, h_t = sig(o) tanh(c_t).
// b1, b2 (4H, optional): the caller's biases, added in the row pass as the separate tensor adds
// would round them.
//
// Saved for the backward: NH = n_hh(a_t), S = [sig i, sig f, tanh g, sig o], C = [c0, c_0 ..],
// NC = n_c(c_t), TC = tanh(LN_c(c_t)) (tanh(c_t) without norms), RH / RC the inverse standard
// deviations (T, B); NH, NC, RH, RC empty without norms. The backward returns dX = dL/dgates_t,
// dA = dL/da_t (a_t = h_{t-1} W_hh^T; dX itself without norms), dYc = dL/dLN_c(c_t) and dc =
// dL/dc_0 (so dL/dc0 = dc sig f_0); the weight, bias and gain gradients are single batched
// reductions over these in Python (lnrepro.nn.fused_lstm).
//
// Float math: exp by the Cephes polynomial (2 ulp), written so that the row loops vectorize
// without -ffast-math; double uses std::exp / std::tanh. NaN propagates.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <tuple>

namespace {

inline float exp_(float x) {
  // Cephes expf: e^x = 2^z e^r, z = round(x log2 e), |r| <= ln2 / 2, r in two parts
  x = x < -87.3f ? -87.3f : x;  // comparisons keep NaN
  x = x > 88.3f ? 88.3f : x;
  const float z = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = x - z * 0.693359375f + z * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(z) + 127) << 23;
  return p * std::bit_cast<float>(bits);
}
inline double exp_(double x) { return std::exp(x); }

inline float tanh_(float x) {
  // Cephes tanhf: an odd polynomial below 0.625, 1 - 2 / (e^{2|x|} + 1) above
  const float ax = std::fabs(x);
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * x + x;
  float big = 1.0f - 2.0f / (exp_(ax + ax) + 1.0f);
  big = x < 0.0f ? -big : big;
  return ax < 0.625f ? small : big;
}
inline double tanh_(double x) { return std::tanh(x); }

template <typename T>
inline T sigmoid_(T x) {
  return T(1) / (T(1) + exp_(-x));
}

// mean and 1 / sqrt(biased var + eps) of a row, two passes; center false (RMSNorm): mean 0
// and 1 / sqrt(mean of squares + eps)
template <typename T>
inline void row_stats(const T* a, int64_t n, double eps, bool center, T& mean, T& rstd) {
  if (!center) {
    T v = 0;
#pragma omp simd reduction(+ : v)
    for (int64_t j = 0; j < n; ++j) v += a[j] * a[j];
    mean = 0;
    rstd = T(1) / std::sqrt(v / T(n) + T(eps));
    return;
  }
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) s += a[j];
  const T m = s / T(n);
  T v = 0;
#pragma omp simd reduction(+ : v)
  for (int64_t j = 0; j < n; ++j) v += (a[j] - m) * (a[j] - m);
  mean = m;
  rstd = T(1) / std::sqrt(v / T(n) + T(eps));
}

// LN backward of a row: rstd * (g dy - mean(g dy) - n * mean(g dy n)); center false
// (RMSNorm, no mean subtracted): rstd * (g dy - n * mean(g dy n))
template <typename T>
inline void row_ln_backward(const T* dy, const T* n, const T* g, T rstd, int64_t len, bool center,
                            T* out) {
  T m1 = 0, m2 = 0;
#pragma omp simd reduction(+ : m1, m2)
  for (int64_t j = 0; j < len; ++j) {
    const T gdy = g[j] * dy[j];
    m1 += gdy;
    m2 += gdy * n[j];
  }
  m1 = center ? m1 / T(len) : T(0);
  m2 /= T(len);
#pragma omp simd
  for (int64_t j = 0; j < len; ++j) out[j] = rstd * (g[j] * dy[j] - m1 - n[j] * m2);
}

// x W^T for a weight W given twice: `packed`, oneDNN's blocked copy of W
// (torch.ops.mkldnn._reorder_linear_weight, as torch.nn.LSTM's CPU kernel uses oneDNN), or
// undefined where oneDNN is absent, and `w_t` = W^T for at::mm.
at::Tensor linear_(const at::Tensor& x, const std::optional<at::Tensor>& packed,
                   const at::Tensor& w_t) {
  if (!packed.has_value()) return at::mm(x, w_t);
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_linear_pointwise", "");
  std::vector<c10::IValue> stack{x,
                                 *packed,
                                 c10::IValue(),
                                 c10::IValue(std::string("none")),
                                 c10::IValue(c10::List<std::optional<at::Scalar>>()),
                                 c10::IValue()};
  op.callBoxed(&stack);
  return stack[0].toTensor();
}

// the input term of a row with the caller's biases, ((x + b1) + b2) as the separate tensor adds
// would round it, written to `out`; x itself where there are none
template <typename T>
inline const T* add_biases(const T* x, const T* b1, const T* b2, int64_t n, T* out) {
  if (b1 == nullptr) return x;
  if (b2 == nullptr) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) out[j] = x[j] + b1[j];
  } else {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) out[j] = (x[j] + b1[j]) + b2[j];
  }
  return out;
}

int64_t grain(int64_t row) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(row, 1)); }

template <typename T>
void forward_steps(const at::Tensor& xin, const std::optional<at::Tensor>& packed,
                   const at::Tensor& w_t, const T* g_hh, const T* g_c, const T* b_c,
                   const T* bias1, const T* bias2, const at::Tensor& h0, double eps, bool center,
                   at::Tensor& hs,
                   at::Tensor& NH,
                   at::Tensor& S, at::Tensor& C, at::Tensor& NC, at::Tensor& TC, at::Tensor& RH,
                   at::Tensor& RC) {
  const bool norm = g_hh != nullptr;  // off: the plain LSTM, no LN_hh, no LN_c
  const int64_t steps = xin.size(0), B = xin.size(1), N = xin.size(2), H = N / 4;
  for (int64_t t = 0; t < steps; ++t) {
    const auto A = linear_(t == 0 ? h0 : hs[t - 1], packed, w_t);  // a_t = h_{t-1} W_hh^T
    const T* a_ = A.data_ptr<T>();
    const T* x_ = xin.data_ptr<T>() + t * B * N;
    T* s_ = S.data_ptr<T>() + t * B * N;
    const T* cp_ = C.data_ptr<T>() + t * B * H;
    T* cn_ = C.data_ptr<T>() + (t + 1) * B * H;
    T* tc_ = TC.data_ptr<T>() + t * B * H;
    T* h_ = hs.data_ptr<T>() + t * B * H;
    if (!norm) {  // gates = xin + a, h = sig(o) tanh(c)
      at::parallel_for(0, B, grain(N), [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const T* a = a_ + b * N;
          T* s = s_ + b * N;
          const T* x = add_biases(x_ + b * N, bias1, bias2, N, s);
#pragma omp simd
          for (int64_t j = 0; j < 2 * H; ++j) s[j] = sigmoid_(x[j] + a[j]);
#pragma omp simd
          for (int64_t j = 2 * H; j < 3 * H; ++j) s[j] = tanh_(x[j] + a[j]);
#pragma omp simd
          for (int64_t j = 3 * H; j < N; ++j) s[j] = sigmoid_(x[j] + a[j]);
          const T* cp = cp_ + b * H;
          T* cn = cn_ + b * H;
          T* tc = tc_ + b * H;
          T* h = h_ + b * H;
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) {
            const T c = s[H + j] * cp[j] + s[j] * s[2 * H + j];
            const T y = tanh_(c);
            cn[j] = c;
            tc[j] = y;
            h[j] = s[3 * H + j] * y;
          }
        }
      });
      continue;
    }
    T* nh_ = NH.data_ptr<T>() + t * B * N;
    T* nc_ = NC.data_ptr<T>() + t * B * H;
    T* rh_ = RH.data_ptr<T>() + t * B;
    T* rc_ = RC.data_ptr<T>() + t * B;
    at::parallel_for(0, B, grain(N), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const T* a = a_ + b * N;
        T* nh = nh_ + b * N;
        T* s = s_ + b * N;
        const T* x = add_biases(x_ + b * N, bias1, bias2, N, s);
        T mean, rstd;
        row_stats(a, N, eps, center, mean, rstd);
        rh_[b] = rstd;
#pragma omp simd
        for (int64_t j = 0; j < N; ++j) {
          const T n = (a[j] - mean) * rstd;
          nh[j] = n;
          s[j] = g_hh[j] * n + x[j];  // the gates' pre-activations, activated below
        }
#pragma omp simd
        for (int64_t j = 0; j < 2 * H; ++j) s[j] = sigmoid_(s[j]);
#pragma omp simd
        for (int64_t j = 2 * H; j < 3 * H; ++j) s[j] = tanh_(s[j]);
#pragma omp simd
        for (int64_t j = 3 * H; j < N; ++j) s[j] = sigmoid_(s[j]);
        const T* cp = cp_ + b * H;
        T* cn = cn_ + b * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) cn[j] = s[H + j] * cp[j] + s[j] * s[2 * H + j];
        row_stats(cn, H, eps, center, mean, rstd);
        rc_[b] = rstd;
        T* nc = nc_ + b * H;
        T* tc = tc_ + b * H;
        T* h = h_ + b * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const T n = (cn[j] - mean) * rstd;
          nc[j] = n;
          const T y = tanh_(g_c[j] * n + b_c[j]);
          tc[j] = y;
          h[j] = s[3 * H + j] * y;
        }
      }
    });
  }
}

template <typename T>
void backward_steps(const at::Tensor& g_hs, const at::Tensor& g_cT,
                    const std::optional<at::Tensor>& packed_t, const at::Tensor& w,
                    const T* g_hh, const T* g_c, const at::Tensor& NH, const at::Tensor& S,
                    const at::Tensor& C, const at::Tensor& NC, const at::Tensor& TC,
                    const at::Tensor& RH, const at::Tensor& RC, bool center, at::Tensor& dX,
                    at::Tensor& dA, at::Tensor& dYc, at::Tensor& dc) {
  const bool norm = g_hh != nullptr;  // off: the plain LSTM, dA = dX
  const int64_t steps = S.size(0), B = S.size(1), N = S.size(2), H = N / 4;
  dc.copy_(g_cT);
  for (int64_t t = steps - 1; t >= 0; --t) {
    // dL/dh_t = the output's gradient + the recurrent term dA_{t+1} W_hh
    const auto rec = t + 1 < steps ? linear_(dA[t + 1], packed_t, w) : at::Tensor();
    const T* g_ = g_hs.data_ptr<T>() + t * B * H;
    const T* rec_ = rec.defined() ? rec.data_ptr<T>() : nullptr;
    const T* s_ = S.data_ptr<T>() + t * B * N;
    const T* sn_ = t + 1 < steps ? s_ + B * N : nullptr;  // sig f_{t+1}
    const T* cp_ = C.data_ptr<T>() + t * B * H;
    const T* tc_ = TC.data_ptr<T>() + t * B * H;
    T* dx_ = dX.data_ptr<T>() + t * B * N;
    T* dc_ = dc.data_ptr<T>();
    if (!norm) {  // dc_t = dh_t sig(o) tanh'(c_t) + dc_{t+1} sig f_{t+1}; dA_t = dX_t
      at::parallel_for(0, B, grain(N), [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const T* gb = g_ + b * H;
          const T* rb = rec_ != nullptr ? rec_ + b * H : nullptr;
          const T* s = s_ + b * N;
          const T* sf = sn_ != nullptr ? sn_ + b * N + H : nullptr;
          const T* tc = tc_ + b * H;
          const T* cp = cp_ + b * H;
          T* dx = dx_ + b * N;
          T* dcb = dc_ + b * H;
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) {
            const T si = s[j], sfj = s[H + j], sg = s[2 * H + j], so = s[3 * H + j], y = tc[j];
            const T dh = rb != nullptr ? gb[j] + rb[j] : gb[j];
            const T carry = sf != nullptr ? dcb[j] * sf[j] : dcb[j];  // dcb holds g_cT at T
            const T d = dh * so * (T(1) - y * y) + carry;
            dcb[j] = d;
            dx[j] = d * sg * si * (T(1) - si);          // i
            dx[H + j] = d * cp[j] * sfj * (T(1) - sfj);  // f
            dx[2 * H + j] = d * si * (T(1) - sg * sg);  // g
            dx[3 * H + j] = dh * y * so * (T(1) - so);  // o
          }
        }
      });
      continue;
    }
    const T* nh_ = NH.data_ptr<T>() + t * B * N;
    const T* nc_ = NC.data_ptr<T>() + t * B * H;
    const T* rh_ = RH.data_ptr<T>() + t * B;
    const T* rc_ = RC.data_ptr<T>() + t * B;
    T* da_ = dA.data_ptr<T>() + t * B * N;
    T* dyc_ = dYc.data_ptr<T>() + t * B * H;
    at::parallel_for(0, B, grain(N), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const T* gb = g_ + b * H;
        const T* rb = rec_ != nullptr ? rec_ + b * H : nullptr;
        const T* s = s_ + b * N;
        const T* tc = tc_ + b * H;
        T* dx = dx_ + b * N;
        T* dyc = dyc_ + b * H;
        T* dcb = dc_ + b * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const T so = s[3 * H + j], y = tc[j];
          const T dh = rb != nullptr ? gb[j] + rb[j] : gb[j];
          dyc[j] = dh * so * (T(1) - y * y);          // through tanh, into LN_c's output
          dx[3 * H + j] = dh * y * so * (T(1) - so);  // o
        }
        // dc_t = LN_c'(dyc) + dc_{t+1} sig f_{t+1}: LN_c' into the dc row, then the carry
        T* tmp = dx;  // i block, overwritten below: LN_c' of the row
        row_ln_backward(dyc, nc_ + b * H, g_c, rc_[b], H, center, tmp);
        if (sn_ != nullptr) {
          const T* sf = sn_ + b * N + H;
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) dcb[j] = tmp[j] + dcb[j] * sf[j];
        } else {
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) dcb[j] = tmp[j] + dcb[j];  // dcb holds g_cT
        }
        const T* cp = cp_ + b * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const T si = s[j], sf = s[H + j], sg = s[2 * H + j], d = dcb[j];
          dx[j] = d * sg * si * (T(1) - si);          // i
          dx[H + j] = d * cp[j] * sf * (T(1) - sf);   // f
          dx[2 * H + j] = d * si * (T(1) - sg * sg);  // g
        }
        row_ln_backward(dx, nh_ + b * N, g_hh, rh_[b], N, center, da_ + b * N);
      }
    });
  }
}

void check(const at::Tensor& v, const at::Tensor& like, const char* name) {
  TORCH_CHECK(v.is_contiguous(), "ln_lstm: ", name, " must be contiguous");
  TORCH_CHECK(v.scalar_type() == like.scalar_type(), "ln_lstm: ", name, " has another dtype");
  TORCH_CHECK(v.device().is_cpu(), "ln_lstm: ", name, " must be on the CPU");
}

template <typename T>
const T* ptr_if(bool norm, const at::Tensor& v) {
  return norm ? v.data_ptr<T>() : nullptr;
}

// norm false: the plain LSTM (gates = xin + h W_hh^T, h = sig(o) tanh(c)); the gains are then
// unused (pass empty tensors) and NH, NC, RH, RC, dYc come back empty, dA is dX.
std::vector<at::Tensor> ln_lstm_forward(const at::Tensor& xin, const at::Tensor& weight_hh,
                                        const std::optional<at::Tensor>& packed,
                                        const at::Tensor& gain_hh, const at::Tensor& gain_c,
                                        const at::Tensor& bias_c, const at::Tensor& h0,
                                        const at::Tensor& c0, double eps, bool norm,
                                        const std::optional<at::Tensor>& bias,
                                        const std::optional<at::Tensor>& bias_hh, bool center) {
  TORCH_CHECK(xin.dim() == 3 && xin.size(2) % 4 == 0, "ln_lstm: xin must be (T, B, 4H)");
  for (auto* p : {&xin, &weight_hh, &h0, &c0}) check(*p, xin, "input");
  if (norm)
    for (auto* p : {&gain_hh, &gain_c, &bias_c}) check(*p, xin, "input");
  TORCH_CHECK(bias.has_value() || !bias_hh.has_value(), "ln_lstm: bias_hh without bias");
  for (const auto* p : {&bias, &bias_hh})
    if (p->has_value()) {
      check(**p, xin, "bias");
      TORCH_CHECK((*p)->numel() == xin.size(2), "ln_lstm: a bias must have 4H elements");
    }
  const int64_t steps = xin.size(0), B = xin.size(1), N = xin.size(2), H = N / 4;
  const int64_t k = norm ? 1 : 0;  // the LN intermediates: none without the norms
  auto hs = at::empty({steps, B, H}, xin.options());
  auto NH = at::empty({k * steps, B, N}, xin.options());
  auto S = at::empty({steps, B, N}, xin.options());
  auto C = at::empty({steps + 1, B, H}, xin.options());
  auto NC = at::empty({k * steps, B, H}, xin.options());
  auto TC = at::empty({steps, B, H}, xin.options());
  auto RH = at::empty({k * steps, B}, xin.options());
  auto RC = at::empty({k * steps, B}, xin.options());
  C[0].copy_(c0);
  const auto w_t = weight_hh.t();
  AT_DISPATCH_FLOATING_TYPES(xin.scalar_type(), "ln_lstm_forward", [&] {
    forward_steps<scalar_t>(xin, packed, w_t, ptr_if<scalar_t>(norm, gain_hh),
                            ptr_if<scalar_t>(norm, gain_c), ptr_if<scalar_t>(norm, bias_c),
                            ptr_if<scalar_t>(bias.has_value(), bias.value_or(at::Tensor())),
                            ptr_if<scalar_t>(bias_hh.has_value(), bias_hh.value_or(at::Tensor())),
                            h0, eps, center, hs, NH, S, C, NC, TC, RH, RC);
  });
  return {hs, NH, S, C, NC, TC, RH, RC};
}

std::vector<at::Tensor> ln_lstm_backward(const at::Tensor& g_hs, const at::Tensor& g_cT,
                                         const at::Tensor& weight_hh,
                                         const std::optional<at::Tensor>& packed_t,
                                         const at::Tensor& gain_hh, const at::Tensor& gain_c,
                                         const at::Tensor& NH, const at::Tensor& S,
                                         const at::Tensor& C, const at::Tensor& NC,
                                         const at::Tensor& TC, const at::Tensor& RH,
                                         const at::Tensor& RC, bool norm, bool center) {
  for (auto* p : {&g_hs, &g_cT, &weight_hh, &S, &C, &TC}) check(*p, S, "tensor");
  if (norm)
    for (auto* p : {&gain_hh, &gain_c, &NH, &NC, &RH, &RC}) check(*p, S, "tensor");
  auto dX = at::empty_like(S);
  auto dA = norm ? at::empty_like(S) : dX;
  auto dYc = norm ? at::empty_like(TC) : at::empty({0}, TC.options());
  auto dc = at::empty_like(g_cT);
  AT_DISPATCH_FLOATING_TYPES(S.scalar_type(), "ln_lstm_backward", [&] {
    backward_steps<scalar_t>(g_hs, g_cT, packed_t, weight_hh, ptr_if<scalar_t>(norm, gain_hh),
                             ptr_if<scalar_t>(norm, gain_c), NH, S, C, NC, TC, RH, RC, center, dX,
                             dA, dYc, dc);
  });
  return {dX, dA, dYc, dc};
}

}  // namespace

TORCH_LIBRARY(lnrepro, m) {
  m.def("ln_lstm_forward(Tensor xin, Tensor weight_hh, Tensor? packed, Tensor gain_hh, "
        "Tensor gain_c, Tensor bias_c, Tensor h0, Tensor c0, float eps, bool norm, Tensor? bias, "
        "Tensor? bias_hh, bool center) -> Tensor[]");
  m.def("ln_lstm_backward(Tensor g_hs, Tensor g_cT, Tensor weight_hh, Tensor? packed_t, "
        "Tensor gain_hh, Tensor gain_c, Tensor NH, Tensor S, Tensor C, Tensor NC, Tensor TC, "
        "Tensor RH, Tensor RC, bool norm, bool center) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(lnrepro, CompositeExplicitAutograd, m) {
  m.impl("ln_lstm_forward", &ln_lstm_forward);
  m.impl("ln_lstm_backward", &ln_lstm_backward);
}
