// oneDNN 2-D convolutions (float32) as XLA FFI handlers: forward, backward-data and backward-weights.
//
// Layouts are XLA's: NHWC activations, HWIO kernels. Attributes, as `lax.conv_general_dilated` takes them:
// `strides` (sh, sw), `pad_lo` / `pad_hi` (explicit padding of the input, >= 0), `dilation` (kernel dilation, 1 =
// none). The activations stay NHWC inside oneDNN (its fast kernels read them directly); the kernel (or its
// gradient) is reordered between HWIO and the layout oneDNN prefers (`format_tag::any`), as the go/no-go in
// docs/performance.md measured fastest. Primitives and reorders are created once per shape and attributes and kept
// in a mutex-guarded cache; one engine, one stream per calling thread, user-mode scratchpads in per-thread buffers,
// so concurrent calls (shard_map over host devices) share nothing mutable; they execute one at a time (each on all
// cores), so that concurrent XLA threads do not oversubscribe the cores with OpenMP teams.
//
// Built and loaded by dcgan_jax/ops/onednn.py. Exported: the three handlers, `dcgan_onednn_set_num_threads` (the
// OpenMP team size each call uses) and `dcgan_onednn_version` (major * 10000 + minor * 100 + patch).
#include <omp.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

enum class Pass { kForward = 0, kBackwardData = 1, kBackwardWeights = 2 };

// Everything a primitive depends on: pass, N, H, W, C, O, kh, kw, OH, OW, strides, pads, dilations.
using Key = std::array<int64_t, 18>;

std::atomic<int> g_threads{0};

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::stream& Stream() {
  thread_local dnnl::stream stream(Engine());
  return stream;
}

// A per-thread growing buffer; slot 0 holds the kernel in oneDNN's layout, slot 1 the scratchpad.
void* ThreadBuffer(int slot, size_t bytes) {
  thread_local std::vector<char> buffers[2];
  if (buffers[slot].size() < bytes) buffers[slot].resize(bytes);
  return buffers[slot].data();
}

// A cached pass: the convolution, its kernel-side reorder (empty when oneDNN takes HWIO as is), and the descs.
struct Plan {
  dnnl::primitive conv;
  dnnl::primitive kernel_reorder;
  bool reorder_kernel = false;
  memory::desc act_in, act_out, kernel_user, kernel_conv, scratchpad;
};

struct Shape {
  int64_t n, h, w, c, o, kh, kw, oh, ow;
  std::array<int64_t, 2> stride, pad_lo, pad_hi, dilation;
};

Key MakeKey(Pass pass, const Shape& s) {
  return {static_cast<int64_t>(pass), s.n, s.h, s.w, s.c, s.o, s.kh, s.kw, s.oh, s.ow, s.stride[0], s.stride[1],
          s.pad_lo[0], s.pad_lo[1], s.pad_hi[0], s.pad_hi[1], s.dilation[0], s.dilation[1]};
}

