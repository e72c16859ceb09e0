// One Streamer step of a unidirectional RNN, LSTM or GRU stack, every layer in one call: each layer's
// matrix-vector products over weights packed once, the gates fused right after them, the state
// updated in place, into buffers the caller allocated (src/rnnkit/kernels/stream.py, the Streamer).
//
// Per layer l and row b (spec: src/rnnkit/functional/steps.py; eval semantics of cells/base.py):
//   a = W [x_l, h_l] + biases           W = [W_ih | W_hh] (G*H, K), K = D_l + H
//   h_n (and c_n) = the cell's update   LSTM: i, f, g, o (torch's order); GRU: r, z, n; Elman: tanh/relu
//   h' = h_n + p (h - h_n)              zoneout's expectation (Krueger et al. 2016), p = 0 without it
//   out_l = h' (+ x_l where the stack adds a residual, Wu et al. 2016): layer l+1's input
//
// Layout. Hidden units are cut into blocks of J; a block's rows are packed k-major, gate-minor:
// w[block][k][gate][j] (stream.py, pack). So one pass down a block's K columns, each broadcasting
// v[k] against the next G*J contiguous weights, leaves all G gates of J units in registers, and the
// gate maths runs on them at once: no (B, G*H) pre-activation row goes back to memory. The weights
// stream once per step from the caches in one contiguous run per thread. A GRU keeps W_in x and
// W_hn h apart (its reset gate multiplies W_hn h + b_hn alone): columns k < D and k >= D accumulate
// into two sets of registers, with no zero padding in the weights. A batch takes up to 4 rows per
// pass over a block (rows_per_pass), so B rows do not read the weights B times.
//
// Threads split each layer's blocks (at::parallel_for, torch's pool); a layer reads the h of every
// unit, so the new h goes to scratch and is copied into place after the layer's join. Shapes: B
// batch, H hidden, G gates, J units per block, nb = ceil(H / J) blocks (the last padded with zeros).

#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>

#include "loop_common.h"

