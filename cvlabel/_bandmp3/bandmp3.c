/* cvlabel._bandmp3: a band-limited MP3 decoder (issue 13).

   MP3 bytes -> float32 mono at native_rate / k Hz. Only the subbands below the new Nyquist
   frequency are Huffman-decoded, antialiased, transformed and synthesised, and only every k-th
   synthesis output is computed (see minimp3.h, changes marked "cvlabel:"). The encoder delay and
   padding of a Xing/Info/LAME tag are removed as libmpg123 does in gapless mode (plus its decoder
   delay of 529 samples), so the output lines up with libmpg123's sample for sample.

   Plain CPython C API: Python's cvlabel.bandmp3 wraps it (the errors, numpy arrays). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#define MINIMP3_IMPLEMENTATION
#define MINIMP3_FLOAT_OUTPUT
#include "minimp3.h"

#define DECODER_DELAY 529          /* samples: libmpg123's GAPLESS_DELAY (the synthesis filter's delay) */
#define TRUNCATION_TOLERANCE_S 0.1 /* seconds: cvlabel.audio's rule, a decode this much short is truncated */

static PyObject *UnsupportedRate; /* set by the Python wrapper: cvlabel.bandmp3.UnsupportedRate */

typedef struct
{
    PyObject_HEAD
    Py_buffer view;           /* the MP3 bytes, held while the reader lives */
    Py_ssize_t pos;           /* the next byte to decode */
    mp3dec_t dec;
    mp3dec_band_t band;
    unsigned char first_header[4];
    int native_rate, rate, channels, layer, frame_samples;
    long long begin;          /* output samples (at rate) dropped at the start: delay */
    long long end;            /* output sample index where the gapless output ends; -1: at the data's end */
    long long produced;       /* output samples decoded so far, dropped ones included */
    long long frames;         /* audio frames decoded so far */
    long long tag_frames;     /* audio frames announced by a Xing/Info tag; -1: no tag */
    float pcm[MINIMP3_MAX_SAMPLES_PER_FRAME];
    int pcm_pos, pcm_len;     /* decoded, not yet delivered: pcm[pcm_pos:pcm_len] */
    int finished;             /* 1: the end was reached cleanly */
    const char *error;        /* set once the stream proved broken; every later read raises it */
    int busy;
} Reader;

static unsigned be32(const unsigned char *p)
{
    return ((unsigned)p[0] << 24) | ((unsigned)p[1] << 16) | ((unsigned)p[2] << 8) | p[3];
}

/* Bytes of ID3v2 tags at the start of data (0 if none; -1 if a tag runs past the end). */
static Py_ssize_t id3v2_size(const unsigned char *data, Py_ssize_t size)
{
    Py_ssize_t pos = 0;
    while (size - pos >= 10 && !memcmp(data + pos, "ID3", 3))
    {
        const unsigned char *h = data + pos;
        Py_ssize_t body = ((Py_ssize_t)(h[6] & 0x7f) << 21) | ((h[7] & 0x7f) << 14) | ((h[8] & 0x7f) << 7) | (h[9] & 0x7f);
        pos += 10 + body + ((h[5] & 0x10) ? 10 : 0); /* footer flag */
        if (pos > size)
            return -1;
    }
    return pos;
}

/* Reads the Xing/Info tag (and its LAME extension) of the first frame, if it is one, as libmpg123
   does: with a frame count the stream starts DECODER_DELAY late; with LAME's delay and padding
   both ends are cut. Returns 1 if the frame is a tag (not audio). */
