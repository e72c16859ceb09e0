// The Elman cell's step for the time-loop driver (driver.h), forward and backward, with tanh or relu.
//
// The maths is rnnkit's RNNCell (src/rnnkit/cells/rnn.py; spec: functional/steps.py elman_update):
//   a   = N_ih(W_ih x_t) + N_hh(W_hh (h * dropout_mask)) + bias   (summed by the driver; bias = b_ih + b_hh
//         [+ the layer norms' betas])
//   h_n = act(a)                                                  (Elman 1990; act = tanh or relu)
// Zoneout, lengths and dropout are the driver's. Saved per step: h_n, from which act' follows
// (tanh' = 1 - h_n^2; relu' = [h_n > 0], torch's choice of 0 at 0).

#include "driver.h"

namespace {

using namespace rnnkit_loop;

struct Tanh {
  template <typename T>
  static T act(T a) { return tanh_(a); }
  template <typename T>
  static T slope(T hn) { return T(1) - hn * hn; }
};

struct Relu {
  template <typename T>
  static T act(T a) { return a > T(0) ? a : T(0); }
  template <typename T>
  static T slope(T hn) { return hn > T(0) ? T(1) : T(0); }
};

template <typename Act>
struct Elman {
  static constexpr int64_t gates = 1, states = 1;
  static constexpr bool split = false;  // act(u + v)
  static constexpr int64_t scratch = 0, acc = 0;

  template <typename T>
  static void forward(const Problem<T>& p, const Step<T>& s, const T*, const T* a) {
    const T* bias = p.bias_ih;
    T* gates = s.gates;
#pragma omp simd
    for (int64_t j = 0; j < p.H; ++j) {
      const T hn = Act::act(a[j] + bias[j]);
      s.h(j, hn);
      gates[j] = hn;
    }
  }

  template <typename T>
  static void backward(const Problem<T>& p, const Back<T>& s, T* da, T*) {
    const T* hn = s.gates;
#pragma omp simd
    for (int64_t j = 0; j < p.H; ++j) da[j] = s.dh(j) * Act::slope(hn[j]);
  }
};

}  // namespace

RNNKIT_EXPORT_LOOP(rnn_tanh, Elman<Tanh>)
RNNKIT_EXPORT_LOOP(rnn_relu, Elman<Relu>)
RNNKIT_EXPORT_LIBRARY
