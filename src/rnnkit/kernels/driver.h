// The time loop of one recurrent layer direction, forward and backward, in one call each, templated
// over the cell: what the cells share lives here, a cell's own step maths in its Cell policy
// (lstm_loop.cpp, gru_loop.cpp, rnn_loop.cpp).
//
// Per step t and row b (spec: src/rnnkit/functional/steps.py; the options of cells/base.py):
//   u = N_ih(W_ih x_t),  v = N_hh(W_hh (h * dropout_mask))      N(q) = LN(q) * gamma (Ba et al. 2016,
//                                                                eq. 20-22), or q without layer norm
//   h_n (and c_n) = the cell's update of (u, v, biases, state)  (Cell::forward)
//   h' = h_n + k_h (h - h_n);  c' = c_n + k_c (c - c_n)         (zoneout, Krueger et al. 2016)
//   steps t >= length keep the state and give y = 0.
// A cell whose gates read u + v (LSTM, Elman) gets their sum in one row, with the layer norm of u
// fused into the addition (Cell::split = false, one summed bias); a GRU keeps them apart (its reset
// gate multiplies v_n), with a bias each. gx (T, B, G) holds W_ih x_t of every step, one matrix
// product made in torch before the loop; in training its layer norm overwrites it with the
// normalised values that backward needs (xhat is then gx).
//
// Rows of the batch never mix inside a step, so the batch is split into one block of rows per thread
// and each thread runs the whole sequence for its block: one GEMM and one fused elementwise pass per
// step, with no barrier between steps. Backward runs the same way in reverse; dW_ih, dW_hh and dx are
// then one GEMM each over all steps, made by the caller.
//
// A plain C interface (one struct of pointers, called through ctypes) keeps the build short: no
// dispatcher or Python headers, only ATen's thread pool and the BLAS that torch itself links. The
// struct's layout is exported (rnnkit_loop_layout) so Python checks its ctypes mirror on load.
// Shapes: B batch, T steps, H hidden, G = gates * H. Outputs y and their gradients are batch-first
// (B, T, H); everything else is time-major (T, B, ...), so the rows a thread reads at a step lie together.

#pragma once

#include <cstddef>
#include <string>

#include "loop_common.h"

