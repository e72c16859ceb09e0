"""Native kernels: rnnkit's C++ time loops, their build, binding and scratch memory.

One C++ driver (``driver.h``) runs a recurrent layer direction over a whole sequence, forward and
backward, in one call each; each cell contributes only its step's maths (``lstm_loop.cpp``,
``gru_loop.cpp``, ``rnn_loop.cpp`` for tanh and relu). The parts:

    build.py      compiles a library on first use and caches it (``RNNKIT_NO_EXTENSION=1``: never)
    binding.py    the table of cell kinds, the C struct's ctypes mirror and its check on load
    loops.py      time_loop(kind, ...) with its autograd, loop_info(kind), available(kind, x)
    workspace.py  reusable scratch arenas, the only process-wide state besides the build cache
    hook.py       compiled_scan: what Recurrent calls for rnnkit's own RNN/LSTM/GRU cells
    stream.py     compiled_step: the Streamer's one-call step of a whole stack (``stream_step.cpp``:
                  weights packed once by blocks of hidden units, gates fused after each block)

Every loop has a pure-torch twin, Recurrent's loop over the cell (the spec being
``rnnkit.functional.steps``), which the tests compare it against and which runs wherever the
library does not: no compiler, another dtype or device, torch.compile, higher derivatives. The
streaming step's twin is the Streamer's own torch step (``native=False``).
"""

from rnnkit.kernels.binding import KINDS
from rnnkit.kernels.loops import available, loop_info, time_loop

__all__ = ["KINDS", "available", "loop_info", "time_loop"]
