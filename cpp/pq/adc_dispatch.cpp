// Follows the distance kernels' level, so one switch (LOOKALIKE_SIMD, ScopedIsa)
// governs all SIMD code. Built without ISA flags.
#include "distance/distance.h"
#include "pq/adc_kernels.h"

namespace lookalike::pq {

const AdcKernels& adc_kernels() {
#if defined(__x86_64__) || defined(_M_X64)
  switch (distance::active_isa()) {
    case distance::Isa::Avx512: return avx512_adc_kernels();
    case distance::Isa::Avx2: return avx2_adc_kernels();
    default: break;
  }
#endif
  return scalar_adc_kernels();
}

}  // namespace lookalike::pq
