/*
 * tensor_avx2.c: AVX2 + FMA + F16C kernels (no AVX-512, no VNNI).
 */
#include "tensor/tensor_kern.h"

bool tensor_matmul_rows_avx2(const struct tensor_mat *w, const void *xq, int n_tok, float *y, size_t y_stride,
                             int64_t r0, int64_t r1)
{
    return false;
}

bool tensor_act_row_avx2(uint32_t vdt, const float *x, void *dst, int64_t n)
{
    return false;
}
