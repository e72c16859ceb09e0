// The time loop of one GRU layer direction, forward and backward, in one call each.
//
// The maths is rnnkit's GRUCell (src/rnnkit/cells/gru.py; spec: functional/steps.py gru_update):
//   u  = N_ih(W_ih x_t) + b_ih,   v = N_hh(W_hh (h * dropout_mask)) + b_hh     (N(q) = LN(q) * gamma)
//   r = sigmoid(u_r + v_r);  z = sigmoid(u_z + v_z);  n = tanh(u_n + r v_n)  (torch's gate order r, z, n)
//   h_n = n + z (h - n)                                                       (Cho et al. 2014, torch's form)
//   h' = h_n + k (h - h_n)                                                    (zoneout, Krueger et al. 2016)
//   steps t >= length keep the state and give y = 0.
// The reset gate multiplies v_n, the hidden projection with its bias b_hn, as torch and cuDNN do; so
// the two biases stay apart (a layer norm's beta is folded into the bias beside it by the caller).
// Without layer norm, N(q) is q. gx (T, B, 3H) holds W_ih x_t of every step, one matrix product made
// in torch before the loop; its layer norm is fused in here and, in training, overwrites gx with the
// normalised values that backward needs (xhat is then gx).
//
// The layout follows csrc/lstm_loop.cpp; the helpers both use (Gemm, the float nonlinearities, row
// sums, layer norm and its backward) are in loop_common.h.
// Rows of the batch never mix inside a step, so the batch is split into one block of rows per thread
// and each thread runs the whole sequence for its block: one GEMM and one fused elementwise pass per
// step, with no barrier between steps. Backward runs the same way in reverse; dW_hh is then one GEMM
// over all steps, made by the caller.
// Shapes: B batch, T steps, H hidden, G = 3H. Outputs y and their gradients are batch-first (B, T, H);
// everything else is time-major (T, B, ...), so the rows a thread reads at one step lie together.

#include "loop_common.h"

namespace {

using namespace rnnkit_loop;

// ---------------------------------------------------------------- the problem

// What Python passes: one struct of sizes and pointers (see functional/gru_loop.py, _Args).
struct Args {
  int64_t B, T, H, blocks;
  const void *gx, *w, *bias_ih, *bias_hh, *gam_ih, *gam_h, *dmask, *zmask;
  const int64_t* lens;
  double eps_ih, eps_h, zoneout;
  void *y, *h;  // forward: h0 -> h_T; backward: dL/dh_T -> dL/dh0
  void *gates, *ghn, *hs, *hin, *xhat, *rstd_ih, *rhat, *rstd_h;  // saved; null in inference
  const void* dy;
  void *dgx, *dr, *acc;
};

// Every pointer of one call, typed. Optional inputs are null when absent; the saved arrays are null
// in inference. Constant rows stand in for absent biases and masks so the inner loops never branch.
template <typename T>
struct Problem {
  int64_t B, T_, H, blocks;
  const T* gx;       // (T, B, 3H): W_ih x, before its layer norm and bias
  const T* w;        // (3H, H)
  const T* bias_ih;  // (3H) or zeros: b_ih (+ LN_ih's beta)
  const T* bias_hh;  // (3H) or zeros: b_hh (+ LN_hh's beta); its n part is inside the reset gate
  const T* gam_ih;   // (3H) or null: layer norm of W_ih x
  const T* gam_h;    // (3H) or null: layer norm of W_hh h
  T eps_ih, eps_h;
  const T* dmask;   // (B, H) or null: recurrent dropout on h before W_hh
  const T* zmask;   // (T, B, H) or null: zoneout keep masks per step
  const T* zconst;  // (H) filled with the eval-mode zoneout probability (0 when off)
  const T* ones;    // (H)
  const int64_t* lens;  // (B) or null
  // saved for backward (null in inference)
  T* gates;    // (T, B, 3H): r, z, n after their nonlinearities
  T* ghn;      // (T, B, H): v_n, the hidden projection the reset gate multiplies
  T* hs;       // (T + 1, B, H): h before each step, then the final h
  T* hin;      // (T, B, H) or null: h * dropout_mask, the GEMM's input; null without dropout (hs is)
  T* xhat;     // (T, B, 3H): normalised W_ih x
  T* rstd_ih;  // (T, B)
  T* rhat;     // (T, B, 3H): normalised W_hh h
  T* rstd_h;   // (T, B)
  std::vector<T> constants;  // zeros (3H), ones (H), zoneout (H)

