/* The device firmware: images in over the UART, symbols out as protocol frames, replies back in.
 *
 * Everything on the UART is COBS-framed with a 0x00 delimiter (docs/PROTOCOL.md, links). The UART
 * carries two streams, told apart by the first byte of each message: 0x01 then a protocol frame
 * (DATA out, REPLY/ERROR in, relayed unchanged by the harness: the UART link, link_uart.c), or
 * 0x00 then a tag for the harness's own messages. Built with the radio link (link_sx1276.c) the
 * protocol frames go on the air instead and the UART carries the harness messages only:
 *   host -> device  00 'I' seq(2) truth timeout_ms(2) retries pixels[H*W*C]   an image to encode
 *   host -> device  00 'F'   a clean stop: write the exact next counter and the limit (4.3), then
 *                   answer 00 'f' status (0 written, 5 store error)
 *   host -> device  00 'C' have next(4) limit(4)   the counter record (docs/PROTOCOL.md 4.3) in harness
 *                   builds (SNN_STATE_HARNESS: QEMU, whose flash is read-only between runs, and boards
 *                   without a flash driver): the harness keeps it in the key's state file. A board
 *                   with a flash driver keeps it in its flash journal (state_journal.c) instead
 *   device -> host  00 'W' next(4) limit(4)   persist this record (written ahead, 4.3) ...
 *   host -> device  00 'w' next(4) limit(4)   ... done, durably
 *   device -> host  00 'E' n      n random bytes, please (a resynchronisation nonce, 4.7) ...
 *   host -> device  00 'e' bytes[n]           ... from the host's CSPRNG
 *   device -> host  00 'R' fingerprint(4) device_id(2) n_symbols(2) levels layers arena(4) version
 *                   counter(4)   ready
 *   device -> host  00 'S' seq(2) status label confidence ber(2) attempts encode_ticks(4) rtt_ticks(4)
 *                   version counter(4)
 *                   status: 0 answered, 1 edge error (label = error code), 2 no reply, 3 no counter
 *                   (the resynchronisation got no answer), 4 stop: the key must be replaced (the edge
 *                   said NO_STATE or EXHAUSTED, or the counters are used up), 5 counter store error
 *                   ber: the edge's BER code (docs/PROTOCOL.md, REPLY)
 *   device -> host  00 'L' count ticks[count](4 each)     SysTick ticks of each layer of the last encode
 * On a board without a host harness the same loop serves a sensor: only 'I' would change. */
#include <stddef.h>
#include <stdint.h>

#include "board.h"
#include "cobs.h"
#include "link.h"
#include "pack.h"
#include "copies.h"
#include "counter_store.h"
#include "proto.h"
#include "resync.h"
#include "snn_config.h"
#include "state.h"
#include "snn_model.h"

#define RX_MAX (SNN_MODEL_INPUT_BYTES + 16u)

static uint8_t rx_buf[RX_MAX + RX_MAX / 254u + 2u];
static size_t rx_len;
static int rx_overflow;
static uint8_t msg[RX_MAX + RX_MAX / 254u + 2u];
static uint8_t reply_buf[SNN_MTU];
static uint32_t layer_ticks[SNN_MODEL_N_LAYERS + 1u];
static uint64_t layer_t0;
static const uint8_t fingerprint[4] = {
    (uint8_t)(SNN_MODEL_FINGERPRINT >> 24), (uint8_t)(SNN_MODEL_FINGERPRINT >> 16),
    (uint8_t)(SNN_MODEL_FINGERPRINT >> 8), (uint8_t)SNN_MODEL_FINGERPRINT};
/* frames are built in the arena's frame buffer (the activations are dead by then): byte 0 holds
 * the 0x01 stream tag, a frame (at most SNN_MTU bytes) follows */
typedef char snn_frame_fits_arena[(SNN_MODEL_FRAME_BYTES >= 1u + SNN_MTU) ? 1 : -1];

