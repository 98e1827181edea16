/* The cube's lattice on the CPU (seed, T steps of the cell rule, readout), forward and backward, with one fixed
 * order of floating-point operations.
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
 * K = 7C, the neighbourhood [own, +X, -X, +Y, -Y, +Z, -Z] x C, N cells, T steps):
 *   table (N, 7) int32   the cell each neighbourhood block reads, -1 outside the walls (reads zeros)
 *   pk    (K, Hp)        perceive weight on the neighbourhood, transposed, zero columns past H
 *   pw    (Hp, 7, Cp)    the same weight as rows: pw[h, b, c] = perceive.weight[h, b*C + c]
 *   pe, pb (Hp)          perceive weight on the external input, perceive bias
 *   ut    (Hp, Cp)       update weight transposed, zero past H and C
 *   un    (Cp, Hp)       update weight, zero past C and H
 *   ub    (Cp)           update bias
 *   sw, sb (Cp)          seed weight and bias; pos (N, Cp) the position code, or null
 *   rw    (Cp), rb (1)   readout weight and bias
 * States are (N, Cp) per sample with zero padding lanes. For a sample with external input x (N):
 *   s_0[n]     = (x[n] sw + sb) + pos[n]
 *   s_{t+1}[n] = s_t[n] + (ub + sum_h relu(a[n, h]) ut[h])        (h in four interleaved partial sums)
 *   a[n]       = (pb + x[n] pe) + sum_k g[n, k] pk[k]            (k ascending), g the gathered neighbourhood
 *   out[n]     = (sum_c s_T[n, c] rw[c]) + rb
 * Backward recomputes one sample at a time its record, s_0 .. s_T (T + 1, N, Cp) then relu(a) of steps 0 .. T-1
 * (T, N, Hp), into the thread's scratch, where it stays in cache: no state crosses from forward to backward
 * through memory, and the forward keeps nothing.
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
    const float *sw, *sb, *pos, *rw, *rb;
} Rule;

/* Floats of one sample's record (see above). */
int64_t cube_record_width(const Rule *r) {
    return (r->steps + 1) * r->cells * r->cpad + r->steps * r->cells * r->hpad;
}

/* Per-sample parameter gradient layout, in this order: pk (K, Hp), pe (Hp), pb (Hp), ut (Hp, Cp), ub (Cp),
 * sw (Cp), sb (Cp), rw (Cp), rb (1), then pos (N, Cp) where there is a position code. */
int64_t cube_gradient_width(const Rule *r) {
    const int64_t k = BLOCKS * r->channels;
    return k * r->hpad + 2 * r->hpad + r->hpad * r->cpad + 4 * r->cpad + 1 + (r->pos ? r->cells * r->cpad : 0);
}

static inline void zero(float *p, int64_t n) {
    for (int64_t i = 0; i < n; i++) p[i] = 0.0f;
}

static inline void copy(float *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = src[i];
}

/* The sum of v's 8 lanes in one fixed order. */
static inline float lane_sum(__m256 v) {
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
    return _mm_cvtss_f32(q);
}

/* sum_c a[c] b[c] over Cp lanes: products, the 8-lane vectors added in order, then their lanes. */
static inline float dot(const float *a, const float *b, int64_t cp) {
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(a), _mm256_loadu_ps(b));
    for (int64_t i = LANES; i < cp; i += LANES) v = _mm256_add_ps(v, _mm256_mul_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    return lane_sum(v);
}

#define ALWAYS static inline __attribute__((always_inline))
#define GROUP 3 /* cells computed together: independent FMA chains to hide the FMA latency; no change to any sum */

/* The rows neighbourhood block b of cells n0 .. n0+R-1 reads from state s: `zeros` outside the walls. */
ALWAYS void gather(const Rule *r, const float *s, const float *zeros, int64_t n0, int b, const int R,
                   const float *rows[]) {
    for (int q = 0; q < R; q++) {
        const int32_t read = r->table[(n0 + q) * BLOCKS + b];
        rows[q] = read < 0 ? zeros : s + (int64_t)read * r->cpad;
    }
}

