// One thread's per-step product of the native LSTM kernels, z[n, 4U] += h[n, U] @ R[U, 4U],
// in float32 (seqkit's PackedRecurrentProduct: Eigen's packing and kernel) against a bf16
// version using the CPU's bf16 dot products (AVX512-BF16: VDPBF16PS, float32 sums): the
// measurement behind the next lever for the loops (benchmarks/README.md). Needs a CPU with
// avx512_bf16; U a multiple of 32 (this sketch has no tails). Build and run (n rows per
// thread, U units, repetitions):
//
//   TF="import tensorflow as tf; print(' '.join(tf.sysconfig.get_compile_flags() + tf.sysconfig.get_link_flags()))"
//   g++ -O3 -march=native benchmarks/bf16_step_product.cc -o /tmp/step $(python -c "$TF") \
//       -Wl,-rpath,$(python -c "import tensorflow as tf; print(tf.sysconfig.get_lib())")
//   /tmp/step 64 128 2000
#include <immintrin.h>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>
#include <random>
#include "../seqkit/core/lstm_kernel.cc"  // seqkit::PackedRecurrentProduct, the kernels' float32 step product
using seqkit::PackedRecurrentProduct;

// R [K, N] row-major float -> packed bf16: for each 16-column block j, for each k pair p:
// 16 lanes of (R[2p][c], R[2p+1][c]).
struct Bf16Packed {
  int K, N;
  std::vector<uint16_t> data;
  Bf16Packed(const float* r, int K_, int N_) : K(K_), N(N_), data((size_t)K_ * N_) {
    auto bf = [](float x) { uint32_t u; std::memcpy(&u, &x, 4); u += 0x7fff + ((u >> 16) & 1); return (uint16_t)(u >> 16); };
    size_t at = 0;
    for (int j = 0; j < N; j += 16)
      for (int p = 0; p < K / 2; ++p)
        for (int c = 0; c < 16; ++c) {
          data[at++] = bf(r[(2 * p) * N + j + c]);
          data[at++] = bf(r[(2 * p + 1) * N + j + c]);
        }
  }
};

// z [n, N] += h [n, K] @ R, h float converted to bf16 here.
void Bf16AddTo(const Bf16Packed& R, const float* h, int n, float* z, std::vector<uint16_t>& hb) {
  const int K = R.K, N = R.N, P = K / 2;
  hb.resize((size_t)n * K);
  for (int r = 0; r < n; ++r)
    for (int k = 0; k < K; k += 32) {
      __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(h + r * K + k + 16), _mm512_loadu_ps(h + r * K + k));
      _mm512_storeu_si512(hb.data() + r * K + k, (__m512i)v);
    }
  const uint32_t* hp = reinterpret_cast<const uint32_t*>(hb.data());
  constexpr int RB = 4, CB = 4;  // rows x 16-column vectors per tile
  for (int j = 0; j < N; j += 16 * CB) {
    const __m512i* rb[CB];
    for (int c = 0; c < CB; ++c) rb[c] = reinterpret_cast<const __m512i*>(R.data.data() + (size_t)(j / 16 + c) * P * 32);
    int r = 0;
    for (; r + RB <= n; r += RB) {
      __m512 acc[RB][CB];
      for (int a = 0; a < RB; ++a) for (int c = 0; c < CB; ++c) acc[a][c] = _mm512_setzero_ps();
      for (int p = 0; p < P; ++p) {
        __m512i w[CB];
        for (int c = 0; c < CB; ++c) w[c] = _mm512_loadu_si512(rb[c] + p);
        for (int a = 0; a < RB; ++a) {
          __m512i x = _mm512_set1_epi32(hp[(r + a) * P + p]);
          for (int c = 0; c < CB; ++c) acc[a][c] = _mm512_dpbf16_ps(acc[a][c], (__m512bh)x, (__m512bh)w[c]);
        }
      }
      for (int a = 0; a < RB; ++a) for (int c = 0; c < CB; ++c) {
        float* o = z + (r + a) * N + j + 16 * c;
        _mm512_storeu_ps(o, _mm512_add_ps(_mm512_loadu_ps(o), acc[a][c]));
      }
    }
    for (; r < n; ++r) {
      __m512 acc[CB];
      for (int c = 0; c < CB; ++c) acc[c] = _mm512_setzero_ps();
      for (int p = 0; p < P; ++p) {
        __m512i x = _mm512_set1_epi32(hp[r * P + p]);
        for (int c = 0; c < CB; ++c) acc[c] = _mm512_dpbf16_ps(acc[c], (__m512bh)x, (__m512bh)_mm512_loadu_si512(rb[c] + p));
      }
      for (int c = 0; c < CB; ++c) { float* o = z + r * N + j + 16 * c; _mm512_storeu_ps(o, _mm512_add_ps(_mm512_loadu_ps(o), acc[c])); }
    }
  }
}

int main(int argc, char** argv) {
  int n = atoi(argv[1]), K = atoi(argv[2]), N = 4 * K, reps = atoi(argv[3]);
  std::mt19937 g(0); std::normal_distribution<float> d(0, 0.1f);
  std::vector<float> R((size_t)K * N), h((size_t)n * K), z1((size_t)n * N, 0.f), z2((size_t)n * N, 0.f);
  for (auto& x : R) x = d(g); for (auto& x : h) x = d(g) * 5;
  // Eigen path: z^T += R^T h^T with R^T [N, K] = R read column-major.
  PackedRecurrentProduct<Eigen::ColMajor> recur(R.data(), N, K, N, n);
  Eigen::VectorXf ws = recur.Workspace();
  Bf16Packed B(R.data(), K, N);
  std::vector<uint16_t> hb;
  recur.AddTo(h.data(), n, z1.data(), ws);
  Bf16AddTo(B, h.data(), n, z2.data(), hb);
  double err = 0, mx = 0;
  for (size_t i = 0; i < z1.size(); ++i) { err = std::max(err, (double)std::fabs(z1[i] - z2[i])); mx = std::max(mx, (double)std::fabs(z1[i])); }
  printf("max err %.3g of max %.3g\n", err, mx);
  for (int round = 0; round < 3; ++round) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) recur.AddTo(h.data(), n, z1.data(), ws);
    auto t1 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) Bf16AddTo(B, h.data(), n, z2.data(), hb);
    auto t2 = std::chrono::steady_clock::now();
    double a = std::chrono::duration<double>(t1 - t0).count() / reps, b = std::chrono::duration<double>(t2 - t1).count() / reps;
    double flops = 2.0 * n * K * N;
    printf("n=%d K=%d N=%d  eigen f32 %.1f us (%.0f GFLOP/s)  bf16 %.1f us (%.0f GFLOP/s)  ratio %.2fx\n", n, K, N, a * 1e6, flops / a / 1e9, b * 1e6, flops / b / 1e9, a / b);
  }
}
