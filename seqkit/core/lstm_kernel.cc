// The fused LSTM's two loops (forward, and backward through time) as TensorFlow CPU ops,
// and the forward loop alone for inference.
//
// Under XLA each loop iteration is ten or so small ops, each dispatched on its own and
// handed between the cores; on a small model (row-MNIST, 1 x 128) that dispatch, not the
// arithmetic, is most of a training step. Here the batch is split once into one block of
// rows per thread and each thread runs every time step of its rows on its own: rows of a
// batch never meet in a recurrence, so the threads need no synchronization until the end.
// A step is one single-threaded matmul (h @ R, R packed once per op; from bf16 values with
// the ops' bf16 attribute, on a CPU with bf16 dot products) and the gate arithmetic,
// vectorized. The input projection b + x @ W is the forward op's too: each thread makes it
// for its rows a few steps ahead, into a buffer that stays in cache. (As one matmul over
// all steps before the op it wrote a [T, B, 4U] array that the loop then read back, one
// more trip through memory for the largest array of the layer.)
//
// Shapes: T steps, B rows, F input features, U units, gates in the order i, f, g, o (as
// seqkit's LSTMCell). The large matmuls of the backward pass (the kernels' and the input's
// gradients, over all steps at once) are left to TensorFlow, outside these ops: oneDNN runs
// them multi-threaded, in bf16 where asked (seqkit/core/fused.py). The forward op keeps each
// step's [x_t, h] for them, so that both kernels' gradients are one matmul.

#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

#include "Eigen/Core"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace seqkit {

using tensorflow::DEVICE_CPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixMap = Eigen::Map<Matrix>;
using ConstMatrixMap = Eigen::Map<const Matrix>;
using ArrayMap = Eigen::Map<Eigen::ArrayXf>;
using ConstArrayMap = Eigen::Map<const Eigen::ArrayXf>;

namespace ei = Eigen::internal;

// out += A @ x, A [m, k] being the recurrent or input kernel (fixed for the whole op,
// stored in AOrder) and x [k, n] one step's rows or a few steps' (column-major; out [m, n]
// too: h^T and z^T are the row-major h and z). Eigen's `z.noalias() += h * R` repacks R
// into cache-sized panels on every call (4 MiB at 512 units, once per step and thread) and
// allocates its buffers per call, which glibc served on worker threads as fresh mmaps, unmapped on free: on a 2 x 512
// model that was 340,000 page faults a second and half of the training time. Here A is
// packed once per op, shared read-only by the threads, and each thread packs only its thin
// x into a buffer it keeps; the panel loops and kernel are Eigen's own (GeneralMatrixMatrix.h).
template <int AOrder>
class PackedRecurrentProduct {
  using Index = Eigen::Index;
  using Traits = ei::gebp_traits<float, float>;
  using AMapper = ei::const_blas_data_mapper<float, Index, AOrder>;
  using XMapper = ei::const_blas_data_mapper<float, Index, Eigen::ColMajor>;
  using OutMapper = ei::blas_data_mapper<float, Index, Eigen::ColMajor, Eigen::Unaligned, 1>;
  static constexpr Index kAlign = 16;  // floats: each packed panel starts 64-byte aligned

 public:
  // Packs a [m, k] (leading dimension a_stride) for products with up to max_n columns.
  PackedRecurrentProduct(const float* a, Index m, Index k, Index a_stride, Index max_n)
      : m_(m), k_(k), kc_(k), mc_(m), nc_(max_n) {
    ei::computeProductBlockingSizes<float, float, 1>(kc_, mc_, nc_, Index{1});
    Index total = 0;
    for (Index i = 0; i < m_; i += mc_)
      for (Index d = 0; d < k_; d += kc_) {
        offsets_.push_back(total);
        total += (std::min(mc_, m_ - i) * std::min(kc_, k_ - d) + kAlign - 1) / kAlign * kAlign;
      }
    packed_.resize(total);
    ei::gemm_pack_lhs<float, Index, AMapper, Traits::mr, Traits::LhsProgress, typename Traits::LhsPacket4Packing,
                      AOrder>
        pack;
    const AMapper a_map(a, a_stride);
    std::size_t panel = 0;
    for (Index i = 0; i < m_; i += mc_)
      for (Index d = 0; d < k_; d += kc_)
        pack(packed_.data() + offsets_[panel++], a_map.getSubMapper(i, d), std::min(kc_, k_ - d),
             std::min(mc_, m_ - i));
  }

