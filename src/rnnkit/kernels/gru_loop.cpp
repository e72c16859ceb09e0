// The GRU cell's step for the time-loop driver (driver.h), forward and backward.
//
// The maths is rnnkit's GRUCell (src/rnnkit/cells/gru.py; spec: functional/steps.py gru_update):
//   u' = u + b_ih,  v' = v + b_hh         (u = N_ih(W_ih x_t), v = N_hh(W_hh (h * dropout_mask)): the driver's)
//   r = sigmoid(u'_r + v'_r);  z = sigmoid(u'_z + v'_z);  n = tanh(u'_n + r v'_n)  (torch's gate order r, z, n)
//   h_n = n + z (h - n)                                                 (Cho et al. 2014, torch's form)
// The reset gate multiplies v'_n, the hidden projection with its bias b_hn, as torch and cuDNN do; so
// u and v and the two biases stay apart (a layer norm's beta is folded into the bias beside it by the
// caller). Zoneout, lengths and dropout are the driver's. Saved per step: the gates and aux = v'_n.

#include "driver.h"

namespace {

using namespace rnnkit_loop;

struct GRU {
  static constexpr int64_t gates = 3, states = 1;
  static constexpr bool split = true;  // the reset gate multiplies v_n alone
  static constexpr int64_t scratch = 0, acc = 0;

  template <typename T>
  static void forward(const Problem<T>& p, const Step<T>& s, const T* u, const T* v) {
    const int64_t H = p.H;
    const T *bi = p.bias_ih, *bh = p.bias_hh, *hp = s.hp;
    T *gates = s.gates, *ghn = s.aux;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T r = sigmoid((u[j] + bi[j]) + (v[j] + bh[j]));
      const T z = sigmoid((u[H + j] + bi[H + j]) + (v[H + j] + bh[H + j]));
      const T vn = v[2 * H + j] + bh[2 * H + j];
      const T n = tanh_((u[2 * H + j] + bi[2 * H + j]) + r * vn);
      s.h(j, n + z * (hp[j] - n));
      gates[j] = r;
      gates[H + j] = z;
      gates[2 * H + j] = n;
      ghn[j] = vn;
    }
  }

  // du, dv: dL/du' and dL/dv' (G each), written for the driver's bias, layer-norm and W_hh gradients
  template <typename T>
  static void backward(const Problem<T>& p, const Back<T>& s, T* du, T* dv) {
    const int64_t H = p.H;
    const T *gt = s.gates, *vn = s.aux, *hp = s.hp;
    T* dhc = s.dhc;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T dhn = s.dh(j);
      const T r = gt[j], z = gt[H + j], n = gt[2 * H + j];
      const T dan = dhn * (T(1) - z) * (T(1) - n * n);  // dL/d(u'_n + r v'_n)
      const T dar = dan * vn[j] * r * (T(1) - r);
      const T daz = dhn * (hp[j] - n) * z * (T(1) - z);
      dhc[j] += dhn * z;
      du[j] = dar;
      du[H + j] = daz;
      du[2 * H + j] = dan;
      dv[j] = dar;
      dv[H + j] = daz;
      dv[2 * H + j] = dan * r;
    }
  }
};

}  // namespace

RNNKIT_EXPORT_LOOP(gru, GRU)
RNNKIT_EXPORT_LIBRARY
