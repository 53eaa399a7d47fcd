/* The copies rule of docs/PROTOCOL.md 3.3 (v2.1): the header copies and the fragment count of each
 * transmission by expected cost, as the reference device (codec.wire.copies) computes it.
 *
 * A plan (c copies, K fragments) of T bytes is answered with probability A (at least one
 * fragment's header reaches the edge and the REPLY comes back); its cost is T / A, the expected
 * bytes per answered inference with resends. The device takes the cheapest plan that fits the
 * MTU at p = max(the BER the edge reports, smoothed; the BER that best explains which of its own
 * transmissions were answered, on a grid of 57 BERs).
 *
 * In IEEE double, as the spec says (the tie margin of 1e-9 absorbs rounding): hardware on the
 * H743's FPv5-D16, libgcc's soft-float elsewhere. pow and log are this file's own (the image links
 * no libm): integer powers by squaring, log by the atanh series; the grid and the BER codes come
 * from the reference's own doubles (snn_copies_tables.h, written by build.py). */
#ifndef SNN_COPIES_H
#define SNN_COPIES_H

#include <stdint.h>

#define SNN_GRID_POINTS 57u
#define SNN_MAX_FRAGMENTS 16u

typedef struct {
    unsigned copies, fragments;
    uint32_t bytes;       /* every byte of every fragment of the transmission */
    double answered;      /* P(answered) */
    double cost;          /* bytes / answered (infinite when never answered) */
} snn_plan_t;

typedef struct {
    double loglik[SNN_GRID_POINTS];
    uint32_t outcomes;
    int have_report;
    double report;        /* the edge's reported BER, smoothed: 0.8 old + 0.2 new */
} snn_estimate_t;

/* Whether K fragments with c copies fit the MTU (3.4). */
int snn_fits(unsigned payload, unsigned mtu, unsigned copies, unsigned fragments, int truth, int long_counter);
/* P(a block of `block` bytes sent `copies` times is lost) at `ber` (3.3 step 1). */
double snn_block_loss(double ber, unsigned copies, unsigned block);
/* The rule's figures for one plan (3.3 step 2). */
snn_plan_t snn_plan_cost(unsigned payload, unsigned copies, unsigned fragments, double ber, int truth,
                         int long_counter);
/* The cheapest plan that fits (3.3 step 3); -1 when nothing fits. */
int snn_cheapest_plan(unsigned payload, unsigned mtu, double ber, int truth, int long_counter, snn_plan_t *out);
/* A fixed copy count: the largest <= `wanted` that fits, with the fewest fragments (3.4); -1 if none. */
int snn_fixed_plan(unsigned payload, unsigned mtu, unsigned wanted, int truth, int long_counter, snn_plan_t *out);
/* The copies of a control frame: the next DATA's c, lowered to the largest of 5, 3, 1 with 15 c <= MTU. */
unsigned snn_control_copies(unsigned data_copies, unsigned mtu);

/* The device's link knowledge (3.3 step 4). */
void snn_estimate_init(snn_estimate_t *e);
void snn_estimate_report(snn_estimate_t *e, unsigned ber_code);   /* a REPLY's BER code (5.1) */
/* The fate of a transmission sent with this plan: answered (a REPLY or ERROR for its counter) or
 * not (its timeout passed). */
void snn_estimate_observe(snn_estimate_t *e, unsigned payload, unsigned copies, unsigned fragments, int truth,
                          int long_counter, int answered);
/* 1 with p_own in *ber, 0 before any outcome. */
int snn_estimate_own_ber(const snn_estimate_t *e, double *ber);
/* p = max(p_report (1e-2 before a report), p_own). */
double snn_estimate_planning_ber(const snn_estimate_t *e);

/* The REPLY's BER code as a BER: 0, or 1e-6 10^((code - 1) / 32) (5.1). */
double snn_ber_from_code(unsigned code);
double snn_log(double x);

#endif
