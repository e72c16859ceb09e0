// The LSTM cell's step for the time-loop driver (driver.h), forward and backward.
//
// The maths is rnnkit's LSTMCell (src/rnnkit/cells/lstm.py; spec: functional/steps.py lstm_update):
//   a   = N_ih(W_ih x_t) + N_hh(W_hh (h * dropout_mask)) + bias   (summed by the driver; bias = b_ih + b_hh
//         [+ the layer norms' betas]: they are all added after the normalisation)
//   i, f, g, o = sigmoid(a_i), sigmoid(a_f), tanh(a_g), sigmoid(a_o)    (torch's gate order)
//   c_n = f c + i g;  h_n = o tanh(LN_c(c_n))                            (Ba et al. 2016, eq. 20-22)
// Without layer norm LN_c is the identity: (c - 0) * 1 * 1 + 0 = c exactly. Zoneout, lengths and
// dropout are the driver's. Saved per step: the gates, aux = tanh(LN_c(c_n)) and chat = LN(c_n).

#include "driver.h"

namespace {

using namespace rnnkit_loop;

struct LSTM {
  static constexpr int64_t gates = 4, states = 2;
  static constexpr bool split = false;       // the gates read u + v
  static constexpr int64_t scratch = 2;      // rows of H: c_n and o (forward), dL/dc_n twice (backward)
  static constexpr int64_t acc = 2;          // rows of H: dgamma_c, dbeta_c

  template <typename T>
  static void forward(const Problem<T>& p, const Step<T>& s, const T*, const T* a) {
    const int64_t H = p.H;
    const T* bias = p.bias_ih;
    T *cn = s.scratch, *og = cn + H, *gates = s.gates;
    const T* cp = s.cp;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T i = sigmoid(a[j] + bias[j]);
      const T f = sigmoid(a[H + j] + bias[H + j]);
      const T g = tanh_(a[2 * H + j] + bias[2 * H + j]);
      const T o = sigmoid(a[3 * H + j] + bias[3 * H + j]);
      cn[j] = f * cp[j] + i * g;
      og[j] = o;
      gates[j] = i;
      gates[H + j] = f;
      gates[2 * H + j] = g;
      gates[3 * H + j] = o;
    }
    T mean_c = 0, rstd_c = 1;
    if (p.norm_c) {
      const auto st = row_stats(cn, H, p.eps_c);
      mean_c = st.mean, rstd_c = st.rstd;
      *s.rstd_c = rstd_c;
    }
    const T *gc = p.gam_c, *bc = p.bet_c;
    T *tcs = s.aux, *chs = s.chat;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T chat = (cn[j] - mean_c) * rstd_c;
      const T tcv = tanh_(chat * gc[j] + bc[j]);
      s.h(j, og[j] * tcv);
      s.c(j, cn[j]);
      tcs[j] = tcv;
      chs[j] = chat;
    }
  }

  // da: dL/da (G), written for the driver's bias, layer-norm and W_hh gradients
  template <typename T>
  static void backward(const Problem<T>& p, const Back<T>& s, T* da, T*) {
    const int64_t H = p.H;
    T *dcout = s.scratch, *dcn = dcout + H;
    const T *gt = s.gates, *tcs = s.aux;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T dhn = s.dh(j);
      const T o = gt[3 * H + j], tcv = tcs[j];
      da[3 * H + j] = dhn * tcv * o * (T(1) - o);
      dcout[j] = dhn * o * (T(1) - tcv * tcv);
    }
    if (p.norm_c) {
      add_product_to(s.acc, dcout, s.chat, H);  // dgamma_c
      add_to(s.acc + H, dcout, H);              // dbeta_c
      norm_backward(dcout, p.gam_c, s.chat, s.rstd_c, H, dcn);
    } else {
      std::copy(dcout, dcout + H, dcn);
    }
    const T* cp = s.cp;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T d = s.dc_n(j, dcn[j]);
      const T i = gt[j], f = gt[H + j], gg = gt[2 * H + j];
      da[j] = d * gg * i * (T(1) - i);
      da[H + j] = d * cp[j] * f * (T(1) - f);
      da[2 * H + j] = d * i * (T(1) - gg * gg);
      s.dc_prev(j, d, f);
    }
  }
};

}  // namespace

RNNKIT_EXPORT_LOOP(lstm, LSTM)
RNNKIT_EXPORT_LIBRARY