  // A thread's buffer for its packed x.
  Eigen::VectorXf MakeWorkspace() const { return Eigen::VectorXf(kc_ * nc_); }

  // out += A @ x for x [k, n] (leading dimension k) and out [m, n] (leading dimension m).
  void AddTo(const float* x, Index n, float* out, Eigen::VectorXf& workspace) const {
    ei::gemm_pack_rhs<float, Index, XMapper, Traits::nr, Eigen::ColMajor> pack_x;
    ei::gebp_kernel<float, float, Index, OutMapper, Traits::mr, Traits::nr, false, false> gebp;
    const XMapper x_map(x, k_);
    const OutMapper out_map(out, m_, 1);
    const Index panels_per_row = (k_ + kc_ - 1) / kc_;
    for (Index j = 0; j < n; j += nc_) {
      const Index nc = std::min(nc_, n - j);
      for (Index d = 0, kp = 0; d < k_; d += kc_, ++kp) {
        const Index kc = std::min(kc_, k_ - d);
        pack_x(workspace.data(), x_map.getSubMapper(d, j), kc, nc);
        for (Index i = 0, ip = 0; i < m_; i += mc_, ++ip)
          gebp(out_map.getSubMapper(i, j), packed_.data() + offsets_[ip * panels_per_row + kp], workspace.data(),
               std::min(mc_, m_ - i), kc, nc, 1.0f);
      }
    }
  }

 private:
  const Index m_, k_;
  Index kc_, mc_, nc_;
  std::vector<Index> offsets_;
  Eigen::VectorXf packed_;
};

#if defined(__AVX512BF16__)
constexpr bool kHasBf16 = true;

// out[n, N] += x[n, K] @ M from bf16 values with float32 sums (VDPBF16PS), M [K, N] fixed for
// the op: M[k][c] = a[k * k_stride + c * c_stride] (R, or R^T read from R). M is packed once
// into bf16 pairs along k, 16 columns a vector (zero past N and K); each step converts its x
// rows into the thread's workspace and runs 4-row x 64-column register tiles. One thread's
// product runs about 2x the float32 one (benchmarks/README.md).
class Bf16RecurrentProduct {
  using Index = Eigen::Index;

 public:
  using Workspace = std::vector<uint16_t>;

  Bf16RecurrentProduct(const float* a, Index k, Index n, Index k_stride, Index c_stride, Index max_rows)
      : k_(k), n_(n), pairs_((k + 1) / 2), vectors_((n + 15) / 16), max_rows_(max_rows),
        packed_(static_cast<size_t>(vectors_) * pairs_ * 32, 0) {
    uint16_t* out = packed_.data();
    for (Index v = 0; v < vectors_; ++v)
      for (Index p = 0; p < pairs_; ++p)
        for (Index lane = 0; lane < 16; ++lane, out += 2) {
          const Index c = 16 * v + lane;
          if (c >= n_) continue;
          out[0] = ToBf16(a[2 * p * k_stride + c * c_stride]);
          if (2 * p + 1 < k_) out[1] = ToBf16(a[(2 * p + 1) * k_stride + c * c_stride]);
        }
  }

  Workspace MakeWorkspace() const { return Workspace(static_cast<size_t>(max_rows_) * 2 * pairs_, 0); }

