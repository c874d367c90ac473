// Reference Q4_K blocks from llama.cpp's own quantize_row_q4_K_ref, for
// Tests/FormatsTests/Fixtures/gguf_writer/q4_k.bin. Built and run by scripts/make_q4k_fixtures.sh
// against llama.cpp's ggml-quants.c (no FMA contraction: -ffp-contract=off).
// Output: "Q4KF", u32 block count, the input floats (256 per block), then the Q4_K blocks
// (144 bytes each), all little-endian.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ggml-impl.h"
#include "ggml-quants.h"

// What ggml.c would provide; the reference row quantiser needs only the fp16 table, filled
// when the program or library loads (the library's users never call main).
float ggml_table_f32_f16[1 << 16];
__attribute__((constructor)) static void fill_fp16_table(void) {
    for (int i = 0; i < (1 << 16); i++) ggml_table_f32_f16[i] = ggml_compute_fp16_to_fp32((ggml_fp16_t)i);
}
void ggml_abort(const char * file, int line, const char * fmt, ...) { fprintf(stderr, "abort %s:%d\n", file, line); abort(); }
size_t ggml_row_size(enum ggml_type type, int64_t ne) { (void)type; (void)ne; abort(); }
const char * ggml_type_name(enum ggml_type type) { (void)type; return "?"; }
size_t ggml_type_size(enum ggml_type type) { (void)type; abort(); }

static uint64_t state = 0x9E3779B97F4A7C15ull;
static double uniform(void) {  // xorshift64*, in (0, 1)
    state ^= state >> 12; state ^= state << 25; state ^= state >> 27;
    return ((state * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0) + 1e-300;
}
static float gaussian(void) { return (float)(sqrt(-2 * log(uniform())) * cos(6.283185307179586 * uniform())); }

enum { N = 256, BLOCKS = 24 };

int main(void) {
    static float x[BLOCKS * N];
    for (int b = 0; b < BLOCKS; b++) {
        float * v = x + b * N;
        for (int i = 0; i < N; i++) {
            switch (b) {
            case 0: case 1: case 2: case 3: case 4: case 5: v[i] = 0.02f * gaussian(); break;  // weight-like
            case 6: case 7: v[i] = 0.02f * gaussian() * (i % 37 == 0 ? 40.0f : 1.0f); break;  // outliers
            case 8: v[i] = 0; break;                                                          // all zero
            case 9: v[i] = 0.5f; break;                                                       // constant > 0
            case 10: v[i] = -0.25f; break;                                                    // constant < 0
            case 11: v[i] = (float)uniform(); break;                                          // all positive
            case 12: v[i] = -(float)uniform(); break;                                         // all negative
            case 13: v[i] = 1e-30f * gaussian(); break;                                       // scales underflow fp16
            case 14: v[i] = 1e-6f * gaussian(); break;                                        // subnormal fp16 scales
            case 15: v[i] = 1000.0f * gaussian(); break;                                      // large
            case 16: v[i] = (i / 32) % 2 ? 0 : 0.02f * gaussian(); break;                     // zero sub-blocks
            case 17: v[i] = (i / 32) == 3 ? 1.0f : 0.01f * gaussian(); break;                 // one flat sub-block
            case 18: v[i] = (float)(i % 16) / 15.0f; break;                                   // exactly 4-bit grid
            case 19: v[i] = (i / 32 + 1) * 0.001f * gaussian(); break;                        // growing sub-block scales
            default: v[i] = 0.05f * gaussian() + 0.03f; break;                                // offset
            }
        }
    }
    static block_q4_K y[BLOCKS];
    quantize_row_q4_K_ref(x, y, BLOCKS * N);
    FILE * f = stdout;
    uint32_t n = BLOCKS;
    fwrite("Q4KF", 1, 4, f);
    fwrite(&n, 4, 1, f);
    fwrite(x, sizeof(float), BLOCKS * N, f);
    fwrite(y, sizeof(block_q4_K), BLOCKS, f);
    return 0;
}
