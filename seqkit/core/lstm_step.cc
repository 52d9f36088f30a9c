// One LSTM decoding step inside XLA programs: an XLA custom call, so that the sampling
// loop stays one compiled program while each step's products run on every core.
//
// A sampled character multiplies a single row by every weight matrix: all the time goes
// into streaming the weights from cache, and XLA runs a one-row product on one core. Here
// the kernels are packed once per call of the loop (by seqkit/core/native.py, as XLA ops)
// into blocks of 16 units, each block holding those units' four gate columns (i, f, g, o,
// as seqkit's LSTMCell) for every row of [W; R] contiguously. A block gives all the gates
// of its 16 units, so the blocks split over the threads of XLA's intra-op pool with no
// synchronization but the end of the step.
//
// Shapes: x [B, F], h and c [B, U], packed [U/16, F+U, 64] (float32, or float16 to halve
// what a step reads), bias [U/16, 64], index [] (the loop's step count); out h', c'.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>

#include "Eigen/Core"
#include "tensorflow/compiler/tf2xla/xla_op_kernel.h"
#include "tensorflow/compiler/tf2xla/xla_op_registry.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "xla/ffi/api/c_api.h"
#include "xla/ffi/api/ffi.h"
#include "xla/hlo/builder/xla_builder.h"
#include "xla/shape_util.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace xla::ffi {
const XLA_FFI_Api* GetXlaFfiApi();  // exported by libtensorflow_framework; its header needs MLIR's
}

namespace seqkit {
namespace {

namespace ffi = xla::ffi;
constexpr int64_t kUnits = 16;            // units per block
constexpr int64_t kWidth = 4 * kUnits;    // gate columns per block
using Gates = Eigen::Array<float, kUnits, 1>;
using GatesMap = Eigen::Map<const Gates>;

// A vector of gate columns (GCC's vector extension): one AVX-512 register, else one AVX
// register; loaded from float32 weights, or converted from float16 ones (F16C).
#if defined(__AVX512F__)
constexpr int kLanes = 16;
#else
constexpr int kLanes = 8;
#endif
constexpr int kVecs = kWidth / kLanes;
typedef float Vec __attribute__((vector_size(kLanes * sizeof(float)), aligned(4), may_alias));

inline Vec Load(const float* w) { return *reinterpret_cast<const Vec*>(w); }

#if defined(__F16C__)
inline Vec Load(const uint16_t* w) {
#if defined(__AVX512F__)
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w)));
#else
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
#endif
}
#endif

// Block b of one row: z = bias + [x, h] @ packed, then the cell update of its 16 units.
// Even and odd rows sum apart, so that eight chains of multiply-adds are in flight: with
// float16 weights the block is in cache and the adds' latency would be the limit.
template <typename W>
void StepBlock(const float* v, int64_t k, const W* packed, const float* bias, const float* c, float* h_out,
               float* c_out, int64_t b) {
  Vec even[kVecs], odd[kVecs];
#pragma GCC unroll 8
  for (int q = 0; q < kVecs; ++q) even[q] = Load(bias + b * kWidth + q * kLanes), odd[q] = Vec{};
  const W* w = packed + b * k * kWidth;
  int64_t j = 0;
  for (; j + 1 < k; j += 2, w += 2 * kWidth) {
#pragma GCC unroll 8
    for (int q = 0; q < kVecs; ++q) {
      even[q] += v[j] * Load(w + q * kLanes);
      odd[q] += v[j + 1] * Load(w + kWidth + q * kLanes);
    }
  }
  if (j < k) {
#pragma GCC unroll 8
    for (int q = 0; q < kVecs; ++q) even[q] += v[j] * Load(w + q * kLanes);
  }
  alignas(64) float z[kWidth];
#pragma GCC unroll 8
  for (int q = 0; q < kVecs; ++q) *reinterpret_cast<Vec*>(z + q * kLanes) = even[q] + odd[q];
  const Gates i = GatesMap(z).logistic(), f = GatesMap(z + kUnits).logistic();
  const Gates g = GatesMap(z + 2 * kUnits).tanh(), o = GatesMap(z + 3 * kUnits).logistic();
  const Gates c_new = f * GatesMap(c + b * kUnits) + i * g;
  Eigen::Map<Gates>(c_out + b * kUnits) = c_new;
  Eigen::Map<Gates>(h_out + b * kUnits) = o * c_new.tanh();
}

