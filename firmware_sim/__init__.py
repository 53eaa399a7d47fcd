"""The MCU stand-in: integer-only int8 encoder within a board budget, speaking the serial protocol."""
