// The time loop of one LSTM layer direction, forward and backward, in one call each.
//
// The maths is rnnkit's LSTMCell (src/rnnkit/cells/lstm.py; spec: functional/steps.py lstm_update):
//   a   = LN_ih(W_ih x_t) * gamma_ih + LN_hh(W_hh (h * dropout_mask)) * gamma_hh + bias
//         (bias = b_ih + b_hh [+ the layer norms' betas]: they are all added after the normalisation)
//   i, f, g, o = sigmoid(a_i), sigmoid(a_f), tanh(a_g), sigmoid(a_o)    (torch's gate order)
//   c_n = f c + i g;  h_n = o tanh(LN_c(c_n))                            (Ba et al. 2016, eq. 20-22)
//   h' = h_n + k_h (h - h_n);  c' = c_n + k_c (c - c_n)                  (zoneout, Krueger et al. 2016)
//   steps t >= length keep the state and give y = 0.
// Without layer norm, LN(r) * gamma is r and LN_c is the identity. gx (T, B, 4H) holds W_ih x_t of
// every step, one matrix product made in torch before the loop; its layer norm is fused in here and,
// in training, overwrites gx with the normalised values that backward needs (xhat is then gx).
//
// Rows of the batch never mix inside a step, so the batch is split into one block of rows per thread
// and each thread runs the whole sequence for its block: one GEMM and one fused elementwise pass per
// step, with no barrier between steps. Backward runs the same way in reverse; dW_hh is then one GEMM
// over all steps, made by the caller.
//
// A plain C interface (one struct of pointers, called through ctypes) keeps the build short: no
// dispatcher or Python headers, only ATen's thread pool and the BLAS that torch itself links.
// Shapes: B batch, T steps, H hidden, G = 4H. Outputs y and their gradients are batch-first (B, T, H);
// everything else is time-major (T, B, ...), so the rows a thread reads at one step lie together.

#include "loop_common.h"

namespace {

using namespace rnnkit_loop;

// ---------------------------------------------------------------- the problem

// What Python passes: one struct of sizes and pointers (see functional/lstm_loop.py, _Args).
struct Args {
  int64_t B, T, H, blocks;
  const void *gx, *w, *bias, *gam_ih, *gam_h, *gam_c, *bet_c, *dmask, *zmask;
  const int64_t* lens;
  double eps_ih, eps_h, eps_c, zoneout;
  void *y, *h, *c;  // forward: h0, c0 -> h_T, c_T; backward: dL/dh_T, dL/dc_T -> dL/dh0, dL/dc0
  void *gates, *cs, *tc, *hin, *xhat, *rstd_ih, *rhat, *rstd_h, *chat, *rstd_c;  // saved; null in inference
                                                                                 // (xhat: gx itself, or null)
  const void* dy;
  void *dgx, *dr, *acc;
};

// Every pointer of one call, typed. Optional inputs are null when absent; the saved arrays are null
// in inference. Constant rows stand in for absent masks so the inner loops have no branches.
template <typename T>
struct Problem {
  int64_t B, T_, H, blocks;
  const T* gx;      // (T, B, 4H): W_ih x, before its layer norm and bias
  const T* w;       // (4H, H)
  const T* bias;    // (4H) or zeros: every additive bias of the gates, summed
  const T* gam_ih;  // (4H) or null: layer norm of W_ih x
  const T* gam_h;   // (4H) or null: layer norm of W_hh h
  const T* gam_c;   // (H) or null: layer norm of c
  const T* bet_c;   // (H) or zeros
  T eps_ih, eps_h, eps_c;
  const T* dmask;   // (B, H) or null: recurrent dropout on h before W_hh
  const T* zmask;   // (T, 2, B, H) or null: zoneout keep masks for h then c, per step
  const T* zconst;  // (H) filled with the eval-mode zoneout probability (0 when off)
  const T* ones;    // (H)
  const int64_t* lens;  // (B) or null
  // saved for backward (null in inference)
  T* gates;    // (T, B, 4H): i, f, g, o after their nonlinearities
  T* cs;       // (T + 1, B, H): c before each step, then the final c
  T* tc;       // (T, B, H): tanh(LN_c(c_n))
  T* hin;      // (T, B, H): h * dropout_mask, the GEMM's input at each step
  T* xhat;     // (T, B, 4H): normalised W_ih x
  T* rstd_ih;  // (T, B)
  T* rhat;     // (T, B, 4H): normalised W_hh h
  T* rstd_h;   // (T, B)
  T* chat;     // (T, B, H): normalised c_n
  T* rstd_c;   // (T, B)
  std::vector<T> constants;  // zeros (4H), ones (H), zoneout (H)

