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
// Shapes: x [B, F], h and c [B, U], packed [U/16, F+U, 64], bias [U/16, 64]; out h', c'.

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

// Block b of one row: z = bias + [x, h] @ packed, then the cell update of its 16 units.
void StepBlock(const float* v, int64_t k, const float* packed, const float* bias, const float* c, float* h_out,
               float* c_out, int64_t b) {
  alignas(64) float z[kWidth];
  const float* w = packed + b * k * kWidth;
  std::copy(bias + b * kWidth, bias + (b + 1) * kWidth, z);
  for (int64_t j = 0; j < k; ++j, w += kWidth) {
    const float vj = v[j];
    for (int64_t col = 0; col < kWidth; ++col) z[col] += vj * w[col];
  }
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
struct Step {
  static constexpr int kMaxShares = 64;
  const float *v, *packed, *bias, *c;
  float *h_out, *c_out;
  int64_t rows, k, units, blocks, shares;
  std::atomic<int64_t> next[kMaxShares];
  std::atomic<int64_t> done{0};

  void Run(int64_t own) {
    for (int64_t j = 0; j < shares; ++j) {
      const int64_t s = (own + j) % shares, end = blocks * (s + 1) / shares;
      for (int64_t b = next[s].fetch_add(1); b < end; b = next[s].fetch_add(1)) {
        for (int64_t r = 0; r < rows; ++r) {
          StepBlock(v + r * k, k, packed, bias, c + r * units, h_out + r * units, c_out + r * units, b);
        }
        done.fetch_add(1, std::memory_order_release);
      }
    }
  }
};

ffi::Error LstmStep(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> h, ffi::Buffer<ffi::F32> c,
                    ffi::Buffer<ffi::F32> packed, ffi::Buffer<ffi::F32> bias, ffi::ResultBuffer<ffi::F32> h_out,
                    ffi::ResultBuffer<ffi::F32> c_out) {
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
  auto step = std::make_shared<Step>();
  step->v = v.data(), step->packed = packed.typed_data(), step->bias = bias.typed_data(), step->c = c.typed_data();
  step->h_out = h_out->typed_data(), step->c_out = c_out->typed_data();
  step->rows = rows, step->k = k, step->units = units, step->blocks = blocks;
  step->shares = std::clamp<int64_t>(pool.num_threads(), 1, std::min<int64_t>(blocks, Step::kMaxShares));
  for (int64_t s = 0; s < step->shares; ++s) step->next[s] = blocks * s / step->shares;
  for (int64_t s = 1; s < step->shares; ++s) pool.Schedule([step, s] { step->Run(s); });
  step->Run(0);
  while (step->done.load(std::memory_order_acquire) < blocks) std::this_thread::yield();
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER(kLstmStep, LstmStep,
                       ffi::Ffi::Bind()
                           .Ctx<ffi::ThreadPool>()
                           .Arg<ffi::Buffer<ffi::F32>>()
                           .Arg<ffi::Buffer<ffi::F32>>()
                           .Arg<ffi::Buffer<ffi::F32>>()
                           .Arg<ffi::Buffer<ffi::F32>>()
                           .Arg<ffi::Buffer<ffi::F32>>()
                           .Ret<ffi::Buffer<ffi::F32>>()
                           .Ret<ffi::Buffer<ffi::F32>>());
XLA_FFI_REGISTER_HANDLER(ffi::GetXlaFfiApi(), "seqkit_lstm_step", "Host", kLstmStep);

using tensorflow::shape_inference::InferenceContext;

REGISTER_OP("SeqkitLstmStep")
    .Input("x: float")
    .Input("h: float")
    .Input("c: float")
    .Input("packed: float")
    .Input("bias: float")
    .Output("h_out: float")
    .Output("c_out: float")
    .SetShapeFn([](InferenceContext* ctx) {
      ctx->set_output(0, ctx->input(1));
      ctx->set_output(1, ctx->input(2));
      return absl::OkStatus();
    })
    .Doc("One LSTM step with packed kernels, for XLA programs on CPU (jit_compile) only.");

class LstmStepXla : public tensorflow::XlaOpKernel {
 public:
  explicit LstmStepXla(tensorflow::OpKernelConstruction* ctx) : XlaOpKernel(ctx) {}

  void Compile(tensorflow::XlaOpKernelContext* ctx) override {
    const xla::Shape state = ctx->InputXlaShape(1).value();
    std::vector<xla::XlaOp> args;
    for (int i = 0; i < 5; ++i) args.push_back(ctx->Input(i));
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
