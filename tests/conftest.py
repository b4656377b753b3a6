"""Test-session set-up shared by every folder.

Without a CUDA device, Triton kernels run under Triton's interpreter. The interpreter is
chosen when a kernel is decorated, i.e. when its module is first imported, so TRITON_INTERPRET
is set here, in the root conftest, before any test module is collected.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