  explicit Problem(const Args& a) : B(a.B), T_(a.T), H(a.H), blocks(a.blocks), constants(6 * a.H, T(0)) {
    T* zeros = constants.data();
    std::fill(zeros + 4 * H, zeros + 5 * H, T(1));
    std::fill(zeros + 5 * H, zeros + 6 * H, T(a.zoneout));
    ones = zeros + 4 * H, zconst = zeros + 5 * H;
    gx = cast(a.gx), w = cast(a.w), bias = a.bias ? cast(a.bias) : zeros;
    gam_ih = cast(a.gam_ih), gam_h = cast(a.gam_h), gam_c = cast(a.gam_c);
    bet_c = a.bet_c ? cast(a.bet_c) : zeros;
    eps_ih = T(a.eps_ih), eps_h = T(a.eps_h), eps_c = T(a.eps_c);
    dmask = cast(a.dmask), zmask = cast(a.zmask), lens = a.lens;
    gates = mut(a.gates), cs = mut(a.cs), tc = mut(a.tc), hin = mut(a.hin);
    xhat = mut(a.xhat), rstd_ih = mut(a.rstd_ih), rhat = mut(a.rhat), rstd_h = mut(a.rstd_h);
    chat = mut(a.chat), rstd_c = mut(a.rstd_c);
  }
  Problem(const Problem&) = delete;

  static const T* cast(const void* p) { return static_cast<const T*>(p); }
  static T* mut(void* p) { return static_cast<T*>(p); }
  bool active(int64_t b, int64_t t) const { return lens == nullptr || t < lens[b]; }
  const T* drop(int64_t b) const { return dmask ? dmask + b * H : ones; }
  const T* keep_h(int64_t b, int64_t t) const { return zmask ? zmask + ((t * 2) * B + b) * H : zconst; }
  const T* keep_c(int64_t b, int64_t t) const { return zmask ? zmask + ((t * 2 + 1) * B + b) * H : zconst; }
};

// ---------------------------------------------------------------- forward

template <typename T>
void forward_block(const Problem<T>& p, int64_t r0, int64_t r1, T* y, T* hT, T* cT) {
  const int64_t B = p.B, Tn = p.T_, H = p.H, G = 4 * H, M = r1 - r0;
  const bool save = p.gates != nullptr;
  // scratch rows stand in for the saved arrays in inference, so the inner loops never branch
  // without dropout, inference steps read h itself: no copy of it for the product
  const bool direct = !save && !p.dmask;
  std::vector<T> rbuf(M * G), hin_buf(save || direct ? 0 : M * H), cn(H), og(H), scratch(G + 3 * H);
  T *gates_tmp = scratch.data(), *tc_tmp = gates_tmp + G, *chat_tmp = tc_tmp + H, *hin_tmp = chat_tmp + H;
  const T* gc = p.gam_c ? p.gam_c : p.ones;  // without LN_c: (c - 0) * 1 * 1 + 0 = c exactly
  const T* bc = p.bet_c;
  const T* bias = p.bias;
  const Gemm<T> recurrent('T', M, G, H, p.w, H, Tn);  // (M, 4H) = hin (M, H) @ W_hh^T

  for (int64_t b = r0; b < r1 && !direct; ++b) {  // h * mask for step 0
    T* hin0 = save ? p.hin + b * H : hin_buf.data() + (b - r0) * H;
    const T* dm = p.drop(b);
    for (int64_t j = 0; j < H; ++j) hin0[j] = hT[b * H + j] * dm[j];
  }
  for (int64_t t = 0; t < Tn; ++t) {
    recurrent(save ? p.hin + (t * B + r0) * H : direct ? hT + r0 * H : hin_buf.data(), H, rbuf.data(), G);
    for (int64_t b = r0; b < r1; ++b) {
      const int64_t m = b - r0, bt = b * Tn + t, tb = t * B + b;  // batch-first y; time-major rest
      T* h = hT + b * H;
      const T* cp = save ? p.cs + tb * H : cT + b * H;
      T* cnext = save ? p.cs + (tb + B) * H : cT + b * H;  // may alias cp
      T* yrow = y + bt * H;
      T* hin_next = t + 1 == Tn || direct ? hin_tmp : save ? p.hin + (tb + B) * H : hin_buf.data() + m * H;
      const T* dm = p.drop(b);
      if (!p.active(b, t)) {  // padded step: the state stays, the output is zero
        std::fill(yrow, yrow + H, T(0));
        if (save) std::copy(cp, cp + H, cnext);
        for (int64_t j = 0; j < H; ++j) hin_next[j] = h[j] * dm[j];
        continue;
      }
      T* r = rbuf.data() + m * G;  // W_hh h, then the whole pre-activation less the bias
      const T* gxr = p.gx + tb * G;
      const int64_t next = b + 1 < r1 ? tb + 1 : t + 1 < Tn ? (t + 1) * B + r0 : -1;
      if (next >= 0) prefetch(p.gx + next * G, G);
      if (p.gam_h) {  // r <- LN(r) * gamma_hh
        const T rstd = layer_norm<false>(r, G, p.eps_h, p.gam_h, save ? p.rhat + tb * G : nullptr, r);
        if (save) p.rstd_h[tb] = rstd;
      }
      if (p.gam_ih) {  // r += LN(W_ih x) * gamma_ih
        const T rstd = layer_norm<true>(gxr, G, p.eps_ih, p.gam_ih, save ? p.xhat + tb * G : nullptr, r);
        if (save) p.rstd_ih[tb] = rstd;
      } else {
#pragma omp simd
        for (int64_t k = 0; k < G; ++k) r[k] += gxr[k];
      }
      T* gates = save ? p.gates + tb * G : gates_tmp;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T i = sigmoid(r[j] + bias[j]);
        const T f = sigmoid(r[H + j] + bias[H + j]);
        const T g = tanh_(r[2 * H + j] + bias[2 * H + j]);
        const T o = sigmoid(r[3 * H + j] + bias[3 * H + j]);
        cn[j] = f * cp[j] + i * g;
        og[j] = o;
        gates[j] = i;
        gates[H + j] = f;
        gates[2 * H + j] = g;
        gates[3 * H + j] = o;
      }
      T mean_c = 0, rstd_c = 1;
      if (p.gam_c) {
        const auto st = row_stats(cn.data(), H, p.eps_c);
        mean_c = st.mean, rstd_c = st.rstd;
        if (save) p.rstd_c[tb] = rstd_c;
      }
      const T* kh = p.keep_h(b, t);
      const T* kc = p.keep_c(b, t);
      T* tcs = save ? p.tc + tb * H : tc_tmp;
      T* chs = save && p.gam_c ? p.chat + tb * H : chat_tmp;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T chat = (cn[j] - mean_c) * rstd_c;
        const T tcv = tanh_(chat * gc[j] + bc[j]);
        const T hn = og[j] * tcv;
        const T hnew = hn + kh[j] * (h[j] - hn);
        const T cnew = cn[j] + kc[j] * (cp[j] - cn[j]);
        h[j] = hnew;
        cnext[j] = cnew;
        yrow[j] = hnew;
        hin_next[j] = hnew * dm[j];
        tcs[j] = tcv;
        chs[j] = chat;
      }
    }
  }
  if (save) {
    for (int64_t b = r0; b < r1; ++b) {
      const T* c = p.cs + (Tn * B + b) * H;
      std::copy(c, c + H, cT + b * H);
    }
  }
}