  void AddTo(const float* x, Index n, float* out, Workspace& workspace) const {
    for (Index r = 0; r < n; ++r)  // x rows in bf16; an odd K leaves a zero at the end of each row
      for (Index k = 0; k < k_; k += 16) {
        const __mmask16 mask = k_ - k >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (k_ - k)) - 1);
        const __m256bh row = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, x + r * k_ + k));
        _mm256_mask_storeu_epi16(workspace.data() + r * 2 * pairs_ + k, mask, (__m256i)row);
      }
    const uint32_t* pairs = reinterpret_cast<const uint32_t*>(workspace.data());
    for (Index v = 0; v < vectors_; v += 4) {
      Index r = 0;
      for (; r + 4 <= n; r += 4) Tiles<4>(pairs, r, v, out);
      for (; r < n; ++r) Tiles<1>(pairs, r, v, out);
    }
  }

 private:
  static uint16_t ToBf16(float value) {  // round to nearest even, as VCVTNEPS2BF16
    uint32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    return static_cast<uint16_t>((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
  }

  template <int Rows>
  void Tiles(const uint32_t* pairs, Index r, Index v, float* out) const {
    switch (std::min<Index>(4, vectors_ - v)) {
      case 4: return Tile<Rows, 4>(pairs, r, v, out);
      case 3: return Tile<Rows, 3>(pairs, r, v, out);
      case 2: return Tile<Rows, 2>(pairs, r, v, out);
      default: return Tile<Rows, 1>(pairs, r, v, out);
    }
  }

  // Rows rows from r, Vectors 16-column vectors from v.
  template <int Rows, int Vectors>
  void Tile(const uint32_t* pairs, Index r, Index v, float* out) const {
    __m512 acc[Rows][Vectors];
    for (int i = 0; i < Rows; ++i)
      for (int j = 0; j < Vectors; ++j) acc[i][j] = _mm512_setzero_ps();
    const __m512i* m = reinterpret_cast<const __m512i*>(packed_.data()) + v * pairs_;
    for (Index p = 0; p < pairs_; ++p) {
      __m512i w[Vectors];
      for (int j = 0; j < Vectors; ++j) w[j] = _mm512_loadu_si512(m + j * pairs_ + p);
      for (int i = 0; i < Rows; ++i) {
        const __m512bh x = (__m512bh)_mm512_set1_epi32(static_cast<int>(pairs[(r + i) * pairs_ + p]));
        for (int j = 0; j < Vectors; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], x, (__m512bh)w[j]);
      }
    }
    for (int i = 0; i < Rows; ++i)
      for (int j = 0; j < Vectors; ++j) {
        const Index c = 16 * (v + j);
        const __mmask16 mask = n_ - c >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (n_ - c)) - 1);
        float* o = out + (r + i) * n_ + c;
        _mm512_mask_storeu_ps(o, mask, _mm512_add_ps(_mm512_maskz_loadu_ps(mask, o), acc[i][j]));
      }
  }

  const Index k_, n_, pairs_, vectors_, max_rows_;
  std::vector<uint16_t> packed_;
};
#else
constexpr bool kHasBf16 = false;
#endif

// About how many floats of input projections a thread of the forward op keeps at a time.
constexpr int64_t kChunkFloats = 64 * 1024;
// At most how many rows a block of the forward op takes through the steps.
constexpr int64_t kMaxBlockRows = 64;

// How many blocks the batch's rows are split into: one per worker thread.
int64_t RowBlocks(OpKernelContext* ctx, int64_t rows) {
  const int threads = ctx->device()->tensorflow_cpu_worker_threads()->num_threads;
  return std::max<int64_t>(1, std::min<int64_t>(threads, rows));
}

