/* The UART link: protocol frames are messages of the UART stream tagged 0x01 (see main.c), the
 * harness (QEMU's relay, or a host) passes them on. */
#include "board.h"
#include "cobs.h"
#include "link.h"
#include "snn_config.h"

#define TX_MAX 320u

static uint8_t tx_cobs[TX_MAX + TX_MAX / 254u + 2u];
static uint8_t rx_frame[SNN_MTU];
static size_t rx_len;

void snn_uart_write_message(const uint8_t *data, size_t n)
{
    if (n > TX_MAX) {
        return;
    }
    size_t m = snn_cobs_encode(data, n, tx_cobs);
    for (size_t i = 0; i < m; i++) {
        snn_uart_putc(tx_cobs[i]);
    }
    snn_uart_putc(0);
}

#if !defined(SNN_LINK_SX1276)
void snn_link_init(void)
{
}

void snn_link_send(uint8_t *frame, size_t n)
{
    frame[-1] = 0x01;
    snn_uart_write_message(frame - 1, n + 1);
}

void snn_link_uart_frame(const uint8_t *frame, size_t n)
{
    if (n > sizeof rx_frame) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        rx_frame[i] = frame[i];
    }
    rx_len = n;
}

int snn_link_recv(uint8_t *buf, size_t cap)
{
    size_t n = rx_len;
    if (n == 0 || n > cap) {
        rx_len = 0;
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        buf[i] = rx_frame[i];
    }
    rx_len = 0;
    return (int)n;
}
#endif