// ---------------------------------------------------------------- backward

template <typename T>
struct Grads {
  const T* dy;  // (B, T, H)
  T* dgx;       // (T, B, 4H): dL/d(W_ih x)
  T* dr;        // (T, B, 4H): dL/d(W_hh h); the same array as dgx when neither projection is normalised
  T* dh0;       // (B, H); holds dL/dh_T on entry
  T* dc0;       // (B, H); holds dL/dc_T on entry
  T* acc;       // (blocks, 3 * 4H + 2H): dbias, dgamma_ih, dgamma_hh, dgamma_c, dbeta_c per block
};

template <typename T>
void backward_block(const Problem<T>& p, const Grads<T>& g, int64_t block, int64_t r0, int64_t r1) {
  const int64_t B = p.B, Tn = p.T_, H = p.H, G = 4 * H, M = r1 - r0;
  std::vector<T> dhin(M * H, T(0)), dcout(H), dcn(H), da_tmp(G);
  T* dh_carry = g.dh0;  // per row: dL/dh' from later steps, less the part through W_hh
  T* dc = g.dc0;
  T* acc = g.acc + block * (3 * G + 2 * H);  // this block's own sums: no races, fixed order
  T *dbias = acc, *dgam_ih = acc + G, *dgam_h = acc + 2 * G, *dgam_c = acc + 3 * G, *dbet_c = dgam_c + H;
  const T* gc = p.gam_c ? p.gam_c : p.ones;
  const Gemm<T> recurrent('N', M, H, G, p.w, H, Tn);  // (M, H) = dr (M, 4H) @ W_hh

  for (int64_t t = Tn - 1; t >= 0; --t) {
    for (int64_t b = r0; b < r1; ++b) {
      const int64_t m = b - r0, bt = b * Tn + t, tb = t * B + b;
      const T* dm = p.drop(b);
      T* dhc = dh_carry + b * H;
      const T* dhi = dhin.data() + m * H;
      T* dgx = g.dgx + tb * G;
      T* dr = g.dr + tb * G;
      if (!p.active(b, t)) {  // padded step: gradients pass through to the state before it
        for (int64_t j = 0; j < H; ++j) dhc[j] += dhi[j] * dm[j];
        std::fill(dgx, dgx + G, T(0));
        std::fill(dr, dr + G, T(0));
        continue;
      }
      // dL/da for a = N_ih(W_ih x) + N_hh(W_hh h) + bias, kept where the layer-norm backward reads it
      T* da = !p.gam_h ? dr : !p.gam_ih ? dgx : da_tmp.data();
      const T* gt = p.gates + tb * G;
      const T* tcs = p.tc + tb * H;
      const T* dyr = g.dy + bt * H;
      const T* kh = p.keep_h(b, t);
      const T* kc = p.keep_c(b, t);
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T d = dhc[j] + dhi[j] * dm[j] + dyr[j];  // dL/dh' at this step
        const T dhn = d * (T(1) - kh[j]);
        dhc[j] = d * kh[j];
        const T o = gt[3 * H + j], tcv = tcs[j];
        da[3 * H + j] = dhn * tcv * o * (T(1) - o);
        dcout[j] = dhn * o * (T(1) - tcv * tcv);
      }
      T* dc_row = dc + b * H;
      if (p.gam_c) {
        const T* ch = p.chat + tb * H;
        add_product_to(dgam_c, dcout.data(), ch, H);
        add_to(dbet_c, dcout.data(), H);
        norm_backward(dcout.data(), gc, ch, p.rstd_c[tb], H, dcn.data());
      } else {
        std::copy(dcout.begin(), dcout.end(), dcn.begin());
      }
      const T* cp = p.cs + tb * H;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T d = dcn[j] + dc_row[j] * (T(1) - kc[j]);  // dL/dc_n
        const T i = gt[j], f = gt[H + j], gg = gt[2 * H + j];
        da[j] = d * gg * i * (T(1) - i);
        da[H + j] = d * cp[j] * f * (T(1) - f);
        da[2 * H + j] = d * i * (T(1) - gg * gg);
        dc_row[j] = d * f + dc_row[j] * kc[j];
      }
      add_to(dbias, da, G);
      if (p.gam_h) {
        const T* rh = p.rhat + tb * G;
        add_product_to(dgam_h, da, rh, G);
        norm_backward(da, p.gam_h, rh, p.rstd_h[tb], G, dr);
      }
      if (p.gam_ih) {
        const T* xh = p.xhat + tb * G;
        add_product_to(dgam_ih, da, xh, G);
        norm_backward(da, p.gam_ih, xh, p.rstd_ih[tb], G, dgx);
      } else if (dgx != da) {
        std::copy(da, da + G, dgx);
      }
    }
    recurrent(g.dr + (t * B + r0) * G, G, dhin.data(), H);
  }
  for (int64_t b = r0; b < r1; ++b) {
    const T* dm = p.drop(b);
    const T* dhi = dhin.data() + (b - r0) * H;
    for (int64_t j = 0; j < H; ++j) dh_carry[b * H + j] += dhi[j] * dm[j];
  }
}