// Runs fn(block, first_row, end_row) for each of `blocks` blocks of rows, in parallel;
// a block left without rows (5 rows in 4 blocks of 2) is skipped.
template <typename Fn>
void ForRowBlocks(OpKernelContext* ctx, int64_t rows, int64_t blocks, Fn fn) {
  const int64_t per_block = (rows + blocks - 1) / blocks;
  auto run = [&](int64_t b) {
    const int64_t first = std::min(rows, b * per_block), end = std::min(rows, (b + 1) * per_block);
    if (first < end) fn(b, first, end);
  };
  if (blocks == 1) {
    run(0);
    return;
  }
  // A cost far above any split threshold makes each block its own task.
  ctx->device()->tensorflow_cpu_worker_threads()->workers->ParallelFor(
      blocks, 1 << 30, [&](int64_t first, int64_t last) {
        for (int64_t b = first; b < last; ++b) run(b);
      });
}

// The forward loop's shapes; the inference op has the first three outputs alone.
absl::Status ForwardShapes(InferenceContext* c) {
  ShapeHandle state = c->input(4);
  ShapeHandle steps_rows;
  TF_RETURN_IF_ERROR(c->Subshape(c->input(0), 0, 2, &steps_rows));
  ShapeHandle units;
  TF_RETURN_IF_ERROR(c->Subshape(state, 1, 2, &units));
  ShapeHandle sequence;
  TF_RETURN_IF_ERROR(c->Concatenate(steps_rows, units, &sequence));
  c->set_output(0, sequence);
  c->set_output(1, state);
  c->set_output(2, state);
  if (c->num_outputs() == 6) {
    ShapeHandle gates;
    TF_RETURN_IF_ERROR(c->Concatenate(steps_rows, c->Vector(c->Dim(c->input(1), 1)), &gates));
    tensorflow::shape_inference::DimensionHandle width;
    TF_RETURN_IF_ERROR(c->Add(c->Dim(c->input(0), 2), c->Dim(state, 1), &width));
    ShapeHandle inputs;
    TF_RETURN_IF_ERROR(c->Concatenate(steps_rows, c->Vector(width), &inputs));
    c->set_output(3, gates);
    c->set_output(4, sequence);
    c->set_output(5, inputs);
  }
  return absl::OkStatus();
}

// The ops' "bf16" attribute (the inference op has none: false), refused by a build for a CPU
// without bf16 dot products.
bool Bf16Attr(OpKernelConstruction* ctx) {
  bool bf16 = false;
  if (ctx->HasAttr("bf16")) {
    const absl::Status status = ctx->GetAttr("bf16", &bf16);
    if (!status.ok()) ctx->CtxFailure(status);
  }
  if (bf16 && !kHasBf16) ctx->CtxFailure(absl::InvalidArgumentError("seqkit's kernels were built without bf16 dot products"));
  return bf16 && kHasBf16;
}

REGISTER_OP("SeqkitLstmForward")
    .Input("x: float")                // [T, B, F]
    .Input("kernel: float")           // [F, 4U]
    .Input("bias: float")             // [4U]
    .Input("recurrent_kernel: float")  // [U, 4U]
    .Input("h0: float")               // [B, U]
    .Input("c0: float")               // [B, U]
    .Input("mask: float")             // [T, B]: 1 for a real step, 0 for padding
    .Output("outputs: float")         // [T, B, U]: h at real steps, 0 at padding
    .Output("h_last: float")          // [B, U]
    .Output("c_last: float")          // [B, U]
    .Output("gates: float")           // [T, B, 4U]: i, f, g, o after their activations
    .Output("cs: float")              // [T, B, U]: c after each step
    .Output("inputs: float")          // [T, B, F + U]: x and h before each step
    .Attr("bf16: bool = false")        // the step products h @ R from bf16 values (float32 sums)
    .SetShapeFn(ForwardShapes);