  explicit Problem(const Args& a) : B(a.B), T_(a.T), H(a.H), blocks(a.blocks), constants(5 * a.H, T(0)) {
    T* zeros = constants.data();
    std::fill(zeros + 3 * H, zeros + 4 * H, T(1));
    std::fill(zeros + 4 * H, zeros + 5 * H, T(a.zoneout));
    ones = zeros + 3 * H, zconst = zeros + 4 * H;
    gx = cast(a.gx), w = cast(a.w);
    bias_ih = a.bias_ih ? cast(a.bias_ih) : zeros, bias_hh = a.bias_hh ? cast(a.bias_hh) : zeros;
    gam_ih = cast(a.gam_ih), gam_h = cast(a.gam_h);
    eps_ih = T(a.eps_ih), eps_h = T(a.eps_h);
    dmask = cast(a.dmask), zmask = cast(a.zmask), lens = a.lens;
    gates = mut(a.gates), ghn = mut(a.ghn), hs = mut(a.hs), hin = mut(a.hin);
    xhat = mut(a.xhat), rstd_ih = mut(a.rstd_ih), rhat = mut(a.rhat), rstd_h = mut(a.rstd_h);
  }
  Problem(const Problem&) = delete;

  static const T* cast(const void* p) { return static_cast<const T*>(p); }
  static T* mut(void* p) { return static_cast<T*>(p); }
  bool active(int64_t b, int64_t t) const { return lens == nullptr || t < lens[b]; }
  const T* drop(int64_t b) const { return dmask ? dmask + b * H : ones; }
  const T* keep(int64_t b, int64_t t) const { return zmask ? zmask + (t * B + b) * H : zconst; }
};

// ---------------------------------------------------------------- forward

template <typename T>
void forward_block(const Problem<T>& p, int64_t r0, int64_t r1, T* y, T* hT) {
  const int64_t B = p.B, Tn = p.T_, H = p.H, G = 3 * H, M = r1 - r0;
  const bool save = p.gates != nullptr, drop = p.dmask != nullptr;
  // The GEMM's input at step t: without dropout h itself (the saved h before the step in training, the
  // running h in inference), else h * mask (saved in training, a scratch block in inference).
  std::vector<T> rbuf(M * G), hin_buf(!save && drop ? M * H : 0), scratch(2 * G + 2 * H);
  T *xbuf = scratch.data(), *gates_tmp = xbuf + G, *ghn_tmp = gates_tmp + G, *hin_tmp = ghn_tmp + H;
  const Gemm<T> recurrent('T', M, G, H, p.w, H, Tn);  // (M, 3H) = hin (M, H) @ W_hh^T
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
      const T* hp = save ? p.hs + tb * H : hT + b * H;  // h before the step
      T* hnext = save ? p.hs + (tb + B) * H : hT + b * H;  // may alias hp
      T* yrow = y + bt * H;
      T* hin_next = t + 1 == Tn || !drop ? hin_tmp : save ? p.hin + (tb + B) * H : hin_buf.data() + m * H;
      const T* dm = p.drop(b);
      if (!p.active(b, t)) {  // padded step: the state stays, the output is zero
        std::fill(yrow, yrow + H, T(0));
        if (save) std::copy(hp, hp + H, hnext);
        for (int64_t j = 0; j < H; ++j) hin_next[j] = hp[j] * dm[j];
        continue;
      }
      T* v = rbuf.data() + m * G;  // W_hh h, then N_hh of it
      const T* u = p.gx + tb * G;  // W_ih x, then N_ih of it
      const int64_t next = b + 1 < r1 ? tb + 1 : t + 1 < Tn ? (t + 1) * B + r0 : -1;
      if (next >= 0) prefetch(p.gx + next * G, G);
      if (p.gam_h) {  // v <- LN(v) * gamma_hh
        const T rstd = layer_norm<false>(v, G, p.eps_h, p.gam_h, save ? p.rhat + tb * G : nullptr, v);
        if (save) p.rstd_h[tb] = rstd;
      }
      if (p.gam_ih) {  // u <- LN(W_ih x) * gamma_ih, in a scratch row
        const T rstd = layer_norm<false>(u, G, p.eps_ih, p.gam_ih, save ? p.xhat + tb * G : nullptr, xbuf);
        if (save) p.rstd_ih[tb] = rstd;
        u = xbuf;
      }
      T* gates = save ? p.gates + tb * G : gates_tmp;
      T* ghn = save ? p.ghn + tb * H : ghn_tmp;
      const T *bi = p.bias_ih, *bh = p.bias_hh, *k = p.keep(b, t);
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T r = sigmoid((u[j] + bi[j]) + (v[j] + bh[j]));
        const T z = sigmoid((u[H + j] + bi[H + j]) + (v[H + j] + bh[H + j]));
        const T vn = v[2 * H + j] + bh[2 * H + j];
        const T n = tanh_((u[2 * H + j] + bi[2 * H + j]) + r * vn);
        const T h = hp[j];
        const T hn = n + z * (h - n);
        const T hnew = hn + k[j] * (h - hn);
        hnext[j] = hnew;
        yrow[j] = hnew;
        hin_next[j] = hnew * dm[j];
        gates[j] = r;
        gates[H + j] = z;
        gates[2 * H + j] = n;
        ghn[j] = vn;
      }
    }
  }
  if (save) {
    for (int64_t b = r0; b < r1; ++b) {
      const T* h = p.hs + (Tn * B + b) * H;
      std::copy(h, h + H, hT + b * H);
    }
  }
}