static int read_info_tag(Reader *r, const unsigned char *frame, int frame_bytes)
{
    const unsigned char *h = frame;
    int mpeg1 = HDR_TEST_MPEG1(h) ? 1 : 0, mono = HDR_IS_MONO(h) ? 1 : 0;
    int offset = 4 + (HDR_IS_CRC(h) ? 2 : 0) + (mpeg1 ? (mono ? 17 : 32) : (mono ? 9 : 17));
    unsigned flags;
    long long delay = 0, padding = 0, total;

    if (HDR_GET_LAYER(h) != 1 || offset + 8 > frame_bytes) /* tags are layer III only */
        return 0;
    if (memcmp(frame + offset, "Xing", 4) && memcmp(frame + offset, "Info", 4))
        return 0;
    flags = be32(frame + offset + 4);
    offset += 8;
    if (flags & 1)
    {
        if (offset + 4 > frame_bytes)
            return 1;
        r->tag_frames = be32(frame + offset);
        offset += 4;
    }
    offset += (flags & 2 ? 4 : 0) + (flags & 4 ? 100 : 0) + (flags & 8 ? 4 : 0);
    if (offset + 24 <= frame_bytes && frame[offset] != 0)
    {
        const unsigned char *lame = frame + offset + 21;
        delay = (lame[0] << 4) | (lame[1] >> 4);
        padding = ((lame[1] & 0x0f) << 8) | lame[2];
    }
    if (r->tag_frames > 0)
    {   /* libmpg123 (only with a frame count): begin = delay + 529, end = frames*spf - padding + 529,
           in input samples, then divided by the decimation (as its 2:1 and 4:1 synthesis does) */
        total = r->tag_frames * r->frame_samples;
        r->begin = (delay + DECODER_DELAY) / r->band.step;
        r->end = MINIMP3_MAX(r->begin, (total - padding + DECODER_DELAY) / r->band.step);
    }
    return 1;
}

