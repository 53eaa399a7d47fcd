"""Cycle cost model of the lowered kernels on Cortex-M cores (an estimate, documented here).

cycles(step) = MACs x cycles-per-MAC(core, kernel) + elements x cycles-per-element(core, kernel)
               + a fixed call overhead per kernel.

Where the per-MAC figures come from:

- Cortex-M7, convolution: Lai, Suda & Chandra, "CMSIS-NN: Efficient Neural Network Kernels for
  Arm Cortex-M CPUs", arXiv:1801.06601 (2018), Table 2/Sec. 5: their CIFAR-10 CNN (conv 5x5
  3->32 on 32x32, conv 5x5 32->32 on 16x16, conv 5x5 32->64 on 8x8, pooling, FC: 12.3 M MACs by
  our count) runs in 99.1 ms on an STM32F746 at 216 MHz, i.e. 21.4 M cycles, **1.74 cycles/MAC**
  for the whole network including im2col, pooling and requantisation. We charge 1.6 cycles/MAC
  for the conv inner loop and the rest per element.
- Cortex-M4, convolution: the same kernels (arm_nn_mat_mult_kernel_s8_s16: 4 SMLAD = 8 MACs per
  inner iteration plus 4 loads and 2 SXTB16 for the weights, single issue) take about 2x the M7's
  dual-issue cycle count per MAC; MCUNet (Lin et al., NeurIPS 2020, Fig. 6/Table 4) reports
  CMSIS-NN on STM32F411/F746 at a similar 1.9-2.2x ratio between the M4 and M7 parts once clock
  is factored out. We use **3.2 cycles/MAC** on the M4.
- Depthwise conv has no reuse across output channels (CMSIS-NN arm_depthwise_conv_s8_opt): 2x the
  conv figure. A 1x1 conv skips im2col (arm_convolve_1x1_s8_fast): 0.9x.
- Elementwise kernels are counted per output element: requantisation (one 32x32->64 multiply,
  shifts, add, clamp: ~6 cycles), add with two rescales (~12), integer square root (a 16-step
  CLZ-seeded Newton/digit loop: ~40), 64/32-bit division (``__aeabi_ldivmod``, no hardware 64-bit
  divide on M4/M7: ~70), argmin over L centres (~3 per centre, charged as 3*L).

These are estimates; a real board's figure moves with the memory it runs from (flash wait states,
caches on the M7) and the compiler. The report says so.
"""
from __future__ import annotations

from dataclasses import dataclass

CITATION = ("Lai, Suda & Chandra 2018, CMSIS-NN (arXiv:1801.06601): 99.1 ms for a 12.3 M-MAC CIFAR-10 CNN "
            "on a 216 MHz Cortex-M7 = 1.74 cycles/MAC; M4 ~2x M7 per MAC (single issue; cf. MCUNet, "
            "Lin et al. 2020)")


@dataclass(frozen=True)
class CoreCosts:
    conv_cpm: float            # cycles per MAC, im2col + mat-mult conv
    per_element: dict          # kernel -> cycles per output element
    call_overhead: int = 400   # cycles per kernel call (argument set-up, loops)


_ELEMENT_M7 = {"requantize": 4, "add": 8, "add_const": 3, "mul": 4, "mul_const": 3, "scale": 0,
               "relu": 1, "clip": 1, "prelu": 5, "abs": 1, "neg": 1, "sqrt": 30, "div": 50,
               "reduce": 2, "maxpool": 2, "avgpool": 3, "copy": 1, "argmin": 2, "argmax": 2,
               "conv": 0, "conv_1x1": 0, "depthwise_conv": 0}
_ELEMENT_M4 = {k: (v * 3 + 1) // 2 if v else 0 for k, v in _ELEMENT_M7.items()}
_ELEMENT_M4.update({"sqrt": 40, "div": 70})

CORES: dict[str, CoreCosts] = {
    "cortex-m7": CoreCosts(1.6, _ELEMENT_M7),
    "cortex-m4": CoreCosts(3.2, _ELEMENT_M4),
    "cortex-m33": CoreCosts(3.0, _ELEMENT_M4),
    "cortex-m55": CoreCosts(0.5, _ELEMENT_M7),   # Helium MVE kernels; rough
}
KERNEL_MAC_FACTOR = {"conv": 1.0, "conv_1x1": 0.9, "depthwise_conv": 2.0}


def step_cycles(step, core: str) -> int:
    """Estimated cycles of one lowered step on `core` (0 for views)."""
    if step.alias:
        return 0
    costs = CORES[core]
    cycles = step.macs * costs.conv_cpm * KERNEL_MAC_FACTOR.get(step.kernel, 0.0)
    per = costs.per_element.get(step.kernel, 2)
    if step.kernel in ("argmin", "argmax") and "levels" in step.params:
        per = per * int(step.params["levels"][0])
    cycles += step.elements * per
    return int(round(cycles)) + costs.call_overhead