// The same loop for inference: nothing kept for a backward pass, so each thread's gates
// stay in a cache-sized buffer of its own instead of going out to memory every step.
REGISTER_OP("SeqkitLstmInference")
    .Input("x: float")
    .Input("kernel: float")
    .Input("bias: float")
    .Input("recurrent_kernel: float")
    .Input("h0: float")
    .Input("c0: float")
    .Input("mask: float")
    .Output("outputs: float")
    .Output("h_last: float")
    .Output("c_last: float")
    .SetShapeFn(ForwardShapes);

class LstmForward : public OpKernel {
 public:
  explicit LstmForward(OpKernelConstruction* ctx)
      : OpKernel(ctx), keep_(ctx->num_outputs() == 6), bf16_(Bf16Attr(ctx)) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& kernel = ctx->input(1);
    const Tensor& bias = ctx->input(2);
    const Tensor& recurrent = ctx->input(3);
    const Tensor& h0 = ctx->input(4);
    const Tensor& c0 = ctx->input(5);
    const Tensor& mask = ctx->input(6);
    OP_REQUIRES(ctx,
                x.dims() == 3 && kernel.dims() == 2 && bias.dims() == 1 && recurrent.dims() == 2 && h0.dims() == 2 &&
                    c0.dims() == 2 && mask.dims() == 2,
                absl::InvalidArgumentError("SeqkitLstmForward: x [T,B,F], W [F,4U], b [4U], R [U,4U], h0, c0 [B,U], "
                                           "mask [T,B]"));
    const int64_t steps = x.dim_size(0), rows = x.dim_size(1), features = x.dim_size(2), units = h0.dim_size(1);
    const int64_t g4 = 4 * units, width = features + units;
    OP_REQUIRES(ctx,
                kernel.dim_size(0) == features && kernel.dim_size(1) == g4 && bias.dim_size(0) == g4 &&
                    recurrent.dim_size(0) == units && recurrent.dim_size(1) == g4 && h0.dim_size(0) == rows &&
                    c0.shape() == h0.shape() && mask.dim_size(0) == steps && mask.dim_size(1) == rows,
                absl::InvalidArgumentError("SeqkitLstmForward: inconsistent shapes"));
    const TensorShape state_shape({rows, units}), seq_shape({steps, rows, units});
    Tensor *outputs, *h_last, *c_last, *gates = nullptr, *cs = nullptr, *inputs = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, seq_shape, &outputs));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, state_shape, &h_last));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, state_shape, &c_last));
    if (keep_) {
      OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({steps, rows, g4}), &gates));
      OP_REQUIRES_OK(ctx, ctx->allocate_output(4, seq_shape, &cs));
      OP_REQUIRES_OK(ctx, ctx->allocate_output(5, TensorShape({steps, rows, width}), &inputs));
    }

    const float* x_data = x.flat<float>().data();
    const float* m_data = mask.flat<float>().data();
    const float* h0_data = h0.flat<float>().data();
    const float* c0_data = c0.flat<float>().data();
    float* out_data = outputs->flat<float>().data();
    float* gate_data = keep_ ? gates->flat<float>().data() : nullptr;
    float* cs_data = keep_ ? cs->flat<float>().data() : nullptr;
    float* inputs_data = keep_ ? inputs->flat<float>().data() : nullptr;
    float* h_last_data = h_last->flat<float>().data();
    float* c_last_data = c_last->flat<float>().data();
    const Eigen::Map<const Eigen::RowVectorXf> b(bias.flat<float>().data(), g4);
    const float* w_data = kernel.flat<float>().data();  // W [F, 4U], row-major
    const float* r_data = recurrent.flat<float>().data();  // R [U, 4U], row-major

    // One block of rows per thread, or more where a thread's share would pass kMaxBlockRows:
    // a step's gates, written by the projection and added to by h @ R, then stay in cache.
    const int64_t blocks = std::max(RowBlocks(ctx, rows), (rows + kMaxBlockRows - 1) / kMaxBlockRows);
    const int64_t max_rows = (rows + blocks - 1) / blocks;
    // Each thread projects its rows' inputs a few steps at a time, one product of `chunk`
    // steps' rows into a buffer that stays in cache (about kChunkFloats), rather than
    // step by step (products of as few as 8 rows) or for all steps before the loop (a
    // [T, B, 4U] array out to memory and back).
    const int64_t chunk =
        std::clamp<int64_t>(kChunkFloats / std::max<int64_t>(1, max_rows * g4), 1, std::max<int64_t>(steps, 1));
    // z^T += W^T @ x^T, W^T [4U, F] being W read column-major.
    const PackedRecurrentProduct<Eigen::ColMajor> projection(w_data, g4, features, g4, chunk * max_rows);
    auto run = [&](const auto& recur) {  // z = (b + x_t @ W) + h @ R, each step
      ForRowBlocks(ctx, rows, blocks, [&](int64_t, int64_t first, int64_t end) {
        const int64_t n = end - first;
        Matrix h = ConstMatrixMap(h0_data + first * units, n, units);
        Matrix c = ConstMatrixMap(c0_data + first * units, n, units);
        Eigen::ArrayXf c_new(units), h_new(units);
        auto workspace = recur.MakeWorkspace();
        auto projection_workspace = projection.MakeWorkspace();
        Matrix xs(chunk * n, features), zs(chunk * n, g4);
        for (int64_t t = 0; t < steps; ++t) {
          const int64_t seq_at = (t * rows + first) * units, k = t % chunk;
          if (k == 0) {  // the next steps' b + x @ W
            const int64_t len = std::min(chunk, steps - t);
            for (int64_t s = 0; s < len; ++s)
              xs.middleRows(s * n, n) = ConstMatrixMap(x_data + ((t + s) * rows + first) * features, n, features);
            zs.topRows(len * n).rowwise() = b;
            projection.AddTo(xs.data(), len * n, zs.data(), projection_workspace);
          }
          if (keep_) {
            MatrixMap xh(inputs_data + (t * rows + first) * width, n, width);
            xh.leftCols(features) = xs.middleRows(k * n, n);
            xh.rightCols(units) = h;
          }
          // Training keeps the gates for the backward op; inference uses them where they are.
          MatrixMap z(keep_ ? gate_data + (t * rows + first) * g4 : zs.data() + k * n * g4, n, g4);
          if (keep_) z = zs.middleRows(k * n, n);
          recur.AddTo(h.data(), n, z.data(), workspace);
          for (int64_t r = 0; r < n; ++r) {
            float* zb = z.row(r).data();
            ArrayMap i(zb, units), f(zb + units, units), g(zb + 2 * units, units), o(zb + 3 * units, units);
            i = i.logistic();
            f = f.logistic();
            g = g.tanh();
            o = o.logistic();
            auto c_row = c.row(r).array();
            auto h_row = h.row(r).array();
            c_new = f * c_row.transpose() + i * g;
            h_new = o * c_new.tanh();
            const float m = m_data[t * rows + first + r];
            ArrayMap out(out_data + seq_at + r * units, units);
            if (m == 1.0f) {
              c_row = c_new.transpose();
              h_row = h_new.transpose();
              out = h_new;
            } else {
              c_row = m * c_new.transpose() + (1.0f - m) * c_row;
              h_row = m * h_new.transpose() + (1.0f - m) * h_row;
              out = m * h_new;
            }
          }
          if (keep_) MatrixMap(cs_data + seq_at, n, units) = c;
        }
        MatrixMap(h_last_data + first * units, n, units) = h;
        MatrixMap(c_last_data + first * units, n, units) = c;
      });
    };
