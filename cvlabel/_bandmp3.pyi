# Types of the compiled extension cvlabel._bandmp3 (C source: cvlabel/_bandmp3/bandmp3.c).

class Reader:
    rate: int
    native_rate: int
    channels: int
    layer: int
    subbands: int
    step: int
    expected_samples: int | None
    def __init__(self, data: bytes | bytearray | memoryview, rate: int = 0, *, step: int = 0) -> None: ...
    def read(self, n: int, /) -> bytearray: ...

def set_unsupported_rate(cls: type[Exception], /) -> None: ...
