/* The cell rule on the CPU, forward and backward, with one fixed order of floating-point operations.
 *
 * Every sum is accumulated in an order written here: vector lanes hold different outputs, never parts of
 * one sum, and each fused multiply-add is an explicit _mm256_fmadd_ps (compiled with -ffp-contract=off, so the
 * compiler adds none of its own). Any x86-64 CPU with AVX2 and FMA therefore computes the same bits, whatever
 * wider instructions it has and however many threads share the batch: a sample is computed by one thread,
 * and parameter gradients are kept per sample and summed over samples in sample order (cube_sum_rows).
 *
 * Freestanding (no libc): the caller allocates every buffer and splits the batch over its threads.
 *
 * Layouts (float32, row-major, C = channels, Cp = C rounded up to 8, H = hidden, Hp = H rounded up to 8,
 * K = 7C, the neighbourhood [own, +X, -X, +Y, -Y, +Z, -Z] x C):
 *   table (N, 7) int32   the cell each neighbourhood block reads, -1 outside the walls (reads zeros)
 *   pk    (K, Hp)        perceive weight on the neighbourhood, transposed, zero columns past H
 *   pw    (Hp, 7, Cp)    the same weight as rows: pw[h, b, c] = perceive.weight[h, b*C + c]
 *   pe, pb (Hp)          perceive weight on the external input, perceive bias
 *   ut    (Hp, Cp)       update weight transposed, zero past H and C
 *   un    (Cp, Hp)       update weight, zero past C and H
 *   ub    (Cp)           update bias
 * States are (N, Cp) per sample with zero padding lanes; step t maps state s_t to
 *   s_{t+1}[n] = s_t[n] + (ub + sum_h relu(a[n, h]) ut[h])        (h ascending)
 *   a[n]      = (pb + ext[n] pe) + sum_k g[n, k] pk[k]            (k ascending), g the gathered neighbourhood.
 */
#include <immintrin.h>
#include <stdint.h>

#define BLOCKS 7
#define LANES 8
#define MAX_HV 16 /* hidden width up to 128 */
#define MAX_CV 4  /* channels up to 32 */

typedef struct {
    int64_t cells, channels, cpad, hidden, hpad, steps;
    const int32_t *table;
    const float *pk, *pw, *pe, *pb, *ut, *un, *ub;
} Rule;

/* Per-sample parameter gradient layout, in this order: pk (K, Hp), pe (Hp), pb (Hp), ut (Hp, Cp), ub (Cp). */
int64_t cube_gradient_width(const Rule *r) {
    int64_t k = BLOCKS * r->channels;
    return k * r->hpad + 2 * r->hpad + r->hpad * r->cpad + r->cpad;
}

static inline void zero(float *p, int64_t n) {
    for (int64_t i = 0; i < n; i++) p[i] = 0.0f;
}

static inline void copy(float *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = src[i];
}

#define ALWAYS static inline __attribute__((always_inline))
#define GROUP 3 /* cells computed together: independent FMA chains to hide the FMA latency; no change to any sum */

/* Pre-activations acc[q] (Hp) of the R cells n0 .. n0+R-1 of state s (N, Cp); `zeros` (Cp) is read outside the walls. */
ALWAYS void perceive_group(const Rule *r, const float *s, const float *zeros, const float *x, int64_t n0,
                           const int R, const int HV, __m256 acc[][MAX_HV]) {
    const int64_t c = r->channels, cp = r->cpad, hp = r->hpad;
    for (int q = 0; q < R; q++) {
        const __m256 e = _mm256_set1_ps(x[n0 + q]);
        for (int j = 0; j < HV; j++)
            acc[q][j] = _mm256_fmadd_ps(e, _mm256_loadu_ps(r->pe + j * LANES), _mm256_loadu_ps(r->pb + j * LANES));
    }
    const float *w = r->pk;
    for (int b = 0; b < BLOCKS; b++) {
        const float *g[GROUP];
        for (int q = 0; q < R; q++) {
            const int32_t read = r->table[(n0 + q) * BLOCKS + b];
            g[q] = read < 0 ? zeros : s + (int64_t)read * cp;
        }
        for (int64_t i = 0; i < c; i++, w += hp) {
            __m256 wv[MAX_HV];
            for (int j = 0; j < HV; j++) wv[j] = _mm256_loadu_ps(w + j * LANES);
            for (int q = 0; q < R; q++) {
                const __m256 gi = _mm256_set1_ps(g[q][i]);
                for (int j = 0; j < HV; j++) acc[q][j] = _mm256_fmadd_ps(gi, wv[j], acc[q][j]);
            }
        }
    }
}