static void Reader_dealloc(Reader *r)
{
    if (r->view.obj)
        PyBuffer_Release(&r->view);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static int Reader_init(Reader *r, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"data", "rate", "step", NULL};
    mp3dec_frame_info_t info;
    const unsigned char *data;
    Py_ssize_t start;
    int rate = 0, step = 0, k, samples;

    if (r->view.obj)
    {
        PyErr_SetString(PyExc_RuntimeError, "Reader is already initialised");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|i$i", keywords, &r->view, &rate, &step))
        return -1;
    if ((rate <= 0) == (step <= 0) || step > 32)
    {
        PyErr_SetString(PyExc_ValueError, "give either a positive rate or a step of 1 to 32");
        return -1;
    }
    data = r->view.buf;
    memset(&r->dec, 0, sizeof(r->dec));
    mp3dec_init(&r->dec);
    r->tag_frames = -1;
    r->end = -1;
    r->band.subbands = 32;
    r->band.step = 1;

    start = id3v2_size(data, r->view.len);
    if (start < 0)
    {
        PyErr_SetString(PyExc_ValueError, "truncated: the ID3v2 tag runs past the end of the data");
        return -1;
    }
    if (r->view.len - start > INT_MAX)
    {
        PyErr_SetString(PyExc_ValueError, "more than 2 GB of MP3 data");
        return -1;
    }
    /* no pcm: finds the first frame (several frames in a row must agree) without decoding it */
    samples = mp3dec_decode_frame(&r->dec, data + start, (int)(r->view.len - start), NULL, &info, &r->band);
    if (!samples || !info.frame_bytes)
    {
        PyErr_SetString(PyExc_ValueError, r->view.len ? "not MPEG audio: no MP3 frame found" : "no data (0 bytes)");
        return -1;
    }
    r->pos = start + info.frame_offset;
    memcpy(r->first_header, data + r->pos, 4);
    r->native_rate = info.hz;
    r->channels = info.channels;
    r->layer = info.layer;
    r->frame_samples = samples;

    /* The band: subbands entirely below rate/2 (32 subbands span 0 .. native/2), every k-th sample.
       A k that does not divide 32 keeps floor(32/k) subbands, so nothing above rate/2 is
       synthesised but the filter bank's transition band (below ~375 Hz above the top band edge). */
    if (step)
    {
        k = step;
        rate = info.hz / step; /* rounded down: the exact rate is native_rate / step */
    }
    else if (info.hz % rate || (k = info.hz / rate) > 32)
    {
        PyErr_Format(UnsupportedRate ? UnsupportedRate : PyExc_ValueError,
                     "a %d Hz clip cannot be band-limited to %d Hz by an integer decimation", info.hz, rate);
        return -1;
    }
    r->rate = rate;
    r->band.step = k;
    r->band.subbands = 32 / k;
    r->band.phase = 0;
    r->band.iterations_phase = -1;

    if (read_info_tag(r, data + r->pos, info.frame_bytes - info.frame_offset))
        r->pos = start + info.frame_bytes; /* the tag frame carries no audio */
    return 0;
}

/* Whether the data ends inside the frame at r->pos (a frame of this stream, not junk). */
static int partial_frame(const Reader *r)
{
    const unsigned char *h = (const unsigned char *)r->view.buf + r->pos;
    Py_ssize_t remaining = r->view.len - r->pos;
    int frame_bytes;
    if (remaining < HDR_SIZE || !hdr_compare(r->first_header, h))
        return 0;
    frame_bytes = hdr_frame_bytes(h, r->dec.free_format_bytes);
    return frame_bytes > 0 && frame_bytes + hdr_padding(h) > remaining;
}

/* The bytes to hand minimp3 for the next frame: just that frame when it is one of this stream
   (minimp3 drops a frame followed by anything but another frame, such as an ID3v1 tag at the end),
   else all that is left (minimp3 searches it for the next frame). */
static int next_frame_bytes(const Reader *r)
{
    const unsigned char *h = (const unsigned char *)r->view.buf + r->pos;
    Py_ssize_t remaining = r->view.len - r->pos;
    int frame_bytes;
    if (remaining >= HDR_SIZE && r->dec.header[0] == 0xff && hdr_compare(r->dec.header, h))
    {
        frame_bytes = hdr_frame_bytes(h, r->dec.free_format_bytes);
        if (frame_bytes > 0 && frame_bytes + hdr_padding(h) <= remaining)
            return frame_bytes + hdr_padding(h);
    }
    return (int)remaining;
}

/* Decodes the next frame into r->pcm, trimmed to the gapless range. Returns 0, or -1 at the end
   (r->error set if the stream ended early). Called without the GIL. */
static int decode_next(Reader *r)
{
    const unsigned char *data = r->view.buf;
    mp3dec_frame_info_t info;
    int samples, first, last, cut = 0;

    for (;;)
    {
        if (r->end >= 0 && r->produced >= r->end)
            break; /* the gapless end: padding and anything after it are not audio */
        if (r->pos >= r->view.len)
            goto at_end;
        if (partial_frame(r))
        {
            cut = 1;
            goto at_end;
        }
        samples = mp3dec_decode_frame(&r->dec, data + r->pos, next_frame_bytes(r), r->pcm, &info, &r->band);
        if (!info.frame_bytes)
            goto at_end;
        r->pos += info.frame_bytes;
        if (!samples)
            continue; /* a frame without its bit reservoir (after a resync): libmpg123 skips it too */
        if (info.hz != r->native_rate)
        {
            r->error = "the sample rate changes mid-stream";
            return -1;
        }
        r->frames++;
        first = r->produced < r->begin ? (int)MINIMP3_MIN(r->begin - r->produced, samples) : 0;
        last = samples;
        if (r->end >= 0 && r->produced + samples > r->end)
            last = (int)(r->end - r->produced);
        r->produced += samples;
        if (first < last)
        {
            r->pcm_pos = first;
            r->pcm_len = last;
            return 0;
        }
    }
    r->finished = 1;
    return -1;

at_end:
    /* Truncated: with a tag, more than TRUNCATION_TOLERANCE_S of its frames missing (cvlabel.audio's
       rule); without one, the data ending inside a frame of the stream. */
    if (r->tag_frames >= 0)
    {
        if ((r->tag_frames - r->frames) * r->frame_samples > TRUNCATION_TOLERANCE_S * r->native_rate)
            r->error = "truncated: fewer frames than the Xing/Info tag announces";
    } else if (cut)
    {
        r->error = "truncated: the data ends inside a frame";
    }
    if (!r->frames && !r->error)
        r->error = "no audio frames";
    if (!r->error)
        r->finished = 1;
    return -1;
}

static PyObject *Reader_read(Reader *r, PyObject *args)
{
    Py_ssize_t wanted, have = 0, capacity;
    float *out;
    PyObject *result;
    int status = 0;

    if (!PyArg_ParseTuple(args, "n", &wanted))
        return NULL;
    if (!r->view.obj)
    {
        PyErr_SetString(PyExc_RuntimeError, "Reader is not initialised");
        return NULL;
    }
    if (r->error)
    {
        PyErr_SetString(PyExc_ValueError, r->error);
        return NULL;
    }
    if (r->busy)
    {
        PyErr_SetString(PyExc_RuntimeError, "Reader is in use by another thread");
        return NULL;
    }
    if (wanted < 0)
    {
        PyErr_SetString(PyExc_ValueError, "n must be >= 0");
        return NULL;
    }
    if (r->finished && r->pcm_pos == r->pcm_len)
        return PyByteArray_FromStringAndSize(NULL, 0);
    /* the samples go straight into the bytearray returned (grown, then cut to size, with the GIL
       held for that): no second buffer and no copy of the whole output */
    capacity = MINIMP3_MIN(wanted, 1 << 16);
    result = PyByteArray_FromStringAndSize(NULL, MINIMP3_MAX(capacity, 1) * (Py_ssize_t)sizeof(float));
    if (!result)
        return NULL;
    out = (float *)PyByteArray_AS_STRING(result);
    r->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    while (have < wanted)
    {
        Py_ssize_t n;
        if (r->pcm_pos == r->pcm_len)
        {
            if (r->finished || decode_next(r) < 0)
                break;
        }
        if (have == capacity)
        {
            capacity = MINIMP3_MIN(2*capacity, wanted);
            Py_BLOCK_THREADS
            status = PyByteArray_Resize(result, capacity * (Py_ssize_t)sizeof(float));
            Py_UNBLOCK_THREADS
            if (status < 0)
                break;
            out = (float *)PyByteArray_AS_STRING(result);
        }
        n = MINIMP3_MIN(r->pcm_len - r->pcm_pos, capacity - have);
        memcpy(out + have, r->pcm + r->pcm_pos, n * sizeof(float));
        r->pcm_pos += (int)n;
        have += n;
    }
    Py_END_ALLOW_THREADS
    r->busy = 0;
    if (status < 0)
    {
        Py_DECREF(result);
        return NULL; /* PyByteArray_Resize set MemoryError */
    }
    if (r->error)
    {
        Py_DECREF(result);
        PyErr_SetString(PyExc_ValueError, r->error);
        return NULL;
    }
    if (PyByteArray_Resize(result, have * (Py_ssize_t)sizeof(float)) < 0)
    {
        Py_DECREF(result);
        return NULL;
    }
    return result;
}

static PyObject *Reader_expected(Reader *r, void *closure)
{
    (void)closure;
    if (r->tag_frames < 0 || r->end < 0)
        Py_RETURN_NONE;
    return PyLong_FromLongLong(r->end - r->begin);
}

static PyMethodDef Reader_methods[] = {
    {"read", (PyCFunction)Reader_read, METH_VARARGS,
     "read(n) -> bytearray: up to n more float32 samples (4*n bytes); empty at the end.\n"
     "Raises ValueError for broken or truncated data."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Reader_members[] = {
    {"rate", T_INT, offsetof(Reader, rate), READONLY, "output sample rate (Hz; native_rate / step rounded down)"},
    {"native_rate", T_INT, offsetof(Reader, native_rate), READONLY, "the stream's sample rate (Hz)"},
    {"channels", T_INT, offsetof(Reader, channels), READONLY, "channels of the first frame (1 or 2)"},
    {"layer", T_INT, offsetof(Reader, layer), READONLY, "MPEG audio layer (1, 2 or 3)"},
    {"subbands", T_INT, offsetof(Reader, band.subbands), READONLY, "subbands decoded (of 32)"},
    {"step", T_INT, offsetof(Reader, band.step), READONLY, "decimation: every step-th sample of native_rate is kept"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef Reader_getset[] = {
    {"expected_samples", (getter)Reader_expected, NULL,
     "output samples the Xing/Info tag announces after gapless trimming, or None", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cvlabel._bandmp3.Reader",
    .tp_doc = "Reader(data, rate) or Reader(data, step=k): incremental band-limited decoder of MP3 bytes to float32 mono at rate Hz, or at native_rate / k Hz.",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Reader_init,
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_methods = Reader_methods,
    .tp_members = Reader_members,
    .tp_getset = Reader_getset,
};

static PyObject *set_unsupported_rate(PyObject *module, PyObject *cls)
{
    (void)module;
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, (PyTypeObject *)PyExc_Exception))
    {
        PyErr_SetString(PyExc_TypeError, "an exception class is needed");
        return NULL;
    }
    Py_INCREF(cls);
    Py_XSETREF(UnsupportedRate, cls);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"set_unsupported_rate", set_unsupported_rate, METH_O, "set_unsupported_rate(cls): the exception raised for a rate no integer decimation reaches"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "cvlabel._bandmp3", "Band-limited MP3 decoding (minimp3, modified).", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__bandmp3(void)
{
    PyObject *m;
    if (PyType_Ready(&ReaderType) < 0)
        return NULL;
    m = PyModule_Create(&module);
    if (!m)
        return NULL;
    Py_INCREF(&ReaderType);
    if (PyModule_AddObject(m, "Reader", (PyObject *)&ReaderType) < 0)
    {
        Py_DECREF(&ReaderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