namespace rnnkit_stream {

using rnnkit_loop::sigmoid;
using rnnkit_loop::tanh_;

enum Kind : int64_t { RNN_TANH = 0, RNN_RELU = 1, LSTM = 2, GRU = 3 };

// One layer, as Python describes it (stream.py, Layer): column offsets into the row buffer, the
// packed weights, the LSTM's c. Every pointer's shape is checked on the Python side.
struct Layer {
  int64_t D;              // the layer's input size; K = D + H
  int64_t x0, h0, out0;   // columns of x_l, h_l and out_l in each row of the row buffer
  const void* w;          // (nb, K, G, J)
  const void* bias_ih;    // (nb, G, J): every bias summed, or b_ih alone for a GRU
  const void* bias_hh;    // (nb, G, J) for a GRU (b_hh), else null
  void* c;                // (B, H) for an LSTM, else null
  double zoneout;         // p; 0 without zoneout
  int64_t residual;       // 1: out_l = h' + x_l (out0 != h0)
};

struct Args {
  int64_t kind, B, H, L, J, width, threads;  // width: the row buffer's row stride
  void* rows;                                // (B, width): [x | h_0 (| r_0) | h_1 ...]
  void* scratch;                             // (B, H): the new h of the running layer
  const Layer* layers;                       // (L)
};

#define RNNKIT_FIELD(S, f) (" " #f "@" + std::to_string(offsetof(S, f)) + "+" + std::to_string(sizeof(S::f)))
inline std::string layout() {
  return std::to_string(sizeof(Layer)) + RNNKIT_FIELD(Layer, D) + RNNKIT_FIELD(Layer, x0) +
         RNNKIT_FIELD(Layer, h0) + RNNKIT_FIELD(Layer, out0) + RNNKIT_FIELD(Layer, w) +
         RNNKIT_FIELD(Layer, bias_ih) + RNNKIT_FIELD(Layer, bias_hh) + RNNKIT_FIELD(Layer, c) +
         RNNKIT_FIELD(Layer, zoneout) + RNNKIT_FIELD(Layer, residual) + " | " + std::to_string(sizeof(Args)) +
         RNNKIT_FIELD(Args, kind) + RNNKIT_FIELD(Args, B) + RNNKIT_FIELD(Args, H) + RNNKIT_FIELD(Args, L) +
         RNNKIT_FIELD(Args, J) + RNNKIT_FIELD(Args, width) + RNNKIT_FIELD(Args, threads) +
         RNNKIT_FIELD(Args, rows) + RNNKIT_FIELD(Args, scratch) + RNNKIT_FIELD(Args, layers);
}
#undef RNNKIT_FIELD

// The vector width the build targets (build.py's variants), in bytes.
#if defined(__AVX512F__)
constexpr int VBYTES = 64;
#elif defined(__AVX__)
constexpr int VBYTES = 32;
#else
constexpr int VBYTES = 16;
#endif

// Units per block: about 64 floats of gates per column (LSTM 4 x 16, GRU 3 x 16, Elman 64; a GRU
// 3 x 32 with AVX-512, whose 3 vectors per column were too few independent chains), half as many
// doubles; a block's accumulators then fit the vector registers (measured: benchmarks/README.md).
constexpr int64_t block_units(int64_t kind, bool is_double) {
  const int64_t j = kind == LSTM ? 16 : kind == GRU ? (VBYTES == 64 ? 32 : 16) : 64;
  return is_double ? j / 2 : j;
}

// ---------------------------------------------------------------- the block product
// acc[0:W] += sum over k < n of w[k*W : (k+1)*W] * v[k]: the accumulators stay in registers.

#if defined(__GNUC__)
template <typename T>
struct Vec;
template <>
struct Vec<float> {
  typedef float type __attribute__((vector_size(VBYTES)));
};
template <>
struct Vec<double> {
  typedef double type __attribute__((vector_size(VBYTES)));
};

template <typename T, int64_t W>
inline void accumulate(const T* __restrict w, const T* __restrict v, int64_t n, T* __restrict acc) {
  using V = typename Vec<T>::type;
  constexpr int64_t N = VBYTES / sizeof(T), R = W / N;
  static_assert(W % N == 0, "a block's row is whole vectors");
  V a[R];
#pragma GCC unroll 32
  for (int64_t r = 0; r < R; ++r) std::memcpy(&a[r], acc + r * N, sizeof(V));
  // Few vectors per row (AVX-512): a second set of accumulators for odd columns doubles the independent
  // chains of fused multiply-adds; with 6 or more vectors the chains suffice and registers are scarce.
  constexpr bool pairs = R <= 4;
  V b[R] = {};
  int64_t k = 0;
  for (; pairs && k + 2 <= n; k += 2) {
    const T* row = w + k * W;
    const T v0 = v[k], v1 = v[k + 1];
#pragma GCC unroll 32
    for (int64_t r = 0; r < R; ++r) {
      V x0, x1;
      std::memcpy(&x0, row + r * N, sizeof(V));
      std::memcpy(&x1, row + W + r * N, sizeof(V));
      a[r] += x0 * v0;  // vector * scalar: the scalar is broadcast
      b[r] += x1 * v1;
    }
  }
  for (; k < n; ++k) {
#pragma GCC unroll 32
    for (int64_t r = 0; r < R; ++r) {
      V x0;
      std::memcpy(&x0, w + k * W + r * N, sizeof(V));
      a[r] += x0 * v[k];
    }
  }
#pragma GCC unroll 32
  for (int64_t r = 0; r < R; ++r) {
    a[r] += b[r];
    std::memcpy(acc + r * N, &a[r], sizeof(V));
  }
}

// The same for M batch rows at once: each weight vector loaded once serves M rows (v[i], acc[i]),
// so a batch reads the weights once per step instead of M times.
template <typename T, int64_t W, int64_t M>
inline void accumulate_rows(const T* __restrict w, const T* const* v, int64_t n, T* const* acc) {
  using V = typename Vec<T>::type;
  constexpr int64_t N = VBYTES / sizeof(T), R = W / N;
  V a[M][R];
#pragma GCC unroll 32
  for (int64_t i = 0; i < M; ++i) {
#pragma GCC unroll 32
    for (int64_t r = 0; r < R; ++r) std::memcpy(&a[i][r], acc[i] + r * N, sizeof(V));
  }
  for (int64_t k = 0; k < n; ++k) {
    T vk[M];
#pragma GCC unroll 32
    for (int64_t i = 0; i < M; ++i) vk[i] = v[i][k];
#pragma GCC unroll 32
    for (int64_t r = 0; r < R; ++r) {
      V x;
      std::memcpy(&x, w + k * W + r * N, sizeof(V));
#pragma GCC unroll 32
      for (int64_t i = 0; i < M; ++i) a[i][r] += x * vk[i];
    }
  }
#pragma GCC unroll 32
  for (int64_t i = 0; i < M; ++i) {
#pragma GCC unroll 32
    for (int64_t r = 0; r < R; ++r) std::memcpy(acc[i] + r * N, &a[i][r], sizeof(V));
  }
}

// Batch rows per pass: as many as keep M x R accumulators in the registers (16 of AVX-512's 32,
// 8 of AVX2's 16), at most 4.
template <typename T, int64_t W>
constexpr int64_t rows_per_pass() {
  constexpr int64_t R = W * int64_t(sizeof(T)) / VBYTES, budget = VBYTES == 64 ? 16 : 8;
  return R >= budget ? 1 : std::min<int64_t>(4, budget / R);
}
#else  // portable: the compiler vectorises the inner loop as it can
template <typename T, int64_t W>
inline void accumulate(const T* w, const T* v, int64_t n, T* acc) {
  for (int64_t k = 0; k < n; ++k) {
    const T vk = v[k];
    for (int64_t r = 0; r < W; ++r) acc[r] += w[k * W + r] * vk;
  }
}

template <typename T, int64_t W, int64_t M>
inline void accumulate_rows(const T* w, const T* const* v, int64_t n, T* const* acc) {
  for (int64_t i = 0; i < M; ++i) accumulate<T, W>(w, v[i], n, acc[i]);
}

template <typename T, int64_t W>
constexpr int64_t rows_per_pass() {
  return 1;
}
#endif

// acc[i] += the block's product with v[i] for m <= M rows: the multi-row pass when all M are there.
template <typename T, int64_t W, int64_t M>
inline void accumulate_batch(const T* w, const T* const* v, int64_t n, T* const* acc, int64_t m) {
  if (M > 1 && m == M) {
    accumulate_rows<T, W, M>(w, v, n, acc);
  } else {
    for (int64_t i = 0; i < m; ++i) accumulate<T, W>(w, v[i], n, acc[i]);
  }
}

// ---------------------------------------------------------------- the cells' updates of one block
// a: the block's pre-activations, gate-major (G, J), biases included; u/v: a GRU's two halves.
// hp: h before the step (read), hn: where h' goes, cp: c (updated in place), x: the layer input for a
// residual, out: where out_l goes. n: the units of this block that exist (J, or fewer in the last).

template <typename T>
struct Row {
  const T *hp, *x;
  T *hn, *c, *out;
  T p;
  bool residual;
  void h(int64_t j, T h_n) const {
    const T hnew = h_n + p * (hp[j] - h_n);
    hn[j] = hnew;
    if (residual) out[j] = hnew + x[j];
  }
};

template <typename T, int64_t J>
inline void lstm_update(const T* a, const Row<T>& s, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const T i = sigmoid(a[j]), f = sigmoid(a[J + j]), g = tanh_(a[2 * J + j]), o = sigmoid(a[3 * J + j]);
    const T cn = f * s.c[j] + i * g;
    s.h(j, o * tanh_(cn));
    s.c[j] = cn + s.p * (s.c[j] - cn);
  }
}