// ---------------------------------------------------------------- the C interface

template <typename T>
int forward(const Args* a) {
  return guarded([&] {
    const Problem<T> p(*a);
    over_blocks(p.B, p.blocks, [&](int64_t, int64_t r0, int64_t r1) {
      forward_block(p, r0, r1, static_cast<T*>(a->y), static_cast<T*>(a->h), static_cast<T*>(a->c));
    });
  });
}

template <typename T>
int backward(const Args* a) {
  return guarded([&] {
    const Problem<T> p(*a);
    const Grads<T> g{static_cast<const T*>(a->dy), static_cast<T*>(a->dgx), static_cast<T*>(a->dr),
                     static_cast<T*>(a->h), static_cast<T*>(a->c), static_cast<T*>(a->acc)};
    over_blocks(p.B, p.blocks,
                [&](int64_t block, int64_t r0, int64_t r1) { backward_block(p, g, block, r0, r1); });
  });
}

}  // namespace

extern "C" {
int rnnkit_lstm_forward_f32(const Args* a) { return forward<float>(a); }
int rnnkit_lstm_forward_f64(const Args* a) { return forward<double>(a); }
int rnnkit_lstm_backward_f32(const Args* a) { return backward<float>(a); }
int rnnkit_lstm_backward_f64(const Args* a) { return backward<double>(a); }
const char* rnnkit_lstm_error() { return last_error; }
}