namespace rnnkit_loop {

// What Python passes (src/rnnkit/kernels/binding.py, Args): sizes, options and every array's address.
struct Args {
  int64_t B, T, H, blocks;
  const void *gx, *w, *bias_ih, *bias_hh, *gam_ih, *gam_h, *gam_c, *bet_c, *dmask, *zmask;
  const int64_t* lens;
  double eps_ih, eps_h, eps_c, zoneout;
  void *y, *h, *c;  // forward: h0, c0 -> h_T, c_T; backward: dL/dh_T, dL/dc_T -> dL/dh0, dL/dc0
  void *gates, *aux, *hs, *cs, *hin, *xhat, *rstd_ih, *rhat, *rstd_h, *chat, *rstd_c;  // saved; null in
                                                                                       // inference
  const void* dy;
  void *dgx, *dr, *acc;
};

// "size name@offset+size ...": what Python compares with its ctypes description when it loads us.
inline std::string layout() {
#define RNNKIT_FIELD(f) (" " #f "@" + std::to_string(offsetof(Args, f)) + "+" + std::to_string(sizeof(Args::f)))
  return std::to_string(sizeof(Args)) + RNNKIT_FIELD(B) + RNNKIT_FIELD(T) + RNNKIT_FIELD(H) +
         RNNKIT_FIELD(blocks) + RNNKIT_FIELD(gx) + RNNKIT_FIELD(w) + RNNKIT_FIELD(bias_ih) +
         RNNKIT_FIELD(bias_hh) + RNNKIT_FIELD(gam_ih) + RNNKIT_FIELD(gam_h) + RNNKIT_FIELD(gam_c) +
         RNNKIT_FIELD(bet_c) + RNNKIT_FIELD(dmask) + RNNKIT_FIELD(zmask) + RNNKIT_FIELD(lens) +
         RNNKIT_FIELD(eps_ih) + RNNKIT_FIELD(eps_h) + RNNKIT_FIELD(eps_c) + RNNKIT_FIELD(zoneout) +
         RNNKIT_FIELD(y) + RNNKIT_FIELD(h) + RNNKIT_FIELD(c) + RNNKIT_FIELD(gates) + RNNKIT_FIELD(aux) +
         RNNKIT_FIELD(hs) + RNNKIT_FIELD(cs) + RNNKIT_FIELD(hin) + RNNKIT_FIELD(xhat) +
         RNNKIT_FIELD(rstd_ih) + RNNKIT_FIELD(rhat) + RNNKIT_FIELD(rstd_h) + RNNKIT_FIELD(chat) +
         RNNKIT_FIELD(rstd_c) + RNNKIT_FIELD(dy) + RNNKIT_FIELD(dgx) + RNNKIT_FIELD(dr) + RNNKIT_FIELD(acc);
#undef RNNKIT_FIELD
}

// Every pointer of one call, typed. Optional inputs are null when absent; the saved arrays are null
// in inference. Constant rows stand in for absent biases and masks so the inner loops never branch.
template <typename T>
struct Problem {
  int64_t B, T_, H, G, blocks;
  const T* gx;       // (T, B, G): W_ih x, before its layer norm and bias
  const T* w;        // (G, H)
  const T* bias_ih;  // (G) or zeros: b_ih (+ LN_ih's beta); every bias, summed, where the cell sums u + v
  const T* bias_hh;  // (G) or zeros: b_hh (+ LN_hh's beta), for a cell that keeps u and v apart
  const T* gam_ih;   // (G) or null: layer norm of W_ih x
  const T* gam_h;    // (G) or null: layer norm of W_hh h
  const T* gam_c;    // (H) or ones: the LSTM's layer norm of c (used where rstd_c is)
  const T* bet_c;    // (H) or zeros
  bool norm_c;       // LN_c given
  T eps_ih, eps_h, eps_c;
  int64_t states;   // state fields: 1 (h) or 2 (h, c)
  const T* dmask;   // (B, H) or null: recurrent dropout on h before W_hh
  const T* zmask;   // (T, states, B, H) or null: zoneout keep masks per step and field
  const T* zconst;  // (H) filled with the eval-mode zoneout probability (0 when off)
  const T* ones;    // (H)
  const int64_t* lens;  // (B) or null
  // saved for backward (null in inference)
  T* gates;    // (T, B, G): the gates after their nonlinearities
  T* aux;      // (T, B, H) or null: one more row the cell keeps (LSTM: tanh(LN_c(c_n)), GRU: v_n)
  T* hs;       // (T + 1, B, H): h before each step, then the final h
  T* cs;       // (T + 1, B, H) or null: the same for c
  T* hin;      // (T, B, H) or null: h * dropout_mask, the GEMM's input; null without dropout (hs is)
  T* xhat;     // (T, B, G): normalised W_ih x
  T* rstd_ih;  // (T, B)
  T* rhat;     // (T, B, G): normalised W_hh h
  T* rstd_h;   // (T, B)
  T* chat;     // (T, B, H): normalised c_n
  T* rstd_c;   // (T, B)
  std::vector<T> constants;  // zeros (G), ones (H), zoneout (H)

