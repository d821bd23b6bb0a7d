/*
 * tensor_kern.h: the interface between tensor.c (dispatch, scalar reference) and the SIMD kernel files.
 *
 * Each instruction-set file exports the same two entry points with its suffix. They return false for a type
 * they have no kernel for, and tensor.c then falls back to the next lower level. Activation conversion must
 * produce the same bytes at every level (the tests check this), so the SIMD versions follow the scalar
 * arithmetic step for step.
 */
#ifndef BANTER_TENSOR_KERN_H
#define BANTER_TENSOR_KERN_H

#include "tensor/tensor.h"

bool tensor_matmul_rows_avx2(const struct tensor_mat *w, const void *xq, int n_tok, float *y, size_t y_stride,
                             int64_t r0, int64_t r1);
bool tensor_matmul_rows_avx512(const struct tensor_mat *w, const void *xq, int n_tok, float *y,
                               size_t y_stride, int64_t r0, int64_t r1);

/* Converts one row of n floats to type vdt (Q8_0 activations: llama.cpp's x86 rounding, see tensor.c). */
bool tensor_act_row_avx2(uint32_t vdt, const float *x, void *dst, int64_t n);
bool tensor_act_row_avx512(uint32_t vdt, const float *x, void *dst, int64_t n);

#endif