template <typename T, int64_t J>
inline void gru_update(const T* u, const T* v, const Row<T>& s, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const T r = sigmoid(u[j] + v[j]), z = sigmoid(u[J + j] + v[J + j]);
    const T nn = tanh_(u[2 * J + j] + r * v[2 * J + j]);
    s.h(j, nn + z * (s.hp[j] - nn));
  }
}

template <typename T>
inline T relu(T x) {
  return x > T(0) ? x : T(0);
}

template <int64_t kind, typename T, int64_t J>
inline void elman_update(const T* a, const Row<T>& s, int64_t n) {
  for (int64_t j = 0; j < n; ++j) s.h(j, kind == RNN_TANH ? tanh_(a[j]) : relu(a[j]));
}

// ---------------------------------------------------------------- one layer

template <int64_t kind, typename T>
void layer_blocks(const Args& a, const Layer& l, int64_t first, int64_t last) {
  constexpr int64_t J = block_units(kind, sizeof(T) == 8);
  constexpr int64_t G = kind == LSTM ? 4 : kind == GRU ? 3 : 1, W = G * J;
  const int64_t H = a.H, K = l.D + H;
  T* rows = static_cast<T*>(a.rows);
  const T* w = static_cast<const T*>(l.w);
  const T* bias_ih = static_cast<const T*>(l.bias_ih);
  const T* bias_hh = static_cast<const T*>(l.bias_hh);
  T* hnew = static_cast<T*>(a.scratch);
  T* c = static_cast<T*>(l.c);
  constexpr int64_t M = rows_per_pass<T, W>();
  alignas(64) T u[M][W], v[M][W];
  const T *xs[M], *hs[M];  // each row's [x_l, h_l] (one contiguous vector of K), and its h_l
  T *us[M], *vs[M];
  for (int64_t block = first; block < last; ++block) {
    const T* wb = w + block * K * W;
    const int64_t j0 = block * J, n = std::min(J, H - j0);
    for (int64_t b0 = 0; b0 < a.B; b0 += M) {
      const int64_t m = std::min(M, a.B - b0);
      for (int64_t i = 0; i < m; ++i) {
        xs[i] = rows + (b0 + i) * a.width + l.x0;
        hs[i] = xs[i] + l.D;
        us[i] = u[i], vs[i] = v[i];
        std::memcpy(u[i], bias_ih + block * W, sizeof u[i]);
        if constexpr (kind == GRU) std::memcpy(v[i], bias_hh + block * W, sizeof v[i]);
      }
      if constexpr (kind == GRU) {  // W_ih x into u, W_hh h into v: the reset gate multiplies v_n alone
        accumulate_batch<T, W, M>(wb, xs, l.D, us, m);
        accumulate_batch<T, W, M>(wb + l.D * W, hs, H, vs, m);
      } else {
        accumulate_batch<T, W, M>(wb, xs, K, us, m);
      }
      for (int64_t i = 0; i < m; ++i) {
        T* row = rows + (b0 + i) * a.width;
        Row<T> s;
        s.hp = row + l.h0 + j0;
        s.x = row + l.x0 + j0;
        s.hn = hnew + (b0 + i) * H + j0;
        s.c = c ? c + (b0 + i) * H + j0 : nullptr;
        s.out = row + l.out0 + j0;
        s.p = T(l.zoneout);
        s.residual = l.residual != 0;
        if constexpr (kind == GRU) {
          gru_update<T, J>(u[i], v[i], s, n);
        } else if constexpr (kind == LSTM) {
          lstm_update<T, J>(u[i], s, n);
        } else {
          elman_update<kind, T, J>(u[i], s, n);
        }
      }
    }
  }
}