std::shared_ptr<Plan> Build(Pass pass, const Shape& s) {
  const memory::dims strides = {s.stride[0], s.stride[1]}, pad_l = {s.pad_lo[0], s.pad_lo[1]},
                     pad_r = {s.pad_hi[0], s.pad_hi[1]}, dil = {s.dilation[0] - 1, s.dilation[1] - 1};
  memory::desc src({s.n, s.c, s.h, s.w}, dt::f32, tag::nhwc);
  memory::desc dst({s.n, s.o, s.oh, s.ow}, dt::f32, tag::nhwc);
  memory::desc wei_user({s.o, s.c, s.kh, s.kw}, dt::f32, tag::hwio);
  memory::desc wei_any({s.o, s.c, s.kh, s.kw}, dt::f32, tag::any);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  auto algo = dnnl::algorithm::convolution_direct;
  dnnl::convolution_forward::primitive_desc fwd(Engine(), dnnl::prop_kind::forward_training, algo, src, wei_any, dst,
                                                strides, dil, pad_l, pad_r, attr);
  auto plan = std::make_shared<Plan>();
  plan->kernel_user = wei_user;
  if (pass == Pass::kForward) {
    plan->conv = dnnl::convolution_forward(fwd);
    plan->act_in = src, plan->act_out = dst, plan->kernel_conv = fwd.weights_desc();
    plan->scratchpad = fwd.scratchpad_desc();
  } else if (pass == Pass::kBackwardData) {
    dnnl::convolution_backward_data::primitive_desc pd(Engine(), algo, src, wei_any, dst, strides, dil, pad_l, pad_r,
                                                       fwd, attr);
    plan->conv = dnnl::convolution_backward_data(pd);
    plan->act_in = dst, plan->act_out = src, plan->kernel_conv = pd.weights_desc();
    plan->scratchpad = pd.scratchpad_desc();
  } else {
    dnnl::convolution_backward_weights::primitive_desc pd(Engine(), algo, src, wei_any, dst, strides, dil, pad_l,
                                                          pad_r, fwd, attr);
    plan->conv = dnnl::convolution_backward_weights(pd);
    plan->act_in = src, plan->act_out = dst, plan->kernel_conv = pd.diff_weights_desc();
    plan->scratchpad = pd.scratchpad_desc();
  }
  plan->reorder_kernel = plan->kernel_conv != wei_user;
  if (plan->reorder_kernel) {
    // Forward and backward-data read the kernel (HWIO -> oneDNN's); backward-weights writes it (oneDNN's -> HWIO).
    plan->kernel_reorder = pass == Pass::kBackwardWeights
                               ? dnnl::reorder(dnnl::reorder::primitive_desc(Engine(), plan->kernel_conv, Engine(),
                                                                             wei_user))
                               : dnnl::reorder(dnnl::reorder::primitive_desc(Engine(), wei_user, Engine(),
                                                                             plan->kernel_conv));
  }
  return plan;
}

std::shared_ptr<Plan> GetPlan(Pass pass, const Shape& s) {
  static std::mutex mutex;
  static std::map<Key, std::shared_ptr<Plan>> cache;
  const Key key = MakeKey(pass, s);
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  std::shared_ptr<Plan> plan = Build(pass, s);  // Outside the lock: JIT code generation takes milliseconds.
  std::lock_guard<std::mutex> lock(mutex);
  return cache.emplace(key, plan).first->second;
}

// Runs one pass. `a` is the activation the pass reads (x, dy, or x for backward-weights), `b` the second input (the
// kernel, or dy for backward-weights), `out` the result.
void Run(Pass pass, const Shape& s, void* a, void* b, void* out) {
  std::shared_ptr<Plan> plan = GetPlan(pass, s);
  const int threads = g_threads.load();
  if (threads > 0) omp_set_num_threads(threads);
  dnnl::engine& engine = Engine();
  dnnl::stream& stream = Stream();
  memory scratch(plan->scratchpad, engine, ThreadBuffer(1, plan->scratchpad.get_size()));
  void* kernel_user_ptr = pass == Pass::kBackwardWeights ? out : b;
  memory kernel_user(plan->kernel_user, engine, kernel_user_ptr);
  memory kernel = plan->reorder_kernel
                      ? memory(plan->kernel_conv, engine, ThreadBuffer(0, plan->kernel_conv.get_size()))
                      : kernel_user;
  memory act_in(plan->act_in, engine, a);
  // One convolution at a time: each already uses every core, and XLA runs independent ops (the discriminator on
  // the real and the fake batch) on concurrent threads, whose OpenMP teams would otherwise oversubscribe the cores
  // (barriers then wait out scheduler ticks). A waiting caller blocks, it does not spin.
  static std::mutex execute_mutex;
  std::lock_guard<std::mutex> lock(execute_mutex);
  if (pass != Pass::kBackwardWeights && plan->reorder_kernel) {
    plan->kernel_reorder.execute(stream, {{DNNL_ARG_FROM, kernel_user}, {DNNL_ARG_TO, kernel}});
  }
  if (pass == Pass::kForward) {
    memory y(plan->act_out, engine, out);
    plan->conv.execute(stream, {{DNNL_ARG_SRC, act_in}, {DNNL_ARG_WEIGHTS, kernel}, {DNNL_ARG_DST, y},
                                {DNNL_ARG_SCRATCHPAD, scratch}});
  } else if (pass == Pass::kBackwardData) {
    memory dx(plan->act_out, engine, out);
    plan->conv.execute(stream, {{DNNL_ARG_DIFF_DST, act_in}, {DNNL_ARG_WEIGHTS, kernel}, {DNNL_ARG_DIFF_SRC, dx},
                                {DNNL_ARG_SCRATCHPAD, scratch}});
  } else {
    memory dy(plan->act_out, engine, b);
    plan->conv.execute(stream, {{DNNL_ARG_SRC, act_in}, {DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_DIFF_WEIGHTS, kernel},
                                {DNNL_ARG_SCRATCHPAD, scratch}});
    if (plan->reorder_kernel) {
      plan->kernel_reorder.execute(stream, {{DNNL_ARG_FROM, kernel}, {DNNL_ARG_TO, kernel_user}});
    }
  }
  stream.wait();
}

