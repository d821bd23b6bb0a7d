/*
 * audio_api.c: the public sound-file functions (banter.h), thin wrappers over audio.c that fix the format at
 * the pipeline's own: 16 kHz mono float.
 */
#include "audio/audio.h"
#include "banter.h"
#include "core/core.h"

#include <stdlib.h>

BANTER_API banter_status banter_audio_read(const char *path, double max_seconds, float **samples, size_t *n,
                                           char *err, size_t err_len)
{
    if (samples) *samples = NULL;
    if (n) *n = 0;
    if (!path || !samples || !n || max_seconds < 0) {
        core_errf(err, err_len, "banter_audio_read: invalid arguments");
        return BANTER_ERR_INVALID_ARG;
    }
    struct audio_buf b = {0};
    int rc = audio_read_file(path, AUDIO_RATE, max_seconds, &b, err, err_len);
    if (rc) return (banter_status)rc;
    *samples = b.samples;
    *n = b.n;
    return BANTER_OK;
}

BANTER_API void banter_audio_free(float *samples)
{
    struct audio_buf b = {.samples = samples};
    audio_buf_free(&b);
}

BANTER_API banter_status banter_audio_write(const char *path, const float *samples, size_t n, char *err,
                                            size_t err_len)
{
    if (!path || (!samples && n > 0)) {
        core_errf(err, err_len, "banter_audio_write: invalid arguments");
        return BANTER_ERR_INVALID_ARG;
    }
    return (banter_status)audio_write_file(path, samples, n, AUDIO_RATE, err, err_len);
}
