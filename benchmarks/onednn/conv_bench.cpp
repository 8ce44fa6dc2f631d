// Standalone oneDNN timing of one 2-D convolution's forward, backward-data and backward-weights passes, with the
// tensors in the layouts XLA hands over: NHWC activations and HWIO kernels (float32).
//
// Build: benchmarks/onednn/build.sh. Run: conv_bench --n=128 --h=14 --w=14 --c=128 --oc=256 --kernel=5 --stride=2
//   --pad-lo=1 --pad-hi=2 [--reps=10] [--warmup=2] [--passes=fwd,bwd_data,bwd_weights] [--variants=any,nhwc,plain]
//
// Variants:
//   any:   the primitives are created with format_tag::any, so oneDNN picks its preferred (blocked) layouts; every
//          timed call then reorders the NHWC/HWIO inputs into them and the result back to NHWC/HWIO. This is the
//          whole cost a jax.ffi custom call handed plain XLA buffers would pay.
//   nhwc:  activations fixed to nhwc (no reorder of src / dst / their gradients), weights format_tag::any (reordered
//          from / to hwio in every call): what a plugin would use where oneDNN's fast kernels take nhwc directly.
//   plain: the primitives are created directly on the nhwc / hwio memory descriptors (no reorders, if oneDNN has an
//          implementation for those layouts).
// Each repetition runs every step of the pass (reorders in, the convolution, reorders out), each timed on its own,
// waiting on the stream after each; the medians over `reps` repetitions after `warmup` untimed ones are printed as
// one `RESULT key=value ...` line per pass and variant (times in milliseconds).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

struct Options {
  long n = 128, h = 14, w = 14, c = 128, oc = 256, kernel = 5, stride = 2, pad_lo = 1, pad_hi = 2;
  int reps = 10, warmup = 2;
  std::string passes = "fwd,bwd_data,bwd_weights";
  std::string variants = "any,nhwc,plain";
};

std::vector<std::string> Split(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream stream(text);
  for (std::string part; std::getline(stream, part, ',');) parts.push_back(part);
  return parts;
}

Options Parse(int argc, char** argv) {
  Options o;
  std::map<std::string, long*> ints = {{"n", &o.n}, {"h", &o.h}, {"w", &o.w}, {"c", &o.c}, {"oc", &o.oc},
                                       {"kernel", &o.kernel}, {"stride", &o.stride}, {"pad-lo", &o.pad_lo},
                                       {"pad-hi", &o.pad_hi}};
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    size_t eq = arg.find('=');
    if (arg.rfind("--", 0) != 0 || eq == std::string::npos) {
      std::fprintf(stderr, "conv_bench: arguments are --key=value, got %s\n", arg.c_str());
      std::exit(2);
    }
    std::string key = arg.substr(2, eq - 2), value = arg.substr(eq + 1);
    if (ints.count(key)) {
      *ints[key] = std::stol(value);
    } else if (key == "reps") {
      o.reps = std::stoi(value);
    } else if (key == "warmup") {
      o.warmup = std::stoi(value);
    } else if (key == "passes") {
      o.passes = value;
    } else if (key == "variants") {
      o.variants = value;
    } else {
      std::fprintf(stderr, "conv_bench: unknown option --%s\n", key.c_str());
      std::exit(2);
    }
  }
  return o;
}

// One step of a pass: a primitive and its arguments; `compute` marks the convolution itself (else a reorder).
struct Step {
  dnnl::primitive primitive;
  std::unordered_map<int, memory> args;
  bool compute;
  std::string name;
};

// A user tensor in its given (XLA) layout, filled with uniform [-1, 1) values.
memory UserMemory(const memory::desc& desc, const dnnl::engine& engine, std::mt19937& rng) {
  memory mem(desc, engine);
  float* data = static_cast<float*>(mem.get_data_handle());
  std::uniform_real_distribution<float> uniform(-1.f, 1.f);
  for (size_t i = 0; i < desc.get_size() / sizeof(float); ++i) data[i] = uniform(rng);
  return mem;
}

