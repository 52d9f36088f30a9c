// One thread's per-step product of the native LSTM kernels, z[n, 4U] += h[n, U] @ R[U, 4U],
// in float32 (PackedRecurrentProduct: Eigen's packing and kernel) against bf16 values with
// float32 sums (Bf16RecurrentProduct: VDPBF16PS), both from seqkit/core/lstm_kernel.cc, on a
// CPU with avx512_bf16. Build and run (n rows per thread, U units, repetitions):
//
//   TF="import tensorflow as tf; print(' '.join(tf.sysconfig.get_compile_flags() + tf.sysconfig.get_link_flags()))"
//   g++ -O3 -march=native benchmarks/experiments/bf16_step_product.cc -o /tmp/step $(python -c "$TF") \
//       -Wl,-rpath,$(python -c "import tensorflow as tf; print(tf.sysconfig.get_lib())")
//   /tmp/step 64 128 2000

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "../seqkit/core/lstm_kernel.cc"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s ROWS UNITS REPETITIONS\n", argv[0]);
    return 2;
  }
  const long n = std::atol(argv[1]), units = std::atol(argv[2]), g4 = 4 * units, reps = std::atol(argv[3]);
  std::mt19937 gen(0);
  std::normal_distribution<float> normal(0.0f, 0.1f);
  std::vector<float> r(units * g4), h(n * units), z32(n * g4, 0.0f), z16(n * g4, 0.0f);
  for (float& v : r) v = normal(gen);
  for (float& v : h) v = 5 * normal(gen);
  // As the forward op: z^T += R^T @ h^T in float32; z += h @ R in bf16.
  const seqkit::PackedRecurrentProduct<Eigen::ColMajor> f32(r.data(), g4, units, g4, n);
  const seqkit::Bf16RecurrentProduct bf16(r.data(), units, g4, g4, 1, n);
  auto w32 = f32.MakeWorkspace();
  auto w16 = bf16.MakeWorkspace();
  f32.AddTo(h.data(), n, z32.data(), w32);
  bf16.AddTo(h.data(), n, z16.data(), w16);
  double diff = 0, largest = 0;
  for (long i = 0; i < n * g4; ++i) {
    diff = std::max(diff, double(std::fabs(z32[i] - z16[i])));
    largest = std::max(largest, double(std::fabs(z32[i])));
  }
  const double flops = 2.0 * n * units * g4;
  for (int round = 0; round < 3; ++round) {
    const auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < reps; ++i) f32.AddTo(h.data(), n, z32.data(), w32);
    const auto t1 = std::chrono::steady_clock::now();
    for (long i = 0; i < reps; ++i) bf16.AddTo(h.data(), n, z16.data(), w16);
    const auto t2 = std::chrono::steady_clock::now();
    const double a = std::chrono::duration<double>(t1 - t0).count() / reps;
    const double b = std::chrono::duration<double>(t2 - t1).count() / reps;
    std::printf("%ld rows x %ld units: float32 %.1f us (%.0f GFLOP/s), bf16 %.1f us (%.0f GFLOP/s), %.2fx; "
                "largest difference %.2f%% of the largest value\n",
                n, units, a * 1e6, flops / a / 1e9, b * 1e6, flops / b / 1e9, a / b, 100 * diff / largest);
  }
}