  Problem(const Args& a, int64_t gates_per_unit, int64_t fields)
      : B(a.B), T_(a.T), H(a.H), G(gates_per_unit * a.H), blocks(a.blocks), states(fields),
        constants(G + 2 * a.H, T(0)) {
    T* zeros = constants.data();
    std::fill(zeros + G, zeros + G + H, T(1));
    std::fill(zeros + G + H, zeros + G + 2 * H, T(a.zoneout));
    ones = zeros + G, zconst = zeros + G + H;
    gx = cast(a.gx), w = cast(a.w);
    bias_ih = a.bias_ih ? cast(a.bias_ih) : zeros, bias_hh = a.bias_hh ? cast(a.bias_hh) : zeros;
    gam_ih = cast(a.gam_ih), gam_h = cast(a.gam_h);
    norm_c = a.gam_c != nullptr;
    gam_c = norm_c ? cast(a.gam_c) : ones, bet_c = a.bet_c ? cast(a.bet_c) : zeros;
    eps_ih = T(a.eps_ih), eps_h = T(a.eps_h), eps_c = T(a.eps_c);
    dmask = cast(a.dmask), zmask = cast(a.zmask), lens = a.lens;
    gates = mut(a.gates), aux = mut(a.aux), hs = mut(a.hs), cs = mut(a.cs), hin = mut(a.hin);
    xhat = mut(a.xhat), rstd_ih = mut(a.rstd_ih), rhat = mut(a.rhat), rstd_h = mut(a.rstd_h);
    chat = mut(a.chat), rstd_c = mut(a.rstd_c);
  }
  Problem(const Problem&) = delete;

