// The numerical helpers of the time-loop driver (driver.h): BLAS products with the weights packed
// once per call, float nonlinearities the compiler vectorises, row reductions, layer norm and its
// backward, the split of the batch between threads, and errors kept for the C interface. Each
// library (lstm_loop.cpp, gru_loop.cpp, rnn_loop.cpp) is one translation unit that includes it once.

#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <type_traits>
#include <vector>

extern "C" {  // Fortran BLAS with 32-bit integers: exported by the MKL or OpenBLAS that torch links
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*,
            const int*, const float*, const int*, const float*, float*, const int*);
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*,
            const int*, const double*, const int*, const double*, double*, const int*);
// MKL's packed GEMM: W_hh is packed once per call instead of at every step. Weak: null without MKL.
size_t sgemm_pack_get_size_(const char*, const int*, const int*, const int*) __attribute__((weak));
void sgemm_pack_(const char*, const char*, const int*, const int*, const int*, const float*, const float*,
                 const int*, float*) __attribute__((weak));
void sgemm_compute_(const char*, const char*, const int*, const int*, const int*, const float*, const int*,
                    const float*, const int*, const float*, float*, const int*) __attribute__((weak));
}


namespace rnnkit_loop {

// out (M, N) = x (M, K) @ op(w) for row-major arrays, with op(w) = w^T for w (N, K) (tw = 'T') or w
// for w (K, N) (tw = 'N'); ld* are row strides. In BLAS's column-major terms this is
// out^T = op(w)^T x^T, so w is BLAS's A. The weights stay fixed through a call, so float packs them
// once (MKL) and every step reuses the packed copy; double, or BLAS without packing, calls ?gemm.
template <typename T>
class Gemm {
 public:
  // uses: how many products the call will make; packing pays from two on
  Gemm(char tw, int64_t M, int64_t N, int64_t K, const T* w, int64_t ldw, int64_t uses)
      : tw_(tw), M_(int(M)), N_(int(N)), K_(int(K)), ldw_(int(ldw)), w_(w) {
    if constexpr (std::is_same_v<T, float>) {
      if (uses > 1 && sgemm_pack_get_size_ && sgemm_pack_ && sgemm_compute_) {
        const float one = 1;
        // MKL asks for far more than it writes: leave the buffer uninitialised, so untouched pages stay free
        packed_.reset(new float[sgemm_pack_get_size_("A", &N_, &M_, &K_) / sizeof(float) + 1]);
        sgemm_pack_("A", &tw_, &N_, &M_, &K_, &one, w_, &ldw_, packed_.get());
      }
    }
  }

  void operator()(const T* x, int64_t ldx, T* out, int64_t ldo) const {
    const int lx = int(ldx), lo = int(ldo);
    const T one = 1, zero = 0;
    if constexpr (std::is_same_v<T, float>) {
      if (packed_) {
        sgemm_compute_("P", "N", &N_, &M_, &K_, packed_.get(), &ldw_, x, &lx, &zero, out, &lo);
      } else {
        sgemm_(&tw_, "N", &N_, &M_, &K_, &one, w_, &ldw_, x, &lx, &zero, out, &lo);
      }
    } else {
      dgemm_(&tw_, "N", &N_, &M_, &K_, &one, w_, &ldw_, x, &lx, &zero, out, &lo);
    }
  }

