// IEEE float16 ⇄ float32: block scales stored as halves (weights.h) and a float16 KV cache (attention.h).
#pragma once

#include <cstdint>

namespace qwd {

float half_to_float(uint16_t h);
uint16_t float_to_half(float f);  // rounded to nearest even; beyond the half range: inf
void halves_to_floats(const uint16_t* in, int64_t n, float* out);  // out[i] = half_to_float(in[i]), i < n
void floats_to_halves(const float* in, int64_t n, uint16_t* out);  // out[i] = float_to_half(in[i]), i < n

}  // namespace qwd