/* One step of R cells: out[n] = s[n] + (ub + ((p0 + p1) + (p2 + p3))), p_m the sum over h = m mod 4 (ascending)
 * of relu(a[h]) ut[h]: four partial sums, so the update is not one FMA chain of length H. */
ALWAYS void advance_group(const Rule *r, const float *s, const float *zeros, const float *x, int64_t n0, float *out,
                          const int R, const int HV, const int CV) {
    __m256 acc[GROUP][MAX_HV];
    float hidden[GROUP][MAX_HV * LANES] __attribute__((aligned(32)));
    perceive_group(r, s, zeros, x, n0, R, HV, acc);
    const __m256 zero_v = _mm256_setzero_ps();
    for (int q = 0; q < R; q++)
        for (int j = 0; j < HV; j++) _mm256_store_ps(hidden[q] + j * LANES, _mm256_max_ps(acc[q][j], zero_v));
    __m256 part[GROUP][MAX_CV][4];
    for (int q = 0; q < R; q++)
        for (int i = 0; i < CV; i++)
            for (int m = 0; m < 4; m++) part[q][i][m] = zero_v;
    for (int64_t h = 0; h < HV * LANES; h += 4)
        for (int m = 0; m < 4; m++)
            for (int i = 0; i < CV; i++) {
                const __m256 w = _mm256_loadu_ps(r->ut + (h + m) * r->cpad + i * LANES);
                for (int q = 0; q < R; q++)
                    part[q][i][m] = _mm256_fmadd_ps(_mm256_set1_ps(hidden[q][h + m]), w, part[q][i][m]);
            }
    for (int q = 0; q < R; q++)
        for (int i = 0; i < CV; i++) {
            const __m256 sum = _mm256_add_ps(_mm256_add_ps(part[q][i][0], part[q][i][1]),
                                             _mm256_add_ps(part[q][i][2], part[q][i][3]));
            const int64_t at = (n0 + q) * r->cpad + i * LANES;
            _mm256_storeu_ps(out + at, _mm256_add_ps(_mm256_loadu_ps(s + at),
                                                     _mm256_add_ps(_mm256_loadu_ps(r->ub + i * LANES), sum)));
        }
}

ALWAYS void step_cells(const Rule *r, const float *s, const float *zeros, const float *x, float *out,
                       const int HV, const int CV) {
    int64_t n = 0;
    for (; n + GROUP <= r->cells; n += GROUP) advance_group(r, s, zeros, x, n, out, GROUP, HV, CV);
    for (; n < r->cells; n++) advance_group(r, s, zeros, x, n, out, 1, HV, CV);
}

typedef void (*StepFn)(const Rule *, const float *, const float *, const float *, float *);
#define STEP(HV, CV) \
    static void step_##HV##_##CV(const Rule *r, const float *s, const float *z, const float *x, float *o) { \
        step_cells(r, s, z, x, o, HV, CV); \
    }
STEP(1, 1) STEP(2, 1) STEP(4, 1) STEP(8, 1) STEP(1, 2) STEP(2, 2) STEP(4, 2) STEP(8, 2)
static void step_any(const Rule *r, const float *s, const float *z, const float *x, float *o) {
    step_cells(r, s, z, x, o, (int)(r->hpad / LANES), (int)(r->cpad / LANES));
}

static StepFn choose_step(const Rule *r) {
    const int64_t hv = r->hpad / LANES, cv = r->cpad / LANES;
    if (cv == 1) switch (hv) { case 1: return step_1_1; case 2: return step_2_1; case 4: return step_4_1; case 8: return step_8_1; }
    if (cv == 2) switch (hv) { case 1: return step_1_2; case 2: return step_2_2; case 4: return step_4_2; case 8: return step_8_2; }
    return step_any;
}

/* One sample's T steps from its initial state x0 (N, C): final state into `final` (N, C) if non-null, every
 * state s_0 .. s_{T-1} into `saved` (T, N, Cp) if non-null. a, b: N Cp floats each; zeros: Cp zero floats. */