// One step's blocks, shared by the threads. Each thread first takes the blocks of its own
// share (the same ones every step, so they stay in its core's cache), then any left in the
// others': where a thread starts late (its core busy elsewhere), the others do its share
// and the step waits for no one. Late tasks find nothing left; they hold the struct
// alive, never the buffers.
//
// Every other step reads the shares backwards. A share of the 2 x 256 model's weights is
// larger than a core's L2 cache; read in one direction each step, its start has always
// been evicted by its end (LRU), while reversed, the blocks read last are read again first.
template <typename W>
struct Step {
  static constexpr int kMaxShares = 64;
  const float *v, *bias, *c;
  const W* packed;
  float *h_out, *c_out;
  int64_t rows, k, units, blocks, shares;
  bool backwards;
  std::atomic<int64_t> taken[kMaxShares] = {};
  std::atomic<int64_t> done{0};

  void Run(int64_t own) {
    for (int64_t j = 0; j < shares; ++j) {
      const int64_t s = (own + j) % shares, begin = blocks * s / shares, end = blocks * (s + 1) / shares;
      for (int64_t t = taken[s].fetch_add(1); t < end - begin; t = taken[s].fetch_add(1)) {
        const int64_t b = backwards ? end - 1 - t : begin + t;
        for (int64_t r = 0; r < rows; ++r) {
          StepBlock(v + r * k, k, packed, bias, c + r * units, h_out + r * units, c_out + r * units, b);
        }
        done.fetch_add(1, std::memory_order_release);
      }
    }
  }
};

template <typename W>
void RunStep(ffi::ThreadPool& pool, const float* v, const W* packed, const float* bias, const float* c, float* h_out,
             float* c_out, int64_t rows, int64_t k, int64_t units, bool backwards) {
  auto step = std::make_shared<Step<W>>();
  step->v = v, step->packed = packed, step->bias = bias, step->c = c, step->h_out = h_out, step->c_out = c_out;
  step->rows = rows, step->k = k, step->units = units, step->blocks = units / kUnits, step->backwards = backwards;
  step->shares = std::clamp<int64_t>(pool.num_threads(), 1, std::min<int64_t>(step->blocks, Step<W>::kMaxShares));
  for (int64_t s = 1; s < step->shares; ++s) pool.Schedule([step, s] { step->Run(s); });
  step->Run(0);
  while (step->done.load(std::memory_order_acquire) < step->blocks) std::this_thread::yield();
}