// Fills the attribute part of `s`; an error message, or "" when the attributes are valid.
std::string ReadAttributes(ffi::Span<const int64_t> strides, ffi::Span<const int64_t> pad_lo,
                           ffi::Span<const int64_t> pad_hi, ffi::Span<const int64_t> dilation, Shape& s) {
  if (strides.size() != 2 || pad_lo.size() != 2 || pad_hi.size() != 2 || dilation.size() != 2) {
    return "strides, pad_lo, pad_hi and dilation need 2 entries each";
  }
  for (int i = 0; i < 2; ++i) {
    s.stride[i] = strides[i], s.pad_lo[i] = pad_lo[i], s.pad_hi[i] = pad_hi[i], s.dilation[i] = dilation[i];
    if (s.stride[i] < 1 || s.dilation[i] < 1 || s.pad_lo[i] < 0 || s.pad_hi[i] < 0) {
      return "strides and dilation must be >= 1 and the padding >= 0";
    }
  }
  return "";
}

// Checks that (oh, ow) is the convolution's output size for (h, w); "" when it is.
std::string CheckOutput(const Shape& s) {
  const int64_t eh = s.dilation[0] * (s.kh - 1) + 1, ew = s.dilation[1] * (s.kw - 1) + 1;
  const int64_t oh = (s.h + s.pad_lo[0] + s.pad_hi[0] - eh) / s.stride[0] + 1;
  const int64_t ow = (s.w + s.pad_lo[1] + s.pad_hi[1] - ew) / s.stride[1] + 1;
  if (oh != s.oh || ow != s.ow || oh < 1 || ow < 1) {
    return "output " + std::to_string(s.oh) + "x" + std::to_string(s.ow) + " is not the convolution's " +
           std::to_string(oh) + "x" + std::to_string(ow);
  }
  return "";
}

ffi::Error Execute(Pass pass, Shape& s, void* a, void* b, void* out, const std::string& attr_problem) {
  if (!attr_problem.empty()) return ffi::Error::InvalidArgument("dcgan_onednn: " + attr_problem);
  std::string shape_problem = CheckOutput(s);
  if (!shape_problem.empty()) return ffi::Error::InvalidArgument("dcgan_onednn: " + shape_problem);
  try {
    Run(pass, s, a, b, out);
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("dcgan_onednn: oneDNN error: ") + e.what());
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string("dcgan_onednn: ") + e.what());
  }
  return ffi::Error::Success();
}

ffi::Error ForwardImpl(ffi::BufferR4<ffi::F32> x, ffi::BufferR4<ffi::F32> kernel,
                       ffi::ResultBufferR4<ffi::F32> y, ffi::Span<const int64_t> strides,
                       ffi::Span<const int64_t> pad_lo, ffi::Span<const int64_t> pad_hi,
                       ffi::Span<const int64_t> dilation) {
  auto xd = x.dimensions(), kd = kernel.dimensions(), yd = y->dimensions();
  Shape s{xd[0], xd[1], xd[2], xd[3], kd[3], kd[0], kd[1], yd[1], yd[2], {}, {}, {}, {}};
  std::string problem = ReadAttributes(strides, pad_lo, pad_hi, dilation, s);
  if (kd[2] != s.c || yd[0] != s.n || yd[3] != s.o) problem = "forward: x, kernel and y shapes disagree";
  return Execute(Pass::kForward, s, x.untyped_data(), kernel.untyped_data(), y->untyped_data(), problem);
}