static void run_sample(const Rule *r, StepFn step, const float *x0, const float *x, float *final, float *saved,
                       float *a, float *b, const float *zeros) {
    const int64_t n_cells = r->cells, c = r->channels, cp = r->cpad, size = n_cells * cp;
    zero(a, size);
    zero(b, size);
    for (int64_t n = 0; n < n_cells; n++) copy(a + n * cp, x0 + n * c, c);
    for (int64_t t = 0; t < r->steps; t++) {
        if (saved) copy(saved + t * size, a, size);
        step(r, a, zeros, x, b);
        float *swap = a;
        a = b;
        b = swap;
    }
    if (final)
        for (int64_t n = 0; n < n_cells; n++) copy(final + n * c, a + n * cp, c);
}

/* Samples [first, last) of a batch: initial states state0 (B, N, C), external inputs ext (B, N), final states
 * into final (B, N, C); with `saved` non-null, also every state s_0 .. s_{T-1} into saved (B, T, N, Cp).
 * scratch: 2 N Cp + Cp floats for this thread alone. */
void cube_forward(const Rule *r, const float *state0, const float *ext, float *final, float *saved,
                  int64_t first, int64_t last, float *scratch) {
    const int64_t n_cells = r->cells, c = r->channels, cp = r->cpad, size = n_cells * cp;
    float *zeros = scratch + 2 * size;
    const StepFn step = choose_step(r);
    zero(zeros, cp);
    for (int64_t sample = first; sample < last; sample++)
        run_sample(r, step, state0 + sample * n_cells * c, ext + sample * n_cells, final + sample * n_cells * c,
                   saved ? saved + sample * r->steps * size : 0, scratch, scratch + size, zeros);
}

/* The sum of v's 8 lanes in one fixed order. */
static inline float lane_sum(__m256 v) {
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
    return _mm_cvtss_f32(q);
}

typedef struct {
    float *pk, *pe, *pb, *ut, *ub; /* this sample's parameter gradients */
    float *ext;                    /* this sample's d loss / d external input (N) */
} Grads;

/* Backward through one step for R cells: reads g (d loss / d s_{t+1}), adds into g_next (d loss / d s_t, which
 * starts as a copy of g) and into the sample's parameter gradients, cells in ascending order. */