template <int64_t kind, typename T>
void step(const Args& a, const T* x, T* y) {
  constexpr int64_t J = block_units(kind, sizeof(T) == 8);
  T* rows = static_cast<T*>(a.rows);
  const int64_t B = a.B, H = a.H, nb = (H + J - 1) / J;
  const int64_t D0 = a.layers[0].D;
  if (x) {
    for (int64_t b = 0; b < B; ++b) std::memcpy(rows + b * a.width, x + b * D0, D0 * sizeof(T));
  }
  const int64_t threads = std::max<int64_t>(1, std::min(a.threads, nb));
  for (int64_t i = 0; i < a.L; ++i) {
    const Layer& l = a.layers[i];
    if (threads == 1) {
      layer_blocks<kind, T>(a, l, 0, nb);
    } else {
      at::parallel_for(0, threads, 1, [&](int64_t first, int64_t last) {
        for (int64_t t = first; t < last; ++t) layer_blocks<kind, T>(a, l, t * nb / threads, (t + 1) * nb / threads);
      });
    }
    const T* hnew = static_cast<const T*>(a.scratch);
    for (int64_t b = 0; b < B; ++b) std::memcpy(rows + b * a.width + l.h0, hnew + b * H, H * sizeof(T));
  }
  if (y) {
    const int64_t top = a.layers[a.L - 1].out0;
    for (int64_t b = 0; b < B; ++b) std::memcpy(y + b * H, rows + b * a.width + top, H * sizeof(T));
  }
}

template <typename T>
int run(const Args* a, const void* x, void* y) {
  return rnnkit_loop::guarded([&] {
    const T* xt = static_cast<const T*>(x);
    T* yt = static_cast<T*>(y);
    switch (a->kind) {
      case RNN_TANH: return step<RNN_TANH, T>(*a, xt, yt);
      case RNN_RELU: return step<RNN_RELU, T>(*a, xt, yt);
      case LSTM: return step<LSTM, T>(*a, xt, yt);
      case GRU: return step<GRU, T>(*a, xt, yt);
      default: throw std::invalid_argument("unknown cell kind " + std::to_string(a->kind));
    }
  });
}

}  // namespace rnnkit_stream

extern "C" {
// x (B, D) is copied into the row buffer first unless null; y (B, H) receives the top layer's output
// unless null. Returns 0, or 1 with rnnkit_stream_error() saying why.
int rnnkit_stream_step_f32(const rnnkit_stream::Args* a, const void* x, void* y) {
  return rnnkit_stream::run<float>(a, x, y);
}
int rnnkit_stream_step_f64(const rnnkit_stream::Args* a, const void* x, void* y) {
  return rnnkit_stream::run<double>(a, x, y);
}
// Units per block for a cell kind: the J that stream.py packs the weights with.
int64_t rnnkit_stream_block(int64_t kind, int64_t is_double) {
  return rnnkit_stream::block_units(kind, is_double != 0);
}
const char* rnnkit_stream_error() { return rnnkit_loop::last_error; }
const char* rnnkit_stream_layout() {
  static const std::string text = rnnkit_stream::layout();
  return text.c_str();
}
}
