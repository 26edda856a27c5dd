// Run-time choice of the instruction-set level.
// Built without ISA flags: everything that needs them lives in the kernel TUs.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <stdexcept>

#include "distance/distance.h"

#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
#define LOOKALIKE_X86_DISPATCH 1
#endif

namespace lookalike::distance {
namespace {

bool cpu_supports(Isa isa) {
#ifdef LOOKALIKE_X86_DISPATCH
  // libgcc's checks include OS support (XCR0) for the wider registers.
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  switch (isa) {
    case Isa::Scalar: return true;
    case Isa::Avx2: return avx2;
    // The AVX-512 TU is also compiled with the AVX2 flags.
    case Isa::Avx512:
      return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  }
  return false;
#else
  return isa == Isa::Scalar;
#endif
}

// Support is downward closed, so the usable levels are Scalar..best.
Isa best_supported() {
  if (cpu_supports(Isa::Avx512)) return Isa::Avx512;
  if (cpu_supports(Isa::Avx2)) return Isa::Avx2;
  return Isa::Scalar;
}

const KernelSet& table(Isa isa) {
  switch (isa) {
#ifdef LOOKALIKE_X86_DISPATCH
    case Isa::Avx512: return avx512_kernels();
    case Isa::Avx2: return avx2_kernels();
#endif
    default: return scalar_kernels();
  }
}

// The level at start-up: the best one, lowered by LOOKALIKE_SIMD. A bad value
// must not stop the program, so it costs one line on stderr, not an exception.
Isa initial_isa() {
  const Isa best = best_supported();
  const char* env = std::getenv("LOOKALIKE_SIMD");
  if (env == nullptr || *env == '\0') return best;
  Isa wanted;
  try {
    wanted = parse_isa(env);
  } catch (const std::invalid_argument&) {
    std::fprintf(stderr, "lookalike: unknown LOOKALIKE_SIMD=%s (expected scalar, avx2 or avx512); using %s\n",
                 env, isa_name(best));
    return best;
  }
  if (wanted > best) {
    std::fprintf(stderr, "lookalike: LOOKALIKE_SIMD=%s is not supported by this CPU; using %s\n", env,
                 isa_name(best));
    return best;
  }
  return wanted;
}

constexpr int kUnset = -1;
// Read on every kernels() call; written once at start-up and by ScopedIsa.
std::atomic<int> g_active{kUnset};
std::once_flag g_init;

Isa current() {
  int v = g_active.load(std::memory_order_acquire);
  if (v == kUnset) {
    // Once, so that racing first callers read the environment (and warn) once.
    std::call_once(g_init, [] { g_active.store(int(initial_isa()), std::memory_order_release); });
    v = g_active.load(std::memory_order_acquire);
  }
  return Isa(v);
}

}  // namespace

const KernelSet& kernels() { return table(current()); }

const KernelSet& kernels_for(Isa isa) {
  if (!cpu_supports(isa))
    throw std::invalid_argument(std::string("SIMD level ") + isa_name(isa) + " is not supported by this CPU");
  return table(isa);
}

Isa active_isa() { return current(); }

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512})
    if (cpu_supports(isa)) out.push_back(isa);
  return out;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "unknown";
}

Isa parse_isa(const std::string& name) {
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512})
    if (name == isa_name(isa)) return isa;
  throw std::invalid_argument("unknown SIMD level '" + name + "' (expected scalar, avx2 or avx512)");
}

ScopedIsa::ScopedIsa(Isa isa) : previous_(current()) {
  kernels_for(isa);  // throws for a level the CPU lacks
  g_active.store(int(isa), std::memory_order_release);
}

ScopedIsa::~ScopedIsa() { g_active.store(int(previous_), std::memory_order_release); }

// The bulk conversions follow the active level like the kernels do; the
// one-at-a-time ones are scalar code and live in kernels_scalar.cpp.
void f32_to_f16_n(const float* in, uint16_t* out, size_t n) { kernels().to_f16(in, out, n); }
void f16_to_f32_n(const uint16_t* in, float* out, size_t n) { kernels().from_f16(in, out, n); }

// The same layout at every level (the levels differ in registers per panel row,
// not in the panel), so packed vectors stay valid when the level changes.
std::vector<float> pack_panels(const float* x, size_t n, size_t dim) {
  const size_t panels = (n + kPanelWidth - 1) / kPanelWidth;
  std::vector<float> packed(panels * dim * kPanelWidth, 0.0f);
  for (size_t v = 0; v < n; ++v) {
    float* column = packed.data() + (v / kPanelWidth) * dim * kPanelWidth + v % kPanelWidth;
    for (size_t j = 0; j < dim; ++j) column[j * kPanelWidth] = x[v * dim + j];
  }
  return packed;
}

}  // namespace lookalike::distance