ALWAYS void backward_group(const Rule *r, const float *s, const float *zeros, const float *x, int64_t n0,
                           const float *g, float *g_next, const Grads *d, const int R, const int HV, const int CV) {
    const int64_t c = r->channels, cp = r->cpad, hp = r->hpad, size = r->cells * cp;
    __m256 a[GROUP][MAX_HV], dp[GROUP][MAX_HV];
    float hidden[GROUP][MAX_HV * LANES] __attribute__((aligned(32)));
    float d_pre[GROUP][MAX_HV * LANES] __attribute__((aligned(32)));
    const __m256 zero_v = _mm256_setzero_ps();
    perceive_group(r, s, zeros, x, n0, R, HV, a);
    for (int q = 0; q < R; q++)
        for (int j = 0; j < HV; j++) _mm256_store_ps(hidden[q] + j * LANES, _mm256_max_ps(a[q][j], zero_v));
    const float *gs[GROUP];
    for (int q = 0; q < R; q++) gs[q] = g + (n0 + q) * cp;
    for (int i = 0; i < CV; i++) {
        __m256 v = _mm256_loadu_ps(d->ub + i * LANES);
        for (int q = 0; q < R; q++) v = _mm256_add_ps(v, _mm256_loadu_ps(gs[q] + i * LANES));
        _mm256_storeu_ps(d->ub + i * LANES, v);
    }
    for (int64_t h = 0; h < HV * LANES; h++)
        for (int i = 0; i < CV; i++) {
            __m256 v = _mm256_loadu_ps(d->ut + h * cp + i * LANES);
            for (int q = 0; q < R; q++)
                v = _mm256_fmadd_ps(_mm256_set1_ps(hidden[q][h]), _mm256_loadu_ps(gs[q] + i * LANES), v);
            _mm256_storeu_ps(d->ut + h * cp + i * LANES, v);
        }
    for (int q = 0; q < R; q++)
        for (int j = 0; j < HV; j++) dp[q][j] = zero_v;
    for (int64_t i = 0; i < c; i++)
        for (int q = 0; q < R; q++) {
            const __m256 gi = _mm256_set1_ps(gs[q][i]);
            for (int j = 0; j < HV; j++) dp[q][j] = _mm256_fmadd_ps(gi, _mm256_loadu_ps(r->un + i * hp + j * LANES), dp[q][j]);
        }
    for (int q = 0; q < R; q++) {
        __m256 dot = zero_v;
        for (int j = 0; j < HV; j++) {
            dp[q][j] = _mm256_and_ps(dp[q][j], _mm256_cmp_ps(a[q][j], zero_v, _CMP_GT_OQ));
            _mm256_store_ps(d_pre[q] + j * LANES, dp[q][j]);
            dot = _mm256_fmadd_ps(dp[q][j], _mm256_loadu_ps(r->pe + j * LANES), dot);
        }
        d->ext[n0 + q] += lane_sum(dot);
    }
    for (int j = 0; j < HV; j++) {
        __m256 vb = _mm256_loadu_ps(d->pb + j * LANES), ve = _mm256_loadu_ps(d->pe + j * LANES);
        for (int q = 0; q < R; q++) {
            vb = _mm256_add_ps(vb, dp[q][j]);
            ve = _mm256_fmadd_ps(_mm256_set1_ps(x[n0 + q]), dp[q][j], ve);
        }
        _mm256_storeu_ps(d->pb + j * LANES, vb);
        _mm256_storeu_ps(d->pe + j * LANES, ve);
    }
    float *dk = d->pk;
    for (int b = 0; b < BLOCKS; b++) {
        const float *gb[GROUP];
        for (int q = 0; q < R; q++) {
            const int32_t read = r->table[(n0 + q) * BLOCKS + b];
            gb[q] = read < 0 ? zeros : s + (int64_t)read * cp;
        }
        for (int64_t i = 0; i < c; i++, dk += hp) {
            __m256 v[MAX_HV];
            for (int j = 0; j < HV; j++) v[j] = _mm256_loadu_ps(dk + j * LANES);
            for (int q = 0; q < R; q++) {
                const __m256 gi = _mm256_set1_ps(gb[q][i]);
                for (int j = 0; j < HV; j++) v[j] = _mm256_fmadd_ps(gi, dp[q][j], v[j]);
            }
            for (int j = 0; j < HV; j++) _mm256_storeu_ps(dk + j * LANES, v[j]);
        }
    }
    for (int q = 0; q < R; q++) {
        __m256 dg[BLOCKS * MAX_CV];
        for (int i = 0; i < BLOCKS * CV; i++) dg[i] = zero_v;
        for (int64_t h = 0; h < HV * LANES; h++) {
            const __m256 dh = _mm256_set1_ps(d_pre[q][h]);
            const float *w = r->pw + h * BLOCKS * cp;
            for (int i = 0; i < BLOCKS * CV; i++) dg[i] = _mm256_fmadd_ps(dh, _mm256_loadu_ps(w + i * LANES), dg[i]);
        }
        for (int b = 0; b < BLOCKS; b++) {
            const int32_t read = r->table[(n0 + q) * BLOCKS + b];
            float *to = g_next + (read < 0 ? size : (int64_t)read * cp); /* outside the walls: a row that is dropped */
            for (int i = 0; i < CV; i++)
                _mm256_storeu_ps(to + i * LANES, _mm256_add_ps(_mm256_loadu_ps(to + i * LANES), dg[b * CV + i]));
        }
    }
}

ALWAYS void backward_cells(const Rule *r, const float *s, const float *zeros, const float *x, const float *g,
                           float *g_next, const Grads *d, const int HV, const int CV) {
    int64_t n = 0;
    for (; n + GROUP <= r->cells; n += GROUP) backward_group(r, s, zeros, x, n, g, g_next, d, GROUP, HV, CV);
    for (; n < r->cells; n++) backward_group(r, s, zeros, x, n, g, g_next, d, 1, HV, CV);
}

typedef void (*BackFn)(const Rule *, const float *, const float *, const float *, const float *, float *, const Grads *);
#define BACK(HV, CV) \
    static void back_##HV##_##CV(const Rule *r, const float *s, const float *z, const float *x, const float *g, \
                                 float *gn, const Grads *d) { \
        backward_cells(r, s, z, x, g, gn, d, HV, CV); \
    }
BACK(1, 1) BACK(2, 1) BACK(4, 1) BACK(8, 1) BACK(1, 2) BACK(2, 2) BACK(4, 2) BACK(8, 2)
static void back_any(const Rule *r, const float *s, const float *z, const float *x, const float *g, float *gn,
                     const Grads *d) {
    backward_cells(r, s, z, x, g, gn, d, (int)(r->hpad / LANES), (int)(r->cpad / LANES));
}