  static const T* cast(const void* p) { return static_cast<const T*>(p); }
  static T* mut(void* p) { return static_cast<T*>(p); }
  bool active(int64_t b, int64_t t) const { return lens == nullptr || t < lens[b]; }
  const T* drop(int64_t b) const { return dmask ? dmask + b * H : ones; }
  const T* keep(int64_t b, int64_t t, int64_t field) const {
    return zmask ? zmask + ((t * states + field) * B + b) * H : zconst;
  }
};

// One row of one forward step: where the cell reads the state and writes what it computes. Saved rows
// point into scratch in inference, so the cell never branches on it.
template <typename T>
struct Step {
  const T *hp, *cp;  // h and c before the step
  T *hnext, *cnext;  // h' and c' (may alias hp and cp)
  T *y, *hin_next;   // the output row, and h' * dropout_mask: the next step's GEMM input
  const T *dm, *kh, *kc;
  T *gates, *aux, *chat, *rstd_c;
  T* scratch;  // Cell::scratch rows of H
  // h' from the cell's h_n: zoneout, then the state, the output and the next GEMM input
  void h(int64_t j, T hn) const {
    const T hnew = hn + kh[j] * (hp[j] - hn);
    hnext[j] = hnew;
    y[j] = hnew;
    hin_next[j] = hnew * dm[j];
  }
  void c(int64_t j, T cn) const { cnext[j] = cn + kc[j] * (cp[j] - cn); }
};

template <typename Cell, typename T>
void forward_block(const Problem<T>& p, int64_t r0, int64_t r1, T* y, T* hT, T* cT) {
  const int64_t B = p.B, Tn = p.T_, H = p.H, G = p.G, M = r1 - r0;
  const bool save = p.gates != nullptr, drop = p.dmask != nullptr;
  // The GEMM's input at step t: without dropout h itself (the saved h before the step in training, the
  // running h in inference), else h * mask (saved in training, a scratch block in inference).
  std::vector<T> rbuf(M * G), hin_buf(!save && drop ? M * H : 0);
  std::vector<T> scratch(2 * G + (4 + Cell::scratch) * H + 1);
  T *xbuf = scratch.data(), *gates_tmp = xbuf + G, *aux_tmp = gates_tmp + G, *chat_tmp = aux_tmp + H;
  T *hin_tmp = chat_tmp + H, *c_tmp = hin_tmp + H, *cell_tmp = c_tmp + H, *rstd_tmp = cell_tmp + Cell::scratch * H;
  const Gemm<T> recurrent('T', M, G, H, p.w, H, Tn);  // (M, G) = hin (M, H) @ W_hh^T
  const auto gemm_input = [&](int64_t t) -> const T* {
    if (save) return (drop ? p.hin : p.hs) + (t * B + r0) * H;
    return drop ? hin_buf.data() : hT + r0 * H;
  };

  for (int64_t b = r0; b < r1 && drop; ++b) {  // h * mask for step 0
    T* hin0 = save ? p.hin + b * H : hin_buf.data() + (b - r0) * H;
    const T* dm = p.drop(b);
    for (int64_t j = 0; j < H; ++j) hin0[j] = hT[b * H + j] * dm[j];
  }
  for (int64_t t = 0; t < Tn; ++t) {
    recurrent(gemm_input(t), H, rbuf.data(), G);
    for (int64_t b = r0; b < r1; ++b) {
      const int64_t m = b - r0, bt = b * Tn + t, tb = t * B + b;  // batch-first y; time-major rest
      Step<T> s;
      s.hp = save ? p.hs + tb * H : hT + b * H;
      s.hnext = save ? p.hs + (tb + B) * H : hT + b * H;
      s.cp = p.states < 2 ? c_tmp : save ? p.cs + tb * H : cT + b * H;
      s.cnext = p.states < 2 ? c_tmp : save ? p.cs + (tb + B) * H : cT + b * H;
      s.y = y + bt * H;
      s.hin_next = t + 1 == Tn || !drop ? hin_tmp : save ? p.hin + (tb + B) * H : hin_buf.data() + m * H;
      s.dm = p.drop(b);
      if (!p.active(b, t)) {  // padded step: the state stays, the output is zero
        std::fill(s.y, s.y + H, T(0));
        if (save) std::copy(s.hp, s.hp + H, s.hnext);
        if (save && p.states > 1) std::copy(s.cp, s.cp + H, s.cnext);
        for (int64_t j = 0; j < H; ++j) s.hin_next[j] = s.hp[j] * s.dm[j];
        continue;
      }
      T* v = rbuf.data() + m * G;  // W_hh h, then N_hh of it (+ N_ih(W_ih x) where the cell sums them)
      const T* u = p.gx + tb * G;  // W_ih x, then N_ih of it
      const int64_t next = b + 1 < r1 ? tb + 1 : t + 1 < Tn ? (t + 1) * B + r0 : -1;
      if (next >= 0) prefetch(p.gx + next * G, G);
      if (p.gam_h) {  // v <- LN(v) * gamma_hh
        const T rstd = layer_norm<false>(v, G, p.eps_h, p.gam_h, save ? p.rhat + tb * G : nullptr, v);
        if (save) p.rstd_h[tb] = rstd;
      }
      if (Cell::split && p.gam_ih) {  // u <- LN(W_ih x) * gamma_ih, in a scratch row
        const T rstd = layer_norm<false>(u, G, p.eps_ih, p.gam_ih, save ? p.xhat + tb * G : nullptr, xbuf);
        if (save) p.rstd_ih[tb] = rstd;
        u = xbuf;
      } else if (p.gam_ih) {  // v += LN(W_ih x) * gamma_ih
        const T rstd = layer_norm<true>(u, G, p.eps_ih, p.gam_ih, save ? p.xhat + tb * G : nullptr, v);
        if (save) p.rstd_ih[tb] = rstd;
      } else if (!Cell::split) {
#pragma omp simd
        for (int64_t k = 0; k < G; ++k) v[k] += u[k];
      }
      s.kh = p.keep(b, t, 0);
      s.kc = p.keep(b, t, p.states - 1);
      s.gates = save ? p.gates + tb * G : gates_tmp;
      s.aux = save && p.aux ? p.aux + tb * H : aux_tmp;
      s.chat = save && p.chat ? p.chat + tb * H : chat_tmp;
      s.rstd_c = save && p.rstd_c ? p.rstd_c + tb : rstd_tmp;
      s.scratch = cell_tmp;
      Cell::forward(p, s, u, v);
    }
  }
  if (save) {
    for (int64_t b = r0; b < r1; ++b) {
      std::copy(p.hs + (Tn * B + b) * H, p.hs + (Tn * B + b + 1) * H, hT + b * H);
      if (p.states > 1) std::copy(p.cs + (Tn * B + b) * H, p.cs + (Tn * B + b + 1) * H, cT + b * H);
    }
  }
}

// Where backward writes: dL/d(W_ih x) and dL/d(W_hh h) per step, and each block's parameter sums.
template <typename T>
struct Grads {
  const T* dy;  // (B, T, H)
  T* dgx;       // (T, B, G): dL/d(W_ih x)
  T* dr;        // (T, B, G): dL/d(W_hh h); the same array as dgx where the cell sums u + v and neither
                // projection is normalised
  T* dh0;       // (B, H); holds dL/dh_T on entry
  T* dc0;       // (B, H) or null; holds dL/dc_T on entry
  T* acc;       // (blocks, width): dbias_ih, [dbias_hh where split], dgamma_ih, dgamma_hh, the cell's own
};

// One row of one backward step: the state's gradients and what forward saved.
template <typename T>
struct Back {
  T *dhc, *dc;       // dL/dh' from later steps (less the part through W_hh), dL/dc'
  const T *dhi, *dm, *dy, *kh, *kc;
  const T *hp, *cp, *gates, *aux, *chat;
  T rstd_c;
  T *acc, *scratch;  // the cell's own sums (Cell::acc rows of H); Cell::scratch rows of H
  // dL/dh_n from dL/dh' (this step's output, later steps, the next step's W_hh); keeps the zoneout part
  T dh(int64_t j) const {
    const T d = dhc[j] + dhi[j] * dm[j] + dy[j];
    dhc[j] = d * kh[j];
    return d * (T(1) - kh[j]);
  }
  T dc_n(int64_t j, T from_h) const { return from_h + dc[j] * (T(1) - kc[j]); }  // dL/dc_n
  void dc_prev(int64_t j, T dcn, T f) const { dc[j] = dcn * f + dc[j] * kc[j]; }  // dL/dc
};

template <typename Cell, typename T>
void backward_block(const Problem<T>& p, const Grads<T>& g, int64_t block, int64_t r0, int64_t r1) {
  const int64_t B = p.B, Tn = p.T_, H = p.H, G = p.G, M = r1 - r0;
  std::vector<T> dhin(M * H, T(0)), du_tmp(G), dv_tmp(G), scratch(Cell::scratch * H + 1);
  const int64_t width = (Cell::split ? 4 : 3) * G + Cell::acc * H;
  T* acc = g.acc + block * width;  // this block's own sums: no races, fixed order
  T *dbias_ih = acc, *dbias_hh = acc + G, *dgam_ih = acc + (Cell::split ? 2 : 1) * G;
  T *dgam_h = dgam_ih + G, *cell_acc = dgam_h + G;
  const Gemm<T> recurrent('N', M, H, G, p.w, H, Tn);  // (M, H) = dr (M, G) @ W_hh

  for (int64_t t = Tn - 1; t >= 0; --t) {
    for (int64_t b = r0; b < r1; ++b) {
      const int64_t m = b - r0, bt = b * Tn + t, tb = t * B + b;
      Back<T> s;
      s.dm = p.drop(b);
      s.dhc = g.dh0 + b * H;
      s.dhi = dhin.data() + m * H;
      T* dgx = g.dgx + tb * G;
      T* dr = g.dr + tb * G;
      if (!p.active(b, t)) {  // padded step: gradients pass through to the state before it
        for (int64_t j = 0; j < H; ++j) s.dhc[j] += s.dhi[j] * s.dm[j];
        std::fill(dgx, dgx + G, T(0));
        std::fill(dr, dr + G, T(0));
        continue;
      }
      // dL/du and dL/dv, kept where the layer-norm backwards read them (one row, da, where u + v is summed)
      T* da = !p.gam_h ? dr : !p.gam_ih ? dgx : du_tmp.data();
      T* du = Cell::split ? (p.gam_ih ? du_tmp.data() : dgx) : da;
      T* dv = Cell::split ? (p.gam_h ? dv_tmp.data() : dr) : da;
      s.dc = g.dc0 ? g.dc0 + b * H : nullptr;
      s.dy = g.dy + bt * H;
      s.kh = p.keep(b, t, 0);
      s.kc = p.keep(b, t, p.states - 1);
      s.hp = p.hs + tb * H;
      s.cp = p.cs ? p.cs + tb * H : nullptr;
      s.gates = p.gates + tb * G;
      s.aux = p.aux ? p.aux + tb * H : nullptr;
      s.chat = p.chat ? p.chat + tb * H : nullptr;
      s.rstd_c = p.rstd_c ? p.rstd_c[tb] : T(1);
      s.acc = cell_acc, s.scratch = scratch.data();
      Cell::backward(p, s, du, dv);
      add_to(dbias_ih, du, G);
      if (Cell::split) add_to(dbias_hh, dv, G);
      if (p.gam_h) {
        const T* rh = p.rhat + tb * G;
        add_product_to(dgam_h, dv, rh, G);
        norm_backward(dv, p.gam_h, rh, p.rstd_h[tb], G, dr);
      }
      if (p.gam_ih) {
        const T* xh = p.xhat + tb * G;
        add_product_to(dgam_ih, du, xh, G);
        norm_backward(du, p.gam_ih, xh, p.rstd_ih[tb], G, dgx);
      } else if (dgx != du) {
        std::copy(du, du + G, dgx);
      }
    }
    recurrent(g.dr + (t * B + r0) * G, G, dhin.data(), H);
  }
  for (int64_t b = r0; b < r1; ++b) {
    const T* dm = p.drop(b);
    const T* dhi = dhin.data() + (b - r0) * H;
    for (int64_t j = 0; j < H; ++j) g.dh0[b * H + j] += dhi[j] * dm[j];
  }
}

// ---------------------------------------------------------------- the C interface

template <typename Cell, typename T>
int forward(const Args* a) {
  return guarded([&] {
    const Problem<T> p(*a, Cell::gates, Cell::states);
    over_blocks(p.B, p.blocks, [&](int64_t, int64_t r0, int64_t r1) {
      forward_block<Cell>(p, r0, r1, static_cast<T*>(a->y), static_cast<T*>(a->h), static_cast<T*>(a->c));
    });
  });
}

template <typename Cell, typename T>
int backward(const Args* a) {
  return guarded([&] {
    const Problem<T> p(*a, Cell::gates, Cell::states);
    const Grads<T> g{static_cast<const T*>(a->dy), static_cast<T*>(a->dgx), static_cast<T*>(a->dr),
                     static_cast<T*>(a->h), static_cast<T*>(a->c), static_cast<T*>(a->acc)};
    over_blocks(p.B, p.blocks,
                [&](int64_t block, int64_t r0, int64_t r1) { backward_block<Cell>(p, g, block, r0, r1); });
  });
}

}  // namespace rnnkit_loop

// The four entry points of one cell kind, rnnkit_<kind>_{forward,backward}_{f32,f64}.
#define RNNKIT_EXPORT_LOOP(kind, Cell)                                                                 \
  extern "C" {                                                                                         \
  int rnnkit_##kind##_forward_f32(const rnnkit_loop::Args* a) { return rnnkit_loop::forward<Cell, float>(a); }   \
  int rnnkit_##kind##_forward_f64(const rnnkit_loop::Args* a) { return rnnkit_loop::forward<Cell, double>(a); }  \
  int rnnkit_##kind##_backward_f32(const rnnkit_loop::Args* a) { return rnnkit_loop::backward<Cell, float>(a); } \
  int rnnkit_##kind##_backward_f64(const rnnkit_loop::Args* a) { return rnnkit_loop::backward<Cell, double>(a); }\
  }

// Once per library: the last error's message and the struct layout.
#define RNNKIT_EXPORT_LIBRARY                                                            \
  extern "C" {                                                                           \
  const char* rnnkit_loop_error() { return rnnkit_loop::last_error; }                    \
  const char* rnnkit_loop_layout() {                                                     \
    static const std::string text = rnnkit_loop::layout();                               \
    return text.c_str();                                                                 \
  }                                                                                      \
  }