#if defined(__AVX512BF16__)
    if (bf16_) return run(Bf16RecurrentProduct(r_data, units, g4, g4, 1, max_rows));
#endif
    // z^T += R^T @ h^T, R^T [4U, U] being R read column-major.
    run(PackedRecurrentProduct<Eigen::ColMajor>(r_data, g4, units, g4, max_rows));
  }

 private:
  const bool keep_;  // the outputs a backward pass needs (SeqkitLstmForward), or none
  const bool bf16_;
};

REGISTER_KERNEL_BUILDER(Name("SeqkitLstmForward").Device(DEVICE_CPU), LstmForward);
REGISTER_KERNEL_BUILDER(Name("SeqkitLstmInference").Device(DEVICE_CPU), LstmForward);

REGISTER_OP("SeqkitLstmBackward")
    .Input("recurrent_kernel: float")  // [U, 4U]
    .Input("c0: float")               // [B, U]
    .Input("mask: float")             // [T, B]
    .Input("gates: float")            // [T, B, 4U] from the forward op
    .Input("cs: float")               // [T, B, U] from the forward op
    .Input("d_outputs: float")        // [T, B, U]
    .Input("d_h_last: float")         // [B, U]
    .Input("d_c_last: float")         // [B, U]
    .Output("dz: float")              // [T, B, 4U]: the gradient of the gate pre-activations
    .Output("d_h0: float")            // [B, U]
    .Output("d_c0: float")            // [B, U]
    .Output("d_bias: float")          // [4U]
    .Attr("bf16: bool = false")        // the step products dz @ R^T from bf16 values
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(3));
      c->set_output(1, c->input(1));
      c->set_output(2, c->input(1));
      c->set_output(3, c->Vector(c->Dim(c->input(0), 1)));
      return absl::OkStatus();
    });