static BackFn choose_back(const Rule *r) {
    const int64_t hv = r->hpad / LANES, cv = r->cpad / LANES;
    if (cv == 1) switch (hv) { case 1: return back_1_1; case 2: return back_2_1; case 4: return back_4_1; case 8: return back_8_1; }
    if (cv == 2) switch (hv) { case 1: return back_1_2; case 2: return back_2_2; case 4: return back_4_2; case 8: return back_8_2; }
    return back_any;
}

/* Backward of cube_forward for samples [first, last), from the states it saved, or with `saved` null from the
 * initial states state0 (B, N, C), recomputing each sample's states (the same bits) into scratch.
 * grad_final (B, N, C): d loss / d final state. Writes grad_state0 (B, N, C), grad_ext (B, N) and, per sample,
 * the parameter gradients into grads (B, cube_gradient_width).
 * scratch: 2 (N + 1) Cp + Cp floats, and (T + 2) N Cp more when recomputing. */
void cube_backward(const Rule *r, const float *state0, const float *saved, const float *ext, const float *grad_final,
                   float *grad_state0, float *grad_ext, float *grads, int64_t first, int64_t last, float *scratch) {
    const int64_t n_cells = r->cells, c = r->channels, cp = r->cpad, hp = r->hpad, size = n_cells * cp;
    const int64_t width = cube_gradient_width(r);
    float *g = scratch, *g_next = g + size + cp, *zeros = g_next + size + cp;
    float *recomputed = zeros + cp;
    const BackFn back = choose_back(r);
    const StepFn step = choose_step(r);
    zero(zeros, cp);
    for (int64_t sample = first; sample < last; sample++) {
        const float *x = ext + sample * n_cells;
        const float *states = saved + sample * r->steps * size;
        if (!saved) {
            float *work = recomputed + r->steps * size;
            run_sample(r, step, state0 + sample * n_cells * c, x, 0, recomputed, work, work + size, zeros);
            states = recomputed;
        }
        float *p = grads + sample * width;
        Grads d;
        d.pk = p;
        d.pe = d.pk + BLOCKS * c * hp;
        d.pb = d.pe + hp;
        d.ut = d.pb + hp;
        d.ub = d.ut + hp * cp;
        d.ext = grad_ext + sample * n_cells;
        zero(p, width);
        zero(d.ext, n_cells);
        zero(g, size + cp);
        for (int64_t n = 0; n < n_cells; n++) copy(g + n * cp, grad_final + (sample * n_cells + n) * c, c);
        for (int64_t t = r->steps - 1; t >= 0; t--) {
            copy(g_next, g, size); /* the identity path; the neighbourhood's terms are added to it */
            zero(g_next + size, cp);
            back(r, states + t * size, zeros, x, g, g_next, &d);
            float *swap = g;
            g = g_next;
            g_next = swap;
        }
        for (int64_t n = 0; n < n_cells; n++) copy(grad_state0 + (sample * n_cells + n) * c, g + n * cp, c);
    }
}

/* out[j] = sum over i ascending of rows[i, j], for columns [first, last) of a (count, width) matrix. */
void cube_sum_rows(const float *rows, int64_t count, int64_t width, float *out, int64_t first, int64_t last) {
    for (int64_t j = first; j < last; j++) out[j] = 0.0f;
    for (int64_t i = 0; i < count; i++) {
        const float *row = rows + i * width;
        for (int64_t j = first; j < last; j++) out[j] += row[j];
    }
}

/* Peak FLOP/s probe: `rounds` x 10 independent chains of 8-lane FMAs (160 FLOP per round); returns a lane sum so
 * the work cannot be optimised away. */
float cube_fma_peak(int64_t rounds) {
    __m256 acc[10];
    const __m256 m = _mm256_set1_ps(0.999999f), add = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 10; i++) acc[i] = _mm256_set1_ps((float)i);
    for (int64_t k = 0; k < rounds; k++)
        for (int i = 0; i < 10; i++) acc[i] = _mm256_fmadd_ps(acc[i], m, add);
    __m256 total = acc[0];
    for (int i = 1; i < 10; i++) total = _mm256_add_ps(total, acc[i]);
    return lane_sum(total);
}
