/* An SX1276 behind the SPI calls of firmware/sx1276.c, for the host test (test_sx1276.py): the LoRa
 * register file with its reset values, the 256-byte FIFO with RegFifoAddrPtr auto-increment, the
 * transmitter (TX mode captures the frame, raises TxDone, falls back to standby), a receiver the
 * test feeds (model_receive raises RxDone in RX continuous mode), write-1-to-clear IRQ flags, and a
 * log of every register write in order. */
#include <stdint.h>
#include <string.h>

#include "sx1276.h"

static uint8_t regs[128];
static uint8_t fifo[256];
static int selected, first, reg_addr, writing;
static uint8_t sent[256];
static int sent_len, tx_count;
static uint16_t log_reg[4096];
static uint8_t log_val[4096];
static int n_log;

void model_reset(uint8_t version)
{
    memset(regs, 0, sizeof regs);
    regs[0x01] = 0x09;            /* RegOpMode: FSK, standby... (reset 0x09: LowFrequencyModeOn, STDBY) */
    regs[0x06] = 0x6C; regs[0x07] = 0x80; regs[0x08] = 0x00;
    regs[0x09] = 0x4F; regs[0x0B] = 0x2B; regs[0x0C] = 0x20;
    regs[0x0E] = 0x80; regs[0x1D] = 0x72; regs[0x1E] = 0x70; regs[0x26] = 0x00;
    regs[0x31] = 0xC3; regs[0x37] = 0x0A; regs[0x39] = 0x12; regs[0x42] = version;
    n_log = sent_len = tx_count = 0;
}

static void on_write(int reg, uint8_t v)
{
    if (n_log < 4096) {
        log_reg[n_log] = (uint16_t)reg;
        log_val[n_log++] = v;
    }
    if (reg == 0x00) {                                   /* RegFifo */
        fifo[regs[0x0D]] = v;
        regs[0x0D]++;
        return;
    }
    if (reg == 0x12) {                                   /* RegIrqFlags: write 1 to clear */
        regs[0x12] &= (uint8_t)~v;
        return;
    }
    regs[reg] = v;
    if (reg == 0x01 && (v & 0x80) && (v & 7) == 3) {     /* TX: the frame goes out */
        sent_len = regs[0x22];
        for (int i = 0; i < sent_len; i++) {
            sent[i] = fifo[(uint8_t)(regs[0x0E] + i)];
        }
        tx_count++;
        regs[0x12] |= 0x08;                              /* TxDone */
        regs[0x01] = (uint8_t)((v & ~7) | 1);            /* back to standby */
    }
}

static uint8_t on_read(int reg)
{
    if (reg == 0x00) {
        uint8_t v = fifo[regs[0x0D]];
        regs[0x0D]++;
        return v;
    }
    return regs[reg];
}

void snn_spi_select(int on)
{
    selected = on;
    first = 1;
}

uint8_t snn_spi_xfer(uint8_t out)
{
    if (!selected) {
        return 0xFF;
    }
    if (first) {
        first = 0;
        writing = out & 0x80;
        reg_addr = out & 0x7F;
        return 0;
    }
    int reg = reg_addr;
    if (reg != 0x00) {                                   /* burst access increments the address */
        reg_addr = (reg_addr + 1) & 0x7F;
    }
    if (writing) {
        on_write(reg, out);
        return 0;
    }
    return on_read(reg);
}

int model_receive(const uint8_t *data, int n)
{
    if ((regs[0x01] & 0x87) != 0x85) {                   /* not in LoRa RX continuous */
        return -1;
    }
    uint8_t at = regs[0x0F];
    for (int i = 0; i < n; i++) {
        fifo[(uint8_t)(at + i)] = data[i];
    }
    regs[0x10] = at;                                     /* RegFifoRxCurrentAddr */
    regs[0x13] = (uint8_t)n;                             /* RegRxNbBytes */
    regs[0x12] |= 0x40 | 0x10;                           /* RxDone, ValidHeader */
    return 0;
}

uint8_t model_reg(int reg) { return regs[reg]; }
int model_log_count(void) { return n_log; }
int model_log_reg(int i) { return log_reg[i]; }
int model_log_val(int i) { return log_val[i]; }
int model_sent(uint8_t *out) { memcpy(out, sent, (size_t)sent_len); return sent_len; }
int model_tx_count(void) { return tx_count; }

int test_init(uint32_t freq, int sf, int bw_code, int cr, int preamble, int power, int sync, int implicit)
{
    snn_lora_config_t c = {freq, (uint8_t)sf, (uint8_t)bw_code, (uint8_t)cr, (uint16_t)preamble, (int8_t)power,
                           (uint8_t)sync, (uint8_t)implicit};
    return snn_sx1276_init(&c);
}