ffi::Error BackwardDataImpl(ffi::BufferR4<ffi::F32> dy, ffi::BufferR4<ffi::F32> kernel,
                            ffi::ResultBufferR4<ffi::F32> dx, ffi::Span<const int64_t> strides,
                            ffi::Span<const int64_t> pad_lo, ffi::Span<const int64_t> pad_hi,
                            ffi::Span<const int64_t> dilation) {
  auto yd = dy.dimensions(), kd = kernel.dimensions(), xd = dx->dimensions();
  Shape s{xd[0], xd[1], xd[2], xd[3], kd[3], kd[0], kd[1], yd[1], yd[2], {}, {}, {}, {}};
  std::string problem = ReadAttributes(strides, pad_lo, pad_hi, dilation, s);
  if (kd[2] != s.c || yd[0] != s.n || yd[3] != s.o) problem = "backward-data: dy, kernel and dx shapes disagree";
  return Execute(Pass::kBackwardData, s, dy.untyped_data(), kernel.untyped_data(), dx->untyped_data(), problem);
}

ffi::Error BackwardWeightsImpl(ffi::BufferR4<ffi::F32> x, ffi::BufferR4<ffi::F32> dy,
                               ffi::ResultBufferR4<ffi::F32> dkernel, ffi::Span<const int64_t> strides,
                               ffi::Span<const int64_t> pad_lo, ffi::Span<const int64_t> pad_hi,
                               ffi::Span<const int64_t> dilation) {
  auto xd = x.dimensions(), yd = dy.dimensions(), kd = dkernel->dimensions();
  Shape s{xd[0], xd[1], xd[2], xd[3], kd[3], kd[0], kd[1], yd[1], yd[2], {}, {}, {}, {}};
  std::string problem = ReadAttributes(strides, pad_lo, pad_hi, dilation, s);
  if (kd[2] != s.c || yd[0] != s.n || yd[3] != s.o) problem = "backward-weights: x, dy and dkernel shapes disagree";
  return Execute(Pass::kBackwardWeights, s, x.untyped_data(), dy.untyped_data(), dkernel->untyped_data(), problem);
}

}  // namespace

#define DCGAN_CONV_BINDING(first, second, result)   \
  ffi::Ffi::Bind()                                  \
      .Arg<ffi::BufferR4<ffi::F32>>()               \
      .Arg<ffi::BufferR4<ffi::F32>>()               \
      .Ret<ffi::BufferR4<ffi::F32>>()               \
      .Attr<ffi::Span<const int64_t>>("strides")    \
      .Attr<ffi::Span<const int64_t>>("pad_lo")     \
      .Attr<ffi::Span<const int64_t>>("pad_hi")     \
      .Attr<ffi::Span<const int64_t>>("dilation")

XLA_FFI_DEFINE_HANDLER_SYMBOL(DcganOnednnConvForward, ForwardImpl, DCGAN_CONV_BINDING(x, kernel, y));
XLA_FFI_DEFINE_HANDLER_SYMBOL(DcganOnednnConvBackwardData, BackwardDataImpl, DCGAN_CONV_BINDING(dy, kernel, dx));
XLA_FFI_DEFINE_HANDLER_SYMBOL(DcganOnednnConvBackwardWeights, BackwardWeightsImpl,
                              DCGAN_CONV_BINDING(x, dy, dkernel));

extern "C" void dcgan_onednn_set_num_threads(int threads) { g_threads.store(threads); }

extern "C" int dcgan_onednn_version() {
  const dnnl_version_t* v = dnnl_version();
  return v->major * 10000 + v->minor * 100 + v->patch;
}
