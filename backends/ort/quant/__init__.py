"""Weight quantization passes: block-wise int4/int8 into MatMulNBits."""