ffi::Error LstmStep(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> h, ffi::Buffer<ffi::F32> c,
                    ffi::AnyBuffer packed, ffi::Buffer<ffi::F32> bias, ffi::BufferR0<ffi::S32> index,
                    ffi::ResultBuffer<ffi::F32> h_out, ffi::ResultBuffer<ffi::F32> c_out) {
  const int64_t rows = x.dimensions()[0], features = x.dimensions()[1], units = h.dimensions()[1];
  const int64_t k = features + units, blocks = units / kUnits;
  if (units % kUnits != 0 || packed.element_count() != static_cast<size_t>(blocks * k * kWidth)) {
    return ffi::Error::InvalidArgument("seqkit_lstm_step: the packed kernels do not match x and h");
  }
  std::vector<float> v(rows * k);
  for (int64_t r = 0; r < rows; ++r) {
    std::copy(x.typed_data() + r * features, x.typed_data() + (r + 1) * features, v.data() + r * k);
    std::copy(h.typed_data() + r * units, h.typed_data() + (r + 1) * units, v.data() + r * k + features);
  }
  const bool backwards = index.typed_data()[0] % 2 != 0;
  if (packed.element_type() == ffi::F32) {
    RunStep(pool, v.data(), packed.reinterpret_data<float>(), bias.typed_data(), c.typed_data(), h_out->typed_data(),
            c_out->typed_data(), rows, k, units, backwards);
  } else if (packed.element_type() == ffi::F16) {
#if defined(__F16C__)
    RunStep(pool, v.data(), packed.reinterpret_data<uint16_t>(), bias.typed_data(), c.typed_data(),
            h_out->typed_data(), c_out->typed_data(), rows, k, units, backwards);
#else
    return ffi::Error::InvalidArgument("seqkit_lstm_step: float16 kernels need a CPU with F16C");
#endif
  } else {
    return ffi::Error::InvalidArgument("seqkit_lstm_step: packed kernels are float32 or float16");
  }
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER(kLstmStep, LstmStep,
                       ffi::Ffi::Bind()
                           .Ctx<ffi::ThreadPool>()
                           .Arg<ffi::Buffer<ffi::F32>>()
                           .Arg<ffi::Buffer<ffi::F32>>()
                           .Arg<ffi::Buffer<ffi::F32>>()
                           .Arg<ffi::AnyBuffer>()
                           .Arg<ffi::Buffer<ffi::F32>>()
                           .Arg<ffi::BufferR0<ffi::S32>>()
                           .Ret<ffi::Buffer<ffi::F32>>()
                           .Ret<ffi::Buffer<ffi::F32>>());
XLA_FFI_REGISTER_HANDLER(ffi::GetXlaFfiApi(), "seqkit_lstm_step", "Host", kLstmStep);

using tensorflow::shape_inference::InferenceContext;

REGISTER_OP("SeqkitLstmStep")
    .Input("x: float")
    .Input("h: float")
    .Input("c: float")
    .Input("packed: T")
    .Input("bias: float")
    .Input("index: int32")
    .Attr("T: {float, half}")
    .Output("h_out: float")
    .Output("c_out: float")
    .SetShapeFn([](InferenceContext* ctx) {
      ctx->set_output(0, ctx->input(1));
      ctx->set_output(1, ctx->input(2));
      return absl::OkStatus();
    })
    .Doc("One LSTM step with packed kernels (float32, or float16 on a CPU with F16C), for XLA programs on "
         "CPU (jit_compile) only; index is the decoding loop's step count.");

class LstmStepXla : public tensorflow::XlaOpKernel {
 public:
  explicit LstmStepXla(tensorflow::OpKernelConstruction* ctx) : XlaOpKernel(ctx) {}

  void Compile(tensorflow::XlaOpKernelContext* ctx) override {
    const xla::Shape state = ctx->InputXlaShape(1).value();
    std::vector<xla::XlaOp> args;
    for (int i = 0; i < 6; ++i) args.push_back(ctx->Input(i));
    const xla::XlaOp call = xla::CustomCall(ctx->builder(), "seqkit_lstm_step", args,
                                            xla::ShapeUtil::MakeTupleShape({state, state}), "", false, {}, nullptr,
                                            xla::CustomCallSchedule::SCHEDULE_NONE,
                                            xla::CustomCallApiVersion::API_VERSION_TYPED_FFI);
    ctx->SetOutput(0, xla::GetTupleElement(call, 0));
    ctx->SetOutput(1, xla::GetTupleElement(call, 1));
  }
};
// Registered with the kernel registry itself: REGISTER_XLA_OP's table is read once, at the
// process's first XLA compile, which may come before this library is loaded.
REGISTER_KERNEL_BUILDER(Name("SeqkitLstmStep").Device(tensorflow::DEVICE_CPU_XLA_JIT), LstmStepXla);

}  // namespace
}  // namespace seqkit
