"""The one compiled part: the band-limited MP3 decoder (cvlabel._bandmp3). Metadata is in pyproject.toml.

optional=True: without a C compiler the install still succeeds, and cvlabel decodes MP3 with
libsndfile/libmpg123 instead (cvlabel.bandmp3.available() is False).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "cvlabel._bandmp3",
            sources=["cvlabel/_bandmp3/bandmp3.c"],
            depends=["cvlabel/_bandmp3/minimp3.h"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
