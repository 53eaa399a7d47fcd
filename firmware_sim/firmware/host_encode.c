/* Host harness of the generated encoder (built with the system gcc as a shared library):
 * the same snn_model.c the firmware runs, called from Python through ctypes. */
#include <string.h>
#include "snn_model.h"

int snn_host_encode(const uint8_t *images, int count, uint8_t *symbols)
{
    for (int k = 0; k < count; k++) {
        memcpy(snn_model_input(), images + (size_t)k * SNN_MODEL_INPUT_BYTES, SNN_MODEL_INPUT_BYTES);
        snn_model_run();
        memcpy(symbols + (size_t)k * SNN_MODEL_N_SYMBOLS, snn_model_symbols(), SNN_MODEL_N_SYMBOLS);
    }
    return count;
}

unsigned snn_host_arena_bytes(void) { return SNN_MODEL_ARENA_BYTES; }
unsigned snn_host_input_bytes(void) { return SNN_MODEL_INPUT_BYTES; }
unsigned snn_host_n_symbols(void) { return SNN_MODEL_N_SYMBOLS; }
