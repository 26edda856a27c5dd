#include "pq/rabitq_ex.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <queue>
#include <vector>

#include "pq/adc_kernels.h"

namespace lookalike::pq {

namespace {

// Past (2^ex_bits - 1) / max |o_i| the largest coordinates are clipped; the
// search goes on for a few more grid steps of the largest one (as the
// authors' implementation does), and starts from t = 0: a window that starts
// higher (theirs, tuned at higher dimensions) misses the best t for most
// vectors at 3-5 bits and 64 dimensions.
constexpr double kSearchPastTop = 10;

struct Event {
  double t;
  uint32_t dim;
  bool operator>(const Event& o) const { return t > o.t || (t == o.t && dim > o.dim); }
};

// u_i (< 2^ex_bits) of the unit vector's magnitudes a, for the rescaling
// factor t in (0, t_end] that maximises <u + 1/2, a> / |u + 1/2|.
std::vector<uint32_t> best_grid_code(const std::vector<double>& a, size_t ex_bits) {
  const uint32_t top = (1u << ex_bits) - 1;
  const double max_a = *std::max_element(a.begin(), a.end());
  const double t_end = (double(top) + kSearchPastTop) / max_a;
  std::vector<uint32_t> start(a.size(), 0);
  double numerator = 0, square = 0;  // <u + 1/2, a>, |u + 1/2|^2
  std::vector<Event> first;
  for (size_t i = 0; i < a.size(); ++i) {
    numerator += 0.5 * a[i];
    square += 0.25;
    if (a[i] > 0) first.push_back({1 / a[i], uint32_t(i)});
  }
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events(std::greater<Event>(), std::move(first));
  std::vector<uint32_t> u = start, steps;  // steps: the coordinates raised, in order
  double best = numerator / std::sqrt(square);
  size_t best_steps = 0;
  while (!events.empty() && events.top().t <= t_end) {
    const uint32_t i = events.top().dim;
    events.pop();
    ++u[i];
    steps.push_back(i);
    numerator += a[i];
    square += 2.0 * u[i];  // (u + 1/2)^2 - (u - 1/2)^2
    const double cosine = numerator / std::sqrt(square);
    if (cosine > best) {
      best = cosine;
      best_steps = steps.size();
    }
    if (u[i] < top) events.push({(u[i] + 1) / a[i], i});
  }
  // Replayed rather than recomputed from the best t, whose floor(t a_i) may
  // round either way at the critical value itself.
  for (size_t s = 0; s < best_steps; ++s) ++start[steps[s]];
  return start;
}

}  // namespace

void rabitq_ex_encode(const float* residual, size_t padded_dim, size_t ex_bits, uint8_t* row) {
  double norm2 = 0;
  for (size_t i = 0; i < padded_dim; ++i) norm2 += double(residual[i]) * residual[i];
  const double norm = std::sqrt(norm2);
  std::vector<double> a(padded_dim, 0.0);
  if (norm > 0)
    for (size_t i = 0; i < padded_dim; ++i) a[i] = std::fabs(double(residual[i])) / norm;
  const std::vector<uint32_t> u = norm > 0 ? best_grid_code(a, ex_bits) : std::vector<uint32_t>(padded_dim, 0);
  double numerator = 0, square = 0;
  for (size_t i = 0; i < padded_dim; ++i) {
    numerator += (u[i] + 0.5) * a[i];
    square += (u[i] + 0.5) * (u[i] + 0.5);
  }
  // A zero residual has no direction; its estimate is multiplied by its zero norm.
  const double cosine = norm > 0 ? numerator / std::sqrt(square) : 1.0;
  const float factors[3] = {float(norm), float(1.0 / cosine), float(1.0 / std::sqrt(square))};
  std::memcpy(row, factors, sizeof(factors));
  uint8_t* planes = row + sizeof(factors);
  const size_t plane_bytes = rabitq_ex_plane_bytes(padded_dim);
  std::fill_n(planes, (ex_bits + 1) * plane_bytes, uint8_t(0));
  const uint32_t top = (1u << ex_bits) - 1;
  for (size_t i = 0; i < padded_dim; ++i) {
    // c_i - (2^B - 1) / 2 = sign(o_i) (u_i + 1/2), with the sign as the top bit.
    const uint32_t code = residual[i] > 0 ? (top + 1) + u[i] : top - u[i];
    for (size_t p = 0; p <= ex_bits; ++p)
      planes[p * plane_bytes + i / 8] = uint8_t(planes[p * plane_bytes + i / 8] | (((code >> p) & 1u) << (i % 8)));
  }
}

RabitqExFactors rabitq_ex_factors(const uint8_t* row) {
  RabitqExFactors f;
  std::memcpy(&f, row, sizeof(f));
  return f;
}

void rabitq_ex_estimate(const RabitqExQuery& q, const uint8_t* row, float& est, float& err) {
  static_assert(sizeof(RabitqExFactors) == 3 * sizeof(float));
  const RabitqExFactors f = rabitq_ex_factors(row);
  const float centre = float((1u << (q.ex_bits + 1)) - 1) / 2;
  const float dot = adc_kernels().rabitq_ex_dot(q.v, row + sizeof(f), q.ex_bits + 1, q.padded_dim, centre);
  const float ip = dot * f.inv_code_norm * f.inv_cosine;  // ~<o, v>
  est = q.offset + q.square_weight * f.norm * f.norm - q.linear_weight * f.norm * ip;
  const float tangent = std::sqrt(std::max(f.inv_cosine * f.inv_cosine - 1.0f, 0.0f));  // sine / cosine
  const float spread = q.sigmas * q.v_norm / std::sqrt(float(q.padded_dim - 1));
  // (An infinite bound stays infinite, not NaN, for a code equal to its direction.)
  const float spread_term = tangent > 0 ? spread * tangent : 0.0f;
  const float rounding = float(q.padded_dim) * 0x1p-22f * q.v_norm * f.inv_cosine;
  err = f.norm > 0 ? q.linear_weight * f.norm * (spread_term + rounding) : 0.0f;
}

}  // namespace lookalike::pq