class LstmBackward : public OpKernel {
 public:
  explicit LstmBackward(OpKernelConstruction* ctx) : OpKernel(ctx), bf16_(Bf16Attr(ctx)) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& recurrent = ctx->input(0);
    const Tensor& c0 = ctx->input(1);
    const Tensor& mask = ctx->input(2);
    const Tensor& gates = ctx->input(3);
    const Tensor& cs = ctx->input(4);
    const Tensor& d_out = ctx->input(5);
    const Tensor& d_h_last = ctx->input(6);
    const Tensor& d_c_last = ctx->input(7);
    OP_REQUIRES(ctx, gates.dims() == 3 && recurrent.dims() == 2 && c0.dims() == 2 && mask.dims() == 2,
                absl::InvalidArgumentError("SeqkitLstmBackward: gates [T,B,4U], R [U,4U], c0 [B,U], mask [T,B]"));
    const int64_t steps = gates.dim_size(0), rows = gates.dim_size(1), units = c0.dim_size(1);
    const TensorShape state_shape({rows, units}), seq_shape({steps, rows, units});
    OP_REQUIRES(ctx,
                gates.dim_size(2) == 4 * units && recurrent.dim_size(0) == units &&
                    recurrent.dim_size(1) == 4 * units && c0.dim_size(0) == rows && cs.shape() == seq_shape &&
                    d_out.shape() == seq_shape && d_h_last.shape() == state_shape &&
                    d_c_last.shape() == state_shape && mask.dim_size(0) == steps && mask.dim_size(1) == rows,
                absl::InvalidArgumentError("SeqkitLstmBackward: inconsistent shapes"));
    Tensor *dz, *d_h0, *d_c0, *d_bias;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, gates.shape(), &dz));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, state_shape, &d_h0));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, state_shape, &d_c0));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({4 * units}), &d_bias));

    const float* r_data = recurrent.flat<float>().data();  // R [U, 4U], row-major
    const float* c0_data = c0.flat<float>().data();
    const float* m_data = mask.flat<float>().data();
    const float* gate_data = gates.flat<float>().data();
    const float* cs_data = cs.flat<float>().data();
    const float* d_out_data = d_out.flat<float>().data();
    const float* dh_last_data = d_h_last.flat<float>().data();
    const float* dc_last_data = d_c_last.flat<float>().data();
    float* dz_data = dz->flat<float>().data();
    float* dh0_data = d_h0->flat<float>().data();
    float* dc0_data = d_c0->flat<float>().data();
    const int64_t g4 = 4 * units;

    // Each block sums its rows' share of the bias gradient while its dz is in cache.
    const int64_t blocks = RowBlocks(ctx, rows), max_rows = (rows + blocks - 1) / blocks;
    std::vector<Eigen::RowVectorXf> bias_shares(blocks, Eigen::RowVectorXf::Zero(g4));
    auto run = [&](const auto& back) {  // dh += dz @ R^T, each step
      ForRowBlocks(ctx, rows, blocks, [&](int64_t block, int64_t first, int64_t end) {
        const int64_t n = end - first;
        Matrix dh = ConstMatrixMap(dh_last_data + first * units, n, units);
        Matrix dc = ConstMatrixMap(dc_last_data + first * units, n, units);
        Eigen::ArrayXf tanh_c(units), dh_new(units), dc_new(units);
        auto workspace = back.MakeWorkspace();
        for (int64_t t = steps - 1; t >= 0; --t) {
          const int64_t seq_at = (t * rows + first) * units;
          MatrixMap dz_t(dz_data + (t * rows + first) * g4, n, g4);
          for (int64_t b = 0; b < n; ++b) {
            const float* gb = gate_data + (t * rows + first + b) * g4;
            ConstArrayMap i(gb, units), f(gb + units, units), g(gb + 2 * units, units), o(gb + 3 * units, units);
            ConstArrayMap c_t(cs_data + seq_at + b * units, units);
            ConstArrayMap c_prev(t > 0 ? cs_data + seq_at - rows * units + b * units : c0_data + (first + b) * units,
                                 units);
            ConstArrayMap d_out_t(d_out_data + seq_at + b * units, units);
            const float m = m_data[t * rows + first + b];
            auto dh_row = dh.row(b).array();
            auto dc_row = dc.row(b).array();
            tanh_c = c_t.tanh();
            dh_new = m * (dh_row.transpose() + d_out_t);
            dc_new = m * dc_row.transpose() + dh_new * o * (1.0f - tanh_c * tanh_c);
            float* zb = dz_t.row(b).data();
            ArrayMap(zb, units) = dc_new * g * i * (1.0f - i);
            ArrayMap(zb + units, units) = dc_new * c_prev * f * (1.0f - f);
            ArrayMap(zb + 2 * units, units) = dc_new * i * (1.0f - g * g);
            ArrayMap(zb + 3 * units, units) = dh_new * tanh_c * o * (1.0f - o);
            // What does not flow through the matmul below: the state kept across padding,
            // and the cell's own path (dc_prev = dc_new * f).
            dh_row = (1.0f - m) * dh_row;
            dc_row = (1.0f - m) * dc_row + (dc_new * f).transpose();
          }
          back.AddTo(dz_t.data(), n, dh.data(), workspace);
          bias_shares[block] += dz_t.colwise().sum();
        }
        MatrixMap(dh0_data + first * units, n, units) = dh;
        MatrixMap(dc0_data + first * units, n, units) = dc;
      });
    };
#if defined(__AVX512BF16__)
    if (bf16_) {
      run(Bf16RecurrentProduct(r_data, g4, units, 1, g4, max_rows));  // R^T [4U, U] read from R
    } else
#endif
    {
      // dh^T += R @ dz^T.
      run(PackedRecurrentProduct<Eigen::RowMajor>(r_data, units, g4, g4, max_rows));
    }
    Eigen::Map<Eigen::RowVectorXf> d_b(d_bias->flat<float>().data(), g4);
    d_b = bias_shares[0];
    for (int64_t block = 1; block < blocks; ++block) d_b += bias_shares[block];
  }

 private:
  const bool bf16_;
};

REGISTER_KERNEL_BUILDER(Name("SeqkitLstmBackward").Device(DEVICE_CPU), LstmBackward);

}  // namespace seqkit