 private:
  char tw_;
  int M_, N_, K_, ldw_;
  const T* w_;
  std::unique_ptr<T[]> packed_;
};

// ---------------------------------------------------------------- nonlinearities
// float: branch-free polynomial forms (Cephes) that the compiler vectorises; within 2 ulp of libm.
// double: libm, so float64 results match torch to rounding.

// Plain ternaries, not std::min/max: those take references and block vectorisation.
inline float clamp(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

// 2^n * (1 + e) with |e| small: n = round(x / ln 2), e = expm1(x - n ln 2) as a polynomial (Cephes).
struct ExpParts {
  float scale, em1;
};

inline ExpParts exp_parts(float x) {
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(x / ln 2)
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;             // x - n ln 2, two parts
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  union {
    int32_t i;
    float f;
  } scale;
  scale.i = (static_cast<int32_t>(n) + 127) << 23;  // 2^n
  return {scale.f, p * r * r + r};
}

inline float exp_approx(float x) {
  const auto e = exp_parts(clamp(x, -87.0f, 88.0f));
  return e.scale + e.scale * e.em1;
}

inline float sigmoid(float x) { return 1.0f / (1.0f + exp_approx(-x)); }
inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// tanh x = m / (m + 2) with m = expm1(2x) = 2^n (1 + e) - 1: accurate near 0 too, and branch-free.
inline float tanh_(float x) {
  const auto e = exp_parts(2.0f * clamp(x, -9.0f, 9.0f));
  const float m = e.scale * e.em1 + (e.scale - 1.0f);
  return m / (m + 2.0f);
}
inline double tanh_(double x) { return std::tanh(x); }

// ---------------------------------------------------------------- row helpers

template <typename T>
struct Stats {
  T mean, rstd;
};

// Sum of f(x[k]) over a row, in 32 lanes: independent chains the compiler turns into several vector
// accumulators (one chain would wait on the adder's latency at every step).
template <typename T, typename F>
inline T row_sum(const T* x, int64_t n, const F& f) {
  constexpr int64_t L = 32;
  T lanes[L] = {};
  int64_t k = 0;
  for (; k + L <= n; k += L) {
    for (int64_t l = 0; l < L; ++l) lanes[l] += f(x[k + l]);
  }
  T sum = 0;
  for (; k < n; ++k) sum += f(x[k]);
  for (int64_t l = 0; l < L; ++l) sum += lanes[l];
  return sum;
}

// Mean and 1/sqrt(biased variance + eps) of x[0:n], two passes as torch's LayerNorm.
template <typename T>
inline Stats<T> row_stats(const T* x, int64_t n, T eps) {
  const T mean = row_sum(x, n, [](T v) { return v; }) / n;
  const T var = row_sum(x, n, [mean](T v) { return (v - mean) * (v - mean); }) / n;
  return {mean, T(1) / std::sqrt(var + eps)};
}

// Given dy = dL/dy for y = (x - mean) * rstd * gamma, with xhat, write dL/dx to dx:
// dx = rstd * (dxh - mean(dxh) - xhat * mean(dxh * xhat)), dxh = dy * gamma.
template <typename T>
inline void norm_backward(const T* dy, const T* gamma, const T* xhat, T rstd, int64_t n, T* dx) {
  T s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
  for (int64_t k = 0; k < n; ++k) {
    const T d = dy[k] * gamma[k];
    s1 += d;
    s2 += d * xhat[k];
  }
  s1 /= n;
  s2 /= n;
#pragma omp simd
  for (int64_t k = 0; k < n; ++k) dx[k] = rstd * (dy[k] * gamma[k] - s1 - xhat[k] * s2);
}

template <typename T>
inline void add_to(T* acc, const T* x, int64_t n) {
#pragma omp simd
  for (int64_t k = 0; k < n; ++k) acc[k] += x[k];
}

template <typename T>
inline void add_product_to(T* acc, const T* x, const T* y, int64_t n) {
#pragma omp simd
  for (int64_t k = 0; k < n; ++k) acc[k] += x[k] * y[k];
}


// Threads share the batch: block c of n holds rows [c * B / n, (c + 1) * B / n).
template <typename F>
void over_blocks(int64_t B, int64_t blocks, const F& body) {
  if (blocks <= 1) {
    body(int64_t(0), int64_t(0), B);
    return;
  }
  at::parallel_for(0, blocks, 1, [&](int64_t first, int64_t last) {
    for (int64_t c = first; c < last; ++c) body(c, c * B / blocks, (c + 1) * B / blocks);
  });
}

// out = LN(x) * gamma over a row of n, or out += that (Accumulate); xhat, unless null, receives the
// normalised x. x may be out or xhat (each element is read before it is written). Returns 1/std.
template <bool Accumulate, typename T>
inline T layer_norm(const T* x, int64_t n, T eps, const T* gamma, T* xhat, T* out) {
  const auto st = row_stats(x, n, eps);
  if (xhat) {
#pragma omp simd
    for (int64_t k = 0; k < n; ++k) {
      const T v = (x[k] - st.mean) * st.rstd;
      xhat[k] = v;
      out[k] = (Accumulate ? out[k] : T(0)) + v * gamma[k];
    }
  } else {
#pragma omp simd
    for (int64_t k = 0; k < n; ++k) out[k] = (Accumulate ? out[k] : T(0)) + (x[k] - st.mean) * st.rstd * gamma[k];
  }
  return st.rstd;
}

// Asks for a row of n values ahead of use: the next row's input projection comes from memory.
template <typename T>
inline void prefetch(const T* row, int64_t n) {
#if defined(__GNUC__)
  for (int64_t k = 0; k < n; k += 64 / sizeof(T)) __builtin_prefetch(row + k);
#endif
}

// ---------------------------------------------------------------- errors for the C interface

inline thread_local char last_error[512] = "";

template <typename F>
int guarded(const F& body) {
  try {
    body();
    return 0;
  } catch (const std::exception& e) {
    std::snprintf(last_error, sizeof last_error, "%s", e.what());
  } catch (...) {
    std::snprintf(last_error, sizeof last_error, "unknown C++ exception");
  }
  return 1;
}


}  // namespace rnnkit_loop