// ---------------------------------------------------------------- backward

template <typename T>
struct Grads {
  const T* dy;  // (B, T, H)
  T* dgx;       // (T, B, 3H): dL/d(W_ih x)
  T* dr;        // (T, B, 3H): dL/d(W_hh h); never dgx: the reset gate makes them differ on n
  T* dh0;       // (B, H); holds dL/dh_T on entry
  T* acc;       // (blocks, 4 * 3H): dbias_ih, dbias_hh, dgamma_ih, dgamma_hh per block
};

template <typename T>
void backward_block(const Problem<T>& p, const Grads<T>& g, int64_t block, int64_t r0, int64_t r1) {
  const int64_t B = p.B, Tn = p.T_, H = p.H, G = 3 * H, M = r1 - r0;
  std::vector<T> dhin(M * H, T(0)), du_tmp(G), dv_tmp(G);
  T* dh_carry = g.dh0;  // per row: dL/dh' from later steps, less the part through W_hh
  T* acc = g.acc + block * 4 * G;  // this block's own sums: no races, fixed order
  T *dbias_ih = acc, *dbias_hh = acc + G, *dgam_ih = acc + 2 * G, *dgam_h = acc + 3 * G;
  const Gemm<T> recurrent('N', M, H, G, p.w, H, Tn);  // (M, H) = dr (M, 3H) @ W_hh

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
      // dL/du and dL/dv, kept where the layer-norm backwards read them
      T* du = p.gam_ih ? du_tmp.data() : dgx;
      T* dv = p.gam_h ? dv_tmp.data() : dr;
      const T* gt = p.gates + tb * G;
      const T* vn = p.ghn + tb * H;
      const T* hp = p.hs + tb * H;
      const T* dyr = g.dy + bt * H;
      const T* k = p.keep(b, t);
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T d = dhc[j] + dhi[j] * dm[j] + dyr[j];  // dL/dh' at this step
        const T dhn = d * (T(1) - k[j]);
        const T r = gt[j], z = gt[H + j], n = gt[2 * H + j];
        const T dan = dhn * (T(1) - z) * (T(1) - n * n);  // dL/d(u_n + r v_n)
        const T dar = dan * vn[j] * r * (T(1) - r);
        const T daz = dhn * (hp[j] - n) * z * (T(1) - z);
        dhc[j] = d * k[j] + dhn * z;
        du[j] = dar;
        du[H + j] = daz;
        du[2 * H + j] = dan;
        dv[j] = dar;
        dv[H + j] = daz;
        dv[2 * H + j] = dan * r;
      }
      add_to(dbias_ih, du, G);
      add_to(dbias_hh, dv, G);
      if (p.gam_h) {
        const T* rh = p.rhat + tb * G;
        add_product_to(dgam_h, dv, rh, G);
        norm_backward(dv, p.gam_h, rh, p.rstd_h[tb], G, dr);
      }
      if (p.gam_ih) {
        const T* xh = p.xhat + tb * G;
        add_product_to(dgam_ih, du, xh, G);
        norm_backward(du, p.gam_ih, xh, p.rstd_ih[tb], G, dgx);
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
      forward_block(p, r0, r1, static_cast<T*>(a->y), static_cast<T*>(a->h));
    });
  });
}

template <typename T>
int backward(const Args* a) {
  return guarded([&] {
    const Problem<T> p(*a);
    const Grads<T> g{static_cast<const T*>(a->dy), static_cast<T*>(a->dgx), static_cast<T*>(a->dr),
                     static_cast<T*>(a->h), static_cast<T*>(a->acc)};
    over_blocks(p.B, p.blocks,
                [&](int64_t block, int64_t r0, int64_t r1) { backward_block(p, g, block, r0, r1); });
  });
}

}  // namespace

extern "C" {
int rnnkit_gru_forward_f32(const Args* a) { return forward<float>(a); }
int rnnkit_gru_forward_f64(const Args* a) { return forward<double>(a); }
int rnnkit_gru_backward_f32(const Args* a) { return backward<float>(a); }
int rnnkit_gru_backward_f64(const Args* a) { return backward<double>(a); }
const char* rnnkit_gru_error() { return last_error; }
}
