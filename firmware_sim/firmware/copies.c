/* The copies rule (copies.h; docs/PROTOCOL.md 3.3), in the reference's order of operations. */
#include "copies.h"

#include "snn_copies_tables.h"   /* snn_grid[57], snn_ber_codes[256]: the reference's doubles */

#define BCH_T 4u
#define REPLY_BLOCK_BYTES 13u
#define TRUTH_BYTES 3u
#define NO_REPORT_BER 1e-2
#define PLAN_TIE 1e-9
#define DECAY 0.98
#define LOG_FLOOR 1e-300

static const unsigned COPIES[3] = {1u, 3u, 5u};

static unsigned block_bytes(int fragmented, int long_counter)
{
    return (fragmented ? 13u : 12u) + (long_counter ? 2u : 0u);
}

/* x^n for n >= 0 by squaring (x^0 = 1, x^1 = x exactly). */
static double powi(double x, unsigned n)
{
    double r = 1.0;
    while (n) {
        if (n & 1u) {
            r *= x;
        }
        n >>= 1;
        if (n) {
            x *= x;
        }
    }
    return r;
}

static double comb(unsigned n, unsigned k)
{
    double r = 1.0;   /* exact: C(120, 4) and every other value used here is below 2^53 */
    for (unsigned i = 1; i <= k; i++) {
        r = r * (double)(n - k + i) / (double)i;
    }
    return r;
}

