"""InputBuffers: a step's integer inputs, staged in page-locked memory and sent in one copy.

Every step the model runner turns Python lists (token ids, positions, slots, block tables, ...)
into tensors on the GPU. Made one tensor at a time, each costs tens of microseconds of host
time: a tensor from the list, a page-locked (pinned) allocation to copy it into, a transfer
to launch. With seven or eight inputs that came to ~0.4 ms of host time per decode step on an
H200, whose GPU runs a small batch's whole step in ~1 ms. vLLM v1 keeps persistent buffers
instead (`CpuGpuBuffer`: a pinned CPU tensor, a numpy view of it and a GPU tensor); here one
pair holds them all:

    host buffer (pinned)    [ input_ids | positions | slot_mapping | block_tables | ... ]
                                  |  one copy of the used bytes, queued without waiting
    device buffer           [ input_ids | positions | slot_mapping | block_tables | ... ]

Both are allocated once, at start-up. Each step packs its arrays back to back from offset 0
(`reserve`), writes them through numpy views of the host buffer, and `copy_to_device` sends the
bytes used in one transfer. The model reads tensor views of the device buffer at the same
offsets.

On CUDA the copy runs on a stream of its own, so it can overlap the previous step's LM head
and sampler instead of waiting behind them (they read no input). Reusing the buffers is safe
because of three orderings:

- device buffer, before the copy: the copy stream waits for an event the runner records once it
  has queued the step's last reader of the inputs (the model, and the gather of the rows to
  sample: `inputs_read`), so the copy cannot overwrite inputs still to be read;
- device buffer, after the copy: the compute stream waits for the copy before the step's
  kernels;
- host buffer: with async scheduling the host prepares step N+1 while the GPU still runs step
  N, and step N's copy may not have read the host buffer yet. `begin_step` waits for an event
  recorded right after that copy (vLLM's `prepare_inputs_event` and `synchronize_input_prep`).
  The copy was queued before step N's kernels, so this wait is short or nothing.

CUDA graphs read their inputs from fixed addresses: a decode step that replays the graph of
batch size bs reserves its model inputs first, in the same order and sizes as the graph's
capture did (`StagedModelInputs.reserve`), so the copy fills the graph's inputs directly.

On a CPU there is nothing to pin and no stream: the "device" buffer is a second host buffer and
the copy a memcpy, so the same code runs (and is tested) there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

ALIGNMENT = 16
"""Every array starts at a multiple of 16 bytes, as a tensor of its own would. Triton compiles
a kernel variant per pointer alignment (16 bytes or not): with arrays at 8-byte offsets, the
prefill kernels met both kinds and stalled steps for half a second per new variant (on an
H200 the throughput benchmark's prefill steps took 4.5 s instead of 0.8 s)."""

_NUMPY_DTYPES = {torch.int64: np.int64, torch.int32: np.int32}


@dataclass
class StagedTensor:
    """One array of a step, at the same offset in both buffers."""
    np: np.ndarray
    """Its bytes in the host buffer: the runner writes the step's values here."""
    device: torch.Tensor
    """Its bytes in the device buffer (valid once `copy_to_device` has run): the model reads
    this tensor."""


class InputBuffers:
    def __init__(self, num_bytes: int, device: torch.device) -> None:
        is_cuda = device.type == "cuda"
        num_bytes = -(-num_bytes // ALIGNMENT) * ALIGNMENT
        self.host = torch.zeros(num_bytes, dtype=torch.uint8, pin_memory=is_cuda)
        self.device_buffer = torch.zeros(num_bytes, dtype=torch.uint8, device=device)
        self.num_bytes_used = 0
        """Bytes reserved by the step being prepared (what `copy_to_device` sends)."""
        self.copy_stream = torch.cuda.Stream(device) if is_cuda else None
        self.prepare_inputs_event = torch.cuda.Event() if is_cuda else None
        """Recorded after each copy: the host buffer is free again once it has completed."""
        self.inputs_read_event = torch.cuda.Event() if is_cuda else None
        """Recorded once the last step's readers of the device buffer are queued."""
        self._host_np = self.host.numpy()
        # One view per dtype of the whole device buffer, so a reservation is a single slice.
        self._device_views = {dtype: self.device_buffer.view(dtype) for dtype in _NUMPY_DTYPES}

    def begin_step(self) -> None:
        """Start packing a new step at offset 0, once the last copy has read the host buffer."""
        if self.prepare_inputs_event is not None:
            self.prepare_inputs_event.synchronize()
        self.num_bytes_used = 0

    def reserve(self, shape: tuple[int, ...], dtype: torch.dtype) -> StagedTensor:
        """The next `shape` array of `dtype` (int64 or int32) of the step being prepared."""
        start = -(-self.num_bytes_used // ALIGNMENT) * ALIGNMENT
        end = start + math.prod(shape) * dtype.itemsize
        if end > self.host.numel():
            raise RuntimeError(f"a step's inputs need more than the {self.host.numel()} bytes "
                               "of the input buffers (sized by max_num_batched_tokens, "
                               "max_num_seqs and max_model_len)")
        self.num_bytes_used = end
        host = self._host_np[start:end].view(_NUMPY_DTYPES[dtype]).reshape(shape)
        device = self._device_views[dtype][start // dtype.itemsize:end // dtype.itemsize]
        return StagedTensor(host, device.view(shape) if len(shape) > 1 else device)

    def stage(self, values: list[int], dtype: torch.dtype) -> StagedTensor:
        """Reserve a 1-D array for `values` and write them to it."""
        staged = self.reserve((len(values),), dtype)
        staged.np[:] = values
        return staged

    def copy_to_device(self) -> None:
        """Send the reserved bytes in one copy, without waiting for the GPU (the host buffer is
        page-locked on CUDA, so the copy is queued behind the last step's reads)."""
        used = self.num_bytes_used
        if self.copy_stream is None:
            self.device_buffer[:used].copy_(self.host[:used])
            return
        self.copy_stream.wait_event(self.inputs_read_event)
        with torch.cuda.stream(self.copy_stream):
            self.device_buffer[:used].copy_(self.host[:used], non_blocking=True)
            self.prepare_inputs_event.record()
        torch.cuda.current_stream().wait_event(self.prepare_inputs_event)

    def inputs_read(self) -> None:
        """Mark the step's readers of the device buffer as queued: the next copy may overwrite
        it once they have run."""
        if self.inputs_read_event is not None:
            self.inputs_read_event.record()


@dataclass
class StagedModelInputs:
    """The arrays the model's forward pass reads (the rest of a step's inputs are reserved
    after them). Reserved first, their offsets depend only on the sizes: every decode step of a
    CUDA graph's batch size finds them at the addresses the graph was captured with."""
    input_ids: StagedTensor
    positions: StagedTensor
    slot_mapping: StagedTensor
    block_tables: StagedTensor
    context_lens: StagedTensor

    @classmethod
    def reserve(cls, buffers: InputBuffers, num_tokens: int, num_seqs: int,
                max_blocks_per_seq: int) -> StagedModelInputs:
        """Reserve them in a freshly begun step (`begin_step`)."""
        return cls(input_ids=buffers.reserve((num_tokens,), torch.int64),
                   positions=buffers.reserve((num_tokens,), torch.int64),
                   slot_mapping=buffers.reserve((num_tokens,), torch.int64),
                   block_tables=buffers.reserve((num_seqs, max_blocks_per_seq), torch.int32),
                   context_lens=buffers.reserve((num_seqs,), torch.int32))

    def write(self, input_ids: list[int], positions: list[int], slot_mapping: list[int],
              block_tables: np.ndarray, context_lens: list[int]) -> None:
        """Write a step's values and pad the rest like CUDA graphs pad a batch: token 0 at
        position 0 with slot -1 (its K/V are not written), context length 0 (attention reads
        nothing for the row). `block_tables` [num_seqs, width] fills the top-left corner; the
        entries right of it and the padding rows stay as they are: attention reads a row's
        table only up to its context length."""
        num_tokens, num_seqs = len(input_ids), len(context_lens)
        self.input_ids.np[:num_tokens] = input_ids
        self.input_ids.np[num_tokens:] = 0
        self.positions.np[:num_tokens] = positions
        self.positions.np[num_tokens:] = 0
        self.slot_mapping.np[:num_tokens] = slot_mapping
        self.slot_mapping.np[num_tokens:] = -1
        self.context_lens.np[:num_seqs] = context_lens
        self.context_lens.np[num_seqs:] = 0
        self.block_tables.np[:num_seqs, :block_tables.shape[1]] = block_tables

    def holds(self, *tensors: torch.Tensor) -> bool:
        """Whether these (input_ids, positions, slot_mapping, block_tables, context_lens) are
        views of these arrays, i.e. a step staged here."""
        arrays = (self.input_ids, self.positions, self.slot_mapping, self.block_tables,
                  self.context_lens)
        return all(t.data_ptr() == a.device.data_ptr()
                   for t, a in zip(tensors, arrays, strict=True))

    def device_tensors(self, num_tokens: int, num_seqs: int, width: int
                       ) -> tuple[torch.Tensor, ...]:
        """(input_ids, positions, slot_mapping, block_tables, context_lens) on the device, for
        a step of `num_tokens` tokens and `num_seqs` block tables `width` wide: the arrays
        themselves, or their first rows when they are padded to a CUDA graph's batch size (a
        slice costs a microsecond of host time: only then)."""
        tables = self.block_tables.device
        if self.input_ids.device.shape[0] == num_tokens and tables.shape == (num_seqs, width):
            return (self.input_ids.device, self.positions.device, self.slot_mapping.device,
                    tables, self.context_lens.device)
        return (self.input_ids.device[:num_tokens], self.positions.device[:num_tokens],
                self.slot_mapping.device[:num_tokens], tables[:num_seqs, :width],
                self.context_lens.device[:num_seqs])