// The memory the primitive reads for an input given in `user`: `user` itself when the layouts match, else a new
// buffer in `wanted` filled by a reorder step appended to `steps`.
memory Input(const memory& user, const memory::desc& wanted, const dnnl::engine& engine, const char* name,
             std::vector<Step>& steps) {
  if (user.get_desc() == wanted) return user;
  memory mem(wanted, engine);
  steps.push_back({dnnl::reorder(user, mem), {{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, mem}}, false,
                   std::string("reorder_") + name});
  return mem;
}

// The memory the primitive writes for an output wanted in `user`'s layout; the reorder back is returned in `after`.
memory Output(const memory& user, const memory::desc& produced, const dnnl::engine& engine, const char* name,
              std::vector<Step>& after) {
  if (user.get_desc() == produced) return user;
  memory mem(produced, engine);
  after.push_back({dnnl::reorder(mem, user), {{DNNL_ARG_FROM, mem}, {DNNL_ARG_TO, user}}, false,
                   std::string("reorder_") + name});
  return mem;
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  size_t m = values.size() / 2;
  return values.size() % 2 ? values[m] : 0.5 * (values[m - 1] + values[m]);
}

void TimeSteps(const std::vector<Step>& steps, const Options& o, dnnl::stream& stream, const std::string& label) {
  std::vector<double> total, compute;
  for (int rep = 0; rep < o.warmup + o.reps; ++rep) {
    double t_total = 0, t_compute = 0;
    for (const Step& step : steps) {
      auto start = std::chrono::steady_clock::now();
      step.primitive.execute(stream, step.args);
      stream.wait();
      double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      t_total += ms;
      if (step.compute) t_compute += ms;
    }
    if (rep >= o.warmup) {
      total.push_back(t_total);
      compute.push_back(t_compute);
    }
  }
  std::vector<double> reorder(total.size());
  for (size_t i = 0; i < total.size(); ++i) reorder[i] = total[i] - compute[i];
  std::string names;
  for (const Step& step : steps) names += (names.empty() ? "" : "+") + step.name;
  std::printf("RESULT %s total_ms=%.4f compute_ms=%.4f reorder_ms=%.4f min_total_ms=%.4f steps=%s\n", label.c_str(),
              Median(total), Median(compute), Median(reorder), *std::min_element(total.begin(), total.end()),
              names.c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  Options o = Parse(argc, argv);
  const long oh = (o.h + o.pad_lo + o.pad_hi - o.kernel) / o.stride + 1;
  const long ow = (o.w + o.pad_lo + o.pad_hi - o.kernel) / o.stride + 1;
  const dnnl_version_t* version = dnnl_version();
  std::printf("INFO onednn=%d.%d.%d hash=%s cpu_runtime=%d isa=%d out=%ldx%ldx%ld reps=%d warmup=%d\n",
              version->major, version->minor, version->patch, version->hash, version->cpu_runtime,
              static_cast<int>(dnnl::get_effective_cpu_isa()), oh, ow, o.oc, o.reps, o.warmup);

  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  std::mt19937 rng(0);

  // The layouts XLA hands over. oneDNN's logical dims are always N,C,H,W (data) and O,I,H,W (weights).
  memory::desc src_user({o.n, o.c, o.h, o.w}, dt::f32, tag::nhwc);
  memory::desc wei_user({o.oc, o.c, o.kernel, o.kernel}, dt::f32, tag::hwio);
  memory::desc dst_user({o.n, o.oc, oh, ow}, dt::f32, tag::nhwc);
  memory src = UserMemory(src_user, engine, rng), wei = UserMemory(wei_user, engine, rng);
  memory dst = UserMemory(dst_user, engine, rng);  // Forward output, and the output gradient of the backward passes.
  memory diff_src = UserMemory(src_user, engine, rng), diff_wei = UserMemory(wei_user, engine, rng);
  const memory::dims strides = {o.stride, o.stride}, pad_l = {o.pad_lo, o.pad_lo}, pad_r = {o.pad_hi, o.pad_hi};

  for (const std::string& variant : Split(o.variants)) {
    const bool any = variant == "any", any_weights = any || variant == "nhwc";
    if (!any_weights && variant != "plain") {
      std::fprintf(stderr, "conv_bench: variants are any, nhwc and plain, got %s\n", variant.c_str());
      return 2;
    }
    memory::desc src_md = any ? memory::desc({o.n, o.c, o.h, o.w}, dt::f32, tag::any) : src_user;
    memory::desc wei_md = any_weights ? memory::desc({o.oc, o.c, o.kernel, o.kernel}, dt::f32, tag::any) : wei_user;
    memory::desc dst_md = any ? memory::desc({o.n, o.oc, oh, ow}, dt::f32, tag::any) : dst_user;
    dnnl::convolution_forward::primitive_desc fwd_pd;
    try {
      fwd_pd = dnnl::convolution_forward::primitive_desc(engine, dnnl::prop_kind::forward_training,
                                                         dnnl::algorithm::convolution_direct, src_md, wei_md, dst_md,
                                                         strides, pad_l, pad_r);
    } catch (const dnnl::error& e) {
      std::printf("RESULT pass=all variant=%s unavailable=%s\n", variant.c_str(), e.what());
      continue;
    }
    for (const std::string& pass : Split(o.passes)) {
      std::vector<Step> steps, after;
      std::string impl;
      try {
        if (pass == "fwd") {
          memory s = Input(src, fwd_pd.src_desc(), engine, "src", steps);
          memory k = Input(wei, fwd_pd.weights_desc(), engine, "wei", steps);
          memory d = Output(dst, fwd_pd.dst_desc(), engine, "dst", after);
          steps.push_back({dnnl::convolution_forward(fwd_pd),
                           {{DNNL_ARG_SRC, s}, {DNNL_ARG_WEIGHTS, k}, {DNNL_ARG_DST, d}}, true, "conv"});
          impl = fwd_pd.impl_info_str();
        } else if (pass == "bwd_data") {
          dnnl::convolution_backward_data::primitive_desc pd(engine, dnnl::algorithm::convolution_direct, src_md,
                                                             wei_md, dst_md, strides, pad_l, pad_r, fwd_pd);
          memory dd = Input(dst, pd.diff_dst_desc(), engine, "diff_dst", steps);
          memory k = Input(wei, pd.weights_desc(), engine, "wei", steps);
          memory ds = Output(diff_src, pd.diff_src_desc(), engine, "diff_src", after);
          steps.push_back({dnnl::convolution_backward_data(pd),
                           {{DNNL_ARG_DIFF_DST, dd}, {DNNL_ARG_WEIGHTS, k}, {DNNL_ARG_DIFF_SRC, ds}}, true, "conv"});
          impl = pd.impl_info_str();
        } else if (pass == "bwd_weights") {
          dnnl::convolution_backward_weights::primitive_desc pd(engine, dnnl::algorithm::convolution_direct, src_md,
                                                                wei_md, dst_md, strides, pad_l, pad_r, fwd_pd);
          memory s = Input(src, pd.src_desc(), engine, "src", steps);
          memory dd = Input(dst, pd.diff_dst_desc(), engine, "diff_dst", steps);
          memory dk = Output(diff_wei, pd.diff_weights_desc(), engine, "diff_wei", after);
          steps.push_back({dnnl::convolution_backward_weights(pd),
                           {{DNNL_ARG_SRC, s}, {DNNL_ARG_DIFF_DST, dd}, {DNNL_ARG_DIFF_WEIGHTS, dk}}, true, "conv"});
          impl = pd.impl_info_str();
        } else {
          std::fprintf(stderr, "conv_bench: passes are fwd, bwd_data and bwd_weights, got %s\n", pass.c_str());
          return 2;
        }
      } catch (const dnnl::error& e) {
        std::printf("RESULT pass=%s variant=%s unavailable=%s\n", pass.c_str(), variant.c_str(), e.what());
        continue;
      }
      steps.insert(steps.end(), after.begin(), after.end());
      TimeSteps(steps, o, stream, "pass=" + pass + " variant=" + variant + " impl=" + impl);
    }
  }
  return 0;
}