/* called by snn_model_run() at each layer boundary (SNN_LAYER_MARK, see the Makefile) */
void snn_layer_mark(unsigned k)
{
    uint64_t now = snn_ticks();
    if (k > 0 && k <= SNN_MODEL_N_LAYERS) {
        layer_ticks[k - 1] = (uint32_t)(now - layer_t0);
    }
    layer_t0 = now;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* emit() of the protocol: frames are built at snn_model_frame() + 1, so a link's tag fits in front. */
static void send_protocol_frame(const uint8_t *frame, size_t n)
{
    snn_link_send((uint8_t *)frame, n);
}

/* Collect UART bytes into one COBS message; returns its decoded length in msg, 0 if none is
 * complete yet, -1 for a damaged piece (dropped). */
static int poll_message(void)
{
    int c;
    while ((c = snn_uart_getc()) >= 0) {
        if (c != 0) {
            if (rx_len < sizeof rx_buf) {
                rx_buf[rx_len++] = (uint8_t)c;
            } else {
                rx_overflow = 1;
            }
            continue;
        }
        size_t n = rx_len;
        int bad = rx_overflow;
        rx_len = 0;
        rx_overflow = 0;
        if (bad || n == 0) {
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            msg[i] = rx_buf[i];
        }
        return snn_cobs_decode(msg, n);
    }
    return 0;
}

static void send_ready(void)
{
    uint8_t m[21] = {0, 'R'};
    for (int i = 0; i < 4; i++) {
        m[2 + i] = fingerprint[i];
    }
    m[6] = (uint8_t)(SNN_DEVICE_ID >> 8);
    m[7] = (uint8_t)SNN_DEVICE_ID;
    m[8] = (uint8_t)(SNN_MODEL_N_SYMBOLS >> 8);
    m[9] = (uint8_t)SNN_MODEL_N_SYMBOLS;
    m[10] = (uint8_t)SNN_MODEL_LEVELS;
    m[11] = (uint8_t)SNN_MODEL_N_LAYERS;
    put32(m + 12, SNN_MODEL_ARENA_BYTES);
    m[16] = (uint8_t)snn_proto_version();
    put32(m + 17, snn_proto_counter());
    snn_uart_write_message(m, sizeof m);
}

static uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

#if defined(SNN_STATE_HARNESS)
/* The counter record the harness holds, and its answers to 'W' and 'E'. */
static int h_received, h_have;
static uint32_t h_next, h_limit;
static uint8_t h_ack[9];
static int h_ack_len;
static uint8_t h_entropy[16];
static int h_entropy_len;
#endif

/* A harness message that may arrive at any time (the counter record and the harness's answers). */
static int handle_control(int n)
{
#if defined(SNN_STATE_HARNESS)
    if (n == 11 && msg[0] == 0 && msg[1] == 'C') {
        h_have = msg[2] == 1;
        h_next = get32(msg + 3);
        h_limit = get32(msg + 7);
        h_received = 1;
        return 1;
    }
    if (n == 10 && msg[0] == 0 && msg[1] == 'w') {
        for (int i = 0; i < 8; i++) {
            h_ack[i] = msg[2 + i];
        }
        h_ack_len = 8;
        return 1;
    }
    if (n > 2 && n <= 18 && msg[0] == 0 && msg[1] == 'e') {
        for (int i = 0; i < n - 2; i++) {
            h_entropy[i] = msg[2 + i];
        }
        h_entropy_len = n - 2;
        return 1;
    }
#else
    (void)n;
#endif
    return 0;
}

/* Read the UART once over: harness messages handled, protocol frames handed to the UART link. */
void snn_pump(void)
{
    int n = poll_message();
    if (n > 1 && !handle_control(n) && msg[0] == 0x01) {
        snn_link_uart_frame(msg + 1, (size_t)n - 1);
    }
}

#if defined(SNN_STATE_HARNESS)
#define HARNESS_WAIT_MS 3000u

static int wait_for(volatile int *flag)
{
    uint64_t deadline = snn_ticks() + (uint64_t)HARNESS_WAIT_MS * (SNN_CPU_HZ / 1000u);
    while (!*flag && snn_ticks() < deadline) {
        snn_pump();
    }
    return *flag ? 0 : -1;
}

int snn_state_open(uint32_t key_check, uint32_t *next, uint32_t *limit)
{
    (void)key_check;                  /* the harness's state file names its key itself */
    if (wait_for(&h_received) != 0) {
        return -1;
    }
    *next = h_next;
    *limit = h_limit;
    return h_have;
}

int snn_state_save(uint32_t next, uint32_t limit)
{
    uint8_t m[10] = {0, 'W'};
    put32(m + 2, next);
    put32(m + 6, limit);
    h_ack_len = 0;
    snn_uart_write_message(m, sizeof m);
    if (wait_for(&h_ack_len) != 0 || get32(h_ack) != next || get32(h_ack + 4) != limit) {
        return -1;
    }
    return 0;
}

int snn_entropy(uint8_t *out, unsigned n)
{
    uint8_t m[3] = {0, 'E', (uint8_t)n};
    if (n > sizeof h_entropy) {
        return -1;
    }
    h_entropy_len = 0;
    snn_uart_write_message(m, sizeof m);
    if (wait_for(&h_entropy_len) != 0 || h_entropy_len != (int)n) {
        return -1;
    }
    for (unsigned i = 0; i < n; i++) {
        out[i] = h_entropy[i];
    }
    return 0;
}
#endif

static snn_counter_store_t store;
static int store_state = -2;          /* -2: not opened yet; else snn_counter_open's answer */

/* A device that gets no answer to anything resynchronises (docs/PROTOCOL.md 4.7): once per boot,
 * when its first SNN_SILENT_WINDOW inferences since boot all went unanswered (the edge may have
 * moved past every counter it holds, e.g. after a forged success, and drop its frames as beyond
 * the gap without a word). */
#define SNN_SILENT_WINDOW 8u
static unsigned silent_inferences;   /* since boot, while nothing has answered */
static int heard_since_boot, silence_resync_done;
static int resync_pending;           /* told ERROR RESYNC on an inference's last attempt: the next one resyncs */

/* The device's link knowledge for the copies rule: the edge's reports and its own fates (3.3). */
static snn_estimate_t estimate;
#define PAYLOAD_BYTES ((SNN_MODEL_N_SYMBOLS * SNN_MODEL_BITS_PER_SYMBOL + 7u) / 8u)

/* The copies and fragments of the next transmission (docs/PROTOCOL.md 3.3): the copies rule
 * (SNN_COPIES 0, the default) or a fixed count lowered to what fits (build.py has checked that
 * the payload fits the MTU with one copy). */
static snn_plan_t plan_for(int truth, int long_counter)
{
    snn_plan_t p = {1u, 0u, 0u, 0.0, 0.0};
#if SNN_COPIES == 0
    (void)snn_cheapest_plan(PAYLOAD_BYTES, SNN_MTU, snn_estimate_planning_ber(&estimate), truth, long_counter, &p);
#else
    (void)snn_fixed_plan(PAYLOAD_BYTES, SNN_MTU, SNN_COPIES, truth, long_counter, &p);
#endif
    return p;
}

/* The counter for the next transmission, resynchronising first when there is none: 0, or the
 * 'S' status that ends the inference (3 no answer, 4 re-key, 5 store error). Control frames take
 * the copies of the DATA transmission that follows (long counter), lowered to fit (3.3). */
static uint8_t take_counter(uint32_t *c, uint16_t timeout_ms, int force_resync, int truth)
{
    if (store_state == -2) {
        store_state = snn_counter_open(&store, snn_proto_key_check());
    }
    if (store_state < 0) {
        return 5;
    }
    int r = force_resync ? SNN_COUNTER_NO_STATE : snn_counter_take(&store, c);
    if (r == SNN_COUNTER_NO_STATE || r == SNN_COUNTER_AT_LIMIT) {
#if SNN_COPIES == 0
        unsigned data_copies = plan_for(truth, 1).copies;   /* what the next DATA (long counter) gets */
#else
        unsigned data_copies = SNN_COPIES;                  /* the fixed count, as the reference device */
#endif
        int q = snn_resync(&store, timeout_ms, snn_control_copies(data_copies, SNN_MTU));
        if (q != SNN_RESYNC_OK) {
            return q == SNN_RESYNC_REKEY ? 4 : (q == SNN_RESYNC_STORE ? 5 : 3);
        }
        r = snn_counter_take(&store, c);
    }
    if (r == SNN_COUNTER_EXHAUSTED) {
        return 4;
    }
    return r == SNN_COUNTER_OK ? 0 : 5;
}

#define ERROR_BUSY 3u
#define ERROR_RESYNC 6u

static void infer(uint16_t seq, uint8_t truth, uint16_t timeout_ms, uint8_t retries)
{
    static uint8_t payload[(SNN_MODEL_N_SYMBOLS * SNN_MODEL_BITS_PER_SYMBOL + 7u) / 8u];
    uint64_t t0 = snn_ticks();
    layer_t0 = t0;
    snn_model_run();
    uint64_t t1 = snn_ticks();
    uint16_t bits = (uint16_t)(SNN_MODEL_N_SYMBOLS * SNN_MODEL_BITS_PER_SYMBOL);
    size_t nbytes = snn_pack_symbols(snn_model_symbols(), SNN_MODEL_N_SYMBOLS, SNN_MODEL_BITS_PER_SYMBOL,
                                     SNN_MODEL_GRAY, payload);
    snn_reply_t reply = {0, 0, 0, 0, 0, 0};
    uint8_t status = 2, attempts = 0;
    int silence = !heard_since_boot && !silence_resync_done && silent_inferences >= SNN_SILENT_WINDOW;
    silence_resync_done |= silence;
    int resync = silence || resync_pending;
    resync_pending = 0;
    uint64_t t_sent = snn_ticks();
    for (unsigned attempt = 0; attempt <= retries && status == 2; attempt++) {
        uint32_t counter;
        uint8_t why = take_counter(&counter, timeout_ms, resync, truth != 0xFFu);
        resync = 0;
        if (why) {
            status = why;
            break;
        }
        attempts++;
        snn_proto_set_counter(counter);
        int long_counter = snn_proto_long_counter(attempt);
        snn_plan_t plan = plan_for(truth != 0xFFu, long_counter);
        snn_proto_transmit(seq, attempt, payload, nbytes, bits, truth, plan.copies, plan.fragments,
                           snn_model_frame() + 1, send_protocol_frame);
        uint64_t deadline = snn_ticks() + (uint64_t)timeout_ms * (SNN_CPU_HZ / 1000u);
        while (snn_ticks() < deadline) {
            snn_pump();
            int r = snn_link_recv(reply_buf, sizeof reply_buf);
            if (r > 0 && snn_proto_parse(reply_buf, (size_t)r, &reply) == 1) {
                status = reply.kind == 1 ? 0 : 1;
                break;
            }
        }
        /* this transmission's fate (3.3): answered (a REPLY or ERROR for its counter) or timed out;
         * an answer to an earlier one tells nothing of this one */
        if (status == 2 || reply.counter == counter) {
            snn_estimate_observe(&estimate, PAYLOAD_BYTES, plan.copies, plan.fragments, truth != 0xFFu, long_counter,
                                 status != 2);
        }
        if (status == 0) {
            snn_counter_vouch(&store, reply.counter);   /* a REPLY vouches for its counter (4.3) */
            snn_estimate_report(&estimate, reply.ber);
        }
        if (status == 1 && reply.label == ERROR_BUSY && attempt < retries) {   /* BUSY: wait, then resend */
            uint64_t until = snn_ticks() + (uint64_t)reply.retry_ms * (SNN_CPU_HZ / 1000u);
            while (snn_ticks() < until) {
                snn_pump();
            }
            status = 2;
        }
        if (status == 1 && reply.label == ERROR_RESYNC) {   /* beyond the edge's gap (5.2): resync first */
            if (attempt < retries) {
                resync = 1;
                status = 2;
            } else {
                resync_pending = 1;
            }
        }
    }
    if (status == 0 || status == 1) {
        heard_since_boot = 1;
    } else if (status == 2) {
        silent_inferences++;
    }
    uint64_t t2 = snn_ticks();
    uint8_t s[23] = {0, 'S', (uint8_t)(seq >> 8), (uint8_t)seq, status, reply.label, reply.confidence,
                     (uint8_t)(reply.ber >> 8), (uint8_t)reply.ber, attempts};
    put32(s + 10, (uint32_t)(t1 - t0));
    put32(s + 14, (uint32_t)(t2 - t_sent));
    s[18] = (uint8_t)snn_proto_version();
    put32(s + 19, store.next);
    snn_uart_write_message(s, sizeof s);
    static uint8_t l[3 + 4 * SNN_MODEL_N_LAYERS];
    l[0] = 0;
    l[1] = 'L';
    l[2] = (uint8_t)SNN_MODEL_N_LAYERS;
    for (unsigned k = 0; k < SNN_MODEL_N_LAYERS; k++) {
        put32(l + 3 + 4 * k, layer_ticks[k]);
    }
    snn_uart_write_message(l, sizeof l);
}

int main(void)
{
    snn_board_init();
    snn_link_init();
    snn_proto_init();
    snn_estimate_init(&estimate);
    send_ready();
    for (;;) {
        int n = poll_message();
        if (n > 0 && handle_control(n)) {
            continue;
        }
        if (n == 2 && msg[0] == 0 && msg[1] == 'F') {
            uint8_t f[3] = {0, 'f', (uint8_t)(store_state == -2 || snn_counter_flush(&store) == 0 ? 0 : 5)};
            snn_uart_write_message(f, sizeof f);
            continue;
        }
        if (n < 8 || msg[0] != 0 || msg[1] != 'I') {
            continue;
        }
        if ((size_t)n != 8u + SNN_MODEL_INPUT_BYTES) {
            continue;
        }
        uint8_t *in = snn_model_input();
        for (size_t i = 0; i < SNN_MODEL_INPUT_BYTES; i++) {
            in[i] = msg[8 + i];
        }
        infer((uint16_t)((msg[2] << 8) | msg[3]), msg[4], (uint16_t)((msg[5] << 8) | msg[6]), msg[7]);
    }
}