double snn_log(double x)
{
    /* x = m 2^k with m in [sqrt(1/2), sqrt(2)); log m = 2 atanh(s), s = (m - 1) / (m + 1) */
    union {
        double d;
        uint64_t u;
    } v = {x};
    int k = (int)((v.u >> 52) & 0x7FFu) - 1023;
    v.u = (v.u & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull;
    double m = v.d;
    if (m > 1.4142135623730951) {
        m *= 0.5;
        k++;
    }
    double f = m - 1.0, s = f / (2.0 + f), z = s * s;
    double poly = 1.0 / 23.0;
    static const double inv[11] = {1.0 / 21.0, 1.0 / 19.0, 1.0 / 17.0, 1.0 / 15.0, 1.0 / 13.0, 1.0 / 11.0,
                                   1.0 / 9.0, 1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0, 1.0};
    for (unsigned i = 0; i < 11u; i++) {
        poly = poly * z + inv[i];
    }
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    return (double)k * ln2_hi + ((double)k * ln2_lo + 2.0 * s * poly);
}

static double binom_tail(unsigned n, unsigned k, double p)
{
    double q = 1.0 - p, sum = 0.0;
    for (unsigned e = 0; e <= k; e++) {
        sum += comb(n, e) * powi(p, e) * powi(q, n - e);
    }
    double r = 1.0 - sum;
    return r > 0.0 ? r : 0.0;
}

double snn_block_loss(double ber, unsigned copies, unsigned block)
{
    double p = ber < 1e-6 ? 1e-6 : ber;
    p = p > 0.5 ? 0.5 : p;
    double voted = 0.0;
    for (unsigned j = copies / 2u + 1u; j <= copies; j++) {
        voted += comb(copies, j) * powi(p, j) * powi(1.0 - p, copies - j);
    }
    return binom_tail(8u * block, BCH_T, voted);
}

int snn_fits(unsigned payload, unsigned mtu, unsigned copies, unsigned fragments, int truth, int long_counter)
{
    unsigned extra = truth ? TRUTH_BYTES : 0u;
    if (fragments == 1u) {
        return copies * block_bytes(0, long_counter) + payload + extra <= mtu;
    }
    if (fragments < 2u || fragments > SNN_MAX_FRAGMENTS) {
        return 0;
    }
    unsigned chunk = (payload + fragments - 1u) / fragments;
    if ((fragments - 1u) * chunk >= payload) {
        return 0;   /* the last fragment would carry no payload byte */
    }
    return copies * block_bytes(1, long_counter) + chunk + extra <= mtu;
}

snn_plan_t snn_plan_cost(unsigned payload, unsigned copies, unsigned fragments, double ber, int truth,
                         int long_counter)
{
    unsigned block = block_bytes(fragments > 1u, long_counter);
    snn_plan_t p;
    p.copies = copies;
    p.fragments = fragments;
    p.bytes = fragments * copies * block + payload + (truth ? TRUTH_BYTES : 0u);
    p.answered = (1.0 - powi(snn_block_loss(ber, copies, block), fragments)) *
                 (1.0 - snn_block_loss(ber, copies, REPLY_BLOCK_BYTES));
    p.cost = p.answered > 0.0 ? (double)p.bytes / p.answered : __builtin_inf();
    return p;
}

/* a before b: fewer bytes, then fewer copies, then fewer fragments */
static int before(const snn_plan_t *a, const snn_plan_t *b)
{
    if (a->bytes != b->bytes) {
        return a->bytes < b->bytes;
    }
    if (a->copies != b->copies) {
        return a->copies < b->copies;
    }
    return a->fragments < b->fragments;
}

int snn_cheapest_plan(unsigned payload, unsigned mtu, double ber, int truth, int long_counter, snn_plan_t *out)
{
    snn_plan_t plans[3u * SNN_MAX_FRAGMENTS];
    unsigned n = 0;
    double best = __builtin_inf();
    for (unsigned c = 0; c < 3u; c++) {
        for (unsigned k = 1; k <= SNN_MAX_FRAGMENTS; k++) {
            if (snn_fits(payload, mtu, COPIES[c], k, truth, long_counter)) {
                plans[n] = snn_plan_cost(payload, COPIES[c], k, ber, truth, long_counter);
                if (plans[n].cost < best) {
                    best = plans[n].cost;
                }
                n++;
            }
        }
    }
    if (n == 0) {
        return -1;
    }
    int chosen = -1;
    double bound = best * (1.0 + PLAN_TIE);
    for (unsigned i = 0; i < n; i++) {
        if (plans[i].cost <= bound && (chosen < 0 || before(&plans[i], &plans[chosen]))) {
            chosen = (int)i;
        }
    }
    *out = plans[chosen];
    return 0;
}

int snn_fixed_plan(unsigned payload, unsigned mtu, unsigned wanted, int truth, int long_counter, snn_plan_t *out)
{
    unsigned extra = truth ? TRUTH_BYTES : 0u;
    for (int c = 2; c >= 0; c--) {
        unsigned copies = COPIES[c];
        if (copies > wanted) {
            continue;
        }
        unsigned k = 1;
        if (copies * block_bytes(0, long_counter) + payload + extra > mtu) {
            unsigned used = copies * block_bytes(1, long_counter) + extra;
            if (used >= mtu) {
                continue;
            }
            unsigned room = mtu - used;
            k = (payload + room - 1u) / room;
            k = k < 2u ? 2u : k;
            if (k > SNN_MAX_FRAGMENTS || k > payload) {
                continue;
            }
        }
        *out = snn_plan_cost(payload, copies, k, NO_REPORT_BER, truth, long_counter);
        return 0;
    }
    return -1;
}

unsigned snn_control_copies(unsigned data_copies, unsigned mtu)
{
    unsigned c = data_copies;
    while (c > 1u && 15u * c > mtu) {
        c -= 2u;
    }
    return c;
}

double snn_ber_from_code(unsigned code)
{
    return snn_ber_codes[code & 0xFFu];
}

void snn_estimate_init(snn_estimate_t *e)
{
    for (unsigned i = 0; i < SNN_GRID_POINTS; i++) {
        e->loglik[i] = 0.0;
    }
    e->outcomes = 0;
    e->have_report = 0;
    e->report = 0.0;
}

void snn_estimate_report(snn_estimate_t *e, unsigned ber_code)
{
    double b = snn_ber_from_code(ber_code);
    e->report = e->have_report ? 0.8 * e->report + 0.2 * b : b;
    e->have_report = 1;
}

void snn_estimate_observe(snn_estimate_t *e, unsigned payload, unsigned copies, unsigned fragments, int truth,
                          int long_counter, int answered)
{
    for (unsigned i = 0; i < SNN_GRID_POINTS; i++) {
        double a = snn_plan_cost(payload, copies, fragments, snn_grid[i], truth, long_counter).answered;
        double p = answered ? a : 1.0 - a;
        e->loglik[i] = DECAY * e->loglik[i] + snn_log(p > LOG_FLOOR ? p : LOG_FLOOR);
    }
    e->outcomes++;
}

int snn_estimate_own_ber(const snn_estimate_t *e, double *ber)
{
    if (!e->outcomes) {
        return 0;
    }
    double best = e->loglik[0];
    for (unsigned i = 1; i < SNN_GRID_POINTS; i++) {
        best = e->loglik[i] > best ? e->loglik[i] : best;
    }
    double margin = 1e-9 * (best < 0.0 ? -best : best);
    for (unsigned i = 0; i < SNN_GRID_POINTS; i++) {
        if (e->loglik[i] >= best - margin) {
            *ber = snn_grid[i];
            return 1;
        }
    }
    return 0;
}

double snn_estimate_planning_ber(const snn_estimate_t *e)
{
    double own, base = e->have_report ? e->report : NO_REPORT_BER;
    if (!snn_estimate_own_ber(e, &own)) {
        return base;
    }
    return own > base ? own : base;
}