/* Pre-activations acc[q] (Hp) of the R cells n0 .. n0+R-1 of state s (N, Cp). */
ALWAYS void perceive_group(const Rule *r, const float *s, const float *zeros, const float *x, int64_t n0,
                           const int R, const int HV, __m256 acc[][MAX_HV]) {
    const int64_t c = r->channels, hp = r->hpad;
    for (int q = 0; q < R; q++) {
        const __m256 e = _mm256_set1_ps(x[n0 + q]);
        for (int j = 0; j < HV; j++)
            acc[q][j] = _mm256_fmadd_ps(e, _mm256_loadu_ps(r->pe + j * LANES), _mm256_loadu_ps(r->pb + j * LANES));
    }
    const float *w = r->pk;
    for (int b = 0; b < BLOCKS; b++) {
        const float *g[GROUP];
        gather(r, s, zeros, n0, b, R, g);
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
 * of relu(a[h]) ut[h]: four partial sums, so the update is not one FMA chain of length H. With `kept` non-null,
 * relu(a) of each cell goes to kept (N, Hp). */
ALWAYS void advance_group(const Rule *r, const float *s, const float *zeros, const float *x, int64_t n0, float *out,
                          float *kept, const int R, const int HV, const int CV) {
    __m256 acc[GROUP][MAX_HV];
    float hidden[GROUP][MAX_HV * LANES] __attribute__((aligned(32)));
    perceive_group(r, s, zeros, x, n0, R, HV, acc);
    const __m256 zero_v = _mm256_setzero_ps();
    for (int q = 0; q < R; q++)
        for (int j = 0; j < HV; j++) _mm256_store_ps(hidden[q] + j * LANES, _mm256_max_ps(acc[q][j], zero_v));
    if (kept)
        for (int q = 0; q < R; q++)
            for (int j = 0; j < HV; j++)
                _mm256_storeu_ps(kept + (n0 + q) * r->hpad + j * LANES, _mm256_load_ps(hidden[q] + j * LANES));
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

ALWAYS void step_cells(const Rule *r, const float *s, const float *zeros, const float *x, float *out, float *kept,
                       const int HV, const int CV) {
    int64_t n = 0;
    for (; n + GROUP <= r->cells; n += GROUP) advance_group(r, s, zeros, x, n, out, kept, GROUP, HV, CV);
    for (; n < r->cells; n++) advance_group(r, s, zeros, x, n, out, kept, 1, HV, CV);
}

typedef void (*StepFn)(const Rule *, const float *, const float *, const float *, float *, float *);
#define STEP(HV, CV) \
    static void step_##HV##_##CV(const Rule *r, const float *s, const float *z, const float *x, float *o, float *k) { \
        step_cells(r, s, z, x, o, k, HV, CV); \
    }
STEP(1, 1) STEP(2, 1) STEP(4, 1) STEP(8, 1) STEP(1, 2) STEP(2, 2) STEP(4, 2) STEP(8, 2)
static void step_any(const Rule *r, const float *s, const float *z, const float *x, float *o, float *k) {
    step_cells(r, s, z, x, o, k, (int)(r->hpad / LANES), (int)(r->cpad / LANES));
}

static StepFn choose_step(const Rule *r) {
    const int64_t hv = r->hpad / LANES, cv = r->cpad / LANES;
    if (cv == 1) switch (hv) { case 1: return step_1_1; case 2: return step_2_1; case 4: return step_4_1; case 8: return step_8_1; }
    if (cv == 2) switch (hv) { case 1: return step_1_2; case 2: return step_2_2; case 4: return step_4_2; case 8: return step_8_2; }
    return step_any;
}

/* One sample: its outputs into out (N) if non-null; with `record` non-null, its record (see the top) there, the
 * states computed in place, else the states alternate between a and b (N Cp floats each). zeros: Cp zero floats. */
static void run_sample(const Rule *r, StepFn step, const float *x, float *out, float *record, float *a, float *b,
                       const float *zeros) {
    const int64_t n_cells = r->cells, cp = r->cpad, size = n_cells * cp;
    float *kept = record ? record + (r->steps + 1) * size : 0;
    if (record) a = record;
    for (int64_t n = 0; n < n_cells; n++) {
        const __m256 e = _mm256_set1_ps(x[n]);
        for (int64_t i = 0; i < cp; i += LANES) {
            __m256 v = _mm256_add_ps(_mm256_mul_ps(e, _mm256_loadu_ps(r->sw + i)), _mm256_loadu_ps(r->sb + i));
            if (r->pos) v = _mm256_add_ps(v, _mm256_loadu_ps(r->pos + n * cp + i));
            _mm256_storeu_ps(a + n * cp + i, v);
        }
    }
    for (int64_t t = 0; t < r->steps; t++) {
        if (record) {
            step(r, record + t * size, zeros, x, record + (t + 1) * size, kept + t * n_cells * r->hpad);
            continue;
        }
        step(r, a, zeros, x, b, 0);
        float *swap = a;
        a = b;
        b = swap;
    }
    const float *last = record ? record + r->steps * size : a;
    if (out)
        for (int64_t n = 0; n < n_cells; n++) out[n] = dot(last + n * cp, r->rw, cp) + r->rb[0];
}

/* Samples [first, last) of a batch: external inputs ext (B, N), outputs into out (B, N).
 * scratch: 2 N Cp + Cp floats for this thread alone. */
void cube_forward(const Rule *r, const float *ext, float *out, int64_t first, int64_t last, float *scratch) {
    const int64_t n_cells = r->cells, size = n_cells * r->cpad;
    float *zeros = scratch + 2 * size;
    const StepFn step = choose_step(r);
    zero(zeros, r->cpad);
    for (int64_t sample = first; sample < last; sample++)
        run_sample(r, step, ext + sample * n_cells, out + sample * n_cells, 0, scratch, scratch + size, zeros);
}

typedef struct {
    float *pk, *pe, *pb, *ut, *ub, *sw, *sb, *rw, *rb, *pos; /* this sample's parameter gradients */
    float *ext;                                            /* this sample's d loss / d external input (N) */
} Grads;

/* Backward through one step for R cells from the step's state s and kept relu(a) `kept` (N, Hp): reads g
 * (d loss / d s_{t+1}), adds into g_next (d loss / d s_t, which starts as a copy of g) and into the sample's
 * parameter gradients, cells in ascending order. */
ALWAYS void backward_group(const Rule *r, const float *s, const float *kept, const float *zeros, const float *x,
                           int64_t n0, const float *g, float *g_next, const Grads *d, const int R, const int HV,
                           const int CV) {
    const int64_t c = r->channels, cp = r->cpad, hp = r->hpad, size = r->cells * cp;
    __m256 dp[GROUP][MAX_HV];
    float d_pre[GROUP][MAX_HV * LANES] __attribute__((aligned(32)));
    const __m256 zero_v = _mm256_setzero_ps();
    const float *hidden[GROUP], *gs[GROUP];
    for (int q = 0; q < R; q++) {
        hidden[q] = kept + (n0 + q) * hp;
        gs[q] = g + (n0 + q) * cp;
    }
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
        __m256 sum = zero_v;
        for (int j = 0; j < HV; j++) { /* relu(a) > 0 exactly where a > 0 */
            dp[q][j] = _mm256_and_ps(dp[q][j], _mm256_cmp_ps(_mm256_loadu_ps(hidden[q] + j * LANES), zero_v, _CMP_GT_OQ));
            _mm256_store_ps(d_pre[q] + j * LANES, dp[q][j]);
            sum = _mm256_fmadd_ps(dp[q][j], _mm256_loadu_ps(r->pe + j * LANES), sum);
        }
        d->ext[n0 + q] += lane_sum(sum);
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
        gather(r, s, zeros, n0, b, R, gb);
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
    /* d s_t of the neighbourhood, dg[b, c] = sum_h d_pre[h] pw[h, b, c], added to the rows read: the sum over h
     * in two halves (each ascending), added at the end, so twice as many FMA chains run at once */
    const int64_t half = HV * LANES / 2;
    for (int q = 0; q < R; q++) {
        __m256 dg[BLOCKS * MAX_CV], upper[BLOCKS * MAX_CV];
        for (int i = 0; i < BLOCKS * CV; i++) dg[i] = upper[i] = zero_v;
        for (int64_t h = 0; h < half; h++) {
            const __m256 dh = _mm256_set1_ps(d_pre[q][h]), dh_upper = _mm256_set1_ps(d_pre[q][h + half]);
            const float *w = r->pw + h * BLOCKS * cp, *w_upper = r->pw + (h + half) * BLOCKS * cp;
            for (int i = 0; i < BLOCKS * CV; i++) {
                dg[i] = _mm256_fmadd_ps(dh, _mm256_loadu_ps(w + i * LANES), dg[i]);
                upper[i] = _mm256_fmadd_ps(dh_upper, _mm256_loadu_ps(w_upper + i * LANES), upper[i]);
            }
        }
        for (int i = 0; i < BLOCKS * CV; i++) dg[i] = _mm256_add_ps(dg[i], upper[i]);
        for (int b = 0; b < BLOCKS; b++) {
            const int32_t read = r->table[(n0 + q) * BLOCKS + b];
            float *to = g_next + (read < 0 ? size : (int64_t)read * cp); /* outside the walls: a row that is dropped */
            for (int i = 0; i < CV; i++)
                _mm256_storeu_ps(to + i * LANES, _mm256_add_ps(_mm256_loadu_ps(to + i * LANES), dg[b * CV + i]));
        }
    }
}

ALWAYS void backward_cells(const Rule *r, const float *s, const float *kept, const float *zeros, const float *x,
                           const float *g, float *g_next, const Grads *d, const int HV, const int CV) {
    int64_t n = 0;
    for (; n + GROUP <= r->cells; n += GROUP) backward_group(r, s, kept, zeros, x, n, g, g_next, d, GROUP, HV, CV);
    for (; n < r->cells; n++) backward_group(r, s, kept, zeros, x, n, g, g_next, d, 1, HV, CV);
}

typedef void (*BackFn)(const Rule *, const float *, const float *, const float *, const float *, const float *,
                       float *, const Grads *);
#define BACK(HV, CV) \
    static void back_##HV##_##CV(const Rule *r, const float *s, const float *k, const float *z, const float *x, \
                                 const float *g, float *gn, const Grads *d) { \
        backward_cells(r, s, k, z, x, g, gn, d, HV, CV); \
    }
BACK(1, 1) BACK(2, 1) BACK(4, 1) BACK(8, 1) BACK(1, 2) BACK(2, 2) BACK(4, 2) BACK(8, 2)
static void back_any(const Rule *r, const float *s, const float *k, const float *z, const float *x, const float *g,
                     float *gn, const Grads *d) {
    backward_cells(r, s, k, z, x, g, gn, d, (int)(r->hpad / LANES), (int)(r->cpad / LANES));
}

static BackFn choose_back(const Rule *r) {
    const int64_t hv = r->hpad / LANES, cv = r->cpad / LANES;
    if (cv == 1) switch (hv) { case 1: return back_1_1; case 2: return back_2_1; case 4: return back_4_1; case 8: return back_8_1; }
    if (cv == 2) switch (hv) { case 1: return back_1_2; case 2: return back_2_2; case 4: return back_4_2; case 8: return back_8_2; }
    return back_any;
}

/* Backward of cube_forward for samples [first, last), each sample's record recomputed (the same bits) into
 * scratch. grad_out (B, N): d loss / d out. Writes grad_ext (B, N) and, per sample, the parameter gradients into
 * grads (B, cube_gradient_width). scratch: 2 (N + 1) Cp + Cp + cube_record_width floats for this thread alone. */
void cube_backward(const Rule *r, const float *ext, const float *grad_out, float *grad_ext, float *grads,
                   int64_t first, int64_t last, float *scratch) {
    const int64_t n_cells = r->cells, cp = r->cpad, hp = r->hpad, size = n_cells * cp;
    const int64_t width = cube_gradient_width(r);
    float *g = scratch, *g_next = g + size + cp, *zeros = g_next + size + cp;
    float *record = zeros + cp;
    const BackFn back = choose_back(r);
    const StepFn step = choose_step(r);
    zero(zeros, cp);
    for (int64_t sample = first; sample < last; sample++) {
        const float *x = ext + sample * n_cells, *gout = grad_out + sample * n_cells;
        run_sample(r, step, x, 0, record, 0, 0, zeros);
        const float *kept = record + (r->steps + 1) * size, *last_state = record + r->steps * size;
        float *p = grads + sample * width;
        Grads d;
        d.pk = p;
        d.pe = d.pk + BLOCKS * r->channels * hp;
        d.pb = d.pe + hp;
        d.ut = d.pb + hp;
        d.ub = d.ut + hp * cp;
        d.sw = d.ub + cp;
        d.sb = d.sw + cp;
        d.rw = d.sb + cp;
        d.rb = d.rw + cp;
        d.pos = d.rb + 1;
        d.ext = grad_ext + sample * n_cells;
        zero(p, width);
        zero(d.ext, n_cells);
        zero(g, size + cp);
        /* readout: d s_T[n] = gout[n] rw; d rw = sum_n gout[n] s_T[n]; d rb = sum_n gout[n] (n ascending) */
        for (int64_t i = 0; i < cp; i += LANES) {
            const __m256 w = _mm256_loadu_ps(r->rw + i);
            __m256 dw = _mm256_setzero_ps();
            for (int64_t n = 0; n < n_cells; n++) {
                const __m256 e = _mm256_set1_ps(gout[n]);
                _mm256_storeu_ps(g + n * cp + i, _mm256_mul_ps(e, w));
                dw = _mm256_fmadd_ps(e, _mm256_loadu_ps(last_state + n * cp + i), dw);
            }
            _mm256_storeu_ps(d.rw + i, dw);
        }
        for (int64_t n = 0; n < n_cells; n++) d.rb[0] += gout[n];
        for (int64_t t = r->steps - 1; t >= 0; t--) {
            copy(g_next, g, size); /* the identity path; the neighbourhood's terms are added to it */
            zero(g_next + size, cp);
            back(r, record + t * size, kept + t * n_cells * hp, zeros, x, g, g_next, &d);
            float *swap = g;
            g = g_next;
            g_next = swap;
        }
        /* seed: g is d s_0. d sw = sum_n x[n] g[n], d sb = sum_n g[n] (n ascending), d pos[n] = g[n],
         * and the external input's share: d x[n] += sum_c g[n, c] sw[c] */
        for (int64_t i = 0; i < cp; i += LANES) {
            __m256 dw = _mm256_setzero_ps(), db = _mm256_setzero_ps();
            for (int64_t n = 0; n < n_cells; n++) {
                const __m256 gn = _mm256_loadu_ps(g + n * cp + i);
                dw = _mm256_fmadd_ps(_mm256_set1_ps(x[n]), gn, dw);
                db = _mm256_add_ps(db, gn);
            }
            _mm256_storeu_ps(d.sw + i, dw);
            _mm256_storeu_ps(d.sb + i, db);
        }
        if (r->pos) copy(d.pos, g, size);
        for (int64_t n = 0; n < n_cells; n++) d.ext[n] += dot(g + n * cp, r->sw, cp);
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
