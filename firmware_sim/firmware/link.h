/* The link the protocol frames travel on, one implementation per link, chosen by the build:
 * link_uart.c (frames on the UART beside the harness messages, tagged 0x01, COBS-framed) or
 * link_sx1276.c (frames on a raw LoRa radio; the UART keeps the harness messages only).
 * main.c speaks only this interface for protocol frames. */
#ifndef SNN_LINK_H
#define SNN_LINK_H

#include <stddef.h>
#include <stdint.h>

void snn_link_init(void);
/* Send one protocol frame; frame[-1] is writable (the UART link puts its stream tag there). */
void snn_link_send(uint8_t *frame, size_t n);
/* A received protocol frame's length (copied into buf), or 0 when none has arrived. */
int snn_link_recv(uint8_t *buf, size_t cap);
/* main.c hands over a tagged 0x01 message of the UART stream (the UART link's frames). */
void snn_link_uart_frame(const uint8_t *frame, size_t n);

/* One COBS-framed message on the UART, delimiter included (the harness's and the UART link's). */
void snn_uart_write_message(const uint8_t *data, size_t n);

#endif
